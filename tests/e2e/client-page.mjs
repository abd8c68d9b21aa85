// A bare page for driving `MPushClient` from Playwright: on the stack's origin (so the proxy's
// default origin check passes), with the package as scripts/build-wasm.sh built it in pkg/.
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { ROOT } from "./stack.mjs";

const PKG = path.join(ROOT, "pkg");
const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm" };

// In the page: `mp` is the package, `track(client)` records every event as plain data (errors
// as { name, code, message, cause }), `plain(v)` turns any value into such data.
async function setUp() {
  const mp = await import("/__client/index.js");
  await mp.default();
  const EVENTS = ["state", "connect", "reconnecting", "heartbeat", "push", "kick", "bind", "unbind", "error", "disconnect"];
  function plain(v) {
    if (v instanceof Error) {
      const o = { name: v.name, code: v.code, message: v.message };
      if (v.cause !== undefined) o.cause = plain(v.cause);
      if (v.serverCode !== undefined) o.serverCode = v.serverCode;
      return o;
    }
    if (v === null || typeof v !== "object") return v;
    const o = {};
    for (const k of Object.keys(v)) o[k] = plain(v[k]);
    return o;
  }
  window.mp = mp;
  window.plain = plain;
  window.track = (client) => {
    const log = [];
    for (const ev of EVENTS) client.on(ev, (p) => log.push({ ev, p: plain(p), at: Date.now() }));
    return log;
  };
}

let snapshot;

/**
 * The files of pkg/, read once per test process: pkg/ is rebuilt in place by
 * scripts/build-wasm.sh, so a build running meanwhile must not change the package under a test
 * (a build under way is waited for, up to two minutes).
 */
function pkgFiles() {
  snapshot ??= (async () => {
    const done = () => ["index.js", "mpush_client_wasm.js", "mpush_client_wasm_bg.wasm"].every((f) => existsSync(path.join(PKG, f)));
    for (let i = 0; i < 240 && !done(); i++) await new Promise((r) => setTimeout(r, 500));
    if (!done()) throw new Error("pkg/ is not built: run scripts/build-wasm.sh");
    const files = new Map();
    for (const name of await readdir(PKG)) {
      if (!name.startsWith(".")) files.set(name, await readFile(path.join(PKG, name)));
    }
    return files;
  })();
  return snapshot;
}

/**
 * Opens a page on `stack`'s origin with the package loaded. The document is one the proxy
 * itself serves (/readyz): a document Playwright fulfils would count as a public page, and
 * Chromium's local network access checks would block its WebSocket to 127.0.0.1.
 */
export async function openClientPage(context, stack) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") console.log(`[page] ${m.text()}`); });
  const files = await pkgFiles();
  await page.route(`${stack.base}/__client/**`, async (route) => {
    const name = path.basename(new URL(route.request().url()).pathname);
    const body = files.get(name);
    if (body) {
      await route.fulfill({ status: 200, contentType: TYPES[path.extname(name)] ?? "application/octet-stream", body });
    } else {
      await route.fulfill({ status: 404, body: `not in pkg/: ${name} (run scripts/build-wasm.sh)` });
    }
  });
  await page.goto(`${stack.base}/readyz`);
  await page.evaluate(setUp);
  return page;
}

/** The embedded gateway's public key and WebSocket URL. */
export async function demoConfig(stack) {
  const r = await fetch(`${stack.base}/demo-config.json`);
  const c = await r.json();
  return { key: c.publicKey, ws: `ws://127.0.0.1:${stack.port}${c.wsPath}`, echoUrl: c.echoUrl };
}
