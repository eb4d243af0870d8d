package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// --samples: one line per probe counted in the PROBE line, in order, on CLOCK_MONOTONIC: every
// probe lies between two readings of that clock taken around the run. slack allows for a
// preemption between the two clock reads of a pair on a loaded machine (a wrong clock is off by
// far more: the wall clock in µs is ~10^15, the monotonic one here ~10^9).
func TestRunSamples(t *testing.T) {
	const slack = 50 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "samples")
	before, err := readMonoClock()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--url", srv.URL, "--interval", "10ms", "--duration", "150ms", "--samples", path}, &stdout, &stderr)
	after, _ := readMonoClock()
	if code != 0 {
		t.Fatalf("status %d, stderr %s", code, stderr.String())
	}
	m := regexp.MustCompile(`^PROBE ok=(\d+) fail=0 `).FindStringSubmatch(stdout.String())
	data, err := os.ReadFile(path)
	if m == nil || err != nil {
		t.Fatalf("stdout %q, samples %v", stdout.String(), err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if strconv.Itoa(len(lines)) != m[1] || m[1] == "0" {
		t.Fatalf("%d sample lines for %s probes:\n%s", len(lines), m[1], data)
	}
	prev := (before.mono - slack).Microseconds()
	for _, l := range lines {
		f := strings.Fields(l)
		start, err1 := strconv.ParseInt(f[0], 10, 64)
		lat, err2 := strconv.ParseInt(f[1], 10, 64)
		if len(f) != 3 || err1 != nil || err2 != nil || f[2] != "ok" || lat <= 0 {
			t.Fatalf("sample line %q", l)
		}
		if start < prev || start+lat > (after.mono+slack).Microseconds() {
			t.Errorf("sample %q: start not in order within the run's [%d, %d] µs", l, before.mono.Microseconds(), after.mono.Microseconds())
		}
		prev = start
	}
	if d := time.Duration(after.mono-before.mono) - after.at.Sub(before.at); d < -slack || d > slack {
		t.Errorf("CLOCK_MONOTONIC and Go's clock disagree by %v over the run", d)
	}

	// A path that cannot be created is a usage error before any probe.
	stderr.Reset()
	code = run(context.Background(), []string{"--url", srv.URL, "--samples", filepath.Join(path, "sub")}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--samples "+filepath.Join(path, "sub")) {
		t.Errorf("unusable --samples: status %d, stderr %q", code, stderr.String())
	}
}
