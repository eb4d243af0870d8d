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
		ev.emit(ConfigInvalidEvent{Err: err})
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
			ev.emit(ConfigInvalidEvent{Err: fmt.Errorf("dropping from root to --user %s: %w", cfg.User, err)})
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
	p, h, err := prepare(prepCtx, cfg, ev)
	close(prepDone)
	<-watcherDone // from here on the serve loop alone reads sigs.Stop
	cancelPrep()
	defer h.close()
	select {
	case s := <-stopped:
		ev.emit(StoppedEvent{ExitInfo: ExitInfo{Signal: sigName(s)}, BeforeStart: true})
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
		switch re.class {
		case "exec":
			ev.emit(ExecFailedEvent{ExitCode: re.code, Err: err})
		case "cgroup":
			ev.emit(CgroupFailedEvent{ExitCode: re.code, Err: err})
		case "internal":
			ev.emit(InternalErrorEvent{ExitCode: re.code, Err: err})
		}
		return re.code
	}
	return serve(ctx, cfg, p, h, ev, sigs)
}

// serve carries out the plan with the handles found for it and watches the child until it ends.
func serve(ctx context.Context, cfg *config, p *plan, h handles, ev *events, sigs *supervise.Signals) int {
	ev.emit(StartingEvent{Argv: p.Argv, Version: buildVersion(), User: cfg.User})
	if err := applyEnvFile(cfg.EnvFile, p.fileAct, p.decision.Inject, ev); err != nil {
		// The token is resolved and the child gets it in its environment; only the user's other
		// sessions miss the file. Not a reason to keep the server down.
		ev.emit(EnvFileFailedEvent{EnvFile: cfg.EnvFile, Err: err})
	}

	subreaper := cfg.NoCgroup
	if subreaper {
		if err := supervise.SetSubreaper(); err != nil {
			ev.emit(InternalErrorEvent{Err: err})
			return exitInternal
		}
	}

	childCfg := supervise.Config{Path: p.Argv[0], Args: p.Argv[1:], Env: p.env, Stdout: os.Stdout, Stderr: os.Stderr}
	tree := h.tree
	if tree != nil {
		serverDir, err := setupCgroup(tree, p.Cgroup, cfg.Limits, ev)
		if err != nil {
			return exitCgroup
		}
		defer teardownCgroup(tree, p.Cgroup, ev)
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
		ev.emit(ExecFailedEvent{ExitCode: code, Err: err})
		return code
	}
	pid := child.Pid()
	ev.emit(ChildStartedEvent{PID: pid, TokenSource: p.decision.From, Program: p.Argv[0]})

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
			ev.emit(CgroupWarningEvent{Err: fmt.Errorf("watching memory events: %w", err)})
		}
	}

	expiry := newExpiryWatch(cfg, p)
	expiry.save()
	expiry.check(ev) // at start: the innermost threshold already crossed, if any
	hs := newHealthState(cfg, p, child.Pid(), tree, realClock{}, supervise.SystemdNotifier{})
	hs.expiry = expiry
	hs.saveState(func(*supervisorState) {})
	probeResults := hs.startProber(watchCtx, cfg)

	rot := newRotation(cfg, p, h.client)
	up := newUpgrader(cfg)
	up.tree = tree
	if up.disabled != nil {
		ev.emit(InternalErrorEvent{Err: fmt.Errorf("not watching for upgrades: %w", up.disabled)})
	}
	up.publish(ev)
	tick, err := time.ParseDuration(upgradeTick)
	if err != nil || tick <= 0 {
		ev.emit(InternalErrorEvent{Err: fmt.Errorf("upgradeTick %q (set at build time): %v", upgradeTick, err)})
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
		ev.emit(RotationRestartEvent{PID: pid, ExitCode: exitRotated})
		hs.notifier.Stopping()
		r := child.Stop(cfg.StopTimeout)
		ev.emit(StoppedEvent{ExitInfo: exitOf(pid, r.Exit), Took: r.Took})
		return exitRotated
	}
	upgrade := func(now time.Time) int {
		ev.emit(up.restartEvent(pid, now))
		hs.notifier.Stopping()
		r := child.Stop(cfg.StopTimeout)
		if r.Escalated {
			ev.emit(StopEscalatedEvent{PID: pid, Timeout: cfg.StopTimeout})
		}
		ev.emit(StoppedEvent{ExitInfo: exitOf(pid, r.Exit), Took: r.Took})
		return exitUpgrade
	}

	renewals := make(chan creds.Renewal, 4)
	keepCtx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	if h.client != nil {
		go func() {
			_ = h.client.KeepAlive(keepCtx, func(r creds.Renewal) {
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
			ev.emit(ChildExitedEvent{ExitInfo: exitOf(pid, exit), SupervisorExit: code, Program: p.Argv[0]})
			if err := child.Cleanup(); err != nil {
				ev.emit(InternalErrorEvent{Err: fmt.Errorf("cleaning up after the child: %w", err)})
			}
			return code
		case sig := <-sigs.Stop:
			ev.emit(StoppingEvent{Signal: sigName(sig), PID: pid, Timeout: cfg.StopTimeout})
			// STOPPING=1 before the grace period: systemctl status shows the unit deactivating,
			// not running, while t3 gets --stop-timeout to exit (sd_notify(3)).
			hs.notifier.Stopping()
			r := child.Stop(cfg.StopTimeout)
			if r.Escalated {
				ev.emit(StopEscalatedEvent{PID: pid, Timeout: cfg.StopTimeout})
			}
			if r.KillErr != nil {
				ev.emit(InternalErrorEvent{Err: fmt.Errorf("killing the workload: %w", r.KillErr)})
			}
			ev.emit(StoppedEvent{ExitInfo: exitOf(pid, r.Exit), Took: r.Took})
			return exitStatusFor(r.Exit, true)
		case sig := <-sigs.Reload:
			// Not forwarded: Node's default action for SIGHUP is to terminate, and T3 has no
			// handler for it, so a token re-read would kill the server and every agent with it.
			ev.emit(SignalEvent{Signal: sigName(sig), PID: pid})
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
			hs.notifier.Status(hs.status())
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
				hs.notifier.Stopping()
				r := child.Stop(cfg.StopTimeout)
				ev.emit(StoppedEvent{ExitInfo: exitOf(pid, r.Exit), Took: r.Took, Unresponsive: true})
				return exitUnresponsive
			}
		case r := <-renewals:
			if r.Err != nil {
				hs.saveState(func(s *supervisorState) { s.VaultRenewFailures++ })
				ev.emit(VaultRenewFailedEvent{Err: r.Err})
			} else {
				ev.emit(VaultRenewedEvent{TTL: r.TTL})
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

// setupCgroup applies the cgroup plan and the shims to tree, and opens server/ for the child.
func setupCgroup(tree *cgroup.Tree, cp cgroupPlan, limits cgroup.Limits, ev *events) (*os.File, error) {
	warnings, err := tree.Apply(cp.Steps, os.Getpid())
	for _, w := range warnings {
		ev.emit(CgroupWarningEvent{Cgroup: tree.Dir("."), Err: w})
	}
	if err != nil {
		ev.emit(CgroupFailedEvent{Cgroup: tree.Dir("."), ExitCode: exitCgroup, Err: fmt.Errorf("setting up the cgroup subtree: %w", err)})
		return nil, err
	}
	if err := makeShims(cp.ShimDir, cp.Shims); err != nil {
		// Agents still get placed by the watch of server/; only the early placement is lost.
		ev.emit(CgroupWarningEvent{ShimDir: cp.ShimDir, Err: fmt.Errorf("agent shims: %w", err)})
	}
	dir, err := tree.OpenServer()
	if err != nil {
		ev.emit(CgroupFailedEvent{Cgroup: tree.Dir("."), Err: err})
		return nil, err
	}
	ev.emit(CgroupReadyEvent{Cgroup: tree.Dir("."), MemoryMax: limits.MemoryMax, MemoryHigh: limits.MemoryHigh})
	return dir, nil
}

// teardownCgroup kills whatever is left in the workload and removes the cgroups and shims we made.
func teardownCgroup(tree *cgroup.Tree, cp cgroupPlan, ev *events) {
	removeShims(cp.ShimDir, cp.Shims)
	if err := tree.KillAll(); err != nil {
		ev.emit(InternalErrorEvent{Err: fmt.Errorf("killing the workload: %w", err)})
	}
	if err := tree.Teardown(); err != nil {
		ev.emit(CgroupWarningEvent{Err: fmt.Errorf("removing the subtree: %w", err)})
	}
}

// emitCgroupEvent turns one event of the watch into one journald entry; serverPID is t3's.
func emitCgroupEvent(ev *events, e cgroup.Event, serverPID int) {
	switch e := e.(type) {
	case cgroup.AgentPlaced:
		ev.emit(AgentPlacedEvent{PID: e.PID, Leaf: e.Leaf, Via: e.Via, Comm: e.Comm})
	case cgroup.LeafRemoved:
		ev.emit(AgentLeafRemovedEvent{Leaf: e.Leaf})
	case cgroup.OOMKill:
		x := OOMKillEvent{Count: e.Count, SeenUsec: e.Seen.Microseconds(), HeldUsec: e.Held.Microseconds(), Leaf: e.Victim.Leaf}
		if e.Known {
			v := victimOf(e.Victim)
			x.Victim, x.Server = &v, e.Victim.PID == serverPID
		}
		ev.emit(x)
	case cgroup.PressureKill:
		ev.emit(PressureKillEvent{Signal: e.Signal, Stall: e.Stall, Leaf: e.Victim.Leaf, Victim: victimOf(e.Victim), Window: e.Window})
	case cgroup.Warning:
		ev.emit(CgroupWarningEvent{Err: e.Err})
	case cgroup.PressureUnavailable:
		ev.emit(PressureOffEvent{Err: e.Err})
	case cgroup.PressureMode:
		ev.emit(PressureModeEvent{Mode: e.Mode, Reason: e.Reason})
	case cgroup.MemoryReleased:
		ev.emit(MemoryReleasedEvent{After: e.After, Took: e.Took, Leaf: e.Victim.Leaf, Victim: victimOf(e.Victim)})
	case cgroup.StrayKilled:
		ev.emit(StrayKilledEvent{Cgroup: e.Cgroup, Victim: victimOf(e.Victim)})
	case cgroup.LimitRestored:
		ev.emit(LimitRestoredEvent{File: e.File, Found: e.Found, Restored: e.Restored})
	case cgroup.ServerFound:
		ev.emit(ServerFoundEvent{PID: e.PID, Comm: e.Comm, WrapperPID: e.Wrapper, WrapperComm: e.WrapperComm, Port: e.Port})
	}
}

func mib(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }

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

// applyEnvFile carries out the plan's env file action act at path, for the token the plan injects.
func applyEnvFile(path string, act creds.FilePlan, token creds.Secret, ev *events) error {
	switch act.Action {
	case creds.ActionWrite:
		changed, err := creds.WriteEnvFile(path, token)
		if err != nil {
			return err
		}
		if changed {
			ev.emit(EnvFileWrittenEvent{EnvFile: path, Fingerprint: token.Fingerprint()})
		}
	case creds.ActionRefuse:
		return act.Refusal
	case creds.ActionRemove:
		removed, err := creds.RemoveEnvFile(path)
		if err != nil {
			return err
		}
		if removed {
			ev.emit(EnvFileRemovedEvent{EnvFile: path})
		}
	}
	return nil
}
