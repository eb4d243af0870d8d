package creds

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Only Vault's own answers that the user has no token are an opt-out: every other shape of a
// KV v2 read, including the ones a real Vault 1.19.0 gives for a moved, disabled or mistyped
// mount, is a failure, so that the materialized token is kept (fallback) and never deleted.
// The shapes a real server cannot be made to produce (a proxy's {}, a 200 without metadata, a
// 404 with only warnings) come from httptest; the real ones are also tested against the real
// server (TestRealVaultMountGoneIsNeverAnOptOut, cmd/t3-supervise TestMountGone*).
func TestOnlyVaultsOwnAnswersAreAnOptOut(t *testing.T) {
	md := func(v any, deleted string, destroyed bool) string {
		return fmt.Sprintf(`"metadata":{"version":%v,"deletion_time":%q,"destroyed":%v}`, v, deleted, destroyed)
	}
	const noHandler = `{"errors":["no handler for route \"secret/data/workstation/claude-users/alice\". route entry not found."]}`
	for _, tc := range []struct {
		name    string
		code    int
		body    string
		guessed bool // the mount lookup answers 403 (as after `vault secrets move`)
		want    Outcome
		err     error
		mention string
	}{
		// Vault's own opt-out answers.
		{"no secret", 404, `{"errors":[]}`, false, NoSecret, nil, ""},
		{"no field", 200, `{"data":{"data":{"other":"x"},` + md(2, "", false) + `}}`, false, NoField, nil, ""},
		{"null data", 200, `{"data":{"data":null,` + md(2, "", false) + `}}`, false, NoField, nil, ""},
		{"deleted", 404, `{"data":{"data":null,` + md(4, "2026-11-01T10:00:00Z", false) + `}}`, false, Deleted, nil, ""},
		{"destroyed", 404, `{"data":{"data":null,` + md(4, "", true) + `}}`, false, Destroyed, nil, ""},
		{"deleted, guessed mount", 404, `{"data":{"data":null,` + md(4, "2026-11-01T10:00:00Z", false) + `}}`, true, Deleted, nil, ""},
		{"found, guessed mount", 200, `{"data":{"data":{"setup_token":"` + testToken + `"},` + md(1, "", false) + `}}`, true, Found, nil, ""},
		// Not an opt-out: the mount is gone (Vault 1.19.0's answer after secrets move/disable).
		{"no handler for route", 404, noHandler, false, 0, ErrUnavailable, "no handler for route"},
		{"no handler for route, guessed mount", 404, noHandler, true, 0, ErrUnavailable, "moved, disabled or mistyped mount"},
		{"404 {}", 404, `{}`, false, 0, ErrUnavailable, "keys {}"},
		{"404 with only warnings", 404, `{"warnings":["something"]}`, false, 0, ErrUnavailable, "keys {warnings}"},
		{"404 errors null", 404, `{"errors":null}`, false, 0, ErrUnavailable, "not Vault's answer for a missing secret"},
		{"404 errors and more", 404, `{"errors":[],"data":null}`, false, 0, ErrUnavailable, "keys {data,errors}"},
		{"404 errors not strings", 404, `{"errors":[1]}`, false, 0, ErrUnavailable, "not a list of strings"},
		{"404 JSON null", 404, `null`, false, 0, ErrUnavailable, "not Vault's JSON"},
		{"404 JSON list", 404, `[]`, false, 0, ErrUnavailable, "not Vault's JSON"},
		{"no secret under a guessed mount", 404, `{"errors":[]}`, true, 0, ErrUnavailable, "guessed mount"},
		{"404 with current metadata", 404, `{"data":{"data":null,` + md(4, "", false) + `}}`, false, 0, ErrUnavailable, "current version"},
		{"404 data without metadata", 404, `{"data":{"data":null}}`, false, 0, ErrUnavailable, "without data.metadata"},
		{"200 {}", 200, `{}`, false, 0, ErrUnavailable, "without data"},
		{`200 {"data":null}`, 200, `{"data":null}`, false, 0, ErrUnavailable, "without data"},
		{"200 without data.metadata (a KV v1 answer)", 200, `{"data":{"setup_token":"` + testToken + `"}}`, false, 0, ErrUnavailable, "without data.metadata"},
		{"200 data without metadata", 200, `{"data":{"data":{"other":"x"}}}`, false, 0, ErrUnavailable, "without data.metadata"},
		{"200 metadata null", 200, `{"data":{"data":{},"metadata":null}}`, false, 0, ErrUnavailable, "without data.metadata"},
		{"200 metadata without version", 200, `{"data":{"data":{},"metadata":{"deletion_time":""}}}`, false, 0, ErrUnavailable, "no version"},
		{"200 version 0", 200, `{"data":{"data":{},` + md(0, "", false) + `}}`, false, 0, ErrUnavailable, "no version"},
		{"200 version a string", 200, `{"data":{"data":{},` + md(`"2"`, "", false) + `}}`, false, 0, ErrUnavailable, "no version"},
		{"200 data.data a list", 200, `{"data":{"data":[],` + md(2, "", false) + `}}`, false, 0, ErrUnavailable, "not an object"},
		{"200 JSON null", 200, `null`, false, 0, ErrUnavailable, "not Vault's JSON"},
		{"204", 204, ``, false, 0, ErrUnavailable, "HTTP 204"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVault(t)
			f.read = func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.code)
				fmt.Fprint(w, tc.body)
			}
			if tc.guessed {
				f.mounts = func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(403)
					fmt.Fprint(w, `{"errors":["preflight capability check returned 403, please ensure client's policies grant access to path \"secret/workstation/claude-users/alice/\""]}`)
				}
			}
			res, _, err := resolveWith(f.config(t))
			if res.MountGuessed != tc.guessed {
				t.Errorf("MountGuessed %v", res.MountGuessed)
			}
			// With a materialized token, as the running fleet has one: a failure keeps it.
			d, derr := Decide(res, err, NewSecret(testToken), nil)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), "secret/workstation/claude-users/alice") || !strings.Contains(err.Error(), tc.mention) {
					t.Fatalf("err %v, want %v naming the path and %q", err, tc.err, tc.mention)
				}
				if strings.Contains(err.Error(), testToken[13:]) {
					t.Errorf("the error repeats the token")
				}
				if derr != nil || d.EnvFile != ActionKeep || !d.Inject.Equal(NewSecret(testToken)) || d.From != FromFallback {
					t.Errorf("decision %+v %v: want the fallback, the file kept", d, derr)
				}
				return
			}
			if err != nil || res.Outcome != tc.want {
				t.Fatalf("%v %v, want %v", res.Outcome, err, tc.want)
			}
			if tc.want.OptOut() && (d.EnvFile != ActionRemove || !d.Inject.IsZero()) {
				t.Errorf("decision %+v: want the opt-out", d)
			}
		})
	}
}
