// Command standin is a test-only stand-in for T3 Code, faithful to what t3-supervise needs of
// it: `t3 serve` is an HTTP server that spawns coding agents (`claude`) as child processes, and
// the agents spawn tools (`rg`, ...) — one of which balloons in memory.
//
// One binary, called by the name it was invoked under (symlinks) or by its first argument:
//
//	t3 serve --host H --port P --base-dir D   the server (standin t3 serve ...)
//	claude                                    an agent (also codex)
//	standin tool COMM RATE LIMIT              a tool that allocates RATE bytes/s up to LIMIT (0: forever)
//	standin sleeper                           a process that only sleeps (setsid'd grandchildren)
//
// The server answers GET / and has a control API on the same listener (tests run on loopback):
//
//	POST /_standin/agents?n=8&abs=2   spawn n agents: n-abs via `claude` on PATH (looked up at each
//	                                  spawn: a supervisor puts its shim first), abs by the absolute
//	                                  path in T3_STANDIN_CLAUDE (SDKs spawn by absolute path)
//	GET  /_standin/agents             the agents and their tools, JSON
//	POST /_standin/balloon?agent=ID&rate=64M&limit=0&comm=rg   agent ID spawns a ballooning tool; its pid
//	POST /_standin/balloon-self?rate=64M                       the server itself balloons
//	POST /_standin/spawn-setsid?agent=ID                       agent ID leaves a setsid'd sleeper
//	POST /_standin/hang | /_standin/unhang   GET / stops answering (port open) | answers again
//	POST /_standin/exit?code=N               the server exits
//
// Environment: T3_STANDIN_AGENTS=N (+ T3_STANDIN_AGENTS_ABS=M) spawns agents at start;
// T3_STANDIN_READY_DELAY=5s listens only after that delay. SIGTERM/SIGINT: exit 0 (agents are the
// supervisor's business); SIGHUP: a line on stdout.
//
// It never prints a token: only whether CLAUDE_CODE_OAUTH_TOKEN is set and its fingerprint.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "standin" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "t3":
		os.Exit(server(args))
	case "claude", "codex":
		os.Exit(agent(name))
	case "tool":
		os.Exit(tool(args))
	case "sleeper":
		select {}
	}
	fmt.Fprintf(os.Stderr, "standin: unknown role %q (want t3, claude, codex, tool or sleeper)\n", name)
	os.Exit(2)
}

// tokenNote says whether the token is set, by fingerprint only.
func tokenNote() string {
	v, ok := os.LookupEnv("CLAUDE_CODE_OAUTH_TOKEN")
	if !ok {
		return "CLAUDE_CODE_OAUTH_TOKEN=unset"
	}
	sum := sha256.Sum256([]byte(v))
	return "CLAUDE_CODE_OAUTH_TOKEN=set sha256:" + hex.EncodeToString(sum[:6])
}

// envKeys lists the environment's names, with values only for a few harmless ones.
func envKeys() string {
	show := map[string]bool{"T3_PORT": true, "HOME": true, "USER": true, "PATH": true, "NODE_ENV": true}
	var out []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if show[k] {
			out = append(out, k+"="+v)
		} else {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return "[" + strings.Join(out, " ") + "]"
}
