// Starts the servers the interop suite compares, all on 127.0.0.1 with free ports:
//
//   startRealMpush()  ZooKeeper + Redis + the REAL MPUSH 0.8.0 (mpush-boot from Maven Central)
//                     + our PushApi (MPUSH's own PushSender behind the gateway's push API JSON)
//   startGateway()    our mpush-gateway with the same keys, heartbeat bounds and HTTP proxy
//   startProxy()      our mpush-proxy in front of either
//
// Every child is killed when the stack stops and when this process ends: on exit, SIGINT and
// SIGTERM by handlers here, and even on SIGKILL because each child watches a stdin pipe from us
// (JVMs through mpushweb.interop.Watchdog, native programs through a small bash guard) and dies
// when the pipe closes.
//
// Node 20, no dependencies. The Java side is built by ./build.sh (run here when needed).

import { spawn, spawnSync, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const TARGET = path.join(HERE, "target");
const LIB_SERVER = path.join(TARGET, "lib-server");
const SERVER_CP = `${path.join(TARGET, "classes-server")}:${LIB_SERVER}/*`;
const MPUSH_TOOLS_JAR = path.join(LIB_SERVER, "mpush-tools-0.8.0.jar");

// JVM flags for MPUSH 0.8.0 (built for Java 8) on Java 17, found by starting it and reading the
// stack traces; this is the whole list:
//   --add-opens java.base/java.nio=ALL-UNNAMED
//       Netty 4.1.8's PlatformDependent0 makes java.nio.Buffer.address accessible in its static
//       initializer and does not catch Java 17's InaccessibleObjectException: without the flag
//       the first Netty class fails with NoClassDefFoundError and MPUSH never opens a port (the
//       PushApi's PushSender, also Netty, needs it too). Netty's other reflective tricks
//       (sun.nio.ch selected-key sets) catch their failure and fall back, so they need nothing.
// The rest keeps three JVMs small and quick to start on a 2-core machine shared with Chromium
// and rustc: C1 only, the serial collector, small heaps, one Netty arena.
const JAVA17_FLAGS = ["--add-opens", "java.base/java.nio=ALL-UNNAMED"];
const JVM_SMALL = [
  "-XX:TieredStopAtLevel=1",
  "-XX:+UseSerialGC",
  "-Xss512k",
  "-XX:MaxDirectMemorySize=64m",
  "-Dio.netty.allocator.numDirectArenas=1",
  "-Dio.netty.allocator.numHeapArenas=1",
  "-Djava.net.preferIPv4Stack=true",
];

const READY_TIMEOUT_MS = Number(process.env.MPUSH_READY_TIMEOUT_MS || 60000);

// ------------------------------------------------------------------------------------------
// keys

/**
 * A 1024-bit RSA key pair for both servers, as MPUSH configures it (`mp.security.*`):
 * `{ publicKey: base64 X.509 SubjectPublicKeyInfo DER, privateKey: base64 PKCS#8 DER }`.
 */
export function testKeyPair() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("rsa", {
    modulusLength: 1024,
    publicKeyEncoding: { type: "spki", format: "der" },
    privateKeyEncoding: { type: "pkcs8", format: "der" },
  });
  return { publicKey: publicKey.toString("base64"), privateKey: privateKey.toString("base64") };
}

// ------------------------------------------------------------------------------------------
// child processes

const live = new Set();
const tempDirs = new Set();
let hooksInstalled = false;

function installExitHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const killAll = () => {
    for (const p of live) {
      try {
        // A guard kills its program when its stdin closes; killing the guard itself would
        // orphan the program.
        if (p.guarded) p.child.stdin.destroy();
        else p.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    live.clear();
    // Temp dirs of stacks that were not stopped (best effort: a JVM may still be writing).
    for (const dir of tempDirs) removeDir(dir);
  };
  process.on("exit", killAll);
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ]) {
    process.on(sig, () => {
      killAll();
      // Keep the default "exit on signal" unless the caller handles the signal itself.
      if (process.listenerCount(sig) === 1) process.exit(code);
    });
  }
}

// Runs CMD and kills it (SIGKILL) as soon as our stdin reaches end of file; SIGUSR1 asks CMD to
// stop gracefully (SIGTERM) and the guard then exits with CMD's status. It reaps what it kills
// (`wait`), so nothing is left as a zombie for a container's init.
const GUARD = `
exec 3<&0
"$@" </dev/null &
child=$!
cat <&3 >/dev/null &
watch=$!
exec 3<&-
trap 'kill -TERM "$child" 2>/dev/null' USR1
trap 'kill -KILL "$child" "$watch" 2>/dev/null; wait; exit 143' TERM INT HUP
while :; do
  done=
  wait -n -p done "$child" "$watch"
  status=$?
  [ -n "$done" ] && break
done
if [ "$done" = "$child" ]; then kill "$watch" 2>/dev/null; wait; exit "$status"; fi
kill -KILL "$child" 2>/dev/null
wait
exit 0
`;

/** A child process whose output goes to a log file and a ring of recent lines. */
class Proc {
  constructor(name, cmd, args, { logFile, env, cwd, guarded = false }) {
    installExitHooks();
    this.name = name;
    this.guarded = guarded;
    this.logFile = logFile;
    this.recent = [];
    this.waiters = [];
    this.log = fs.createWriteStream(logFile, { flags: "a" });
    this.child = spawn(cmd, args, {
      cwd: cwd || HERE,
      env: { ...process.env, ...(env || {}) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        live.delete(this);
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
      });
      this.child.on("error", (err) => {
        live.delete(this);
        this.spawnError = err;
        resolve({ code: null, signal: null, error: err });
      });
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = "";
      stream.on("data", (chunk) => {
        this.log.write(chunk);
        const text = partial + chunk.toString("utf8");
        const lines = text.split("\n");
        partial = lines.pop();
        for (const line of lines) this.line(line);
      });
    }
  }

  line(line) {
    this.recent.push(line);
    if (this.recent.length > 60) this.recent.shift();
    for (const w of [...this.waiters]) {
      const m = w.re.exec(line);
      if (m) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }

  /** Resolves with the match of the first output line (from now on) matching `re`. */
  nextLine(re) {
    return new Promise((resolve) => this.waiters.push({ re, resolve }));
  }

  get running() {
    return this.exitCode === undefined && this.exitSignal === undefined && !this.spawnError;
  }

  describeExit() {
    if (this.spawnError) return `could not start (${this.spawnError.message})`;
    return `exited (code ${this.exitCode}, signal ${this.exitSignal})`;
  }

  tail(n = 25) {
    return `--- ${this.name} (${this.logFile}), last lines:\n${this.recent.slice(-n).join("\n")}`;
  }

  /**
   * Ends the process now. JVMs get SIGKILL. A guarded program's guard must not be killed (the
   * program would outlive it): closing its stdin makes the guard SIGKILL the program and exit.
   */
  async kill() {
    if (this.running) {
      try {
        this.child.stdin.end();
        if (!this.guarded) this.child.kill("SIGKILL");
      } catch {
        // already gone
      }
      const late = setTimeout(() => this.child.kill("SIGKILL"), 5000);
      await this.exited;
      clearTimeout(late);
    }
    this.log.end();
  }
}

/**
 * A JVM on the server classpath, run through mpushweb.interop.Watchdog (dies with our stdin),
 * in `cwd`. `jvmArgs` go before the main class.
 */
function startJava(name, mainClass, args, { logFile, heap, conf, cwd, jvmArgs = [] }) {
  const jvm = [`-Xmx${heap}`, ...JVM_SMALL, ...JAVA17_FLAGS, ...jvmArgs];
  if (conf) jvm.push(`-Dmp.conf=${conf}`);
  jvm.push("-cp", SERVER_CP, "mpushweb.interop.Watchdog", mainClass);
  return new Proc(name, "java", [...jvm, ...args], { logFile, cwd });
}

function startGuarded(name, cmd, args, opts) {
  return new Proc(name, "bash", ["-c", GUARD, "guard", cmd, ...args], { ...opts, guarded: true });
}

function startPushApi(conf, logFile, cwd) {
  return startJava("pushapi", "mpushweb.interop.PushApi", ["--listen", "127.0.0.1:0"], { logFile, heap: "64m", conf, cwd });
}

// ------------------------------------------------------------------------------------------
// small helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function freePorts(n) {
  // Hold them all open at once so the n ports are distinct.
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      await new Promise((resolve, reject) => {
        srv.on("error", reject);
        srv.listen(0, "127.0.0.1", resolve);
      });
      servers.push(srv);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function tcpAccepts(port, host = "127.0.0.1") {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("connect", () => done(true));
    sock.on("error", () => done(false));
  });
}

function getJson(url, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode, body: JSON.parse(body) });
        } catch {
          resolve({ status: res.statusCode, body });
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => resolve({ status: 0, error: e.message }));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `check` until it returns a truthy value. Fails with `what`, the last state and the log
 * tails when `procs` exits or the time runs out.
 */
async function waitUntil(what, check, { procs = [], timeoutMs = READY_TIMEOUT_MS, extraTail } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    const dead = procs.find((p) => !p.running);
    if (dead) {
      throw new Error(`${what}: ${dead.name} ${dead.describeExit()}\n${tails(procs, extraTail)}`);
    }
    last = await check();
    if (last && last.ok !== false) return last;
    if (Date.now() > deadline) {
      const state = last && last.state !== undefined ? `\nlast state: ${JSON.stringify(last.state)}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state}\n${tails(procs, extraTail)}`);
    }
    await sleep(100);
  }
}

function tails(procs, extraTail) {
  const parts = procs.map((p) => p.tail());
  if (extraTail) parts.push(extraTail());
  return parts.join("\n");
}

function fileTail(file, n = 30) {
  try {
    const lines = fs.readFileSync(file, "utf8").split("\n");
    return `--- ${file}, last lines:\n${lines.slice(-n).join("\n")}`;
  } catch {
    return `--- ${file}: not written`;
  }
}

function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

function removeDir(dir) {
  tempDirs.delete(dir);
  if (process.env.MPUSH_KEEP_TMP) return;
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    // a process that was just killed may still have had a file open
  }
}

let built = false;
function ensureBuilt(log) {
  if (built) return;
  const r = spawnSync(path.join(HERE, "build.sh"), [], { encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(`tests/real-mpush/build.sh failed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  }
  if (r.stdout.trim()) log(r.stdout.trim());
  built = true;
}

function need(bin, hint) {
  if (!fs.existsSync(bin)) throw new Error(`${bin} not found: ${hint}`);
  return bin;
}

// ------------------------------------------------------------------------------------------
// MPUSH's configuration

let referenceKeys;

/** Every key path defined by the jar's reference.conf (read with `unzip -p`). */
function mpushReferenceKeys() {
  if (referenceKeys) return referenceKeys;
  const text = execFileSync("unzip", ["-p", MPUSH_TOOLS_JAR, "reference.conf"], { encoding: "utf8" });
  // reference.conf is plain nested HOCON: "name {" opens a block, "key=value" / "key:value"
  // defines a key (value possibly a nested object), "}" closes.
  const keys = new Set();
  const stack = [];
  for (let raw of text.split("\n")) {
    const line = raw.replace(/\s+\/\/.*$/, "").replace(/^\s*#.*$/, "").trim();
    if (!line) continue;
    const open = /^([A-Za-z0-9_."-]+)\s*[:=]?\s*\{\s*(\})?\s*,?$/.exec(line);
    if (open) {
      const key = [...stack, open[1].replace(/"/g, "")].join(".");
      keys.add(key);
      if (!open[2]) stack.push(open[1].replace(/"/g, ""));
      continue;
    }
    if (/^\}\s*,?$/.test(line)) {
      stack.pop();
      continue;
    }
    const kv = /^([A-Za-z0-9_"-]+)\s*[:=]/.exec(line);
    if (kv) keys.add([...stack, kv[1].replace(/"/g, "")].join("."));
  }
  if (!keys.has("mp.net.connect-server-port") || !keys.has("mp.core.min-heartbeat")) {
    throw new Error(`could not read the keys of reference.conf in ${MPUSH_TOOLS_JAR}`);
  }
  referenceKeys = keys;
  return keys;
}

const hocon = (v) =>
  typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? `[${v.map(hocon).join(", ")}]` : String(v);

/**
 * The HOCON file for MPUSH (and, with another log dir, for the PushApi, which reads the same
 * `-Dmp.conf`). Each override says why it is there; every key is checked against reference.conf
 * so a typo or another MPUSH version fails here instead of being silently ignored.
 */
function mpushConf({ dir, logDir, keys, minHeartbeat, maxHeartbeat, dnsMapping, ports }) {
  const known = mpushReferenceKeys();
  const entries = [
    ["mp.home", dir, "MPUSH's working dir (default: the JVM's cwd); log and dump paths hang off it"],
    ["mp.log-dir", logDir, "its logback files (mpush.log, conn-, push-, http-mpush.log ...)"],
    ["mp.log-level", "info", "default warn; info logs every connection, bind and push: what a failing test needs"],
    ["mp.monitor.dump-dir", path.join(dir, "dump"), "keep the monitor's dumps in the temp dir"],
    ["mp.security.private-key", keys.privateKey, "the test key pair (base64 PKCS#8), shared with the gateway"],
    ["mp.security.public-key", keys.publicKey, "... and its public half (base64 X.509)"],
    ["mp.core.min-heartbeat", `${minHeartbeat}ms`, "short heartbeat bounds so heartbeat tests take seconds"],
    ["mp.core.max-heartbeat", `${maxHeartbeat}ms`, "(negotiated: max(min, min(clientMax, max)))"],
    ["mp.zk.server-address", `127.0.0.1:${ports.zk}`, "our ZooKeeper"],
    ["mp.zk.sessionTimeoutMs", "2s", "a killed server's ephemeral nodes vanish 2 s later (default 5 s), for restartServer()"],
    ["mp.zk.connectionTimeoutMs", "2s", "Curator warns when it is above the session timeout"],
    ["mp.redis.nodes", [`127.0.0.1:${ports.redis}`], "our Redis (default: none)"],
    ["mp.redis.cluster-model", "single", "one plain Redis"],
    ["mp.net.local-ip", "127.0.0.1", "default: the first site-local NIC address; registered for the gateway server"],
    ["mp.net.public-ip", "127.0.0.1", "default: the first public NIC address (else local-ip); registered for the connect server"],
    ["mp.net.connect-server-register-ip", "127.0.0.1", "what ZooKeeper's /cluster/cs node (and the alloc service) advertise"],
    ["mp.net.gateway-server-register-ip", "127.0.0.1", "what /cluster/gs and the Redis routes advertise: the PushApi connects there"],
    ["mp.net.connect-server-bind-ip", "127.0.0.1", "listen on loopback only (default 0.0.0.0)"],
    ["mp.net.gateway-server-bind-ip", "127.0.0.1", "listen on loopback only (default 0.0.0.0)"],
    ["mp.net.connect-server-port", ports.connect, "free port instead of 3000"],
    ["mp.net.gateway-server-port", ports.gateway, "free port instead of 3001"],
    // 0.8.0's AdminServer has no bind-ip setting: it listens on all interfaces, on this free port.
    ["mp.net.admin-server-port", ports.admin, "free port instead of 3002 (the telnet console binds 0.0.0.0: no setting)"],
    ["mp.net.gateway-client-port", ports.gatewayClient, "only used by the UDP gateway; a free port anyway, never 4000"],
    ["mp.net.gateway-server-net", "tcp", "the PushApi reaches the gateway server over TCP (the default)"],
    ["mp.net.ws-server-port", 0, "MPUSH's own WebSocket JSON mode stays off (0, the default); browsers use mpush-proxy"],
    ["mp.http.proxy-enabled", true, "HTTP proxy (cmd 12) on; off by default"],
  ];
  const lines = [
    "# Generated by tests/real-mpush/stacks.mjs for one test run. Keys checked against",
    "# reference.conf in mpush-tools-0.8.0.jar; everything not set here keeps its default there.",
  ];
  for (const [key, value, why] of entries) {
    if (!known.has(key)) throw new Error(`${key} is not a key of MPUSH's reference.conf`);
    lines.push(`# ${why}`, `${key}=${hocon(value)}`);
  }
  if (!known.has("mp.http.dns-mapping")) throw new Error("mp.http.dns-mapping is not a key of reference.conf");
  lines.push("# host names of the HTTP proxy's requests mapped to test servers (host -> [ip:port])");
  lines.push("mp.http.dns-mapping {");
  for (const [host, addr] of Object.entries(dnsMapping || {})) {
    for (const a of [].concat(addr)) {
      if (!/^[\d.]+:\d+$/.test(a)) throw new Error(`dnsMapping ${host}: want "ip:port", got ${a}`);
    }
    lines.push(`  ${JSON.stringify(host)}: ${hocon([].concat(addr))}`);
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

// ------------------------------------------------------------------------------------------
// the real MPUSH

/**
 * ZooKeeper + Redis + MPUSH 0.8.0 (connection server, gateway server, admin) + our PushApi, all
 * on 127.0.0.1 with free ports, data and logs in a temp dir.
 *
 * With env MPUSH_EXISTING=host:port, MPUSH_EXISTING_PUBLIC_KEY, MPUSH_EXISTING_ZK=host:port[,..]
 * and MPUSH_EXISTING_REDIS=host:port[:password][,..] it starts only the PushApi, against the
 * user's deployment (the PushApi finds the gateway servers in that ZooKeeper and the users'
 * routes in that Redis, as any MPUSH application server does).
 *
 * @returns {Promise<{name: "real-mpush", connectHost: string, connectPort: number,
 *   pushApiUrl: string, publicKey: string, dir: string,
 *   restartServer(): Promise<void>, stop(): Promise<void>}>}
 */
export async function startRealMpush({
  keys = testKeyPair(),
  minHeartbeat = 4000,
  maxHeartbeat = 4000,
  dnsMapping = {},
  log = () => {},
} = {}) {
  ensureBuilt(log);
  if (process.env.MPUSH_EXISTING) return startPushApiForExisting(log);

  const t0 = Date.now();
  const dir = tempDir("real-mpush-");
  const procs = [];
  const stop = async () => {
    await Promise.all(procs.map((p) => p.kill()));
    removeDir(dir);
  };
  try {
    const [zk, redis, connect, gateway, admin, gatewayClient] = await freePorts(6);
    const ports = { zk, redis, connect, gateway, admin, gatewayClient };

    // ZooKeeper: the server class of the zookeeper jar MPUSH itself depends on (3.4.8). A
    // config file rather than "PORT DATADIR" arguments, to bind loopback only and to tick
    // fast enough for 2 s sessions (sessions may last 2..20 ticks).
    fs.mkdirSync(path.join(dir, "zk"));
    fs.writeFileSync(
      path.join(dir, "zk.cfg"),
      `tickTime=250\ndataDir=${path.join(dir, "zk")}\nclientPort=${zk}\nclientPortAddress=127.0.0.1\n`,
    );
    const zkProc = startJava("zookeeper", "org.apache.zookeeper.server.ZooKeeperServerMain", [path.join(dir, "zk.cfg")], {
      logFile: path.join(dir, "zookeeper.out"),
      heap: "48m",
      cwd: dir,
      // ZooKeeper logs through slf4j into MPUSH's logback.xml (it is on this classpath), which
      // needs log.home and log.root.level (MPUSH's Logs.init sets them; nothing does here).
      jvmArgs: [`-Dlog.home=${path.join(dir, "logs", "zookeeper")}`, "-Dlog.root.level=info", "-Dzookeeper.jmx.log4j.disable=true"],
    });
    procs.push(zkProc);
    const redisProc = startGuarded(
      "redis",
      "redis-server",
      ["--bind", "127.0.0.1", "--port", String(redis), "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"],
      { logFile: path.join(dir, "redis.log"), cwd: dir },
    );
    procs.push(redisProc);
    await Promise.all([
      waitUntil("ZooKeeper", async () => (await tcpAccepts(zk)) || { ok: false }, { procs: [zkProc] }),
      waitUntil("Redis", async () => (await tcpAccepts(redis)) || { ok: false }, { procs: [redisProc] }),
    ]);
    const tInfra = Date.now();

    const conf = { dir, keys, minHeartbeat, maxHeartbeat, dnsMapping, ports };
    const mpushConfFile = path.join(dir, "mpush.conf");
    const apiConfFile = path.join(dir, "pushapi.conf");
    fs.writeFileSync(mpushConfFile, mpushConf({ ...conf, logDir: path.join(dir, "logs", "mpush") }));
    fs.writeFileSync(apiConfFile, mpushConf({ ...conf, logDir: path.join(dir, "logs", "pushapi") }));
    const mpushLog = path.join(dir, "logs", "mpush", "mpush.log");

    const startServer = () =>
      startJava("mpush", "com.mpush.bootstrap.Main", [], {
        logFile: path.join(dir, "mpush.out"),
        heap: "128m",
        conf: mpushConfFile,
        cwd: dir,
      });
    let server = startServer();
    procs.push(server);
    const api = startPushApi(apiConfFile, path.join(dir, "pushapi.out"), dir);
    procs.push(api);
    const listening = api.nextLine(/push-api: listening on (http:\/\/\S+)/);
    const pushApiUrl = await waitUntil("the PushApi's listening line", async () => {
      const m = await Promise.race([listening, sleep(100).then(() => null)]);
      return m ? m[1] : { ok: false };
    }, { procs: [api] });

    // Ready = the connect port accepts, ZooKeeper holds this server's connect and gateway nodes
    // (as the PushApi reads them), and the PushApi's PushSender is connected to the gateway
    // server.
    const registered = async (exclude = new Set()) => {
      const h = await getJson(`${pushApiUrl}/health`);
      if (h.status !== 200 || !h.body || typeof h.body !== "object") return { ok: false, state: h };
      const cs = (h.body.connectServers || []).filter((n) => n.node && n.node.port === connect && !exclude.has(n.id));
      const gs = (h.body.gatewayServers || []).filter(
        (n) => n.node && n.node.port === gateway && n.connected && !exclude.has(n.id),
      );
      const stale = [...(h.body.connectServers || []), ...(h.body.gatewayServers || [])].filter((n) => exclude.has(n.id));
      if (!cs.length || !gs.length || stale.length) return { ok: false, state: h.body };
      if (!(await tcpAccepts(connect))) return { ok: false, state: "connect port not accepting" };
      return { ok: true, ids: [...cs, ...gs].map((n) => n.id), nodes: { cs: cs[0], gs: gs[0] } };
    };
    const ready = await waitUntil("MPUSH to register in ZooKeeper and accept connections", () => registered(), {
      procs: [server, api, zkProc, redisProc],
      extraTail: () => fileTail(mpushLog),
    });
    let nodeIds = new Set(ready.ids);
    log(
      `real-mpush: ready in ${Date.now() - t0} ms (ZooKeeper+Redis ${tInfra - t0} ms): ` +
        `MPUSH on 127.0.0.1:${connect} (gateway ${gateway}), PushApi ${pushApiUrl}, ZooKeeper ${zk}, Redis ${redis}, dir ${dir}`,
    );

    return {
      name: "real-mpush",
      connectHost: "127.0.0.1",
      connectPort: connect,
      pushApiUrl,
      publicKey: keys.publicKey,
      dir,
      pushLogs: {
        servers: [path.join(dir, "logs", "mpush", "push-mpush.log")],
        sender: path.join(dir, "logs", "pushapi", "push-mpush.log"),
      },
      zookeeper: `127.0.0.1:${zk}`,
      redis: `127.0.0.1:${redis}`,
      /**
       * Kills MPUSH (SIGKILL: a crash, not a graceful stop, which takes 11 s) and starts it
       * again on the same ports. ZooKeeper and Redis keep running, so resumable sessions
       * (mp:rs:*) and routes survive, as in a real restart. Resolves when the new instance
       * is registered and the old one's ephemeral ZooKeeper nodes are gone.
       */
      async restartServer() {
        const t = Date.now();
        await server.kill();
        procs.splice(procs.indexOf(server), 1);
        server = startServer();
        procs.push(server);
        const wait = () =>
          waitUntil("MPUSH to register again after the restart", () => registered(nodeIds), {
            procs: [server, api],
            extraTail: () => fileTail(mpushLog),
          });
        await wait();
        // The PushApi learns that the old nodes are gone from a ZooKeeper watch a moment after
        // they are gone, and then closes its connections to that host:port, the new server's
        // too. Let that happen, then ask again (which reconnects; see PushApi.connectedTo).
        await sleep(500);
        const again = await wait();
        nodeIds = new Set(again.ids);
        log(`real-mpush: restarted in ${Date.now() - t} ms`);
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Only the PushApi, against the user's deployment (see startRealMpush). */
async function startPushApiForExisting(log) {
  const env = process.env;
  const m = /^(.+):(\d+)$/.exec(env.MPUSH_EXISTING);
  if (!m) throw new Error(`MPUSH_EXISTING wants host:port, got ${env.MPUSH_EXISTING}`);
  for (const v of ["MPUSH_EXISTING_PUBLIC_KEY", "MPUSH_EXISTING_ZK", "MPUSH_EXISTING_REDIS"]) {
    if (!env[v]) {
      throw new Error(
        `${v} is required with MPUSH_EXISTING (the PushApi finds gateway servers in ZooKeeper ` +
          "and user routes in Redis, like MPUSH's own PushSender)",
      );
    }
  }
  const dir = tempDir("real-mpush-existing-");
  const redisNodes = env.MPUSH_EXISTING_REDIS.split(",").map((s) => s.trim());
  const known = mpushReferenceKeys();
  const entries = [
    ["mp.home", dir],
    ["mp.log-dir", path.join(dir, "logs")],
    ["mp.log-level", "info"],
    ["mp.zk.server-address", env.MPUSH_EXISTING_ZK],
    ["mp.redis.nodes", redisNodes],
    // MPUSH's own switch: several nodes are a Redis Cluster unless said otherwise
    ["mp.redis.cluster-model", env.MPUSH_EXISTING_REDIS_MODE || (redisNodes.length > 1 ? "cluster" : "single")],
  ];
  if (env.MPUSH_EXISTING_ZK_NAMESPACE) entries.push(["mp.zk.namespace", env.MPUSH_EXISTING_ZK_NAMESPACE]);
  if (env.MPUSH_EXISTING_ZK_DIGEST) entries.push(["mp.zk.digest", env.MPUSH_EXISTING_ZK_DIGEST]);
  const lines = entries.map(([k, v]) => {
    if (!known.has(k)) throw new Error(`${k} is not a key of MPUSH's reference.conf`);
    return `${k}=${hocon(v)}`;
  });
  fs.writeFileSync(path.join(dir, "pushapi.conf"), lines.join("\n") + "\n");
  const api = startPushApi(path.join(dir, "pushapi.conf"), path.join(dir, "pushapi.out"), dir);
  const listening = api.nextLine(/push-api: listening on (http:\/\/\S+)/);
  const stop = async () => {
    await api.kill();
    removeDir(dir);
  };
  try {
    const pushApiUrl = await waitUntil("the PushApi's listening line", async () => {
      const x = await Promise.race([listening, sleep(100).then(() => null)]);
      return x ? x[1] : { ok: false };
    }, { procs: [api] });
    await waitUntil("a gateway server in the existing ZooKeeper", async () => {
      const h = await getJson(`${pushApiUrl}/health`);
      return h.status === 200 ? h : { ok: false, state: h };
    }, { procs: [api] });
    log(
      `real-mpush: using the existing MPUSH at ${env.MPUSH_EXISTING} (its own heartbeat bounds and ` +
        `dns-mapping apply; the ones asked for here do not); PushApi ${pushApiUrl}`,
    );
    return {
      name: "real-mpush",
      connectHost: m[1],
      connectPort: Number(m[2]),
      pushApiUrl,
      publicKey: env.MPUSH_EXISTING_PUBLIC_KEY,
      dir,
      // the servers are elsewhere: only PushSender's race can be read here
      pushLogs: { servers: [], sender: path.join(dir, "logs", "push-mpush.log") },
      existing: true,
      async restartServer() {
        throw new Error("restartServer() is not available against an existing MPUSH deployment");
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ------------------------------------------------------------------------------------------
// MPUSH 0.8.0's push races

// PushSender's success, with its code (1) when the result carries codes.
const SUCCESS = (r) => (r.code === undefined ? { result: "success" } : { result: "success", code: 1 });

/**
 * MPUSH 0.8.0 has two races that report a delivered push as "timeout", both seen in CI on
 * loopback, where the other side answers within microseconds:
 *
 *  - the ack race (server): SingleUserPushTask adds the push's AckTask only once the write to
 *    the client has completed; a client that acks inside that gap is answered with nothing,
 *    MPUSH's push log says "receive client ack, but task timeout" and PushSender later gets
 *    timeout although the client acked (about 1 push in 100);
 *  - the gateway-response race (PushSender): PushRequest sends the GatewayPushMessage and only
 *    then registers itself under the message's session id; a connection server that answers
 *    first finds no request, PushSender's push log says "receive a gateway response, but
 *    request has timeout. message=OkMessage{... "userId":"..."}" and the request times out.
 *
 * `pushRaces(stack)` reads the push logs of the stack's MPUSH nodes and PushSender: `mark()`
 * before a push, `explain(results, mark)` after it, with PushSender's results
 * (`[{ userId, result, code? }]`). A timeout counts as the success it was only when a log line
 * written during that push shows it: an OkMessage naming that user (the gateway-response
 * race), or an early ack (the ack race, counted: its line names no user). Each such line is
 * passed to `say`, and the result gets `race` naming it; every other timeout stays a timeout.
 * Stacks without those logs (the gateway, whose push API has neither race) get their results
 * back unchanged.
 */
export function pushRaces(stack, say = () => {}) {
  const servers = stack.pushLogs?.servers ?? [];
  const sender = stack.pushLogs?.sender ?? null;
  const size = (f) => (f && fs.existsSync(f) ? fs.statSync(f).size : 0);
  const linesSince = (f, at) =>
    f && fs.existsSync(f) ? fs.readFileSync(f).subarray(at).toString("utf8").split("\n") : [];
  return {
    mark: () => ({ servers: servers.map(size), sender: size(sender) }),
    explain(results, mark) {
      if (!results.some((r) => r.result === "timeout")) return results;
      const answers = linesSince(sender, mark.sender).filter(
        (l) => l.includes("receive a gateway response, but request has timeout") && l.includes("message=OkMessage"),
      );
      const acks = servers
        .flatMap((f, i) => linesSince(f, mark.servers[i] ?? 0))
        .filter((l) => l.includes("receive client ack, but task timeout"));
      return results.map((r) => {
        if (r.result !== "timeout") return r;
        const i = answers.findIndex((l) => l.includes(`"userId":"${r.userId}"`));
        if (i >= 0) {
          const [line] = answers.splice(i, 1);
          say(`MPUSH 0.8.0's gateway-response race: PushSender read the server's OK before it waited for it; counted as success: ${line.trim()}`);
          return { ...r, ...SUCCESS(r), race: "gateway-response" };
        }
        if (acks.length) {
          const line = acks.shift();
          say(`MPUSH 0.8.0's ack race: the server read the client's ack before it waited for it; counted as success: ${line.trim()}`);
          return { ...r, ...SUCCESS(r), race: "ack" };
        }
        return r;
      });
    },
  };
}

// ------------------------------------------------------------------------------------------
// our gateway and proxy

const tomlString = (s) => JSON.stringify(String(s));

/**
 * mpush-gateway (target/debug/mpush-gateway, or MPUSH_GATEWAY_BIN) with the same keys and
 * heartbeat bounds, the HTTP proxy enabled for exactly the dnsMapping hosts (mapped the same
 * way), on free ports.
 */
export async function startGateway({
  keys = testKeyPair(),
  minHeartbeat = 4000,
  maxHeartbeat = 4000,
  dnsMapping = {},
  log = () => {},
} = {}) {
  const bin = need(
    process.env.MPUSH_GATEWAY_BIN || path.join(ROOT, "target", "debug", "mpush-gateway"),
    "build it with `cargo build -p mpush-gateway` or set MPUSH_GATEWAY_BIN",
  );
  const t0 = Date.now();
  const dir = tempDir("mpush-gateway-");
  const [connectPort, apiPort] = await freePorts(2);
  const hosts = Object.keys(dnsMapping || {});
  const mapping = hosts.map((h) => `${tomlString(h)} = [${[].concat(dnsMapping[h]).map(tomlString).join(", ")}]`);
  const config = [
    `listen = "127.0.0.1:${connectPort}"`,
    `api-listen = "127.0.0.1:${apiPort}"`,
    "",
    "[security]",
    `private-key = ${tomlString(keys.privateKey)}`,
    `public-key = ${tomlString(keys.publicKey)}`,
    "",
    "[core]",
    `min-heartbeat = ${minHeartbeat}`,
    `max-heartbeat = ${maxHeartbeat}`,
    "",
    "[http]",
    "proxy-enabled = true",
    // MPUSH proxies to any host; the gateway only to allowlisted ones: allow the mapped hosts.
    `allow = [${hosts.map(tomlString).join(", ")}]`,
    `dns-mapping = { ${mapping.join(", ")} }`,
    "",
  ].join("\n");
  const configFile = path.join(dir, "gateway.toml");
  fs.writeFileSync(configFile, config);

  let proc;
  const start = async () => {
    proc = startGuarded("mpush-gateway", bin, ["--config", configFile], { logFile: path.join(dir, "gateway.log"), cwd: dir });
    const line = proc.nextLine(/^mpush-gateway: MPUSH on (\S+), push API on (\S+)/);
    await waitUntil("mpush-gateway to listen", async () => {
      const m = await Promise.race([line, sleep(100).then(() => null)]);
      return m && (await tcpAccepts(connectPort)) ? true : { ok: false };
    }, { procs: [proc] });
  };
  const stop = async () => {
    if (proc) await proc.kill();
    removeDir(dir);
  };
  try {
    await start();
  } catch (e) {
    await stop();
    throw e;
  }
  const pushApiUrl = `http://127.0.0.1:${apiPort}`;
  log(`gateway: ready in ${Date.now() - t0} ms: MPUSH protocol on 127.0.0.1:${connectPort}, push API ${pushApiUrl}`);
  return {
    name: "gateway",
    connectHost: "127.0.0.1",
    connectPort,
    pushApiUrl,
    publicKey: keys.publicKey,
    dir,
    /** Kills the gateway and starts it again on the same ports (its sessions are in memory: gone). */
    async restartServer() {
      await proc.kill();
      await start();
      log("gateway: restarted");
    },
    stop,
  };
}

/**
 * mpush-proxy (target/debug/mpush-proxy, or MPUSH_PROXY_BIN) in front of `upstream`
 * ("host:port"), any Origin allowed, HTTP-proxy packets forwarded to the server.
 * `restart()` kills it (browsers see close code 1006) and starts it on the same port.
 */
export async function startProxy({ upstream, zk, log = () => {} } = {}) {
  // `zk` ("host:port"): the connection servers come from that ZooKeeper (MPUSH's registry,
  // namespace and digest "mpush") instead of `upstream`.
  if (zk ? !/^[^:]+:\d+$/.test(zk) : !/^[^:]+:\d+$/.test(upstream || "")) {
    throw new Error(`startProxy wants upstream or zk "host:port", got ${upstream ?? zk}`);
  }
  const bin = need(
    process.env.MPUSH_PROXY_BIN || path.join(ROOT, "target", "debug", "mpush-proxy"),
    "build it with `cargo build -p mpush-proxy` or set MPUSH_PROXY_BIN",
  );
  const dir = tempDir("mpush-proxy-");
  const port = await freePort();
  const args = [
    "--listen", `127.0.0.1:${port}`,
    ...(zk ? ["--zk", zk] : ["--upstream", upstream]),
    "--allowed-origin", "*",
    "--http-proxy", "forward",
    "--log-format", "json",
  ];
  let proc;
  const start = async () => {
    proc = startGuarded("mpush-proxy", bin, args, { logFile: path.join(dir, "proxy.log"), cwd: dir });
    await waitUntil("mpush-proxy to listen", async () => ((await tcpAccepts(port)) ? true : { ok: false }), {
      procs: [proc],
    });
  };
  const stop = async () => {
    if (proc) await proc.kill();
    removeDir(dir);
  };
  try {
    await start();
  } catch (e) {
    await stop();
    throw e;
  }
  log(`proxy: ws://127.0.0.1:${port}/mpush -> ${zk ? `ZooKeeper ${zk}` : upstream}`);
  return {
    wsUrl: `ws://127.0.0.1:${port}/mpush`,
    httpUrl: `http://127.0.0.1:${port}`,
    port,
    dir,
    async restart() {
      await proc.kill();
      await start();
    },
    stop,
  };
}

// ------------------------------------------------------------------------------------------
// an MPUSH cluster

/**
 * ZooKeeper + Redis + `nodes` MPUSH 0.8.0 servers registered in them (each with its own ports,
 * home and logs; the same key pair, so a session made on one resumes on another) + one
 * PushApi, whose PushSender finds every gateway server in ZooKeeper and routes each push by
 * the user's route in Redis, as an MPUSH application server does.
 *
 * `stopNode(i)` kills node i (SIGKILL, a crash) and resolves once its ZooKeeper nodes are gone;
 * `startNode(i)` starts it again on its ports and resolves once it is registered and the
 * PushApi is connected to it. `stopZooKeeper()` kills ZooKeeper (SIGKILL); `startZooKeeper()`
 * starts it again on the same port and data dir (sessions and ephemeral nodes are restored,
 * as after a real ZooKeeper restart).
 *
 * @returns {Promise<{name: "mpush-cluster", zookeeper: string, redis: string, pushApiUrl: string,
 *   publicKey: string, dir: string, nodes: {connectPort: number, gatewayPort: number}[],
 *   stopNode(i: number): Promise<void>, startNode(i: number): Promise<void>,
 *   stopZooKeeper(): Promise<void>, startZooKeeper(): Promise<void>, stop(): Promise<void>}>}
 */
export async function startRealMpushCluster({
  nodes: count = 2,
  keys = testKeyPair(),
  minHeartbeat = 4000,
  maxHeartbeat = 4000,
  log = () => {},
} = {}) {
  ensureBuilt(log);
  const t0 = Date.now();
  const dir = tempDir("mpush-cluster-");
  const procs = new Set();
  const stop = async () => {
    await Promise.all([...procs].map((p) => p.kill()));
    removeDir(dir);
  };
  try {
    const [zk, redis] = await freePorts(2);
    fs.mkdirSync(path.join(dir, "zk"));
    fs.writeFileSync(
      path.join(dir, "zk.cfg"),
      `tickTime=250\ndataDir=${path.join(dir, "zk")}\nclientPort=${zk}\nclientPortAddress=127.0.0.1\n`,
    );
    // As in startRealMpush: ZooKeeper 3.4.8 from MPUSH's own dependencies, 2 s sessions.
    const startZk = () =>
      startJava("zookeeper", "org.apache.zookeeper.server.ZooKeeperServerMain", [path.join(dir, "zk.cfg")], {
        logFile: path.join(dir, "zookeeper.out"),
        heap: "48m",
        cwd: dir,
        jvmArgs: [`-Dlog.home=${path.join(dir, "logs", "zookeeper")}`, "-Dlog.root.level=info", "-Dzookeeper.jmx.log4j.disable=true"],
      });
    let zkProc = startZk();
    procs.add(zkProc);
    const redisProc = startGuarded(
      "redis",
      "redis-server",
      ["--bind", "127.0.0.1", "--port", String(redis), "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"],
      { logFile: path.join(dir, "redis.log"), cwd: dir },
    );
    procs.add(redisProc);
    await Promise.all([
      waitUntil("ZooKeeper", async () => (await tcpAccepts(zk)) || { ok: false }, { procs: [zkProc] }),
      waitUntil("Redis", async () => (await tcpAccepts(redis)) || { ok: false }, { procs: [redisProc] }),
    ]);

    // One home per node (its mpush.conf, logs and dumps); the ports differ, ZooKeeper, Redis
    // and the keys are shared.
    const nodes = [];
    for (let i = 0; i < count; i++) {
      const [connect, gateway, admin, gatewayClient] = await freePorts(4);
      const home = path.join(dir, `node${i}`);
      fs.mkdirSync(home);
      const ports = { zk, redis, connect, gateway, admin, gatewayClient };
      const confFile = path.join(home, "mpush.conf");
      fs.writeFileSync(confFile, mpushConf({ dir: home, logDir: path.join(home, "logs"), keys, minHeartbeat, maxHeartbeat, ports }));
      nodes.push({ index: i, home, confFile, connectPort: connect, gatewayPort: gateway, proc: null, ids: new Set() });
    }
    const apiConfFile = path.join(dir, "pushapi.conf");
    const first = nodes[0];
    fs.writeFileSync(
      apiConfFile,
      mpushConf({
        dir,
        logDir: path.join(dir, "logs", "pushapi"),
        keys,
        minHeartbeat,
        maxHeartbeat,
        ports: { zk, redis, connect: first.connectPort, gateway: first.gatewayPort, admin: 0, gatewayClient: 0 },
      }),
    );
    const startServer = (n) => {
      n.proc = startJava(`mpush${n.index}`, "com.mpush.bootstrap.Main", [], {
        logFile: path.join(n.home, "mpush.out"),
        heap: "128m",
        conf: n.confFile,
        cwd: n.home,
      });
      procs.add(n.proc);
    };
    for (const n of nodes) startServer(n);
    const api = startPushApi(apiConfFile, path.join(dir, "pushapi.out"), dir);
    procs.add(api);
    const listening = api.nextLine(/push-api: listening on (http:\/\/\S+)/);
    const pushApiUrl = await waitUntil("the PushApi's listening line", async () => {
      const m = await Promise.race([listening, sleep(100).then(() => null)]);
      return m ? m[1] : { ok: false };
    }, { procs: [api] });

    // The PushApi's view of ZooKeeper: node n is registered (connect and gateway server, not
    // an instance in `exclude`) and PushSender is connected to its gateway server.
    const registered = async (n, exclude = new Set()) => {
      const h = await getJson(`${pushApiUrl}/health`);
      if (h.status !== 200 || !h.body || typeof h.body !== "object") return { ok: false, state: h };
      const cs = (h.body.connectServers || []).filter((x) => x.node && x.node.port === n.connectPort && !exclude.has(x.id));
      const gs = (h.body.gatewayServers || []).filter(
        (x) => x.node && x.node.port === n.gatewayPort && x.connected && !exclude.has(x.id),
      );
      const stale = [...(h.body.connectServers || []), ...(h.body.gatewayServers || [])].filter((x) => exclude.has(x.id));
      if (!cs.length || !gs.length || stale.length) return { ok: false, state: h.body };
      if (!(await tcpAccepts(n.connectPort))) return { ok: false, state: "connect port not accepting" };
      return { ok: true, ids: [...cs, ...gs].map((x) => x.id) };
    };
    const gone = async (n) => {
      const h = await getJson(`${pushApiUrl}/health`);
      const all = h.body && typeof h.body === "object" ? [...(h.body.connectServers || []), ...(h.body.gatewayServers || [])] : [];
      return all.some((x) => n.ids.has(x.id)) ? { ok: false, state: h.body } : true;
    };
    // `exclude`: the ids of the node's previous instance, which must be gone.
    const waitRegistered = async (n, what, exclude = new Set()) => {
      const r = await waitUntil(what, () => registered(n, exclude), {
        procs: [n.proc, api, zkProc],
        extraTail: () => fileTail(path.join(n.home, "logs", "mpush.log")),
      });
      n.ids = new Set(r.ids);
    };
    await Promise.all(nodes.map((n) => waitRegistered(n, `MPUSH node ${n.index} to register and accept connections`)));
    log(
      `mpush-cluster: ready in ${Date.now() - t0} ms: ${nodes.map((n) => `MPUSH ${n.index} on 127.0.0.1:${n.connectPort}`).join(", ")}, ` +
        `PushApi ${pushApiUrl}, ZooKeeper ${zk}, Redis ${redis}, dir ${dir}`,
    );

    return {
      name: "mpush-cluster",
      zookeeper: `127.0.0.1:${zk}`,
      redis: `127.0.0.1:${redis}`,
      pushApiUrl,
      publicKey: keys.publicKey,
      dir,
      pushLogs: {
        servers: nodes.map((n) => path.join(n.home, "logs", "push-mpush.log")),
        sender: path.join(dir, "logs", "pushapi", "push-mpush.log"),
      },
      nodes: nodes.map((n) => ({ connectPort: n.connectPort, gatewayPort: n.gatewayPort })),
      async stopNode(i) {
        const n = nodes[i];
        await n.proc.kill();
        procs.delete(n.proc);
        await waitUntil(`MPUSH node ${i}'s ZooKeeper nodes to go`, () => gone(n), { procs: [api, zkProc] });
        log(`mpush-cluster: node ${i} stopped`);
      },
      async startNode(i) {
        const n = nodes[i];
        const old = n.ids;
        startServer(n);
        await waitRegistered(n, `MPUSH node ${i} to register again`, old);
        // As in restartServer: the PushApi drops connections to a host:port whose old nodes
        // it sees go; ask again once that has settled.
        await sleep(500);
        await waitRegistered(n, `MPUSH node ${i} to stay registered`, old);
        log(`mpush-cluster: node ${i} started`);
      },
      async stopZooKeeper() {
        await zkProc.kill();
        procs.delete(zkProc);
        log("mpush-cluster: ZooKeeper stopped");
      },
      async startZooKeeper() {
        zkProc = startZk();
        procs.add(zkProc);
        await waitUntil("ZooKeeper to accept connections again", async () => (await tcpAccepts(zk)) || { ok: false }, {
          procs: [zkProc],
        });
        log("mpush-cluster: ZooKeeper started");
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
