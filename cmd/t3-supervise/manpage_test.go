//go:build linux

package main

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"

	"t3-supervise/internal/testenv"
)

// The man page says what --help says, word for word and in the same order: rendered by groff
// (the program man runs), it holds every word of t3-supervise --help and status --help and
// nothing else but its headings and SEE ALSO. A flag, a line or a section the renderer dropped,
// or a line groff swallowed as a request, fails here.
func TestManPageAgreesWithHelp(t *testing.T) {
	var page bytes.Buffer
	if err := writeManPage(&page, "1.2.3-1", "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	var help, status bytes.Buffer
	printHelp(&help)
	runStatus([]string{"--help"}, &status, io.Discard)
	compareWords(t, helpWords(t, help.String(), status.String()), manWords(t, page.Bytes()))
	for _, want := range []string{".TH T3-SUPERVISE 1 2026-01-02 \"t3-supervise 1.2.3\\-1\"", "\n.SH OPTIONS\n", "\n.TP\n\\fB\\-\\-user\\fR \\fIstring\\fR\n"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("man page lacks %q", want)
		}
	}
}

// What the real help does not contain yet must survive too: roff's control characters at the
// start of a line, its escape character, non-ASCII text, a shorthand flag, a usage over two
// lines, a comma-separated list too long for a line.
func TestManPageEscapes(t *testing.T) {
	help := `prog: does things

USAGE
  prog [flags]

  .hidden would be a request, 'so would this, and back\slash is the escape; ellipsis … too.
  A list: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,aa,bb,cc,dd,ee,ff,gg,hh,ii,jj,kk,ll,mm.

FLAGS
  -v, --verbose       say more
      --mode string   first line
                      .second line
      --x-y int       minus-signs (default 3)

TABLE
  TERM        a description that is long enough to need wrapping on a terminal of eighty columns
              and continues here
  LONGER_THAN_THE_COLUMN a row whose term fills the column
              and goes on
`
	status := `prog status: what it shows

USAGE
  prog status
`
	var page bytes.Buffer
	if err := renderManPage(&page, manPage{Version: "0~git1.abc-1", Date: "2026-01-02", Help: help, Status: status}); err != nil {
		t.Fatal(err)
	}
	compareWords(t, helpWords(t, help, status), manWords(t, page.Bytes()))
	if !strings.Contains(page.String(), "\n\\fB\\-v\\fR, \\fB\\-\\-verbose\\fR\n") {
		t.Errorf("shorthand flag not rendered as \\-v, \\-\\-verbose:\n%s", page.String())
	}
}

// A help text the renderer cannot read is an error at build time, not a garbled page.
func TestManPageRefusesUnknownLayout(t *testing.T) {
	for name, help := range map[string]string{
		"no colon":      "prog does things\n\nFLAGS\n      --a   b\n",
		"lower heading": "prog: x\n\nFlags\n      --a   b\n",
		"not a flag":    "prog: x\n\nUSAGE\n  prog\n\nFLAGS\n  some prose\n",
	} {
		if err := renderManPage(io.Discard, manPage{Help: help, Status: "s: x\n\nUSAGE\n  s\n"}); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

// helpWords is what the man page must say: the help texts without their headings, the first
// line's "NAME:" as NAME's "NAME -".
func helpWords(t *testing.T, texts ...string) []string {
	t.Helper()
	var words []string
	for i, text := range texts {
		for j, l := range strings.Split(text, "\n") {
			switch {
			case j == 0 && i == 0:
				words = append(words, strings.Fields(strings.Replace(l, ": ", " - ", 1))...)
			case j > 0 && l != "" && l[0] != ' ':
				// a heading
			default:
				words = append(words, strings.Fields(l)...)
			}
		}
	}
	return words
}

// manWords renders the page with groff as man would (only wider, so that no paragraph breaks)
// and returns its words without the page header and footer, the headings (the body is indented
// by 7) and everything from SEE ALSO on. groff's warnings fail the test.
func manWords(t *testing.T, page []byte) []string {
	t.Helper()
	groff, err := exec.LookPath("groff")
	missing := ""
	if err != nil {
		missing = "no groff (Debian package groff-base)"
	}
	testenv.Need(t, testenv.Groff, missing)
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-rLL=2000n", "-P-cbou")
	cmd.Stdin = bytes.NewReader(page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, stderr.String())
	}
	var words []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == "SEE ALSO" {
			break
		}
		if strings.HasPrefix(l, "       ") && !strings.Contains(l, "T3-SUPERVISE(1)") {
			words = append(words, strings.Fields(l)...)
		}
	}
	return words
}

func compareWords(t *testing.T, want, got []string) {
	t.Helper()
	for i := 0; i < len(want) || i < len(got); i++ {
		if i >= len(want) || i >= len(got) || want[i] != got[i] {
			lo := max(0, i-8)
			t.Fatalf("man page and help differ at word %d:\nhelp: %s\nman:  %s", i,
				strings.Join(want[lo:min(len(want), i+8)], " "), strings.Join(got[lo:min(len(got), i+8)], " "))
		}
	}
}
