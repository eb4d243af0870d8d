package creds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

const testToken = "sk-ant-oat01-AAAAbbbbCCCCdddd0123456789_-zzzzTEST"

// scrub keeps token material out of the tests' own failure messages, fake or not.
func scrub(s string) string {
	return regexp.MustCompile(`sk-ant-oat01-[A-Za-z0-9_-]*|AAAAbbbb|(?i)414141416262`).ReplaceAllString(s, "<TOKEN>")
}

func TestSecretNeverFormatsItsValue(t *testing.T) {
	s := NewSecret(testToken)
	type wrapper struct {
		Tok Secret
		P   *Secret
	}
	// fmt cannot call methods on unexported fields and bypasses Format for %p: it falls back
	// on reflection, which must find only a pointer.
	type hidden struct {
		tok Secret
		p   *Secret
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%p", "%t", "%10s", "%-40v", "%T %v"} {
		for _, arg := range []any{s, &s, wrapper{s, &s}, &wrapper{s, &s}, hidden{s, &s}, &hidden{s, &s}, []Secret{s}, map[string]Secret{"k": s}} {
			out = append(out, fmt.Sprintf(verb, arg))
		}
	}
	out = append(out, fmt.Sprint(s), fmt.Sprintln(s), s.String(), s.GoString())
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "token", s, "w", wrapper{s, &s}, "h", hidden{s, &s}, slog.Group("g", "t", s))
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", s, "w", wrapper{s, &s}, "h", hidden{s, &s}, slog.Group("g", "t", s))
	out = append(out, buf.String())
	j, _ := json.Marshal(wrapper{s, &s})
	m, _ := json.Marshal(map[Secret]string{s: "k"})
	txt, _ := s.MarshalText()
	out = append(out, string(j), string(m), string(txt))
	out = append(out, fmt.Errorf("wrapped: %v", s).Error(), fmt.Errorf("wrapped: %w", errors.New(s.String())).Error())
	for _, o := range out {
		if strings.Contains(o, testToken[len(TokenPrefix):]) || strings.Contains(o, "AAAAbbbb") || strings.Contains(strings.ToLower(o), "414141416262") {
			t.Errorf("leaked: %s", scrub(o))
		}
	}
	for _, o := range []string{fmt.Sprint(s), fmt.Sprintf("%q", s), fmt.Sprintf("%x", s), string(j), buf.String()} {
		if !strings.Contains(o, "[redacted sha256:") {
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
	if !NewSecret(testToken).Equal(s) || NewSecret(testToken+"x").Equal(s) || !NewSecret("").Equal(Secret{}) {
		t.Error("Equal")
	}
	if !NewSecret("").IsZero() || s.IsZero() || (Secret{}).Reveal() != "" || (Secret{}).String() != "[redacted none]" {
		t.Error("zero Secret")
	}
}

func TestValidateToken(t *testing.T) {
	for _, ok := range []string{testToken, TokenPrefix + strings.Repeat("a", 20), TokenPrefix + strings.Repeat("Z9_-", 200)[:512-len(TokenPrefix)]} {
		if err := ValidateToken(ok); err != nil {
			t.Errorf("refused a valid token of %d characters: %v", len(ok), err)
		}
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
		"single quote":  testToken + "'",
		"backslash":     testToken + "\\n",
		"pipe":          testToken + "|x",
		"ampersand":     testToken + "&x",
		"glob":          testToken + "*",
		"base64 pad":    testToken + "==",
		"plus slash":    "sk-ant-oat01-AAAA+bbbb/CCCCdddd0123456789",
		"tab":           testToken + "\t",
		"cr":            testToken + "\r",
		"prefix only":   TokenPrefix,
	} {
		err := ValidateToken(bad)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v is not ErrMalformed", name, err)
		}
		if len(bad) > 20 && strings.Contains(err.Error(), bad[13:]) {
			t.Errorf("%s: the error repeats the value: %v", name, scrub(err.Error()))
		}
	}
}

func FuzzValidateToken(f *testing.F) {
	f.Add(testToken)
	f.Add("sk-ant-oat01-\n")
	f.Fuzz(func(t *testing.T, v string) {
		err := ValidateToken(v)
		if err == nil && strings.ContainsAny(v, "\n\r=\"' $`;\\\x00") {
			t.Fatalf("accepted %q", scrub(v))
		}
		if err != nil && len(v) > 16 && strings.Contains(err.Error(), v) {
			t.Fatalf("error repeats the value: %v", scrub(err.Error()))
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
		{"secret/{user}/../bob", "alice", "", false},
		{"secret/./{user}", "alice", "", false},
		{"secret/x/{users}", "alice", "", false},
		{"secret/{user}/{other}", "alice", "", false},
		{"secret/x/{user}", "Alice", "", false},
		{"secret/x/{user}", "alice$", "", false},
		{"secret/x/{user}", ".", "", false},
		{"secret/x/{user}", "...", "", false},
		{"secret/x/{user}", "a..b", "secret/x/a..b", true},
		{"secret/x/{user}", strings.Repeat("a", 32), "secret/x/" + strings.Repeat("a", 32), true},
		{"secret/x/{user}", strings.Repeat("a", 33), "", false},
		{"secret/x/{user}", "al\x00ice", "", false},
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

// TestDecide covers every outcome and every error class against each state of the env file.
func TestDecide(t *testing.T) {
	tok, other := NewSecret(testToken), NewSecret(testToken+"2")
	type cache struct {
		name string
		s    Secret
		err  error
	}
	var (
		absent  = cache{"no file", Secret{}, fmt.Errorf("open x: %w", fs.ErrNotExist)}
		same    = cache{"same token", tok, nil}
		rotated = cache{"older token", other, nil}
		garbage = cache{"garbage file", Secret{}, errors.New("env file x: line 1: want CLAUDE_CODE_OAUTH_TOKEN=TOKEN")}
	)
	caches := []cache{absent, same, rotated, garbage}

	for _, c := range caches {
		d, err := Decide(Result{Outcome: Found, Token: tok, Path: "secret/p"}, nil, c.s, c.err)
		want := ActionWrite
		if c == same {
			want = ActionUnchanged
		}
		if err != nil || !d.Inject.Equal(tok) || d.From != FromVault || d.EnvFile != want || d.Fallback != nil || d.Outcome != Found {
			t.Errorf("found, %s: %+v %v", c.name, d, err)
		}
	}
	for _, o := range []Outcome{NoSecret, NoField, Deleted, Destroyed} {
		for _, c := range caches {
			d, err := Decide(Result{Outcome: o}, nil, c.s, c.err)
			want := ActionRemove
			if c == absent {
				want = ActionNone
			}
			if err != nil || !d.Inject.IsZero() || d.From != FromNone || d.EnvFile != want || d.Outcome != o {
				t.Errorf("%v, %s: %+v %v", o, c.name, d, err)
			}
		}
	}
	for _, class := range []error{ErrDenied, ErrUnavailable, ErrMalformed, errors.New("unclassified")} {
		rerr := fmt.Errorf("%w: secret/p", class)
		for _, c := range caches {
			d, err := Decide(Result{}, rerr, c.s, c.err)
			if d.EnvFile == ActionRemove || d.EnvFile == ActionWrite {
				t.Errorf("%v, %s: a failure touches the file: %+v", class, c.name, d)
			}
			if c.err == nil { // a valid cached token: fall back to it
				if err != nil || !d.Inject.Equal(c.s) || d.From != FromFallback || d.EnvFile != ActionKeep || !errors.Is(d.Fallback, class) {
					t.Errorf("%v, %s: %+v %v", class, c.name, d, err)
				}
				continue
			}
			if !errors.Is(err, class) || !d.Inject.IsZero() {
				t.Errorf("%v, %s: %+v %v", class, c.name, d, err)
			}
		}
	}
	// ErrConfig surfaces even with a valid cached token: an operator's mistake must not hide.
	for _, c := range caches {
		if d, err := Decide(Result{}, fmt.Errorf("%w: no auth", ErrConfig), c.s, c.err); !errors.Is(err, ErrConfig) || !d.Inject.IsZero() || d.EnvFile != "" {
			t.Errorf("config, %s: %+v %v", c.name, d, err)
		}
	}
	// Defensive: Found without a valid token, and no outcome without an error.
	if _, err := Decide(Result{Outcome: Found, Token: NewSecret("x")}, nil, tok, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("found, invalid token: %v", err)
	}
	if _, err := Decide(Result{}, nil, tok, nil); err == nil {
		t.Error("no outcome, no error: accepted")
	}
}

func FuzzSecretPath(f *testing.F) {
	for _, s := range []string{DefaultPathTemplate, "secret/../{user}", "kv/{user}/x?y", "{user}", ""} {
		f.Add(s, "alice")
	}
	f.Fuzz(func(t *testing.T, tmpl, user string) {
		p, err := Config{PathTemplate: tmpl, User: user}.SecretPath()
		if err != nil {
			return
		}
		// Whatever is accepted names the user's own path and nothing that climbs out of it: no
		// "." or ".." segment (a name like "a..b" climbs nowhere), nothing that would turn into a
		// query, a fragment or an escape in the request URL.
		if !strings.Contains(p, user) || strings.ContainsAny(p, "?#% \n\\") {
			t.Fatalf("template %q user %q gave %q", tmpl, user, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("template %q user %q gave %q: segment %q", tmpl, user, p, seg)
			}
		}
	})
}
