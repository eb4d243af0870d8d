package anthropicapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// message is one assistant answer: a tool_use of Bash (ToolUseID set), or the final text.
type message struct {
	Model     string
	Reply     string
	ToolUseID string
	Command   string
}

func (m message) id() string {
	if m.ToolUseID != "" {
		return "msg_" + m.ToolUseID
	}
	return "msg_t3s_reply"
}

func (m message) stopReason() string {
	if m.ToolUseID != "" {
		return "tool_use"
	}
	return "end_turn"
}

func (m message) input() map[string]string {
	return map[string]string{"command": m.Command, "description": "Run the command of the test script"}
}

func (m message) content() []map[string]any {
	if m.ToolUseID != "" {
		return []map[string]any{{"type": "tool_use", "id": m.ToolUseID, "name": "Bash", "input": m.input()}}
	}
	return []map[string]any{{"type": "text", "text": m.Reply}}
}

var usage = map[string]int{"input_tokens": 1, "output_tokens": 1}

// body is the non-streaming answer (a Message object).
func (m message) body() map[string]any {
	return map[string]any{
		"id": m.id(), "type": "message", "role": "assistant", "model": m.Model,
		"content": m.content(), "stop_reason": m.stopReason(), "stop_sequence": nil, "usage": usage,
	}
}

// stream writes the answer as the API's server-sent events: message_start, one content block
// (start, delta, stop), message_delta with the stop reason, message_stop. The tool's input
// arrives as one input_json_delta, the text as one text_delta, as the API may send them.
func (m message) stream(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(event string, data map[string]any) {
		b, _ := json.Marshal(data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	start := m.body()
	start["content"], start["stop_reason"] = []any{}, nil
	send("message_start", map[string]any{"type": "message_start", "message": start})
	var first, delta map[string]any
	if m.ToolUseID != "" {
		first = map[string]any{"type": "tool_use", "id": m.ToolUseID, "name": "Bash", "input": map[string]any{}}
		in, _ := json.Marshal(m.input())
		delta = map[string]any{"type": "input_json_delta", "partial_json": string(in)}
	} else {
		first = map[string]any{"type": "text", "text": ""}
		delta = map[string]any{"type": "text_delta", "text": m.Reply}
	}
	send("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": first})
	send("ping", map[string]any{"type": "ping"})
	send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": delta})
	send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	send("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": m.stopReason(), "stop_sequence": nil}, "usage": map[string]int{"output_tokens": 1}})
	send("message_stop", map[string]any{"type": "message_stop"})
}
