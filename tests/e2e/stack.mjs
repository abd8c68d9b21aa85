// Starts the demo stack for the browser tests: `mpush-proxy --demo` (in-process mpush-gateway
// on loopback; the binary needs the cargo feature "demo") serving www/, on 127.0.0.1 only.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHttp(url, ms = 30000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up: ${last}`);
}

/** The proxy binary: MPUSH_PROXY_BIN, else the debug build `cargo test` made (with the "demo" feature). */
export function proxyBin() {
  return process.env.MPUSH_PROXY_BIN || path.join(ROOT, "target/debug/mpush-proxy");
}

export class Stack {
  constructor({ port, extraOrigins = [] } = {}) {
    this.port = port;
    this.extraOrigins = extraOrigins;
    this.dir = mkdtempSync(path.join(os.tmpdir(), "mpush-e2e-"));
    this.proc = null;
    this.output = "";
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const args = [
      "--demo",
      "--listen", `127.0.0.1:${this.port}`,
      "--www", path.join(ROOT, "www"),
      // The key file survives restarts, so a restarted stack keeps the public key the page has.
      "--gateway-key-file", path.join(this.dir, "gateway-key.toml"),
      ...this.extraOrigins.flatMap((o) => ["--allowed-origin", o]),
    ];
    this.proc = spawn(proxyBin(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "info" } });
    const keep = (d) => { this.output = (this.output + d.toString()).slice(-20000); };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    this.exited = new Promise((resolve) => this.proc.on("exit", resolve));
    try {
      // A binary built without the "demo" feature exits at once and says so.
      const exited = this.exited.then((code) => { throw new Error(`mpush-proxy exited with ${code}`); });
      await Promise.race([waitHttp(`${this.base}/readyz`), exited]);
    } catch (e) {
      throw new Error(`${e.message}\nproxy output:\n${this.output}`);
    }
    return this;
  }

  async stop() {
    if (!this.proc) return;
    this.proc.kill("SIGTERM");
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 15000))]);
    if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
    this.proc = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async push(body) {
    const r = await fetch(`${this.base}/api/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`push API ${r.status}: ${await r.text()}`);
    return r.json();
  }
}

export const CHROMIUM_ARGS = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
  });
}

/** The window a first-time visitor is assumed to have; the console must fit it. */
export const VIEWPORT = { width: 1280, height: 800 };

/**
 * What a screenshot shows, measured in the browser (canvas): its size, how many distinct
 * colours it has and which share of its pixels differ from the most common colour. A blank or
 * half-rendered page has a handful of colours and almost everything in the background colour.
 */
export async function screenshotStats(browser, png) {
  const ctx = await browser.newContext();
  try {
    const p = await ctx.newPage();
    return await p.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const counts = new Map();
      for (let i = 0; i < d.length; i += 4) {
        const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
        counts.set(k, (counts.get(k) || 0) + 1);
      }
      const top = Math.max(...counts.values());
      const pixels = d.length / 4;
      return { width: c.width, height: c.height, colours: counts.size, nonBackground: (pixels - top) / pixels };
    }, png.toString("base64"));
  } finally {
    await ctx.close();
  }
}

/** Where the page's key boxes are, and whether the document scrolls, in the current viewport. */
export async function layout(page, selectors) {
  return page.evaluate((sels) => {
    const boxes = {};
    for (const s of sels) {
      const r = document.querySelector(s).getBoundingClientRect();
      boxes[s] = { top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height };
    }
    const el = document.documentElement;
    return { boxes, scrollHeight: el.scrollHeight, scrollWidth: el.scrollWidth, innerHeight, innerWidth };
  }, selectors);
}
