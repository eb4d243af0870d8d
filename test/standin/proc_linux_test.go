package main

import (
	"os"
	"strings"
	"testing"

	"t3-supervise/internal/procstat"
)

func TestProcRef(t *testing.T) {
	self, err := procstat.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
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
