// `./scripts/demo.sh --mpush` as a person uses it: the console served by mpush-proxy in front
// of the real MPUSH 0.8.0 (scripts/demo-mpush.mjs, with the debug proxy), the push command the
// banner prints (curl to MPUSH's own PushSender), and a reload that fast-connects against
// MPUSH's session in Redis. Skipped, saying why, without Java, Maven or redis-server.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, VIEWPORT, freePort, launchChromium, proxyBin, screenshotStats } from "./stack.mjs";
import { pushRaces } from "../real-mpush/stacks.mjs";

const ARTIFACTS = path.join(ROOT, "tests/e2e/artifacts");
const missing = ["java", "mvn", "redis-server"].filter((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0);
const skip = missing.length ? `needs ${missing.join(", ")} for the real MPUSH` : false;

let demo;
let browser;
let page;
let races;

/**
 * Runs `push` (which returns PushSender's results) and explains MPUSH 0.8.0's push races in
 * them (tests/real-mpush/stacks.mjs, pushRaces): a timeout counts as success only when
 * MPUSH's or PushSender's push log shows the early ack or answer during this push.
 */
async function pushed(push) {
  const mark = races.mark();
  return races.explain(await push(), mark);
}

before(async () => {
  if (skip) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const { startMpushDemo } = await import("../../scripts/demo-mpush.mjs");
  demo = await startMpushDemo({ port: await freePort(), proxyBin: proxyBin() });
  races = pushRaces(demo.mpush, (line) => console.log(line));
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: VIEWPORT });
  page = await context.newPage();
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
});

after(async () => {
  if (browser) await browser.close();
  if (demo) await demo.stop();
});

test("the console connects to MPUSH through the proxy with a handshake and binds demo-user", { skip }, async () => {
  await page.goto(demo.consoleUrl);
  await page.waitForSelector('#state[data-state="ready"]', { timeout: 20000 });
  await page.waitForSelector('#bound-user[data-user="demo-user"]', { timeout: 10000 });
  assert.equal(await page.locator("#connect-kind").getAttribute("data-kind"), "handshake");
  assert.equal(await page.locator("#heartbeat").textContent(), "20 s"); // MPUSH's setting in the demo
  assert.match(await page.locator("#server-kind").textContent(), /MPUSH 0\.8\.0/);
});

test("the banner's push command goes through PushSender and the push shows, acked", { skip }, async () => {
  const cmd = demo.pushCommand();
  assert.match(cmd, new RegExp(`^curl -s ${demo.pushApiUrl} `));
  let out;
  const results = await pushed(() => {
    out = JSON.parse(execFileSync("bash", ["-c", cmd], { encoding: "utf8" }));
    return out.results;
  });
  assert.deepEqual(Object.keys(out), ["results"]);
  assert.deepEqual(results.map(({ userId, result }) => ({ userId, result })), [{ userId: "demo-user", result: "success" }]);
  if (!results[0].race) assert.deepEqual(out.results, [{ userId: "demo-user", result: "success", code: 1 }]);
  const row = page.locator("#pushes tr", { hasText: "hello from PushSender" });
  await row.waitFor({ timeout: 5000 });
  assert.equal(await row.getAttribute("data-ack"), "acked");
  // The console's own button reaches PushSender too (through the script's CORS forwarder).
  await page.fill("#push-content", "from the button");
  await page.fill("#push-timeout", "3000"); // as the banner's command: a raced push answers in 3 s
  const [button] = await pushed(async () => {
    await page.click("#send-push");
    const shown = await page.waitForSelector("#push-result[data-result]", { timeout: 10000 });
    return [{ userId: "demo-user", result: await shown.getAttribute("data-result") }];
  });
  assert.equal(button.result, "success", `the console's push result: ${await page.locator("#push-result").textContent()}`);
  await page.locator("#pushes tr", { hasText: "from the button" }).waitFor({ timeout: 3000 });
  const png = await page.screenshot();
  writeFileSync(path.join(ARTIFACTS, "mpush-demo.png"), png);
  const s = await screenshotStats(browser, png);
  assert.ok(s.colours > 100 && s.nonBackground > 0.15, `blank screenshot: ${JSON.stringify(s)}`);
});

test("a reload fast-connects against MPUSH's stored session and binds again", { skip }, async () => {
  await page.reload();
  await page.waitForSelector('#connect-kind[data-kind="fast"]', { timeout: 20000 });
  await page.waitForSelector('#bound-user[data-user="demo-user"]', { timeout: 10000 });
  const [r] = await pushed(() => JSON.parse(execFileSync("bash", ["-c", demo.pushCommand("demo-user", "after reload")], { encoding: "utf8" })).results);
  assert.equal(r.result, "success");
  await page.locator("#pushes tr", { hasText: "after reload" }).waitFor({ timeout: 5000 });
});
