// The interop harness page: wraps the npm package's MPushClient so that the Node runner
// (tests/real-mpush/browser.mjs, through playwright's page.evaluate) can drive clients and read
// back, as plain JSON, everything a web app would observe: events, promise results and errors.
import init, { MPushClient } from "mpush-client-wasm";

const clients = new Map();
let nextId = 1;

/** An error as the runner compares it: the stable fields only. */
function errorInfo(e) {
  if (e && e.name === "MPushError") {
    const info = { code: e.code };
    if (e.serverCode !== undefined) info.serverCode = e.serverCode;
    return info;
  }
  return { code: "NOT_MPUSH_ERROR", message: String(e && e.message ? e.message : e) };
}

const EVENTS = ["state", "connect", "push", "kick", "bind", "unbind", "error", "disconnect", "reconnecting", "handshakeRefused"];

function record(entry, ev, payload) {
  const at = Math.round(performance.now());
  if (ev === "push") {
    const msg = payload;
    entry.pushes.push(msg);
    entry.log.push({ ev, at, text: msg.text(), size: msg.content.length, ackMode: msg.ackMode });
    return;
  }
  if (ev === "error" || (payload && payload.name === "MPushError")) {
    entry.log.push({ ev, at, ...errorInfo(payload) });
    return;
  }
  let data = payload;
  try {
    data = payload === undefined ? null : JSON.parse(JSON.stringify(payload));
  } catch {
    data = String(payload);
  }
  entry.log.push({ ev, at, data });
}

/** Bodies by spec: a string, { text }, or { repeat, times } or { random: n } (incompressible bytes). */
function makeBody(spec) {
  if (spec == null) return undefined;
  if (typeof spec === "string") return spec;
  if (spec.text !== undefined) return spec.text;
  if (spec.repeat !== undefined) return spec.repeat.repeat(spec.times);
  if (spec.random !== undefined) {
    const b = new Uint8Array(spec.random);
    for (let i = 0; i < b.length; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
    return b;
  }
  throw new Error(`bad body spec ${JSON.stringify(spec)}`);
}

async function settle(p) {
  try {
    const value = await p;
    return { ok: true, value: value === undefined ? null : value };
  } catch (e) {
    return { ok: false, error: errorInfo(e) };
  }
}

window.h = {
  ready: false,

  /** Creates a client; returns its handle. */
  create(options) {
    const client = new MPushClient(options);
    const id = nextId++;
    const entry = { client, log: [], pushes: [] };
    for (const ev of EVENTS) {
      try {
        client.on(ev, (payload) => record(entry, ev, payload));
      } catch {
        // An event this build of the package does not know: not observable, not recorded.
      }
    }
    clients.set(id, entry);
    return id;
  },

  /** Events so far (and clears them when `clear`). */
  log(id, clear = false) {
    const entry = clients.get(id);
    const out = entry.log.slice();
    if (clear) entry.log.length = 0;
    return out;
  },

  info(id) {
    const c = clients.get(id).client;
    return { state: c.state, heartbeat: c.heartbeat ?? null, fast: c.lastConnectWasFast, deviceId: c.deviceId, sharing: c.sharing ?? null };
  },

  connect: (id) => settle(clients.get(id).client.connect()),
  bind: (id, userId, tags) => settle(clients.get(id).client.bind(userId, tags ?? null)),
  unbind: (id) => settle(clients.get(id).client.unbind()),
  push: (id, body, ack) => settle(clients.get(id).client.push(makeBody(body), { ack })),

  /** Acks the biz push whose text is `text`; returns whether an ack was sent. */
  ackPush(id, text) {
    const msg = clients.get(id).pushes.find((m) => m.text() === text);
    return msg ? msg.ack() : null;
  },

  /** A tunnelled request; the response as status, selected headers and body (text or size). */
  async fetch(id, url, init = {}) {
    const r = await settle(
      (async () => {
        const res = await clients.get(id).client.fetch(url, { ...init, body: makeBody(init.body) });
        const text = await res.text();
        return { status: res.status, contentType: res.headers.get("content-type"), length: text.length, text: text.length > 2048 ? null : text };
      })(),
    );
    return r;
  },

  close(id) {
    const entry = clients.get(id);
    entry.client.close();
    entry.client.free();
    clients.delete(id);
  },

  /**
   * A raw WebSocket through the proxy: sends the given packets (hex), collects every binary
   * message (hex) until the socket closes or `waitMs` passes. For what the package never sends
   * (an unsupported command), compared byte for byte between servers.
   */
  raw(url, packetsHex, waitMs) {
    return new Promise((resolve) => {
      const got = [];
      const ws = new WebSocket(url, "mpush");
      ws.binaryType = "arraybuffer";
      const done = (close) => { clearTimeout(timer); resolve({ messages: got, close }); };
      const timer = setTimeout(() => { ws.onclose = null; ws.close(); done(null); }, waitMs);
      ws.onopen = () => {
        for (const hex of packetsHex) ws.send(Uint8Array.from(hex.match(/../g).map((x) => parseInt(x, 16))));
      };
      ws.onmessage = (m) => got.push([...new Uint8Array(m.data)].map((b) => b.toString(16).padStart(2, "0")).join(""));
      ws.onclose = (e) => done({ code: e.code, reason: e.reason });
    });
  },
};

await init();
window.h.ready = true;
document.getElementById("status").textContent = "ready";
