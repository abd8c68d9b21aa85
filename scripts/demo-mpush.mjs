// The demo against the real MPUSH 0.8.0 (`./scripts/demo.sh --mpush`): ZooKeeper, Redis, MPUSH
// and a PushApi on MPUSH's own PushSender, started as the interop suite starts them
// (tests/real-mpush/stacks.mjs), with mpush-proxy in front serving the same console.
//
//   node scripts/demo-mpush.mjs        PORT (default 8080), MPUSH_PROXY_BIN (default target/release)
//
// Besides the stack it runs, on 127.0.0.1: an echo service that MPUSH's HTTP proxy reaches as
// http://echo.demo/ (mp.http.dns-mapping), so the console's tunnel card works, and a small
// forwarder that lets the console's "Send push" call the PushApi (which sends no CORS headers).
// The console gets its settings from demo-config.json in a copy of www/ the proxy serves.
// Ctrl-C (or SIGTERM) stops everything it started; so does the end of this process.

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRealMpush, testKeyPair } from "../tests/real-mpush/stacks.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** The heartbeat MPUSH is configured with (min = max), so the console shows a few per minute. */
const HEARTBEAT_MS = 20000;
const ECHO_HOST = "echo.demo";

function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server.address().port));
  });
}

function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > limit) req.destroy(new Error("body too large"));
      else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Answers every request with what it received, as JSON (the target of the HTTP tunnel). */
async function startEcho() {
  const server = http.createServer(async (req, res) => {
    const body = (await readBody(req)).toString("utf8");
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({
      method: req.method,
      path: req.url,
      headers: req.headers,
      body,
      servedBy: "demo echo service, reached through MPUSH's HTTP proxy",
    }, null, 2));
  });
  return { server, port: await listen(server) };
}

/**
 * POST /push forwarded to the PushApi, with CORS for the console's origins only (the browser
 * page is on the proxy's port, the PushApi on another).
 */
async function startPushForwarder(pushApiUrl, origins) {
  const server = http.createServer(async (req, res) => {
    const origin = req.headers.origin;
    if (origin && origins.includes(origin)) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-allow-headers", "content-type");
      res.setHeader("access-control-allow-methods", "POST");
      res.setHeader("vary", "origin");
    }
    if (req.method === "OPTIONS") return res.writeHead(204).end();
    if (req.method !== "POST" || req.url !== "/push") return res.writeHead(404).end();
    try {
      const body = await readBody(req);
      const up = await fetch(`${pushApiUrl}/push`, { method: "POST", headers: { "content-type": "application/json" }, body });
      res.writeHead(up.status, { "content-type": up.headers.get("content-type") || "application/json" });
      res.end(Buffer.from(await up.arrayBuffer()));
    } catch (e) {
      res.writeHead(502, { "content-type": "application/json" }).end(JSON.stringify({ error: e.message }));
    }
  });
  return { server, port: await listen(server) };
}

async function waitHttp(url, proc, output, ms = 20000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`mpush-proxy exited with ${proc.exitCode}:\n${output()}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up:\n${output()}`);
}

/**
 * Starts the whole demo. Returns `{ consoleUrl, wsUrl, pushApiUrl, pushCommand(userId),
 * mpush, stop() }`; `stop()` ends everything it started.
 */
export async function startMpushDemo({
  port = 8080,
  proxyBin = process.env.MPUSH_PROXY_BIN || path.join(ROOT, "target/release/mpush-proxy"),
  log = () => {},
} = {}) {
  if (!fs.existsSync(proxyBin)) throw new Error(`${proxyBin} not found (cargo build -p mpush-proxy, or set MPUSH_PROXY_BIN)`);
  if (!fs.existsSync(path.join(ROOT, "www/vendor/mpush-client-wasm/pkg/index.js"))) {
    throw new Error("www/vendor is empty: run scripts/build-wasm.sh and scripts/vendor-www.sh (demo.sh does)");
  }
  const t0 = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mpush-demo-"));
  const started = [];
  let proxy = null;
  let proxyExited = null;
  const stop = async () => {
    if (proxy && proxy.exitCode === null) {
      proxy.kill("SIGTERM");
      await Promise.race([proxyExited, new Promise((r) => setTimeout(r, 3000))]);
      if (proxy.exitCode === null) proxy.kill("SIGKILL");
    }
    for (const s of started.reverse()) await s();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const echo = await startEcho();
    started.push(() => new Promise((r) => echo.server.close(r)));
    const mpush = await startRealMpush({
      keys: testKeyPair(),
      minHeartbeat: HEARTBEAT_MS,
      maxHeartbeat: HEARTBEAT_MS,
      dnsMapping: { [ECHO_HOST]: `127.0.0.1:${echo.port}` },
      log,
    });
    started.push(() => mpush.stop());
    const base = `http://127.0.0.1:${port}`;
    const forwarder = await startPushForwarder(mpush.pushApiUrl, [base, `http://localhost:${port}`]);
    started.push(() => new Promise((r) => forwarder.server.close(r)));

    // The console, as in embedded mode, plus the settings it reads from demo-config.json.
    const www = path.join(dir, "www");
    fs.cpSync(path.join(ROOT, "www"), www, { recursive: true, dereference: true });
    fs.writeFileSync(path.join(www, "demo-config.json"), JSON.stringify({
      publicKey: mpush.publicKey,
      wsPath: "/mpush",
      pushApi: `http://127.0.0.1:${forwarder.port}/push`,
      pushVia: "MPUSH's PushSender",
      echoUrl: `http://${ECHO_HOST}/demo/echo`,
      maxHeartbeat: HEARTBEAT_MS,
      server: `server: MPUSH 0.8.0 at 127.0.0.1:${mpush.connectPort}`,
    }, null, 2));

    let output = "";
    proxy = spawn(proxyBin, [
      "--listen", `127.0.0.1:${port}`,
      "--www", www,
      "--upstream", `${mpush.connectHost}:${mpush.connectPort}`,
      "--http-proxy", "forward",
      "--drain-timeout", "1s",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    proxyExited = new Promise((r) => proxy.once("exit", r));
    const keep = (d) => { output = (output + d.toString()).slice(-8000); };
    proxy.stdout.on("data", keep);
    proxy.stderr.on("data", keep);
    await waitHttp(`${base}/readyz`, proxy, () => output);

    const pushApiUrl = `${mpush.pushApiUrl}/push`;
    return {
      consoleUrl: `${base}/`,
      wsUrl: `ws://127.0.0.1:${port}/mpush`,
      pushApiUrl,
      mpush,
      readyMs: Date.now() - t0,
      pushCommand: (userId = "demo-user", content = "hello from PushSender") =>
        `curl -s ${pushApiUrl} -H 'content-type: application/json' \\\n` +
        `  -d '${JSON.stringify({ userId, content, ack: "auto", timeoutMs: 3000 })}'`,
      proxyOutput: () => output,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function main() {
  const port = Number(process.env.PORT || 8080);
  console.log("demo --mpush: starting ZooKeeper, Redis, MPUSH 0.8.0, the PushApi and mpush-proxy …");
  const demo = await startMpushDemo({ port });
  let stopping = false;
  const shutdown = async (sig) => {
    if (stopping) return;
    stopping = true;
    console.log(`\ndemo --mpush: ${sig}: stopping mpush-proxy, the PushApi, MPUSH, Redis and ZooKeeper`);
    await demo.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  const m = demo.mpush;
  console.log(`
demo --mpush: ready in ${(demo.readyMs / 1000).toFixed(1)} s: the real MPUSH 0.8.0 behind mpush-proxy
  console     ${demo.consoleUrl}
  websocket   ${demo.wsUrl}  ->  MPUSH 127.0.0.1:${m.connectPort} (ZooKeeper ${m.zookeeper}, Redis ${m.redis})
  PushSender  ${demo.pushApiUrl}   (the push API JSON on MPUSH's own PushSender)
  public key  ${m.publicKey.slice(0, 40)}...

Open the console (it binds "demo-user"), then push through PushSender:

${demo.pushCommand()}

Ctrl-C stops everything this started.
`);
}

if (import.meta.url === pathToFileURL(process.argv[1] || "").href) {
  main().catch((e) => {
    console.error(`demo --mpush: ${e.stack || e.message}`);
    process.exit(1);
  });
}
