package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The roles the binary plays (see the package doc).
const (
	roleServer  = "t3"
	roleAgent   = "claude"
	roleTool    = "tool"
	roleSleeper = "sleeper"
)

// roleNames maps every name the binary answers to onto its role; codex is a second agent.
var roleNames = map[string]string{
	"t3":      roleServer,
	"claude":  roleAgent,
	"codex":   roleAgent,
	"tool":    roleTool,
	"sleeper": roleSleeper,
}

// selfName is the binary's own name; called by it, the first argument must name a role.
const selfName = "standin"

// errUsage marks an error that is the caller's fault (exit status 2).
var errUsage = errors.New("usage")

// errHelp is returned when --help was asked for.
var errHelp = errors.New("help requested")

// pickRole decides what to be from argv. A role name as first argument wins (`standin t3 serve`,
// `rg tool --rate 64M`: a tool whose argv[0] is its comm), then the base name the binary was
// called by (a symlink named t3 or claude), and any other name is a tool (a symlink named rg).
// Called as "standin" without a role it is a usage error: a bare run must not start a balloon.
func pickRole(argv []string) (role, name string, args []string, err error) {
	if len(argv) == 0 {
		return "", "", nil, fmt.Errorf("%w: empty argv", errUsage)
	}
	name = filepath.Base(argv[0])
	if len(argv) > 1 {
		if r, ok := roleNames[argv[1]]; ok {
			return r, argv[1], argv[2:], nil
		}
	}
	if r, ok := roleNames[name]; ok {
		return r, name, argv[1:], nil
	}
	if name == selfName {
		return "", name, nil, fmt.Errorf("%w: standin ROLE [ARGS]: ROLE is t3, claude, codex, tool or sleeper", errUsage)
	}
	return roleTool, name, argv[1:], nil
}

// serveConfig is what `t3 serve` was asked to do.
type serveConfig struct {
	Host          string // "" listens on every interface, as Node's listen() without a host does
	Port          int
	BaseDir       string // created when given; nothing is created without it
	Mode          string // web or desktop; accepted, no effect on the stand-in
	DevURL        string
	NoBrowser     bool
	AutoBootstrap bool
	LogWSEvents   bool
	BootstrapFD   int // -1 when not given; accepted, never read
	LogLevel      string
}

// serveFlag is one flag of `t3 serve`. Boolean flags take no separate value (`--no-browser`,
// `--no-browser=false`); the others take `--flag value` or `--flag=value`.
type serveFlag struct {
	boolean bool
	set     func(c *serveConfig, v string) error
}

// serveFlags are the flags of the real `t3 serve` (pingdotgg/t3code apps/server/src/cli.ts, built
// on effect/unstable/cli): the stand-in accepts exactly these, so a supervisor passing anything
// else fails here as it would against the real server.
var serveFlags = map[string]serveFlag{
	"host":     {set: func(c *serveConfig, v string) error { c.Host = v; return nil }},
	"port":     {set: func(c *serveConfig, v string) error { p, err := parsePort(v); c.Port = p; return err }},
	"base-dir": {set: func(c *serveConfig, v string) error { c.BaseDir = v; return nil }},
	"mode": {set: func(c *serveConfig, v string) error {
		if v != "web" && v != "desktop" {
			return fmt.Errorf("--mode %q: want web or desktop", v)
		}
		c.Mode = v
		return nil
	}},
	"dev-url": {set: func(c *serveConfig, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("--dev-url %q: not an absolute URL", v)
		}
		c.DevURL = v
		return nil
	}},
	"bootstrap-fd": {set: func(c *serveConfig, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("--bootstrap-fd %q: not a file descriptor", v)
		}
		c.BootstrapFD = n
		return nil
	}},
	"log-level": {set: func(c *serveConfig, v string) error {
		switch strings.ToLower(v) {
		case "all", "trace", "debug", "info", "warn", "warning", "error", "fatal", "none":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("--log-level %q: not a log level", v)
	}},
	"no-browser": {boolean: true, set: func(c *serveConfig, v string) error { return setBool(&c.NoBrowser, "no-browser", v) }},
	"auto-bootstrap-project-from-cwd": {boolean: true, set: func(c *serveConfig, v string) error {
		return setBool(&c.AutoBootstrap, "auto-bootstrap-project-from-cwd", v)
	}},
	"log-websocket-events": {boolean: true, set: func(c *serveConfig, v string) error { return setBool(&c.LogWSEvents, "log-websocket-events", v) }},
	"log-ws-events":        {boolean: true, set: func(c *serveConfig, v string) error { return setBool(&c.LogWSEvents, "log-ws-events", v) }},
}

func setBool(dst *bool, name, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("--%s=%q: want true or false", name, v)
	}
	*dst = b
	return nil
}

// parsePort reads a TCP port, 1 to 65535, digits only: an empty value (`--port ${T3_PORT}` with
// T3_PORT empty) is an error, as it is for the real CLI's integer flag.
func parsePort(v string) (int, error) {
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, fmt.Errorf("--port %q: not a port number", v)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("--port %q: not in 1..65535", v)
	}
	return n, nil
}

// parseServeArgs reads the arguments after the program name: `serve` and its flags. Unlike the
// real server, which falls back to T3CODE_PORT or a free port near 3773, the stand-in requires
// --port, so a supervisor that loses the port fails loudly in tests. Errors wrap errUsage, or
// are errHelp.
func parseServeArgs(args []string) (serveConfig, error) {
	c := serveConfig{BootstrapFD: -1}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		return c, errHelp
	}
	if len(args) == 0 || args[0] != "serve" {
		got := "nothing"
		if len(args) > 0 {
			got = strconv.Quote(args[0])
		}
		return c, fmt.Errorf("%w: want the command serve, got %s", errUsage, got)
	}
	seen := map[string]bool{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--help" || a == "-h" {
			return c, errHelp
		}
		if !strings.HasPrefix(a, "--") || a == "--" {
			return c, fmt.Errorf("%w: unexpected argument %q", errUsage, a)
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		f, ok := serveFlags[name]
		if !ok {
			return c, fmt.Errorf("%w: unknown flag --%s", errUsage, name)
		}
		if seen[name] {
			return c, fmt.Errorf("%w: --%s given twice", errUsage, name)
		}
		seen[name] = true
		switch {
		case f.boolean && !hasValue:
			value = "true"
		case !hasValue:
			if i+1 >= len(args) {
				return c, fmt.Errorf("%w: --%s needs a value", errUsage, name)
			}
			i++
			value = args[i]
		}
		if err := f.set(&c, value); err != nil {
			return c, fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if !seen["port"] {
		return c, fmt.Errorf("%w: --port is required", errUsage)
	}
	return c, nil
}

// serveUsage is printed for --help and after a usage error.
const serveUsage = `usage: t3 serve --port PORT [--host HOST] [--base-dir DIR] [--mode web|desktop]
       [--dev-url URL] [--no-browser] [--bootstrap-fd FD] [--auto-bootstrap-project-from-cwd]
       [--log-websocket-events] [--log-level LEVEL]
(the test stand-in for T3 Code's server; see the package doc of t3-supervise/test/standin)`

// parseSize reads a size in bytes: a number, optionally with a fraction, and an optional unit
// K, M, G or T (powers of 1024, as systemd's MemoryMax= reads them), in either case and
// optionally followed by "iB" or "B": 4096, 512K, 64M, 64MiB, 1.5G, 0.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSuffix(strings.ToUpper(t[i:]), "B")
	if len(unit) == 2 && unit[1] == 'I' { // KiB, Mi
		unit = unit[:1]
	}
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want bytes, or a number with K, M, G or T", s)
	}
	if strings.Contains(num, ".") {
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: %v", s, err)
		}
		v := math.Round(f * float64(uint64(1)<<sh))
		if v >= math.MaxInt64 {
			return 0, fmt.Errorf("size %q: too large", s)
		}
		return int64(v), nil
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > math.MaxInt64>>sh {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(n << sh), nil
}

// formatSize writes n in the largest unit that divides it exactly: 64M, 1536K, 4095.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// tokenVar is the credential t3-supervise hands to t3 serve; its value is never printed.
const tokenVar = "CLAUDE_CODE_OAUTH_TOKEN"

// shownVars are harmless variables whose values the report line shows; of every other
// variable only the name is printed.
var shownVars = []string{"HOME", "NODE_ENV", "PATH", "T3_PORT", "USER"}

// tokenNote says whether environ holds the token, with its fingerprint (the first 12 hex digits
// of its SHA-256) and never its value: "CLAUDE_CODE_OAUTH_TOKEN=set sha256:0123456789ab" or
// "CLAUDE_CODE_OAUTH_TOKEN=unset". An empty value counts as set (it is what the child got).
func tokenNote(environ []string) string {
	v, ok := lookup(environ, tokenVar)
	if !ok {
		return tokenVar + "=unset"
	}
	sum := sha256.Sum256([]byte(v))
	return tokenVar + "=set sha256:" + hex.EncodeToString(sum[:6])
}

// envReport describes environ without leaking it: the sorted variable names, then the values of
// shownVars that are set, quoted when they are empty or contain blanks.
func envReport(environ []string) string {
	seen := map[string]bool{}
	var keys []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("env_keys=[" + strings.Join(keys, " ") + "]")
	for _, k := range shownVars {
		if v, ok := lookup(environ, k); ok {
			b.WriteString(" " + k + "=" + quoteIfNeeded(v))
		}
	}
	return b.String()
}

// lookup finds key in environ; the first occurrence wins, as for getenv(3).
func lookup(environ []string, key string) (string, bool) {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\n\"'") {
		return strconv.Quote(v)
	}
	return v
}

// serverEnv is the stand-in's own configuration of `t3 serve`, from the environment.
type serverEnv struct {
	ClaudeAbs  string        // T3_STANDIN_CLAUDE: absolute path of the agent for abs= spawns
	Agents     int           // T3_STANDIN_AGENTS: agents to spawn at start
	AgentsAbs  int           // T3_STANDIN_AGENTS_ABS: how many of those by absolute path
	ReadyDelay time.Duration // T3_STANDIN_READY_DELAY: wait this long before listening
	SIGHUPDies bool          // T3_STANDIN_SIGHUP=die: no SIGHUP handler, so it kills, as in Node
}

// readServerEnv reads and checks the T3_STANDIN_* variables; an empty one counts as unset. Errors
// wrap errUsage: a test that sets a wrong value must fail, not silently test something else.
func readServerEnv(getenv func(string) string) (serverEnv, error) {
	var e serverEnv
	if v := getenv("T3_STANDIN_CLAUDE"); v != "" {
		if !filepath.IsAbs(v) {
			return e, fmt.Errorf("%w: T3_STANDIN_CLAUDE=%q: want an absolute path", errUsage, v)
		}
		e.ClaudeAbs = v
	}
	for _, x := range []struct {
		name string
		dst  *int
	}{{"T3_STANDIN_AGENTS", &e.Agents}, {"T3_STANDIN_AGENTS_ABS", &e.AgentsAbs}} {
		v := getenv(x.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxAgents {
			return e, fmt.Errorf("%w: %s=%q: want 0..%d", errUsage, x.name, v, maxAgents)
		}
		*x.dst = n
	}
	if e.AgentsAbs > e.Agents {
		return e, fmt.Errorf("%w: T3_STANDIN_AGENTS_ABS=%d is more than T3_STANDIN_AGENTS=%d", errUsage, e.AgentsAbs, e.Agents)
	}
	if e.AgentsAbs > 0 && e.ClaudeAbs == "" {
		return e, fmt.Errorf("%w: T3_STANDIN_AGENTS_ABS=%d needs T3_STANDIN_CLAUDE", errUsage, e.AgentsAbs)
	}
	if v := getenv("T3_STANDIN_READY_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return e, fmt.Errorf("%w: T3_STANDIN_READY_DELAY=%q: want a duration such as 5s", errUsage, v)
		}
		e.ReadyDelay = d
	}
	switch v := getenv("T3_STANDIN_SIGHUP"); v {
	case "", "log":
	case "die":
		e.SIGHUPDies = true
	default:
		return e, fmt.Errorf("%w: T3_STANDIN_SIGHUP=%q: want log or die", errUsage, v)
	}
	return e, nil
}

// maxAgents bounds one request (and the start-up count): a typo must not fork-bomb the host.
const maxAgents = 256
