// Package anthropicapi is a loopback stand-in for the Anthropic Messages API, for tests that run
// the real Claude Code CLI (pointed at it with ANTHROPIC_BASE_URL). The API is the one remote
// service these tests cannot reach; everything else in them is real, so this double answers
// exactly what the real CLI asks, and records what it sent.
//
// What the CLI (2.1.328) sends, logged here: `HEAD /api/hello` (a connectivity check) at start,
// then `POST /v1/messages?beta=true` with "stream": true; when that fails it sends the same
// request again with "stream": false. An unknown path is answered 404 in the API's error shape
// and recorded, so a new side endpoint shows up in Requests instead of going unnoticed.
//
// The scripted turn: a request offering the Bash tool, whose last user message carries no
// tool_result of ours, is answered with a tool_use of Bash running Script.Command; the request
// that brings that tool_result back is answered with Script.Reply and stop_reason end_turn.
// Every other request (a side question of the CLI, a conversation without Bash) gets the reply
// at once. The turn is derived from the request alone, so any number of sessions can share one
// Server.
package anthropicapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Script says how conversation turns are answered.
type Script struct {
	// Command is the Bash command of the scripted turn; "" answers every request with Reply.
	Command string
	// Reply is the text of every final answer (default "done").
	Reply string
	// NoStreaming answers every streaming request 404, so that the CLI falls back to the same
	// request without streaming (it does on a 404; a 529 it retries with backoff instead); the
	// turn is then played out without SSE.
	NoStreaming bool
}

// Request is one request as received, and what it was answered.
type Request struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Query  string    `json:"query,omitempty"`
	// Authorization and APIKey are the raw Authorization and x-api-key headers: what a test
	// asserts on. Never print them; Fingerprint shows one safely.
	Authorization string   `json:"authorization,omitempty"`
	APIKey        string   `json:"x_api_key,omitempty"`
	Beta          string   `json:"anthropic_beta,omitempty"`
	UserAgent     string   `json:"user_agent,omitempty"`
	Model         string   `json:"model,omitempty"`
	Stream        bool     `json:"stream,omitempty"`
	Tools         []string `json:"tools,omitempty"`
	// ToolResults are the tool_result blocks of the last user message.
	ToolResults []ToolResult `json:"tool_results,omitempty"`
	Status      int          `json:"status"`
	Answer      string       `json:"answer"` // "tool_use", "text", "error", "hello", "count_tokens", "not_found"
}

// ToolResult is a tool_result content block the CLI sent back.
type ToolResult struct {
	ToolUseID string `json:"tool_use_id"`
	Content   string `json:"content"` // text blocks joined by newlines
	IsError   bool   `json:"is_error,omitempty"`
}

// Fingerprint shows a header value without disclosing it: its scheme, if any, and the first 12
// hex digits of its SHA-256 ("Bearer sha256:0123456789ab"); "" for "".
func Fingerprint(v string) string {
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(v))
	scheme, _, ok := strings.Cut(v, " ")
	if !ok || strings.ContainsAny(scheme, "-_.") {
		scheme = ""
	} else {
		scheme += " "
	}
	return scheme + "sha256:" + hex.EncodeToString(sum[:6])
}

// Server is the stand-in; it is an http.Handler.
type Server struct {
	script Script
	prefix string // of every tool_use id this server issued

	mu       sync.Mutex
	issued   int // tool_use ids so far
	requests []Request
	notify   chan struct{} // closed and replaced on every new request
	// OnRequest, if set, is called with every request after it was answered (e.g. to log it).
	OnRequest func(Request)
}

// New returns a Server playing script.
func New(script Script) *Server {
	if script.Reply == "" {
		script.Reply = "done"
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Server{script: script, prefix: "toolu_t3s" + hex.EncodeToString(b) + "_", notify: make(chan struct{})}
}

// Requests returns a copy of every request so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Changed returns a channel closed at the next request, to wait for one without polling.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if s.OnRequest != nil {
		s.OnRequest(r)
	}
}

// messagesRequest is the part of a Messages API request body the stand-in reads.
type messagesRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"` // a string or an array of blocks
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"` // of a tool_result: a string or text blocks
	IsError   bool            `json:"is_error"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{
		Time: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Authorization: r.Header.Get("Authorization"), APIKey: r.Header.Get("X-Api-Key"),
		Beta: r.Header.Get("Anthropic-Beta"), UserAgent: r.Header.Get("User-Agent"),
	}
	defer func() { s.record(rec) }()
	switch {
	case r.URL.Path == "/api/hello":
		rec.Status, rec.Answer = http.StatusOK, "hello"
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages":
		s.messages(w, r, &rec)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		rec.Status, rec.Answer = http.StatusOK, "count_tokens"
		writeJSON(w, http.StatusOK, map[string]any{"input_tokens": 1})
	default:
		rec.Status, rec.Answer = http.StatusNotFound, "not_found"
		writeError(w, http.StatusNotFound, "not_found_error", "the t3-supervise test stand-in does not serve "+r.Method+" "+r.URL.Path)
	}
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, rec *Request) {
	var req messagesRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		rec.Status, rec.Answer = http.StatusBadRequest, "error"
		writeError(w, http.StatusBadRequest, "invalid_request_error", "body: "+err.Error())
		return
	}
	rec.Model, rec.Stream = req.Model, req.Stream
	for _, t := range req.Tools {
		rec.Tools = append(rec.Tools, t.Name)
	}
	ours := false
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "user" {
		var blocks []block
		_ = json.Unmarshal(req.Messages[n-1].Content, &blocks) // a plain string has no tool_result
		for _, b := range blocks {
			if b.Type != "tool_result" {
				continue
			}
			rec.ToolResults = append(rec.ToolResults, ToolResult{ToolUseID: b.ToolUseID, Content: textOf(b.Content), IsError: b.IsError})
			ours = ours || strings.HasPrefix(b.ToolUseID, s.prefix)
		}
	}
	if req.Stream && s.script.NoStreaming {
		rec.Status, rec.Answer = http.StatusNotFound, "error"
		writeError(w, http.StatusNotFound, "not_found_error", "streaming is switched off in this test (Script.NoStreaming)")
		return
	}
	m := message{Model: req.Model, Reply: s.script.Reply}
	if s.script.Command != "" && !ours && slices.Contains(rec.Tools, "Bash") {
		m.ToolUseID, m.Command = s.newToolUseID(), s.script.Command
		rec.Answer = "tool_use"
	} else {
		rec.Answer = "text"
	}
	rec.Status = http.StatusOK
	if req.Stream {
		m.stream(w)
	} else {
		writeJSON(w, http.StatusOK, m.body())
	}
}

func (s *Server) newToolUseID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued++
	return fmt.Sprintf("%s%d", s.prefix, s.issued)
}

func textOf(raw json.RawMessage) string {
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return str
	}
	var blocks []block
	_ = json.Unmarshal(raw, &blocks)
	var parts []string
	for _, b := range blocks {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the API's error shape (type error, error.type, error.message).
func writeError(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]string{"type": kind, "message": msg}})
}
