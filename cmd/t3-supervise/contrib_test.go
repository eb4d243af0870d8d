//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// pendingEvents are event names the contrib rules may select on (by T3_EVENT) before their kind
// exists. Once they are event kinds, they leave this list (the test says so) and the rules
// select them by MESSAGE_ID. None now: credential_expiring and credential_expired came with the
// token expiry horizon (issue 13, part 1).
var pendingEvents = map[string]bool{}

// TestContribLokiRules: the LogQL rules select on MESSAGE_IDs and T3_EVENT names that exist,
// each alert on exactly the events its comment promises, through labels that the Alloy
// configuration really makes from the journal fields. (No LogQL parser is at hand: Loki's is
// AGPL. Loki's ruler checks the syntax when it loads the file.)
func TestContribLokiRules(t *testing.T) {
	b, err := os.ReadFile("../../contrib/loki/t3-supervise.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	byID, byName := map[string]string{}, map[string]bool{}
	for _, k := range eventKinds {
		byID[k.ID], byName[k.Name] = k.Name, true
	}
	for name := range pendingEvents {
		if byName[name] {
			t.Errorf("%s is an event kind now: take it out of pendingEvents and select it by MESSAGE_ID", name)
		}
	}
	want := map[string][]string{
		"T3SuperviseJournalTokenExpiring":       {"credential_expiring"},
		"T3SuperviseJournalTokenExpired":        {"credential_expired"},
		"T3SuperviseJournalOOMKillBurst":        {"oom_kill", "pressure_kill"},
		"T3SuperviseJournalNotReady":            {"cgroup_failed", "child_exited", "config_invalid", "credential_failed", "exec_failed", "server_unresponsive"},
		"T3SuperviseJournalVaultRefreshFailing": {"credential_fallback", "credential_found", "credential_refresh_failed", "credential_refresh_recovered"},
	}
	idSel := regexp.MustCompile(`message_id=~?"([^"]*)"`)
	eventSel := regexp.MustCompile(`t3_event=~?"([^"]*)"`)
	labelSel := regexp.MustCompile(`[{,]\s*([a-z_]+)\s*=~?"`)
	byLabel := regexp.MustCompile(`by \(([^)]*)\)`)
	labels := map[string]bool{}
	blocks := strings.Split(string(b), "- alert: ")[1:]
	if len(blocks) != len(want) {
		t.Errorf("%d alerts, want %d", len(blocks), len(want))
	}
	for _, block := range blocks {
		alert := strings.TrimSpace(strings.SplitN(block, "\n", 2)[0])
		var got []string
		for _, m := range idSel.FindAllStringSubmatch(block, -1) {
			for _, id := range strings.Split(m[1], "|") {
				name, ok := byID[id]
				if !ok {
					t.Errorf("%s: MESSAGE_ID %s is no event's", alert, id)
				}
				got = append(got, name)
			}
		}
		for _, m := range eventSel.FindAllStringSubmatch(block, -1) {
			for _, name := range strings.Split(m[1], "|") {
				if !byName[name] && !pendingEvents[name] {
					t.Errorf("%s: T3_EVENT %s is no event's", alert, name)
				}
				got = append(got, name)
			}
		}
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want[alert], " ") {
			t.Errorf("%s selects %v, want %v", alert, got, want[alert])
		}
		for _, m := range labelSel.FindAllStringSubmatch(block, -1) {
			labels[m[1]] = true
		}
		for _, m := range byLabel.FindAllStringSubmatch(block, -1) {
			for _, l := range strings.Split(m[1], ",") {
				labels[strings.TrimSpace(l)] = true
			}
		}
	}

	// Each label comes from the journal field the supervisor writes, as loki.source.journal
	// names it: __journal_ and the field in lower case (Loki's journal target,
	// makeJournalFields), copied to a plain label by a relabel rule.
	alloy, err := os.ReadFile("../../contrib/alloy/t3-supervise.alloy")
	if err != nil {
		t.Fatal(err)
	}
	rule := regexp.MustCompile(`source_labels = \["([^"]+)"\]\s*\n\s*target_label\s*= "([^"]+)"`)
	made := map[string]string{}
	for _, m := range rule.FindAllStringSubmatch(string(alloy), -1) {
		made[m[2]] = m[1]
	}
	fields := map[string]string{"syslog_identifier": "SYSLOG_IDENTIFIER", "message_id": "MESSAGE_ID", "t3_event": "T3_EVENT",
		"user": "T3_USER", "host": "_HOSTNAME"}
	for l := range labels {
		field, ok := fields[l]
		if !ok {
			t.Errorf("the rules use a label %s that no journal field of ours makes", l)
			continue
		}
		if made[l] != "__journal_"+strings.ToLower(field) {
			t.Errorf("label %s: the Alloy config makes it from %q, want __journal_%s (%s)", l, made[l], strings.ToLower(field), field)
		}
	}
	events, err := os.ReadFile("events.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"SYSLOG_IDENTIFIER", "MESSAGE_ID", "T3_EVENT", "T3_USER"} {
		if !strings.Contains(string(events), `"`+f+`"`) {
			t.Errorf("events.go does not write %s, which the rules select on", f)
		}
	}
}

// TestContribNeverTheOldIdentifier: an old alert fires on the identifier of the sync script
// this project replaces with the word FAIL in it; nothing we ship for alerting may carry either.
func TestContribNeverTheOldIdentifier(t *testing.T) {
	files, _ := filepath.Glob("../../contrib/*/*")
	more, _ := filepath.Glob("../../units/t3-supervise-metrics.*")
	if len(files) < 4 {
		t.Fatalf("contrib/ has %d files", len(files))
	}
	old := "claude-auth" + "-sync"
	word := regexp.MustCompile(`\bFAIL`)
	for _, f := range append(files, more...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), old) || word.Match(b) {
			t.Errorf("%s names %s or says FAIL", f, old)
		}
	}
}
