// An MPUSH cluster behind one mpush-proxy that knows only ZooKeeper (`--zk`): two real MPUSH
// 0.8.0 connection servers registered in one ZooKeeper, sessions and routes in one Redis,
// browser clients (the packed npm package in headless Chromium) spread over both, pushes by
// MPUSH's PushSender (the PushApi). Steps, each printed as PASS/FAIL:
//
//   1. new sessions spread over both nodes (least connections); a push reaches every client
//   2. node 0 stops: its clients reconnect through the same proxy URL to node 1 with a fast
//      connect (the session is in Redis); a push reaches every client; new sessions go to
//      node 1 only
//   3. ZooKeeper stops: no session drops, the proxy serves from the last known nodes and says
//      so (/readyz, metrics); a push still reaches every client
//   4. ZooKeeper comes back: the registry reconnects; node 0 starts again and the proxy's node
//      set follows; new sessions go to node 0 again; nothing dropped meanwhile
//
//   node tests/real-mpush/cluster.mjs        (tests/real-mpush/run.sh runs it)
//   VERBOSE=1  the servers' and the proxy's progress lines
//
// Which node a client is on: MPUSH's route in Redis (mp:ur:<user>, the gateway server's port
// of the node holding the connection) and the proxy's per-node metrics.

import { execFileSync } from "node:child_process";

import { launchChromium, requireVendoredPackage, startPageServer } from "./pages.mjs";
import { pushRaces, testKeyPair, startRealMpushCluster, startProxy } from "./stacks.mjs";
const SERVER_HB = { minHeartbeat: 3000, maxHeartbeat: 4000 };
const CLIENT_HB = { minHeartbeat: 2000, maxHeartbeat: 3500 };
const WAIT_MS = Number(process.env.CLUSTER_WAIT_MS || 30000);

const log = (...a) => console.log(...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// Clients: one page (own browser context, own storage and device id) per client, bound to its
// own user after every (re)connect through the package's userId option.

class Client {
  constructor(page, id, user) {
    this.page = page;
    this.id = id;
    this.user = user;
  }

  call(method, ...args) {
    return this.page.evaluate(([m, id, a]) => window.h[m](id, ...a), [method, this.id, args]);
  }

  log() {
    return this.call("log");
  }

  /** Waits until the log has an entry matching `pred`, from index `from` on. */
  async waitEvent(pred, what, from = 0) {
    const until = Date.now() + WAIT_MS;
    for (;;) {
      const hit = (await this.log()).slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > until) throw new Error(`${this.user}: timed out waiting for ${what}; log: ${JSON.stringify(await this.log())}`);
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The proxy's view: /metrics and /readyz.

async function metrics(proxy) {
  const text = await (await fetch(`${proxy.httpUrl}/metrics`)).text();
  const get = (name, label) => {
    const re = new RegExp(`^${name}\\{upstream="${label.replace(/\./g, "\\.")}"[^}]*\\} (\\d+)$`, "m");
    const m = re.exec(text);
    return m ? Number(m[1]) : 0;
  };
  const registry = /^mpush_proxy_registry_connected (\d+)$/m.exec(text);
  return {
    text,
    connections: (addr) => get("mpush_proxy_upstream_connections", addr),
    sessions: (addr) => get("mpush_proxy_upstream_sessions_total", addr),
    registryConnected: registry ? Number(registry[1]) === 1 : null,
    registryEvents: (event) => {
      const m = new RegExp(`^mpush_proxy_registry_events_total\\{event="${event}"\\} (\\d+)$`, "m").exec(text);
      return m ? Number(m[1]) : 0;
    },
  };
}

async function readyz(proxy) {
  const r = await fetch(`${proxy.httpUrl}/readyz`);
  return { status: r.status, body: await r.text() };
}

async function waitFor(what, check) {
  const until = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    last = await check();
    if (last && last.ok !== false) return last;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last && last.state)}`);
    await sleep(100);
  }
}

function expect(cond, msg) {
  if (!cond) throw new Error(`expectation failed: ${msg}`);
}

// ---------------------------------------------------------------------------------------

async function main() {
  requireVendoredPackage();
  const quiet = (name) => (line) => { if (process.env.VERBOSE) log(`    [${name}] ${line}`); };
  const keys = testKeyPair();
  const pages = await startPageServer();
  const pageBase = `http://127.0.0.1:${pages.address().port}/`;
  let cluster;
  let proxy;
  let browser;
  let passed = 0;
  let failed = 0;
  const t0 = Date.now();
  try {
    [cluster, browser] = await Promise.all([
      startRealMpushCluster({ nodes: 2, keys, ...SERVER_HB, log: quiet("cluster") }),
      launchChromium(),
    ]);
    proxy = await startProxy({ zk: cluster.zookeeper, log: quiet("proxy") });
    const addr = cluster.nodes.map((n) => `127.0.0.1:${n.connectPort}`);
    const redisPort = cluster.redis.split(":")[1];
    log(`# cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s: MPUSH ${addr.join(", ")}, proxy ${proxy.wsUrl} (--zk ${cluster.zookeeper} only)`);

    const clients = [];
    let seq = 0;
    const newClient = async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      page.on("pageerror", (e) => log(`    [page error] ${e.message}`));
      await page.goto(pageBase);
      await page.waitForFunction(() => window.h && window.h.ready, null, { timeout: 20000 });
      const user = `cluster-${process.pid}-${++seq}`;
      const id = await page.evaluate((o) => window.h.create(o), {
        url: proxy.wsUrl,
        publicKey: cluster.publicKey,
        ...CLIENT_HB,
        userId: user,
        storage: "local",
        storageKey: "cluster:",
        reconnect: { minDelay: 200, maxDelay: 1000 },
        requestTimeout: 5000,
      });
      const c = new Client(page, id, user);
      const r = await c.call("connect");
      expect(r.ok, `${user}: connect failed: ${JSON.stringify(r)}`);
      await c.waitEvent((e) => e.ev === "bind", "the automatic bind");
      clients.push(c);
      return c;
    };
    // The gateway-server port in the user's MPUSH route names the node holding it.
    const nodeOf = (c) => {
      const out = execFileSync("redis-cli", ["-p", redisPort, "--raw", "hgetall", `mp:ur:${c.user}`], { encoding: "utf8" });
      const routes = out.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((r) => !r.offline);
      const i = cluster.nodes.findIndex((n) => routes.some((r) => r.port === n.gatewayPort));
      return i;
    };
    let pushSeq = 0;
    // MPUSH 0.8.0's push races (stacks.mjs, pushRaces): a timeout counts as the success it was
    // only when a node's or PushSender's push log shows the early ack or answer during this
    // push, and is said. Pushes here ask for no ack (the ack race then cannot happen);
    // delivery is checked in every client's own log as well.
    const races = pushRaces(cluster, (line) => log(`  ${line}`));
    const pushResults = async (text, freshRoutes) => {
      const mark = races.mark();
      const r = await fetch(`${cluster.pushApiUrl}/push`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ userIds: clients.map((c) => c.user), content: text, ack: "none", timeoutMs: 8000, freshRoutes }),
      });
      const body = await r.text();
      expect(r.ok, `push API ${r.status}: ${body}`);
      return races.explain(JSON.parse(body).results, mark).map((x) => x.result);
    };
    /**
     * A push through PushSender to every client; each must get it. Once a node has failed,
     * `freshRoutes`: PushSender keeps routes 5 minutes and a failed push does not drop them
     * (see the failover push step), so the application server must read them again.
     */
    const pushAll = async (freshRoutes = false) => {
      const text = `cluster push ${++pushSeq}`;
      const marks = await Promise.all(clients.map(async (c) => (await c.log()).length));
      const results = await pushResults(text, freshRoutes);
      expect(results.every((x) => x === "success"), `PushSender results ${JSON.stringify(results)}`);
      await Promise.all(clients.map((c, i) => c.waitEvent((e) => e.ev === "push" && e.text === text, `push "${text}"`, marks[i])));
      return results.length;
    };
    const drops = async (marks) => {
      const out = [];
      for (const [i, c] of clients.entries()) {
        const since = (await c.log()).slice(marks[i] ?? 0);
        const bad = since.filter((e) => e.ev === "disconnect" || e.ev === "reconnecting" || e.ev === "connect");
        if (bad.length) out.push(`${c.user}: ${JSON.stringify(bad)}`);
      }
      return out;
    };

    const step = async (name, fn) => {
      const t = Date.now();
      try {
        const note = await fn();
        passed++;
        log(`PASS cluster ${name}${note ? `: ${note}` : ""} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
        return true;
      } catch (e) {
        failed++;
        log(`FAIL cluster ${name}: ${e.message}`);
        return false;
      }
    };

    await waitFor("the proxy to list both nodes from ZooKeeper", async () => {
      const r = await readyz(proxy);
      return r.status === 200 && addr.every((a) => r.body.includes(a)) && r.body.includes("registry: connected") ? r : { ok: false, state: r };
    });

    const ok1 = await step("sessions spread over both nodes", async () => {
      for (let i = 0; i < 4; i++) await newClient();
      const m = await metrics(proxy);
      const counts = addr.map((a) => m.connections(a));
      expect(counts[0] === 2 && counts[1] === 2, `least connections: want 2 and 2 sessions, proxy has ${counts}`);
      const on = clients.map(nodeOf);
      expect(on.filter((i) => i === 0).length === 2 && on.filter((i) => i === 1).length === 2, `MPUSH routes: nodes ${on}`);
      return `proxy per node ${counts.join("/")}, MPUSH routes agree`;
    });
    if (ok1) await step("a push before the failover reaches every client", async () => `${await pushAll()} clients`);

    const onNode0 = clients.filter((c) => nodeOf(c) === 0);
    await step("node 0 stops: its clients fast connect to node 1 through the same URL", async () => {
      expect(onNode0.length > 0, "no client on node 0");
      const marks = await Promise.all(onNode0.map(async (c) => (await c.log()).length));
      await cluster.stopNode(0);
      const reconnects = await Promise.all(
        onNode0.map((c, i) => c.waitEvent((e) => e.ev === "connect", "the reconnect", marks[i])),
      );
      expect(reconnects.every((e) => e.data && e.data.fast === true), `not all fast connects: ${JSON.stringify(reconnects)}`);
      await Promise.all(onNode0.map((c, i) => c.waitEvent((e) => e.ev === "bind", "the bind after the reconnect", marks[i])));
      const on = onNode0.map(nodeOf);
      expect(on.every((i) => i === 1), `routes after the failover: nodes ${on}`);
      const m = await metrics(proxy);
      expect(m.connections(addr[0]) === 0 && m.connections(addr[1]) === clients.length, `proxy per node ${addr.map((a) => m.connections(a))}`);
      return `${onNode0.length} fast connects, all ${clients.length} sessions on node 1`;
    });
    await step("a push after the failover reaches every client", async () => {
      // What MPUSH's PushSender does by itself: its cached routes still name node 0.
      const stale = await pushResults(`cluster push ${++pushSeq} (cached routes)`, false);
      const failedStale = stale.filter((x) => x !== "success").length;
      const n = await pushAll(true);
      return `${n} clients with the routes read from Redis (PushSender's cached routes: ${failedStale} of ${stale.length} failed)`;
    });
    await step("new sessions go to the live node only", async () => {
      await waitFor("the proxy to drop node 0", async () => {
        const r = await readyz(proxy);
        return r.status === 200 && !r.body.includes(addr[0]) ? r : { ok: false, state: r };
      });
      const before = (await metrics(proxy)).sessions(addr[0]);
      for (let i = 0; i < 2; i++) await newClient();
      const m = await metrics(proxy);
      expect(m.sessions(addr[0]) === before, "a session went to node 0");
      expect(m.connections(addr[1]) === clients.length, `node 1 has ${m.connections(addr[1])} of ${clients.length}`);
      return `${clients.length} sessions on node 1`;
    });

    let marks = await Promise.all(clients.map(async (c) => (await c.log()).length));
    await step("ZooKeeper stops: sessions carry on, the last known node serves", async () => {
      await cluster.stopZooKeeper();
      const r = await waitFor("the proxy to notice", async () => {
        const [m, rz] = await Promise.all([metrics(proxy), readyz(proxy)]);
        return m.registryConnected === false && /registry: unreachable/.test(rz.body) ? { m, rz } : { ok: false, state: rz };
      });
      expect(r.rz.status === 200 && r.rz.body.includes(addr[1]), `/readyz: ${r.rz.status} ${r.rz.body}`);
      const late = await newClient();
      marks.push((await late.log()).length);
      expect(nodeOf(late) === 1, "the new session is not on node 1");
      await pushAll(true);
      // Down longer than the proxy's ZooKeeper session: it gives the session up and retries
      // with backoff, still serving the last known node.
      await waitFor("the proxy's ZooKeeper session to end", async () => ((await metrics(proxy)).registryEvents("session_lost") > 0 ? true : { ok: false }));
      await pushAll(true);
      const dropped = await drops(marks);
      expect(dropped.length === 0, `sessions dropped: ${dropped.join("; ")}`);
      return `/readyz 200 "${r.rz.body.trim().split("\n").pop()}", then the session expired, still serving`;
    });
    await step("ZooKeeper restarts: the registry reconnects and the node set follows", async () => {
      await cluster.startZooKeeper();
      await waitFor("the registry to reconnect", async () => ((await metrics(proxy)).registryConnected ? true : { ok: false }));
      await cluster.startNode(0);
      await waitFor("the proxy to list node 0 again", async () => {
        const r = await readyz(proxy);
        return r.body.includes(addr[0]) && r.body.includes("registry: connected") ? r : { ok: false, state: r };
      });
      const dropped = await drops(marks);
      expect(dropped.length === 0, `sessions dropped: ${dropped.join("; ")}`);
      return "node 0 listed again, no session dropped";
    });
    marks = await Promise.all(clients.map(async (c) => (await c.log()).length));
    await step("node 0 is back: it receives new sessions again", async () => {
      const before = (await metrics(proxy)).connections(addr[0]);
      const fresh = [await newClient(), await newClient()];
      const m = await metrics(proxy);
      expect(m.connections(addr[0]) === before + 2, `node 0 has ${m.connections(addr[0])} sessions (before ${before})`);
      const on = fresh.map(nodeOf);
      expect(on.every((i) => i === 0), `MPUSH routes of the new sessions: nodes ${on}`);
      await pushAll(true);
      return `${clients.length} clients, pushes reach all`;
    });
  } catch (e) {
    failed++;
    log(`FAIL cluster setup: ${e.message}`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (proxy) await proxy.stop().catch(() => {});
    if (cluster) await cluster.stop().catch(() => {});
    pages.close();
  }
  log(`cluster interop: ${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
