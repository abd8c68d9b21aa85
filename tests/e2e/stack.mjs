// Starts the demo stack for the browser tests: mpush-proxy in embedded mode (in-process
// mpush-gateway on loopback) serving www/, on 127.0.0.1 only.
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

/** The proxy binary: MPUSH_PROXY_BIN, else the debug build `cargo test` made. */
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
      await waitHttp(`${this.base}/readyz`);
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
