package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64M": 64 << 20, "1G": 1 << 30, "512K": 512 << 10, "4096": 4096, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-1M", "1T"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

// The built stand-in as t3 serve: agents spawned from PATH, a balloon that is really resident and
// carries the requested comm, and every process gone at the end.
func TestStandinEndToEnd(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "standin")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, n := range []string{"t3", "claude"} {
		os.Symlink(bin, filepath.Join(dir, n))
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	srv := exec.Command(filepath.Join(dir, "t3"), "serve", "--host", "127.0.0.1", "--port", port, "--base-dir", dir)
	srv.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "T3_STANDIN_CLAUDE="+filepath.Join(dir, "claude"))
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-srv.Process.Pid, syscall.SIGKILL); srv.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening") {
		if strings.Contains(sc.Text(), "pid=") && !strings.Contains(sc.Text(), "CLAUDE_CODE_OAUTH_TOKEN=") {
			t.Errorf("report line lacks the token note: %s", sc.Text())
		}
	}
	url := "http://127.0.0.1:" + port
	if resp, err := http.Get(url + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /: %v", err)
	}
	var agents []agentProc
	post(t, url+"/_standin/agents?n=2&abs=1", &agents)
	if len(agents) != 2 || agents[0].Via != "path" || agents[1].Via != "absolute" {
		t.Fatalf("agents %+v", agents)
	}
	var bal map[string]int
	post(t, url+"/_standin/balloon?agent=0&rate=64M&limit=8M&comm=2.1.205", &bal)
	pid := bal["pid"]
	deadline := time.Now().Add(10 * time.Second)
	for {
		rss := vmRSS(pid)
		if rss >= 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("balloon RSS %d after 10 s", rss)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "2.1.205" {
		t.Errorf("comm %q", comm)
	}
	if ppid := parent(pid); ppid != agents[0].PID {
		t.Errorf("balloon's parent %d, want agent %d", ppid, agents[0].PID)
	}
	// Hang: the port stays open, GET / does not answer.
	post(t, url+"/_standin/hang", nil)
	c := http.Client{Timeout: 300 * time.Millisecond}
	if _, err := c.Get(url + "/"); err == nil {
		t.Error("GET / answered while hanging")
	}
	post(t, url+"/_standin/unhang", nil)
	if _, err := c.Get(url + "/"); err != nil {
		t.Errorf("GET / after unhang: %v", err)
	}
	for _, p := range []int{pid, agents[0].PID, agents[1].PID} {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

func post(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST %s: %v %v", url, err, resp)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
}

func vmRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func parent(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	p, _ := strconv.Atoi(f[1])
	return p
}
