// The demo console: plain ES modules, no framework. It uses only the package's public API.
import init, { MPushClient } from "mpush-client-wasm";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const demo = { client: null, pushes: [], events: [], config: {} };
window.mpushDemo = demo; // for the end-to-end tests and for poking around in devtools

function log(text, cls) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
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
  } catch { /* not served in embedded mode: the fields stay editable */ }
  return {};
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${demo.config.wsPath || "/mpush"}`;
}

function renderPush(p) {
  const tr = document.createElement("tr");
  tr.dataset.pushId = String(p.id);
  const ackCell = document.createElement("td");
  const update = () => {
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
        update();
      };
      ackCell.append(b);
    } else {
      const span = document.createElement("span");
      span.className = p.ackMode === "none" ? "meta" : "ack-acked";
      span.textContent = p.ackMode === "none" ? "no ack" : p.ackMode === "auto" ? "auto-acked" : "acked";
      ackCell.append(span);
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
  update();
  $("pushes").prepend(tr);
}

function createClient() {
  if (demo.client) demo.client.close();
  const userId = params.get("user") || localStorage.getItem("mpush-demo.user") || undefined;
  const client = new MPushClient({
    url: $("url").value.trim(),
    publicKey: $("public-key").value.trim(),
    osName: "web",
    osVersion: navigator.userAgent.replace(/,/g, " ").slice(0, 60),
    clientVersion: "demo-console/1.0",
    storage: params.get("storage") || "local",
    userId,
    reconnect: { minDelay: 300, maxDelay: 5000 },
  });
  demo.client = client;
  $("device-id").textContent = client.deviceId;
  client.on("state", (s) => { setState(s); log(`state: ${s}`); });
  client.on("connect", (c) => {
    $("heartbeat").textContent = `${Math.round(c.heartbeat / 1000)} s`;
    $("connect-kind").textContent = c.fast ? "fast connect" : "handshake";
    $("connect-kind").dataset.kind = c.fast ? "fast" : "handshake";
    log(`connected by ${c.fast ? "fast connect" : "handshake"}, heartbeat ${c.heartbeat} ms`);
  });
  client.on("bind", (b) => {
    $("bound-user").textContent = `bound as ${b.userId}`;
    $("bound-user").dataset.user = b.userId;
    log(`bound ${b.userId}${b.rebind ? " (automatic re-bind)" : ""}`);
  });
  client.on("unbind", () => {
    $("bound-user").textContent = "not bound";
    delete $("bound-user").dataset.user;
    log("unbound");
  });
  client.on("push", (m) => {
    const p = { id: m.id, time: new Date().toLocaleTimeString(), text: m.text(), ackMode: m.ackMode, acked: m.ackMode === "auto", message: m };
    demo.pushes.push(p);
    renderPush(p);
    log(`push #${m.id} (${m.ackMode} ack): ${p.text}`);
  });
  client.on("kick", (k) => {
    $("bound-user").textContent = `kicked (${k.userId} bound elsewhere)`;
    $("bound-user").dataset.kicked = "true";
    delete $("bound-user").dataset.user;
    localStorage.removeItem("mpush-demo.user");
    log(`kicked: user ${k.userId} was bound by another connection`, "error");
  });
  client.on("disconnect", (d) => log(`disconnected: ${d && d.reason ? d.reason : "connection closed"}`));
  client.on("error", (e) => log(`error ${e.code || ""}: ${e.message}`, "error"));
  return client;
}

async function connect() {
  try {
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
  $("public-key").value = demo.config.publicKey || "";
  $("http-url").value = demo.config.echoUrl || "http://127.0.0.1/";
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
      localStorage.removeItem("mpush-demo.user");
    } catch (e) {
      log(`unbind failed: ${e.code || ""} ${e.message}`, "error");
    }
  };
  $("send-push").onclick = async () => {
    const body = {
      userId: $("push-user").value.trim(),
      content: $("push-content").value,
      ack: $("push-ack").value,
      timeoutMs: Number($("push-timeout").value) || 10000,
    };
    $("push-result").textContent = "sending…";
    try {
      const res = await fetch(demo.config.pushApi || "/api/push", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const json = await res.json();
      const r = (json.results || [])[0];
      $("push-result").textContent = r ? `${r.userId}: ${r.result} (code ${r.code})` : JSON.stringify(json);
      $("push-result").dataset.result = r ? r.result : "error";
      log(`push API: ${$("push-result").textContent}`);
    } catch (e) {
      $("push-result").textContent = `push API failed: ${e.message}`;
    }
  };
  $("http-send").onclick = async () => {
    const method = $("http-method").value;
    const init = { method };
    if (method === "POST" || method === "PUT") {
      init.body = $("http-body").value;
      init.headers = { "content-type": "application/json" };
    }
    $("http-status").textContent = "…";
    try {
      const res = await demo.client.fetch($("http-url").value.trim(), init);
      const text = await res.text();
      $("http-status").textContent = `${res.status} ${res.statusText}`;
      $("http-status").dataset.status = String(res.status);
      const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
      $("http-response").textContent = `${headers}\n\n${text}`;
      log(`tunnel: ${method} ${$("http-url").value} -> ${res.status}`);
    } catch (e) {
      $("http-status").textContent = `failed: ${e.code || ""} ${e.message}`;
      log(`tunnel failed: ${e.code || ""} ${e.message}`, "error");
    }
  };

  if ($("public-key").value) await connect();
}

main().catch((e) => log(`startup failed: ${e.message}`, "error"));
