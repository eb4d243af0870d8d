package creds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const testToken = "sk-ant-oat01-AAAAbbbbCCCCdddd0123456789_-zzzzTEST"

func TestSecretNeverFormatsItsValue(t *testing.T) {
	s := NewSecret(testToken)
	type wrapper struct {
		Tok Secret
		P   *Secret
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-40v"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, wrapper{s, &s}), fmt.Sprintf(verb, []Secret{s}))
	}
	out = append(out, fmt.Sprint(s), fmt.Sprintln(s), s.String(), s.GoString())
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "token", s, "w", wrapper{s, &s})
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", s)
	out = append(out, buf.String())
	j, _ := json.Marshal(wrapper{s, &s})
	out = append(out, string(j))
	m, _ := json.Marshal(map[Secret]string{s: "k"})
	out = append(out, string(m))
	out = append(out, fmt.Errorf("wrapped: %v", s).Error(), errors.New(fmt.Sprint(s)).Error())
	for _, o := range out {
		if strings.Contains(o, testToken) || strings.Contains(o, "AAAAbbbb") || strings.Contains(strings.ToLower(o), "616161616262") {
			t.Errorf("leaked: %s", o)
		}
		if !strings.Contains(o, "redacted") {
			t.Errorf("no redaction marker: %s", o)
		}
	}
	if s.Reveal() != testToken {
		t.Error("Reveal lost the value")
	}
	if fp := s.Fingerprint(); !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+12 {
		t.Errorf("fingerprint %q", fp)
	}
	if NewSecret(testToken).Fingerprint() == NewSecret(testToken+"x").Fingerprint() {
		t.Error("fingerprints collide")
	}
}

func TestValidateToken(t *testing.T) {
	if err := ValidateToken(testToken); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"empty":         "",
		"other prefix":  "sk-ant-api03-AAAAbbbbCCCCdddd0123456789",
		"api key":       "sk-ant-oat02-AAAAbbbbCCCCdddd0123456789",
		"too short":     "sk-ant-oat01-abc",
		"newline":       testToken + "\nEVIL=1",
		"equals":        testToken + "=x",
		"space":         "sk-ant-oat01-AAAA bbbbCCCCdddd0123456789",
		"quote":         testToken + `"`,
		"dollar":        testToken + "$(id)",
		"semicolon":     testToken + ";rm",
		"backtick":      testToken + "`id`",
		"huge":          "sk-ant-oat01-" + strings.Repeat("a", 600),
		"leading space": " " + testToken,
		"trailing nl":   testToken + "\n",
		"unicode":       "sk-ant-oat01-AAAAbbbbCCCCdddd0123456789é",
		"nul":           testToken + "\x00",
	} {
		err := ValidateToken(bad)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if len(bad) > 20 && strings.Contains(err.Error(), bad[13:]) {
			t.Errorf("%s: the error repeats the value: %v", name, err)
		}
	}
}

func FuzzValidateToken(f *testing.F) {
	f.Add(testToken)
	f.Add("sk-ant-oat01-\n")
	f.Fuzz(func(t *testing.T, v string) {
		err := ValidateToken(v)
		if err == nil && strings.ContainsAny(v, "\n\r=\"' $`;\\\x00") {
			t.Fatalf("accepted %q", v)
		}
		if err != nil && len(v) > 16 && strings.Contains(err.Error(), v) {
			t.Fatalf("error repeats the value: %v", err)
		}
	})
}

func TestSecretPath(t *testing.T) {
	for _, tc := range []struct {
		tmpl, user, want string
		ok               bool
	}{
		{"", "alice", "secret/workstation/claude-users/alice", true},
		{"kv/people/{user}/claude", "bob", "kv/people/bob/claude", true},
		{"/secret/x/{user}/", "a.b-c_d", "secret/x/a.b-c_d", true},
		{"secret/shared/claude", "alice", "", false},
		{"secret/x/{user}", "../bob", "", false},
		{"secret/x/{user}", "a/b", "", false},
		{"secret/x/{user}", "..", "", false},
		{"secret/x/{user}", "", "", false},
		{"secret/x/{user}", "-rf", "", false},
		{"secret/x/{user}", "al ice", "", false},
		{"secret/x/{user}", "alice\n", "", false},
		{"{user}", "alice", "", false},
		{"secret//{user}", "alice", "", false},
	} {
		got, err := Config{PathTemplate: tc.tmpl, User: tc.user}.SecretPath()
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("SecretPath(%q, %q) = %q, %v", tc.tmpl, tc.user, got, err)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("SecretPath(%q, %q): %v is not ErrConfig", tc.tmpl, tc.user, err)
		}
	}
}

func TestDecide(t *testing.T) {
	tok, other := NewSecret(testToken), NewSecret(testToken+"2")
	found := Result{Outcome: Found, Token: tok}
	notExist := fmt.Errorf("open: %w", errNotExist)
	garbage := errors.New("env file x line 1: want CLAUDE_CODE_OAUTH_TOKEN=TOKEN")
	unavailable := fmt.Errorf("%w: connection refused", ErrUnavailable)
	for _, tc := range []struct {
		name     string
		res      Result
		rerr     error
		cached   Secret
		cerr     error
		inject   Secret
		action   Action
		fallback bool
		errIs    error
	}{
		{"found, no file", found, nil, Secret{}, notExist, tok, ActionWrite, false, nil},
		{"found, same file", found, nil, tok, nil, tok, ActionUnchanged, false, nil},
		{"found, rotated", found, nil, other, nil, tok, ActionWrite, false, nil},
		{"found, garbage file", found, nil, Secret{}, garbage, tok, ActionWrite, false, nil},
		{"no secret, file", Result{Outcome: NoSecret}, nil, tok, nil, Secret{}, ActionRemove, false, nil},
		{"no field, no file", Result{Outcome: NoField}, nil, Secret{}, notExist, Secret{}, ActionNone, false, nil},
		{"deleted, file", Result{Outcome: Deleted}, nil, tok, nil, Secret{}, ActionRemove, false, nil},
		{"destroyed, garbage file", Result{Outcome: Destroyed}, nil, Secret{}, garbage, Secret{}, ActionRemove, false, nil},
		{"unavailable, file", Result{}, unavailable, tok, nil, tok, ActionKeep, true, nil},
		{"denied, file", Result{}, fmt.Errorf("%w: x", ErrDenied), tok, nil, tok, ActionKeep, true, nil},
		{"malformed, file", Result{}, fmt.Errorf("%w: x", ErrMalformed), tok, nil, tok, ActionKeep, true, nil},
		{"unavailable, no file", Result{}, unavailable, Secret{}, notExist, Secret{}, "", false, ErrUnavailable},
		{"denied, no file", Result{}, fmt.Errorf("%w: x", ErrDenied), Secret{}, notExist, Secret{}, "", false, ErrDenied},
		{"malformed, garbage file", Result{}, fmt.Errorf("%w: x", ErrMalformed), Secret{}, garbage, Secret{}, "", false, ErrMalformed},
		{"config, file", Result{}, fmt.Errorf("%w: no auth", ErrConfig), tok, nil, Secret{}, "", false, ErrConfig},
	} {
		d, err := Decide(tc.res, tc.rerr, tc.cached, tc.cerr)
		if tc.errIs != nil {
			if !errors.Is(err, tc.errIs) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.errIs)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !d.Inject.Equal(tc.inject) || d.EnvFile != tc.action || (d.Fallback != nil) != tc.fallback {
			t.Errorf("%s: %+v", tc.name, d)
		}
		if d.EnvFile == ActionRemove && tc.rerr != nil {
			t.Errorf("%s: a failure removes the file", tc.name)
		}
	}
}
