package main

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPickRole(t *testing.T) {
	for _, tc := range []struct {
		argv       []string
		role, name string
		args       []string
	}{
		{[]string{"/usr/local/bin/t3", "serve", "--port", "1"}, roleServer, "t3", []string{"serve", "--port", "1"}},
		{[]string{"standin", "t3", "serve"}, roleServer, "t3", []string{"serve"}},
		{[]string{"./bin/standin", "claude"}, roleAgent, "claude", []string{}},
		{[]string{"claude", "--output-format", "stream-json"}, roleAgent, "claude", []string{"--output-format", "stream-json"}},
		{[]string{"/home/u/.local/bin/claude"}, roleAgent, "claude", []string{}},
		{[]string{"codex"}, roleAgent, "codex", []string{}},
		// How an agent spawns a tool: argv[0] is the comm, the role word follows.
		{[]string{"2.1.205", "tool", "--comm", "2.1.205"}, roleTool, "tool", []string{"--comm", "2.1.205"}},
		{[]string{"claude", "tool", "--rate", "1M"}, roleTool, "tool", []string{"--rate", "1M"}},
		{[]string{"/tmp/x/rg", "--files"}, roleTool, "rg", []string{"--files"}},
		{[]string{"sleeper", "--stubborn"}, roleSleeper, "sleeper", []string{"--stubborn"}},
	} {
		role, name, args, err := pickRole(tc.argv)
		if err != nil || role != tc.role || name != tc.name || !reflect.DeepEqual(args, tc.args) {
			t.Errorf("pickRole(%q) = %q, %q, %q, %v; want %q, %q, %q", tc.argv, role, name, args, err, tc.role, tc.name, tc.args)
		}
	}
	for _, argv := range [][]string{nil, {"standin"}, {"/x/standin", "serve"}} {
		if _, _, _, err := pickRole(argv); !errors.Is(err, errUsage) {
			t.Errorf("pickRole(%q): err %v, want a usage error", argv, err)
		}
	}
}

func TestParseServeArgs(t *testing.T) {
	got, err := parseServeArgs([]string{"serve", "--host", "0.0.0.0", "--port", "3773", "--base-dir", "/home/a/.t3"})
	want := serveConfig{Host: "0.0.0.0", Port: 3773, BaseDir: "/home/a/.t3", BootstrapFD: -1}
	if err != nil || got != want {
		t.Errorf("the production command line: %+v, %v", got, err)
	}
	got, err = parseServeArgs([]string{"serve", "--port=1", "--mode=desktop", "--no-browser", "--log-ws-events=false",
		"--dev-url", "http://localhost:5173", "--bootstrap-fd", "3", "--log-level", "Debug", "--auto-bootstrap-project-from-cwd"})
	want = serveConfig{Port: 1, Mode: "desktop", NoBrowser: true, DevURL: "http://localhost:5173", BootstrapFD: 3,
		LogLevel: "Debug", AutoBootstrap: true}
	if err != nil || got != want {
		t.Errorf("every flag: %+v, %v", got, err)
	}
	if _, err := parseServeArgs([]string{"serve", "--help"}); !errors.Is(err, errHelp) {
		t.Errorf("--help: %v", err)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "want the command serve"},
		{[]string{"start", "--port", "1"}, `got "start"`},
		{[]string{"serve"}, "--port is required"},
		{[]string{"serve", "--host", "127.0.0.1"}, "--port is required"},
		{[]string{"serve", "--port", ""}, `--port "": not a port number`}, // --port ${T3_PORT}, T3_PORT empty
		{[]string{"serve", "--port"}, "--port needs a value"},
		{[]string{"serve", "--port", "0"}, "not in 1..65535"},
		{[]string{"serve", "--port", "65536"}, "not in 1..65535"},
		{[]string{"serve", "--port", "+80"}, "not a port number"},
		{[]string{"serve", "--port", "80x"}, "not a port number"},
		{[]string{"serve", "--port", "1", "--port", "2"}, "given twice"},
		{[]string{"serve", "--port", "1", "--bogus"}, "unknown flag --bogus"},
		{[]string{"serve", "--port", "1", "-p", "2"}, `unexpected argument "-p"`},
		{[]string{"serve", "--port", "1", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--port", "1", "--mode", "cli"}, "want web or desktop"},
		{[]string{"serve", "--port", "1", "--no-browser=maybe"}, "want true or false"},
		{[]string{"serve", "--port", "1", "--dev-url", "localhost"}, "not an absolute URL"},
		{[]string{"serve", "--port", "1", "--log-level", "loud"}, "not a log level"},
	} {
		_, err := parseServeArgs(tc.args)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("parseServeArgs(%q) = %v; want a usage error containing %q", tc.args, err, tc.msg)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "1B": 1, "512K": 512 << 10, "512k": 512 << 10, "64M": 64 << 20,
		"64MiB": 64 << 20, "64MB": 64 << 20, "64Mi": 64 << 20, "1G": 1 << 30, "1.5G": 3 << 29,
		"0.5K": 512, " 8M ": 8 << 20, "2T": 2 << 40, "8589934591G": 8589934591 << 30,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "x", "-1M", "1P", "1iB", "1.2.3M", ".", "64 M", "1e3",
		"8589934592G", "9223372036854775808", "99999999999T", "1e10G"} {
		if n, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d; want an error", bad, n)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1: "1", 4095: "4095", 1536 << 10: "1536K", 64 << 20: "64M", 1 << 30: "1G", 3 << 40: "3T"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q; want %q", n, got, want)
		}
		if back, err := parseSize(formatSize(n)); err != nil || back != n {
			t.Errorf("parseSize(formatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestReportNeverShowsTheToken(t *testing.T) {
	const token = "sk-ant-oat01-secretsecretsecret"
	env := []string{"PATH=/shim:/usr/bin", "CLAUDE_CODE_OAUTH_TOKEN=" + token, "VAULT_TOKEN=hvs.other-secret",
		"HOME=/home/a b", "T3_PORT=", "CLAUDE_CODE_OAUTH_TOKEN=second"}
	report := envReport(env) + " " + tokenNote(env)
	want := `env_keys=[CLAUDE_CODE_OAUTH_TOKEN HOME PATH T3_PORT VAULT_TOKEN] HOME="/home/a b" PATH=/shim:/usr/bin T3_PORT="" ` +
		// printf %s sk-ant-oat01-secretsecretsecret | sha256sum | cut -c1-12
		"CLAUDE_CODE_OAUTH_TOKEN=set sha256:64599259e40a"
	if report != want {
		t.Errorf("report\n got %s\nwant %s", report, want)
	}
	for _, secret := range []string{token, "hvs.other-secret", "second"} {
		if strings.Contains(report, secret) {
			t.Errorf("report shows %q: %s", secret, report)
		}
	}
	if got := tokenNote([]string{"PATH=/bin"}); got != "CLAUDE_CODE_OAUTH_TOKEN=unset" {
		t.Errorf("unset token: %q", got)
	}
}

func TestReadServerEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	got, err := readServerEnv(env("T3_STANDIN_CLAUDE", "/x/claude", "T3_STANDIN_AGENTS", "8", "T3_STANDIN_AGENTS_ABS", "2", "T3_STANDIN_READY_DELAY", "5s",
		"T3_STANDIN_SIGHUP", "die"))
	if want := (serverEnv{ClaudeAbs: "/x/claude", Agents: 8, AgentsAbs: 2, ReadyDelay: 5 * time.Second, SIGHUPDies: true}); err != nil || got != want {
		t.Errorf("readServerEnv = %+v, %v; want %+v", got, err, want)
	}
	if got, err := readServerEnv(env()); err != nil || got != (serverEnv{}) {
		t.Errorf("empty environment: %+v, %v", got, err)
	}
	for _, bad := range [][]string{
		{"T3_STANDIN_CLAUDE", "claude"},
		{"T3_STANDIN_AGENTS", "x"},
		{"T3_STANDIN_AGENTS", "-1"},
		{"T3_STANDIN_AGENTS", "100000"},
		{"T3_STANDIN_AGENTS", "1", "T3_STANDIN_AGENTS_ABS", "2", "T3_STANDIN_CLAUDE", "/c"},
		{"T3_STANDIN_AGENTS", "2", "T3_STANDIN_AGENTS_ABS", "1"},
		{"T3_STANDIN_READY_DELAY", "5"},
		{"T3_STANDIN_READY_DELAY", "-1s"},
		{"T3_STANDIN_SIGHUP", "ignore"},
	} {
		if _, err := readServerEnv(env(bad...)); !errors.Is(err, errUsage) {
			t.Errorf("readServerEnv(%q): %v; want a usage error", bad, err)
		}
	}
}

func TestInflatePacing(t *testing.T) {
	var steps []int64
	var total int64
	start := time.Now()
	got, err := inflate(context.Background(), 10<<20, 1<<20, time.Millisecond, func(n int64) error {
		steps = append(steps, n)
		total += n
		return nil
	})
	took := time.Since(start)
	if err != nil || got != 1<<20 || total != 1<<20 {
		t.Fatalf("inflate = %d, %v; grew %d in %d steps", got, err, total, len(steps))
	}
	// 1 MiB at 10 MiB/s is 100 ms; allow a slow machine, but not an instant one.
	if took < 90*time.Millisecond || took > 5*time.Second {
		t.Errorf("1 MiB at 10 MiB/s took %v", took)
	}
	if len(steps) < 5 {
		t.Errorf("grew in %d steps %v; want it spread over time", len(steps), steps)
	}

	// A balloon whose first step was slow (starved page faults) catches up in bounded steps.
	steps = nil
	slow := true
	got, err = inflate(context.Background(), 1<<30, 3*maxStep, time.Millisecond, func(n int64) error {
		steps = append(steps, n)
		if slow {
			slow = false
			time.Sleep(200 * time.Millisecond) // about 200 MiB due at 1 GiB/s
		}
		return nil
	})
	if err != nil || got != 3*maxStep {
		t.Fatalf("slow start: inflate = %d, %v; steps %v", got, err, steps)
	}
	for _, n := range steps {
		if n > maxStep {
			t.Errorf("slow start: a step of %d bytes, over %d; steps %v", n, int64(maxStep), steps)
		}
	}

	boom := errors.New("mmap: cannot allocate memory")
	if _, err := inflate(context.Background(), 1<<30, 0, time.Millisecond, func(int64) error { return boom }); err != boom {
		t.Errorf("a failing grow: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if n, err := inflate(ctx, 1<<20, 0, time.Millisecond, func(int64) error { return nil }); !errors.Is(err, context.DeadlineExceeded) || n <= 0 {
		t.Errorf("limit 0 until ctx ends: %d, %v", n, err)
	}
	if _, err := inflate(context.Background(), 0, 1, time.Millisecond, nil); err == nil {
		t.Error("rate 0 accepted")
	}
}
