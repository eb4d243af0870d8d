#!/usr/bin/env node
// t3-sdk-standin: a stand-in for T3 Code's `t3 serve` that spawns its agents exactly the way T3
// does, through the real Claude Agent SDK (pinned in package.json / package-lock.json), so that
// t3-supervise's tests see the real `claude` processes, environment and probes T3 produces.
// test/standin (Go) plays t3 everywhere else; this one plays it where the agent must be real.
//
// What it copies from T3 (pingdotgg/t3code apps/server/src/provider/): query() gets
// pathToClaudeCodeExecutable = the binary-path setting (default `claude`, so the claude first on
// this server's PATH runs: a supervisor's shim) and env = this server's live process.env
// (ClaudeExecutable.ts, ClaudeHome.ts, ProviderInstanceEnvironment.ts); a session stays open, one
// claude child per session, idle or not (ClaudeAdapter); and every 5 minutes, and once at start,
// the account probe of ClaudeProvider.ts / ClaudeDriver.ts: `claude --version`, then a throwaway
// SDK session whose prompt never yields (so it never calls the API) that reads the account from
// the initialization result, given up after 8 s.
//
// Usage: node server.mjs serve --port P [--host H] [--base-dir D] [other t3 serve flags]
//
// Environment (T3_* so that a supervisor's default allowlist passes it on):
//   T3_SDK_BINARY_PATH=claude     T3's claude binary-path setting
//   T3_SDK_PROBE_INTERVAL=5m      the account probe's interval (ms, or 500ms/30s/5m; 0: never)
//
// HTTP (one listener; tests run on loopback), JSON unless said otherwise, errors {"error": "..."}:
//   GET  /                              200, a small HTML page (what a health probe asks)
//   GET  /_sdk/                         {pid, binary_path, sessions, probes}
//   POST /_sdk/sessions                 {prompt, allowed_tools?=["Bash"], cwd?} -> 201 {id}
//   GET  /_sdk/sessions[/ID]            every session (or one): {id, state, prompts,
//                                       messages, tool_uses, tool_results, results, error}
//   POST /_sdk/sessions/ID/prompt       {prompt}: the next turn of an open session
//   POST /_sdk/sessions/ID/close        end the session's input: its claude exits
//   POST /_sdk/probe                    run one account probe now; answers its record
//   GET  /_sdk/probes                   every probe: {n, version, account, error, took_ms}
//
// A session's state is starting, running (a turn is under way), idle (open, between turns),
// closed or failed. Signals as T3's bin.ts under Effect's NodeRuntime.runMain: SIGTERM and SIGINT
// end it with status 0 (what an outside SIGTERM does to the real t3); there is no SIGHUP
// handler, so SIGHUP kills it, as it kills any Node program. The agents are left to whoever
// supervises it. It never prints a token: whether CLAUDE_CODE_OAUTH_TOKEN is set, and a
// fingerprint.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import http from "node:http";

import { query } from "@anthropic-ai/claude-agent-sdk";

const PROBE_TIMEOUT_MS = 8_000; // ClaudeProvider.ts CAPABILITIES_PROBE_TIMEOUT_MS
const VERSION_TIMEOUT_MS = 4_000;

function log(line) {
  process.stdout.write(`t3-sdk-standin: ${line}\n`);
}

function usage(msg) {
  process.stderr.write(`t3 serve: ${msg}\nusage: node server.mjs serve --port P [--host H] [--base-dir D]\n`);
  process.exit(2);
}

// parseServe reads `serve` and its flags: --port is required (an empty `--port ${T3_PORT}`
// fails, as with the real t3); the other flags of the real `t3 serve` are accepted.
function parseServe(argv) {
  if (argv[0] !== "serve") usage(`want the serve command, got ${JSON.stringify(argv[0] ?? "")}`);
  const valued = new Set(["--port", "--host", "--base-dir", "--mode", "--dev-url", "--bootstrap-fd", "--log-level"]);
  const opts = {};
  for (let i = 1; i < argv.length; i++) {
    let [name, value] = argv[i].split(/=(.*)/s, 2);
    if (!name.startsWith("--")) usage(`unexpected argument ${JSON.stringify(argv[i])}`);
    if (valued.has(name) && value === undefined) value = argv[++i];
    opts[name.slice(2)] = value ?? true;
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) usage(`--port ${JSON.stringify(opts.port ?? "")}: want 1-65535`);
  return { port, host: opts.host, baseDir: opts["base-dir"] };
}

function parseDuration(s, name) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s);
  if (!m) usage(`${name}=${JSON.stringify(s)}: want a duration such as 500ms, 30s or 5m`);
  return Number(m[1]) * { ms: 1, s: 1_000, m: 60_000 }[m[2] ?? "ms"];
}

function fingerprint(v) {
  return v ? `set sha256:${createHash("sha256").update(v).digest("hex").slice(0, 12)}` : "unset";
}

const cfg = parseServe(process.argv.slice(2));
const binaryPath = process.env.T3_SDK_BINARY_PATH || "claude";
const probeInterval = parseDuration(process.env.T3_SDK_PROBE_INTERVAL ?? "5m", "T3_SDK_PROBE_INTERVAL");
if (cfg.baseDir) mkdirSync(cfg.baseDir, { recursive: true });

log(
  `pid=${process.pid} ppid=${process.ppid} node=${process.version} binary_path=${binaryPath} ` +
    `PATH=${process.env.PATH ?? ""} HOME=${process.env.HOME ?? ""} ` +
    `CLAUDE_CODE_OAUTH_TOKEN=${fingerprint(process.env.CLAUDE_CODE_OAUTH_TOKEN)}`,
);

// ---- sessions: one long-lived query() each, as T3's ClaudeAdapter keeps them ----------------

const sessions = new Map();
let nextSession = 1;

// inputQueue is a session's prompt stream: the SDK reads user messages from it while it is
// open; closing it ends the session (the SDK closes claude's stdin and claude exits).
function inputQueue() {
  const items = [];
  let wake = null;
  let closed = false;
  async function* gen() {
    for (;;) {
      while (items.length > 0) yield items.shift();
      if (closed) return;
      await new Promise((resolve) => (wake = resolve));
      wake = null;
    }
  }
  return {
    push(text) {
      items.push({ type: "user", message: { role: "user", content: text }, parent_tool_use_id: null, session_id: "" });
      wake?.();
    },
    close() {
      closed = true;
      wake?.();
    },
    iterable: gen(),
  };
}

function blocks(message) {
  return Array.isArray(message?.content) ? message.content : [];
}

function textOf(content) {
  if (typeof content === "string") return content;
  return (Array.isArray(content) ? content : []).filter((b) => b.type === "text").map((b) => b.text).join("\n");
}

function startSession({ prompt, allowed_tools: allowedTools = ["Bash"], cwd }) {
  if (typeof prompt !== "string" || prompt === "") throw new RangeError("prompt: want a non-empty string");
  const id = String(nextSession++);
  const input = inputQueue();
  const s = {
    id, state: "starting", prompts: [prompt], messages: [], tool_uses: [], tool_results: [], results: [], error: null,
    input,
  };
  sessions.set(id, s);
  const q = query({
    prompt: input.iterable,
    options: {
      pathToClaudeCodeExecutable: binaryPath,
      env: process.env,
      allowedTools,
      ...(cwd ? { cwd } : {}),
      stderr: (line) => process.stderr.write(`claude[${id}]: ${line}`),
    },
  });
  input.push(prompt);
  s.state = "running";
  (async () => {
    try {
      for await (const m of q) {
        s.messages.push(m.subtype ? `${m.type}/${m.subtype}` : m.type);
        if (m.type === "system" && m.subtype === "init") s.claude_session_id = m.session_id;
        for (const b of blocks(m.message)) {
          if (m.type === "assistant" && b.type === "tool_use") s.tool_uses.push({ id: b.id, name: b.name, command: b.input?.command });
          if (m.type === "user" && b.type === "tool_result") {
            s.tool_results.push({ tool_use_id: b.tool_use_id, content: textOf(b.content), is_error: Boolean(b.is_error) });
          }
        }
        if (m.type === "result") {
          s.results.push({ subtype: m.subtype, is_error: Boolean(m.is_error), result: m.result ?? null });
          if (s.state === "running") s.state = "idle";
        }
      }
      s.state = "closed";
    } catch (err) {
      s.state = "failed";
      s.error = String(err?.message ?? err);
    }
    log(`session ${id} ${s.state}${s.error ? `: ${s.error}` : ""}`);
  })();
  log(`session ${id} started`);
  return s;
}

function view(s) {
  const { input, ...rest } = s;
  return rest;
}

// ---- T3's account probe (ClaudeProvider.ts checkClaudeProviderStatus) -----------------------

const probes = [];

function versionOf() {
  return new Promise((resolve) => {
    const child = spawn(binaryPath, ["--version"], { env: process.env, stdio: ["ignore", "pipe", "ignore"], timeout: VERSION_TIMEOUT_MS });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("error", (err) => resolve({ error: String(err.message) }));
    child.on("close", (code, signal) => resolve(code === 0 ? { version: out.trim().split(/\s+/)[0] } : { error: `exit ${code ?? signal}` }));
  });
}

async function probe() {
  const rec = { n: probes.length + 1, started: new Date().toISOString(), version: null, account: null, error: null, took_ms: null };
  probes.push(rec);
  const t0 = Date.now();
  const v = await versionOf();
  rec.version = v.version ?? null;
  if (v.error) {
    rec.error = `${binaryPath} --version: ${v.error}`;
  } else {
    const abort = new AbortController();
    const aborted = new Promise((resolve) => abort.signal.addEventListener("abort", resolve, { once: true }));
    let timer;
    try {
      const q = query({
        // Never yields: only the initialization data is wanted, no prompt reaches the API.
        prompt: (async function* () {
          await aborted;
        })(),
        options: {
          persistSession: false,
          pathToClaudeCodeExecutable: binaryPath,
          abortController: abort,
          settingSources: ["user", "project", "local"],
          allowedTools: [],
          env: process.env,
          stderr: () => {},
        },
      });
      const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no initialization result in ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS)));
      const init = await Promise.race([q.initializationResult(), timeout]);
      const a = init.account ?? {};
      rec.account = { email: a.email ?? null, subscription_type: a.subscriptionType ?? null, token_source: a.tokenSource ?? null, api_key_source: a.apiKeySource ?? null };
    } catch (err) {
      rec.error = String(err?.message ?? err);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }
  rec.took_ms = Date.now() - t0;
  log(`probe ${rec.n}: version ${rec.version} token_source ${rec.account?.token_source ?? "-"}${rec.error ? ` error ${rec.error}` : ""} in ${rec.took_ms} ms`);
  return rec;
}

// ---- HTTP ------------------------------------------------------------------------------------

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function readJSON(req) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 1 << 20) throw new RangeError("body over 1 MiB");
  }
  return body ? JSON.parse(body) : {};
}

async function handle(req, res) {
  const url = new URL(req.url, "http://x");
  const p = url.pathname;
  const m = /^\/_sdk\/sessions\/([^/]+)(?:\/(prompt|close))?$/.exec(p);
  if (req.method === "GET" && p === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    return res.end("<!doctype html><title>T3 Code (t3-supervise SDK stand-in)</title>\n");
  }
  if (req.method === "GET" && p === "/_sdk/") {
    return send(res, 200, { pid: process.pid, binary_path: binaryPath, sessions: sessions.size, probes: probes.length });
  }
  if (p === "/_sdk/sessions" && req.method === "POST") return send(res, 201, { id: startSession(await readJSON(req)).id });
  if (p === "/_sdk/sessions" && req.method === "GET") return send(res, 200, [...sessions.values()].map(view));
  if (p === "/_sdk/probe" && req.method === "POST") return send(res, 200, await probe());
  if (p === "/_sdk/probes" && req.method === "GET") return send(res, 200, probes);
  if (m) {
    const s = sessions.get(m[1]);
    if (!s) return send(res, 404, { error: `no session ${m[1]}` });
    if (!m[2] && req.method === "GET") return send(res, 200, view(s));
    if (req.method === "POST" && m[2] === "prompt") {
      if (s.state === "closed" || s.state === "failed") return send(res, 409, { error: `session ${s.id} is ${s.state}` });
      const { prompt } = await readJSON(req);
      if (typeof prompt !== "string" || prompt === "") throw new RangeError("prompt: want a non-empty string");
      s.prompts.push(prompt);
      s.state = "running";
      s.input.push(prompt);
      return send(res, 202, view(s));
    }
    if (req.method === "POST" && m[2] === "close") {
      s.input.close();
      return send(res, 202, view(s));
    }
  }
  send(res, 404, { error: `no route ${req.method} ${p}` });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => send(res, err instanceof RangeError || err instanceof SyntaxError ? 400 : 500, { error: String(err?.message ?? err) }));
});
server.listen(cfg.port, cfg.host, () => {
  const a = server.address();
  log(`listening on http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
  if (probeInterval > 0) {
    probe();
    setInterval(probe, probeInterval).unref();
  }
});
server.on("error", (err) => {
  process.stderr.write(`t3 serve: ${err.message}\n`);
  process.exit(1);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    log(`${sig}: exiting 0; agents are left to the supervisor`);
    process.exit(0);
  });
}
