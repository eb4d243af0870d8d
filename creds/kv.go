package creds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// kvRead is Vault's answer to a KV v2 read (GET MOUNT/data/PATH), judged.
type kvRead struct {
	Outcome Outcome
	Version int    // the secret's current version; 0 for NoSecret
	Value   string // the field's value, for Found (not yet validated)
	// Created is data.metadata.created_time, when the version was written (zero when Vault gave
	// none that parses); ExpiresAt is data.metadata.custom_metadata.expires_at as given ("" when
	// not set). Neither decides the outcome: a missing or odd one only leaves the token's
	// expiry unknown or estimated (TokenExpiry), it never turns a good read into a failure.
	Created   time.Time
	ExpiresAt string
}

// judgeRead decides what a KV v2 read answered, from its status, whether the body was declared
// JSON, and the body; what ("read PATH") starts its errors. Only Vault's own answers that the user has no current token are an
// opt-out, because an opt-out deletes the env file and starts t3 without a token:
//
//   - no secret: 404 whose body is {"errors":[]} and nothing else (KV v2 returns no response
//     for a path never written or whose metadata was deleted; Vault's HTTP layer turns that
//     into exactly this body);
//   - the latest version deleted or destroyed: a 404 (or 200) whose data.metadata says so
//     (deletion_time set, destroyed true), with a version number;
//   - the field absent, null or empty: a 200 that carries data.metadata with a version.
//
// Everything else is ErrUnavailable, never an opt-out: a 404 with a non-empty errors list (Vault
// says "no handler for route" when the mount was moved or disabled or the template names a mount
// that does not exist), an empty 404 (a proxy's), 404 {} or a 404 with only warnings, a 200
// without data or without data.metadata (not a KV v2 answer: a KV v1 mount or another engine
// under a guessed mount, a proxy's {}), a redirect that was not followed. guessed says the mount
// was guessed (Vault refused the mount lookup): then a bare 404 cannot be told from a read of a
// wrong mount and is not trusted either; an answer carrying KV v2 metadata still is.
//
// The error carries only the status, Vault's errors list and the names of the JSON keys: never
// the body, which could hold the token.
func judgeRead(what string, status int, isJSON bool, body []byte, field string, guessed bool) (kvRead, error) {
	if status != http.StatusOK && status != http.StatusNotFound {
		return kvRead{}, fmt.Errorf("%w: %s: HTTP %d: not an answer of a KV v2 read", ErrUnavailable, what, status)
	}
	if !isJSON {
		return kvRead{}, fmt.Errorf("%w: %s: HTTP %d without Vault's JSON body: not taken as an answer", ErrUnavailable, what, status)
	}
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil || top == nil {
		return kvRead{}, fmt.Errorf("%w: %s: HTTP %d: the answer is not Vault's JSON (%s)", ErrUnavailable, what, status, jsonProblem(err))
	}
	data, hasData := object(top["data"])
	if !hasData {
		if status == http.StatusOK {
			return kvRead{}, fmt.Errorf("%w: %s: HTTP 200 without data (keys: %s): not a KV v2 answer", ErrUnavailable, what, keys(top))
		}
		return judgeNotFound(what, top, guessed)
	}
	_, ok := object(data["metadata"])
	if !ok {
		return kvRead{}, fmt.Errorf("%w: %s: HTTP %d without data.metadata: not a KV v2 answer (a KV v1 mount or another engine?)", ErrUnavailable, what, status)
	}
	var meta struct {
		Version      any    `json:"version"` // a JSON number (json.Number: UseNumber)
		DeletionTime string `json:"deletion_time"`
		Destroyed    bool   `json:"destroyed"`
		// Any type: a value of an unexpected type must not fail the read (see kvRead).
		CreatedTime    any `json:"created_time"`
		CustomMetadata any `json:"custom_metadata"` // null when the secret has none
	}
	if err := unmarshal(data["metadata"], &meta); err != nil {
		return kvRead{}, fmt.Errorf("%w: %s: HTTP %d: data.metadata is not KV v2 metadata (%s)", ErrUnavailable, what, status, jsonProblem(err))
	}
	n, isNumber := meta.Version.(json.Number)
	version, err := n.Int64()
	if !isNumber || err != nil || version < 1 || version > 1<<31 {
		return kvRead{}, fmt.Errorf("%w: %s: HTTP %d: data.metadata has no version number", ErrUnavailable, what, status)
	}
	r := kvRead{Version: int(version)}
	if s, ok := meta.CreatedTime.(string); ok {
		r.Created, _ = time.Parse(time.RFC3339Nano, s)
	}
	if cm, ok := meta.CustomMetadata.(map[string]any); ok {
		switch v := cm[ExpiresAtKey].(type) {
		case nil:
		case string:
			r.ExpiresAt = v
		default:
			// Vault keeps custom metadata as strings; anything else is reported as malformed.
			r.ExpiresAt = fmt.Sprintf("(a JSON %s)", jsonKind(v))
		}
	}
	// Destroyed first: a destroyed version may also carry a deletion time.
	switch {
	case meta.Destroyed:
		r.Outcome = Destroyed
		return r, nil
	case meta.DeletionTime != "":
		r.Outcome = Deleted
		return r, nil
	case status == http.StatusNotFound:
		return kvRead{}, fmt.Errorf("%w: %s: HTTP 404 with the metadata of a current version %d: not taken as \"no secret\"", ErrUnavailable, what, version)
	}
	var values map[string]any
	if raw := data["data"]; len(raw) > 0 && string(raw) != "null" {
		if err := unmarshal(raw, &values); err != nil {
			return kvRead{}, fmt.Errorf("%w: %s: HTTP 200: data.data is not an object (%s)", ErrUnavailable, what, jsonProblem(err))
		}
	}
	switch v := values[field].(type) {
	case nil:
		r.Outcome = NoField
	case string:
		// `vault kv put … setup_token=@file` keeps the file's final newline: surrounding
		// whitespace is not part of any token, so it is dropped rather than refused.
		if r.Value = strings.TrimSpace(v); r.Value == "" {
			r.Outcome = NoField
		} else {
			r.Outcome = Found
		}
	default:
		return kvRead{}, fmt.Errorf("%w: %s: field %s is a JSON %s, not a string", ErrMalformed, what, field, jsonKind(v))
	}
	return r, nil
}

// judgeNotFound judges a 404 without data: only {"errors":[]}, nothing else, is "no secret".
func judgeNotFound(what string, top map[string]json.RawMessage, guessed bool) (kvRead, error) {
	var errs []string
	rawErrs, hasErrs := top["errors"]
	if hasErrs {
		if err := unmarshal(rawErrs, &errs); err != nil {
			return kvRead{}, fmt.Errorf("%w: %s: HTTP 404: errors is not a list of strings", ErrUnavailable, what)
		}
	}
	switch {
	case len(errs) > 0:
		return kvRead{}, fmt.Errorf("%w: %s: HTTP 404: %s: Vault has no such mount or route (a moved, disabled or mistyped mount?), not taken as \"no secret\"", ErrUnavailable, what, vaultErrors(errs))
	case !hasErrs || string(bytes.TrimSpace(rawErrs)) == "null" || len(top) != 1:
		return kvRead{}, fmt.Errorf("%w: %s: HTTP 404 with keys %s: not Vault's answer for a missing secret ({\"errors\":[]}), not taken as \"no secret\"", ErrUnavailable, what, keys(top))
	case guessed:
		return kvRead{}, fmt.Errorf("%w: %s: HTTP 404 {\"errors\":[]} under a guessed mount (Vault refused sys/internal/ui/mounts): a missing secret cannot be told from a wrong mount, not taken as \"no secret\"", ErrUnavailable, what)
	}
	return kvRead{Outcome: NoSecret}, nil
}

// object returns raw as a JSON object, and false for anything else (absent, null, a list).
func object(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

func unmarshal(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// keys lists an object's key names, never its values: {a,b}.
func keys(m map[string]json.RawMessage) string {
	names := make([]string, 0, len(m))
	for k := range m {
		if len(k) > 40 {
			k = k[:40] + "…"
		}
		names = append(names, k)
	}
	slices.Sort(names)
	return "{" + strings.Join(names, ",") + "}"
}

// vaultErrors is Vault's errors list on one line, bounded.
func vaultErrors(errs []string) string {
	s := strings.Join(strings.Fields(strings.Join(errs, "; ")), " ") // Vault's multierror has newlines and tabs
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// jsonProblem says where the JSON is wrong without quoting it (the messages of encoding/json's
// errors quote the input).
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "null"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("a %s where %s was expected", te.Value, te.Type)
	}
	return "truncated or empty"
}
