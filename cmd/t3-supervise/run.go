//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"t3-supervise/cgroup"
	"t3-supervise/creds"
	"t3-supervise/supervise"
)

// run is the whole program; main only supplies the process's arguments, environment and files.
func run(ctx context.Context, args []string, environ []string, stdout, stderr *os.File) int {
	supervise.SurviveBrokenPipe()
	if len(args) > 0 && args[0] == "status" {
		return runStatus(args[1:], stdout, stderr)
	}
	// Only the subcommand, no --version: a copy of this binary found under an agent's name
	// (PATH after the shim) must not answer T3's `claude --version` probe as if it were claude.
	if len(args) == 1 && args[0] == "version" {
		return runVersion(stdout)
	}
	cfg, err := parseConfig(args, environ, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		printHelp(stdout)
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", identifier, err, identifier)
		return exitUsage
	}
	if err != nil {
		// The user is not settled yet; the event carries none.
		ev := newEvents("", stderr, true)
		ev.emitf(evConfigInvalid, nil, "%v", err)
		var ce configError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitInternal
	}
	// A dry run changes nothing, not even the journal: its events go to stderr only.
	ev := newEvents(cfg.User, stderr, !cfg.DryRun)
	if cfg.dropTo != nil {
		if err := dropPrivileges(cfg.dropTo); err != nil {
			ev.emitf(evConfigInvalid, nil, "dropping from root to --user %s: %v", cfg.User, err)
			return exitConfig
		}
	}

	// Signals are subscribed before anything slow happens: a SIGTERM while Vault is being asked
	// cancels the question and ends the run before anything is started, instead of killing the
	// process at an arbitrary point (or, once the child runs, leaving it behind).
	sigs := supervise.Notify()
	defer sigs.Close()
	prepCtx, cancelPrep := context.WithCancel(ctx)
	stopped := make(chan os.Signal, 1)
	prepDone, watcherDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case s := <-sigs.Stop:
			stopped <- s
			cancelPrep()
		case <-prepDone:
		}
	}()
	p, err := prepare(prepCtx, cfg, ev)
	close(prepDone)
	<-watcherDone // from here on the serve loop alone reads sigs.Stop
	cancelPrep()
	if p.client != nil {
		defer p.client.Close()
	}
	select {
	case s := <-stopped:
		ev.emitf(evStopped, fields{"T3_SIGNAL": sigName(s)}, "%s during start-up, before t3 was started: nothing to stop", sigName(s))
		return exitOK
	default:
	}
	if cfg.DryRun {
		p.print(stdout, cfg.JSON)
		if p.Failure != nil {
			return p.Failure.ExitCode
		}
		return exitOK
	}
	if err != nil {
		var re *runError
		errors.As(err, &re)
		// Credential failures were reported where they were decided; the others are reported here.
		f := fields{"T3_EXIT_CODE": fmt.Sprint(re.code)}
		switch re.class {
		case "exec":
			ev.emitf(evExecFailed, f, "%v", err)
		case "cgroup":
			ev.emitf(evCgroupFailed, f, "%v", err)
		case "internal":
			ev.emitf(evInternal, f, "%v", err)
		}
		return re.code
	}
	return serve(ctx, cfg, p, ev, sigs)
}

// serve carries out the plan and watches the child until it ends.
func serve(ctx context.Context, cfg *config, p *plan, ev *events, sigs *supervise.Signals) int {
	ev.emitf(evStarting, fields{"T3_ARGV": fmt.Sprint(p.Argv), "T3_VERSION": buildVersion()}, "t3-supervise %s starting %s for %s", buildVersion(), p.Argv[0], cfg.User)
	if err := applyEnvFile(cfg, p, ev); err != nil {
		// The token is resolved and the child gets it in its environment; only the user's other
		// sessions miss the file. Not a reason to keep the server down.
		ev.emitf(evEnvFileFailed, fields{"T3_ENV_FILE": cfg.EnvFile}, "%v", err)
	}

	subreaper := cfg.NoCgroup
	if subreaper {
		if err := supervise.SetSubreaper(); err != nil {
			ev.emitf(evInternal, nil, "%v", err)
			return exitInternal
		}
	}

	childCfg := supervise.Config{Path: p.Argv[0], Args: p.Argv[1:], Env: p.env, Stdout: os.Stdout, Stderr: os.Stderr}
	tree := p.Cgroup.tree
	if tree != nil {
		serverDir, err := setupCgroup(cfg, p, ev)
		if err != nil {
			return exitCgroup
		}
		defer teardownCgroup(cfg, tree, ev)
		defer serverDir.Close()
		childCfg.Cgroup, childCfg.Tree = serverDir, tree
	}

	child, err := supervise.Start(childCfg)
	if err != nil {
		code := exitNotFound
		var se *supervise.StartError
		if errors.As(err, &se) {
			code = se.Code
		}
		ev.emitf(evExecFailed, fields{"T3_EXIT_CODE": fmt.Sprint(code)}, "%v", err)
		return code
	}
	pid := fmt.Sprint(child.Pid())
	ev.emitf(evChildStarted, fields{"T3_PID": pid, "T3_TOKEN_SOURCE": p.decision.From}, "%s started as pid %s", p.Argv[0], pid)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var memEvents <-chan cgroup.Event
	if tree != nil {
		wc := cfg.Watch
		wc.ServerPID = child.Pid()
		wc.ShimExe, _ = os.Executable()
		wc.Port, wc.AgentNames, wc.SupervisorPID = cfg.Port, cfg.AgentNames, os.Getpid()
		wc.Plan = p.Cgroup.Steps
		if memEvents, err = tree.Watch(watchCtx, wc); err != nil {
			ev.emitf(evCgroupWarning, nil, "watching memory events: %v", err)
		}
	}

	expiry := newExpiryWatch(cfg, p)
	expiry.save()
	expiry.check(ev) // at start: the innermost threshold already crossed, if any
	hs := newHealthState(cfg, p, child.Pid(), tree)
	hs.expiry = expiry
	hs.saveState(func(*supervisorState) {})
	probeResults := hs.startProber(watchCtx, cfg)

	rot := newRotation(cfg, p)
	up := newUpgrader(cfg)
	up.tree = tree
	if up.disabled != nil {
		ev.emitf(evInternal, nil, "not watching for upgrades: %v", up.disabled)
	}
	up.publish(ev)
	tick, err := time.ParseDuration(upgradeTick)
	if err != nil || tick <= 0 {
		ev.emitf(evInternal, nil, "upgradeTick %q (set at build time): %v", upgradeTick, err)
		tick = 5 * time.Second
	}
	// The upgrade check has a ticker of its own (tests shorten it); it reads the activity
	// sampler's last verdict rather than sampling again.
	upgradeTicker := time.NewTicker(tick)
	defer upgradeTicker.Stop()
	idleTick := time.NewTicker(activityInterval)
	defer idleTick.Stop()
	act := newActivityState(cfg, tree, child.Pid())
	act.sample(ev, time.Now())
	// The idle clock starts with the server: a user idle since the start has been idle that long
	// when the package is upgraded, not only since the first tick.
	up.gate.Idle.Idle(time.Now(), act.verdict())
	restart := func() int {
		ev.emitf(evRotationRestart, fields{"T3_PID": pid, "T3_EXIT_CODE": fmt.Sprint(exitRotated)},
			"stopping t3 (pid %s) so that systemd restarts it with the new token", pid)
		r := child.Stop(cfg.StopTimeout)
		ev.emitf(evStopped, exitFields(pid, r.Exit), "stopped in %v: %v", r.Took.Round(1e6), r.Exit)
		return exitRotated
	}
	upgrade := func(now time.Time) int {
		ev.emitf(evUpgradeRestart, up.restartFields(pid, now),
			"stopping t3 (pid %s; the agents have been idle for %v) so that systemd starts the unit again on %s (%s, this is %s)",
			pid, up.gate.Idle.IdleFor(now).Round(time.Second), up.path, up.installedVersion(), buildVersion())
		r := child.Stop(cfg.StopTimeout)
		if r.Escalated {
			ev.emitf(evStopEscalated, fields{"T3_PID": pid}, "pid %s did not exit within %v; killed everything", pid, cfg.StopTimeout)
		}
		ev.emitf(evStopped, exitFields(pid, r.Exit), "stopped in %v: %v", r.Took.Round(1e6), r.Exit)
		return exitUpgrade
	}

	renewals := make(chan creds.Renewal, 4)
	keepCtx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	if p.client != nil {
		go func() {
			_ = p.client.KeepAlive(keepCtx, func(r creds.Renewal) {
				select {
				case renewals <- r:
				case <-keepCtx.Done():
				}
			})
		}()
	}

	for {
		select {
		case <-child.Done():
			exit := child.Exit()
			if exit.Signal == syscall.SIGKILL {
				awaitOOMReport(ev, hs, memEvents, child.Pid())
			}
			code := exitStatusFor(exit, false)
			f := exitFields(pid, exit)
			f["T3_SUPERVISOR_EXIT_STATUS"] = fmt.Sprint(code)
			ev.emitf(evChildExited, f, "%s (pid %s) %v without being asked to: everything it left is killed, exit %d for systemd to restart the unit",
				p.Argv[0], pid, exit, code)
			if err := child.Cleanup(); err != nil {
				ev.emitf(evInternal, nil, "cleaning up after the child: %v", err)
			}
			return code
		case sig := <-sigs.Stop:
			ev.emitf(evStopping, fields{"T3_SIGNAL": sigName(sig), "T3_PID": pid},
				"%s received: SIGTERM to pid %s, SIGKILL to everything left after %v", sigName(sig), pid, cfg.StopTimeout)
			r := child.Stop(cfg.StopTimeout)
			if r.Escalated {
				ev.emitf(evStopEscalated, fields{"T3_PID": pid}, "pid %s did not exit within %v; killed everything", pid, cfg.StopTimeout)
			}
			if r.KillErr != nil {
				ev.emitf(evInternal, nil, "killing the workload: %v", r.KillErr)
			}
			ev.emitf(evStopped, exitFields(pid, r.Exit), "stopped in %v: %v", r.Took.Round(1e6), r.Exit)
			return exitStatusFor(r.Exit, true)
		case sig := <-sigs.Reload:
			// Not forwarded: Node's default action for SIGHUP is to terminate, and T3 has no
			// handler for it, so a token re-read would kill the server and every agent with it.
			ev.emitf(evSignal, fields{"T3_SIGNAL": sigName(sig), "T3_PID": pid}, "%s: re-reading the token (t3, pid %s, is not signalled)", sigName(sig), pid)
			rot.start(keepCtx, true)
		case <-rot.C():
			rot.start(keepCtx, false)
		case rr := <-rot.results:
			rot.handle(ev, rr)
			expiry.follow(ev, rr, rot.current, cfg.TokenLifetime)
			hs.noteRefresh(rot)
			if rot.restartDue(time.Now(), act.verdict()) {
				return restart()
			}
		case now := <-idleTick.C:
			act.sample(ev, now)
			if rot.pending && rot.restartDue(now, act.verdict()) {
				return restart()
			}
		case <-expiry.C():
			expiry.check(ev)
			notify("STATUS=" + hs.status())
		case now := <-upgradeTicker.C:
			if up.observe(ev, now, act.verdict()) {
				return upgrade(now)
			}
		case sig := <-sigs.Upgrade:
			up.request(ev, sig)
			up.publish(ev)
		case <-sigs.Child:
			if subreaper {
				supervise.ReapOrphans(child.Pid())
			}
		case e, ok := <-memEvents:
			if !ok {
				memEvents = nil
				continue
			}
			emitCgroupEvent(ev, e, child.Pid())
			hs.noteEvent(e)
		case err := <-probeResults:
			if hs.record(ev, err) {
				r := child.Stop(cfg.StopTimeout)
				ev.emitf(evStopped, exitFields(pid, r.Exit), "stopped the unresponsive server in %v: %v", r.Took.Round(1e6), r.Exit)
				return exitUnresponsive
			}
		case r := <-renewals:
			if r.Err != nil {
				hs.saveState(func(s *supervisorState) { s.VaultRenewFailures++ })
				ev.emitf(evVaultRenewFailed, nil, "renewing the Vault token: %v", r.Err)
			} else {
				ev.emitf(evVaultRenewed, fields{"T3_VAULT_TTL": r.TTL.String()}, "Vault token renewed, ttl %v", r.TTL)
			}
		}
	}
}

// awaitOOMReport gives the watch a moment to report an OOM kill of the server before its exit
// is: wait(2) and memory.events see the kill at about the same time, and an exit reported first
// would end the run with "killed by signal 9" in the journal and never why.
func awaitOOMReport(ev *events, hs *healthState, memEvents <-chan cgroup.Event, serverPID int) {
	if memEvents == nil {
		return
	}
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-memEvents:
			if !ok {
				return
			}
			emitCgroupEvent(ev, e, serverPID)
			hs.noteEvent(e)
			if k, isKill := e.(cgroup.OOMKill); isKill && k.Victim.PID == serverPID {
				return
			}
		case <-deadline.C:
			return
		}
	}
}

// setupCgroup applies the cgroup plan and the shims, and opens server/ for the child.
func setupCgroup(cfg *config, p *plan, ev *events) (*os.File, error) {
	tree := p.Cgroup.tree
	warnings, err := tree.Apply(p.Cgroup.Steps, os.Getpid())
	for _, w := range warnings {
		ev.emitf(evCgroupWarning, fields{"T3_CGROUP": tree.Dir(".")}, "%v", w)
	}
	if err != nil {
		ev.emitf(evCgroupFailed, fields{"T3_CGROUP": tree.Dir("."), "T3_EXIT_CODE": fmt.Sprint(exitCgroup)}, "setting up the cgroup subtree: %v", err)
		return nil, err
	}
	if err := makeShims(cfg.ShimDir, cfg.AgentNames); err != nil {
		// Agents still get placed by the watch of server/; only the early placement is lost.
		ev.emitf(evCgroupWarning, fields{"T3_SHIM_DIR": cfg.ShimDir}, "agent shims: %v", err)
	}
	dir, err := tree.OpenServer()
	if err != nil {
		ev.emitf(evCgroupFailed, fields{"T3_CGROUP": tree.Dir(".")}, "%v", err)
		return nil, err
	}
	ev.emitf(evCgroupReady, fields{"T3_CGROUP": tree.Dir("."), "T3_MEMORY_MAX": cfg.Limits.MemoryMax.String(),
		"T3_MEMORY_HIGH": cfg.Limits.MemoryHigh.String()},
		"cgroup subtree ready: workload memory.max %s, agents memory.high %s, swap 0", cfg.Limits.MemoryMax, cfg.Limits.MemoryHigh)
	return dir, nil
}

// teardownCgroup kills whatever is left in the workload and removes the cgroups we made.
func teardownCgroup(cfg *config, tree *cgroup.Tree, ev *events) {
	removeShims(cfg.ShimDir, cfg.AgentNames)
	if err := tree.KillAll(); err != nil {
		ev.emitf(evInternal, nil, "killing the workload: %v", err)
	}
	if err := tree.Teardown(); err != nil {
		ev.emitf(evCgroupWarning, nil, "removing the subtree: %v", err)
	}
}

// emitCgroupEvent turns one event of the watch into one journald entry; serverPID is t3's.
func emitCgroupEvent(ev *events, e cgroup.Event, serverPID int) {
	switch e := e.(type) {
	case cgroup.AgentPlaced:
		ev.emitf(evAgentPlaced, fields{"T3_PID": fmt.Sprint(e.PID), "T3_CGROUP": e.Leaf, "T3_VIA": e.Via, "T3_COMM": e.Comm},
			"agent %s (pid %d) placed in agents/%s by the %s", e.Comm, e.PID, e.Leaf, e.Via)
	case cgroup.LeafRemoved:
		ev.emitf(evAgentLeafRemoved, fields{"T3_CGROUP": e.Leaf}, "agent leaf agents/%s emptied and removed", e.Leaf)
	case cgroup.OOMKill:
		f := fields{"T3_KILLER": "kernel", "T3_OOM_KILL_COUNT": fmt.Sprint(e.Count),
			"T3_SEEN_MONOTONIC_USEC": fmt.Sprint(e.Seen.Microseconds())}
		if !e.Known {
			where := "leaf unknown"
			if e.Victim.Leaf != "" {
				f["T3_CGROUP"] = e.Victim.Leaf
				where = "in " + e.Victim.Leaf
			}
			ev.emitf(evOOMKill, f, "the kernel OOM-killed a process in the workload that lived less than a sample (%s)", where)
			return
		}
		victimFields(f, e.Victim)
		ev.emitf(evOOMKill, f, "the kernel OOM-killed %s (pid %d, %s resident) in %s; %s",
			e.Victim.Comm, e.Victim.PID, mib(e.Victim.RSS), e.Victim.Leaf, oomAftermath(e.Victim, serverPID))
	case cgroup.PressureKill:
		f := fields{"T3_KILLER": "t3-supervise", "T3_SIGNAL": e.Signal, "T3_STALL": fmt.Sprintf("%.2f", e.Stall)}
		victimFields(f, e.Victim)
		ev.emitf(evPressureKill, f, "killed %s (pid %d, %s resident, agents/%s) with %s: agents over memory.high and stalled %.0f%% for %v",
			e.Victim.Comm, e.Victim.PID, mib(e.Victim.RSS), e.Victim.Leaf, e.Signal, 100*e.Stall, e.Window)
	case cgroup.Warning:
		ev.emitf(evCgroupWarning, nil, "%v", e.Err)
	case cgroup.PressureUnavailable:
		ev.emitf(evPressureOff, nil, "%v", e.Err)
	case cgroup.StrayKilled:
		f := fields{"T3_KILLER": "t3-supervise", "T3_SIGNAL": "SIGKILL"}
		victimFields(f, e.Victim)
		ev.emitf(evStrayKilled, f, "killed %s (pid %d, %s resident): it was in %s, outside the workload and its limits (a process of the user's moved it there)",
			e.Victim.Comm, e.Victim.PID, mib(e.Victim.RSS), e.Cgroup)
	case cgroup.LimitRestored:
		ev.emitf(evLimitRestored, fields{"T3_CGROUP_FILE": e.File, "T3_FOUND": e.Found, "T3_RESTORED": e.Restored},
			"%s read %q, not the planned %q (a process of the user's wrote it): written back", e.File, e.Found, e.Restored)
	case cgroup.ServerFound:
		ev.emitf(evServerFound, fields{"T3_PID": fmt.Sprint(e.PID), "T3_COMM": e.Comm, "T3_WRAPPER_PID": fmt.Sprint(e.Wrapper), "T3_WRAPPER_COMM": e.WrapperComm},
			"t3's direct child %s (pid %d) does not listen on port %d itself; %s (pid %d) does: it is the server and stays in server/ with the processes between them",
			e.WrapperComm, e.Wrapper, e.Port, e.Comm, e.PID)
	}
}

// oomAftermath says what an OOM kill means for the server. The server's own death is not
// survivable from inside: its agents are killed with it and the supervisor exits for systemd to
// restart the unit (child_exited follows).
func oomAftermath(v cgroup.Victim, serverPID int) string {
	if v.PID == serverPID {
		return "that was the server itself: its agents are stopped and the supervisor exits for systemd to restart the unit"
	}
	return "the server keeps running"
}

func victimFields(f fields, v cgroup.Victim) {
	f["T3_PID"] = fmt.Sprint(v.PID)
	f["T3_VICTIM_PID"] = fmt.Sprint(v.PID)
	f["T3_VICTIM_COMM"] = v.Comm
	f["T3_VICTIM_CMDLINE"] = v.Cmdline
	f["T3_VICTIM_RSS"] = fmt.Sprint(v.RSS)
	f["T3_CGROUP"] = v.Leaf
}

func mib(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }

func exitFields(pid string, e supervise.Exit) fields {
	f := fields{"T3_PID": pid, "T3_EXIT_STATUS": fmt.Sprint(e.Status())}
	if e.Signal != 0 {
		f["T3_SIGNAL"] = sigName(e.Signal)
	} else {
		f["T3_EXIT_CODE"] = fmt.Sprint(e.Code)
	}
	return f
}

func sigName(s os.Signal) string {
	if n, ok := s.(syscall.Signal); ok {
		switch n {
		case syscall.SIGTERM:
			return "SIGTERM"
		case syscall.SIGINT:
			return "SIGINT"
		case syscall.SIGHUP:
			return "SIGHUP"
		case syscall.SIGQUIT:
			return "SIGQUIT"
		case syscall.SIGKILL:
			return "SIGKILL"
		case syscall.SIGUSR2:
			return "SIGUSR2"
		}
		return fmt.Sprintf("signal %d", int(n))
	}
	return s.String()
}

// applyEnvFile carries out the env file action of the plan.
func applyEnvFile(cfg *config, p *plan, ev *events) error {
	f := fields{"T3_ENV_FILE": cfg.EnvFile}
	switch p.fileAct.Action {
	case creds.ActionWrite:
		changed, err := creds.WriteEnvFile(cfg.EnvFile, p.decision.Inject)
		if err != nil {
			return err
		}
		if changed {
			f["T3_TOKEN_FINGERPRINT"] = p.decision.Inject.Fingerprint()
			ev.emitf(evEnvFileWritten, f, "token materialized at %s", cfg.EnvFile)
		}
	case creds.ActionRefuse:
		return p.fileAct.Refusal
	case creds.ActionRemove:
		removed, err := creds.RemoveEnvFile(cfg.EnvFile)
		if err != nil {
			return err
		}
		if removed {
			ev.emitf(evEnvFileRemoved, f, "removed %s: the user has no token in Vault", cfg.EnvFile)
		}
	}
	return nil
}
