package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A comm with blanks and parentheses, as a process may name itself.
	const stat = "4242 (rg (x) y) S 4200 4100 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 987654 1000000 300 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStat(stat)
	want := procStat{Comm: "rg (x) y", State: 'S', PPID: 4200, PGID: 4100, SID: 4242, StartTime: 987654}
	if err != nil || got != want {
		t.Errorf("parseStat = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "1 rg S 1", "1 (rg) S 1 2 3", "1 (rg) S x 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
	self, err := readStat(os.Getpid())
	if err != nil || self.PPID != os.Getppid() || self.StartTime == 0 {
		t.Errorf("readStat(self) = %+v, %v", self, err)
	}
	if !refOf(os.Getpid()).alive() {
		t.Error("this process is not alive")
	}
	if (procRef{PID: os.Getpid(), Start: self.StartTime + 1}).alive() {
		t.Error("a different start time counts as the same process")
	}
}

func TestParseAnswer(t *testing.T) {
	if pid, err := parseAnswer("ok 123"); err != nil || pid != 123 {
		t.Errorf("ok 123: %d, %v", pid, err)
	}
	for answer, msg := range map[string]string{
		"err comm too long": "agent: comm too long",
		"ok":                "not a pid",
		"ok -1":             "not a pid",
		"hello":             "want ok PID or err MESSAGE",
	} {
		if _, err := parseAnswer(answer); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseAnswer(%q) = %v; want %q", answer, err, msg)
		}
	}
}

func TestCheckComm(t *testing.T) {
	for _, ok := range []string{"rg", "2.1.205", "ugrep", "exactly15bytes!"} {
		if err := checkComm(ok); err != nil {
			t.Errorf("checkComm(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "sixteen-bytes-xx", "r g", "a/b", "rg\n"} {
		if checkComm(bad) == nil {
			t.Errorf("checkComm(%q) accepted", bad)
		}
	}
}
