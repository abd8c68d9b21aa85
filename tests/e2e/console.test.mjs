// End-to-end: the demo console in headless Chromium against the real demo stack
// (mpush-proxy + embedded mpush-gateway), driven by playwright-core.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { ROOT, Stack, launchChromium } from "./stack.mjs";

const ARTIFACTS = path.join(ROOT, "tests/e2e/artifacts");
const user = `alice-${process.pid}`;
let stack;
let browser;
let context;
let page;

async function openConsole(ctx, userId) {
  const p = await ctx.newPage();
  p.on("console", (m) => { if (m.type() === "error") console.log(`[page] ${m.text()}`); });
  p.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  await p.goto(`${stack.base}/?user=${encodeURIComponent(userId)}`);
  return p;
}

const state = (p) => p.locator("#state").getAttribute("data-state");

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  stack = await new Stack().start();
  browser = await launchChromium();
  context = await browser.newContext();
  page = await openConsole(context, user);
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

test("the page connects with a handshake and binds the user", async () => {
  await page.waitForSelector('#state[data-state="ready"]', { timeout: 15000 });
  await page.waitForSelector(`#bound-user[data-user="${user}"]`, { timeout: 10000 });
  assert.equal(await page.locator("#connect-kind").getAttribute("data-kind"), "handshake");
  assert.match(await page.locator("#heartbeat").textContent(), /\d+ s/);
});

test("a push through the push API appears at once and its auto ack reaches the gateway", async () => {
  const content = `hello ${Date.now()}`;
  const t0 = Date.now();
  const res = await stack.push({ userId: user, content, ack: "auto", timeoutMs: 5000 });
  const elapsed = Date.now() - t0;
  // The API answers success only after the client's ack came back.
  assert.deepEqual(res.results.map((r) => [r.userId, r.result, r.code]), [[user, "success", 1]]);
  const row = page.locator("#pushes tr", { hasText: content });
  await row.waitFor({ timeout: 1000 });
  assert.equal(await row.getAttribute("data-ack"), "acked");
  assert.ok(elapsed < 1000, `push + ack round trip took ${elapsed} ms`);
});

test("a biz-ack push waits for the Ack button and the API then reports success", async () => {
  const content = `biz ${Date.now()}`;
  const pending = stack.push({ userId: user, content, ack: "biz", timeoutMs: 8000 });
  const row = page.locator("#pushes tr", { hasText: content });
  await row.waitFor({ timeout: 3000 });
  assert.equal(await row.getAttribute("data-ack"), "biz");
  await row.locator("button.ack-button").click();
  const res = await pending;
  assert.equal(res.results[0].result, "success");
  assert.equal(await row.getAttribute("data-ack"), "acked");
});

test("an unacked biz push times out and an unknown user is offline", async () => {
  const res = await stack.push({ userId: user, content: "never acked", ack: "biz", timeoutMs: 500 });
  assert.equal(res.results[0].result, "timeout");
  const off = await stack.push({ userId: `nobody-${process.pid}`, content: "x", ack: "auto" });
  assert.equal(off.results[0].result, "offline");
});

test("the HTTP tunnel round-trips a request to the demo endpoint", async () => {
  await page.selectOption("#http-method", "POST");
  await page.fill("#http-body", '{"ping":"e2e"}');
  await page.click("#http-send");
  await page.waitForSelector('#http-status[data-status="200"]', { timeout: 10000 });
  const body = await page.locator("#http-response").textContent();
  assert.match(body, /"ping":\s*"e2e"/);
});

test("a reload resumes with fast connect, not a new handshake", async () => {
  await page.reload();
  await page.waitForSelector('#state[data-state="ready"]', { timeout: 15000 });
  await page.waitForSelector(`#bound-user[data-user="${user}"]`, { timeout: 10000 });
  assert.equal(await page.locator("#connect-kind").getAttribute("data-kind"), "fast");
});

test("restarting the proxy makes the page reconnect and re-bind by itself", async () => {
  await stack.restart();
  await page.waitForSelector('#state[data-state="reconnecting"], #state[data-state="connecting"]', { timeout: 15000 })
    .catch(() => {}); // the reconnect may already be done
  await page.waitForSelector('#state[data-state="ready"]', { timeout: 30000 });
  await page.waitForSelector(`#bound-user[data-user="${user}"]`, { timeout: 15000 });
  const res = await stack.push({ userId: user, content: "after restart", ack: "auto", timeoutMs: 5000 });
  assert.equal(res.results[0].result, "success");
  await page.locator("#pushes tr", { hasText: "after restart" }).waitFor({ timeout: 3000 });
});

test("a second tab binding the same user kicks the first", async () => {
  const other = await browser.newContext(); // another device id
  const second = await openConsole(other, user);
  await second.waitForSelector(`#bound-user[data-user="${user}"]`, { timeout: 15000 });
  await page.waitForSelector('#bound-user[data-kicked="true"]', { timeout: 10000 });
  assert.equal(await state(page), "ready"); // a kick keeps the connection
  await page.screenshot({ path: path.join(ARTIFACTS, "console.png"), fullPage: true });
  await other.close();
});
