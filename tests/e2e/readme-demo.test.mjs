// The README's demo walkthrough, done as a first-time visitor does it: open the console in a
// fresh 1280x800 browser, paste the README's `curl` (only the port differs), see the push,
// reload and see a fast connect. The curl command and its expected answer are read from
// README.md, so the README and this test cannot drift apart.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ROOT, Stack, VIEWPORT, launchChromium, layout, screenshotStats } from "./stack.mjs";

const ARTIFACTS = path.join(ROOT, "tests/e2e/artifacts");
const README_BASE = "http://127.0.0.1:8080";

/** The README's demo `curl` (continuation lines joined) and the answer it shows below it. */
function readmeCurl() {
  const lines = readFileSync(path.join(ROOT, "README.md"), "utf8").split("\n");
  const start = lines.findIndex((l) => l.trim().startsWith(`curl -s ${README_BASE}/api/push`));
  assert.ok(start >= 0, `README.md has no "curl -s ${README_BASE}/api/push" line`);
  const cmd = [];
  let i = start;
  for (; i < lines.length; i++) {
    const l = lines[i].trim();
    cmd.push(l.replace(/\\$/, "").trim());
    if (!l.endsWith("\\")) break;
  }
  const expected = lines[i + 1].trim();
  assert.match(expected, /^# \{/, "the README shows the answer as a comment line after the command");
  return { command: cmd.join(" "), expected: JSON.parse(expected.slice(2)) };
}

let stack;
let browser;
let page;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  stack = await new Stack().start();
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: VIEWPORT }); // a new visitor: empty storage
  page = await context.newPage();
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

test("step 1: opening the console connects with a handshake and binds demo-user", async () => {
  await page.goto(`${stack.base}/`);
  await page.waitForSelector('#state[data-state="ready"]', { timeout: 15000 });
  await page.waitForSelector('#bound-user[data-user="demo-user"]', { timeout: 10000 });
  assert.equal(await page.locator("#bound-user").textContent(), "demo-user");
  assert.equal(await page.locator("#connect-kind").textContent(), "handshake");
  assert.match(await page.locator("#heartbeat").textContent(), /^\d+ s$/);
});

test("step 2: the README's curl is answered success and the push shows in the page", async () => {
  const { command, expected } = readmeCurl();
  const body = JSON.parse(/-d '([^']*)'/.exec(command)[1]);
  const out = execFileSync("bash", ["-c", command.replaceAll(README_BASE, stack.base)], { encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), expected);
  const row = page.locator("#pushes tr", { hasText: body.content });
  await row.waitFor({ timeout: 3000 });
  assert.equal(await row.getAttribute("data-ack"), "acked");
  assert.equal(await row.locator("td.content").textContent(), body.content);
});

test("the console fits 1280x800 with pushes and the event log in view, and is not blank", async () => {
  await page.locator("#log li", { hasText: "push #" }).first().waitFor({ timeout: 3000 });
  const l = await layout(page, ["#connection", "#session", "#send", "#pushes-card", "#tunnel", "#log-card", "#http-response"]);
  assert.ok(l.scrollHeight <= l.innerHeight, `the page scrolls: ${l.scrollHeight} > ${l.innerHeight}`);
  assert.ok(l.scrollWidth <= l.innerWidth, `the page scrolls sideways: ${l.scrollWidth} > ${l.innerWidth}`);
  for (const [sel, b] of Object.entries(l.boxes)) {
    assert.ok(b.top >= 0 && b.bottom <= VIEWPORT.height && b.right <= VIEWPORT.width, `${sel} is outside the window: ${JSON.stringify(b)}`);
  }
  for (const sel of ["#pushes-card", "#log-card"]) {
    assert.ok(l.boxes[sel].height >= 200, `${sel} is too small to read: ${l.boxes[sel].height}px`);
  }
  // The tunnel response scrolls inside its box instead of growing the page.
  const overflow = await page.locator("#http-response").evaluate((e) => getComputedStyle(e).overflowY);
  assert.equal(overflow, "auto");

  const png = await page.screenshot();
  writeFileSync(path.join(ARTIFACTS, "readme-demo.png"), png);
  const s = await screenshotStats(browser, png);
  assert.deepEqual([s.width, s.height], [VIEWPORT.width, VIEWPORT.height]);
  assert.ok(s.colours > 100, `only ${s.colours} colours: blank or unstyled`);
  assert.ok(s.nonBackground > 0.15, `only ${(s.nonBackground * 100).toFixed(1)}% of the pixels are not background`);
});

test("step 3: a reload fast-connects and binds demo-user again", async () => {
  await page.reload();
  await page.waitForSelector('#connect-kind[data-kind="fast"]', { timeout: 15000 });
  await page.waitForSelector('#bound-user[data-user="demo-user"]', { timeout: 10000 });
  assert.equal(await page.locator("#connect-kind").textContent(), "fast connect");
  assert.match(await page.locator("#connects li").first().textContent(), /fast connect in \d+ ms \(page load\)/);
});
