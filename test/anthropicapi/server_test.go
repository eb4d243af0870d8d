package anthropicapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The real CLI is this package's main test (cmd/t3-supervise claude_e2e_test.go); these pin the
// wire format the CLI depends on.

func post(t *testing.T, url, body string, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type sse struct {
	event string
	data  map[string]any
}

func readSSE(t *testing.T, resp *http.Response) []sse {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	var out []sse
	sc := bufio.NewScanner(resp.Body)
	var cur sse
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data); err != nil {
				t.Fatalf("data of %s: %v", cur.event, err)
			}
		case line == "":
			if cur.data["type"] != cur.event {
				t.Errorf("event %q carries type %v", cur.event, cur.data["type"])
			}
			out = append(out, cur)
			cur = sse{}
		}
	}
	return out
}

func names(events []sse) string {
	var n []string
	for _, e := range events {
		n = append(n, e.event)
	}
	return strings.Join(n, " ")
}

const bashTools = `"tools":[{"name":"Read"},{"name":"Bash"}]`

func TestScriptedTurnStreaming(t *testing.T) {
	s := New(Script{Command: "echo hi", Reply: "finished"})
	srv := httptest.NewServer(s)
	defer srv.Close()

	resp := post(t, srv.URL+"/v1/messages?beta=true", `{"model":"m","stream":true,`+bashTools+`,"messages":[{"role":"user","content":"go"}]}`,
		map[string]string{"Authorization": "Bearer tok-1", "Anthropic-Beta": "oauth-2025-04-20"})
	ev := readSSE(t, resp)
	want := "message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop"
	if names(ev) != want {
		t.Fatalf("events %q, want %q", names(ev), want)
	}
	block := ev[1].data["content_block"].(map[string]any)
	if block["type"] != "tool_use" || block["name"] != "Bash" {
		t.Fatalf("content block %v", block)
	}
	var input map[string]string
	if err := json.Unmarshal([]byte(ev[3].data["delta"].(map[string]any)["partial_json"].(string)), &input); err != nil || input["command"] != "echo hi" {
		t.Errorf("tool input %v (%v)", input, err)
	}
	if sr := ev[5].data["delta"].(map[string]any)["stop_reason"]; sr != "tool_use" {
		t.Errorf("stop_reason %v", sr)
	}

	id := block["id"].(string)
	resp = post(t, srv.URL+"/v1/messages", `{"model":"m","stream":true,`+bashTools+`,"messages":[{"role":"user","content":"go"},`+
		`{"role":"assistant","content":[{"type":"tool_use","id":"`+id+`","name":"Bash","input":{}}]},`+
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"`+id+`","content":[{"type":"text","text":"hi"}]}]}]}`,
		map[string]string{"X-Api-Key": "key-1"})
	ev = readSSE(t, resp)
	if d := ev[3].data["delta"].(map[string]any); d["type"] != "text_delta" || d["text"] != "finished" {
		t.Errorf("final delta %v", d)
	}
	if sr := ev[5].data["delta"].(map[string]any)["stop_reason"]; sr != "end_turn" {
		t.Errorf("stop_reason %v", sr)
	}

	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests recorded", len(reqs))
	}
	if r := reqs[0]; r.Authorization != "Bearer tok-1" || r.APIKey != "" || r.Beta != "oauth-2025-04-20" || !r.Stream || r.Answer != "tool_use" || r.Query != "beta=true" {
		t.Errorf("first request recorded as %+v", r)
	}
	if r := reqs[1]; r.APIKey != "key-1" || r.Authorization != "" || r.Answer != "text" ||
		len(r.ToolResults) != 1 || r.ToolResults[0] != (ToolResult{ToolUseID: id, Content: "hi"}) {
		t.Errorf("second request recorded as %+v", r)
	}
}

func TestNonStreamingAndFallback(t *testing.T) {
	s := New(Script{Command: "true", NoStreaming: true})
	srv := httptest.NewServer(s)
	defer srv.Close()
	body := `{"model":"m","stream":%s,` + bashTools + `,"messages":[{"role":"user","content":"go"}]}`
	resp := post(t, srv.URL+"/v1/messages", strings.Replace(body, "%s", "true", 1), nil)
	var e struct {
		Type  string
		Error struct{ Type string }
	}
	if resp.StatusCode != http.StatusNotFound || json.NewDecoder(resp.Body).Decode(&e) != nil || e.Type != "error" || e.Error.Type != "not_found_error" {
		t.Errorf("a streaming request with NoStreaming: %s %+v", resp.Status, e)
	}
	resp = post(t, srv.URL+"/v1/messages", strings.Replace(body, "%s", "false", 1), nil)
	var m struct {
		Type, Role string
		StopReason string `json:"stop_reason"`
		Content    []struct {
			Type, Name string
			Input      map[string]string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %v", resp.Status, err)
	}
	if m.Type != "message" || m.Role != "assistant" || m.StopReason != "tool_use" || len(m.Content) != 1 || m.Content[0].Name != "Bash" || m.Content[0].Input["command"] != "true" {
		t.Errorf("non-streaming answer %+v", m)
	}
}

// Side requests (no Bash offered) get the reply at once; unknown paths are 404 and recorded.
func TestSideRequestsAndUnknownPaths(t *testing.T) {
	s := New(Script{Command: "true"})
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp := post(t, srv.URL+"/v1/messages", `{"model":"m","messages":[{"role":"user","content":"title?"}]}`, nil)
	var m struct {
		StopReason string `json:"stop_reason"`
		Content    []struct{ Type, Text string }
	}
	json.NewDecoder(resp.Body).Decode(&m)
	if m.StopReason != "end_turn" || len(m.Content) != 1 || m.Content[0].Text != "done" {
		t.Errorf("side request answered %+v", m)
	}
	if resp, _ := http.Head(srv.URL + "/api/hello"); resp.StatusCode != 200 {
		t.Errorf("HEAD /api/hello: %s", resp.Status)
	}
	if resp := post(t, srv.URL+"/api/oauth/profile", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %s", resp.Status)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[2].Path != "/api/oauth/profile" || reqs[2].Answer != "not_found" {
		t.Errorf("requests %+v", reqs)
	}
}

func TestFingerprint(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "",
		"Bearer secret":    "Bearer sha256:",
		"sk-ant-api03-key": "sha256:",
	} {
		got := Fingerprint(in)
		if !strings.HasPrefix(got, want) || (in != "" && len(got) != len(want)+12) || strings.Contains(got, "secret") {
			t.Errorf("Fingerprint(%q) = %q", in, got)
		}
	}
}
