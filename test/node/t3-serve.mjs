#!/usr/bin/env node
// A stand-in for T3 Code's `t3 serve` that is a real Node process, for the signal behaviour
// t3-supervise must live with (see ../../../shared/DESIGN.md, "Node and T3 Code"). Zero
// dependencies; Node 18 or later.
//
//   t3-serve.mjs serve --port P [--host H] [any other t3 flag, ignored]
//
// Like T3's apps/server/src/bin.ts under Effect's NodeRuntime.runMain:
//   - SIGTERM and SIGINT close the listener and exit 0 (runMain's interrupt is a clean exit);
//   - no SIGHUP handler: Node's default action terminates the process (exit by signal 1, 129);
//   - SIGPIPE is ignored, as Node always does.
// GET / answers 200. Without --host it listens on every interface, as Node does. It prints
// "t3-node: pid=N listening on ADDR:PORT" on stdout once it listens, and ignores errors writing
// to a closed stdout or stderr.
import http from "node:http";

for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});

const args = process.argv.slice(2);
if (args[0] !== "serve") {
  console.error(`t3-serve.mjs: want "serve", got ${JSON.stringify(args[0])}`);
  process.exit(2);
}
let host;
let port;
for (let i = 1; i < args.length; i++) {
  const [name, inline] = args[i].split(/=(.*)/s, 2);
  const value = inline ?? args[i + 1];
  if (name === "--port" || name === "--host") {
    if (inline === undefined) i++;
    if (name === "--port") port = Number(value);
    else host = value;
  }
}
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`t3-serve.mjs: --port: want 1-65535`);
  process.exit(2);
}

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><title>T3 Code</title>\n");
});
server.on("error", (err) => {
  console.error(`t3-serve.mjs: ${err.message}`);
  process.exit(1);
});
server.listen({ port, host }, () => {
  const a = server.address();
  console.log(`t3-node: pid=${process.pid} listening on ${a.address}:${a.port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
