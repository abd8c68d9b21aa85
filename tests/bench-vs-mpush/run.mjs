// The gateway beside the real MPUSH 0.8.0 on the same load (scripts/bench-vs-mpush.sh): the
// same RSA key (stacks.mjs's testKeyPair), the same heartbeat bounds, the same mpush-loadgen
// run over direct TCP, one server at a time. MPUSH runs as tests/real-mpush starts it
// (startRealMpush: ZooKeeper, Redis, mpush-boot 0.8.0 with -Xmx128m, C1 only, SerialGC, and the
// PushApi driver that pushes through MPUSH's own PushSender with the gateway's push API JSON);
// the gateway runs from target/release with the same keys and no per-IP caps (every session
// comes from 127.0.0.1). For each server it prints loadgen's report, where "server memory /
// session" is the RSS growth of the server process (MPUSH's JVM; ZooKeeper, Redis and the
// PushApi are not counted) over the sessions, and "server CPU per push" its CPU time over the
// push burst.
//
// Usage: node tests/bench-vs-mpush/run.mjs   (env: SESSIONS 2000, HOLD 10, BURST 20000,
// RATE 1000, RATE_SECONDS 5, HEARTBEAT 10000, API_CONCURRENCY 8 (push API calls of 250 users in
// flight during the burst), ONLY=gateway|mpush)
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { startRealMpush, testKeyPair } from "../real-mpush/stacks.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const env = (k, d) => process.env[k] ?? String(d);
const SESSIONS = env("SESSIONS", 2000);
const HEARTBEAT = Number(env("HEARTBEAT", 10000));
const LOADGEN = path.join(ROOT, "target/release/mpush-loadgen");
const GATEWAY = path.join(ROOT, "target/release/mpush-gateway");
const keys = testKeyPair();

/** The pid of the process whose command line holds `needle` (and `also`, if given). */
function pidOf(needle, also = "") {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  for (const line of out.split("\n")) {
    const m = line.trim().match(/^(\d+)\s+(.*)$/);
    if (m && m[2].includes(needle) && m[2].includes(also) && !m[2].startsWith("bash ")) return Number(m[1]);
  }
  throw new Error(`no process with ${needle} ${also}`);
}

const rssMb = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]) / 1024;

function loadgen(name, { connectPort, pushApiUrl, pid }) {
  const args = ["--sessions", SESSIONS, "--public-key", keys.publicKey, "--tcp", `127.0.0.1:${connectPort}`,
    "--api", pushApiUrl, "--server-pid", String(pid), "--heartbeat", String(HEARTBEAT),
    "--hold-seconds", env("HOLD", 10), "--burst", env("BURST", 20000), "--rate", env("RATE", 1000),
    "--rate-seconds", env("RATE_SECONDS", 5), "--api-concurrency", env("API_CONCURRENCY", 8)];
  console.log(`\n######## ${name} (pid ${pid}, RSS ${rssMb(pid).toFixed(1)} MB before the sessions)`);
  return new Promise((resolve, reject) => {
    const p = spawn(LOADGEN, args, { stdio: ["ignore", "inherit", "inherit"] });
    p.on("exit", (code) => {
      console.log(`${name}: RSS ${rssMb(pid).toFixed(1)} MB after the run`);
      code === 0 ? resolve() : reject(new Error(`loadgen against ${name} exited with ${code}`));
    });
  });
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function runGateway() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-gateway-"));
  const [connectPort, apiPort] = [await freePort(), await freePort()];
  const config = path.join(dir, "gateway.toml");
  fs.writeFileSync(config, [
    `listen = "127.0.0.1:${connectPort}"`,
    `api-listen = "127.0.0.1:${apiPort}"`,
    "[security]",
    `private-key = "${keys.privateKey}"`,
    `public-key = "${keys.publicKey}"`,
    "[core]",
    `min-heartbeat = ${HEARTBEAT}`,
    `max-heartbeat = ${HEARTBEAT}`,
    "[limits]",
    "max-connections-per-ip = 0",
    "max-unauthenticated-per-ip = 0",
    "",
  ].join("\n"));
  const gw = spawn(GATEWAY, ["--config", config], { stdio: ["ignore", "ignore", fs.openSync(path.join(dir, "gw.log"), "a")] });
  try {
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`http://127.0.0.1:${apiPort}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await loadgen("mpush-gateway", { connectPort, pushApiUrl: `http://127.0.0.1:${apiPort}`, pid: gw.pid });
  } finally {
    gw.kill("SIGTERM");
    await new Promise((r) => gw.once("exit", r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function runMpush() {
  const stack = await startRealMpush({ keys, minHeartbeat: HEARTBEAT, maxHeartbeat: HEARTBEAT });
  try {
    const pid = pidOf(path.join(stack.dir, "mpush.conf"), "com.mpush.bootstrap.Main");
    console.log(`MPUSH 0.8.0: java ${execFileSync("ps", ["-o", "args=", "-p", String(pid)], { encoding: "utf8" })
      .split(" ").filter((a) => a.startsWith("-X")).join(" ")}`);
    await loadgen("MPUSH 0.8.0", { connectPort: stack.connectPort, pushApiUrl: stack.pushApiUrl, pid });
  } finally {
    await stack.stop();
  }
}

const only = process.env.ONLY;
if (!only || only === "gateway") await runGateway();
if (!only || only === "mpush") await runMpush();
process.exit(0);
