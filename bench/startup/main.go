//go:build linux

// Command startup measures the start-up cost of getting the user's token into a child's
// environment: the time from exec to the child running with CLAUDE_CODE_OAUTH_TOKEN set, for
//
//   - a bare exec of the child with the token already in its environment (the floor),
//   - t3-supervise (token file auth, KV v2 read, env file, allowlisted environment; --no-cgroup:
//     this host has no delegated cgroup v2),
//   - Vault Agent in process supervisor mode (token_file auto-auth, env_template, exec), the
//     same Vault binary the tests build,
//
// all against one real Vault dev server on 127.0.0.1 holding the same secret. Runs are
// interleaved so that the variants share the machine's noise.
//
//	go run ./bench/startup [--runs 20] [--supervisor bin/t3-supervise]
//
// The child is this binary (`startup child`): the first thing it does is record the wall clock
// and whether it got the right token, in the file named by T3_BENCH_OUT (T3_* passes the
// supervisor's allowlist).
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"t3-supervise/bench/internal/benchutil"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		child()
		return
	}
	runs := flag.Int("runs", 20, "runs of each variant")
	supervisor := flag.String("supervisor", "bin/t3-supervise", "the t3-supervise binary")
	flag.Parse()
	log.SetFlags(0)
	sup, err := filepath.Abs(*supervisor)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(sup); err != nil {
		log.Fatalf("%s: %v (make build)", sup, err)
	}
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}

	t := benchutil.NewT()
	defer t.Close()
	w := benchutil.NewWorld(t)
	dir := t.TempDir()
	self, sup = t.Install(self), t.Install(sup)
	out := filepath.Join(dir, "child.out")
	baseEnv := []string{"HOME=" + w.Home, "USER=" + w.User, "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "T3_BENCH_OUT=" + out}

	variants := []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"bare exec", func() *exec.Cmd {
			c := exec.Command(self, "child")
			c.Env = append(baseEnv, "CLAUDE_CODE_OAUTH_TOKEN="+w.Token, "T3_BENCH_WANT="+w.Token)
			return c
		}},
		{"t3-supervise", func() *exec.Cmd {
			c := exec.Command(sup, append(w.UserArgs, "--no-cgroup", "--refresh-interval", "0", "--t3-bin", self, "--", "child")...)
			c.Env = append(baseEnv, "VAULT_ADDR="+w.Vault.Addr, "T3_BENCH_WANT="+w.Token)
			return c
		}},
		{"vault agent", func() *exec.Cmd {
			cfg := w.AgentConfig(dir, []string{self, "child"})
			c := exec.Command(w.Vault.Bin(), "agent", "-config="+cfg, "-log-level=error")
			c.Env = append(baseEnv, "T3_BENCH_WANT="+w.Token)
			return c
		}},
	}
	results := make([][]time.Duration, len(variants))
	for r := 0; r < *runs+1; r++ {
		for i, v := range variants {
			d, err := once(v.cmd(), out)
			if err != nil {
				log.Fatalf("%s: %v", v.name, err)
			}
			if r > 0 { // the first round warms the page cache and Vault
				results[i] = append(results[i], d)
			}
		}
	}

	st := make([]benchutil.Stats, len(variants))
	for i := range variants {
		st[i] = benchutil.Summarize(results[i])
	}
	bare, sv, agent := st[0].Median, st[1].Median, st[2].Median
	fmt.Printf("start-up: exec to the child running with CLAUDE_CODE_OAUTH_TOKEN set, %d runs each (median), Vault 1.19.0 dev server on 127.0.0.1\n\n", *runs)
	fmt.Printf("| variant | median | p90 | min | max | over bare exec | vs Vault Agent |\n|---|---|---|---|---|---|---|\n")
	for i, v := range variants {
		fmt.Printf("| %s | %s | %s | %s | %s | +%s | %.3f |\n", v.name, benchutil.Ms(st[i].Median), benchutil.Ms(st[i].P90),
			benchutil.Ms(st[i].Min), benchutil.Ms(st[i].Max), benchutil.Ms(st[i].Median-bare), float64(st[i].Median)/float64(agent))
	}
	fmt.Printf("\ngoal t3-supervise <= 1/3 of Vault Agent: %s (%.3f)\n", verdict(float64(sv)/float64(agent) <= 1.0/3), float64(sv)/float64(agent))
	fmt.Printf("goal t3-supervise <= 20 ms over bare exec: %s (+%s)\n", verdict(sv-bare <= 20*time.Millisecond), benchutil.Ms(sv-bare))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// once runs one variant and returns the time from exec to the child's first instant.
func once(c *exec.Cmd, out string) (time.Duration, error) {
	os.Remove(out)
	var stderr strings.Builder
	c.Stderr = &stderr
	start := time.Now()
	if err := c.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return 0, fmt.Errorf("%v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		return 0, fmt.Errorf("no exit after 30 s\n%s", stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return 0, fmt.Errorf("the child did not run: %v\n%s", err, stderr.String())
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[1] != "token-ok" {
		return 0, fmt.Errorf("the child ran without the right token: %q", b)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Unix(0, ns).Sub(start), nil
}

// child records when it started and whether it got the token, then exits 0.
func child() {
	now := time.Now().UnixNano()
	ok := "token-missing"
	if v := os.Getenv("CLAUDE_CODE_OAUTH_TOKEN"); v != "" && v == os.Getenv("T3_BENCH_WANT") {
		ok = "token-ok"
	}
	if err := os.WriteFile(os.Getenv("T3_BENCH_OUT"), []byte(fmt.Sprintf("%d %s\n", now, ok)), 0o600); err != nil {
		os.Exit(1)
	}
}
