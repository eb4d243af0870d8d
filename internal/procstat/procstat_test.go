package procstat

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// A line as Linux 6.1 writes it, comm replaced: 52 fields.
func line(comm, state string, flags string) string {
	return "4242 (" + comm + ") " + state + " 4200 4100 4242 0 -1 " + flags + " 100 0 0 0 5 3 -2 7 20 0 3 0 987654 1000000 300 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0\n"
}

func TestParse(t *testing.T) {
	want := Stat{PID: 4242, State: 'S', PPID: 4200, PGRP: 4100, Session: 4242, Flags: 4194560, UTime: 5, STime: 3, CUTime: -2, CSTime: 7, StartTime: 987654}
	for _, tc := range []struct {
		name, comm string
	}{
		{"plain", "rg"},
		{"blanks", "my comm"},
		{"parentheses", "rg (x) y"},
		{"a closing parenthesis and what looks like fields", "a) S 1 2 3 ("},
		{"only parentheses", "))(("},
		{"empty", ""},
		{"a version as its name", "2.1.205"},
	} {
		got, err := Parse([]byte(line(tc.comm, "S", "4194560")))
		w := want
		w.Comm = tc.comm
		if err != nil || got != w {
			t.Errorf("%s: Parse = %+v, %v; want %+v", tc.name, got, err, w)
		}
	}
	for _, tc := range []struct {
		name, state, flags string
		dying              bool
	}{
		{"running", "R", "4194560", false},
		{"PF_EXITING: an OOM victim freeing its memory, not yet a zombie", "R", "4194564", true},
		{"zombie", "Z", "4194560", true},
		{"dead", "X", "4194560", true},
		{"disk sleep", "D", "4194560", false},
	} {
		st, err := Parse([]byte(line("rg", tc.state, tc.flags)))
		if err != nil || st.Dying() != tc.dying {
			t.Errorf("%s: dying %v, %v; want %v", tc.name, st.Dying(), err, tc.dying)
		}
	}
	for _, bad := range []string{
		"", "1 rg S 1", "1 (rg) S 1 2 3", "1 (rg S 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",
		"1 (rg) S x 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",  // ppid
		"1 (rg) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5", // state
		"1 (rg) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5", // starttime
		"x (rg) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",  // pid
		")1 (rg S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5",  // ')' before '('
	} {
		if st, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted: %+v", bad, st)
		}
	}
}

func TestReadSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no /proc/PID/stat on " + runtime.GOOS)
	}
	st, err := Read(os.Getpid())
	comm, _ := os.ReadFile("/proc/self/comm")
	if err != nil || st.PID != os.Getpid() || st.PPID != os.Getppid() || st.StartTime == 0 || st.Comm != strings.TrimSpace(string(comm)) || st.Dying() {
		t.Errorf("Read(self) = %+v, %v", st, err)
	}
	if _, err := Read(1 << 30); !os.IsNotExist(err) {
		t.Errorf("a missing pid: %v", err)
	}
}

// FuzzParse: whatever the bytes, no panic, and a parsed comm is exactly what stood between the
// first '(' and the last ')'.
func FuzzParse(f *testing.F) {
	f.Add([]byte(line("my (weird) comm", "S", "4194560")))
	f.Add([]byte("1 (x) S 0"))
	f.Add([]byte("1 ()) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Parse(b)
		if err != nil {
			return
		}
		s := string(b)
		if want := s[strings.IndexByte(s, '(')+1 : strings.LastIndexByte(s, ')')]; st.Comm != want {
			t.Errorf("comm %q, want %q", st.Comm, want)
		}
	})
}
