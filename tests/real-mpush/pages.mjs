// What browser.mjs and cluster.mjs share: the harness page and the packed package served from
// one origin, and headless Chromium started the same way.
import { createServer } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
/** The browser package as a user gets it: the packed tarball unpacked by scripts/vendor-www.sh. */
export const VENDOR = path.join(ROOT, "www/vendor/mpush-client-wasm");

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

/** Throws, saying how to make it, when the packed package is not in www/vendor. */
export function requireVendoredPackage() {
  if (!existsSync(path.join(VENDOR, "pkg/index.js"))) throw new Error(`${VENDOR} is missing: run npm run build && scripts/vendor-www.sh`);
}

/**
 * Serves page/index.html at `/`, page/harness.js and the vendored package under
 * `/vendor/mpush-client-wasm/` on 127.0.0.1 (a free port); nothing outside those two
 * directories. Resolves with the listening `http.Server`.
 */
export function startPageServer() {
  const srv = createServer((req, res) => {
    const p = new URL(req.url, "http://x").pathname;
    let file;
    if (p === "/" || p === "/index.html") file = path.join(HERE, "page/index.html");
    else if (p === "/harness.js") file = path.join(HERE, "page/harness.js");
    else if (p.startsWith("/vendor/mpush-client-wasm/")) file = path.join(VENDOR, p.slice("/vendor/mpush-client-wasm/".length));
    const inside = file && (path.resolve(file).startsWith(HERE) || path.resolve(file).startsWith(VENDOR));
    if (!inside || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] || "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

/** Debian's Chromium (or CHROMIUM_BIN), headless, without the background traffic. */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: [
      "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}
