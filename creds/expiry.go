package creds

import (
	"fmt"
	"time"
)

// A setup token carries no date, and an expired one fails only inside the agents (401 "OAuth
// token has expired"), where the supervisor never sees it. So the expiry comes from Vault, where
// the operator who made the token can record it:
//
//   - custom_metadata.expires_at of the user's KV v2 secret (`vault kv metadata patch
//     -custom-metadata expires_at=2027-11-30 secret/workstation/claude-users/alice`), in RFC 3339
//     (2027-11-30T09:15:00Z, an offset allowed) or as a date YYYY-MM-DD, taken as 00:00 UTC that
//     day: the token may stop working at any hour of it, so the warnings count from its start.
//     The KV v2 data read returns the secret's custom_metadata beside the version's metadata
//     (Vault 1.9 and later; seen with 1.19.0), so no metadata read (and no policy on
//     MOUNT/metadata/...) is needed;
//   - otherwise the current version's created_time plus a lifetime (--token-lifetime, a year by
//     default: `claude setup-token` makes one-year tokens). An estimate: it is the day the token
//     was put into Vault, not the day it was made.
//
// custom_metadata belongs to the secret, not to a version: after a new token is put, an old
// expires_at describes the token before it. One that lies before the current version was
// written cannot be this token's (stale) and is not used; a later stale one errs early, never
// late.

// ExpiresAtKey is the key of the secret's custom_metadata that holds the token's expiry.
const ExpiresAtKey = "expires_at"

// DefaultTokenLifetime is how long a setup token lives (`claude setup-token`: one year).
const DefaultTokenLifetime = 365 * 24 * time.Hour

// ExpirySource says where an expiry came from (the JSON field token_expiry_source and the event
// field T3_TOKEN_EXPIRY_SOURCE).
type ExpirySource string

// Expiry sources.
const (
	ExpiryUnknown        ExpirySource = ""                // no token, or nothing to go by
	ExpiryCustomMetadata ExpirySource = "custom_metadata" // the secret's custom_metadata.expires_at
	ExpiryCreatedTime    ExpirySource = "created_time"    // the version's created_time plus the lifetime
)

// Expiry is when the user's token is expected to stop working, and how that is known.
type Expiry struct {
	At     time.Time // UTC, whole seconds; zero when Source is ExpiryUnknown
	Source ExpirySource
}

// Known reports whether there is an expiry.
func (e Expiry) Known() bool { return e.Source != ExpiryUnknown && !e.At.IsZero() }

// TokenExpiry is the expiry of the token res found (none for any other outcome): the secret's
// custom_metadata.expires_at when it is set and usable, else the version's created_time plus
// lifetime. An expires_at that is set but malformed, or stale (before the version was written),
// is not used: the error says why and names the Vault path, and the Expiry returned beside it is
// the fallback. No created_time either: an unknown Expiry and an error.
func TokenExpiry(res Result, lifetime time.Duration) (Expiry, error) {
	if res.Outcome != Found {
		return Expiry{}, nil
	}
	fallback := Expiry{}
	if !res.Created.IsZero() && lifetime > 0 {
		fallback = Expiry{At: res.Created.Add(lifetime).UTC().Truncate(time.Second), Source: ExpiryCreatedTime}
	}
	if res.ExpiresAt == "" {
		if !fallback.Known() {
			return fallback, fmt.Errorf("%s: Vault gave no created_time of version %d and custom_metadata has no %s: the token's expiry is unknown", res.Path, res.Version, ExpiresAtKey)
		}
		return fallback, nil
	}
	at, err := ParseExpiresAt(res.ExpiresAt)
	if err == nil && !res.Created.IsZero() && at.Before(res.Created.Truncate(time.Second)) {
		err = fmt.Errorf("%s is before version %d was written (%s): it describes an earlier token", at.Format(time.RFC3339), res.Version, res.Created.UTC().Format(time.RFC3339))
	}
	if err != nil {
		instead := "the token's expiry is unknown"
		if fallback.Known() {
			instead = fmt.Sprintf("using created_time + %v (%s) instead", lifetime, fallback.At.Format(time.RFC3339))
		}
		return fallback, fmt.Errorf("%s: custom_metadata.%s %s: %v; %s", res.Path, ExpiresAtKey, describeValue(res.ExpiresAt), err, instead)
	}
	return Expiry{At: at, Source: ExpiryCustomMetadata}, nil
}

// ParseExpiresAt parses an expires_at value: RFC 3339 (2027-11-30T09:15:00Z,
// 2027-11-30T10:15:00+01:00, fractions of a second dropped) or a date YYYY-MM-DD, which is
// 00:00:00 UTC of that day. The result is in UTC, in whole seconds.
func ParseExpiresAt(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Truncate(time.Second), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2027-11-30T09:15:00Z) or a date (2027-11-30)")
}

// describeValue quotes a short value made of the characters of a date, and only says the length
// of anything else: the field is free text an operator typed, and an error must not carry
// whatever was pasted into it.
func describeValue(s string) string {
	ok := len(s) <= 40
	for i := 0; i < len(s) && ok; i++ {
		c := s[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == ':' || c == '+' || c == '.' || c == ' ' || c == '/' || c == '(' || c == ')'
	}
	if ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("(%d characters)", len(s))
}

// day is the unit of the thresholds.
const day = 24 * time.Hour

// ExpiryThresholds are the times before the expiry at which credential_expiring is reported,
// outermost first: 30, 7 and 1 day(s).
var ExpiryThresholds = []time.Duration{30 * day, 7 * day, day}

// ExpiryReported is how far the notices for one expiry have gone: 0 none, i (1 to
// len(ExpiryThresholds)) the first i thresholds, len(ExpiryThresholds)+1 the expiry itself. Each
// threshold is reported once, and crossing an inner one consumes the outer ones with it (a start
// 5 days before the expiry reports the 7-day threshold, never the 30-day one after it), so the
// set of thresholds reported is always such a prefix.
type ExpiryReported int

// ExpiryNotice is what the expiry policy asks to report now.
type ExpiryNotice struct {
	// Expired: the expiry has passed (credential_expired).
	Expired bool
	// Threshold, when not Expired and > 0: the innermost threshold crossed (credential_expiring).
	Threshold time.Duration
	// Left is the time from now to the expiry (negative once it has passed).
	Left time.Duration
}

// Due reports whether there is something to report.
func (n ExpiryNotice) Due() bool { return n.Expired || n.Threshold > 0 }

// CheckExpiry is the expiry policy: given now, the expiry at and what was already reported for
// it, the notice to report now (none when nothing new was crossed) and what is reported after
// it. Only the innermost of the thresholds crossed since the last check is reported: after a
// start inside 7 days, or a clock that jumped, one notice, not a burst.
func CheckExpiry(now, at time.Time, done ExpiryReported) (ExpiryNotice, ExpiryReported) {
	left := at.Sub(now)
	n := ExpiryNotice{Left: left}
	stage := crossed(left)
	if stage <= done {
		return n, done
	}
	if stage > ExpiryReported(len(ExpiryThresholds)) {
		n.Expired = true
	} else {
		n.Threshold = ExpiryThresholds[stage-1]
	}
	return n, stage
}

// crossed is the stage a time left reaches: the number of thresholds it is within, and one more
// when nothing is left.
func crossed(left time.Duration) ExpiryReported {
	if left <= 0 {
		return ExpiryReported(len(ExpiryThresholds) + 1)
	}
	var n ExpiryReported
	for _, th := range ExpiryThresholds {
		if left <= th {
			n++
		}
	}
	return n
}

// NextExpiryCheck is when CheckExpiry will next have something to report (the next threshold not
// yet reported, or the expiry), for a timer; false when everything is reported. It is after now
// when CheckExpiry(now, at, done) was just called.
func NextExpiryCheck(now, at time.Time, done ExpiryReported) (time.Time, bool) {
	for i := int(done); i < len(ExpiryThresholds); i++ {
		if b := at.Add(-ExpiryThresholds[i]); b.After(now) {
			return b, true
		}
	}
	if done > ExpiryReported(len(ExpiryThresholds)) {
		return time.Time{}, false
	}
	return at, true
}

// DaysLeft is a time left in whole days, rounded down (0 in the last day; negative once
// passed: -1 in the first day after).
func DaysLeft(left time.Duration) int {
	d := int(left / day)
	if left < 0 && left%day != 0 {
		d--
	}
	return d
}
