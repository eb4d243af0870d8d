package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// agent is a `claude` stand-in: it idles, and on a line from its parent spawns a tool. Like a
// real agent session it outlives its parent's pipe: when t3 dies the agent keeps running, and it
// is the supervisor's job to clean up.
func agent(name string) int {
	fmt.Fprintf(os.Stderr, "%s-standin: pid=%d ppid=%d PATH=%s %s\n", name, os.Getpid(), os.Getppid(), os.Getenv("PATH"), tokenNote())
	self, err := os.Executable()
	if err != nil {
		return 1
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var cmd *exec.Cmd
		switch f[0] {
		case "tool":
			if len(f) != 4 {
				fmt.Println("error 0")
				continue
			}
			cmd = exec.Command(self, "tool", f[1], f[2], f[3])
			cmd.Args[0] = "standin"
		case "setsid":
			cmd = exec.Command(self, "sleeper")
			cmd.Args[0] = "standin"
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		default:
			fmt.Println("error 0")
			continue
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Println("error 0")
			continue
		}
		go cmd.Wait()
		fmt.Printf("%s %d\n", f[0], cmd.Process.Pid)
	}
	select {}
}

// tool allocates memory at a rate, touching every page so it is really resident, like the
// production balloon (an `rg` spawned by an agent). Its comm is set as asked: production
// balloons showed comm like "rg" or a version string "2.1.205".
func tool(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: standin tool COMM RATE LIMIT")
		return 2
	}
	if p, err := unix.BytePtrFromString(args[0]); err == nil {
		// PR_SET_NAME takes at most 16 bytes with the NUL; the kernel truncates.
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0)
		runtime.KeepAlive(p)
	}
	rate, err := parseSize(args[1])
	if err != nil || rate <= 0 {
		fmt.Fprintf(os.Stderr, "tool: rate %q: %v\n", args[1], err)
		return 2
	}
	limit, err := parseSize(args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "tool: limit %q: %v\n", args[2], err)
		return 2
	}
	var held [][]byte
	allocate(rate, limit, func(b []byte) { held = append(held, b) })
	select {}
}

// allocate adds rate bytes per second, in chunks every 50 ms, until limit (0: forever).
func allocate(rate, limit int64, keep func([]byte)) {
	chunk := rate / 20
	if chunk < 4096 {
		chunk = 4096
	}
	var total int64
	for limit == 0 || total < limit {
		n := chunk
		if limit > 0 && total+n > limit {
			n = limit - total
		}
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep(b)
		total += n
		time.Sleep(50 * time.Millisecond)
	}
}

// parseSize reads 64M, 1G, 512K, or bytes.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want bytes or a number with K, M or G", s)
	}
	return n * mult, nil
}
