//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	passwd "github.com/moby/sys/user"
	"github.com/spf13/pflag"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
	"t3-supervise/supervise"
)

// config is every setting of one run, validated once and passed down.
type config struct {
	User        string
	Home        string
	T3Bin       string
	T3Args      []string
	Port        int    // the port t3 serve listens on (from --port in T3Args, else T3_PORT); 0 = unknown
	Host        string // the address t3 serve listens on (--host in T3Args, else T3CODE_HOST); "" = t3's default
	Creds       creds.Config
	EnvFile     string
	EnvAllow    []string
	StopTimeout time.Duration
	DryRun      bool
	JSON        bool
	NoCgroup    bool
	Limits      cgroup.Limits
	Watch       cgroup.WatchConfig
	AgentNames  []string
	ShimDir     string
	Health      healthConfig
	RuntimeDir  string // $RUNTIME_DIRECTORY: where the last kills are kept for `status`
	Rotation    rotationConfig
	Activity    cgroup.ActivityPolicy // when the agents are busy: the when-idle gate and status
	Upgrade     string                // --restart-on-upgrade: when-idle or never (upgrade.go)
	PSITrigger  string                // --psi-trigger: auto or off (cgroup/psi_linux.go)
	// TokenLifetime: a token without custom_metadata.expires_at expires this long after its KV
	// version was written.
	TokenLifetime time.Duration

	environ []string         // the supervisor's own environment, KEY=VALUE
	now     func() time.Time // the clock of the token expiry policy (expiryClockEnv)
	dropTo  *user.User       // started as root with --user: the user to become first
}

// healthConfig says how the server is probed (GET / on t3's --host, loopback for a wildcard).
type healthConfig struct {
	ReadyTimeout   time.Duration // from start to the first answer, else exit 75
	ProbeInterval  time.Duration // between probes once ready
	ProbeTimeout   time.Duration // one probe
	LivenessWindow time.Duration // without an answer after ready, else stop and exit 75; 0 = never
}

// rotationConfig says how a running supervisor follows changes of the token in Vault.
type rotationConfig struct {
	Interval time.Duration // between re-reads (with a per-user offset); 0 = never
	Restart  supervise.RestartPolicy
	Idle     time.Duration // when-idle: no agent running for this long

	restartFlag string // --restart-on-rotation as given, parsed into Restart
}

// Defaults of the limits follow the old unit (MemoryHigh=12G, MemoryMax=16G, MemorySwapMax=0),
// with memory.high moved from the whole unit to agents/ so that throttling never reaches the
// server (the 2026-07-02 livelock).
const (
	defaultMemoryMax       = "16G"
	defaultMemoryHigh      = "12G"
	defaultServerMemoryLow = "1G"
	defaultAgentOOMAdj     = 500
)

func (c *config) getenv(name string) string {
	v, _ := supervise.Lookup(c.environ, name)
	return v
}

// usageError is a command-line mistake: exit 64 and point at --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// configError is a setting that cannot work: exit 78 before anything starts.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func configErrorf(format string, a ...any) error { return configError{fmt.Errorf(format, a...)} }

const defaultStopTimeout = 20 * time.Second

// refreshFloor is the shortest --refresh-interval: every user's supervisor on a machine re-reads
// from the one fleet Vault, and a typo such as 10ms would be a request storm against it. A
// string so that tests can lower it at build time (go build -ldflags
// "-X main.refreshFloor=1s", the containerboot idiom) without a flag an operator could set.
var refreshFloor = "1m"

// expiryClockEnv is empty in every build but the tests': there (go build -ldflags
// "-X main.expiryClockEnv=NAME") it names a variable holding a duration by which the clock of
// the token expiry policy runs ahead of the wall clock, so that an end-to-end test can put a
// supervisor a year after a token was written in Vault (KV v2 sets created_time itself, it cannot
// be back-dated) without waiting a year. An operator's binary reads no such variable.
var expiryClockEnv = ""

// flagSet defines every flag; its FlagUsages is the FLAGS section of --help.
func flagSet(c *config, rawEnvAllow *[]string, extraEnvAllow *[]string, tokenFile *string, output *string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t3-supervise", pflag.ContinueOnError)
	fs.SortFlags = false
	// Everything from the first non-flag word on is t3's (so `t3-supervise --user alice serve ...`
	// works as well as the documented `-- serve ...`).
	fs.SetInterspersed(false)
	fs.StringVar(&c.User, "user", "", "the user whose own token to resolve; must be the user this runs as, or, started as root, the user to drop to (default: the current user; never root)")
	fs.StringVar(&c.T3Bin, "t3-bin", "t3", "the t3 program, looked up on the child's PATH unless it contains a '/'")
	fs.StringVar(&c.Creds.PathTemplate, "vault-path-template", creds.DefaultPathTemplate, "Vault KV v2 path of the user's secret; must contain {user} (a shared token is forbidden)")
	fs.StringVar(&c.Creds.Field, "vault-field", creds.DefaultField, "field of the secret that holds the setup token")
	fs.StringVar(tokenFile, "vault-token-file", "", "file holding the Vault token, read as the user: a regular file, never through a symlink (default: $CREDENTIALS_DIRECTORY/vault-token when systemd put one there, else ~/.config/claude-auth-sync/vault-token)")
	fs.StringVar(&c.Creds.AppRoleRoleID, "approle-role-id", "", "AppRole role id, used when no token file and no VAULT_TOKEN is available")
	fs.StringVar(&c.Creds.AppRoleSecretIDFile, "approle-secret-id-file", "", "file holding the AppRole secret id")
	fs.StringVar(&c.Creds.PolicyTemplate, "vault-policy-template", "", "if set (e.g. workstation-claude-{user}), refuse a Vault token whose policies lack this one (a foreign token)")
	fs.DurationVar(&c.Creds.Timeout, "vault-timeout", 10*time.Second, "bound on one whole credential resolution (login and read)")
	fs.StringVar(&c.EnvFile, "env-file", "", "where the token is materialized for the user's other sessions, mode 0600; missing directories are created 0700, an existing one keeps its mode and must not be writable by group or others (default: ~/.config/claude-auth-sync/claude-oauth.env)")
	fs.StringSliceVar(rawEnvAllow, "env-allow", supervise.DefaultAllow, "variables passed from this environment to t3 (NAME or PREFIX*); replaces the default list")
	fs.StringSliceVar(extraEnvAllow, "env-allow-extra", nil, "variables passed in addition to --env-allow")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", defaultStopTimeout, "grace period between SIGTERM to t3 and SIGKILL to everything it spawned; keep it below the unit's TimeoutStopSec")
	fs.BoolVar(&c.NoCgroup, "no-cgroup", false, "run without a cgroup subtree (no memory limits, no agent placement; stop kills the process tree instead)")
	mustSet(&c.Limits.MemoryMax, defaultMemoryMax)
	mustSet(&c.Limits.MemoryHigh, defaultMemoryHigh)
	mustSet(&c.Limits.ServerMemoryLow, defaultServerMemoryLow)
	fs.Var(&c.Limits.MemoryMax, "memory-max", "memory.max of workload/ (server and agents together): 12G, 512M, bytes or max")
	fs.Var(&c.Limits.MemoryHigh, "memory-high", "memory.high of workload/agents/: agents are throttled above it, and killed on sustained pressure")
	fs.Var(&c.Limits.ServerMemoryLow, "server-memory-low", "memory.low of workload/server/: memory the server keeps under reclaim")
	fs.Var(&c.Limits.AgentMemoryMax, "agent-memory-max", "memory.max of each agent's leaf (default: none)")
	fs.Int64Var(&c.Limits.PidsMax, "pids-max", 0, "pids.max of workload/agents/: tasks all agents together may have, so a fork bomb cannot reach the server (0: no limit)")
	fs.BoolVar(&c.Limits.AgentOOMGroup, "agent-oom-group", false, "an OOM or pressure kill takes the agent's whole process tree (memory.oom.group=1 on its leaf), not only the runaway process")
	fs.IntVar(&c.Watch.AgentOOMAdj, "agent-oom-score-adj", defaultAgentOOMAdj, "oom_score_adj of agent processes (the server keeps its own, lower one)")
	fs.DurationVar(&c.Watch.PressureWindow, "pressure-window", 10*time.Second, "kill the largest agent process after agents/ stayed over memory.high this long (0: never)")
	fs.Float64Var(&c.Watch.PressureStall, "pressure-stall", 0.25, "... and was stalled on memory at least this share of the time (0-1, memory.pressure some)")
	fs.DurationVar(&c.Watch.KillGrace, "kill-grace", 5*time.Second, "SIGTERM to SIGKILL for a pressure kill")
	fs.DurationVar(&c.Watch.SampleInterval, "sample-interval", time.Second, "how often memory and pressure are sampled")
	fs.StringVar(&c.PSITrigger, "psi-trigger", "auto", "auto: a PSI trigger on agents/memory.pressure wakes the watch when pressure builds, and it samples 5 times less often while nothing is near a limit (where the kernel refuses the trigger, it samples as with off, and --dry-run and status say why); off: sample at --sample-interval always")
	fs.DurationVar(&c.Watch.PlaceInterval, "place-interval", 100*time.Millisecond, "how often server/ is checked for agents spawned around the shim")
	fs.DurationVar(&c.Health.ReadyTimeout, "ready-timeout", 2*time.Minute, "how long t3 may take to answer GET / after it started (READY=1 is sent then); longer and it is stopped, exit 75")
	fs.DurationVar(&c.Health.ProbeInterval, "probe-interval", 10*time.Second, "between liveness probes (GET / on t3's --host and port; loopback when it listens on every interface); WATCHDOG=1 follows each answer")
	fs.DurationVar(&c.Health.ProbeTimeout, "probe-timeout", 5*time.Second, "how long one probe waits for an answer")
	fs.DurationVar(&c.Health.LivenessWindow, "liveness-window", time.Minute, "stop t3 and exit 75 after it answered no probe for this long (0: never)")
	fs.DurationVar(&c.Rotation.Interval, "refresh-interval", time.Hour, "re-read the token from Vault this often (each user at its own offset), at least "+refreshFloor+"; SIGHUP re-reads at once; 0: never")
	fs.StringVar(&c.Rotation.restartFlag, "restart-on-rotation", "never", "when the token in Vault changes: never (t3 keeps the old one until it restarts), when-idle (once the agents have been idle for --rotation-idle, see --busy-cpu), always; a restart is an exit 76 for systemd to restart the unit")
	fs.DurationVar(&c.Rotation.Idle, "rotation-idle", 5*time.Minute, "for --restart-on-rotation=when-idle and --restart-on-upgrade=when-idle: how long the agents must have been idle (see --busy-cpu)")
	fs.StringVar(&c.Upgrade, "restart-on-upgrade", "when-idle", "when the t3-supervise binary is replaced (a package upgrade): when-idle (once the agents have been idle for --rotation-idle, see --busy-cpu), never (only when asked: systemctl reload); a restart is an exit 73 for systemd to start the new binary")
	fs.DurationVar(&c.Activity.CPU, "busy-cpu", cgroup.DefaultActivity.CPU, "the agents are busy while one agent's leaf, seen for --busy-min-age, used more CPU time than this in the last --busy-window (cpu.stat)")
	fs.DurationVar(&c.Activity.Window, "busy-window", cgroup.DefaultActivity.Window, "see --busy-cpu")
	fs.DurationVar(&c.Activity.MinAge, "busy-min-age", cgroup.DefaultActivity.MinAge, "leaves seen for less than this do not count as busy (T3's account probe), and hold a when-idle restart back")
	fs.DurationVar(&c.TokenLifetime, "token-lifetime", creds.DefaultTokenLifetime, "when the secret's custom_metadata has no expires_at: the token is taken to expire this long after its KV version was written (created_time); claude setup-token makes one-year tokens")
	fs.StringSliceVar(&c.AgentNames, "agent-names", []string{"claude", "codex"}, "programs t3 spawns as agents: a shim of each name, first on t3's PATH, puts every agent in its own cgroup")
	fs.StringVar(&c.ShimDir, "shim-dir", "", "directory for the agent shims (default: $RUNTIME_DIRECTORY/shim, else $XDG_RUNTIME_DIR/t3-supervise/shim, else ~/.cache/t3-supervise/shim)")
	fs.BoolVar(&c.DryRun, "dry-run", false, "resolve everything (Vault included), print what a real run would do, change nothing")
	fs.StringVar(output, "output", "text", "dry-run output format: text or json")
	return fs
}

// parseConfig turns the command line and environment into a validated config.
func parseConfig(args []string, environ []string, stderr io.Writer) (*config, error) {
	c := &config{environ: environ}
	var rawAllow, extraAllow []string
	var tokenFile, output string
	fs := flagSet(c, &rawAllow, &extraAllow, &tokenFile, &output)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	c.T3Args = fs.Args()
	if len(c.T3Args) == 0 {
		c.T3Args = []string{"serve"}
	}
	switch output {
	case "text":
	case "json":
		c.JSON = true
	default:
		return nil, usageError{fmt.Errorf("--output %q: want text or json", output)}
	}
	c.EnvAllow = append(rawAllow, extraAllow...)
	for _, p := range c.EnvAllow {
		if err := supervise.ValidatePattern(p); err != nil {
			return nil, usageError{fmt.Errorf("--env-allow: %w", err)}
		}
	}
	if c.StopTimeout <= 0 {
		return nil, usageError{fmt.Errorf("--stop-timeout %v: must be positive", c.StopTimeout)}
	}
	if err := c.Limits.Validate(); err != nil {
		return nil, usageError{err}
	}
	if c.Watch.AgentOOMAdj < -1000 || c.Watch.AgentOOMAdj > 1000 {
		return nil, usageError{fmt.Errorf("--agent-oom-score-adj %d: want -1000..1000", c.Watch.AgentOOMAdj)}
	}
	if c.Watch.PressureStall < 0 || c.Watch.PressureStall > 1 {
		return nil, usageError{fmt.Errorf("--pressure-stall %v: want a share between 0 and 1", c.Watch.PressureStall)}
	}
	for name, d := range map[string]time.Duration{"--pressure-window": c.Watch.PressureWindow, "--kill-grace": c.Watch.KillGrace,
		"--sample-interval": c.Watch.SampleInterval, "--place-interval": c.Watch.PlaceInterval,
		"--ready-timeout": c.Health.ReadyTimeout, "--probe-interval": c.Health.ProbeInterval,
		"--probe-timeout": c.Health.ProbeTimeout, "--liveness-window": c.Health.LivenessWindow} {
		if d < 0 || (d == 0 && name != "--pressure-window" && name != "--liveness-window") {
			return nil, usageError{fmt.Errorf("%s %v: must be positive", name, d)}
		}
	}
	for _, n := range c.AgentNames {
		if n == "" || strings.ContainsAny(n, "/\x00") || n == "." || n == ".." {
			return nil, usageError{fmt.Errorf("--agent-names: %q is not a program name", n)}
		}
	}
	var err error
	if c.Rotation.Restart, err = supervise.ParseRestartPolicy(c.Rotation.restartFlag); err != nil {
		return nil, usageError{fmt.Errorf("--restart-on-rotation %w", err)}
	}
	switch c.PSITrigger {
	case "auto":
	case "off":
		c.Watch.PSITriggerOff = true
	default:
		return nil, usageError{fmt.Errorf("--psi-trigger %q: want auto or off", c.PSITrigger)}
	}
	switch c.Upgrade {
	case "never", "when-idle":
	default:
		// No "always": the promise is that an upgrade never kills a busy session. An operator
		// who wants that runs systemctl restart.
		return nil, usageError{fmt.Errorf("--restart-on-upgrade %q: want when-idle or never", c.Upgrade)}
	}
	if c.Rotation.Interval < 0 || c.Rotation.Idle < 0 {
		return nil, usageError{fmt.Errorf("--refresh-interval and --rotation-idle must not be negative")}
	}
	if c.Activity.CPU <= 0 || c.Activity.Window <= 0 || c.Activity.MinAge < 0 {
		return nil, usageError{fmt.Errorf("--busy-cpu and --busy-window must be positive, --busy-min-age not negative")}
	}
	if floor, err := time.ParseDuration(refreshFloor); err != nil {
		return nil, fmt.Errorf("refreshFloor %q (set at build time): %w", refreshFloor, err)
	} else if c.Rotation.Interval > 0 && c.Rotation.Interval < floor {
		return nil, usageError{fmt.Errorf("--refresh-interval %v: want at least %v (or 0 for never); SIGHUP re-reads at once", c.Rotation.Interval, floor)}
	}
	if c.TokenLifetime <= 0 {
		return nil, usageError{fmt.Errorf("--token-lifetime %v: must be positive", c.TokenLifetime)}
	}
	c.now = time.Now
	if expiryClockEnv != "" {
		if v := c.getenv(expiryClockEnv); v != "" {
			ahead, err := time.ParseDuration(v)
			if err != nil {
				return nil, fmt.Errorf("%s %q (the test clock, enabled at build time): %w", expiryClockEnv, v, err)
			}
			c.now = func() time.Time { return time.Now().Add(ahead) }
		}
	}
	c.Watch.Limits = c.Limits
	if c.Creds.Timeout <= 0 {
		return nil, usageError{fmt.Errorf("--vault-timeout %v: must be positive", c.Creds.Timeout)}
	}

	if err := c.resolveUser(); err != nil {
		return nil, err
	}
	c.Creds.User = c.User
	c.Creds.Getenv = c.getenv
	if _, err := c.Creds.SecretPath(); err != nil {
		return nil, configError{fmt.Errorf("--vault-path-template: %w", err)}
	}
	c.Creds.TokenFile, c.Creds.TokenFileExplicit = tokenFile, tokenFile != ""
	if tokenFile == "" {
		c.Creds.TokenFile = filepath.Join(c.Home, ".config", "claude-auth-sync", "vault-token")
		// An operator's LoadCredential=vault-token:/ROOT-OWNED/PATH puts it here
		// (systemd.exec(5), "Credentials"). The unit does not load it from the user's home:
		// systemd reads LoadCredential= as root and follows symlinks, so a user could link
		// the path to another user's token. The supervisor reads the home file itself, as
		// the user. Another credential of the unit's must not hide the home file.
		if dir := c.getenv("CREDENTIALS_DIRECTORY"); dir != "" {
			if _, err := os.Lstat(filepath.Join(dir, "vault-token")); err == nil {
				c.Creds.TokenFile = filepath.Join(dir, "vault-token")
			}
		}
	}
	if (c.Creds.AppRoleRoleID == "") != (c.Creds.AppRoleSecretIDFile == "") {
		return nil, usageError{errors.New("--approle-role-id and --approle-secret-id-file go together")}
	}
	if c.EnvFile == "" {
		c.EnvFile = filepath.Join(c.Home, ".config", "claude-auth-sync", "claude-oauth.env")
	}
	if dir := c.getenv("RUNTIME_DIRECTORY"); dir != "" {
		c.RuntimeDir = strings.SplitN(dir, ":", 2)[0]
	}
	if c.ShimDir == "" {
		switch {
		case c.getenv("RUNTIME_DIRECTORY") != "":
			// RuntimeDirectory= in the unit: the user's, private, removed by systemd on stop.
			c.ShimDir = filepath.Join(strings.SplitN(c.getenv("RUNTIME_DIRECTORY"), ":", 2)[0], "shim")
		case c.getenv("XDG_RUNTIME_DIR") != "":
			c.ShimDir = filepath.Join(c.getenv("XDG_RUNTIME_DIR"), "t3-supervise", "shim")
		default:
			c.ShimDir = filepath.Join(c.Home, ".cache", "t3-supervise", "shim")
		}
	}
	// Relative paths would resolve against whatever directory the unit happens to start in.
	for flag, path := range map[string]string{"--vault-token-file": tokenFile, "--env-file": c.EnvFile,
		"--shim-dir": c.ShimDir, "--approle-secret-id-file": c.Creds.AppRoleSecretIDFile} {
		if path != "" && !filepath.IsAbs(path) {
			return nil, usageError{fmt.Errorf("%s %q: want an absolute path", flag, path)}
		}
	}
	port, host, err := t3Address(c.T3Args, c.environ, c.EnvAllow)
	if err != nil {
		return nil, configError{err}
	}
	c.Port, c.Host = port, host
	if wd, err := daemon.SdWatchdogEnabled(false); err == nil && wd > 0 && c.Port == 0 {
		// WATCHDOG=1 follows an answered probe and nothing else; with no port there is no probe,
		// and systemd would kill a healthy unit every WatchdogSec (sd_watchdog_enabled(3)).
		return nil, configErrorf("WatchdogSec= is set (WATCHDOG_USEC, %v) but no port is known to probe: give t3 --port (the unit passes --port ${T3_PORT}) or set T3_PORT, or drop WatchdogSec=", wd)
	}
	return c, nil
}

// t3Address is the port and address t3 will listen on, from its arguments and what reaches it
// of environ through the allowlist: T3CODE_PORT and T3CODE_HOST are t3's own variables for
// --port and --host (apps/server/src/cli.ts), and count only if t3 gets them.
func t3Address(args, environ, allow []string) (port int, host string, err error) {
	childEnv, _ := supervise.BuildEnv(environ, allow, nil)
	t3codePort, _ := supervise.Lookup(childEnv, "T3CODE_PORT")
	t3Port, _ := supervise.Lookup(environ, "T3_PORT")
	if port, err = portOf(args, t3codePort, t3Port); err != nil {
		return 0, "", err
	}
	host, found := flagValue(args, "--host")
	if !found {
		host, _ = supervise.Lookup(childEnv, "T3CODE_HOST")
	}
	return port, host, nil
}

// resolveUser settles --user and HOME. The supervisor resolves the token of the user it runs
// as and nobody else's: a process that could read another user's Vault path would be exactly
// the shared-token setup the design forbids. It never runs t3 and its agents as root: started
// as root with --user NAME it drops to that user before anything else (dropTo), and without
// one it refuses.
func (c *config) resolveUser() error {
	me, err := user.Current()
	if err != nil {
		return configErrorf("cannot look up the current user: %v", err)
	}
	if c.User == "" {
		c.User = me.Username
	}
	home := c.getenv("HOME")
	if me.Uid == "0" {
		if c.User == me.Username {
			return configErrorf("refusing to run t3 and its agents as root: run the unit with User=USER (t3-supervise@USER.service does), or pass --user USER to drop to that user")
		}
		target, err := user.Lookup(c.User)
		if err != nil {
			return configErrorf("--user %s: %v", c.User, err)
		}
		if target.Uid == "0" {
			return configErrorf("--user %s: refusing a user with uid 0", c.User)
		}
		if target.Gid == "0" {
			return configErrorf("--user %s: refusing a user whose primary group is 0 (root): t3, its agents and every file they create would carry group root", c.User)
		}
		c.dropTo = target
		if home == "" || home == me.HomeDir {
			home = target.HomeDir // the caller's HOME is root's, not the user's
		}
		if err := c.becomeIdentity(target, home); err != nil {
			return err
		}
	} else if c.User != me.Username {
		return configErrorf("--user %s but running as %s: run the unit with User=%s (t3-supervise@%s.service)", c.User, me.Username, c.User, c.User)
	} else if os.Getgid() == 0 || os.Getegid() == 0 {
		return configErrorf("--user %s runs with group 0 (root): set Group= in the unit to the user's own group (t3-supervise@%s.service has Group=%s)", c.User, c.User, c.User)
	}
	c.Home = home
	if c.Home == "" {
		c.Home = me.HomeDir
	}
	if !filepath.IsAbs(c.Home) {
		return configErrorf("HOME %q is not an absolute path", c.Home)
	}
	return nil
}

// becomeIdentity replaces root's identity variables in the environment with the user's, as
// login(1) and systemd's User= do (systemd.exec(5), "Environment Variables in Spawned
// Processes"): HOME, USER, LOGNAME and SHELL from the passwd entry, so that t3 and claude do not
// look for their state under /root. XDG_RUNTIME_DIR stays only when it really is the user's
// directory (root's /run/user/0 is not); else it becomes /run/user/UID if that is the user's,
// else it is dropped. What follows (the shim directory, t3's environment) reads these.
func (c *config) becomeIdentity(u *user.User, home string) error {
	pw, err := passwd.LookupUser(u.Username)
	if err != nil {
		return configErrorf("--user %s: reading the passwd entry: %v", u.Username, err)
	}
	shell := pw.Shell
	if shell == "" {
		shell = "/bin/sh" // an empty shell field means /bin/sh (passwd(5))
	}
	set := map[string]string{"HOME": home, "USER": u.Username, "LOGNAME": u.Username, "SHELL": shell}
	if dir := c.getenv("XDG_RUNTIME_DIR"); dir != "" && ownedDir(dir, pw.Uid) {
		set["XDG_RUNTIME_DIR"] = dir
	} else if dir := fmt.Sprintf("/run/user/%d", pw.Uid); ownedDir(dir, pw.Uid) {
		set["XDG_RUNTIME_DIR"] = dir
	}
	env := make([]string, 0, len(c.environ)+len(set))
	for _, kv := range c.environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, replaced := set[name]; !replaced && name != "XDG_RUNTIME_DIR" {
			env = append(env, kv)
		}
	}
	for name, v := range set {
		env = append(env, name+"="+v)
	}
	c.environ = env
	return nil
}

// ownedDir reports whether path is a directory (not a symlink to one) owned by uid.
func ownedDir(path string, uid int) bool {
	st, err := os.Lstat(path)
	if err != nil || !st.IsDir() {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == uid
}

// dropPrivileges becomes the user: supplementary groups, group, user, in that order (after
// setuid there is no permission left to change groups). Go applies each to every thread of the
// process (syscall.AllThreadsSyscall, Go 1.16+).
func dropPrivileges(u *user.User) error {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s: uid %q gid %q", u.Username, u.Uid, u.Gid)
	}
	var groups []int
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.Atoi(id); err == nil {
				groups = append(groups, g)
			}
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups for %s: %w", u.Username, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if os.Geteuid() != uid || os.Getegid() != gid {
		return fmt.Errorf("still uid %d gid %d after dropping to %s", os.Geteuid(), os.Getegid(), u.Username)
	}
	return nil
}

// portOf finds the port t3 will listen on, in t3's own order (resolveServerConfig in
// apps/server/src/cli.ts): its --port argument, else T3CODE_PORT in its environment (t3codePort:
// the value that reaches t3, "" when unset or not let through); T3_PORT, the unit's variable
// that t3 never reads itself, comes last, for a unit that passes it some other way. The old unit
// ran `t3 serve --port ${T3_PORT}`: with T3_PORT empty systemd passes an empty word (or,
// unbraced, none at all) and t3 would fall back to a default port or fail later in a way nobody
// connects to the missing variable. Catch it here, before anything starts, and name the variable.
func portOf(args []string, t3codePort, t3Port string) (int, error) {
	if v, found := flagValue(args, "--port"); found {
		return parsePort(v, "t3 argument --port")
	}
	if t3codePort != "" {
		return parsePort(t3codePort, "T3CODE_PORT")
	}
	if t3Port == "" {
		return 0, nil
	}
	return parsePort(t3Port, "T3_PORT")
}

// flagValue finds `NAME VALUE` or `NAME=VALUE` among t3's arguments, before a "--". A next word
// that starts with "--" is not a value: `--port ${T3_PORT}` with T3_PORT empty and unbraced
// leaves none (found, "").
func flagValue(args []string, name string) (v string, found bool) {
	for i, a := range args {
		switch {
		case a == "--":
			return "", false
		case a == name:
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				return args[i+1], true
			}
			return "", true
		case strings.HasPrefix(a, name+"="):
			return strings.TrimPrefix(a, name+"="), true
		}
	}
	return "", false
}

func parsePort(v, what string) (int, error) {
	if strings.TrimSpace(v) == "" {
		return 0, fmt.Errorf("%s is empty: T3_PORT is empty or unset (the unit reads it from EnvironmentFile=/etc/t3-serve/%%i.env)", what)
	}
	if strings.Contains(v, "$") {
		return 0, fmt.Errorf("%s is %q: a variable was not expanded (is T3_PORT set in the unit's EnvironmentFile?)", what, v)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s is %q: want a port number 1-65535", what, v)
	}
	return n, nil
}

func mustSet(s *cgroup.Size, v string) {
	if err := s.Set(v); err != nil {
		panic(err)
	}
}
