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

test("a push through the push API appears and its auto ack reaches the gateway", async () => {
  const content = `hello ${Date.now()}`;
  const res = await stack.push({ userId: user, content, ack: "auto", timeoutMs: 5000 });
  // The API answers success only after the client's ack came back, so the row is there.
  assert.deepEqual(res.results.map((r) => [r.userId, r.result, r.code]), [[user, "success", 1]]);
  const row = page.locator("#pushes tr", { hasText: content });
  await row.waitFor({ timeout: 1000 });
  assert.equal(await row.getAttribute("data-ack"), "acked");
});

test("the Send push button shows the result and the ack round trip of its push", async () => {
  const content = `from the page ${Date.now()}`;
  await page.fill("#push-content", content);
  await page.click("#send-push");
  await page.waitForSelector('#push-result[data-result="success"]', { timeout: 10000 });
  assert.match(await page.locator("#push-result").textContent(), new RegExp(`${user}: success \\(code 1\\), ack round trip \\d+ ms`));
  const row = page.locator("#pushes tr", { hasText: content });
  assert.match(await row.locator(".rtt").textContent(), /round trip \d+ ms/);
  assert.equal(await page.locator("#ack-rtt").getAttribute("data-count"), "1");
  assert.match(await page.locator("#ack-rtt").textContent(), /^last \d+ ms, median \d+ ms \(1 acked\)$/);
});

test("the session card shows the negotiated heartbeat and the time of the last heartbeat sent", async () => {
  assert.equal(await page.locator("#last-heartbeat").textContent(), "none yet");
  // The negotiated heartbeat is minutes; an "online" event makes the client probe with one now.
  const before = Date.now();
  await page.evaluate(() => dispatchEvent(new Event("online")));
  await page.waitForSelector("#last-heartbeat[data-at]", { timeout: 5000 });
  const at = Number(await page.locator("#last-heartbeat").getAttribute("data-at"));
  assert.ok(at >= before, "the shown heartbeat is the one just sent");
  assert.match(await page.locator("#last-heartbeat").textContent(), /^\d\d:\d\d:\d\d \(\d+ s ago\)$/);
  assert.match(await page.locator("#heartbeat-detail").textContent(), /^\d+ ms/);
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
  assert.deepEqual(await page.locator("#connects li").evaluateAll((lis) => lis.map((l) => l.dataset.kind)), ["fast"]);
  assert.match(await page.locator("#connects li").first().textContent(), /fast connect in \d+ ms \(page load\)/);
});

test("restarting the proxy makes the page reconnect and re-bind by itself", async () => {
  await stack.restart();
  await page.waitForSelector('#state[data-state="reconnecting"], #state[data-state="connecting"]', { timeout: 15000 })
    .catch(() => {}); // the reconnect may already be done
  await page.waitForSelector('#state[data-state="ready"]', { timeout: 30000 });
  await page.waitForSelector(`#bound-user[data-user="${user}"]`, { timeout: 15000 });
  // The connect history gained the reconnect (a handshake: the embedded gateway restarted with
  // the proxy and lost its sessions, so the fast connect was refused).
  const connects = await page.locator("#connects li").evaluateAll((lis) => lis.map((l) => l.textContent));
  assert.equal(connects.length, 2, connects.join("\n"));
  assert.match(connects[0], /handshake in \d+ ms \(reconnect\)/);
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
