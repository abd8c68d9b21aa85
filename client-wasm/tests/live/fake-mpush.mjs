// A scripted stand-in for an MPUSH connection server behind mpush-proxy, for the browser tests
// of behaviour the embedded gateway cannot show: it speaks WebSocket (one binary message = one
// MPUSH packet, as mpush-proxy relays them) on 127.0.0.1 and records what the client sent.
//
//   ws://127.0.0.1:PORT/refuse/<tag>  answers the handshake as MPUSH does when it cannot
//                                     decrypt it (wrong public key): Error cmd 2, code 100
//                                     "handle message error", then closes.
//   ws://127.0.0.1:PORT/fast/<tag>    accepts fast connect with any session id, using the
//                                     session key and iv below (the test stores a matching
//                                     session); decrypts and inflates (real zlib) pushes and
//                                     HTTP requests, acks auto-ack pushes, never answers HTTP.
//   GET http://127.0.0.1:PORT/stats/<tag>  what it saw, as JSON (CORS-enabled).
//
// Usage: node fake-mpush.mjs   (prints its port)
import http from "node:http";
import crypto from "node:crypto";
import zlib from "node:zlib";

// Session key 1..16 and iv 17..32 (the test's stored session says the same).
const KEY = Buffer.from(Array.from({ length: 16 }, (_, i) => i + 1));
const IV = Buffer.from(Array.from({ length: 16 }, (_, i) => i + 17));
const CMD = { HEARTBEAT: 1, HANDSHAKE: 2, FAST_CONNECT: 7, ERROR: 10, HTTP_PROXY: 12, PUSH: 15, ACK: 23 };
const F = { CRYPTO: 1, COMPRESS: 2, AUTO_ACK: 8 };

const stats = new Map();
function statsFor(tag) {
  if (!stats.has(tag)) stats.set(tag, { connections: 0, packets: [], pushes: [], http: [] });
  return stats.get(tag);
}

function packet(cmd, flags, sessionId, body) {
  const h = Buffer.alloc(13);
  h.writeInt32BE(body.length, 0);
  h[4] = cmd;
  h[7] = flags;
  h.writeInt32BE(sessionId, 8);
  return Buffer.concat([h, body]);
}

function str(s) {
  if (s == null) return Buffer.from([0, 0]);
  const b = Buffer.from(s, "utf8");
  const l = Buffer.alloc(2);
  l.writeUInt16BE(b.length);
  return Buffer.concat([l, b]);
}

function readStr(buf, off) {
  const n = buf.readUInt16BE(off);
  return [buf.subarray(off + 2, off + 2 + n).toString("utf8"), off + 2 + n];
}

function open(p) {
  let body = p.body;
  if (p.flags & F.CRYPTO && body.length) {
    const d = crypto.createDecipheriv("aes-128-cbc", KEY, IV);
    body = Buffer.concat([d.update(body), d.final()]);
  }
  if (p.flags & F.COMPRESS && body.length) body = zlib.inflateSync(body);
  return body;
}

// ---- a minimal RFC 6455 server: binary messages in and out, no extensions ----

function frame(payload, opcode = 2) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (n >= 126) {
    head[0] = 0x80 | opcode;
    if (n < 65536) {
      head[1] = 126;
      head.writeUInt16BE(n, 2);
    } else {
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(n), 2);
    }
  }
  return Buffer.concat([head, payload]);
}

function accept(req, socket, onMessage) {
  const key = req.headers["sec-websocket-key"];
  const acceptKey = crypto.createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  const proto = (req.headers["sec-websocket-protocol"] || "").split(",").map((s) => s.trim());
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${acceptKey}\r\n` +
      (proto.includes("mpush") ? "Sec-WebSocket-Protocol: mpush\r\n" : "") +
      "\r\n",
  );
  const ws = {
    send: (b) => socket.writable && socket.write(frame(b)),
    close: (code = 1000) => {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(code);
      if (socket.writable) socket.write(frame(b, 8));
      socket.end();
    },
  };
  let buf = Buffer.alloc(0);
  socket.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      let n = buf[1] & 0x7f;
      let off = 2;
      if (n === 126) {
        if (buf.length < 4) return;
        n = buf.readUInt16BE(2);
        off = 4;
      } else if (n === 127) {
        if (buf.length < 10) return;
        n = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + 4 + n) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + n));
      for (let i = 0; i < n; i++) payload[i] ^= mask[i % 4];
      buf = buf.subarray(off + 4 + n);
      if (opcode === 8) return ws.close();
      if (opcode === 9) socket.write(frame(payload, 10));
      if (opcode === 2) onMessage(ws, payload);
    }
  });
  socket.on("error", () => {});
}

// ---- the scripted MPUSH side ----

function onPacket(mode, st, ws, b) {
  if (b.length === 1 && b[0] === 0xdf) return ws.send(b); // heartbeat echo
  const p = { cmd: b[4], flags: b[7], sessionId: b.readInt32BE(8), body: b.subarray(13) };
  st.packets.push({ cmd: p.cmd, flags: p.flags, sessionId: p.sessionId, length: p.body.length });
  if (mode === "refuse" && p.cmd === CMD.HANDSHAKE) {
    // MessageDispatcher: ErrorMessage.from(packet).setErrorCode(DISPATCH_ERROR).close()
    const body = Buffer.concat([Buffer.from([CMD.HANDSHAKE, 100]), str("handle message error"), str(null)]);
    ws.send(packet(CMD.ERROR, 0, p.sessionId, body));
    return ws.close();
  }
  if (mode !== "fast") return;
  if (p.cmd === CMD.FAST_CONNECT) {
    const hb = Buffer.alloc(4);
    hb.writeInt32BE(180000);
    return ws.send(packet(CMD.FAST_CONNECT, 0, p.sessionId, hb));
  }
  if (p.cmd === CMD.PUSH) {
    const content = open(p);
    st.pushes.push({ compressed: !!(p.flags & F.COMPRESS), length: content.length, sha256: sha(content) });
    if (p.flags & F.AUTO_ACK) ws.send(packet(CMD.ACK, 0, p.sessionId, Buffer.alloc(0)));
    return;
  }
  if (p.cmd === CMD.HTTP_PROXY) {
    const body = open(p);
    let off = 1;
    let uri, headers;
    [uri, off] = readStr(body, off);
    [headers, off] = readStr(body, off);
    st.http.push({ sessionId: p.sessionId, uri, headers, compressed: !!(p.flags & F.COMPRESS) });
    // Never answered: the client's own timeout must end the request.
  }
}

function sha(b) {
  return crypto.createHash("sha256").update(b).digest("hex");
}

const cors = { "access-control-allow-origin": "*", "content-type": "application/json" };
const server = http.createServer((req, res) => {
  const m = req.url.match(/^\/stats\/([\w-]+)$/);
  if (!m) return res.writeHead(404, cors).end("{}");
  res.writeHead(200, cors).end(JSON.stringify(statsFor(m[1])));
});
server.on("upgrade", (req, socket) => {
  const m = req.url.match(/^\/(refuse|fast)\/([\w-]+)$/);
  if (!m) return socket.destroy();
  const st = statsFor(m[2]);
  st.connections++;
  accept(req, socket, (ws, b) => onPacket(m[1], st, ws, b));
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
