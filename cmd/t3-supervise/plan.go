//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
	"t3-supervise/supervise"
)

// tokenVar is the variable Claude Code reads its long-lived setup token from.
const tokenVar = "CLAUDE_CODE_OAUTH_TOKEN"

// outranking are the variables Claude Code prefers to tokenVar: with either one set, the
// injected token goes unused and nothing says so (seen with the real 2.1.328 against the API
// stand-in: ANTHROPIC_API_KEY is sent as x-api-key, ANTHROPIC_AUTH_TOKEN as the bearer). They
// reach t3 only when an operator lets them through --env-allow or --env-allow-extra.
var outranking = []string{"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"}

// plan is everything a run will do, computed before anything is changed. --dry-run prints it;
// a real run carries it out. One value, one code path: what the dry-run shows is what happens.
// It is data only: the live objects found while it was made travel beside it (handles).
type plan struct {
	User       string         `json:"user"`
	Credential credentialPlan `json:"credential"`
	EnvFile    envFilePlan    `json:"env_file"`
	Argv       []string       `json:"argv"`
	Env        []envVar       `json:"env"`
	EnvDropped []string       `json:"env_dropped"`
	Cgroup     cgroupPlan     `json:"cgroup"`
	Failure    *failurePlan   `json:"failure,omitempty"`

	decision      creds.Decision
	fileAct       creds.FilePlan // the decision's env file action as a real run carries it out
	expiry        creds.Expiry   // of the token from Vault; unknown for a fallback or an opt-out
	expiryProblem string         // the credential_expiry_invalid already reported, if any
	expiryNote    string         // the dry-run's words on the expiry, at the time of the plan
	env           []string
}

// handles are what prepare opened for the run to work with, beside the plan and never in it:
// a plan stays a value that the dry run prints whole and a test builds without Vault or a
// cgroup. They come back on a failure too, for the caller to close.
type handles struct {
	client *creds.Client // the Vault client for re-reads and renewals; nil when none could be made
	tree   *cgroup.Tree  // the unit's delegated cgroup; nil with --no-cgroup or when it was refused
}

// close releases what the handles hold.
func (h handles) close() {
	if h.client != nil {
		h.client.Close()
	}
}

type credentialPlan struct {
	Outcome     string `json:"outcome"`
	From        string `json:"from"`
	Auth        string `json:"auth,omitempty"`
	TokenFile   string `json:"vault_token_file,omitempty"`
	VaultAddr   string `json:"vault_addr"`
	Path        string `json:"path"`
	Mount       string `json:"mount,omitempty"`
	MountGuess  bool   `json:"mount_guessed,omitempty"` // Vault refused the mount lookup: Mount is the first path segment
	KVVersion   int    `json:"kv_version,omitempty"`
	Version     int    `json:"version,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Fallback    string `json:"fallback_reason,omitempty"`
	Inherited   string `json:"inherited_token"`
	// Outranking lists the variables of outranking that were dropped because a token is injected.
	Outranking []string `json:"outranking_dropped"`
	// ExpiresAt and ExpirySource are the token's expiry and where it came from, named as in
	// `status --json` (credentialState): null and "" when unknown. ExpiryWarning says why an
	// expires_at in the secret's custom_metadata was not used.
	ExpiresAt     *time.Time `json:"token_expires_at"`
	ExpirySource  string     `json:"token_expiry_source"`
	ExpiryWarning string     `json:"token_expiry_warning,omitempty"`
}

type envFilePlan struct {
	Path   string   `json:"path"`
	Action string   `json:"action"`
	Mkdir  []string `json:"mkdir,omitempty"`  // created first, mode 0700
	Reason string   `json:"reason,omitempty"` // why a real run refuses (action "refuse")
}

type envVar struct {
	Name     string `json:"name"`
	Value    string `json:"value,omitempty"`
	Redacted bool   `json:"redacted,omitempty"`
}

type cgroupPlan struct {
	Mode      string        `json:"mode"`            // "delegated" or "disabled (--no-cgroup)"
	Base      string        `json:"base,omitempty"`  // the unit's cgroup directory
	Steps     []cgroup.Step `json:"steps,omitempty"` // relative to Base, in order
	LeafSteps []cgroup.Step `json:"leaf_steps"`      // on every agents/<leaf>
	ShimDir   string        `json:"shim_dir,omitempty"`
	Shims     []string      `json:"shims,omitempty"`
	// PressureKill says whether the pressure kill can work: "on", "off (--pressure-window 0)",
	// or "unavailable: why" (no PSI on this host).
	PressureKill string `json:"pressure_kill,omitempty"`
	// psi_mode, psi_mode_reason: the mode the watch would run in, probed on a temporary cgroup
	// (cgroup.Tree.ProbePSI); only in a dry run with the pressure kill on.
	*cgroup.PSIMode
}

type failurePlan struct {
	Class    string `json:"class"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error"`
}

// runError is a failure with the exit code that says why.
type runError struct {
	class string
	code  int
	err   error
}

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// credError classifies a credential failure for the exit code.
func credError(err error) *runError {
	switch {
	case errors.Is(err, creds.ErrConfig):
		return &runError{"config", exitConfig, err}
	case errors.Is(err, creds.ErrDenied):
		return &runError{"credential", exitCredDenied, err}
	case errors.Is(err, creds.ErrMalformed):
		return &runError{"credential", exitCredInvalid, err}
	default:
		return &runError{"credential", exitCredUnavailable, err}
	}
}

// prepare resolves everything a run needs — it really talks to Vault — and changes nothing.
func prepare(ctx context.Context, cfg *config, ev *events) (*plan, handles, error) {
	p := &plan{User: cfg.User, EnvFile: envFilePlan{Path: cfg.EnvFile}}
	secretPath, _ := cfg.Creds.SecretPath() // validated in parseConfig
	p.Credential = credentialPlan{Path: secretPath, VaultAddr: vaultAddr(cfg), Inherited: "absent", Outranking: []string{}}

	var h handles
	var err error
	if h.client, err = p.resolveCredential(ctx, cfg, ev); err != nil {
		return p.fail(h, err)
	}
	if h.tree, err = p.planCgroup(cfg); err != nil {
		return p.fail(h, err)
	}
	if msg, off := strings.CutPrefix(p.Cgroup.PressureKill, "unavailable: "); off && cfg.DryRun {
		ev.emit(PressureOffEvent{Err: errors.New(msg)}) // a real run's watch says it when it starts
	}
	if err := p.buildCommand(cfg, ev); err != nil {
		return p.fail(h, err)
	}
	return p, h, nil
}

func (p *plan) fail(h handles, err error) (*plan, handles, error) {
	var re *runError
	if !errors.As(err, &re) {
		re = &runError{"internal", exitInternal, err}
	}
	p.Failure = &failurePlan{Class: re.class, ExitCode: re.code, Error: re.err.Error()}
	return p, h, re
}

func vaultAddr(cfg *config) string {
	if a := cfg.getenv("VAULT_ADDR"); a != "" {
		return a
	}
	return "https://127.0.0.1:8200" // the Vault client's own default (api.DefaultConfig)
}

// resolveCredential decides the token; the Vault client it made, if any, comes back also with
// an error.
func (p *plan) resolveCredential(ctx context.Context, cfg *config, ev *events) (*creds.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Creds.Timeout)
	defer cancel()
	var res creds.Result
	client, err := creds.New(ctx, cfg.Creds)
	if err == nil {
		res, err = client.Resolve(ctx)
	} else {
		client = nil
	}
	cached, cachedErr := creds.ReadEnvFile(cfg.EnvFile)
	if cachedErr != nil && !errors.Is(cachedErr, fs.ErrNotExist) {
		ev.emit(EnvFileFailedEvent{EnvFile: cfg.EnvFile, Err: fmt.Errorf("cannot use the materialized token: %w", cachedErr)})
	}
	d, derr := creds.Decide(res, err, cached, cachedErr)
	c := &p.Credential
	c.Auth, c.Mount, c.KVVersion, c.Version = string(res.Auth), res.Mount, res.KVVersion, res.Version
	if res.Path != "" {
		c.Path = res.Path
	}
	if cfg.Creds.TokenFile != "" && res.Auth == creds.AuthTokenFile {
		c.TokenFile = cfg.Creds.TokenFile
	}
	c.MountGuess = res.MountGuessed
	if derr != nil {
		c.Outcome, c.From = "error", "none"
		re := credError(derr)
		if ctx.Err() == context.Canceled {
			// A stop (SIGTERM) called the question off: not a failure; run reports the stop.
			return client, re
		}
		ev.emit(CredFailedEvent{VaultPath: c.Path, ExitCode: re.code, Note: failureNote(cfg.EnvFile, cached, cachedErr, derr)})
		return client, re
	}
	p.decision = d
	c.Outcome, c.From = d.Outcome.String(), d.From
	p.fileAct = creds.PlanEnvFile(cfg.EnvFile, d.EnvFile)
	p.EnvFile.Action, p.EnvFile.Mkdir = string(p.fileAct.Action), p.fileAct.Mkdir
	if p.fileAct.Refusal != nil {
		p.EnvFile.Reason = p.fileAct.Refusal.Error()
	}
	f := TokenInfo{VaultPath: c.Path, TokenSource: d.From, KVVersion: c.Version}
	if !d.Inject.IsZero() {
		c.Fingerprint = d.Inject.Fingerprint()
		f.Fingerprint = c.Fingerprint
	}
	if d.From == creds.FromVault {
		exp, err := creds.TokenExpiry(res, cfg.TokenLifetime)
		p.expiry = exp
		if exp.Known() {
			at := exp.At
			c.ExpiresAt, c.ExpirySource = &at, string(exp.Source)
			f.ExpiresAt, f.ExpirySource = at, c.ExpirySource
			p.expiryNote = expiryPlanNote(cfg.now(), exp)
		}
		if err != nil {
			// After credential_found (the token is good; only its date is in doubt).
			defer emitExpiryInvalid(ev, c.Path, c.Version, err)
			p.expiryProblem, c.ExpiryWarning = err.Error(), err.Error()
		}
	}
	switch {
	case d.Fallback != nil:
		c.Fallback = d.Fallback.Error()
		ev.emit(CredFallbackEvent{TokenInfo: f, Err: d.Fallback, EnvFile: cfg.EnvFile})
	case d.Outcome == creds.Found:
		ev.emit(CredFoundEvent{f})
	case d.Outcome == creds.Deleted || d.Outcome == creds.Destroyed:
		ev.emit(CredDeletedEvent{TokenInfo: f, Outcome: d.Outcome.String()})
	default:
		ev.emit(CredOptOutEvent{TokenInfo: f, Outcome: d.Outcome.String(), Field: cfg.Creds.Field})
	}
	return client, nil
}

// expiryPlanNote says, for the dry run, how far the expiry is and what a real run would report
// at its start.
func expiryPlanNote(now time.Time, exp creds.Expiry) string {
	n, _ := creds.CheckExpiry(now, exp.At, 0)
	switch {
	case n.Expired:
		return fmt.Sprintf("expired %s: a real run reports credential_expired", ago(-n.Left))
	case n.Due():
		return fmt.Sprintf("in %s: a real run reports credential_expiring (the %d-day threshold)", left(n.Left), int(n.Threshold/(24*time.Hour)))
	}
	return "in " + left(n.Left)
}

// failureNote is the message of credential_failed: the Vault error, and why no materialized
// token takes its place.
func failureNote(envFile string, cached creds.Secret, cachedErr, err error) string {
	switch {
	case errors.Is(cachedErr, fs.ErrNotExist):
		return fmt.Sprintf("cannot resolve the token, and no earlier one is materialized at %s: %v", envFile, err)
	case cachedErr != nil:
		return fmt.Sprintf("cannot resolve the token, and the one materialized at %s cannot be used (%v): %v", envFile, cachedErr, err)
	case errors.Is(err, creds.ErrConfig) && !cached.IsZero():
		return fmt.Sprintf("cannot resolve the token: %v; the token materialized at %s is not used in its place, because a configuration error must be fixed, not outlived", err, envFile)
	}
	return fmt.Sprintf("cannot resolve the token: %v", err)
}

// planCgroup checks the delegated cgroup (read-only) and computes the writes of a real run; the
// tree it found (nil: none) is for the run to apply them to.
func (p *plan) planCgroup(cfg *config) (*cgroup.Tree, error) {
	p.Cgroup.LeafSteps = []cgroup.Step{}
	if cfg.NoCgroup {
		p.Cgroup.Mode = "disabled (--no-cgroup)"
		return nil, nil
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, &runError{"cgroup", exitCgroup, err}
	}
	defer f.Close()
	tree, err := cgroup.Discover(f, cgroup.Options{})
	if err != nil {
		p.Cgroup.Mode = "unavailable"
		return nil, &runError{"cgroup", exitCgroup, err}
	}
	p.Cgroup = cgroupPlan{
		Mode: "delegated", Base: tree.Dir("."), Steps: cgroup.Plan(cfg.Limits),
		LeafSteps: cgroup.LeafSteps(cfg.Limits), ShimDir: cfg.ShimDir, Shims: cfg.AgentNames,
	}
	if p.Cgroup.LeafSteps == nil {
		p.Cgroup.LeafSteps = []cgroup.Step{}
	}
	p.Cgroup.PressureKill = "on"
	switch {
	case cfg.Watch.PressureWindow <= 0:
		p.Cgroup.PressureKill = "off (--pressure-window 0)"
	case cfg.Limits.MemoryHigh.IsMax():
		p.Cgroup.PressureKill = "off (--memory-high max)"
	default:
		// The unit's own cgroup has memory.pressure exactly when agents/ will (PSI is on for
		// every cgroup or for none).
		if err := tree.PressureAvailable("."); err != nil {
			p.Cgroup.PressureKill = "unavailable: " + err.Error()
		} else if cfg.DryRun {
			m := tree.ProbePSI(cfg.Watch)
			p.Cgroup.PSIMode = &m
		}
	}
	return tree, nil
}

func (p *plan) buildCommand(cfg *config, ev *events) error {
	set := map[string]string{}
	if !cfg.NoCgroup {
		// The shims go first on t3's PATH; the agents' oom_score_adj rides along for the shim.
		set["PATH"] = p.Cgroup.ShimDir + string(os.PathListSeparator) + cfg.getenv("PATH")
		set[shimAdjVar] = strconv.Itoa(cfg.Watch.AgentOOMAdj)
		set[shimDirVar] = p.Cgroup.ShimDir
	}
	if !p.decision.Inject.IsZero() {
		set[tokenVar] = p.decision.Inject.Reveal()
	}
	parent, alsoDropped := cfg.environ, []string(nil)
	if inherited, ok := supervise.Lookup(parent, tokenVar); ok {
		// Only the user's own path may supply the token (the old unit's EnvironmentFile= loaded
		// claude-oauth.env, so an inherited copy of that is expected and harmless).
		if inherited == p.decision.Inject.Reveal() && !p.decision.Inject.IsZero() {
			p.Credential.Inherited = "same as the user's own (replaced)"
		} else {
			p.Credential.Inherited = "dropped"
			alsoDropped = append(alsoDropped, tokenVar)
			ev.emit(InheritedDroppedEvent{Fingerprint: creds.NewSecret(inherited).Fingerprint(), Path: p.Credential.Path})
		}
		// Whatever --env-allow says: let through, it would reach an opted-out user's claude,
		// which prefers it to the user's own login.
		parent = without(parent, tokenVar)
	}
	env, dropped := supervise.BuildEnv(parent, cfg.EnvAllow, set)
	if !p.decision.Inject.IsZero() {
		env, p.Credential.Outranking = p.dropOutranking(env, ev)
		alsoDropped = append(alsoDropped, p.Credential.Outranking...)
	}
	dropped = append(dropped, alsoDropped...)
	sort.Strings(dropped)
	p.env, p.EnvDropped = env, dropped
	if p.EnvDropped == nil {
		p.EnvDropped = []string{}
	}
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if secretName.MatchString(name) {
			p.Env = append(p.Env, envVar{Name: name, Redacted: true})
		} else {
			p.Env = append(p.Env, envVar{Name: name, Value: val})
		}
	}
	bin, err := supervise.LookPath(cfg.T3Bin, env)
	if err != nil {
		var se *supervise.StartError
		code := exitNotFound
		if errors.As(err, &se) {
			code = se.Code
		}
		p.Argv = append([]string{cfg.T3Bin}, cfg.T3Args...)
		return &runError{"exec", code, err}
	}
	p.Argv = append([]string{bin}, cfg.T3Args...)
	return nil
}

// dropOutranking removes the outranking variables from env, with a warning for each: the
// user's token is injected, and they would make claude use another credential instead. For an
// opted-out user (nothing injected) they stay: an API key the operator lets through is then that
// user's normal credential.
func (p *plan) dropOutranking(env []string, ev *events) (kept, removed []string) {
	removed = []string{}
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if !slices.Contains(outranking, name) {
			kept = append(kept, kv)
			continue
		}
		removed = append(removed, name)
		x := OverrideDroppedEvent{Name: name}
		if val != "" {
			x.Fingerprint = creds.NewSecret(val).Fingerprint()
		}
		ev.emit(x)
	}
	return kept, removed
}

// without returns env (KEY=VALUE entries) without the entries of name.
func without(env []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
}

// secretName matches variables whose value the dry-run must not print.
var secretName = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|COOKIE|SESSION)`)

func (p *plan) print(w io.Writer, asJSON bool) {
	p = p.redacted()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p)
		return
	}
	c := p.Credential
	fmt.Fprintf(w, "t3-supervise dry run for user %s: nothing was written, started or moved\n\n", p.User)
	fmt.Fprintf(w, "credential\n")
	fmt.Fprintf(w, "  outcome     %s (from %s)\n", c.Outcome, c.From)
	fmt.Fprintf(w, "  vault       %s  %s", c.VaultAddr, c.Path)
	if c.Mount != "" {
		fmt.Fprintf(w, "  (mount %s, KV v%d", c.Mount, c.KVVersion)
		if c.MountGuess {
			fmt.Fprint(w, ", mount guessed: Vault refused sys/internal/ui/mounts")
		}
		if c.Version > 0 {
			fmt.Fprintf(w, ", version %d", c.Version)
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	if c.Auth != "" {
		fmt.Fprintf(w, "  auth        %s %s\n", c.Auth, c.TokenFile)
	}
	if c.Fingerprint != "" {
		fmt.Fprintf(w, "  token       %s\n", c.Fingerprint)
	}
	if c.ExpiresAt != nil {
		fmt.Fprintf(w, "  expires     %s (from %s; %s)\n", c.ExpiresAt.Format(time.RFC3339), c.ExpirySource, p.expiryNote)
	}
	if c.ExpiryWarning != "" {
		fmt.Fprintf(w, "  expiry      %s\n", c.ExpiryWarning)
	}
	if c.Fallback != "" {
		fmt.Fprintf(w, "  fallback    %s\n", c.Fallback)
	}
	fmt.Fprintf(w, "  inherited   %s: %s\n", tokenVar, c.Inherited)
	if len(c.Outranking) > 0 {
		fmt.Fprintf(w, "  outranking  %s: dropped (claude would use them instead of the injected %s)\n", strings.Join(c.Outranking, ", "), tokenVar)
	}
	if p.EnvFile.Action != "" {
		fmt.Fprintf(w, "env file\n")
		for _, d := range p.EnvFile.Mkdir {
			fmt.Fprintf(w, "  %-11s %s (mode 0700)\n", "mkdir", d)
		}
		fmt.Fprintf(w, "  %-11s %s\n", p.EnvFile.Action, p.EnvFile.Path)
		if p.EnvFile.Reason != "" {
			fmt.Fprintf(w, "  %-11s %s\n", "because", p.EnvFile.Reason)
		}
	}
	if len(p.Argv) > 0 {
		fmt.Fprintf(w, "command\n  argv        %s\n", strings.Join(quoteAll(p.Argv), " "))
	}
	for i, e := range p.Env {
		label := ""
		if i == 0 {
			label = "environment"
		}
		val := e.Value
		if e.Redacted {
			val = "<redacted>"
		}
		fmt.Fprintf(w, "  %-11s %s=%s\n", label, e.Name, val)
	}
	if len(p.EnvDropped) > 0 {
		fmt.Fprintf(w, "  not passed  %s\n", strings.Join(p.EnvDropped, " "))
	}
	if p.Cgroup.Mode != "" {
		fmt.Fprintf(w, "cgroup\n  mode        %s\n", p.Cgroup.Mode)
		if p.Cgroup.Base != "" {
			fmt.Fprintf(w, "  base        %s\n", p.Cgroup.Base)
		}
		for _, s := range p.Cgroup.Steps {
			fmt.Fprintf(w, "  %-11s %s\n", "", s)
		}
		for _, s := range p.Cgroup.LeafSteps {
			fmt.Fprintf(w, "  %-11s on each agent leaf: %s\n", "", s)
		}
		if len(p.Cgroup.Shims) > 0 {
			fmt.Fprintf(w, "  shims       %s in %s\n", strings.Join(p.Cgroup.Shims, ", "), p.Cgroup.ShimDir)
		}
		if p.Cgroup.PressureKill != "" {
			fmt.Fprintf(w, "  pressure    kill %s\n", p.Cgroup.PressureKill)
		}
		if m := p.Cgroup.PSIMode; m != nil {
			fmt.Fprintf(w, "  psi         %s: %s\n", m.Mode, m.Reason)
		}
	}
	if p.Failure != nil {
		fmt.Fprintf(w, "\nA real run would FAIL (%s, exit %d): %s\n", p.Failure.Class, p.Failure.ExitCode, p.Failure.Error)
	} else {
		fmt.Fprintf(w, "\nA real run would start the command above.\n")
	}
}

func quoteAll(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			a = fmt.Sprintf("%q", a)
		}
		out[i] = a
	}
	return out
}
