//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"t3-supervise/creds"
	"t3-supervise/internal/vaulttest"
)

// options are one run's settings (see the package doc for each flag).
type options struct {
	N            int
	Outage       time.Duration // Vault stopped this long
	Sealed       time.Duration // then answering sealed this long before the unseal
	Interval     time.Duration // the supervisors' --refresh-interval
	Steady       time.Duration // steady-state window before the outage
	After        time.Duration // steady-state window after the recovery
	TokenPeriod  time.Duration // period of each user's Vault token
	VaultTimeout time.Duration // the supervisors' --vault-timeout
	Supervisor   string
	Standin      string
	PerSecond    bool // print every second of the outage and recovery, not rows of ten
}

// member is one user's supervisor and what the bench knows about it.
type member struct {
	user           string
	home           string
	port           string
	token          string // the fake setup token at the user's own Vault path
	vaultTok       string // the user's own Vault token (policy workstation-claude-USER only)
	fp             string // the token's fingerprint as the stand-in prints it
	stdout, stderr string // the supervisor's output (t3's stdout included)

	cmd    *exec.Cmd
	done   chan struct{}
	state  *os.ProcessState // set before done is closed
	exitAt time.Duration

	t3pid int           // from the stand-in's report
	ready time.Duration // when t3 ran with the right token and the supervisor said server_ready
}

func (m *member) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *member) envFile() string {
	return filepath.Join(m.home, ".config", "claude-auth-sync", "claude-oauth.env")
}

// fleet is one run: a Vault, the proxy in front of it, the members.
type fleet struct {
	o       options
	t       vaulttest.T
	dir     string
	sup     string // the installed t3-supervise
	standin string // the installed stand-in t3
	vault   *vaulttest.Persistent
	proxy   *countingProxy
	members []*member
}

// gecosTag marks the throwaway users in /etc/passwd, followed by " pid=N" of the run that
// made them: a later run removes those whose run is gone.
const gecosTag = "t3-supervise bench/fleet"

// newFleet makes everything up to the start of the supervisors: users, homes, Vault, secrets,
// tokens, policies, the proxy. Everything is undone by t's cleanups.
func newFleet(t vaulttest.T, vaultBin string, o options) (*fleet, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench/fleet runs as root: it creates a throwaway Unix user per supervisor")
	}
	dir, err := os.MkdirTemp("", "t3s-fleet-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// 0755: every user must reach its home and the binaries below it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	f := &fleet{o: o, t: t, dir: dir}
	for _, d := range []string{"bin", "home", "logs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if f.sup, err = install(o.Supervisor, filepath.Join(dir, "bin", "t3-supervise")); err != nil {
		return nil, err
	}
	// Named t3: the stand-in plays the role its name says (test/standin).
	if f.standin, err = install(o.Standin, filepath.Join(dir, "bin", "t3")); err != nil {
		return nil, err
	}

	removeStaleUsers(t)
	runID := make([]byte, 2)
	rand.Read(runID)
	users, tokens := map[string]int{}, map[string]int{}
	f.vault = vaulttest.StartPersistentBin(t, vaultBin)
	for i := 0; i < o.N; i++ {
		m := &member{user: fmt.Sprintf("t3f%x-%03d", runID, i), done: make(chan struct{})}
		m.home = filepath.Join(dir, "home", m.user)
		if err := addUser(t, m.user, m.home); err != nil {
			return nil, err
		}
		if err := makeHome(m); err != nil {
			return nil, err
		}
		if m.port, err = uniquePort(f.members); err != nil {
			return nil, err
		}
		policy := "workstation-claude-" + m.user
		f.vault.Policy(policy, "workstation/claude-users/"+m.user)
		m.token = vaulttest.FakeToken()
		f.vault.Put("workstation/claude-users/"+m.user, map[string]any{"setup_token": m.token})
		m.vaultTok = f.vault.Token(o.TokenPeriod, policy)
		sum := sha256.Sum256([]byte(m.token))
		m.fp = hex.EncodeToString(sum[:6])
		if err := writeOwned(m, filepath.Join(m.home, ".config", "claude-auth-sync", "vault-token"), m.vaultTok+"\n"); err != nil {
			return nil, err
		}
		m.stdout = filepath.Join(dir, "logs", m.user+".out")
		m.stderr = filepath.Join(dir, "logs", m.user+".err")
		users[m.user], tokens[m.vaultTok] = i, i
		f.members = append(f.members, m)
	}
	f.proxy, err = newCountingProxy(f.vault.Addr, users, tokens)
	if err != nil {
		return nil, err
	}
	t.Cleanup(f.proxy.Close)
	return f, nil
}

// uniquePort is a port for t3 that no member has yet: it is bound only when t3 starts, so the
// free-port check alone does not keep two members apart.
func uniquePort(ms []*member) (string, error) {
	for {
		port, err := vaulttest.StablePort()
		if err != nil {
			return "", err
		}
		if !slices.ContainsFunc(ms, func(m *member) bool { return m.port == port }) {
			return port, nil
		}
	}
}

// install copies an executable to to, where every user can run it (a checkout or go run's
// build directory may be private to root).
func install(path, to string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w (make build tools)", err)
	}
	return to, os.WriteFile(to, b, 0o755)
}

// addUser creates a throwaway system user with no login shell, the shared group nogroup, and
// the given home (made by makeHome, not useradd); t's cleanup removes it.
func addUser(t vaulttest.T, name, home string) error {
	out, err := exec.Command("useradd", "--no-create-home", "--no-user-group", "--gid", "nogroup",
		"--home-dir", home, "--shell", "/usr/sbin/nologin",
		"--comment", fmt.Sprintf("%s pid=%d", gecosTag, os.Getpid()), name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { delUser(t, name) })
	return nil
}

func delUser(t vaulttest.T, name string) {
	if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
		t.Logf("userdel %s: %v: %s", name, err, out)
	}
}

// removeStaleUsers deletes the users an earlier run left behind (it was killed before its
// cleanup), recognised by gecosTag and a pid that no longer runs.
func removeStaleUsers(t vaulttest.T) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return
	}
	defer f.Close()
	var stale []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 5 || !strings.HasPrefix(fields[4], gecosTag+" pid=") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(fields[4], gecosTag+" pid="))
		if err == nil && syscall.Kill(pid, 0) == nil {
			continue // another run, still going
		}
		stale = append(stale, fields[0])
	}
	for _, name := range stale {
		delUser(t, name)
	}
	if len(stale) > 0 {
		t.Logf("removed %d users left behind by an earlier run", len(stale))
	}
}

// makeHome makes the user's HOME with ~/.config/claude-auth-sync, all 0700 and the user's.
func makeHome(m *member) error {
	dir := filepath.Join(m.home, ".config", "claude-auth-sync")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{m.home, filepath.Join(m.home, ".config"), dir} {
		if err := chownTo(m, d); err != nil {
			return err
		}
	}
	return nil
}

func writeOwned(m *member, path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return chownTo(m, path)
}

func chownTo(m *member, path string) error {
	u, err := user.Lookup(m.user)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// start starts one supervisor, as the unit would: as root with --user (it drops to the user
// itself), --no-cgroup (this host has no delegated cgroup v2), the stand-in as t3 on its own port.
func (f *fleet) start(m *member) error {
	o := f.o
	args := []string{"--user", m.user, "--no-cgroup",
		"--refresh-interval", o.Interval.String(), "--vault-timeout", o.VaultTimeout.String(),
		"--vault-policy-template", "workstation-claude-{user}", "--t3-bin", f.standin,
		"--", "serve", "--host", "127.0.0.1", "--port", m.port, "--base-dir", filepath.Join(m.home, ".t3")}
	c := exec.Command(f.sup, args...)
	c.Env = []string{"HOME=" + m.home, "USER=" + m.user, "LOGNAME=" + m.user, "PATH=/usr/bin:/bin",
		"LANG=C.UTF-8", "NODE_ENV=production", "T3_PORT=" + m.port, "VAULT_ADDR=" + f.proxy.URL}
	// A session of its own, as systemd gives each unit.
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := os.Create(m.stdout)
	if err != nil {
		return err
	}
	defer out.Close()
	errf, err := os.Create(m.stderr)
	if err != nil {
		return err
	}
	defer errf.Close()
	c.Stdout, c.Stderr = out, errf
	if err := c.Start(); err != nil {
		return fmt.Errorf("starting the supervisor of %s: %w", m.user, err)
	}
	m.cmd = c
	go func() {
		c.Wait()
		m.state, m.exitAt = c.ProcessState, f.proxy.since()
		close(m.done)
	}()
	return nil
}

// reportLine is the stand-in's first line (test/standin): its pid and the token's fingerprint.
var reportLine = regexp.MustCompile(`(?m)^t3-standin: pid=(\d+) .*CLAUDE_CODE_OAUTH_TOKEN=(set sha256:([0-9a-f]{12})|unset)`)

// t3Report reads what the member's t3 printed: every start's pid and fingerprint ("" if unset).
func (m *member) t3Report() (pids []int, fps []string) {
	b, _ := os.ReadFile(m.stdout)
	for _, g := range reportLine.FindAllStringSubmatch(string(b), -1) {
		pid, _ := strconv.Atoi(g[1])
		pids, fps = append(pids, pid), append(fps, g[3])
	}
	return pids, fps
}

func (m *member) events(kind string) int {
	b, _ := os.ReadFile(m.stderr)
	return strings.Count(string(b), " "+kind+": ")
}

// coldStart starts every supervisor at once and waits until each one's t3 runs with the
// user's token and answers (the supervisor's server_ready). It returns when the last was ready.
func (f *fleet) coldStart(ctx context.Context, limit time.Duration) (launched, allReady time.Duration, err error) {
	from := f.proxy.since()
	for _, m := range f.members {
		if err := f.start(m); err != nil {
			return 0, 0, err
		}
	}
	launched = f.proxy.since() - from
	deadline := time.Now().Add(limit)
	for {
		waiting := 0
		for _, m := range f.members {
			if m.ready > 0 {
				continue
			}
			if m.exited() {
				return 0, 0, fmt.Errorf("the supervisor of %s exited at start (%v):\n%s", m.user, m.state, tail(m.stderr, 10))
			}
			pids, fps := m.t3Report()
			if len(pids) == 1 && fps[0] == m.fp && m.events("server_ready") > 0 {
				m.t3pid, m.ready = pids[0], f.proxy.since()
				allReady = max(allReady, m.ready)
				continue
			}
			waiting++
		}
		if waiting == 0 {
			return launched, allReady, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%d of %d supervisors not ready with their token after %v", waiting, len(f.members), limit)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
}

// outage stops Vault for o.Outage, starts it again (it answers sealed), unseals it after
// o.Sealed, and waits until every member has read its secret again.
func (f *fleet) outage(ctx context.Context, limit time.Duration) (t outageTimes, err error) {
	t.stop = f.proxy.since()
	f.vault.Stop()
	if err := sleep(ctx, f.o.Outage); err != nil {
		return t, err
	}
	f.vault.Launch(f.t)
	t.up = f.proxy.since()
	if err := sleep(ctx, f.o.Sealed); err != nil {
		return t, err
	}
	f.vault.Unseal(f.t)
	t.unsealed = f.proxy.since()
	deadline := time.Now().Add(limit)
	for {
		first := f.proxy.firstRead(t.up, len(f.members))
		missing := 0
		for _, at := range first {
			if at < 0 {
				missing++
			}
			t.allRead = max(t.allRead, at)
		}
		if missing == 0 {
			t.firstRead = first
			return t, nil
		}
		if time.Now().After(deadline) {
			t.firstRead = first
			return t, fmt.Errorf("%d of %d supervisors did not read their secret again within %v of the unseal", missing, len(f.members), limit)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return t, err
		}
	}
}

// outageTimes are the instants of the outage on the proxy's time axis.
type outageTimes struct {
	stop, up, unsealed, allRead time.Duration
	firstRead                   []time.Duration // each member's first successful read after up
}

// usage is what the supervisors (or their t3s) cost, summed over the members.
type usage struct {
	rss, rssMax uint64  // bytes: sum, and the largest one
	pss         uint64  // bytes, summed: shared pages (the binary's text) counted once, not N times
	cpu         float64 // seconds of CPU (user+system), summed
	n           int     // processes measured
}

func measure(pids []int) usage {
	var u usage
	for _, pid := range pids {
		p, err := process.NewProcess(int32(pid))
		if err != nil {
			continue
		}
		mi, err1 := p.MemoryInfo()
		ts, err2 := p.Times()
		if err1 != nil || err2 != nil {
			continue
		}
		u.rss += mi.RSS
		u.rssMax = max(u.rssMax, mi.RSS)
		if maps, err := p.MemoryMaps(true); err == nil && len(*maps) == 1 {
			u.pss += (*maps)[0].Pss << 10 // smaps_rollup, in KiB
		}
		u.cpu += ts.User + ts.System
		u.n++
	}
	return u
}

func (f *fleet) supervisorPids() []int {
	var out []int
	for _, m := range f.members {
		out = append(out, m.cmd.Process.Pid)
	}
	return out
}

func (f *fleet) t3Pids() []int {
	var out []int
	for _, m := range f.members {
		out = append(out, m.t3pid)
	}
	return out
}

// checks are the end state of each member.
type checks struct {
	alive, sameT3, tokenOK, envOK int
	failedEvents, maxFailedEvents int
	recovered                     int
	renewFailed, maxRenewFailed   int      // vault_token_renew_failed: KeepAlive's
	died                          []string // user: exit status, for supervisors that ended
}

func (f *fleet) check() checks {
	var c checks
	for _, m := range f.members {
		if m.exited() {
			c.died = append(c.died, fmt.Sprintf("%s: %v at %.1f s", m.user, m.state, m.exitAt.Seconds()))
		} else {
			c.alive++
		}
		pids, fps := m.t3Report()
		if len(pids) == 1 && pids[0] == m.t3pid && parentOf(m.t3pid) == m.cmd.Process.Pid {
			c.sameT3++
		}
		if len(fps) > 0 && fps[len(fps)-1] == m.fp {
			c.tokenOK++
		}
		tok, err := creds.ReadEnvFile(m.envFile())
		if st, serr := os.Stat(m.envFile()); err == nil && serr == nil && st.Mode().Perm() == 0o600 && tok.Equal(creds.NewSecret(m.token)) {
			c.envOK++
		}
		n := m.events("credential_refresh_failed")
		c.failedEvents += n
		c.maxFailedEvents = max(c.maxFailedEvents, n)
		if m.events("credential_refresh_recovered") > 0 {
			c.recovered++
		}
		n = m.events("vault_token_renew_failed")
		c.renewFailed += n
		c.maxRenewFailed = max(c.maxRenewFailed, n)
	}
	return c
}

// parentOf is pid's parent, or 0 when pid is gone.
func parentOf(pid int) int {
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return 0
	}
	pp, err := p.Ppid()
	if err != nil {
		return 0
	}
	return int(pp)
}

// stopAll sends SIGTERM to every supervisor, as systemctl stop does, and returns their exit
// codes (-1: killed after the timeout) and how many t3s outlived their supervisor. Whatever is
// left is SIGKILLed by pid.
func (f *fleet) stopAll(timeout time.Duration) (codes map[int]int, orphans int) {
	for _, m := range f.members {
		if m.cmd != nil && !m.exited() {
			m.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	codes = map[int]int{}
	deadline := time.After(timeout)
	for _, m := range f.members {
		if m.cmd == nil {
			continue
		}
		select {
		case <-m.done:
		case <-deadline:
		}
		if !m.exited() {
			m.cmd.Process.Kill()
			<-m.done
			codes[-1]++
		} else {
			codes[m.state.ExitCode()]++
		}
		if m.t3pid > 0 && isT3(m.t3pid) {
			orphans++
			syscall.Kill(m.t3pid, syscall.SIGKILL)
		}
	}
	return codes, orphans
}

// isT3 says whether pid is (still) a stand-in t3 (its comm, from the name it was installed as).
func isT3(pid int) bool {
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return false
	}
	name, err := p.Name()
	return err == nil && name == "t3"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
