// A TCP relay that can make an upstream go silent, for the live browser tests of the client's
// liveness checks (client-wasm/tests/live_silent.rs): mpush-proxy dials this relay as its
// upstream, the relay forwards to an mpush-gateway.
//
// `POST /silence` on the control port turns every connection open at that moment into a black
// hole: bytes are still read from both sockets but no longer forwarded, and neither socket is
// closed, not even when the other side closes (a server that hangs, a NAT that dropped its
// state, a half-dead route). Connections accepted later are relayed normally, so a client
// that gives up and reconnects gets a working link. `GET /stats` returns
// {accepted, open, silenced, silencedOpen}. The control port answers CORS requests (the test
// page runs on the test runner's origin). Everything listens on 127.0.0.1 only.
//
// Usage: node silent-relay.mjs <upstream host:port>
// Prints one line of JSON: {"relay": <port>, "control": <port>}.
import http from "node:http";
import net from "node:net";

const target = process.argv[2] ?? "";
const sep = target.lastIndexOf(":");
const host = target.slice(0, sep);
const port = Number(target.slice(sep + 1));
if (sep <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node silent-relay.mjs <upstream host:port>");
  process.exit(2);
}

/** @type {Set<{client: net.Socket, upstream: net.Socket, silent: boolean}>} */
const pairs = new Set();
let accepted = 0;

const relay = net.createServer({ allowHalfOpen: true }, (client) => {
  accepted += 1;
  const upstream = net.connect({ host, port, allowHalfOpen: true });
  const pair = { client, upstream, silent: false };
  pairs.add(pair);
  const wire = (from, to) => {
    from.on("data", (chunk) => {
      if (!pair.silent && !to.destroyed) to.write(chunk);
    });
    // A close is forwarded only while the pair is live: a silenced link stays open towards
    // the other side (the side that closed is done either way).
    from.on("end", () => {
      if (pair.silent) from.destroy();
      else to.end();
    });
    from.on("close", () => {
      if (!pair.silent) to.destroy();
      if (client.destroyed && upstream.destroyed) pairs.delete(pair);
    });
    from.on("error", () => {}); // reported by "close"; a relay for tests must not crash
  };
  wire(client, upstream);
  wire(upstream, client);
});

const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "content-type",
};
const stats = () => {
  const live = [...pairs].filter((p) => !p.client.destroyed || !p.upstream.destroyed);
  return {
    accepted,
    open: live.length,
    silenced: live.filter((p) => p.silent).length,
    // Silenced links whose two sockets are both still open.
    silencedOpen: live.filter((p) => p.silent && !p.client.destroyed && !p.upstream.destroyed).length,
  };
};
const control = http.createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { ...cors, "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.method === "OPTIONS") {
    res.writeHead(204, cors).end();
  } else if (req.method === "POST" && req.url === "/silence") {
    let n = 0;
    for (const p of pairs) {
      if (!p.silent && !p.client.destroyed && !p.upstream.destroyed) {
        p.silent = true;
        n += 1;
      }
    }
    reply(200, { silenced: n, ...stats() });
  } else if (req.method === "GET" && req.url === "/stats") {
    reply(200, stats());
  } else {
    reply(404, { error: "POST /silence or GET /stats" });
  }
});

relay.listen(0, "127.0.0.1", () => {
  control.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ relay: relay.address().port, control: control.address().port }));
  });
});
