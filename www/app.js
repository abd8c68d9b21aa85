// The demo console: plain ES modules, no framework. It uses only the package's public API.
import init, { MPushClient } from "mpush-client-wasm";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// Everything the page observed, for the end-to-end tests and for poking around in devtools.
const demo = { client: null, pushes: [], events: [], connects: [], ackRtts: [], config: {} };
window.mpushDemo = demo;

const clock = (t = Date.now()) => new Date(t).toTimeString().slice(0, 8); // HH:MM:SS, local time
const ms = (v) => `${Math.round(v)} ms`;

function log(text, cls) {
  const li = document.createElement("li");
  li.textContent = `${clock()}  ${text}`;
  if (cls) li.className = cls;
  $("log").prepend(li);
  demo.events.push(text);
}

function setState(s) {
  $("state").textContent = s;
  $("state").dataset.state = s;
}

async function loadConfig() {
  try {
    const res = await fetch("./demo-config.json", { cache: "no-store" });
    if (res.ok) return await res.json();
  } catch { /* no config served: the fields stay editable */ }
  return {};
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${demo.config.wsPath || "/mpush"}`;
}

// ---- pushes ---------------------------------------------------------------------------------

// Pushes sent from this page through the push API, waiting to be seen arriving: matched by
// content, they give the delivery time and the ack round trip (the API answers after the ack).
const sent = [];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function showAckRtt() {
  const xs = demo.ackRtts;
  if (!xs.length) return;
  $("ack-rtt").textContent = `last ${ms(xs[xs.length - 1])}, median ${ms(median(xs))} (${xs.length} acked)`;
  $("ack-rtt").dataset.count = String(xs.length);
}

function renderPush(p) {
  const tr = document.createElement("tr");
  tr.className = "fresh";
  tr.dataset.pushId = String(p.id);
  const ackCell = document.createElement("td");
  p.update = () => {
    ackCell.replaceChildren();
    if (p.ackMode === "biz" && !p.acked) {
      const b = document.createElement("button");
      b.textContent = "Ack";
      b.className = "ack-button";
      b.onclick = () => {
        try {
          p.message.ack();
          p.acked = true;
          log(`acked push #${p.id}`);
        } catch (e) {
          log(`ack failed: ${e.code || ""} ${e.message}`, "error");
        }
        p.update();
      };
      ackCell.append(b);
    } else {
      const span = document.createElement("span");
      span.className = p.ackMode === "none" ? "meta" : "ack-acked";
      span.textContent = p.ackMode === "none" ? "no ack" : p.ackMode === "auto" ? "auto-acked" : "acked";
      ackCell.append(span);
    }
    if (p.rtt !== undefined) {
      const rtt = document.createElement("div");
      rtt.className = "meta rtt";
      rtt.textContent = `round trip ${ms(p.rtt)}`;
      ackCell.append(rtt);
    }
    tr.dataset.ack = p.acked ? "acked" : p.ackMode;
  };
  const cells = [String(p.id), p.time, p.text].map((t, i) => {
    const td = document.createElement("td");
    td.textContent = t;
    if (i === 2) td.className = "content";
    return td;
  });
  tr.append(...cells, ackCell);
  p.update();
  $("pushes").prepend(tr);
  $("pushes-empty").hidden = true;
}

async function sendPush() {
  const body = {
    userId: $("push-user").value.trim(),
    content: $("push-content").value,
    ack: $("push-ack").value,
    timeoutMs: Number($("push-timeout").value) || 10000,
  };
  const s = { content: body.content, t0: performance.now(), push: null };
  sent.push(s);
  $("push-result").textContent = "sending…";
  delete $("push-result").dataset.result;
  try {
    const res = await fetch(demo.config.pushApi || "/api/push", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const elapsed = performance.now() - s.t0;
    const json = await res.json();
    const r = (json.results || [])[0];
    let text = r ? `${r.userId}: ${r.result} (code ${r.code})` : `HTTP ${res.status}: ${JSON.stringify(json)}`;
    if (r && r.result === "success" && body.ack !== "none" && s.push) {
      // The API answered success after the client's ack reached the server.
      s.push.rtt = elapsed;
      s.push.update();
      demo.ackRtts.push(elapsed);
      showAckRtt();
      text += `, ack round trip ${ms(elapsed)}`;
    } else if (r && r.result === "offline") {
      text += ": no connection has this user bound";
    }
    $("push-result").textContent = text;
    $("push-result").dataset.result = r ? r.result : "error";
    log(`push API: ${text}`);
  } catch (e) {
    $("push-result").textContent = `push API failed: ${e.message}`;
    $("push-result").dataset.result = "error";
  } finally {
    sent.splice(sent.indexOf(s), 1);
  }
}

// ---- session facts --------------------------------------------------------------------------

let attemptStart = null;

function recordConnect(c) {
  const took = attemptStart === null ? null : performance.now() - attemptStart;
  const entry = { at: Date.now(), fast: c.fast, heartbeat: c.heartbeat, ms: took, first: demo.connects.length === 0 };
  demo.connects.push(entry);
  const li = document.createElement("li");
  li.dataset.kind = c.fast ? "fast" : "handshake";
  const why = entry.first ? "page load" : "reconnect";
  li.textContent = `${clock(entry.at)} ${c.fast ? "fast connect" : "handshake"}` +
    `${took === null ? "" : ` in ${ms(took)}`} (${why})`;
  $("connects").prepend(li);
}

function showHeartbeat() {
  const client = demo.client;
  const at = client && client.lastHeartbeatAt;
  if (!at) return;
  const ago = Math.max(0, Math.round((Date.now() - at) / 1000));
  $("last-heartbeat").textContent = `${clock(at)} (${ago} s ago)`;
  $("last-heartbeat").dataset.at = String(at);
}

// ---- the client -----------------------------------------------------------------------------

function createClient() {
  if (demo.client) demo.client.close();
  const userId = $("user-id").value.trim() || undefined;
  const tags = $("tags").value.trim() || undefined;
  const heartbeat = Number(params.get("heartbeat") || demo.config.maxHeartbeat) || undefined;
  const client = new MPushClient({
    url: $("url").value.trim(),
    publicKey: $("public-key").value.trim(),
    osName: "web",
    osVersion: navigator.userAgent.replace(/,/g, " ").slice(0, 60),
    clientVersion: "demo-console/1.0",
    storage: params.get("storage") || "local",
    // Bound after every (re)connect, so a push to this user reaches the page from the start.
    userId,
    tags: userId ? tags : undefined,
    maxHeartbeat: heartbeat,
    reconnect: { minDelay: 300, maxDelay: 5000 },
  });
  demo.client = client;
  $("device-id").textContent = client.deviceId;
  client.on("state", (s) => {
    setState(s);
    if (s === "handshaking") attemptStart = performance.now();
    log(`state: ${s}`);
  });
  client.on("connect", (c) => {
    const kind = c.fast ? "fast connect" : "handshake";
    $("heartbeat").textContent = `${Math.round(c.heartbeat / 1000)} s`;
    $("heartbeat-detail").textContent = `${c.heartbeat} ms (a heartbeat after ${Math.round(c.heartbeat / 1000) - 1} s without writing)`;
    $("connect-kind").textContent = kind;
    $("connect-kind").dataset.kind = c.fast ? "fast" : "handshake";
    recordConnect(c);
    log(`connected by ${kind}, heartbeat ${c.heartbeat} ms`);
  });
  client.on("heartbeat", () => showHeartbeat());
  client.on("bind", (b) => {
    $("bound-user").textContent = b.userId;
    $("bound-user").dataset.user = b.userId;
    delete $("bound-user").dataset.kicked;
    log(`bound ${b.userId}${b.rebind ? " (automatic re-bind)" : ""}`);
  });
  client.on("unbind", () => {
    $("bound-user").textContent = "not bound";
    delete $("bound-user").dataset.user;
    log("unbound");
  });
  client.on("push", (m) => {
    const p = { id: m.id, time: clock(), text: m.text(), ackMode: m.ackMode, acked: m.ackMode === "auto", message: m };
    const mine = sent.find((s) => !s.push && s.content === p.text);
    if (mine) mine.push = p;
    demo.pushes.push(p);
    renderPush(p);
    log(`push #${m.id} (${m.ackMode} ack): ${p.text}`);
  });
  client.on("kick", (k) => {
    $("bound-user").textContent = `kicked (${k.userId} bound elsewhere)`;
    $("bound-user").dataset.kicked = "true";
    delete $("bound-user").dataset.user;
    log(`kicked: user ${k.userId} was bound by another connection`, "error");
  });
  client.on("disconnect", (d) => log(`disconnected: ${d && d.reason ? d.reason : "connection closed"}`));
  client.on("error", (e) => log(`error ${e.code || ""}: ${e.message}`, "error"));
  return client;
}

async function connect() {
  try {
    const userId = $("user-id").value.trim();
    if (userId) localStorage.setItem("mpush-demo.user", userId);
    const client = createClient();
    await client.connect();
  } catch (e) {
    log(`connect failed: ${e.code || ""} ${e.message}`, "error");
  }
}

async function main() {
  await init();
  demo.config = await loadConfig();
  $("url").value = params.get("url") || defaultUrl();
  $("public-key").value = params.get("key") || demo.config.publicKey || "";
  const key = $("public-key").value;
  $("key-summary").textContent = key ? `${key.slice(0, 16)}… (${demo.config.publicKey ? "from the server" : "entered"})` : "(not set)";
  if (!key) $("key-details").open = true;
  $("http-url").value = demo.config.echoUrl || "http://127.0.0.1/";
  if (demo.config.server) $("server-kind").textContent = demo.config.server;
  if (demo.config.pushVia) $("send-via").textContent = `(${demo.config.pushVia})`;
  const user = params.get("user") || localStorage.getItem("mpush-demo.user");
  if (user) { $("user-id").value = user; $("push-user").value = user; }

  $("connect").onclick = connect;
  $("disconnect").onclick = () => { demo.client && demo.client.close(); };
  $("bind").onclick = async () => {
    const userId = $("user-id").value.trim();
    const tags = $("tags").value.trim() || undefined;
    try {
      await demo.client.bind(userId, tags);
      localStorage.setItem("mpush-demo.user", userId);
    } catch (e) {
      log(`bind failed: ${e.code || ""} ${e.message}`, "error");
    }
  };
  $("unbind").onclick = async () => {
    try {
      await demo.client.unbind();
    } catch (e) {
      log(`unbind failed: ${e.code || ""} ${e.message}`, "error");
    }
  };
  $("send-push").onclick = sendPush;
  $("http-send").onclick = async () => {
    const method = $("http-method").value;
    const req = { method };
    if (method === "POST" || method === "PUT") {
      req.body = $("http-body").value;
      req.headers = { "content-type": "application/json" };
    }
    $("http-status").textContent = "…";
    const t0 = performance.now();
    try {
      const res = await demo.client.fetch($("http-url").value.trim(), req);
      const text = await res.text();
      $("http-status").textContent = `${res.status} ${res.statusText} in ${ms(performance.now() - t0)}`;
      $("http-status").dataset.status = String(res.status);
      const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
      $("http-response").textContent = `${headers}\n\n${text}`;
      log(`tunnel: ${method} ${$("http-url").value} -> ${res.status}`);
    } catch (e) {
      $("http-status").textContent = `failed: ${e.code || ""} ${e.message}`;
      log(`tunnel failed: ${e.code || ""} ${e.message}`, "error");
    }
  };
  setInterval(showHeartbeat, 1000);

  if ($("public-key").value) await connect();
}

main().catch((e) => log(`startup failed: ${e.message}`, "error"));
