//go:build linux

package main

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// --help is the operator's manual: every flag, the environment, every exit code.
func TestHelpDocumentsEverything(t *testing.T) {
	w := newWorld(t)
	code, p := w.run("--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	help := p.stdout.String()
	var statusHelpOut bytes.Buffer
	if code := runStatus([]string{"--help"}, &statusHelpOut, io.Discard); code != 0 {
		t.Fatalf("status --help exit %d", code)
	}
	var man bytes.Buffer
	if err := writeManPage(&man, "test", "2027-01-01"); err != nil {
		t.Fatal(err)
	}
	mainPage, statusPage, ok := strings.Cut(man.String(), "\n.SH \"STATUS COMMAND\"\n")
	if !ok {
		t.Fatalf("the man page has no STATUS COMMAND section")
	}
	var c config
	var a, b []string
	var s, o string
	var in statusInput
	var asJSON bool
	for _, tc := range []struct {
		cmd       string
		fs        *pflag.FlagSet
		help, man string
	}{
		{"t3-supervise", flagSet(&c, &a, &b, &s, &o), help, mainPage},
		{"t3-supervise status", statusFlagSet(&in, &asJSON), statusHelpOut.String(), statusPage},
	} {
		if !tc.fs.HasFlags() {
			t.Fatalf("%s: no flags to check", tc.cmd)
		}
		for _, missing := range undocumentedFlags(tc.fs, tc.help, tc.man) {
			t.Errorf("%s: %s", tc.cmd, missing)
		}
	}
	for _, v := range []string{"HOME", "T3_PORT", "CREDENTIALS_DIRECTORY", "VAULT_TOKEN", "VAULT_ADDR", "VAULT_CACERT",
		"VAULT_NAMESPACE", "CLAUDE_CODE_OAUTH_TOKEN", "NOTIFY_SOCKET", "RUNTIME_DIRECTORY"} {
		if !strings.Contains(help, v) {
			t.Errorf("--help does not mention %s", v)
		}
	}
	for _, code := range []int{exitUsage, exitCredInvalid, exitCredUnavailable, exitInternal, exitCgroup,
		exitT3Exited, exitUnresponsive, exitRotated, exitCredDenied, exitConfig, exitNotExecutable, exitNotFound, exitUpgrade} {
		if !strings.Contains(help, "\n  "+strconv.Itoa(code)+" ") {
			t.Errorf("--help does not document exit code %d", code)
		}
	}
	if _, err := os.Stat(w.out); err == nil {
		t.Error("--help started t3")
	}
}

// undocumentedFlags names every flag of fs (VisitAll: hidden and deprecated ones too, which
// pflag's FlagUsages leaves out) that help lacks as an entry of its own with a usage
// ("  -u, --name type   usage" or "      --name type   usage"), or man lacks as a .TP entry
// followed by its usage. A flag named only in prose, or inside a longer name (--user in
// --user-extra), is not documented.
func undocumentedFlags(fs *pflag.FlagSet, help, man string) []string {
	inHelp := map[string]bool{}
	for _, l := range strings.Split(help, "\n") {
		head, usage, _ := strings.Cut(strings.TrimSpace(l), "  ")
		if !strings.HasPrefix(head, "-") || strings.TrimSpace(usage) == "" {
			continue
		}
		for _, word := range strings.Fields(head) {
			// A bool flag reads "--name[=true|false]" (pflag's NoOptDefVal).
			name, _, _ := strings.Cut(strings.TrimSuffix(word, ","), "[")
			inHelp[name] = true
		}
	}
	inMan := map[string]bool{}
	lines := strings.Split(man, "\n")
	for i := 0; i+2 < len(lines); i++ {
		if lines[i] != ".TP" || lines[i+2] == "" || strings.HasPrefix(lines[i+2], ".") {
			continue
		}
		for _, word := range strings.Fields(lines[i+1]) {
			if name, ok := strings.CutPrefix(word, `\fB`); ok {
				name, _, _ = strings.Cut(name, `\fR`)
				name, _, _ = strings.Cut(name, "[")
				inMan[name] = true
			}
		}
	}
	var missing []string
	fs.VisitAll(func(f *pflag.Flag) {
		name := "--" + f.Name
		if !inHelp[name] {
			missing = append(missing, name+" is not in --help")
		}
		if !inMan[roffText(name)] {
			missing = append(missing, name+" is not in the man page")
		}
	})
	return missing
}

// The check above fails for what it must catch: a hidden flag whose name is the start of a
// documented one, and a flag without a usage.
func TestUndocumentedFlagsCanFail(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("user-extra", "", "documented")
	fs.String("user", "", "hidden")
	fs.Bool("quiet", false, "")
	fs.Bool("dry-run", false, "documented, as --dry-run[=true|false]")
	if err := fs.MarkHidden("user"); err != nil {
		t.Fatal(err)
	}
	help := fs.FlagUsages()
	var man strings.Builder
	if err := writeFlags(&man, strings.Split(help, "\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{"--user is not in --help", "--user is not in the man page", "--quiet is not in --help", "--quiet is not in the man page"}
	got := undocumentedFlags(fs, help+"\n  --user is mentioned in prose only\n", man.String())
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("undocumented:\n got  %q\n want %q", got, want)
	}
}

// Each refusal happens before anything starts, with an exit code that says why and a message
// that names the flag, variable or file.
func TestRefusalsBeforeAnythingStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		code  int
		names string
	}{
		{"unknown flag", nil, []string{"--frobnicate"}, exitUsage, "--frobnicate"},
		{"bad output", nil, []string{"--output", "yaml"}, exitUsage, "--output"},
		{"bad size", nil, []string{"--memory-max", "12X"}, exitUsage, "memory-max"},
		{"high above max", nil, []string{"--memory-high", "20G"}, exitUsage, "--memory-high"},
		{"bad allowlist", nil, []string{"--env-allow", "A-B"}, exitUsage, "--env-allow"},
		{"approle half", nil, []string{"--approle-role-id", "x"}, exitUsage, "--approle-secret-id-file"},
		{"negative stop timeout", nil, []string{"--stop-timeout", "-1s"}, exitUsage, "--stop-timeout"},
		{"shared token template", nil, []string{"--vault-path-template", "secret/shared/claude"}, exitConfig, "{user}"},
		{"other user", nil, []string{"--user", "somebody-else"}, exitConfig, "somebody-else"},
		{"root", nil, []string{"--user", "root"}, exitConfig, rootRefusal},
		{"empty T3_PORT in --port", nil, []string{"--", "serve", "--port", "", "--host", "0.0.0.0"}, exitConfig, "T3_PORT"},
		{"unbraced empty T3_PORT", nil, []string{"--", "serve", "--port", "--base-dir", "/x"}, exitConfig, "T3_PORT"},
		{"unexpanded T3_PORT", nil, []string{"--", "serve", "--port", "${T3_PORT}"}, exitConfig, "not expanded"},
		{"port out of range", nil, []string{"--", "serve", "--port=70000"}, exitConfig, "70000"},
		{"empty T3_PORT variable", []string{"T3_PORT="}, []string{"--", "serve"}, 0, ""},
		{"negative size", nil, []string{"--memory-max", "-5G"}, exitUsage, "memory-max"},
		{"huge size", nil, []string{"--memory-max", "99999999999999T"}, exitUsage, "too large"},
		{"size word", nil, []string{"--agent-memory-max", "lots"}, exitUsage, "agent-memory-max"},
		{"huge pids", nil, []string{"--pids-max", "99999999999999999999"}, exitUsage, "pids-max"},
		{"oom adj out of range", nil, []string{"--agent-oom-score-adj", "5000"}, exitUsage, "--agent-oom-score-adj"},
		{"duration word", nil, []string{"--stop-timeout", "forever"}, exitUsage, "stop-timeout"},
		{"zero probe interval", nil, []string{"--probe-interval", "0s"}, exitUsage, "--probe-interval"},
		{"negative refresh", nil, []string{"--refresh-interval", "-1s"}, exitUsage, "--refresh-interval"},
		{"refresh below the floor", nil, []string{"--refresh-interval", "10ms"}, exitUsage, "want at least 1m0s"},
		{"refresh just below the floor", nil, []string{"--refresh-interval", "59s"}, exitUsage, "--refresh-interval 59s"},
		{"stall share", nil, []string{"--pressure-stall", "2"}, exitUsage, "--pressure-stall"},
		{"rotation policy", nil, []string{"--restart-on-rotation", "sometimes"}, exitUsage, "--restart-on-rotation"},
		{"relative env file", nil, []string{"--env-file", "claude.env"}, exitUsage, "--env-file"},
		{"relative token file", nil, []string{"--vault-token-file", "tok"}, exitUsage, "--vault-token-file"},
		{"agent name with slash", nil, []string{"--agent-names", "claude,../x"}, exitUsage, "--agent-names"},
		{"template climbing out", nil, []string{"--vault-path-template", "secret/../{user}"}, exitConfig, "template"},
		{"template with a query", nil, []string{"--vault-path-template", "secret/x/{user}?version=1"}, exitConfig, "not allowed"},
		{"user climbing out", nil, []string{"--user", "../root"}, exitConfig, "../root"},
		{"huge T3_PORT", []string{"T3_PORT=99999999"}, []string{"--", "serve"}, exitConfig, "T3_PORT"},
		{"garbage VAULT_ADDR", []string{"VAULT_ADDR=::not a url::"}, []string{"--", "serve"}, exitConfig, "VAULT_ADDR"},
		{"garbage T3_PORT variable", []string{"T3_PORT=http"}, []string{"--", "serve"}, exitConfig, "T3_PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.setenv(tc.env...)
			args := append([]string{"--no-cgroup", "--vault-timeout", "2s"}, tc.args...)
			code, p := w.run(args...)
			if tc.code == 0 {
				// T3_PORT unset and no --port in the arguments: t3 picks its own default port,
				// nothing needs the variable. Here the run gets past configuration and fails on the
				// missing Vault credential instead.
				if code == exitConfig && strings.Contains(p.stderr.String(), "T3_PORT is") {
					t.Fatalf("refused although the arguments do not need T3_PORT: %s", p.stderr)
				}
				return
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tc.code, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.names) {
				t.Errorf("stderr does not name %q:\n%s", tc.names, p.stderr)
			}
			if _, err := os.Stat(w.out); err == nil {
				t.Error("t3 was started")
			}
			if entries, _ := os.ReadDir(w.home); len(entries) != 0 {
				t.Errorf("files were written into HOME: %v", entries)
			}
		})
	}
}

// rootRefusal is what the supervisor says when it would run t3 as root; as a non-root user the
// same --user root is simply another user.
var rootRefusal = map[bool]string{true: "refusing to run t3 and its agents as root", false: "--user root but running as"}[asRoot]

func TestPortOf(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		t3codePort string
		env        string
		port       int
		err        bool
	}{
		{[]string{"serve", "--port", "3773"}, "", "", 3773, false},
		{[]string{"serve", "--port=4000"}, "", "1", 4000, false},
		{[]string{"serve"}, "", "5000", 5000, false},
		{[]string{"serve"}, "", "", 0, false},
		{[]string{"serve", "--port"}, "", "", 0, true},
		{[]string{"serve", "--port", " "}, "", "", 0, true},
		{[]string{"serve", "--port", "0"}, "", "", 0, true},
		{[]string{"serve", "--", "--port", "x"}, "", "", 0, false},
		// t3 reads T3CODE_PORT when its arguments carry no --port (apps/server/src/cli.ts).
		{[]string{"serve"}, "4100", "5000", 4100, false},
		{[]string{"serve"}, "4100", "", 4100, false},
		{[]string{"serve", "--port", "3773"}, "4100", "", 3773, false},
		{[]string{"serve"}, "x", "5000", 0, true},
	} {
		port, err := portOf(tc.args, tc.t3codePort, tc.env)
		if port != tc.port || (err != nil) != tc.err {
			t.Errorf("portOf(%q, T3CODE_PORT %q, T3_PORT %q) = %d, %v", tc.args, tc.t3codePort, tc.env, port, err)
		}
	}
}

// The probe's port is the one t3 listens on when it is configured by its environment: t3 reads
// T3CODE_PORT when its arguments carry no --port. Before, only --port and T3_PORT counted, and a
// t3 on T3CODE_PORT was probed on T3_PORT (or not at all) and killed at --ready-timeout.
func TestT3AddressFollowsT3sOwnVariables(t *testing.T) {
	env := []string{"T3CODE_PORT=4100", "T3_PORT=5000", "T3CODE_HOST=127.0.0.2"}
	for _, tc := range []struct {
		args  string
		allow []string
		port  int
		host  string
	}{
		{"serve", []string{"T3_*", "T3CODE_*"}, 4100, "127.0.0.2"},
		{"serve --port 3773 --host ::1", []string{"T3_*", "T3CODE_*"}, 3773, "::1"},
		// Not let through to t3: t3 does not see them, so neither does the probe.
		{"serve", []string{"T3_*"}, 5000, ""},
	} {
		port, host, err := t3Address(strings.Fields(tc.args), env, tc.allow)
		if err != nil || port != tc.port || host != tc.host {
			t.Errorf("t3Address(%q, allow %q) = %d, %q, %v; want %d, %q", tc.args, tc.allow, port, host, err, tc.port, tc.host)
		}
	}
	if _, _, err := t3Address([]string{"serve"}, []string{"T3CODE_PORT=99999"}, []string{"T3CODE_*"}); err == nil || !strings.Contains(err.Error(), "T3CODE_PORT") {
		t.Errorf("a bad T3CODE_PORT: %v, want an error naming it", err)
	}
}

func TestFormatLine(t *testing.T) {
	var b bytes.Buffer
	k, _ := kindOf(CredFallbackEvent{})
	b.WriteString(formatLine(k, "Vault down", fields{"T3_B": "2", "T3_A": "1"}))
	if got, want := b.String(), "t3-supervise: warning credential_fallback: Vault down (T3_A=1 T3_B=2)"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestEventKindsAreDistinct(t *testing.T) {
	names, ids := map[string]bool{}, map[string]bool{}
	for _, k := range eventKinds {
		if names[k.Name] || ids[k.ID] {
			t.Errorf("duplicate event kind %+v", k)
		}
		if len(k.ID) != 32 || strings.Trim(k.ID, "0123456789abcdef") != "" {
			t.Errorf("%s: MESSAGE_ID %q is not 128 bits of lowercase hex", k.Name, k.ID)
		}
		names[k.Name], ids[k.ID] = true, true
	}
}

func FuzzPortOf(f *testing.F) {
	f.Add("serve --port 3773", "", "")
	f.Add("serve --port= --x", "", "${T3_PORT}")
	f.Add("serve", "4100", "")
	f.Fuzz(func(t *testing.T, args, t3codePort, env string) {
		port, err := portOf(strings.Fields(args), t3codePort, env)
		if err == nil && (port < 0 || port > 65535) {
			t.Fatalf("portOf(%q, %q) = %d", args, env, port)
		}
	})
}
