package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"t3-supervise/internal/procstat"
)

// runTool is the balloon: a tool (an `rg` spawned by an agent) that grows to --limit bytes of
// resident anonymous memory at --rate bytes per second, then sleeps until killed.
func runTool(name string, args []string) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	comm := fs.String("comm", "", "process name to take (1..15 bytes); default: the one exec gave")
	rateArg := fs.String("rate", "64M", "bytes per second")
	limitArg := fs.String("limit", "0", "bytes to reach, then hold (0: grow until killed)")
	if err := fs.Parse(args); err != nil {
		return 2 // flag already printed why
	}
	rate, err := parseSize(*rateArg)
	if err == nil && rate == 0 {
		err = fmt.Errorf("rate 0: must be positive")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tool-standin: --rate: %v\n", err)
		return 2
	}
	limit, err := parseSize(*limitArg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tool-standin: --limit: %v\n", err)
		return 2
	}
	if *comm != "" {
		if err := setComm(*comm); err != nil {
			fmt.Fprintf(os.Stderr, "tool-standin: %v\n", err)
			return 2
		}
	}
	return balloonTool(os.Stderr, rate, limit)
}

func balloonTool(log io.Writer, rate, limit int64) int {
	me := fmt.Sprintf("tool-standin: pid=%d", os.Getpid())
	st, _ := procstat.Read(os.Getpid())
	fmt.Fprintf(log, "%s ppid=%d comm=%s rate=%s/s limit=%s\n", me, os.Getppid(), st.Comm, formatSize(rate), formatSize(limit))
	var mem anonMemory
	total, err := inflate(context.Background(), rate, limit, balloonTick, mem.grow)
	if err != nil {
		// A real tool dies when an allocation fails; the stand-in says why first.
		fmt.Fprintf(log, "%s: after %s: %v\n", me, formatSize(total), err)
		return 1
	}
	fmt.Fprintf(log, "%s holds %s; sleeping\n", me, formatSize(total))
	sleepForever()
	return 0
}

// runSleeper is what an agent leaves behind after setsid: it ignores SIGHUP as a daemon would
// (and with --stubborn SIGTERM and SIGINT too), so only SIGKILL, e.g. cgroup.kill, ends it.
func runSleeper(args []string) int {
	stubborn := false
	for _, a := range args {
		if a != "--stubborn" {
			fmt.Fprintf(os.Stderr, "sleeper-standin: unknown argument %q (want --stubborn)\n", a)
			return 2
		}
		stubborn = true
	}
	signal.Ignore(syscall.SIGHUP)
	if stubborn {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	fmt.Fprintf(os.Stderr, "sleeper-standin: pid=%d sid=%d ppid=%d stubborn=%t\n", os.Getpid(), mustSid(), os.Getppid(), stubborn)
	sleepForever()
	return 0
}

func mustSid() int {
	sid, err := unix.Getsid(0)
	if err != nil {
		return -1
	}
	return sid
}
