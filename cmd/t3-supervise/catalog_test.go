//go:build linux

package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/events.md from units/t3-supervise.catalog")

type catalogEntry struct {
	ID, Subject string
	Body        []string
}

// readCatalog parses the catalog format (journalctl(1), "--update-catalog"): "-- ID", header
// lines up to the first empty line, then the body.
func readCatalog(t *testing.T) []catalogEntry {
	t.Helper()
	f, err := os.Open("../../units/t3-supervise.catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []catalogEntry
	inHeader := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "-- "):
			entries = append(entries, catalogEntry{ID: strings.TrimPrefix(line, "-- ")})
			inHeader = true
		case len(entries) == 0:
		case inHeader && line == "":
			inHeader = false
		case inHeader:
			if v, ok := strings.CutPrefix(line, "Subject: "); ok {
				entries[len(entries)-1].Subject = v
			}
		default:
			e := &entries[len(entries)-1]
			if line != "" || len(e.Body) > 0 {
				e.Body = append(e.Body, line)
			}
		}
	}
	return entries
}

// Every event kind has a catalog entry (journalctl -x explains it), and the operator's page
// docs/events.md is made from the catalog, so the two cannot drift.
func TestCatalogCoversEveryEvent(t *testing.T) {
	entries := readCatalog(t)
	byID := map[string]catalogEntry{}
	for _, e := range entries {
		if _, dup := byID[e.ID]; dup {
			t.Errorf("catalog: %s twice", e.ID)
		}
		byID[e.ID] = e
	}
	for _, k := range eventKinds {
		e, ok := byID[k.ID]
		if !ok {
			t.Errorf("catalog: no entry for %s (%s)", k.Name, k.ID)
			continue
		}
		if e.Subject == "" || !strings.Contains(strings.Join(e.Body, "\n"), "Event "+k.Name+" ") || !strings.Contains(strings.Join(e.Body, "\n"), "What to do:") {
			t.Errorf("catalog entry of %s lacks a subject, its name or what to do", k.Name)
		}
		delete(byID, k.ID)
	}
	for id := range byID {
		t.Errorf("catalog: %s matches no event kind", id)
	}

	var b strings.Builder
	b.WriteString("# Events of t3-supervise\n\n")
	b.WriteString("Every step goes to journald with `SYSLOG_IDENTIFIER=t3-supervise`, `T3_EVENT=<name>` and a\n")
	b.WriteString("stable `MESSAGE_ID`. `journalctl -t t3-supervise -x` shows these explanations inline;\n")
	b.WriteString("`journalctl MESSAGE_ID=<id>` selects one kind. This page is generated from\n")
	b.WriteString("`units/t3-supervise.catalog` (`go test ./cmd/t3-supervise -run Catalog -update`).\n\n")
	b.WriteString("| event | MESSAGE_ID | priority |\n|---|---|---|\n")
	for _, k := range eventKinds {
		fmt.Fprintf(&b, "| [%s](#%s) | `%s` | %s |\n", k.Name, k.Name, k.ID, levelNames[k.Priority])
	}
	for _, k := range eventKinds {
		e := entries[indexOf(entries, k.ID)]
		fmt.Fprintf(&b, "\n## %s\n\n**%s**\n\n", k.Name, strings.ReplaceAll(e.Subject, "@T3_USER@", "USER"))
		for _, l := range e.Body {
			b.WriteString(strings.TrimPrefix(l, "Event "+k.Name+" ("+levelNames[k.Priority]+"). ") + "\n")
		}
	}
	const page = "../../docs/events.md"
	if *update {
		if err := os.WriteFile(page, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(page)
	if string(got) != b.String() {
		t.Errorf("docs/events.md is out of date: go test ./cmd/t3-supervise -run Catalog -update")
	}
	// The page's table, row by row against the kinds, both ways: the message above says that
	// the page is stale, this says which kind it lacks or has too many.
	rows := map[string]string{}
	for _, m := range docRow.FindAllStringSubmatch(string(got), -1) {
		rows[m[1]] = m[2]
	}
	for _, k := range eventKinds {
		if rows[k.Name] != k.ID {
			t.Errorf("docs/events.md: no row for %s (%s)", k.Name, k.ID)
		}
		delete(rows, k.Name)
	}
	for name := range rows {
		t.Errorf("docs/events.md: row %s is no event kind", name)
	}
}

var docRow = regexp.MustCompile("(?m)^\\| \\[(\\w+)\\]\\(#\\w+\\) \\| `([0-9a-f]{32})` \\|")

func indexOf(entries []catalogEntry, id string) int {
	for i, e := range entries {
		if e.ID == id {
			return i
		}
	}
	return 0
}
