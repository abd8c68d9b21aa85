// End-to-end: bind authentication in headless Chromium. The demo stack (mpush-proxy --demo)
// runs its embedded gateway with a bind secret and a push API token (a gateway config written
// here); the test stands in for the application's backend: it mints bind tokens through the
// push API (`POST /api/bind-token`, forwarded to the gateway for loopback clients) and hands
// them to the page, which binds with them as a user of the npm package would.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, freePort, launchChromium, proxyBin } from "./stack.mjs";

const API_TOKEN = "e2e-api-token";
let dir;
let proc;
let output = "";
let base;
let browser;
let page;

async function waitReady(url, exited) {
  const until = Date.now() + 30000;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await Promise.race([new Promise((r) => setTimeout(r, 100)), exited]);
  }
  throw new Error(`${url} did not come up`);
}

/** `POST /api/<path>` as the application's backend calls it. */
async function api(p, body, token = API_TOKEN) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${base}/api/${p}`, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function mint(userId) {
  const r = await api("bind-token", { userId, ttl: 300 });
  assert.equal(r.status, 200, JSON.stringify(r));
  return r.body.token;
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "mpush-e2e-bind-"));
  writeFileSync(path.join(dir, "bind-secret"), "an e2e bind secret of more than thirty-two bytes\n");
  // Every browser reaches the embedded gateway from the proxy on loopback: no per-IP caps.
  writeFileSync(
    path.join(dir, "gateway.toml"),
    [
      "[limits]",
      "max-connections-per-ip = 0",
      "max-unauthenticated-per-ip = 0",
      "[api]",
      `token = "${API_TOKEN}"`,
      "[bind]",
      `token-secret-file = "${path.join(dir, "bind-secret")}"`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  proc = spawn(
    proxyBin(),
    [
      "--demo",
      "--listen", `127.0.0.1:${port}`,
      "--www", path.join(ROOT, "www"),
      "--gateway-config", path.join(dir, "gateway.toml"),
      "--gateway-key-file", path.join(dir, "gateway-key.toml"),
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "info" } },
  );
  const keep = (d) => { output = (output + d.toString()).slice(-20000); };
  proc.stdout.on("data", keep);
  proc.stderr.on("data", keep);
  const exited = new Promise((_, reject) => proc.on("exit", (c) => reject(new Error(`mpush-proxy exited with ${c}`))));
  // Only start-up awaits it; the exit at the end of the run is expected.
  exited.catch(() => {});
  try {
    await waitReady(`${base}/readyz`, exited);
  } catch (e) {
    throw new Error(`${e.message}\nproxy output:\n${output}`);
  }
  browser = await launchChromium();
  page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  // Any same-origin document will do: the test imports the package itself (not the console).
  await page.goto(`${base}/style.css`);
  await page.evaluate(async () => {
    const pkg = await import("/vendor/mpush-client-wasm/pkg/index.js");
    await pkg.default();
    const cfg = await (await fetch("/demo-config.json")).json();
    window.__pkg = pkg;
    window.__opts = { url: `ws://${location.host}${cfg.wsPath}`, publicKey: cfg.publicKey, storage: "memory" };
  });
});

after(async () => {
  if (browser) await browser.close();
  if (proc) proc.kill("SIGTERM");
});

test("bind(userId, { token }) with a token minted by the push API binds, and the user gets pushes", async () => {
  const user = `alice-${process.pid}`;
  const token = await mint(user);
  assert.match(token, /^v1\.\d+\.[A-Za-z0-9_-]{43}$/);
  const bound = await page.evaluate(async ({ user, token }) => {
    const c = new window.__pkg.MPushClient(window.__opts);
    window.__alice = c;
    window.__got = [];
    c.on("push", (m) => window.__got.push(m.text()));
    await c.connect();
    return c.bind(user, { token, tags: "vip" });
  }, { user, token });
  assert.equal(bound.userId, user);
  const r = await api("push", { userId: user, content: "for alice only", ack: "auto", timeoutMs: 5000 });
  assert.deepEqual(r.body.results.map((x) => x.result), ["success"], JSON.stringify(r));
  assert.deepEqual(await page.evaluate(() => window.__got), ["for alice only"]);
});

test("a bind without a token, or with another user's, rejects with BIND_REFUSED", async () => {
  const other = await mint("somebody-else");
  const results = await page.evaluate(async (other) => {
    const out = [];
    for (const args of [["mallory"], ["mallory", { token: other }], ["mallory", { token: "v1.1.forged" }]]) {
      const c = new window.__pkg.MPushClient({ ...window.__opts, reconnect: false });
      await c.connect();
      try {
        await c.bind(...args);
        out.push({ ok: true });
      } catch (e) {
        out.push({ code: e.code, serverCode: e.serverCode, serverReason: e.serverReason, message: e.message });
      }
      c.close();
    }
    return out;
  }, other);
  for (const r of results) {
    assert.equal(r.code, "BIND_REFUSED", JSON.stringify(r));
    // MPUSH's own answer to a refused bind: code 0, "bind failed".
    assert.equal(r.serverCode, 0);
    assert.equal(r.serverReason, "bind failed");
    assert.match(r.message, /bind token/);
  }
  const users = await fetch(`${base}/api/users`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
  const listed = (await users.json()).users.map((u) => u.userId);
  assert.ok(!listed.includes("mallory"), JSON.stringify(listed));
});

test("the bindToken option binds after connect; a bad one is reported once and not retried", async () => {
  const user = `bob-${process.pid}`;
  const token = await mint(user);
  const good = await page.evaluate(async ({ user, token }) => {
    const c = new window.__pkg.MPushClient({ ...window.__opts, userId: user, bindToken: token });
    const bound = new Promise((resolve) => c.on("bind", resolve));
    await c.connect();
    const info = await bound;
    c.close();
    return info;
  }, { user, token });
  assert.equal(good.userId, user);

  const bad = await page.evaluate(async (user) => {
    const c = new window.__pkg.MPushClient({ ...window.__opts, userId: user, bindToken: "v1.1.expired" });
    const errors = [];
    let connects = 0;
    let second;
    const reconnected = new Promise((resolve) => { second = resolve; });
    c.on("error", (e) => errors.push(e.code));
    c.on("connect", () => { connects += 1; if (connects === 2) second(); });
    await c.connect();
    // The refusal closes the connection; the client reconnects on its own.
    await reconnected;
    // In-order barrier: a bind sent on this connection would have been refused and the
    // connection closed before this acked push could succeed.
    await c.push("after the refusal", { ack: "auto" });
    c.close();
    return { errors, connects };
  }, user);
  assert.deepEqual(bad.errors, ["BIND_REFUSED"], JSON.stringify(bad));
});
