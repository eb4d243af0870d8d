package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// run plays the role argv asks for and returns the exit status.
func run(argv []string) int {
	// A write to a closed pipe must fail with EPIPE, not kill us: Node ignores SIGPIPE, and an
	// orphaned agent whose server died must survive writing its log line. Notify (unlike
	// signal.Ignore) leaves the disposition at default in the children we exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	role, name, args, err := pickRole(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "standin: %v\n", err)
		return 2
	}
	switch role {
	case roleServer:
		return runServer(args)
	case roleAgent:
		return runAgent(name)
	case roleSleeper:
		return runSleeper(args)
	default:
		return runTool(name, args)
	}
}

// exitStatus is the conventional status for a failure: 2 for a usage error, 1 for the rest.
func exitStatus(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// sleepForever blocks the calling goroutine until the process is killed. A pending timer keeps
// the runtime from declaring a deadlock when nothing else runs.
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}
