#!/usr/bin/env node
// The Java client SDK (com.github.mpusher:mpush-client-java:0.0.5) against the REAL MPUSH 0.8.0
// and against our mpush-gateway: every scenario runs JavaClientDriver once per server, and the
// gateway must show what MPUSH shows.
//
//   node tests/real-mpush/java-sdk.mjs [SCENARIO...]       (default: all)
//
// Per scenario and server it prints `PASS <server> java-sdk <scenario>` or FAIL with the
// difference, then `N passed, M failed`; the exit code is 1 when anything failed.
//   real-mpush passes when the driver finished and MPUSH showed what the scenario expects (the
//              expectations below are MPUSH 0.8.0's behaviour, checked against it);
//   gateway    passes when the driver finished and every observation equals real MPUSH's,
//              apart from the deliberate differences in TOLERATED (printed when they occur).
// JAVA_SDK_VERBOSE=1 prints every observation; MPUSH_KEEP_TMP=1 keeps logs and temp dirs.

import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pushRaces, startGateway, startRealMpush, testKeyPair } from "./stacks.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_CP = `${path.join(HERE, "target", "classes-client")}:${path.join(HERE, "target", "lib-client")}/*`;
const VERBOSE = !!process.env.JAVA_SDK_VERBOSE;
// Server heartbeat bounds: short, and wide enough to see the negotiation
// (negotiated = max(min, min(clientMax, max))).
const MIN_HEARTBEAT = 2000;
const MAX_HEARTBEAT = 3000;
const HTTP_HOST = "interop.test";
// Against the user's own MPUSH (MPUSH_EXISTING, see stacks.mjs) the suite's settings do not
// apply: scenarios that need them are skipped, and negotiated heartbeats are not compared.
const EXISTING = !!process.env.MPUSH_EXISTING;

// ------------------------------------------------------------------------------------------
// scenarios: what the driver does is in JavaClientDriver; `expect` is what MPUSH 0.8.0 shows,
// as an ordered subsequence of partial observations per client.

const ok = (cmd, data) => ({ event: "ok", cmd, code: 0, data });
const result = (request, ...results) => ({
  event: "push-result",
  request,
  response: { status: 200, body: { results: results.map(([userId, r, code]) => ({ userId, result: r, code })) } },
});
const pushed = (content, bizAck = false) => ({ event: "push", content, bizAck });
const http200 = (request) => ({ event: "http-response", request, status: 200 });

const SCENARIOS = [
  {
    name: "handshake",
    about: "handshake, negotiated heartbeat (client max 2500 within the server's 2000..3000), heartbeats echoed",
    needs: "the suite's heartbeat bounds",
    args: ["--max-heartbeat", "2500"],
    expect: {
      A: [
        { event: "connected" },
        { event: "handshake-sent" },
        { event: "handshake-ok", heartbeat: 2500, serverKeyLength: 16, expiresInMinutes: 1440 },
        { event: "heartbeats-echoed" },
        { event: "done" },
      ],
    },
  },
  {
    name: "repeat-handshake",
    about: "a second handshake on the same connection is refused (the SDK then stops itself)",
    // The SDK stops itself on that Error while the server may be closing: whether it reports
    // the disconnect, or even reconnects ("connected") before its stop lands, depends on which
    // of its threads comes first (seen in CI against both servers). Its "handshake-sent" is
    // logged after the write and raced the server's Error against mpush-gateway in CI: the
    // driver's "step" before the write stands for it.
    ignore: ["disconnected", "connected", "handshake-sent"],
    expect: {
      A: [
        { event: "handshake-ok" },
        { event: "step", do: "second handshake" },
        // MPUSH decrypts every encrypted packet with the connection's current cipher: the
        // RSA-encrypted second handshake does not decrypt under the session key, so its
        // "repeat handshake" check is never reached: DISPATCH_ERROR, and the connection is closed
        // (MessageDispatcher.onReceive)
        { event: "error", cmd: 2, code: 100, reason: "handle message error" },
        { event: "done" },
      ],
    },
  },
  {
    name: "bind",
    about: "bind, push, unbind (offline), bind again, bind another user (the SDK unbinds first)",
    expect: {
      A: [
        { event: "handshake-ok", heartbeat: MAX_HEARTBEAT },
        ok(5, "bind success"),
        pushed("to u1"),
        result("none: to u1", ["bind-u1-bind", "success", 1]),
        ok(6, "unbind success"),
        result("none: expect offline", ["bind-u1-bind", "offline", 3]),
        ok(5, "bind success"),
        { event: "step", do: "bind u2 (the SDK unbinds u1 first)" },
        // the Ok for the unbind and the one for the bind, compared sorted (see normalize)
        ok(5, "bind success"),
        ok(6, "unbind success"),
        result("none: expect offline", ["bind-u1-bind", "offline", 3]),
        pushed("to u2"),
        result("none: to u2", ["bind-u2-bind", "success", 1]),
        { event: "done" },
      ],
    },
  },
  {
    name: "push",
    about: "pushes with no/auto/biz ack (the driver acks biz), an unacked biz push, binary content, userIds",
    expect: {
      A: [
        pushed("no ack \u2713"),
        result("none: no ack \u2713", ["push-u-push", "success", 1]),
        pushed("auto ack \u2713"),
        { event: "ack-sent" },
        result("auto: auto ack \u2713", ["push-u-push", "success", 1]),
        pushed("biz ack \u2713", true),
        { event: "ack-sent" },
        result("biz: biz ack \u2713", ["push-u-push", "success", 1]),
        pushed("expect timeout", true),
        result("biz: expect timeout", ["push-u-push", "timeout", 4]),
        { event: "push", length: 300, content: null },
        result("binary auto", ["push-u-push", "success", 1]),
        pushed("many"),
        result("userIds", ["push-u-push", "success", 1], ["nobody-push", "offline", 3]),
        { event: "done" },
      ],
    },
  },
  {
    name: "close-before-ack",
    about: "a biz push the client receives and never acks: it closes its connection instead",
    expect: {
      A: [
        pushed("never acked", true),
        { event: "stopped" },
        // MPUSH keeps waiting for the ack after the connection closed; the pusher's own timer
        // ends it: timeout, after timeoutMs (AckTaskQueue / PushRequestBus)
        { ...result("biz, connection closed before the ack", ["cba-u-close-before-ack", "timeout", 4]), afterTimeout: true },
        { event: "done" },
      ],
    },
  },
  {
    name: "upstream",
    about: "client -> server pushes: the server acks AUTO_ACK ones; a BIZ_ACK one times out",
    expect: {
      A: [
        { event: "upstream-result", content: "up auto", result: "success" },
        { event: "upstream-result", content: "up biz", result: "timeout" },
        { event: "done" },
      ],
    },
  },
  {
    name: "http",
    about: "HTTP GET and POST through the server's HTTP proxy (mp.http.proxy), and an upstream 404",
    needs: "the suite's dns-mapping of interop.test",
    expect: {
      A: [
        http200("GET /echo"),
        http200("POST /echo/post"),
        { event: "http-response", request: "GET /status/404", status: 404 },
        { event: "done" },
      ],
    },
  },
  {
    name: "http-large",
    needs: "the suite's dns-mapping of interop.test",
    about: "HTTP bodies over 10 KB both ways (12 KB up, compressed by the SDK; 30 KB down, compressed by the server)",
    expect: {
      A: [
        http200("POST 12 KB"),
        { event: "http-response", request: "GET 30 KB", status: 200, length: 30000 },
        { event: "done" },
      ],
    },
  },
  {
    name: "fast-connect",
    about: "a restarted client (new JVM) fast connects with its persisted session, binds again, gets a push",
    // Client B's shutdown races its reader thread: it may or may not report the disconnect
    // before "done" (seen in CI against the gateway; the SDK, not the server, decides).
    ignore: ["disconnected"],
    expect: {
      A: [{ event: "handshake-ok" }, ok(5, "bind success"), { event: "stopped" }, { event: "done" }],
      B: [
        { event: "fast-connect-sent" },
        { event: "fast-connect-ok", heartbeat: MAX_HEARTBEAT },
        { event: "resumed", connectedBy: "fast-connect-ok" },
        ok(5, "bind success"),
        pushed("after resume"),
        { event: "done" },
      ],
    },
  },
  {
    name: "fast-connect-other-device",
    about: "a stored session used by another device id is refused; the SDK falls back to a handshake",
    expect: {
      B: [
        { event: "fast-connect-sent" },
        // MPUSH 0.8.0 sends no error code here (0), only the reason: FastConnectHandler
        { event: "error", cmd: 7, code: 0, reason: "invalid device" },
        { event: "handshake-sent" },
        { event: "handshake-ok" },
        { event: "resumed", connectedBy: "handshake-ok" },
        { event: "done" },
      ],
    },
  },
  {
    name: "kick",
    about: "a second client binding the same user (same client type) kicks the first; pushes go to the second",
    expect: {
      A: [
        ok(5, "bind success"),
        // the Kick names the kicked connection's own device
        { event: "kick", deviceId: "dev-kick-a-kick", userId: "kick-u-kick" },
        result("after kick", ["kick-u-kick", "success", 1]),
        { event: "done" },
      ],
      B: [ok(5, "bind success"), pushed("after kick"), { event: "done" }],
    },
  },
  {
    name: "fast-connect-after-restart",
    about: "the SERVER restarts between two runs of a client: fast connect with the stored session",
    needs: "a server the suite can restart",
    // Client A's stop races the server going down: it may report the disconnect before "done".
    ignore: ["disconnected"],
    // session-save, then restartServer(), then session-resume (see run below)
    steps: [
      { driver: "session-save", args: ["--device", "dev-restart", "--user", "restart-u"], client: "A" },
      { restart: true },
      { driver: "session-resume", args: ["--device", "dev-restart", "--user", "restart-u"], client: "B" },
    ],
    expect: {
      A: [{ event: "handshake-ok" }, ok(5, "bind success"), { event: "done" }],
      B: [
        { event: "fast-connect-sent" },
        // MPUSH keeps resumable sessions in Redis (mp:rs:*): they survive its restart
        { event: "fast-connect-ok" },
        { event: "resumed", connectedBy: "fast-connect-ok" },
        ok(5, "bind success"),
        pushed("after resume"),
        { event: "done" },
      ],
    },
  },
];

// Deliberate differences of mpush-gateway from MPUSH 0.8.0. Each rewrites the observations of
// both servers (per client) so the difference disappears; it is printed when it was needed.
const TOLERATED = [
  {
    scenarios: ["fast-connect-after-restart"],
    what: "after a server restart the gateway refuses the fast connect and the SDK does a full handshake",
    reason:
      "the gateway keeps resumable sessions in memory, MPUSH in Redis (gateway/README.md, Fast connect: " +
      "'not across a gateway restart: clients then get Error 103 and do a full handshake')",
    apply(events) {
      const b = events.B || [];
      const i = b.findIndex((e) => e.event === "error" && e.cmd === 7);
      if (i < 0) return events;
      // fast-connect-sent, error(7), handshake-sent, handshake-ok, resumed(handshake-ok)
      //   -> fast-connect-sent, fast-connect-ok, resumed(fast-connect-ok)
      const rest = b.slice(i + 1).filter((e) => e.event !== "handshake-sent");
      const hs = rest.findIndex((e) => e.event === "handshake-ok");
      if (hs < 0) return events;
      rest[hs] = { event: "fast-connect-ok", heartbeat: rest[hs].heartbeat };
      const out = rest.map((e) => (e.event === "resumed" ? { ...e, connectedBy: "fast-connect-ok" } : e));
      return { ...events, B: [...b.slice(0, i), ...out] };
    },
  },
  {
    scenarios: ["http", "http-large"],
    what: "the upstream request's Host header: MPUSH sends the mapped IP (no port), the gateway the URL's host",
    reason:
      "MPUSH's NettyHttpClient sets Host to the host after dns-mapping; the gateway keeps the name " +
      "(gateway/README.md, HTTP proxy: 'the Host header keeps the name') so name-based virtual hosts work",
    apply: (events) => rewriteEcho(events, (echo) => ({ ...echo, headers: { ...echo.headers, host: "<host>" } })),
  },
  {
    scenarios: ["http", "http-large"],
    what:
      "the upstream request line: MPUSH sends the mapped absolute URL (GET http://127.0.0.1:PORT/echo) and " +
      "'Connection: keep-alive', the gateway the origin form (GET /echo) and no Connection header",
    reason:
      "the same request for an origin server (RFC 9112 3.2: origin servers accept both forms; keep-alive is " +
      "HTTP/1.1's default); MPUSH passes the rewritten URL to Netty's request as is",
    apply: (events) =>
      rewriteEcho(events, (echo) => {
        const headers = { ...echo.headers };
        if (headers.connection === "keep-alive") delete headers.connection;
        return { ...echo, url: echo.url.replace(/^http:\/\/[^/]+/, ""), headers };
      }),
  },
];

// Differences that are NOT deliberate: reported to the gateway's owner, who is fixing them. The
// scenario still fails (with this note) until the gateway matches; JAVA_SDK_ALLOW_KNOWN=1 reports
// them as KNOWN instead (not counted as failures).
//
// Reported and since fixed in the gateway (protocol 3e3d532): the Error code of a refused fast
// connect (MPUSH 0.8.0: 0 with only a reason; the gateway had 103/104 from MPUSH master) and the
// answer to a second handshake (0.8.0: Error 100 "handle message error" + close, because every
// body is decrypted with the connection's current cipher; the gateway had 102 "repeat handshake").
// Entries: { scenarios, what, source, apply(eventsByClient) } like TOLERATED.
const KNOWN = [
  {
    scenarios: ["close-before-ack"],
    what:
      "a push waiting for its ack when the client's connection closes: MPUSH reports timeout (4) when " +
      "timeoutMs has passed; the gateway reports failure (2) at once (as gateway/README.md's result table says)",
    source:
      "mpush-core-0.8.0: the AckTask stays in AckTaskQueue after the connection closes; its timeout calls " +
      "GatewayPushListener.onTimeout, which only logs; the pusher (mpush-client PushRequest) then ends the " +
      "request with its own timer: timeout. PUSH_CLIENT_FAILURE is only sent when the write to the client fails " +
      "or its channel is not writable (SingleUserPushTask)",
    apply: (events) =>
      mapEvents(events, (e) =>
        e.event === "push-result" && e.request === "biz, connection closed before the ack"
          ? { event: e.event, request: e.request, response: "<timeout later | failure at once>" }
          : e,
      ),
  },
];

/** Rewrites the echo server's JSON in http-response bodies (and forgets the body's hash). */
function rewriteEcho(events, f) {
  return mapEvents(events, (e) => {
    if (e.event !== "http-response" || typeof e.body !== "string" || !e.body.startsWith("{")) return e;
    const echo = JSON.parse(e.body);
    if (!echo.headers) return e;
    return { ...e, body: JSON.stringify(f(echo)), length: "<rewritten>", sha256: "<rewritten>" };
  });
}

// ------------------------------------------------------------------------------------------
// the upstream HTTP server both servers' HTTP proxies reach (as http://interop.test/...)

function startEchoServer() {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url, "http://x");
      if (url.pathname === "/big") {
        const n = Math.min(Number(url.searchParams.get("n")) || 0, 5_000_000);
        let text = "";
        for (let i = 0; text.length < n; i++) text += `big body line ${i}\n`;
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(text.slice(0, n));
      } else if (url.pathname.startsWith("/status/")) {
        res.writeHead(Number(url.pathname.slice(8)) || 500, { "content-type": "text/plain" });
        res.end("status as asked\n");
      } else if (url.pathname.startsWith("/echo")) {
        // Everything the client side can compare; x-forwarded-port is the client's ephemeral
        // port, so only its presence is reported.
        const headers = {};
        for (const [k, v] of Object.entries(req.headers)) {
          if (k === "x-forwarded-port") headers[k] = /^\d+$/.test(v) ? "<port>" : v;
          else headers[k] = v;
        }
        const sorted = Object.fromEntries(Object.entries(headers).sort(([a], [b]) => a.localeCompare(b)));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            headers: sorted,
            bodyLength: body.length,
            bodySha256: crypto.createHash("sha256").update(body).digest("hex"),
          }),
        );
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("no such path\n");
      }
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// ------------------------------------------------------------------------------------------
// running the driver

function runDriver(stack, scenario, args, { workDir, id, timeoutMs = 90000 }) {
  return new Promise((resolve) => {
    const argv = [
      "-Xmx48m",
      "-XX:TieredStopAtLevel=1",
      "-XX:+UseSerialGC",
      "-cp",
      CLIENT_CP,
      "mpushweb.interop.JavaClientDriver",
      scenario,
      "--host", stack.connectHost,
      "--port", String(stack.connectPort),
      "--public-key", stack.publicKey,
      "--push-api", stack.pushApiUrl,
      "--http-base", `http://${HTTP_HOST}`,
      "--work-dir", workDir,
      "--id", id,
      ...args,
    ];
    const child = spawn("java", argv, { stdio: ["ignore", "pipe", "pipe"] });
    const events = [];
    let stderr = "";
    let partial = "";
    child.stdout.on("data", (c) => {
      const lines = (partial + c.toString("utf8")).split("\n");
      partial = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          events.push(JSON.parse(line));
        } catch {
          events.push({ client: "?", event: "unparsed-output", line });
        }
        if (VERBOSE) console.log(`  ${stack.name} ${line}`);
      }
    });
    child.stderr.on("data", (c) => {
      stderr += c.toString("utf8");
      if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
    });
    const timer = setTimeout(() => {
      events.push({ client: "A", event: "fail", reason: `driver still running after ${timeoutMs} ms: killed` });
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ events, code, stderr });
    });
  });
}

/** JSON objects with sorted keys: the servers' JSON libraries order keys differently. */
function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
}

/**
 * Observations by client, without what varies between runs (times, session ids, echo counts).
 * Replies that arrive together (Ok for an unbind and for the bind after it) are handled on the
 * SDK's dispatch pool (2-4 threads), so the order in which they are observed is not the order
 * they came in: within each run of Ok/Error observations they are compared sorted.
 */
function normalize(events, ignore = []) {
  const byClient = {};
  const finished = new Set();
  for (const e of events) {
    if (e.event === "heartbeat-echo" || ignore.includes(e.event)) continue;
    const { client = "?", ms, ...rest } = e;
    // After "done" the driver stops the SDK, which reports the disconnect or not depending on
    // a race inside its stop(): nothing after it is an observation of the server.
    if (finished.has(client)) continue;
    if (rest.event === "done") finished.add(client);
    if (typeof rest.sessionId === "string") rest.sessionId = rest.sessionId.length > 0 ? "<id>" : "";
    if (EXISTING && typeof rest.heartbeat === "number") rest.heartbeat = "<negotiated>";
    (byClient[client] ||= []).push(canonical(rest));
  }
  const reply = (e) => e.event === "ok" || e.event === "error";
  for (const list of Object.values(byClient)) {
    for (let i = 0; i < list.length; ) {
      let j = i;
      while (j < list.length && reply(list[j])) j++;
      if (j - i > 1) {
        const run = list.slice(i, j).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
        list.splice(i, j - i, ...run);
      }
      i = Math.max(j, i + 1);
    }
  }
  return byClient;
}

function mapEvents(events, f) {
  return Object.fromEntries(Object.entries(events).map(([c, list]) => [c, list.map(f)]));
}

/** Does `actual` contain `pattern` (every key of the pattern, recursively; arrays whole)? */
function matches(actual, pattern) {
  if (pattern === null || typeof pattern !== "object") return actual === pattern;
  if (Array.isArray(pattern)) {
    return Array.isArray(actual) && actual.length === pattern.length && pattern.every((p, i) => matches(actual[i], p));
  }
  if (actual === null || typeof actual !== "object") return false;
  return Object.entries(pattern).every(([k, v]) => matches(actual[k], v));
}

/** Problems with `events` against the ordered partial observations `expect` (per client). */
function checkExpected(events, expect) {
  const problems = [];
  for (const [client, patterns] of Object.entries(expect)) {
    const list = events[client] || [];
    let at = 0;
    for (let p of patterns) {
      if (EXISTING && "heartbeat" in p) {
        const { heartbeat, ...rest } = p;
        p = rest;
      }
      const i = list.findIndex((e, k) => k >= at && matches(e, p));
      if (i < 0) {
        problems.push(`${client}: expected ${JSON.stringify(p)} after observation ${at}, not seen`);
        break;
      }
      at = i + 1;
    }
  }
  return problems;
}

function firstDifference(real, gw) {
  const clients = [...new Set([...Object.keys(real), ...Object.keys(gw)])].sort();
  for (const c of clients) {
    const a = real[c] || [];
    const b = gw[c] || [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const x = JSON.stringify(a[i] ?? null);
      const y = JSON.stringify(b[i] ?? null);
      if (x !== y) return `${c}[${i}]: real-mpush ${x}\n        gateway    ${y}`;
    }
  }
  return null;
}

function driverProblems(run) {
  const end = run.events.filter((e) => e.event === "done" || e.event === "fail");
  const fails = run.events.filter((e) => e.event === "fail");
  if (fails.length) return fails.map((f) => `driver ${f.client}: ${f.reason}`);
  if (!end.length || run.code !== 0) return [`driver exited with code ${run.code} without finishing`];
  return [];
}

function stderrTail(run, n = 15) {
  return run.stderr.trim().split("\n").slice(-n).map((l) => `        | ${l}`).join("\n");
}

// MPUSH 0.8.0's push races (stacks.mjs, pushRaces): a push PushSender reports as `timeout`
// counts as the success it was only when a log line written during the driver's run proves it
// (PushSender dropped the server's OK naming that user, or the server dropped the client's ack);
// the line is printed. The results of every push of the run are explained together, in order.
function explainRaces(races, events, mark) {
  const pushes = events.filter((e) => e.event === "push-result" && Array.isArray(e.response?.body?.results));
  const results = pushes.flatMap((e) => e.response.body.results);
  // `race` says which race: printed already, and not an observation to compare.
  const explained = races.explain(results, mark).map(({ race, ...r }) => r);
  for (const e of pushes) e.response.body.results = explained.splice(0, e.response.body.results.length);
}

async function runScenario(stack, s, workRoot) {
  const workDir = path.join(workRoot, stack.name, s.name);
  fs.mkdirSync(workDir, { recursive: true });
  const steps = s.steps || [{ driver: s.name, args: s.args || [] }];
  const all = { events: [], code: 0, stderr: "" };
  // Only the real MPUSH has logs to explain its push races with (mpush-gateway has no races).
  const races = stack.pushLogs ? pushRaces(stack, (line) => console.log(`# ${s.name}: ${line}`)) : null;
  for (const step of steps) {
    if (step.restart) {
      await stack.restartServer();
      continue;
    }
    const args = [...(step.args || [])];
    if (step.client) args.push("--client-name", step.client, "--session-dir", path.join(workDir, "session"));
    const mark = races?.mark();
    const run = await runDriver(stack, step.driver, args, { workDir, id: s.name });
    if (races) explainRaces(races, run.events, mark);
    all.events.push(...run.events);
    all.stderr += run.stderr;
    if (run.code !== 0) {
      all.code = run.code;
      break;
    }
  }
  return all;
}

// ------------------------------------------------------------------------------------------

async function main() {
  const wanted = process.argv.slice(2);
  for (const w of wanted) {
    if (!SCENARIOS.some((s) => s.name === w)) {
      console.error(`unknown scenario ${w}; known: ${SCENARIOS.map((s) => s.name).join(", ")}`);
      process.exit(2);
    }
  }
  const scenarios = wanted.length ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;

  const echo = await startEchoServer();
  const dnsMapping = { [HTTP_HOST]: `127.0.0.1:${echo.address().port}` };
  const keys = testKeyPair();
  const log = (m) => console.log(`# ${m}`);
  const opts = { keys, minHeartbeat: MIN_HEARTBEAT, maxHeartbeat: MAX_HEARTBEAT, dnsMapping, log };
  const workRoot = fs.mkdtempSync(path.join(os.tmpdir(), "java-sdk-"));

  let passed = 0;
  let failed = 0;
  const report = (ok, server, name, detail) => {
    if (ok) passed++;
    else failed++;
    console.log(`${ok ? "PASS" : "FAIL"} ${server} java-sdk ${name}${detail ? `: ${detail}` : ""}`);
  };

  let real;
  let gateway;
  try {
    real = await startRealMpush(opts);
    gateway = await startGateway(opts);
    for (const s of scenarios) {
      if (EXISTING && s.needs) {
        console.log(`SKIP real-mpush java-sdk ${s.name}: needs ${s.needs} (MPUSH_EXISTING is set)`);
        continue;
      }
      const realRun = await runScenario(real, s, workRoot);
      const gwRun = await runScenario(gateway, s, workRoot);
      const realEv = normalize(realRun.events, s.ignore);
      const gwEv = normalize(gwRun.events, s.ignore);

      const realProblems = [...driverProblems(realRun), ...checkExpected(realEv, s.expect || {})];
      report(
        realProblems.length === 0,
        "real-mpush",
        s.name,
        realProblems.length ? `${realProblems.join("; ")}\n${stderrTail(realRun)}` : "",
      );

      const gwProblems = driverProblems(gwRun);
      const applyAll = (list, [r, g]) => {
        const used = [];
        for (const t of list.filter((t) => t.scenarios.includes(s.name))) {
          const r2 = t.apply(r);
          const g2 = t.apply(g);
          if (JSON.stringify([r, g]) !== JSON.stringify([r2, g2])) used.push(t);
          [r, g] = [r2, g2];
        }
        return { pair: [r, g], used };
      };
      let diff = firstDifference(realEv, gwEv);
      let known = [];
      if (diff) {
        const tolerated = applyAll(TOLERATED, [realEv, gwEv]);
        diff = firstDifference(...tolerated.pair);
        if (diff) {
          const k = applyAll(KNOWN, tolerated.pair);
          if (!firstDifference(...k.pair)) known = k.used;
        } else {
          for (const t of tolerated.used) console.log(`# tolerated in ${s.name}: ${t.what} (${t.reason})`);
        }
      }
      const problems = [...gwProblems, ...(diff ? [`differs from real MPUSH at ${diff}`] : [])];
      if (!gwProblems.length && known.length) {
        const note = known.map((k) => `known divergence, reported to the gateway's owner: ${k.what} [${k.source}]`);
        if (process.env.JAVA_SDK_ALLOW_KNOWN) {
          console.log(`KNOWN gateway java-sdk ${s.name}: ${note.join("; ")}\n        ${diff}`);
          continue;
        }
        report(false, "gateway", s.name, `${note.join("; ")}\n        ${diff}`);
        continue;
      }
      report(problems.length === 0, "gateway", s.name, problems.length ? `${problems.join("; ")}\n${stderrTail(gwRun)}` : "");
    }
  } catch (e) {
    failed++;
    console.log(`FAIL java-sdk setup: ${e.stack || e}`);
  } finally {
    await Promise.all([real?.stop(), gateway?.stop()]);
    echo.close();
    if (!process.env.MPUSH_KEEP_TMP) fs.rmSync(workRoot, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

await main();
