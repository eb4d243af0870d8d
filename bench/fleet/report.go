//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// phase is what Vault was asked during one window of the run.
type phase struct {
	name     string
	from, to time.Duration
	byKind   [nKinds]int
	failed   int   // answered other than 2xx (502 from the proxy while Vault was down, 503 sealed)
	perSec   []int // requests that arrived in each second from `from`
}

func (f *fleet) phase(name string, from, to time.Duration) phase {
	p := phase{name: name, from: from, to: to}
	n := int((to - from + time.Second - 1) / time.Second)
	p.perSec = make([]int, max(n, 1))
	for _, r := range f.proxy.between(from, to) {
		p.byKind[r.kind]++
		s := int((r.at - from) / time.Second)
		p.perSec[s]++
		if r.status < 200 || r.status >= 300 {
			p.failed++
		}
	}
	return p
}

func (p phase) total() int {
	n := 0
	for _, c := range p.byKind {
		n += c
	}
	return n
}

// peak is the busiest 1 s bucket and when it began, from the phase's start.
func (p phase) peak() (n int, at time.Duration) {
	for i, c := range p.perSec {
		if c > n {
			n, at = c, time.Duration(i)*time.Second
		}
	}
	return n, at
}

func (p phase) mean() float64 { return float64(p.total()) / max((p.to-p.from).Seconds(), 1e-9) }

// result is a whole run, for the report and for the smoke test.
type result struct {
	o                   options
	launched, coldReady time.Duration // from the first start
	coldRead            time.Duration // first start to the last member's first successful read
	out                 outageTimes
	phases              []phase // cold start, steady, down, sealed, recovery, after
	steady              phase
	recovery            phase // from Vault answering again to the last member's successful read
	chk                 checks
	stopCodes           map[int]int
	orphans             int
	sup, t3             usage    // at the end of the steady window
	supEnd              usage    // the supervisors at the end, before the SIGTERM
	supCPU              float64  // share of one core, all supervisors together, over the steady window
	seconds             []second // from the kill to the last re-read
	journal             bool
}

func (r *result) print(w io.Writer) {
	o := r.o
	fmt.Fprintf(w, "fleet: %d supervisors (the real t3-supervise, each as its own Unix user with its own Vault path, token and policy;\n", o.N)
	fmt.Fprintf(w, "--no-cgroup, --refresh-interval %v, --vault-timeout %v; token period %v), the stand-in t3 each on its own port,\n", o.Interval, o.VaultTimeout, o.TokenPeriod)
	fmt.Fprintf(w, "one Vault 1.19.0 server (file storage), requests counted at a proxy in front of it. Events to journald as well: %v.\n\n", r.journal)

	steadyPeak, _ := r.steady.peak()
	fmt.Fprintf(w, "| phase | window (s) | lookup-self | ui/mounts | KV read | renew-self | other | not 2xx | req/s mean | req/s peak (1 s bucket, at) | peak / steady peak |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.phases {
		pk, at := p.peak()
		fmt.Fprintf(w, "| %s | %.1f–%.1f | %d | %d | %d | %d | %d | %d | %.1f | %d (+%.0f s) | %s |\n", p.name, p.from.Seconds(), p.to.Seconds(),
			p.byKind[lookupSelf], p.byKind[mounts], p.byKind[kvRead], p.byKind[renewSelf], p.byKind[other], p.failed,
			p.mean(), pk, at.Seconds(), ratio(pk, steadyPeak))
	}

	t := r.out
	rp, rat := r.recovery.peak()
	fmt.Fprintf(w, "\nRecovery, from Vault answering again (sealed) to the last supervisor's re-read: %d requests in %.1f s, peak %d req/s at +%.0f s (%s × the steady peak), %d not 2xx.\n",
		r.recovery.total(), (r.recovery.to - r.recovery.from).Seconds(), rp, rat.Seconds(), ratio(rp, steadyPeak), r.recovery.failed)

	fmt.Fprintf(w, "\n| moment | at (s) | figure |\n|---|---|---|\n")
	fmt.Fprintf(w, "| cold start: %d supervisors started | 0.0 | all forked in %s |\n", o.N, ms(r.launched))
	fmt.Fprintf(w, "| every user's secret read (first successful KV read of the last one) | %.1f | |\n", r.coldRead.Seconds())
	fmt.Fprintf(w, "| every t3 running with its user's token, every supervisor server_ready | %.1f | cold start took %.1f s |\n", r.coldReady.Seconds(), r.coldReady.Seconds())
	fmt.Fprintf(w, "| Vault killed (SIGKILL) | %.1f | |\n", t.stop.Seconds())
	fmt.Fprintf(w, "| Vault started again, answering (sealed) | %.1f | down %.1f s |\n", t.up.Seconds(), (t.up - t.stop).Seconds())
	fmt.Fprintf(w, "| unsealed (active) | %.1f | sealed %.1f s |\n", t.unsealed.Seconds(), (t.unsealed - t.up).Seconds())
	fmt.Fprintf(w, "| every supervisor has re-read its secret | %.1f | %.1f s after Vault answered, %.1f s after the unseal |\n",
		t.allRead.Seconds(), (t.allRead - t.up).Seconds(), (t.allRead - t.unsealed).Seconds())

	fmt.Fprintf(w, "\nFirst successful re-read of each supervisor after the unseal (spread of the retries):\n\n")
	r.printSpread(w)

	fmt.Fprintf(w, "\nRequests per second at Vault from the kill to the last re-read (all paths; * marks the second Vault answered again, ^ the unseal):\n\n")
	r.printSeconds(w)

	c := r.chk
	fmt.Fprintf(w, "\n| check (at the end) | result |\n|---|---|\n")
	fmt.Fprintf(w, "| supervisors alive | %d/%d |\n", c.alive, o.N)
	fmt.Fprintf(w, "| t3 still the process it started with (same pid, child of its supervisor, started once) | %d/%d |\n", c.sameT3, o.N)
	fmt.Fprintf(w, "| t3's token fingerprint is its user's token | %d/%d |\n", c.tokenOK, o.N)
	fmt.Fprintf(w, "| env file holds its user's token, mode 0600 | %d/%d |\n", c.envOK, o.N)
	fmt.Fprintf(w, "| credential_refresh_failed events | %d (at most %d per supervisor) |\n", c.failedEvents, c.maxFailedEvents)
	fmt.Fprintf(w, "| supervisors that reported credential_refresh_recovered | %d/%d |\n", c.recovered, o.N)
	fmt.Fprintf(w, "| vault_token_renew_failed events | %d (at most %d per supervisor) |\n", c.renewFailed, c.maxRenewFailed)
	died := "none"
	if len(c.died) > 0 {
		died = strings.Join(c.died, "; ")
	}
	fmt.Fprintf(w, "| supervisors that exited during the run (exit status) | %s |\n", died)
	fmt.Fprintf(w, "| exit codes after SIGTERM at the end | %s |\n", codes(r.stopCodes))
	fmt.Fprintf(w, "| t3 left running after its supervisor ended | %d |\n", r.orphans)

	fmt.Fprintf(w, "\n| processes | measured | RSS sum | PSS sum | RSS mean | RSS max | RSS sum at the end | CPU over the steady window |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| t3-supervise | %d | %s | %s | %s | %s | %s | %.2f%% of one core, all together |\n", r.sup.n, mib(r.sup.rss), mib(r.sup.pss),
		mib(r.sup.rss/uint64(max(r.sup.n, 1))), mib(r.sup.rssMax), mib(r.supEnd.rss), 100*r.supCPU)
	fmt.Fprintf(w, "| stand-in t3 | %d | %s | %s | %s | %s | | |\n", r.t3.n, mib(r.t3.rss), mib(r.t3.pss), mib(r.t3.rss/uint64(max(r.t3.n, 1))), mib(r.t3.rssMax))
	fmt.Fprintf(w, "\n(At the end of the steady window, and the supervisors' RSS again at the end of the run. PSS counts the pages the processes share, the binary's, once.)\n")
}

// printSpread is a histogram of each member's first successful read after the unseal, in
// buckets of 5 s (1 s for a spread under 10 s).
func (r *result) printSpread(w io.Writer) {
	t := r.out
	span := t.allRead - t.unsealed
	step := 5 * time.Second
	if span < 10*time.Second {
		step = time.Second
	}
	n := int(span/step) + 1
	counts := make([]int, n)
	before := 0
	for _, at := range t.firstRead {
		switch {
		case at < 0:
		case at < t.unsealed:
			before++ // cannot happen: a sealed Vault serves no secret
		default:
			counts[int((at-t.unsealed)/step)]++
		}
	}
	fmt.Fprintf(w, "| s after the unseal |")
	for i := range counts {
		fmt.Fprintf(w, " %d–%d |", i*int(step/time.Second), (i+1)*int(step/time.Second))
	}
	fmt.Fprintf(w, "\n|---|%s\n| supervisors |", strings.Repeat("---|", n))
	for _, c := range counts {
		fmt.Fprintf(w, " %d |", c)
	}
	fmt.Fprintln(w)
	if before > 0 {
		fmt.Fprintf(w, "(%d read before the unseal)\n", before)
	}
}

// second is what Vault was asked in one second.
type second struct {
	byKind [nKinds]int
	ok     int // answered 2xx
}

func (s second) total() int {
	n := 0
	for _, c := range s.byKind {
		n += c
	}
	return n
}

// bySecond is every second of [from, to).
func (f *fleet) bySecond(from, to time.Duration) []second {
	out := make([]second, int((to-from+time.Second-1)/time.Second))
	for _, r := range f.proxy.between(from, to) {
		s := &out[int((r.at-from)/time.Second)]
		s.byKind[r.kind]++
		if r.status >= 200 && r.status < 300 {
			s.ok++
		}
	}
	return out
}

// printSeconds prints the requests per second from the kill to the last re-read, ten seconds
// to a row; with --per-second also every second on a row of its own, by kind.
func (r *result) printSeconds(w io.Writer) {
	t := r.out
	upSec, unsealSec := int((t.up-t.stop)/time.Second), int((t.unsealed-t.stop)/time.Second)
	mark := func(i int) string {
		switch i {
		case upSec:
			return "*"
		case unsealSec:
			return "^"
		}
		return " "
	}
	fmt.Fprintf(w, "    s     ")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(w, "%6s", fmt.Sprintf("+%d", i))
	}
	for i, s := range r.seconds {
		if i%10 == 0 {
			fmt.Fprintf(w, "\n    %-5d ", i)
		}
		fmt.Fprintf(w, "%5d%s", s.total(), mark(i))
	}
	fmt.Fprintln(w)
	if !r.o.PerSecond {
		return
	}
	fmt.Fprintf(w, "\nEvery second from the kill, by kind, and how many were answered 2xx:\n\n")
	fmt.Fprintf(w, "| s | lookup-self | ui/mounts | KV read | renew-self | other | 2xx |\n|---|---|---|---|---|---|---|\n")
	for i, s := range r.seconds {
		k := s.byKind
		fmt.Fprintf(w, "| %d%s | %d | %d | %d | %d | %d | %d |\n", i, mark(i), k[lookupSelf], k[mounts], k[kvRead], k[renewSelf], k[other], s.ok)
	}
}

func ratio(n, base int) string {
	if base == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(n)/float64(base))
}

func codes(m map[int]int) string {
	if len(m) == 0 {
		return "–"
	}
	var parts []string
	for code := -1; code < 256; code++ {
		if n, ok := m[code]; ok {
			what := fmt.Sprintf("%d", code)
			if code == -1 {
				what = "killed after the timeout"
			}
			parts = append(parts, fmt.Sprintf("%s ×%d", what, n))
		}
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
