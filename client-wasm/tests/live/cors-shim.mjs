// A loopback-only CORS shim for the live browser tests: the wasm-bindgen test page runs on
// its own origin, and the proxy's /api/* (the gateway push API) sends no CORS headers.
// Usage: node cors-shim.mjs <target base, e.g. http://127.0.0.1:8080/api>; prints its port.
import http from "node:http";

const target = process.argv[2];
if (!target) {
  console.error("usage: node cors-shim.mjs <target base URL>");
  process.exit(2);
}
const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "content-type, authorization",
};
const server = http.createServer(async (req, res) => {
  if (req.method === "OPTIONS") {
    res.writeHead(204, cors).end();
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  try {
    const r = await fetch(target + req.url, {
      method: req.method,
      headers: { "content-type": req.headers["content-type"] || "application/json" },
      body: req.method === "GET" ? undefined : Buffer.concat(chunks),
    });
    res.writeHead(r.status, { ...cors, "content-type": r.headers.get("content-type") || "text/plain" });
    res.end(Buffer.from(await r.arrayBuffer()));
  } catch (e) {
    res.writeHead(502, cors).end(String(e));
  }
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
