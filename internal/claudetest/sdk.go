//go:build linux

package claudetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// SDK is a client of a running SDK stand-in's control API (test/sdk/server.mjs).
type SDK struct {
	URL string // http://127.0.0.1:PORT
}

// Session is one SDK session as the stand-in reports it.
type Session struct {
	ID       string   `json:"id"`
	State    string   `json:"state"` // starting, running, idle, closed, failed
	Prompts  []string `json:"prompts"`
	Messages []string `json:"messages"` // SDK message types, e.g. "system/init", "assistant", "result/success"
	ToolUses []struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Command string `json:"command"`
	} `json:"tool_uses"`
	ToolResults []struct {
		ToolUseID string `json:"tool_use_id"`
		Content   string `json:"content"`
		IsError   bool   `json:"is_error"`
	} `json:"tool_results"`
	Results []struct {
		Subtype string `json:"subtype"`
		IsError bool   `json:"is_error"`
		Result  string `json:"result"`
	} `json:"results"`
	Error string `json:"error"`
}

// Probe is one run of T3's account probe.
type Probe struct {
	N       int    `json:"n"`
	Version string `json:"version"`
	Account *struct {
		TokenSource  string `json:"token_source"`
		APIKeySource string `json:"api_key_source"`
	} `json:"account"`
	Error  string `json:"error"`
	TookMS int    `json:"took_ms"`
}

var client = &http.Client{Timeout: 30 * time.Second}

func (s SDK) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Start opens a session whose first turn is prompt, with the Bash tool allowed.
func (s SDK) Start(prompt string) (string, error) {
	var r struct{ ID string }
	err := s.call(http.MethodPost, "/_sdk/sessions", map[string]any{"prompt": prompt}, &r)
	return r.ID, err
}

// Session reads one session.
func (s SDK) Session(id string) (Session, error) {
	var r Session
	return r, s.call(http.MethodGet, "/_sdk/sessions/"+id, nil, &r)
}

// Close ends a session's input: its claude exits.
func (s SDK) Close(id string) error {
	return s.call(http.MethodPost, "/_sdk/sessions/"+id+"/close", nil, nil)
}

// Probe runs T3's account probe once and returns its record.
func (s SDK) Probe() (Probe, error) {
	var r Probe
	return r, s.call(http.MethodPost, "/_sdk/probe", nil, &r)
}

// Probes lists every account probe run so far, by the timer (T3_SDK_PROBE_INTERVAL) or asked.
func (s SDK) Probes() ([]Probe, error) {
	var r []Probe
	return r, s.call(http.MethodGet, "/_sdk/probes", nil, &r)
}

// WaitTurn waits until session id's turn is over (idle, closed or failed) and returns it; it
// fails t after limit.
func (s SDK) WaitTurn(t testing.TB, id string, limit time.Duration) Session {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last Session
	var err error
	for time.Now().Before(deadline) {
		if last, err = s.Session(id); err == nil && last.State != "starting" && last.State != "running" {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("session %s not done after %v: %+v (last error %v)", id, limit, last, err)
	return last
}

// Turn opens a session with prompt, waits for its first turn to end, closes it and returns it.
func (s SDK) Turn(t testing.TB, prompt string, limit time.Duration) Session {
	t.Helper()
	id, err := s.Start(prompt)
	if err != nil {
		t.Fatal(err)
	}
	sess := s.WaitTurn(t, id, limit)
	if err := s.Close(id); err != nil {
		t.Errorf("closing session %s: %v", id, err)
	}
	return sess
}

// WaitUp waits until GET / answers 200, failing t after limit or once exited is closed.
func (s SDK) WaitUp(t testing.TB, limit time.Duration, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(limit)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := hc.Get(s.URL + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("the SDK stand-in's supervisor exited before %s/ answered", s.URL)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s/ does not answer after %v", s.URL, limit)
}
