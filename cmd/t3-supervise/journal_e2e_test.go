//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"t3-supervise/internal/testenv"
)

// journalEntries reads back what process pid sent to the real systemd-journald (tier
// "journald": test/host/journald starts one on a host without systemd as PID 1).
func journalEntries(t *testing.T, pid int, want int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("journalctl", "--no-pager", "-o", "json", "_PID="+fmt.Sprint(pid), "SYSLOG_IDENTIFIER="+identifier).Output()
		if err != nil {
			t.Fatalf("journalctl: %v", err)
		}
		var entries []map[string]any
		s := bufio.NewScanner(bytes.NewReader(out))
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			var e map[string]any
			if json.Unmarshal(s.Bytes(), &e) == nil {
				entries = append(entries, e)
			}
		}
		if len(entries) >= want || time.Now().After(deadline) {
			return entries
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func needJournald(t *testing.T) {
	t.Helper()
	missing := ""
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		missing = "no journald socket at /run/systemd/journal/socket (test/host/journald starts one)"
	} else if _, err := exec.LookPath("journalctl"); err != nil {
		missing = "no journalctl"
	}
	testenv.Need(t, testenv.Journald, missing)
}

func TestEventsReachJournald(t *testing.T) {
	parallel(t)
	needJournald(t)
	w := newVaultWorld(t)
	w.setenv("T3_FAKE_MODE=exit:7")
	code, p := w.run("--no-cgroup")
	if code != 7 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	entries := journalEntries(t, p.cmd.Process.Pid, 5)
	byEvent := map[string]map[string]any{}
	for _, e := range entries {
		byEvent[fmt.Sprint(e["T3_EVENT"])] = e
	}
	ids := map[string]string{}
	for _, k := range eventKinds {
		ids[k.Name] = k.ID
	}
	for _, name := range []string{"credential_found", "env_file_written", "starting", "child_started", "child_exited"} {
		e, ok := byEvent[name]
		if !ok {
			t.Errorf("no %s entry in the journal (got %d entries)", name, len(entries))
			continue
		}
		if e["MESSAGE_ID"] != ids[name] || e["T3_USER"] != w.user || e["SYSLOG_IDENTIFIER"] != identifier {
			t.Errorf("%s: MESSAGE_ID %v T3_USER %v SYSLOG_IDENTIFIER %v", name, e["MESSAGE_ID"], e["T3_USER"], e["SYSLOG_IDENTIFIER"])
		}
	}
	if e := byEvent["credential_found"]; e != nil {
		if e["T3_TOKEN_SOURCE"] != "vault" || e["T3_KV_VERSION"] != "1" || !strings.HasPrefix(fmt.Sprint(e["T3_TOKEN_FINGERPRINT"]), "sha256:") {
			t.Errorf("credential_found fields: %v", e)
		}
	}
	if e := byEvent["child_started"]; e != nil {
		reps, _ := w.reports()
		if len(reps) == 0 || e["T3_PID"] != fmt.Sprint(reps[0].Pid) {
			t.Errorf("child_started T3_PID %v, t3 was %v", e["T3_PID"], reps)
		}
	}
	if e := byEvent["child_exited"]; e != nil && (e["T3_EXIT_CODE"] != "7" || e["PRIORITY"] != "5") {
		t.Errorf("child_exited: %v", e)
	}
	// The secret scan of the journal: the export format holds every field of every entry.
	out, err := exec.Command("journalctl", "--no-pager", "-o", "export", "_PID="+fmt.Sprint(p.cmd.Process.Pid)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(w.token)) {
		t.Error("the token is in the journal")
	}
}
