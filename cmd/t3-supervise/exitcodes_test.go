//go:build linux

package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"t3-supervise/cgroup"
	"t3-supervise/supervise"
)

// exitConstants are the named exit codes; a new one must be added here (and so to --help).
var exitConstants = map[string]int{
	"exitOK": exitOK, "exitUsage": exitUsage, "exitCredInvalid": exitCredInvalid,
	"exitCredUnavailable": exitCredUnavailable, "exitInternal": exitInternal, "exitCgroup": exitCgroup,
	"exitT3Exited": exitT3Exited, "exitUnresponsive": exitUnresponsive, "exitRotated": exitRotated,
	"exitCredDenied": exitCredDenied, "exitConfig": exitConfig, "exitNotExecutable": exitNotExecutable,
	"exitNotFound": exitNotFound, "exitUpgrade": exitUpgrade,
}

// usesOutsideDeclaration counts, per name, the identifiers of the package's non-test files that
// refer to it, its own declaration left out: a code that is declared but never returned is not real.
func usesOutsideDeclaration(t *testing.T) map[string]int {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]int{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		declared := map[*ast.Ident]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for _, id := range vs.Names {
					declared[id] = true
				}
			}
			if id, ok := n.(*ast.Ident); ok && !declared[id] {
				if _, known := exitConstants[id.Name]; known {
					uses[id.Name]++
				}
			}
			return true
		})
	}
	return uses
}

// Every line of EXIT STATUS in --help is true: each single code it lists is a named constant
// the program returns somewhere, each range and 128+n is what exitStatusFor makes of t3's own
// end, and every named constant is listed.
func TestExitStatusHelpIsTrue(t *testing.T) {
	byValue := map[int]string{}
	for name, v := range exitConstants {
		byValue[v] = name
	}
	uses := usesOutsideDeclaration(t)
	documented := map[int]bool{}
	single := regexp.MustCompile(`^  (\d+)\s+\S`)
	span := regexp.MustCompile(`^  (\d+)-(\d+)\s+t3 exited on its own with this code`)
	sawSignals := false
	for _, line := range strings.Split(exitCodeHelp, "\n") {
		switch m, r := single.FindStringSubmatch(line), span.FindStringSubmatch(line); {
		case r != nil:
			lo, _ := strconv.Atoi(r[1])
			hi, _ := strconv.Atoi(r[2])
			for c := lo; c <= hi; c++ {
				if got := exitStatusFor(supervise.Exit{Code: c}, false); got != c {
					t.Errorf("%q: t3's exit %d becomes %d", strings.TrimSpace(line), c, got)
				}
			}
		case strings.HasPrefix(line, "  128+n "):
			sawSignals = true
			for n := 1; n <= 31; n++ {
				if got := exitStatusFor(supervise.Exit{Signal: syscall.Signal(n)}, false); got != 128+n {
					t.Errorf("t3 killed by signal %d: exit %d, want %d", n, got, 128+n)
				}
			}
		case m != nil:
			c, _ := strconv.Atoi(m[1])
			documented[c] = true
			name, ok := byValue[c]
			if !ok {
				t.Errorf("--help documents exit %d, which no constant names", c)
			} else if uses[name] == 0 {
				t.Errorf("--help documents exit %d (%s), which the program never returns", c, name)
			}
		}
	}
	if !sawSignals {
		t.Error("--help does not document 128+n")
	}
	for name, v := range exitConstants {
		if !documented[v] {
			t.Errorf("%s (%d) is not in --help's EXIT STATUS", name, v)
		}
	}
	// The 74 line: t3's own 0 and 64-78, unasked.
	for _, c := range append([]int{0}, 64, 65, 69, 70, 71, 73, 74, 75, 76, 77, 78) {
		if got := exitStatusFor(supervise.Exit{Code: c}, false); got != exitT3Exited {
			t.Errorf("t3's own exit %d becomes %d, want %d", c, got, exitT3Exited)
		}
	}
	// The 0 line: only a requested stop.
	if got := exitStatusFor(supervise.Exit{Signal: syscall.SIGTERM}, true); got != exitOK {
		t.Errorf("a requested stop: exit %d", got)
	}
}

// The kernel OOM-killing the server itself is not "the server keeps running".
func TestOOMKillOfTheServerSaysSo(t *testing.T) {
	for _, tc := range []struct {
		victim    int
		says, not string
	}{
		{victim: 42, says: "that was the server itself", not: "keeps running"},
		{victim: 43, says: "the server keeps running", not: "server itself"},
	} {
		ev, rec := recordEvents("alice")
		leaf := "server"
		if tc.victim != 42 {
			leaf = "1-2"
		}
		emitCgroupEvent(ev, cgroup.OOMKill{Known: true, Count: 1, Victim: cgroup.Victim{PID: tc.victim, Comm: "node", RSS: 1 << 30, Leaf: leaf}}, 42)
		want := OOMKillEvent{Count: 1, Leaf: leaf, Victim: &Victim{PID: tc.victim, VictimPID: tc.victim, Comm: "node", RSS: 1 << 30}, Server: tc.victim == 42}
		got := eventsOf[OOMKillEvent](rec)
		if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
			t.Fatalf("victim %d, server 42:\n got  %+v\n want %+v", tc.victim, got, want)
		}
		if msg := got[0].message(); !strings.Contains(msg, tc.says) || strings.Contains(msg, tc.not) {
			t.Errorf("victim %d, server 42: %s", tc.victim, msg)
		}
	}
}
