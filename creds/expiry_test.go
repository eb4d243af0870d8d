package creds

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseExpiresAt(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = refused
	}{
		{"2027-11-30T09:15:00Z", "2027-11-30T09:15:00Z"},
		{"2027-11-30T10:15:00+01:00", "2027-11-30T09:15:00Z"},
		{"2027-11-30T09:15:00.987654321Z", "2027-11-30T09:15:00Z"},
		{"2027-11-30", "2027-11-30T00:00:00Z"},
		{"2027-02-30", ""},
		{"30.11.2027", ""},
		{"2027-11-30 09:15:00", ""},
		{"2027-11-30T09:15:00", ""}, // no zone: whose 09:15?
		{"next year", ""},
		{" 2027-11-30", ""},
		{"", ""},
	} {
		got, err := ParseExpiresAt(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q: took it as %v", tc.in, got)
		case tc.want != "" && (err != nil || got.Format(time.RFC3339) != tc.want || got.Location() != time.UTC):
			t.Errorf("%q: %v %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

// The expiry is custom_metadata.expires_at when it is usable, else created_time + the lifetime;
// an unusable expires_at is an error naming the Vault path, with the fallback beside it.
func TestTokenExpiry(t *testing.T) {
	const path = "secret/workstation/claude-users/alice"
	created := mustTime(t, "2026-12-02T04:40:12.345678901Z")
	year := DefaultTokenLifetime
	for _, tc := range []struct {
		name      string
		res       Result
		lifetime  time.Duration
		want      string // RFC 3339, "" = unknown
		source    ExpirySource
		errSays   string // "" = no error
		errHidden string // must not be in the error
	}{
		{"custom metadata, RFC 3339", Result{ExpiresAt: "2027-11-30T09:15:00Z"}, year, "2027-11-30T09:15:00Z", ExpiryCustomMetadata, "", ""},
		{"custom metadata, a date", Result{ExpiresAt: "2027-11-30"}, year, "2027-11-30T00:00:00Z", ExpiryCustomMetadata, "", ""},
		{"custom metadata with an offset", Result{ExpiresAt: "2027-01-01T01:30:00+02:00"}, year, "2026-12-31T23:30:00Z", ExpiryCustomMetadata, "", ""},
		{"created time + a year", Result{}, year, "2027-12-02T04:40:12Z", ExpiryCreatedTime, "", ""},
		{"created time + a custom lifetime", Result{}, 90 * 24 * time.Hour, "2027-03-02T04:40:12Z", ExpiryCreatedTime, "", ""},
		{"malformed falls back", Result{ExpiresAt: "30.11.2027"}, year, "2027-12-02T04:40:12Z", ExpiryCreatedTime, `custom_metadata.expires_at "30.11.2027"`, ""},
		{"malformed, long, not quoted", Result{ExpiresAt: "sk-ant-oat01-" + strings.Repeat("x", 40)}, year, "2027-12-02T04:40:12Z", ExpiryCreatedTime, "(53 characters)", "sk-ant"},
		{"malformed, odd characters, not quoted", Result{ExpiresAt: "a=b\nc"}, year, "2027-12-02T04:40:12Z", ExpiryCreatedTime, "(5 characters)", "a=b"},
		{"not a string", Result{ExpiresAt: "(a JSON number)"}, year, "2027-12-02T04:40:12Z", ExpiryCreatedTime, "RFC 3339", ""},
		{"stale: before the version", Result{ExpiresAt: "2026-11-30"}, year, "2027-12-02T04:40:12Z", ExpiryCreatedTime, "earlier token", ""},
		{"malformed, no created time", Result{ExpiresAt: "soon", Created: time.Time{}}, year, "", ExpiryUnknown, "unknown", ""},
		{"nothing to go by", Result{Created: time.Time{}}, year, "", ExpiryUnknown, "no created_time", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.res
			res.Outcome, res.Path, res.Version = Found, path, 3
			if tc.name != "malformed, no created time" && tc.name != "nothing to go by" {
				res.Created = created
			}
			exp, err := TokenExpiry(res, tc.lifetime)
			got := ""
			if exp.Known() {
				got = exp.At.Format(time.RFC3339)
			}
			if got != tc.want || exp.Source != tc.source {
				t.Errorf("expiry %q from %q, want %q from %q", got, exp.Source, tc.want, tc.source)
			}
			switch {
			case tc.errSays == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.errSays != "" && (err == nil || !strings.Contains(err.Error(), tc.errSays) || !strings.Contains(err.Error(), path)):
				t.Errorf("error %v, want one naming %s and saying %q", err, path, tc.errSays)
			case tc.errHidden != "" && strings.Contains(err.Error(), tc.errHidden):
				t.Errorf("the error repeats the value: %v", err)
			}
		})
	}
	for _, o := range []Outcome{NoSecret, NoField, Deleted, Destroyed, Unknown} {
		if exp, err := TokenExpiry(Result{Outcome: o, Created: created, ExpiresAt: "2027-01-01"}, year); exp.Known() || err != nil {
			t.Errorf("%v: expiry %+v %v, want none", o, exp, err)
		}
	}
}

// The policy: each threshold once, the innermost crossed only (at a start inside one, or after a
// jump), expired once after the expiry, nothing new on later checks.
func TestCheckExpiry(t *testing.T) {
	at := mustTime(t, "2027-12-01T00:00:00Z")
	before := func(d time.Duration) time.Time { return at.Add(-d) }
	type step struct {
		now  time.Time
		want string // "", "30d", "7d", "1d", "expired"
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"far away: nothing", []step{{before(31 * day), ""}, {before(30*day + time.Second), ""}}},
		{"every threshold in turn", []step{
			{before(40 * day), ""}, {before(30 * day), "30d"}, {before(29 * day), ""}, {before(7 * day), "7d"},
			{before(3 * day), ""}, {before(day), "1d"}, {before(time.Hour), ""}, {at, "expired"},
			{at.Add(day), ""}, {at.Add(400 * day), ""},
		}},
		{"start inside 30 days", []step{{before(12 * day), "30d"}, {before(11 * day), ""}, {before(6 * day), "7d"}}},
		{"start inside 7 days: the 30-day notice never follows", []step{{before(5 * day), "7d"}, {before(4 * day), ""}, {before(2 * day), ""}, {before(12 * time.Hour), "1d"}}},
		{"start inside 1 day", []step{{before(time.Minute), "1d"}, {before(time.Second), ""}, {at.Add(time.Second), "expired"}}},
		{"start after the expiry: expired only", []step{{at.Add(3 * day), "expired"}, {at.Add(4 * day), ""}}},
		{"a jump over two thresholds: the innermost", []step{{before(31 * day), ""}, {before(6 * day), "7d"}}},
		{"the clock steps back: nothing again", []step{{before(6 * day), "7d"}, {before(10 * day), ""}, {before(6 * day), ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var done ExpiryReported
			for i, s := range tc.steps {
				n, next := CheckExpiry(s.now, at, done)
				got := ""
				switch {
				case n.Expired:
					got = "expired"
				case n.Threshold > 0:
					got = fmt.Sprintf("%dd", n.Threshold/day)
				}
				if got != s.want || n.Due() != (s.want != "") {
					t.Fatalf("step %d (%v before): %q, want %q", i, at.Sub(s.now), got, s.want)
				}
				if n.Left != at.Sub(s.now) {
					t.Errorf("step %d: left %v", i, n.Left)
				}
				if next < done {
					t.Fatalf("step %d: reported went back from %d to %d", i, done, next)
				}
				done = next
			}
		})
	}
}

// The timer is armed for the next notice: a threshold not yet reported, then the expiry, then
// never; and at that instant CheckExpiry has it to report.
func TestNextExpiryCheck(t *testing.T) {
	at := mustTime(t, "2027-12-01T00:00:00Z")
	now := at.Add(-90 * day)
	var done ExpiryReported
	var seen []string
	for range 10 {
		n, d := CheckExpiry(now, at, done)
		done = d
		if n.Due() {
			seen = append(seen, fmt.Sprint(at.Sub(now)))
		}
		next, ok := NextExpiryCheck(now, at, done)
		if !ok {
			break
		}
		if !next.After(now) {
			t.Fatalf("next check %v is not after now %v", next, now)
		}
		now = next
	}
	if want := []string{"720h0m0s", "168h0m0s", "24h0m0s", "0s"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("notices at %v before, want %v", seen, want)
	}
	if _, ok := NextExpiryCheck(now, at, done); ok || done != ExpiryReported(len(ExpiryThresholds)+1) {
		t.Errorf("after the expiry was reported, still a next check (done %d)", done)
	}
}

func TestDaysLeft(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		want int
	}{
		{30 * day, 30}, {30*day - time.Second, 29}, {day + time.Hour, 1}, {23 * time.Hour, 0}, {0, 0},
		{-time.Second, -1}, {-day, -1}, {-day - time.Second, -2},
	} {
		if got := DaysLeft(tc.left); got != tc.want {
			t.Errorf("DaysLeft(%v) = %d, want %d", tc.left, got, tc.want)
		}
	}
}

// Resolve carries created_time and custom_metadata.expires_at of the data read (the shape of a
// KV v2 read since Vault 1.9: custom_metadata beside the version's metadata, null when unset),
// and an odd metadata value never fails a read.
func TestResolveCarriesExpiryMetadata(t *testing.T) {
	for _, tc := range []struct {
		name, meta       string
		created, expires string
	}{
		{"both", `"created_time":"2026-12-02T04:40:12.345678901Z","custom_metadata":{"expires_at":"2027-11-30","owner":"ops"}`, "2026-12-02T04:40:12.345678901Z", "2027-11-30"},
		{"custom metadata null", `"created_time":"2026-12-02T04:40:12Z","custom_metadata":null`, "2026-12-02T04:40:12Z", ""},
		{"no expires_at", `"created_time":"2026-12-02T04:40:12Z","custom_metadata":{"owner":"ops"}`, "2026-12-02T04:40:12Z", ""},
		{"expires_at a number", `"created_time":"2026-12-02T04:40:12Z","custom_metadata":{"expires_at":20271130}`, "2026-12-02T04:40:12Z", "(a JSON number)"},
		{"created_time odd", `"created_time":12,"custom_metadata":"x"`, "", ""},
		{"neither", ``, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVault(t)
			meta := `"version":3,"deletion_time":"","destroyed":false`
			if tc.meta != "" {
				meta += "," + tc.meta
			}
			f.read = func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, `{"data":{"data":{"setup_token":"`+testToken+`"},"metadata":{`+meta+`}}}`)
			}
			res, _, err := resolveWith(f.config(t))
			if err != nil || res.Outcome != Found {
				t.Fatalf("%v %v", res.Outcome, err)
			}
			created := ""
			if !res.Created.IsZero() {
				created = res.Created.Format(time.RFC3339Nano)
			}
			if created != tc.created || res.ExpiresAt != tc.expires {
				t.Errorf("created %q expires_at %q, want %q %q", created, res.ExpiresAt, tc.created, tc.expires)
			}
		})
	}
}
