// The API as a new user meets it, in headless Chromium against the demo stack (mpush-proxy +
// embedded gateway): fetch with a Request and Response.url, an AbortSignal, errors that name the method that
// failed, ack() of an id that waits for no ack, the bound user as a getter, arguments checked.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Stack, launchChromium } from "./stack.mjs";
import { demoConfig, openClientPage } from "./client-page.mjs";

let stack;
let browser;
let context;
let page;
let cfg;
const user = `api-user-${process.pid}`;

before(async () => {
  stack = await new Stack().start();
  cfg = await demoConfig(stack);
  browser = await launchChromium();
  context = await browser.newContext();
  page = await openClientPage(context, stack);
  await page.evaluate(async ({ url, publicKey }) => {
    window.c = new mp.MPushClient({ url, publicKey, storage: "memory", share: false });
    window.log = track(window.c);
    await window.c.connect();
  }, { url: cfg.ws, publicKey: cfg.key });
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

/** Runs `fn` in the page and returns the error it throws or rejects with, as plain data. */
function failure(fn, arg) {
  return page.evaluate(async ([src, arg]) => {
    try {
      await (0, eval)(src)(arg);
    } catch (e) {
      return plain(e);
    }
    return null;
  }, [fn.toString(), arg]);
}

test("the bound user is readable: undefined, then the user once the server confirms, undefined after unbind", async () => {
  const r = await page.evaluate(async (user) => {
    const before = c.userId;
    const pending = c.bind(user);
    const whilePending = c.userId;
    await pending;
    const bound = c.userId;
    await c.unbind();
    return { before, whilePending, bound, after: c.userId };
  }, user);
  assert.deepEqual(r, { before: undefined, whilePending: undefined, bound: user, after: undefined });
});

test("fetch takes a Request (method, headers, body) and the Response carries its url", async () => {
  const r = await page.evaluate(async (echo) => {
    const target = `${echo}/echo/path?q=1`;
    const req = new Request(target, { method: "POST", headers: { "x-test": "yes" }, body: "hello body" });
    const res = await c.fetch(req);
    const viaString = await c.fetch(`${echo}/plain#frag`);
    // init overrides the Request, as fetch(request, init) does.
    const overridden = await c.fetch(new Request(`${echo}/o`, { method: "POST", body: "x" }), { method: "PUT", body: "y" });
    return {
      status: res.status,
      url: res.url,
      body: await res.text(),
      stringUrl: viaString.url,
      overriddenStatus: overridden.status,
      overriddenBody: await overridden.text(),
    };
  }, cfg.echoUrl);
  assert.equal(r.status, 200, JSON.stringify(r));
  assert.equal(r.url, `${cfg.echoUrl}/echo/path?q=1`);
  assert.equal(r.stringUrl, `${cfg.echoUrl}/plain`);
  // The demo echo service answers with what it received.
  const echoed = JSON.parse(r.body);
  assert.equal(echoed.method, "POST");
  assert.equal(echoed.body, "hello body");
  assert.equal(echoed.headers["x-test"], "yes");
  const overridden = JSON.parse(r.overriddenBody);
  assert.deepEqual([overridden.method, overridden.body], ["PUT", "y"]);
});

test("a Request whose body was already read is refused, naming fetch", async () => {
  const e = await failure(async (echo) => {
    const req = new Request(`${echo}/x`, { method: "POST", body: "once" });
    await req.text();
    await c.fetch(req);
  }, cfg.echoUrl);
  assert.equal(e?.code, "INVALID_ARGUMENT");
  assert.match(e.message, /^fetch: /);
  assert.match(e.message, /already (been )?used/);
});

test("fetch honours an AbortSignal as fetch does; the answer that comes later is dropped", async () => {
  const r = await page.evaluate(async (echo) => {
    const outcome = (p) => p.then((res) => ({ status: res.status }), (e) => ({ name: e.name, code: e.code, message: e.message }));
    const errors = () => window.log.filter((e) => e.ev === "error").length;
    const errorsBefore = errors();
    const early = new AbortController();
    early.abort();
    const alreadyAborted = await outcome(c.fetch(`${echo}/pre`, { signal: early.signal }));
    // Aborted while the request is on its way: the server's answer cannot have come yet.
    const during = new AbortController();
    const sent = c.fetch(`${echo}/during`, { method: "POST", body: "abort me", signal: during.signal });
    during.abort();
    const abortedInFlight = await outcome(sent);
    // A Request's signal counts, with the reason it was given.
    const byRequest = new AbortController();
    const viaRequest = c.fetch(new Request(`${echo}/req`, { signal: byRequest.signal }));
    byRequest.abort(new RangeError("given up"));
    const withReason = await outcome(viaRequest);
    // init.signal overrides the Request's, null meaning none.
    const overridden = await outcome(c.fetch(new Request(`${echo}/n`, { signal: early.signal }), { signal: null }));
    const notASignal = await outcome(c.fetch(`${echo}/x`, { signal: "soon" }));
    const unaborted = new AbortController();
    const completes = await outcome(c.fetch(`${echo}/ok`, { signal: unaborted.signal }));
    // The dropped answers arrive meanwhile: the connection carries on, nothing is reported.
    const after = await outcome(c.fetch(`${echo}/after`));
    return { alreadyAborted, abortedInFlight, withReason, overridden, notASignal, completes, after, newErrors: errors() - errorsBefore, state: c.state };
  }, cfg.echoUrl);
  assert.equal(r.alreadyAborted.name, "AbortError", JSON.stringify(r));
  assert.equal(r.abortedInFlight.name, "AbortError", JSON.stringify(r));
  assert.deepEqual([r.withReason.name, r.withReason.message], ["RangeError", "given up"]);
  assert.deepEqual(r.overridden, { status: 200 });
  assert.equal(r.notASignal.code, "INVALID_ARGUMENT");
  assert.match(r.notASignal.message, /^fetch: signal must be an AbortSignal/);
  assert.deepEqual(r.completes, { status: 200 });
  assert.deepEqual(r.after, { status: 200 });
  assert.equal(r.newErrors, 0);
  assert.equal(r.state, "ready");
});

test("errors name the method that failed", async () => {
  const push = await failure(() => c.push(42));
  assert.equal(push.code, "INVALID_ARGUMENT");
  assert.match(push.message, /^push: content must be/);
  const pushOptions = await failure(() => c.push("x", { ack: "sometimes" }));
  assert.match(pushOptions.message, /^push: ack must be/);
  const bind = await failure(() => c.bind(42));
  assert.equal(bind.code, "INVALID_ARGUMENT");
  assert.match(bind.message, /^bind: userId must be a non-empty string/);
  const on = await failure(() => c.on("push", "not a function"));
  assert.match(on.message, /^on: listener must be a function/);
  const method = await failure(() => c.fetch("http://x/", { method: "PATCH" }));
  assert.equal(method.code, "HTTP_METHOD_UNSUPPORTED");
  assert.match(method.message, /^fetch: /);
  // Errors from the session name their method too (here: nobody bound).
  const unbind = await failure(() => c.unbind());
  assert.equal(unbind.code, "NOT_BOUND");
  assert.match(unbind.message, /^unbind: /);
});

test("ack() of an id that waits for no ack says so; a biz push's id is accepted once", async () => {
  const unknown = await failure(() => c.ack(987654));
  assert.equal(unknown.code, "INVALID_ARGUMENT");
  assert.match(unknown.message, /^ack: push 987654 is not waiting for an ack/);
  const notAnId = await failure(() => c.ack("7"));
  assert.match(notAnId.message, /^ack: pushId must be/);

  // The listener is in place before the push is sent.
  await page.evaluate(async (user) => {
    await c.bind(user);
    window.nextPush = new Promise((resolve) => {
      const stop = c.on("push", (m) => { stop(); resolve({ id: m.id, mode: m.ackMode }); });
    });
  }, user);
  const api = stack.push({ userId: user, content: "needs a biz ack", ack: "biz", timeoutMs: 10000 });
  const { id, mode } = await page.evaluate(() => nextPush);
  assert.equal(mode, "biz");
  const r = await page.evaluate((id) => {
    c.ack(id);
    try {
      c.ack(id);
    } catch (e) {
      return plain(e);
    }
    return null;
  }, id);
  assert.equal(r?.code, "INVALID_ARGUMENT");
  assert.match(r.message, /acked\s+already/);
  const res = await api;
  assert.deepEqual(res.results.map((x) => x.result), ["success"]);
});
