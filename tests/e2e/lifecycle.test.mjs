// The connection lifecycle as a developer sees it, in headless Chromium against real
// mpush-proxy processes (embedded gateway): every failure settles or explains itself.
//   refused origin, wrong path  -> CONNECT_FAILED with a hint; ATTEMPT_LIMIT (cause: that) with maxAttempts
//   wrong key                   -> HANDSHAKE_REFUSED (serverCode 100), no retries
//   attempt limit               -> "reconnecting" payloads 1..n, then ATTEMPT_LIMIT, state "closed"
//   offline, online             -> state "offline", then a probe heartbeat at once and "ready";
//                                  a connection lost while offline waits, then connects at once
//   proxy restart               -> "reconnecting" with the close code and reason, then ready again
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { Stack, freePort, launchChromium } from "./stack.mjs";
import { demoConfig, openClientPage } from "./client-page.mjs";

let stack;
let browser;
let cfg;

before(async () => {
  stack = await new Stack().start();
  cfg = await demoConfig(stack);
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

async function withPage(fn) {
  const context = await browser.newContext();
  try {
    return await fn(await openClientPage(context, stack), context);
  } finally {
    await context.close();
  }
}

/** Connects a new client with `options` in the page; returns how connect() settled and the events. */
function connectOnce(page, options) {
  return page.evaluate(async (options) => {
    const c = new mp.MPushClient({ storage: "memory", ...options });
    const log = track(c);
    let result;
    try {
      result = { resolved: plain(await c.connect()) };
    } catch (e) {
      result = { rejected: plain(e) };
    }
    const out = { ...result, state: c.state, log };
    c.close();
    return out;
  }, options);
}

const events = (log, ev) => log.filter((e) => e.ev === ev).map((e) => e.p);

async function rejections(proxy, reason) {
  const text = await (await fetch(`${proxy.base}/metrics`)).text();
  const m = text.match(new RegExp(`mpush_proxy_handshake_rejections_total\\{reason="${reason}"\\} (\\d+)`));
  return m ? Number(m[1]) : NaN;
}

function assertHint(e) {
  assert.equal(e.code, "CONNECT_FAILED");
  assert.match(e.message, /closed before it opened/);
  assert.match(e.message, /origin/);
  assert.match(e.message, /path/);
  assert.match(e.message, /proxy is down/);
}

test("a refused origin: each attempt fails with CONNECT_FAILED and its hint, connect() settles with ATTEMPT_LIMIT", async () => {
  // A second proxy that allows a dev server's origin only, not this page's.
  const other = await new Stack({ extraOrigins: ["http://localhost:5173"] }).start();
  try {
    const r = await withPage((page) => connectOnce(page, {
      url: `ws://127.0.0.1:${other.port}/mpush`,
      publicKey: cfg.key,
      reconnect: { minDelay: 20, maxDelay: 60, maxAttempts: 2 },
    }));
    assert.equal(r.rejected?.code, "ATTEMPT_LIMIT", JSON.stringify(r));
    assert.match(r.rejected.message, /2 failed reconnect attempts/);
    assertHint(r.rejected.cause);
    assert.equal(r.state, "closed");
    const attempts = events(r.log, "reconnecting");
    assert.deepEqual(attempts.map((p) => p.attempt), [1, 2]);
    for (const p of attempts) {
      assert.equal(p.code, 1006);
      assert.ok(p.delay >= 20 && p.delay <= 60, `delay ${p.delay}`);
      assertHint(p.error);
    }
    const errors = events(r.log, "error").map((e) => e.code);
    assert.deepEqual(errors, ["CONNECT_FAILED", "CONNECT_FAILED", "CONNECT_FAILED", "ATTEMPT_LIMIT"]);
    // The proxy did refuse the origin: three upgrade requests, three origin rejections.
    assert.equal(await rejections(other, "origin"), 3);
  } finally {
    await other.stop();
  }
});

test("a wrong path: connect() without reconnect rejects with CONNECT_FAILED naming the URL and the usual causes", async () => {
  const url = `ws://127.0.0.1:${stack.port}/not-the-ws-path`;
  const r = await withPage((page) => connectOnce(page, { url, publicKey: cfg.key, reconnect: false }));
  assertHint(r.rejected);
  assert.ok(r.rejected.message.includes(url), r.rejected.message);
  assert.equal(r.state, "closed");
  assert.deepEqual(events(r.log, "error").map((e) => e.code), ["CONNECT_FAILED"]);
  assert.deepEqual(events(r.log, "reconnecting"), []);
});

test("a wrong public key: connect() rejects with HANDSHAKE_REFUSED (server code 100) and never retries", async () => {
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const wrongKey = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  const r = await withPage((page) => connectOnce(page, { url: cfg.ws, publicKey: wrongKey }));
  assert.equal(r.rejected?.code, "HANDSHAKE_REFUSED", JSON.stringify(r));
  assert.equal(r.rejected.serverCode, 100);
  assert.match(r.rejected.message, /publicKey/);
  assert.equal(r.state, "closed");
  assert.deepEqual(events(r.log, "reconnecting"), []);
  assert.deepEqual(events(r.log, "connect"), []);
});

test("the attempt limit: reconnecting payloads count 1..maxAttempts, then ATTEMPT_LIMIT with the last failure as cause", async () => {
  const port = await freePort(); // nothing listens there: a proxy that is down
  const r = await withPage((page) => connectOnce(page, {
    url: `ws://127.0.0.1:${port}/mpush`,
    publicKey: cfg.key,
    reconnect: { minDelay: 10, maxDelay: 40, maxAttempts: 3 },
  }));
  assert.equal(r.rejected?.code, "ATTEMPT_LIMIT", JSON.stringify(r));
  assert.match(r.rejected.message, /3 failed reconnect attempts/);
  assertHint(r.rejected.cause);
  assert.deepEqual(events(r.log, "reconnecting").map((p) => p.attempt), [1, 2, 3]);
  const states = events(r.log, "state");
  assert.deepEqual(states, ["connecting", "reconnecting", "closed"]);
});

test("offline then online: state 'offline', then a probe heartbeat at once and 'ready' on the same session", async () => {
  await withPage(async (page, context) => {
    await page.evaluate(async ({ url, publicKey }) => {
      // A heartbeat of minutes: a heartbeat sent right after "online" can only be the probe.
      window.c = new mp.MPushClient({ url, publicKey, storage: "memory", minHeartbeat: 240000 });
      window.log = track(window.c);
      await window.c.connect();
    }, { url: cfg.ws, publicKey: cfg.key });
    assert.equal(await page.evaluate(() => c.state), "ready");

    await context.setOffline(true);
    await page.waitForFunction(() => c.state === "offline", null, { timeout: 5000 });
    const beforeOnline = await page.evaluate(() => log.length);
    await context.setOffline(false);
    await page.waitForFunction((n) => log.slice(n).some((e) => e.ev === "heartbeat"), beforeOnline, { timeout: 5000 });
    await page.waitForFunction(() => c.state === "ready", null, { timeout: 5000 });
    const after = (await page.evaluate(() => log)).slice(beforeOnline);
    // The socket outlived the outage: no disconnect, no new connect, the probe was answered.
    assert.deepEqual(after.filter((e) => e.ev === "disconnect" || e.ev === "connect"), []);
    assert.deepEqual(events(after, "state"), ["ready"]);
    // The probe is answered (the server echoes the heartbeat), so the connection stays up.
    await page.evaluate(() => new Promise((r) => setTimeout(r, 1500)));
    assert.equal(await page.evaluate(() => c.state), "ready");
    await page.evaluate(() => c.close());
  });
});

test("a connection lost while offline waits for 'online' (no attempts, none counted), then connects at once", async () => {
  await withPage(async (page, context) => {
    await page.evaluate(async ({ url, publicKey }) => {
      window.c = new mp.MPushClient({ url, publicKey, storage: "memory", reconnect: { minDelay: 100, maxDelay: 200, maxAttempts: 1 } });
      window.log = track(window.c);
      await window.c.connect();
    }, { url: cfg.ws, publicKey: cfg.key });
    await context.setOffline(true);
    await page.waitForFunction(() => c.state === "offline", null, { timeout: 5000 });
    // The server side goes away while the browser is offline: the socket closes.
    await stack.restart();
    await page.waitForFunction(() => log.some((e) => e.ev === "disconnect"), null, { timeout: 15000 });
    // Still offline: no attempt is scheduled (maxAttempts: 1 would otherwise be used up).
    await page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
    assert.equal(await page.evaluate(() => c.state), "offline");
    await context.setOffline(false);
    await page.waitForFunction(() => log.filter((e) => e.ev === "connect").length === 2, null, { timeout: 15000 });
    const log = await page.evaluate(() => log);
    assert.deepEqual(events(log, "reconnecting"), []);
    assert.deepEqual(events(log, "state"), ["connecting", "handshaking", "ready", "offline", "reconnecting", "handshaking", "ready"]);
    await page.evaluate(() => c.close());
  });
});

test("a proxy restart: 'reconnecting' carries the attempt, the delay and the close code and reason, then the client is ready again", async () => {
  await withPage(async (page) => {
    await page.evaluate(async ({ url, publicKey }) => {
      window.c = new mp.MPushClient({ url, publicKey, storage: "memory", reconnect: { minDelay: 100, maxDelay: 400 } });
      window.log = track(window.c);
      await window.c.connect();
    }, { url: cfg.ws, publicKey: cfg.key });
    await stack.restart();
    await page.waitForFunction(() => log.filter((e) => e.ev === "connect").length === 2, null, { timeout: 20000 });
    const log = await page.evaluate(() => log);
    const [first, ...rest] = events(log, "reconnecting");
    assert.equal(first.attempt, 1);
    assert.ok(first.delay >= 100 && first.delay <= 400, `delay ${first.delay}`);
    assert.equal(typeof first.code, "number");
    assert.equal(typeof first.reason, "string");
    const lost = events(log, "disconnect")[0];
    assert.deepEqual([first.code, first.reason], [lost.code, lost.reason]);
    // The lost connection had been established: its reconnect carries no attempt error.
    assert.equal(first.error, undefined);
    // Attempts while the proxy was down (if any) failed with the hint and counted on.
    rest.forEach((p, i) => {
      assert.equal(p.attempt, i + 2);
      assertHint(p.error);
    });
    assert.equal(await page.evaluate(() => c.state), "ready");
    await page.evaluate(() => c.close());
  });
});
