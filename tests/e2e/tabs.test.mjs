// End-to-end: several tabs of one origin share one MPUSH connection (issue 11), in headless
// Chromium against the embedded stack (mpush-proxy + mpush-gateway). Every page of one browser
// context is a tab of the same origin: they share localStorage, Web Locks and BroadcastChannel.
// The pages import the built package (pkg/, or the directory MPUSH_E2E_PKG names).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ROOT, Stack, freePort, launchChromium } from "./stack.mjs";

const PKG = process.env.MPUSH_E2E_PKG || path.join(ROOT, "pkg");
const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm" };

// In the page: `openClient(options)` makes a client, records its events as plain data in
// `log` (pushes as { text, id, ackMode }) and keeps the push objects in `pushes`.
const SCRIPT = `
  import init, * as mp from "/__tabs-pkg/index.js";
  await init();
  const plain = (v) => v instanceof Error ? { name: v.name, code: v.code, message: v.message, cause: plain(v.cause) }
    : v instanceof mp.MPushMessage ? { text: v.text(), id: v.id, ackMode: v.ackMode }
    : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) : v;
  window.mp = mp;
  window.openClient = (options) => {
    const client = new mp.MPushClient(options);
    window.client = client;
    window.log = [];
    window.pushes = [];
    for (const ev of ["state", "connect", "reconnecting", "push", "kick", "bind", "unbind", "error", "disconnect", "sharing"]) {
      client.on(ev, (p) => {
        if (ev === "push") window.pushes.push(p);
        window.log.push({ ev, p: plain(p), at: Date.now() });
      });
    }
    return client;
  };
  // A promise that rejects when \`p\` is not settled in \`ms\`: a hang fails the test.
  window.within = (p, ms) => Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error("timed out")), ms))]);
  window.plainError = plain;
  window.texts = () => window.pushes.map((m) => m.text());
  window.events = (name) => window.log.filter((e) => e.ev === name).map((e) => e.p);
  window.pageReady = true;
`;

let stack;
let browser;
let config;

async function openTab(context) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") console.log(`[page] ${m.text()}`); });
  await page.route(`${stack.base}/__tabs-pkg/*`, async (r) => {
    const name = path.basename(new URL(r.request().url()).pathname);
    try {
      const body = await readFile(path.join(PKG, name));
      await r.fulfill({ status: 200, contentType: TYPES[path.extname(name)] || "application/octet-stream", body });
    } catch {
      await r.fulfill({ status: 404, body: `${name} is not in ${PKG} (scripts/build-wasm.sh)` });
    }
  });
  // A document the proxy served (a routed one would count as a public page, which Chromium's
  // local network access checks keep from opening a WebSocket to 127.0.0.1).
  await page.goto(`${stack.base}/demo-config.json`);
  await page.addScriptTag({ type: "module", content: SCRIPT });
  await page.waitForFunction(() => window.pageReady === true, null, { timeout: 15000 });
  return page;
}

/** Opens `n` tabs in `context`, each with a client of `options` (plus url and key), connected. */
async function openClients(context, n, options) {
  const pages = [];
  for (let i = 0; i < n; i++) pages.push(await openTab(context));
  const opts = { url: config.ws, publicKey: config.key, reconnect: { minDelay: 100, maxDelay: 1000 }, ...options };
  for (const p of pages) {
    await p.evaluate((o) => { window.connected = window.openClient(o).connect(); }, opts);
  }
  for (const p of pages) await p.evaluate(() => window.within(window.connected, 10000));
  return pages;
}

const roles = (pages) => Promise.all(pages.map((p) => p.evaluate(() => window.client.sharing)));
const waitTexts = (page, texts, timeout = 5000) =>
  page.waitForFunction((want) => want.every((t) => window.texts().includes(t)), texts, { timeout });

async function connectionsOf(user) {
  const r = await fetch(`${stack.base}/api/users`);
  const u = (await r.json()).users.find((x) => x.userId === user);
  return u ? u.connections.length : 0;
}

/** The embedded gateway's key, the WebSocket URL and the echo service (a new port after a restart). */
async function loadConfig() {
  const c = await (await fetch(`${stack.base}/demo-config.json`)).json();
  return { key: c.publicKey, ws: `ws://127.0.0.1:${stack.port}${c.wsPath}`, echoUrl: c.echoUrl };
}

before(async () => {
  stack = await new Stack().start();
  browser = await launchChromium();
  config = await loadConfig();
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

test("three tabs share one connection: every tab gets every push, nobody is kicked", async () => {
  const user = `tabs-${process.pid}-a`;
  const context = await browser.newContext();
  const pages = await openClients(context, 3, { userId: user });
  const r = await roles(pages);
  assert.deepEqual([...r].sort(), ["follower", "follower", "leader"]);
  for (const p of pages) assert.equal(await p.evaluate(() => window.client.state), "ready");
  // Every tab's "ready" comes with one `connect`, also in a tab that joined the connection
  // after it was ready (it gets the leader's { fast, heartbeat }).
  for (const p of pages) assert.deepEqual((await p.evaluate(() => window.events("connect"))).map((c) => c.fast), [false]);
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.client.deviceId)));
  assert.equal(new Set(ids).size, 1, "one device id");
  await pages[0].waitForFunction(() => window.events("bind").length > 0, null, { timeout: 5000 });
  assert.equal(await connectionsOf(user), 1, "one connection for the user at the gateway");

  const texts = ["one", "two", "three"].map((t) => `${t} ${Date.now()}`);
  for (const content of texts) {
    const res = await stack.push({ userId: user, content, ack: "auto", timeoutMs: 5000 });
    assert.equal(res.results[0].result, "success");
  }
  for (const p of pages) await waitTexts(p, texts);
  for (const p of pages) assert.deepEqual(await p.evaluate(() => window.events("kick")), []);

  // The shared connection drops (the server restarts): every tab's state follows it.
  await stack.restart();
  config = await loadConfig();
  for (const p of pages) {
    await p.waitForFunction(() => window.events("state").includes("reconnecting") && window.client.state === "ready", null, { timeout: 30000 });
  }
  await pages[0].waitForFunction((n) => window.events("bind").length >= n, 2, { timeout: 10000 });
  const again = `after restart ${Date.now()}`;
  assert.equal((await stack.push({ userId: user, content: again, ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  for (const p of pages) await waitTexts(p, [again]);
  assert.equal(await connectionsOf(user), 1);
  await context.close();
});

test("a tab that joins a connection that is ready already gets its connect event, once", async () => {
  const context = await browser.newContext();
  const [first] = await openClients(context, 1, {});
  const [late] = await openClients(context, 1, {});
  assert.deepEqual(await roles([first, late]), ["leader", "follower"]);
  const connects = await first.evaluate(() => window.events("connect"));
  assert.equal(connects.length, 1);
  // The same { fast, heartbeat } as the leader's, and "ready" before it, as in a single tab.
  assert.deepEqual(await late.evaluate(() => window.events("connect")), connects);
  const order = await late.evaluate(() => window.log.filter((e) => e.ev === "state" || e.ev === "connect").map((e) => (e.ev === "connect" ? "connect" : e.p)));
  assert.deepEqual(order, ["connecting", "ready", "connect"]);
  await context.close();
});

test("any tab can push, fetch, bind and ack; errors keep their name and code", async () => {
  const user = `tabs-${process.pid}-b`;
  const context = await browser.newContext();
  const pages = await openClients(context, 2, { userId: user });
  const r = await roles(pages);
  const follower = pages[r.indexOf("follower")];
  const leader = pages[r.indexOf("leader")];

  // A push to the server from the follower, acked by the server.
  await follower.evaluate(() => window.client.push("from a follower", { ack: "auto" }));
  // The HTTP tunnel from the follower: the Response crosses the channel.
  const res = await follower.evaluate(async (url) => {
    const r = await window.client.fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: '{"tab":2}' });
    return { status: r.status, body: await r.text(), isResponse: r instanceof Response };
  }, config.echoUrl);
  assert.equal(res.status, 200);
  assert.equal(res.isResponse, true);
  assert.match(res.body, /"tab":\s*2/);
  // A Request, Headers and URLSearchParams do not clone: they cross as plain data.
  const viaRequest = await follower.evaluate(async (url) => {
    const r = await window.client.fetch(new Request(url, { method: "PUT", headers: new Headers({ "x-tab": "2" }), body: "as a Request" }));
    const f = await window.client.fetch(new URL(url), { method: "POST", body: new URLSearchParams({ a: "1 2" }) });
    return { status: r.status, body: await r.text(), url: r.url, form: await f.text() };
  }, config.echoUrl);
  assert.equal(viaRequest.status, 200);
  assert.match(viaRequest.body, /as a Request/);
  assert.match(viaRequest.body, /x-tab/i);
  assert.equal(viaRequest.url, config.echoUrl);
  assert.match(viaRequest.form, /a=1\+2/);
  assert.match(viaRequest.form, /application\/x-www-form-urlencoded/);
  const err = await follower.evaluate(() =>
    window.client.fetch("http://127.0.0.1/", { method: "PATCH" }).then(() => null, (e) =>
      ({ name: e.name, code: e.code, isError: e instanceof Error, isMPush: window.mp.isMPushError(e, "HTTP_METHOD_UNSUPPORTED") })));
  assert.deepEqual(err, { name: "MPushError", code: "HTTP_METHOD_UNSUPPORTED", isError: true, isMPush: true });

  // An AbortSignal cannot cross tabs: the follower applies it itself, and the late answer is dropped.
  const aborted = await follower.evaluate(async (url) => {
    const ac = new AbortController();
    const sent = window.client.fetch(url, { method: "POST", body: "abort me", signal: ac.signal });
    ac.abort();
    const e = await sent.then(() => null, (err) => err.name);
    const next = await window.client.fetch(url, { signal: new AbortController().signal });
    return { e, next: next.status };
  }, config.echoUrl);
  assert.deepEqual(aborted, { e: "AbortError", next: 200 });

  // A bind from the follower applies to the shared connection: both tabs see it.
  const other = `${user}-2`;
  await follower.evaluate((u) => window.client.bind(u, "vip"), other);
  for (const p of pages) {
    await p.waitForFunction((u) => window.events("bind").some((b) => b.userId === u), other, { timeout: 5000 });
  }
  assert.equal(await connectionsOf(other), 1);

  // A biz push acked by the follower counts once: the leader's ack() then sends nothing.
  const content = `biz ${Date.now()}`;
  const pending = stack.push({ userId: other, content, ack: "biz", timeoutMs: 5000 });
  for (const p of pages) await waitTexts(p, [content]);
  assert.equal(await follower.evaluate(() => window.pushes.at(-1).ack()), true);
  assert.equal((await pending).results[0].result, "success");
  await leader.waitForFunction(() => {
    try {
      window.client.ack(window.pushes.at(-1).id);
      return false;
    } catch (e) {
      return e.code === "INVALID_ARGUMENT";
    }
  }, null, { timeout: 5000 });
  assert.equal(await leader.evaluate(() => window.pushes.at(-1).ack()), false);
  await context.close();
});

test("closing the leader's tab hands the connection over with a fast connect; no acked push is lost", async (t) => {
  const user = `tabs-${process.pid}-c`;
  const context = await browser.newContext();
  const pages = await openClients(context, 3, { userId: user });
  const r = await roles(pages);
  const leader = pages[r.indexOf("leader")];
  const rest = pages.filter((p) => p !== leader);
  await leader.waitForFunction(() => window.events("bind").length > 0, null, { timeout: 5000 });

  // An app server pushing all along, a new push every 15 ms without waiting for the previous
  // ones; each is retried until the server reports it delivered (acked), as an app does with
  // MPUSH's "offline" result.
  let pushing = true;
  let retries = 0;
  const delivered = [];
  const deliver = async (content) => {
    for (let tries = 0; ; tries++) {
      const res = await stack.push({ userId: user, content, ack: "auto", timeoutMs: 2000 });
      if (res.results[0].result === "success") return delivered.push(content);
      assert.ok(tries < 100, `${content} never delivered: ${JSON.stringify(res.results)}`);
      retries++;
      await new Promise((t) => setTimeout(t, 50));
    }
  };
  const pusher = (async () => {
    const all = [];
    for (let i = 0; pushing || i < 3; i++) {
      all.push(deliver(`handover ${i}`));
      await new Promise((t) => setTimeout(t, 15));
    }
    await Promise.all(all);
  })();
  let closedAt;
  let readyAt;
  try {
    await new Promise((t) => setTimeout(t, 300));
    closedAt = Date.now();
    await leader.close();
    // One remaining tab takes over, the other follows it; both see the fast connect.
    for (const p of rest) {
      await p.waitForFunction(() => window.events("connect").length >= 2 && window.client.state === "ready", null, { timeout: 10000 });
    }
    readyAt = Math.max(...(await Promise.all(rest.map((p) => p.evaluate(() => window.log.findLast((e) => e.ev === "connect").at)))));
  } catch (e) {
    // What each remaining tab saw, for the failure report.
    for (const p of rest) {
      const seen = await p.evaluate(() => ({ sharing: window.client.sharing, state: window.client.state, log: window.log.filter((x) => x.ev !== "push") }));
      t.diagnostic(`a remaining tab: ${JSON.stringify(seen)}`);
    }
    throw e;
  } finally {
    pushing = false; // a failure must not leave the pusher running (it kept the test process alive)
    await pusher.catch(() => {});
  }
  await pusher; // its own failure (a push never delivered), now that the handover went well
  t.diagnostic(`handover: ready again ${readyAt - closedAt} ms after the leader's tab closed; ${delivered.length} pushes, ${retries} retried`);
  assert.deepEqual([...(await roles(rest))].sort(), ["follower", "leader"]);
  for (const p of rest) {
    const connects = await p.evaluate(() => window.events("connect"));
    assert.equal(connects.at(-1).fast, true, "the new leader resumed the stored session");
    assert.equal(await p.evaluate(() => window.client.lastConnectWasFast), true);
    const states = await p.evaluate(() => window.events("state"));
    assert.ok(states.includes("reconnecting"), `the handover shows as a reconnect: ${states}`);
    assert.deepEqual(await p.evaluate(() => window.events("kick")), []);
  }
  // Every push the server counted as delivered reached both remaining tabs.
  assert.ok(delivered.length >= 3);
  for (const p of rest) await waitTexts(p, delivered);
  // The new leader bound the user again: one connection, and pushes keep arriving.
  assert.equal(await connectionsOf(user), 1);
  const after = `after ${Date.now()}`;
  assert.equal((await stack.push({ userId: user, content: after, ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  for (const p of rest) await waitTexts(p, [after]);
  await context.close();
});

test("close() in the leader hands over; close() in a follower leaves the connection alone", async () => {
  const user = `tabs-${process.pid}-d`;
  const context = await browser.newContext();
  const pages = await openClients(context, 2, { userId: user });
  const r = await roles(pages);
  const leader = pages[r.indexOf("leader")];
  const follower = pages[r.indexOf("follower")];
  await leader.evaluate(() => window.client.close());
  assert.equal(await leader.evaluate(() => [window.client.state, window.client.sharing].join()), "closed,pending");
  await follower.waitForFunction(() => window.client.sharing === "leader" && window.client.state === "ready", null, { timeout: 10000 });
  assert.equal(await follower.evaluate(() => window.events("connect").at(-1).fast), true);
  // The closed tab connects again: now it follows.
  await leader.evaluate(() => window.within(window.client.connect(), 10000));
  assert.equal(await leader.evaluate(() => window.client.sharing), "follower");
  await leader.evaluate(() => window.client.close());
  const content = `still here ${Date.now()}`;
  assert.equal((await stack.push({ userId: user, content, ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  await waitTexts(follower, [content]);
  assert.equal(await leader.evaluate((c) => window.texts().includes(c), content), false, "a closed tab gets no pushes");
  await context.close();
});

test("a leader the browser freezes or caches hands over, and rejoins as a follower when back", async () => {
  const user = `tabs-${process.pid}-h`;
  const context = await browser.newContext();
  const pages = await openClients(context, 2, { userId: user });
  const r = await roles(pages);
  const leader = pages[r.indexOf("leader")];
  const follower = pages[r.indexOf("follower")];
  // The Page Lifecycle events the browser sends (headless Chromium does not freeze pages).
  await leader.evaluate(() => document.dispatchEvent(new Event("freeze")));
  await follower.waitForFunction(() => window.client.sharing === "leader" && window.client.state === "ready", null, { timeout: 10000 });
  assert.equal(await follower.evaluate(() => window.events("connect").at(-1).fast), true);
  const during = `while frozen ${Date.now()}`;
  assert.equal((await stack.push({ userId: user, content: during, ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  await waitTexts(follower, [during]);

  assert.deepEqual(await leader.evaluate(() => [window.client.sharing, window.client.state]), ["pending", "reconnecting"]);
  assert.equal(await leader.evaluate((c) => window.texts().includes(c), during), false, "a frozen tab gets nothing");
  await leader.evaluate(() => document.dispatchEvent(new Event("resume")));
  await leader.waitForFunction(() => window.client.sharing === "follower" && window.client.state === "ready", null, { timeout: 10000 });
  const thawed = `thawed ${Date.now()}`;
  assert.equal((await stack.push({ userId: user, content: thawed, ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  for (const p of pages) await waitTexts(p, [thawed]);
  assert.equal(await connectionsOf(user), 1);

  // The same through the back/forward cache: the new leader goes in, the thawed tab takes over.
  await follower.evaluate(() => dispatchEvent(new PageTransitionEvent("pagehide", { persisted: true })));
  await leader.waitForFunction(() => window.client.sharing === "leader" && window.client.state === "ready", null, { timeout: 10000 });
  await follower.evaluate(() => dispatchEvent(new PageTransitionEvent("pageshow", { persisted: true })));
  await follower.waitForFunction(() => window.client.sharing === "follower" && window.client.state === "ready", null, { timeout: 10000 });
  const restored = `restored ${Date.now()}`;
  assert.equal((await stack.push({ userId: user, content: restored, ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  for (const p of pages) await waitTexts(p, [restored]);
  await context.close();
});

test("share: false gives each tab its own device id and connection", async () => {
  const users = [`tabs-${process.pid}-e1`, `tabs-${process.pid}-e2`];
  const context = await browser.newContext();
  const pages = [];
  for (const u of users) pages.push(...(await openClients(context, 1, { userId: u, share: false })));
  assert.deepEqual(await roles(pages), ["off", "off"]);
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.client.deviceId)));
  assert.notEqual(ids[0], ids[1]);
  for (const [i, u] of users.entries()) {
    await pages[i].waitForFunction(() => window.events("bind").length > 0, null, { timeout: 5000 });
    assert.equal(await connectionsOf(u), 1);
    const res = await stack.push({ userId: u, content: `for ${u}`, ack: "auto", timeoutMs: 5000 });
    assert.equal(res.results[0].result, "success");
  }
  for (const [i, u] of users.entries()) {
    await waitTexts(pages[i], [`for ${u}`]);
    assert.deepEqual(await pages[i].evaluate(() => window.texts()), [`for ${u}`]);
  }
  await context.close();
});

test("when the shared connection gives up, every tab's connect() rejects with the leader's error", async () => {
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const wrongKey = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  const context = await browser.newContext();
  const pages = [await openTab(context), await openTab(context)];
  const opts = { url: config.ws, publicKey: wrongKey };
  for (const p of pages) {
    await p.evaluate((o) => {
      window.result = window.within(window.openClient(o).connect(), 10000).then(() => ({ ok: true }), (e) =>
        ({ name: e.name, code: e.code, serverCode: e.serverCode, message: e.message, isError: e instanceof Error }));
    }, opts);
  }
  for (const p of pages) {
    const r = await p.evaluate(() => window.result);
    assert.equal(r.code, "HANDSHAKE_REFUSED", JSON.stringify(r));
    assert.equal(r.name, "MPushError");
    assert.equal(r.serverCode, 100);
    assert.equal(r.isError, true);
    assert.match(r.message, /publicKey/);
    assert.deepEqual(await p.evaluate(() => [window.client.state, window.client.sharing]), ["closed", "pending"]);
  }
  await context.close();
});

test("errors inside event payloads and causes reach every tab whole: the attempt limit", async () => {
  const port = await freePort(); // nothing listens there: a proxy that is down
  const context = await browser.newContext();
  const pages = [await openTab(context), await openTab(context)];
  const opts = { url: `ws://127.0.0.1:${port}/mpush`, publicKey: config.key, reconnect: { minDelay: 10, maxDelay: 40, maxAttempts: 3 } };
  for (const p of pages) {
    await p.evaluate((o) => {
      window.result = window.within(window.openClient(o).connect(), 10000).then(() => ({ ok: true }), (e) => window.plainError(e));
    }, opts);
  }
  for (const p of pages) {
    const r = await p.evaluate(() => window.result);
    assert.equal(r.code, "ATTEMPT_LIMIT", JSON.stringify(r));
    assert.equal(r.cause?.name, "MPushError", JSON.stringify(r));
    assert.equal(r.cause.code, "CONNECT_FAILED");
  }
  // The follower saw the leader's "reconnecting" events, each with its error rebuilt.
  const follower = pages[(await Promise.all(pages.map((p) => p.evaluate(() => window.events("sharing"))))).findIndex((s) => s.includes("follower"))];
  const reconnecting = await follower.evaluate(() => window.events("reconnecting"));
  assert.ok(reconnecting.length > 0);
  for (const r of reconnecting.filter((x) => x.error)) assert.equal(r.error.name, "MPushError", JSON.stringify(r));
  assert.ok(reconnecting.some((x) => x.error?.code === "CONNECT_FAILED"), JSON.stringify(reconnecting));
  await context.close();
});

test("without Web Locks a tab falls back to its own connection and says so", async () => {
  const user = `tabs-${process.pid}-g`;
  const context = await browser.newContext();
  const page = await openTab(context);
  await page.evaluate(() => Object.defineProperty(navigator, "locks", { value: undefined }));
  await page.evaluate((o) => window.within(window.openClient(o).connect(), 10000), { url: config.ws, publicKey: config.key, userId: user });
  assert.equal(await page.evaluate(() => window.client.sharing), "unsupported");
  assert.equal(await page.evaluate(() => window.client.state), "ready");
  await page.waitForFunction(() => window.events("bind").length > 0, null, { timeout: 5000 });
  assert.equal((await stack.push({ userId: user, content: "alone", ack: "auto", timeoutMs: 5000 })).results[0].result, "success");
  await waitTexts(page, ["alone"]);
  await context.close();
});

test("on() returns a remover, once() fires once, bad arguments throw MPushError", async () => {
  const user = `tabs-${process.pid}-f`;
  const context = await browser.newContext();
  const [page] = await openClients(context, 1, { userId: user });
  await page.waitForFunction(() => window.events("bind").length > 0, null, { timeout: 5000 });
  await page.evaluate(() => {
    window.seen = [];
    window.offOn = window.client.on("push", (m) => window.seen.push(`on ${m.text()}`));
    window.client.once("push", (m) => window.seen.push(`once ${m.text()}`));
  });
  for (const content of ["a", "b"]) await stack.push({ userId: user, content, ack: "auto", timeoutMs: 5000 });
  await waitTexts(page, ["a", "b"]);
  await page.evaluate(() => window.offOn());
  await stack.push({ userId: user, content: "c", ack: "auto", timeoutMs: 5000 });
  await waitTexts(page, ["c"]);
  assert.deepEqual(await page.evaluate(() => window.seen), ["on a", "once a", "on b"]);

  const errors = await page.evaluate(({ ws, key }) => {
    const c = window.client;
    const out = [];
    for (const f of [
      () => c.on("nope", () => {}),
      () => c.once("push", 5),
      () => c.ack("x"),
      () => new window.mp.MPushClient({ url: "http://x", publicKey: key }),
      () => new window.mp.MPushClient({ url: ws, publicKey: key, share: "yes" }),
    ]) {
      try {
        f();
        out.push(null);
      } catch (e) {
        out.push(`${e.name} ${e.code}`);
      }
    }
    return out;
  }, config);
  assert.deepEqual(errors, [
    "MPushError INVALID_ARGUMENT",
    "MPushError INVALID_ARGUMENT",
    "MPushError INVALID_ARGUMENT",
    "MPushError INVALID_OPTION",
    "MPushError INVALID_OPTION",
  ]);
  await context.close();
});
