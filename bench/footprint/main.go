//go:build linux

// Command footprint measures what the supervisor itself costs while nothing happens: its
// resident memory and CPU over an idle period with the stand-in t3 and 8 agents running below it,
// for t3-supervise and for Vault Agent in process supervisor mode supervising the same child with
// the same secret. Only the supervisor process is measured, not its children.
//
//	go run ./bench/footprint [--idle 60s] [--supervisor bin/t3-supervise] [--standin bin/standin]
//
// On this CI host there is no delegated cgroup v2, so t3-supervise runs with --no-cgroup here
// (no agent placement and no memory watch: the VM numbers in BENCHMARKS.md cover those).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"t3-supervise/bench/internal/benchutil"
	"t3-supervise/internal/procstat"
)

func main() {
	idle := flag.Duration("idle", 60*time.Second, "how long to measure, after a 5 s warm-up")
	supervisor := flag.String("supervisor", "bin/t3-supervise", "the t3-supervise binary")
	standin := flag.String("standin", "bin/standin", "the stand-in t3 binary")
	flag.Parse()
	log.SetFlags(0)
	sup, _ := filepath.Abs(*supervisor)
	std, _ := filepath.Abs(*standin)
	for _, b := range []string{sup, std} {
		if _, err := os.Stat(b); err != nil {
			log.Fatalf("%s: %v (make build tools)", b, err)
		}
	}
	t := benchutil.NewT()
	defer t.Close()
	w := benchutil.NewWorld(t)
	sup, std = t.Install(sup), t.Install(std)
	bindir := t.TempDir()
	for _, n := range []string{"t3", "claude"} {
		if err := os.Symlink(std, filepath.Join(bindir, n)); err != nil {
			log.Fatal(err)
		}
	}
	env := func(port string) []string {
		return []string{"HOME=" + w.Home, "USER=" + w.User, "PATH=" + bindir + ":/usr/bin:/bin", "LANG=C.UTF-8",
			"T3_PORT=" + port, "T3_STANDIN_AGENTS=8", "VAULT_ADDR=" + w.Vault.Addr}
	}
	type result struct {
		name             string
		rssStart, rssEnd uint64
		rssMax           uint64
		cpu              float64 // share of one CPU
	}
	var results []result
	for _, v := range []string{"t3-supervise", "vault agent"} {
		port := freePort()
		serve := []string{"serve", "--host", "127.0.0.1", "--port", port, "--base-dir", t.TempDir()}
		var c *exec.Cmd
		if v == "t3-supervise" {
			c = exec.Command(sup, append(append(w.UserArgs, "--no-cgroup", "--"), serve...)...)
		} else {
			cfg := w.AgentConfig(t.TempDir(), append([]string{filepath.Join(bindir, "t3")}, serve...))
			c = exec.Command(w.Vault.Bin(), "agent", "-config="+cfg, "-log-level=error")
		}
		c.Env = env(port)
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		// A session of its own: t3 and its agents stay in it even though t3-supervise puts t3 in a
		// process group of its own, so killSession reaches everything afterwards.
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		c.WaitDelay = 5 * time.Second
		if err := c.Start(); err != nil {
			log.Fatal(err)
		}
		if !waitListening(port, 30*time.Second) {
			killSession(c.Process.Pid)
			log.Fatalf("%s: t3 never listened\n%s", v, out.String())
		}
		time.Sleep(5 * time.Second)
		r := result{name: v}
		t0, cpu0 := time.Now(), cpuTime(c.Process.Pid)
		r.rssStart = rss(c.Process.Pid)
		for time.Since(t0) < *idle {
			time.Sleep(time.Second)
			r.rssMax = max(r.rssMax, rss(c.Process.Pid))
		}
		r.rssEnd = rss(c.Process.Pid)
		r.cpu = (cpuTime(c.Process.Pid) - cpu0) / time.Since(t0).Seconds()
		agents := strings.Count(out.String(), "claude-standin: pid=")
		killSession(c.Process.Pid)
		c.Wait()
		if agents < 8 {
			log.Fatalf("%s: only %d agents started\n%s", v, agents, out.String())
		}
		results = append(results, r)
	}
	fmt.Printf("footprint: the supervisor process alone, idle for %v with t3 and 8 agents below it\n\n", *idle)
	fmt.Printf("| supervisor | RSS at start | RSS at end | RSS max | CPU (share of one core) |\n|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s | %s | %.3f%% |\n", r.name, mib(r.rssStart), mib(r.rssEnd), mib(r.rssMax), 100*r.cpu)
	}
	s, a := results[0], results[1]
	ratio := float64(s.rssMax) / float64(a.rssMax)
	fmt.Printf("\ngoal RSS <= 1/4 of Vault Agent's: %s (%.3f)\n", verdict(ratio <= 0.25), ratio)
	fmt.Printf("goal idle CPU <= 0.1%%: %s (%.3f%%)\n", verdict(s.cpu <= 0.001), 100*s.cpu)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func rss(pid int) uint64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is utime+stime of pid in seconds (its own threads, not its children).
func cpuTime(pid int) float64 {
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return 0
	}
	t, err := p.Times()
	if err != nil {
		return 0
	}
	return t.User + t.System
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func waitListening(port string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			c.Close()
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// killSession SIGKILLs every process of session sid (proc(5), /proc/PID/stat field 6).
func killSession(sid int) {
	for i := 0; i < 3; i++ {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			pid, _ := strconv.Atoi(filepath.Base(d))
			if st, err := procstat.Read(pid); err == nil && st.Session == sid {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
