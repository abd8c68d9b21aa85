// Consumer test: a minimal Vite app outside the workspace installs the `npm pack` tarball,
// builds, and runs in headless Chromium against the demo stack.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, Stack, freePort, launchChromium } from "../e2e/stack.mjs";

const HERE = path.dirname(new URL(import.meta.url).pathname);
let stack;
let preview;
let browser;
let appPort;

function run(cmd, args, cwd) {
  execFileSync(cmd, args, { cwd, stdio: ["ignore", "inherit", "inherit"] });
}

before(async () => {
  const work = mkdtempSync(path.join(os.tmpdir(), "mpush-consumer-"));
  // The tarball exactly as it is published (scripts/npm-pack.sh: npm pack of the staged package).
  const packDir = path.join(work, "pack");
  mkdirSync(packDir, { recursive: true });
  run(path.join(ROOT, "scripts/npm-pack.sh"), ["--pack-destination", packDir, "--silent"], ROOT);
  const tarball = path.join(packDir, readdirSync(packDir).find((f) => f.endsWith(".tgz")));
  const app = path.join(work, "app");
  cpSync(path.join(HERE, "app"), app, { recursive: true });
  writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "mpush-consumer", private: true, type: "module" }));
  run("npm", ["install", "--no-audit", "--no-fund", "--silent", tarball, `vite@${process.env.VITE_VERSION || "8"}`], app);
  run("npx", ["vite", "build"], app);

  appPort = await freePort();
  stack = await new Stack({ extraOrigins: [`http://127.0.0.1:${appPort}`] }).start();
  // In a process group of its own: `npx` starts vite as a child, which a kill of npx alone
  // leaves running (it outlived the test on CI machines).
  preview = spawn("npx", ["vite", "preview", "--host", "127.0.0.1", "--port", String(appPort), "--strictPort"], {
    cwd: app,
    stdio: "ignore",
    detached: true,
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${appPort}/`)).ok) break;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (preview) {
    try {
      process.kill(-preview.pid, "SIGTERM");
    } catch {
      // gone already
    }
  }
  if (stack) await stack.stop();
});

test("the Vite-built consumer connects, binds and receives a push", async () => {
  const key = (await (await fetch(`${stack.base}/demo-config.json`)).json()).publicKey;
  const user = `vite-${process.pid}`;
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  const q = new URLSearchParams({ ws: `ws://127.0.0.1:${stack.port}/mpush`, key, user });
  await page.goto(`http://127.0.0.1:${appPort}/?${q}`);
  await page.waitForSelector(`body[data-bound="${user}"]`, { timeout: 20000 });
  assert.equal(await page.locator("body").getAttribute("data-state"), "ready");
  const res = await stack.push({ userId: user, content: "from vite test", ack: "auto", timeoutMs: 5000 });
  assert.equal(res.results[0].result, "success");
  await page.waitForFunction(() => document.getElementById("pushes").textContent.includes("from vite test"));
});
