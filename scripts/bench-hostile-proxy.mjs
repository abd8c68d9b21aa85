// The proxy under a slow-header flood (the "proxy" section of scripts/bench-hostile.sh; figures,
// not a test): N connections from many loopback addresses each send half an HTTP request head
// and hold it. Measures the proxy's RSS per held connection and the latency of legitimate
// WebSocket upgrades (connect to "101 Switching Protocols") before and during the flood.
// Prints a markdown table.
//
// Usage: node scripts/bench-hostile-proxy.mjs <mpush-proxy binary>
// Environment: FLOOD (connections, default 5000), PER_IP (connections per source address,
// default 100: under the default per-IP cap of 116), SAMPLES (upgrades measured, default 20).
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";

const BIN = process.argv[2];
if (!BIN) {
  console.error("usage: node scripts/bench-hostile-proxy.mjs <mpush-proxy binary>");
  process.exit(2);
}
const FLOOD = Number(process.env.FLOOD || 5000);
const PER_IP = Number(process.env.PER_IP || 100);
const SAMPLES = Number(process.env.SAMPLES || 20);
const HOLD_TIMEOUT = "300s"; // handshake_timeout for the run, so held heads are not cut mid-measurement

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A stand-in MPUSH server: accepts and holds every connection (the sessions stay idle). */
function fakeUpstream() {
  const held = [];
  const srv = net.createServer((s) => {
    s.on("error", () => {});
    held.push(s);
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve({ srv, held, port: srv.address().port })));
}

function rssKiB(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m[1]);
}

/** One HTTP request from `localAddress`; resolves with the raw answer. */
function httpGet(port, path, localAddress = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", localAddress }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`);
    });
    let out = "";
    s.on("data", (d) => (out += d));
    s.on("end", () => resolve(out));
    s.on("error", reject);
    s.setTimeout(10000, () => s.destroy(new Error(`${path}: timeout`)));
  });
}

async function gauge(port, name) {
  const text = await httpGet(port, "/metrics", "127.0.255.1");
  const m = text.match(new RegExp(`^${name} (\\d+)$`, "m"));
  return m ? Number(m[1]) : NaN;
}

/** A legitimate WebSocket upgrade from 127.0.0.1: ms from connect() to the 101 status line. */
function upgradeMs(port) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ port, host: "127.0.0.1" }, () => {
      s.write(
        "GET /mpush HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mpush\r\n\r\n",
      );
    });
    let head = "";
    s.on("data", (d) => {
      head += d;
      if (head.includes("\r\n")) {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        s.destroy();
        if (head.startsWith("HTTP/1.1 101")) resolve(ms);
        else reject(new Error(`upgrade refused: ${head.split("\r\n")[0]}`));
      }
    });
    s.on("error", reject);
    s.setTimeout(10000, () => s.destroy(new Error("upgrade timeout")));
  });
}

async function samples(port, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(await upgradeMs(port));
    await sleep(50);
  }
  return out;
}

function summary(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  const within = s.filter((x) => x < 100).length;
  return `median ${q(0.5).toFixed(2)} ms, p90 ${q(0.9).toFixed(2)} ms, max ${s[s.length - 1].toFixed(2)} ms ` +
    `(${within}/${s.length} under 100 ms)`;
}

/** Opens `n` connections from 127.0.<a>.<b> addresses, `PER_IP` each; each sends half a head. */
async function flood(port, n) {
  const socks = [];
  const half = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: slowloris\r\nX-Pad: " + "a".repeat(64);
  const batch = [];
  for (let i = 0; i < n; i++) {
    const ip = Math.floor(i / PER_IP) + 2; // 127.0.0.2 upwards; 127.0.0.1 is the legitimate client
    const localAddress = `127.0.${Math.floor(ip / 250)}.${(ip % 250) + 2}`;
    batch.push(new Promise((resolve) => {
      const s = net.connect({ port, host: "127.0.0.1", localAddress }, () => {
        s.write(half);
        resolve();
      });
      s.on("error", () => resolve());
      socks.push(s);
    }));
    if (batch.length === 200) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  return socks;
}

const up = await fakeUpstream();
const port = await freePort();
const proxy = spawn(BIN, [
  "--listen", `127.0.0.1:${port}`, "--upstream", `127.0.0.1:${up.port}`,
  "--handshake-timeout", HOLD_TIMEOUT, "--log-level", "warn",
], { stdio: ["ignore", "inherit", "inherit"] });
try {
  for (let i = 0; ; i++) {
    try {
      if ((await httpGet(port, "/healthz")).startsWith("HTTP/1.1 200")) break;
    } catch {}
    if (i > 100) throw new Error("the proxy did not start");
    await sleep(100);
  }
  // Warm up (runtime threads, first session) so the baseline holds what the flood does not add.
  const before = await samples(port, SAMPLES);
  await sleep(500);
  const base = rssKiB(proxy.pid);
  const socks = await flood(port, FLOOD);
  let open = 0;
  for (let i = 0; i < 100; i++) {
    open = await gauge(port, "mpush_proxy_tcp_connections");
    if (open >= FLOOD) break;
    await sleep(100);
  }
  await sleep(500);
  const held = rssKiB(proxy.pid);
  const during = await samples(port, SAMPLES);
  const refused = await gauge(port, 'mpush_proxy_tcp_refused_total\\{reason="per_ip_limit"\\}');
  const row = (k, v) => console.log(`| ${k} | ${v} |`);
  console.log("| figure | value |");
  console.log("|---|---|");
  row("held connections (half a request head each)",
    `${FLOOD} from ${Math.ceil(FLOOD / PER_IP)} addresses, ${PER_IP} each (proxy counts ${open} open, ${refused} refused)`);
  row("proxy RSS before / while holding", `${(base / 1024).toFixed(1)} MiB / ${(held / 1024).toFixed(1)} MiB`);
  row("**RSS per held connection**", `**${((held - base) / FLOOD).toFixed(2)} KiB**`);
  row(`WebSocket upgrade, connect to 101, before the flood (${SAMPLES})`, summary(before));
  row(`**the same during the flood** (${SAMPLES})`, `**${summary(during)}**`);
  for (const s of socks) s.destroy();
} finally {
  proxy.kill("SIGTERM");
  for (const s of up.held) s.destroy();
  up.srv.close();
}
