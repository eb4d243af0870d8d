//go:build linux

package main

// The real Claude Code CLI under the real supervisor. t3 is the SDK stand-in (test/sdk: claude
// spawned the way T3 spawns it, through the real Agent SDK on Node), claude is the real 2.1.328
// binary, Vault is real; only the Anthropic API is a loopback stand-in (test/anthropicapi), which
// records the credentials every request carried. --no-cgroup: this host's cgroups are hybrid;
// agent placement with the real claude is claude_cgroup_test.go's, memory the VM tier's.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"t3-supervise/internal/claudetest"
	"t3-supervise/internal/vaulttest"
	"t3-supervise/test/anthropicapi"
)

// toolCommand is what the API stand-in has claude's Bash tool run; its output names the user.
const toolCommand = "echo tool-ran-as-$(id -un)"

const turnLimit = 90 * time.Second

type claudeWorld struct {
	*vaultWorld
	parts claudetest.Parts
	api   *anthropicapi.Server
	port  string
	sdk   claudetest.SDK
}

func newClaudeWorld(t *testing.T) *claudeWorld {
	t.Helper()
	return newClaudeWorldScript(t, anthropicapi.Script{Command: toolCommand, Reply: "all done"})
}

// newClaudeWorldScript is newClaudeWorld with the API stand-in playing script.
func newClaudeWorldScript(t *testing.T, script anthropicapi.Script) *claudeWorld {
	t.Helper()
	parts := claudetest.Need(t)
	w := &claudeWorld{vaultWorld: newVaultWorld(t), parts: parts}
	w.api = anthropicapi.New(script)
	srv := httptest.NewServer(w.api)
	t.Cleanup(srv.Close)
	w.port = strconv.Itoa(freeLoopbackPort(t))
	w.sdk = claudetest.SDK{URL: "http://127.0.0.1:" + w.port}
	// claude where a user's ~/.local/bin would put it; t3's own probe runs once at start.
	w.setenv("PATH="+w.bin+":"+parts.Bin+":/usr/bin:/bin", "ANTHROPIC_BASE_URL="+srv.URL, "T3_PORT="+w.port)
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range w.api.Requests() {
				t.Logf("api: %s %s stream=%v authorization=%q x-api-key=%q -> %d %s", r.Method, r.Path, r.Stream,
					anthropicapi.Fingerprint(r.Authorization), anthropicapi.Fingerprint(r.APIKey), r.Status, r.Answer)
			}
		}
	})
	return w
}

// optOut removes the user's secret from Vault, every version: the user has opted out.
func (w *claudeWorld) optOut() {
	w.t.Helper()
	if err := w.v.Client.KVv2("secret").DeleteMetadata(context.Background(), "workstation/claude-users/"+w.user); err != nil {
		w.t.Fatal(err)
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveArgs is what a unit's ExecStart= would say, for the SDK stand-in as t3.
func (w *claudeWorld) serveArgs(extra ...string) []string {
	args := append([]string{"--no-cgroup", "--t3-bin", w.parts.T3, "--env-allow-extra", "ANTHROPIC_BASE_URL"}, extra...)
	return append(args, "--", "serve", "--host", "127.0.0.1", "--port", w.port, "--base-dir", w.home+"/.t3")
}

// serve starts the supervisor and waits until t3 answers GET /.
func (w *claudeWorld) serve(extra ...string) *proc {
	w.t.Helper()
	p := w.start(w.serveArgs(extra...)...)
	w.sdk.WaitUp(w.t, 60*time.Second, p.done)
	return p
}

// credentials are the distinct Authorization and x-api-key values of the requests from index
// from on that carried any, and how many Messages API requests there were.
type credentials struct {
	auth, keys map[string]int
	messages   int
}

func (w *claudeWorld) credentialsSince(from int) credentials {
	c := credentials{auth: map[string]int{}, keys: map[string]int{}}
	reqs := w.api.Requests()
	for _, r := range reqs[min(from, len(reqs)):] {
		if r.Path == "/v1/messages" {
			c.messages++
		}
		if r.Authorization != "" {
			c.auth[r.Authorization]++
		}
		if r.APIKey != "" {
			c.keys[r.APIKey]++
		}
	}
	return c
}

func fingerprints(m map[string]int) []string {
	var out []string
	for v, n := range m {
		out = append(out, fmt.Sprintf("%s x%d", anthropicapi.Fingerprint(v), n))
	}
	return out
}

// wantOnly fails t unless every credentialed request since from carried exactly the
// Authorization header auth and the x-api-key key ("": none at all), and there was at least one
// Messages API request.
func (w *claudeWorld) wantOnly(from int, auth, key string) {
	w.t.Helper()
	c := w.credentialsSince(from)
	if c.messages == 0 {
		w.t.Errorf("no Messages API request reached the stand-in")
	}
	for _, h := range []struct {
		name string
		got  map[string]int
		want string
	}{{"Authorization", c.auth, auth}, {"x-api-key", c.keys, key}} {
		switch {
		case h.want == "" && len(h.got) != 0:
			w.t.Errorf("%s: the API stand-in saw %v, want none", h.name, fingerprints(h.got))
		case h.want != "" && (len(h.got) != 1 || h.got[h.want] == 0):
			w.t.Errorf("%s: the API stand-in saw %v, want only %s", h.name, fingerprints(h.got), anthropicapi.Fingerprint(h.want))
		}
	}
}

// wantToolRan fails t unless the session's turn ran the scripted Bash command as the run user,
// got its output back to the API, and ended with the scripted reply.
func (w *claudeWorld) wantToolRan(s claudetest.Session, from int) {
	w.t.Helper()
	want := "tool-ran-as-" + runUser
	if len(s.ToolResults) != 1 || s.ToolResults[0].Content != want || s.ToolResults[0].IsError {
		w.t.Errorf("session tool results %+v, want one %q (session %+v)", s.ToolResults, want, s)
	}
	if len(s.Results) != 1 || s.Results[0].IsError || s.Results[0].Result != "all done" {
		w.t.Errorf("session results %+v, want the scripted reply", s.Results)
	}
	seen := false
	for _, r := range w.api.Requests()[from:] {
		for _, tr := range r.ToolResults {
			seen = seen || tr.Content == want
		}
	}
	if !seen {
		w.t.Errorf("the tool's output %q never reached the API stand-in", want)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// (a) The API sees exactly the user's own token from Vault, never an inherited foreign one; T3's
// account probe sees it too, and calls no Messages API.
func TestClaudeSendsTheUsersTokenFromVault(t *testing.T) {
	w := newClaudeWorld(t)
	foreign := vaulttest.FakeToken()
	w.setenv("CLAUDE_CODE_OAUTH_TOKEN=" + foreign)
	p := w.serve()
	s := w.sdk.Turn(t, "run the script", turnLimit)
	w.wantToolRan(s, 0)
	w.wantOnly(0, "Bearer "+w.token, "")

	before := w.credentialsSince(0).messages
	pr, err := w.sdk.Probe()
	if err != nil || pr.Version != claudetest.Version || pr.Account == nil || pr.Account.TokenSource != "CLAUDE_CODE_OAUTH_TOKEN" {
		t.Errorf("account probe: %+v %v", pr, err)
	}
	if after := w.credentialsSince(0).messages; after != before {
		t.Errorf("the account probe made %d Messages API requests, want none", after-before)
	}
	if !strings.Contains(p.stderr.String(), "warning inherited_token_dropped") {
		t.Errorf("no inherited_token_dropped warning:\n%s", p.stderr)
	}
	w.stop(p)
	w.scanForToken(foreign)
}

// An opted-out user's claude runs on its normal credential flow: nothing from the supervisor,
// not the inherited token; without a login of its own it says so and exits 1, calling no API;
// with the user's own ~/.claude/.credentials.json it sends that login's access token.
func TestClaudeOptOutUsesTheUsersOwnLogin(t *testing.T) {
	w := newClaudeWorld(t)
	w.optOut()
	// An inherited token, even one an operator let through the allowlist (as the old unit's
	// EnvironmentFile= of the env file did), is not the user's: dropped.
	foreign := vaulttest.FakeToken()
	w.setenv("CLAUDE_CODE_OAUTH_TOKEN=" + foreign)
	p := w.serve("--env-allow-extra=CLAUDE_CODE_OAUTH_TOKEN")

	s := w.sdk.Turn(t, "run the script", turnLimit)
	if len(s.Results) != 1 || !s.Results[0].IsError || !strings.Contains(s.Results[0].Result, "Not logged in") {
		t.Errorf("without a login of its own: session %+v, want claude's \"Not logged in\"", s)
	}
	if c := w.credentialsSince(0); c.messages != 0 || len(c.auth)+len(c.keys) != 0 {
		t.Errorf("without a login claude called the API: %d messages, %v %v", c.messages, fingerprints(c.auth), fingerprints(c.keys))
	}

	// The user logs in (what `claude /login` leaves behind, with a fake access token).
	own := vaulttest.FakeToken()
	login := fmt.Sprintf(`{"claudeAiOauth":{"accessToken":%q,"refreshToken":"sk-ant-ort01-%s","expiresAt":%d,"scopes":["user:inference","user:profile"],"subscriptionType":"max"}}`,
		own, randomHex(16), time.Now().Add(time.Hour).UnixMilli())
	dir := filepath.Join(w.home, ".claude")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".credentials.json"), []byte(login), 0o600); err != nil {
		t.Fatal(err)
	}
	if asRoot {
		os.Chown(dir, nobodyUID, nobodyUID)
		os.Chown(filepath.Join(dir, ".credentials.json"), nobodyUID, nobodyUID)
	}
	from := len(w.api.Requests())
	s = w.sdk.Turn(t, "run the script", turnLimit)
	w.wantToolRan(s, from)
	w.wantOnly(from, "Bearer "+own, "")
	w.stop(p)
	w.scanForToken(foreign)
}

// (b) After a rotation in Vault with --restart-on-rotation=always, the supervisor exits 76 for
// systemd to restart the unit; systemd is not here, so the test plays its part: it checks that
// the unit restarts on 76 (Restart=always, 76 not in RestartPreventExitStatus=) and starts
// the supervisor again with the same arguments. New sessions then present the new token.
func TestClaudeSessionsAfterRotationSendTheNewToken(t *testing.T) {
	w := newClaudeWorld(t)
	wantUnitRestartsOn(t, exitRotated)
	w.exe = shortRefreshBin(t) // 1s is below the operator's floor
	args := []string{"--refresh-interval", "1s", "--restart-on-rotation", "always"}
	p := w.serve(args...)
	s := w.sdk.Turn(t, "run the script", turnLimit)
	w.wantToolRan(s, 0)
	w.wantOnly(0, "Bearer "+w.token, "")

	old := w.token
	w.token = vaulttest.FakeToken()
	w.v.Put("workstation/claude-users/"+w.user, map[string]any{"setup_token": w.token})
	if code := p.wait(t, 30*time.Second); code != exitRotated {
		t.Fatalf("exit %d after the rotation, want %d\n%s", code, exitRotated, p.stderr)
	}
	p = w.serve(args...)
	from := len(w.api.Requests())
	s = w.sdk.Turn(t, "run the script", turnLimit)
	w.wantToolRan(s, from)
	w.wantOnly(from, "Bearer "+w.token, "")
	w.stop(p)
	w.scanForToken(old)
}

// wantUnitRestartsOn fails t unless systemd would restart the unit after exit code.
func wantUnitRestartsOn(t *testing.T, code int) {
	t.Helper()
	f, err := os.Open("../../units/t3-supervise@.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	restart, prevented := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "Restart":
			restart = v
		case "RestartPreventExitStatus":
			prevented = v
		}
	}
	if restart != "on-failure" && restart != "always" {
		t.Errorf("the unit has Restart=%s: systemd would not restart it after exit %d", restart, code)
	}
	for _, n := range strings.Fields(prevented) {
		if n == strconv.Itoa(code) {
			t.Errorf("RestartPreventExitStatus=%s holds %d: systemd would not restart the unit", prevented, code)
		}
	}
}

// outranking sets ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN in the supervisor's environment and
// returns their values and the flag that lets them through to t3.
func (w *claudeWorld) outranking() (apiKey, authToken, allow string) {
	apiKey, authToken = "sk-ant-api03-"+randomHex(24), "t3s-test-auth-"+randomHex(16)
	w.setenv("ANTHROPIC_API_KEY="+apiKey, "ANTHROPIC_AUTH_TOKEN="+authToken)
	return apiKey, authToken, "--env-allow-extra=ANTHROPIC_API_KEY,ANTHROPIC_AUTH_TOKEN"
}

// ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN outrank CLAUDE_CODE_OAUTH_TOKEN in claude: let
// through to t3 (--env-allow-extra) while the user's token is injected, they would make the
// token silently unused. They are dropped, with a warning each, and the dry run shows it.
func TestClaudeOutrankingCredentialsAreDropped(t *testing.T) {
	w := newClaudeWorld(t)
	apiKey, authToken, allow := w.outranking()

	code, dry := w.run(w.serveArgs(allow, "--dry-run")...)
	out := dry.stdout.String()
	if code != 0 || !strings.Contains(out, "outranking  ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN: dropped") ||
		strings.Contains(out, "ANTHROPIC_API_KEY=") || strings.Contains(out, "ANTHROPIC_AUTH_TOKEN=") {
		t.Errorf("dry run (exit %d) does not show both dropped:\n%s", code, out)
	}
	code, dry = w.run(w.serveArgs(allow, "--dry-run", "--output", "json")...)
	var plan struct {
		Credential struct {
			Outranking []string `json:"outranking_dropped"`
		} `json:"credential"`
		Env []envVar `json:"env"`
	}
	if err := json.Unmarshal(dry.stdout.Bytes(), &plan); code != 0 || err != nil {
		t.Fatalf("json dry run: exit %d %v\n%s", code, err, dry.stdout)
	}
	if strings.Join(plan.Credential.Outranking, ",") != "ANTHROPIC_API_KEY,ANTHROPIC_AUTH_TOKEN" {
		t.Errorf("json dry run: outranking_dropped %q", plan.Credential.Outranking)
	}
	for _, e := range plan.Env {
		if strings.HasPrefix(e.Name, "ANTHROPIC_") && e.Name != "ANTHROPIC_BASE_URL" {
			t.Errorf("json dry run: %s in t3's environment", e.Name)
		}
	}

	p := w.serve(allow)
	s := w.sdk.Turn(t, "run the script", turnLimit)
	w.wantToolRan(s, 0)
	w.wantOnly(0, "Bearer "+w.token, "")
	if n := strings.Count(p.stderr.String(), "warning credential_override_dropped"); n != 2 {
		t.Errorf("%d credential_override_dropped warnings, want 2:\n%s", n, p.stderr)
	}
	w.stop(p)
	for _, secret := range []string{apiKey, authToken} {
		w.scanForToken(secret)
	}
}

// For an opted-out user nothing is injected, so nothing is outranked: an API key the operator
// lets through is that user's normal credential, and claude uses it.
func TestClaudeOptOutKeepsAnAllowedAPIKey(t *testing.T) {
	w := newClaudeWorld(t)
	w.optOut()
	apiKey := "sk-ant-api03-" + randomHex(24)
	w.setenv("ANTHROPIC_API_KEY=" + apiKey)
	p := w.serve("--env-allow-extra=ANTHROPIC_API_KEY")
	s := w.sdk.Turn(t, "run the script", turnLimit)
	w.wantToolRan(s, 0)
	w.wantOnly(0, "", apiKey)
	if strings.Contains(p.stderr.String(), "credential_override_dropped") {
		t.Errorf("an opted-out user's API key was reported as dropped:\n%s", p.stderr)
	}
	w.stop(p)
}
