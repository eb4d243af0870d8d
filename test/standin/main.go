// Command standin is a test-only stand-in for T3 Code, faithful in what t3-supervise depends on:
// `t3 serve` is an HTTP server that spawns coding agents (`claude`) as child processes, and the
// agents spawn tools (`rg`, `ugrep`, ...), one of which balloons in memory. The real t3 cannot be
// installed where the tests run; this one binary plays every part. Linux only.
//
// # Roles (multi-call)
//
// The role comes from the first argument when it names one, else from the name the binary was
// called by (a symlink), else it is a tool:
//
//	t3 serve --port P [--host H] [--base-dir D] ...   the server (also: standin t3 serve ...)
//	claude [ANY ARGS]                                 an agent (also codex; standin claude)
//	standin tool [--comm C] [--rate R] [--limit L]    a ballooning tool
//	rg [--comm C] [--rate R] [--limit L] [ARGS]       any other name: a ballooning tool
//	sleeper [--stubborn]                              a process that only sleeps
//
// Exit status: 0 on a requested stop (SIGTERM, SIGINT), N after POST /_standin/exit?code=N, 2 for
// a usage error, 1 for any other failure.
//
// # t3 serve
//
// Flags are those of the real `t3 serve` (pingdotgg/t3code apps/server/src/cli.ts): --host,
// --port, --base-dir, --mode, --dev-url, --no-browser, --bootstrap-fd,
// --auto-bootstrap-project-from-cwd, --log-websocket-events (--log-ws-events), --log-level, as
// `--flag value` or `--flag=value`. --port is required here and must be 1..65535 (an empty
// `--port ${T3_PORT}` fails); an unknown flag or a stray argument is a usage error. Without
// --host it listens on every interface, as Node does. --base-dir is created if missing.
//
// At start it prints one report line on stdout, before anything else:
//
//	t3-standin: pid=N ppid=N argv=["t3" "serve" ...] env_keys=[HOME PATH ...] HOME=... NODE_ENV=...
//	    PATH=... T3_PORT=... USER=... CLAUDE_CODE_OAUTH_TOKEN=set sha256:0123456789ab
//
// (one line): the names of all variables, the values of HOME, NODE_ENV, PATH, T3_PORT and USER
// only, and of the token whether it is set plus the first 12 hex digits of its SHA-256
// (`CLAUDE_CODE_OAUTH_TOKEN=unset` otherwise). When it listens it prints
// `t3-standin: listening on http://ADDR`. Other events are logged as `t3-standin: ...` lines.
//
// `GET /` answers 200 with a small HTML page. The control API shares the listener (tests run on
// loopback); it answers JSON, and errors as {"error": "..."} with status 400 (bad parameter),
// 404 (no such agent), 409 (agent dead, listener already dropped) or 500 (a spawn failed):
//
//	GET  /_standin/                  {pid, listen, hanging, ballast_bytes, agents}
//	POST /_standin/agents?n=8&abs=2  spawn n agents (default 1): the first n-abs by running
//	                                 `claude` looked up on PATH at each spawn (a supervisor
//	                                 prepends its shim directory), argv[0] "claude"; the last abs
//	                                 by the absolute path in T3_STANDIN_CLAUDE, argv[0] that path
//	                                 (an SDK spawns by absolute path). Answers the new agents.
//	     ...&arg=-p&arg=PROMPT&arg=--allowedTools&arg=Bash
//	                                 each arg= is one argument after argv[0]: the agent is a real
//	                                 CLI run for one turn (the real claude where PATH finds it),
//	                                 not this stand-in. Its stdin is /dev/null (`claude -p` waits
//	                                 for more prompt on any other stdin), its stdout the
//	                                 server's stderr, and it takes no commands (balloon and
//	                                 spawn-setsid on it fail).
//	GET  /_standin/agents            every agent ever spawned, in id order:
//	                                 [{id, pid, via: "path"|"absolute", path, args, alive, exit,
//	                                   tools: [{pid, comm, rate, limit, alive}],
//	                                   sleepers: [{pid, alive}]}]
//	POST /_standin/balloon?agent=ID&rate=64M&limit=0&comm=rg
//	                                 agent ID (default: the first live one) spawns a tool that
//	                                 allocates rate bytes/s up to limit (0: until killed), every
//	                                 page touched, then sleeps. comm is 1..15 bytes, no blanks.
//	                                 Answers {pid, agent, comm, rate, limit,
//	                                 started_monotonic_usec}: the last when the tool was spawned,
//	                                 on CLOCK_MONOTONIC (journald's __MONOTONIC_TIMESTAMP).
//	POST /_standin/balloon-self?rate=64M&limit=0
//	                                 the server itself allocates likewise. Answers {pid, rate,
//	                                 limit, started_monotonic_usec}.
//	POST /_standin/hang              GET / accepts and reads requests but never answers (the port
//	                                 stays open: a livelocked server); the control API still answers
//	POST /_standin/unhang            GET / answers again, held requests included
//	POST /_standin/drop-listener?for=30s
//	                                 close the listening socket (the server silently dropping its
//	                                 listener) and listen again after `for` (0 or absent: never);
//	                                 the control API is unreachable meanwhile
//	POST /_standin/spawn-setsid?agent=ID&stubborn=1
//	                                 agent ID (default: the first live one) spawns a sleeper that
//	                                 calls setsid(2) and outlives it; it ignores SIGHUP, and with
//	                                 stubborn=1 also SIGTERM and SIGINT. Answers {pid, agent}.
//	POST /_standin/exit?code=N       answer, then exit with status N (default 0)
//
// Sizes are bytes or a number with K, M, G or T (powers of 1024): 4096, 512K, 64M, 1.5G.
//
// Environment of t3 serve:
//
//	T3_STANDIN_CLAUDE=/abs/claude  the absolute agent path for abs= spawns
//	T3_STANDIN_AGENTS=N            spawn N agents at start, after listening, before the
//	                               "listening" line
//	T3_STANDIN_AGENTS_ABS=M        of those, M by absolute path
//	T3_STANDIN_READY_DELAY=5s      listen only after this delay (a slow start)
//	T3_STANDIN_SIGHUP=die          no SIGHUP handler: a SIGHUP kills it (status 129), as it kills
//	                               a Node server without one, T3's (default: log, below)
//
// Invalid values of these are usage errors. Signals: SIGTERM or SIGINT closes the listener and
// exits 0 without touching the agents (cleaning them up is the supervisor's job), as T3 under
// Effect's NodeRuntime.runMain does; SIGHUP prints `t3-standin: SIGHUP` and changes nothing.
// Like Node, it survives writes to a closed pipe (SIGPIPE). Agents inherit its whole environment and its process group, as with Node's
// child_process.spawn; their stderr is the server's stderr.
//
// # claude (agent)
//
// Accepts any arguments (the SDK passes many). Prints on stderr one line:
//
//	claude-standin: pid=N ppid=N argv0=claude exe=/path PATH=... cgroup=/... oom_score_adj=N
//	    CLAUDE_CODE_OAUTH_TOKEN=set sha256:0123456789ab
//
// then reads commands from stdin, one a line, and answers each on stdout with `ok PID` or
// `err MESSAGE`:
//
//	ping                     ok <its own pid>
//	tool COMM RATE LIMIT     spawn a ballooning tool: this binary re-executed with argv
//	                         [COMM tool --comm COMM --rate RATE --limit LIMIT] (Claude Code runs
//	                         its bundled ripgrep by re-executing itself, which is how a balloon
//	                         can carry comm "2.1.205", the version-named binary); ok <tool pid>
//	setsid [stubborn]        spawn a setsid'd sleeper; ok <sleeper pid>
//
// Tools and sleepers write to the agent's stderr; the agent reaps them and logs their exit.
// When stdin closes (its server died) the agent logs it and keeps running until signalled, as
// SDK-spawned claude processes do (anthropics/claude-agent-sdk-typescript#142: orphaned agents
// accumulate after their parent dies); T3_STANDIN_AGENT_EXIT_ON_EOF=1 makes it exit 0 instead.
// It does not kill its tools when it dies. SIGTERM and SIGINT kill it (Go's default).
//
// # tool
//
// --comm sets the process name (prctl PR_SET_NAME, what /proc/PID/comm, ps and the OOM killer
// show); without it the name is the one exec gave. It maps anonymous memory at --rate (default
// 64M) bytes per second, writing every page so it is resident (RssAnon), up to --limit (default
// 0: until killed), then sleeps until killed. Positional arguments are ignored (`rg pattern`);
// an unknown flag is a usage error. An allocation failure (mmap) exits 1, as a real tool dies. It
// logs `tool-standin: ...` lines on stderr at start and when the limit is reached.
//
// # sleeper
//
// Logs one line with its pid, sid and ppid, ignores SIGHUP (and with --stubborn SIGTERM and
// SIGINT), and sleeps until killed.
//
// It never prints a token: only whether CLAUDE_CODE_OAUTH_TOKEN is set and its fingerprint.
package main

import (
	"os"
	"runtime"
)

// PR_SET_NAME renames the calling thread, and /proc/PID/comm is the main thread's name: keep
// the main goroutine on the main thread (runtime.LockOSThread in init guarantees it) so the
// tool can rename itself from main.
func init() { runtime.LockOSThread() }

func main() {
	os.Exit(run(os.Args))
}
