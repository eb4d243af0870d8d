//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// The man page t3-supervise(1) is rendered from the --help texts themselves (printHelp and
// `status --help`), not from a second copy of the prose: whatever --help says, the man page says,
// word for word (TestManPageAgreesWithHelp renders it with groff and compares). The package
// build runs the renderer through manpage_gen.go (`go run -tags genman`).
//
// The mapping, in man-pages(7)'s section names: the first line is NAME; USAGE's first block is
// SYNOPSIS and the rest DESCRIPTION; FLAGS is OPTIONS, one .TP per flag; the other sections keep
// their names; status --help becomes the section STATUS COMMAND. Plain prose (lines at the
// two-space indent, single-spaced) is filled so that it reflows to the reader's terminal; a block
// with its own layout (a table, an example, columns) is kept as printed, in no-fill mode.

// manPage is what the man page is made of.
type manPage struct {
	Version string // the package version, for the page footer
	Date    string // YYYY-MM-DD, of the commit the page was built from
	Help    string // t3-supervise --help
	Status  string // t3-supervise status --help
}

// helpSection is one heading of a --help text and the lines under it.
type helpSection struct {
	Title string
	Lines []string
}

// writeManPage renders t3-supervise(1) of this binary.
func writeManPage(w io.Writer, version, date string) error {
	var help, status bytes.Buffer
	printHelp(&help)
	if code := runStatus([]string{"--help"}, &status, io.Discard); code != exitOK {
		return fmt.Errorf("status --help exited %d", code)
	}
	return renderManPage(w, manPage{Version: version, Date: date, Help: help.String(), Status: status.String()})
}

func renderManPage(w io.Writer, p manPage) error {
	name, sections, err := splitHelp(p.Help)
	if err != nil {
		return fmt.Errorf("--help: %w", err)
	}
	statusTitle, statusSections, err := splitHelp(p.Status)
	if err != nil {
		return fmt.Errorf("status --help: %w", err)
	}
	cmd, what, ok := strings.Cut(name, ": ")
	if !ok {
		return fmt.Errorf("--help: first line %q is not \"NAME: what it does\"", name)
	}
	var b strings.Builder
	b.WriteString(`.\" t3-supervise(1), rendered from t3-supervise --help by "go run -tags genman ./cmd/t3-supervise"; edit the help, not this.` + "\n")
	fmt.Fprintf(&b, ".TH T3-SUPERVISE 1 %s \"t3-supervise %s\" \"User Commands\"\n", p.Date, roffText(p.Version))
	// Left-adjusted and unhyphenated: the text is full of identifiers (CLAUDE_CODE_OAUTH_TOKEN,
	// memory.high) that justification would space out and hyphenation would cut.
	b.WriteString(".ad l\n.nh\n")
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roffLine(cmd), roffLine(what))
	for _, s := range sections {
		if s.Title != "USAGE" {
			if err := writeSection(&b, ".SH", s); err != nil {
				return fmt.Errorf("--help: %w", err)
			}
			continue
		}
		blocks := splitBlocks(s.Lines)
		if len(blocks) == 0 {
			return fmt.Errorf("--help: USAGE is empty")
		}
		b.WriteString(".SH SYNOPSIS\n")
		writeBlocks(&b, blocks[:1])
		b.WriteString(".SH DESCRIPTION\n")
		writeBlocks(&b, blocks[1:])
	}
	b.WriteString(".SH \"STATUS COMMAND\"\n")
	writeBlocks(&b, [][]string{{"  " + statusTitle}})
	for _, s := range statusSections {
		if err := writeSection(&b, ".SS", s); err != nil {
			return fmt.Errorf("status --help: %w", err)
		}
	}
	b.WriteString(".SH \"SEE ALSO\"\n" +
		"\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBsystemd.exec\\fR(5), \\fBsystemd.resource\\-control\\fR(5),\n" +
		"and the documentation in /usr/share/doc/t3\\-supervise/.\n")
	_, err = io.WriteString(w, b.String())
	return err
}

// writeSection writes one help section under a heading (macro .SH or .SS); FLAGS is OPTIONS.
func writeSection(b *strings.Builder, macro string, s helpSection) error {
	if s.Title == "FLAGS" {
		b.WriteString(macro + " OPTIONS\n")
		return writeFlags(b, s.Lines)
	}
	fmt.Fprintf(b, "%s \"%s\"\n", macro, s.Title)
	writeBlocks(b, splitBlocks(s.Lines))
	return nil
}

// splitHelp cuts a --help text into its first line and its sections: a heading is a line at
// column 0 (the first line excepted), everything under it is indented.
func splitHelp(text string) (string, []helpSection, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return "", nil, fmt.Errorf("no first line")
	}
	var sections []helpSection
	for _, l := range lines[1:] {
		switch {
		case l == "":
			if len(sections) > 0 {
				sections[len(sections)-1].Lines = append(sections[len(sections)-1].Lines, l)
			}
		case l[0] != ' ':
			if strings.ToUpper(l) != l {
				return "", nil, fmt.Errorf("line %q at column 0 is not an upper-case heading", l)
			}
			sections = append(sections, helpSection{Title: l})
		case len(sections) == 0:
			return "", nil, fmt.Errorf("line %q comes before the first heading", l)
		default:
			sections[len(sections)-1].Lines = append(sections[len(sections)-1].Lines, l)
		}
	}
	return lines[0], sections, nil
}

// splitBlocks groups lines into blocks separated by blank lines.
func splitBlocks(lines []string) [][]string {
	var blocks [][]string
	var cur []string
	for _, l := range append(lines, "") {
		if strings.TrimSpace(l) != "" {
			cur = append(cur, l)
		} else if cur != nil {
			blocks = append(blocks, cur)
			cur = nil
		}
	}
	return blocks
}

// writeBlocks writes each block as paragraphs: runs of plain prose filled, so that they reflow
// to the reader's terminal, and runs with their own layout kept as printed.
func writeBlocks(b *strings.Builder, blocks [][]string) {
	for _, block := range blocks {
		for _, r := range splitRuns(block) {
			b.WriteString(".PP\n")
			if r.prose {
				for _, l := range r.lines {
					b.WriteString(roffLine(strings.TrimSpace(l)) + "\n")
				}
				continue
			}
			// No-fill keeps every line and its spaces; the help's own two-space indent is the
			// section's indent in the man page.
			b.WriteString(".nf\n")
			for _, l := range wrapLayout(r.lines, manTextWidth) {
				b.WriteString(roffLine(strings.TrimPrefix(l, "  ")) + "\n")
			}
			b.WriteString(".fi\n")
		}
	}
}

// textRun is a stretch of a block that is either prose or layout.
type textRun struct {
	prose bool
	lines []string
}

// splitRuns cuts a block into prose and layout. A prose line sits at the two-space indent with
// single spaces between its words. So does the first line of a table row whose term is long
// ("VAULT_ADDR, VAULT_CACERT, ..." over two lines, its description further in), or a line that
// introduces an example: prose lines right before a deeper-indented line are layout too.
func splitRuns(block []string) []textRun {
	layout := make([]bool, len(block))
	for i, l := range block {
		layout[i] = indentOf(l) != 2 || strings.Contains(strings.TrimSpace(l), "  ")
	}
	for i := len(block) - 2; i >= 0; i-- {
		if !layout[i] && indentOf(block[i+1]) > 2 {
			for j := i; j >= 0 && !layout[j]; j-- {
				layout[j] = true
			}
		}
	}
	var runs []textRun
	for i, l := range block {
		if len(runs) == 0 || runs[len(runs)-1].prose == layout[i] {
			runs = append(runs, textRun{prose: !layout[i]})
		}
		runs[len(runs)-1].lines = append(runs[len(runs)-1].lines, l)
	}
	return runs
}

// manTextWidth is the width of a man page's body on an 80-column terminal (the body is indented
// by 7, man(7) "IN"), plus the two-space indent the help's lines carry.
const manTextWidth = 80 - 7 - 1 + 2

// wrapLayout rewraps the rows of a two-column table at width, the description continuing at its
// own column, so that a table written for a wide --help still reads on a narrow terminal. A row
// is a term, two or more spaces and a description, or a term followed by lines that continue
// its description at the column where it starts; the continuation lines join the row before it
// is wrapped. Other lines (an example, a term alone on its line) stay as they are: a broken
// command line would say something else.
func wrapLayout(lines []string, width int) []string {
	var out []string
	for i := 0; i < len(lines); i++ {
		text, col := lines[i], descColumn(lines[i], lines[i+1:])
		if col < 0 {
			out = append(out, text)
			continue
		}
		for i+1 < len(lines) && indentOf(lines[i+1]) == col && descColumn(lines[i+1], nil) < 0 {
			i++
			text += " " + strings.TrimSpace(lines[i])
		}
		for len(text) > width {
			cut := strings.LastIndex(text[:width+1], " ")
			if cut <= col {
				break
			}
			out = append(out, strings.TrimRight(text[:cut], " "))
			text = strings.Repeat(" ", col) + strings.TrimLeft(text[cut:], " ")
		}
		out = append(out, text)
	}
	return out
}

// descColumn is where the description of the table row l starts, or -1 if l is not a row.
func descColumn(l string, next []string) int {
	in := indentOf(l)
	if g := strings.Index(l[in:], "  "); g >= 0 {
		return in + g + indentOf(l[in+g:])
	}
	if len(next) > 0 {
		if c := indentOf(next[0]); c > in && c < len(l) && l[c-1] == ' ' && l[c] != ' ' {
			return c
		}
	}
	return -1
}

func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

// writeFlags turns pflag's FlagUsages lines ("  -x, --name type   usage" or "      --name type
// usage", continuation lines of a multi-line usage indented further) into .TP entries: the
// flag in bold, its value's name in italics, the usage filled.
func writeFlags(b *strings.Builder, lines []string) error {
	entries := 0
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		if !strings.HasPrefix(t, "-") || (indent != 2 && indent != 6) {
			if entries == 0 {
				return fmt.Errorf("FLAGS: line %q is not a flag", l)
			}
			b.WriteString(roffLine(t) + "\n") // a usage's second line
			continue
		}
		head, usage, _ := strings.Cut(t, "  ")
		var tag []string
		for _, word := range strings.Fields(head) {
			if name := strings.TrimSuffix(word, ","); strings.HasPrefix(word, "-") {
				tag = append(tag, `\fB`+roffText(name)+`\fR`+word[len(name):])
			} else {
				tag = append(tag, `\fI`+roffText(word)+`\fR`)
			}
		}
		b.WriteString(".TP\n" + strings.Join(tag, " ") + "\n")
		if u := strings.TrimSpace(usage); u != "" {
			b.WriteString(roffLine(u) + "\n")
		}
		entries++
	}
	if entries == 0 {
		return fmt.Errorf("FLAGS: no flags")
	}
	return nil
}

// roffLine is roffText for a whole input line: a line that starts with a control character
// ('.' or an apostrophe) would be taken as a request (groff(7), "Control characters"), so it is protected
// with the zero-width \&.
func roffLine(s string) string {
	s = roffText(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffText escapes text for groff: the escape character itself, and every '-' as \- (a minus,
// which Debian's man.local maps to ASCII hyphen-minus, so flags can be searched and pasted;
// a bare '-' becomes a Unicode hyphen in UTF-8 output). A comma inside a word gets a break point
// (\:, zero width), or a list such as --env-allow's default could not be broken at all. Anything
// outside ASCII is written as \[uXXXX], the form groff reads whatever the page's encoding.
func roffText(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r == ',' && i+1 < len(s) && s[i+1] != ' ':
			b.WriteString(`,\:`)
		case r > 0x7e:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
