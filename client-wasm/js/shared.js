// `MPushClient` as the package exports it: one MPUSH connection shared by every tab of an origin
// that uses the same url, publicKey and storageKey (issue 11), over the wasm client `Core`.
//
// Why Web Locks + BroadcastChannel and not a SharedWorker: the wasm client keeps its device id
// and fast-connect session in localStorage (a worker has none, and storage adapters are
// synchronous functions that cannot cross into one), listens to page events (online, pagehide,
// visibilitychange), and a worker needs a separate entry file every bundler must find. So the
// connection lives in one tab, the leader, which holds the Web Lock named after the connection;
// the other tabs (followers) wait for that lock and talk to the leader over a BroadcastChannel of
// the same name. A tab that closes releases the lock at once; the next waiter builds a client
// from the same stored session and fast-connects. The price: the leader may be a hidden tab
// whose timers the browser throttles; the wasm client already checks its connection when a
// timer fires late.
//
// Messages on the channel, all { t, from, ... }:
//   hello                  a tab joined; the leader answers with its snapshot
//   lead  { s }            a tab became leader (s: snapshot)
//   snap  { s, to? }       the leader's state changed outside an event
//   ev    { n, p, s }      an event of the shared connection (p packed), with the snapshot after it
//   push  { p }            a push, posted before the leader's client acks it
//   acked { id }           a "biz" push was acked (once, whichever tab asked)
//   call  { to, id, m, a } a follower's bind/unbind/push/fetch/ack; answered by res { to, id, ok, v }
//   bye                    the leader leaves (close, page hidden or unloading)
//   fail  { e }            the leader's client gave up (e.g. HANDSHAKE_REFUSED): every tab stops
import { MPushClient as Core } from "./mpush_client_wasm.js";

/** Events of the facade itself, beside the wasm client's. */
const OWN_EVENTS = ["sharing"];
/** Methods a follower may ask the leader to run. */
const CALLS = ["bind", "unbind", "push", "fetch", "ack"];
/** How many "biz" push ids a tab remembers as awaiting an ack. */
const MAX_AWAITING = 1000;

// The wasm client's readable state: one export, `__snapshot()`, instead of a wasm getter each
// (smaller). The getters are defined on `Core` here; the facade serves each one, from the local
// client or from the leader's snapshot. A field added to the snapshot in Rust goes here too.
const GETTERS = ["state", "heartbeat", "lastHeartbeatAt", "lastConnectWasFast", "userId", "deviceId"];
for (const g of GETTERS) {
  Object.defineProperty(Core.prototype, g, {
    get() {
      return this.__snapshot()[g];
    },
    configurable: true,
  });
}

function mpushError(code, message) {
  const e = new Error(message);
  e.name = "MPushError";
  e.code = code;
  return e;
}

const isPlain = (v) => Array.isArray(v) || (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype);
const mapPlain = (v, f) => (Array.isArray(v) ? v.map(f) : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, f(x)])));

// Structured clone drops an Error's name and own fields (code, serverCode, ...) and cannot copy
// a Response: both cross the channel as tagged plain objects, also inside payloads (the
// "reconnecting" event's `error`).
function pack(v) {
  if (v instanceof Error) {
    return { $err: { ...v, name: v.name, message: v.message, cause: v.cause === undefined ? undefined : pack(v.cause) } };
  }
  return isPlain(v) ? mapPlain(v, pack) : v;
}

function unpack(v) {
  if (v && typeof v === "object" && v.$err) {
    const { name, message, cause, ...fields } = v.$err;
    const e = new Error(message, cause === undefined ? undefined : { cause: unpack(cause) });
    e.name = name;
    for (const [k, x] of Object.entries(fields)) if (x !== undefined) e[k] = x;
    return e;
  }
  if (v && typeof v === "object" && v.$res) {
    const r = v.$res;
    const empty = [101, 103, 204, 205, 304].includes(r.status);
    const res = new Response(empty ? null : r.body, { status: r.status, statusText: r.statusText, headers: r.headers });
    Object.defineProperty(res, "url", { value: r.url });
    return res;
  }
  return isPlain(v) ? mapPlain(v, unpack) : v;
}

async function packResult(v) {
  if (typeof Response !== "undefined" && v instanceof Response) {
    return { $res: { status: v.status, statusText: v.statusText, headers: [...v.headers], url: v.url, body: await v.arrayBuffer() } };
  }
  return pack(v);
}

// fetch arguments a follower sends: URL, Headers, URLSearchParams and Request do not clone.
async function fetchArgs(input, init) {
  let url = input;
  let o = {};
  if (typeof Request !== "undefined" && input instanceof Request) {
    url = input.url;
    o = { method: input.method, headers: [...input.headers] };
    if (input.method !== "GET" && input.method !== "HEAD") o.body = await input.arrayBuffer();
  } else if (input !== null && typeof input === "object") {
    url = String(input);
  }
  if (init === undefined || init === null) {
    if (!o.method) return [url];
  } else if (typeof init === "object") {
    o = { ...o, ...init };
    // An AbortSignal cannot cross to the leader's tab; this tab's fetch() applies it.
    delete o.signal;
  } else {
    return [url, init]; // not an object: the leader's client rejects it as a single tab would
  }
  try {
    if (o.headers !== undefined && o.headers !== null) o.headers = [...new Headers(o.headers)];
  } catch {
    throw mpushError("INVALID_ARGUMENT", "fetch: invalid headers");
  }
  if (typeof URLSearchParams !== "undefined" && o.body instanceof URLSearchParams) {
    const h = new Headers(o.headers || []);
    if (!h.has("content-type")) h.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
    o.headers = [...h];
    o.body = String(o.body);
  }
  return [url, o];
}

// The AbortSignal of fetch(input, init): init's `signal` when present (null: none), else the
// Request's. Checked here because the wasm client never reads it.
function fetchSignal(input, init) {
  let signal;
  if (init !== null && typeof init === "object" && "signal" in init) signal = init.signal;
  else if (typeof Request !== "undefined" && input instanceof Request) signal = input.signal;
  if (signal === undefined || signal === null) return null;
  if (typeof AbortSignal === "undefined" || !(signal instanceof AbortSignal)) {
    throw mpushError("INVALID_ARGUMENT", "fetch: signal must be an AbortSignal");
  }
  return signal;
}

// Settles with `pending`, or rejects with the signal's reason once it aborts. MPUSH has no
// way to cancel a tunnelled request: the server still performs it and its answer is dropped.
function abortable(pending, signal) {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** A push from the server, as "push" listeners receive it in every tab. */
export class MPushMessage {
  #client;
  #acked;

  /** @internal Made by the client. */
  constructor(client, content, id, ackMode) {
    this.#client = client;
    this.#acked = ackMode !== "biz";
    /** The content bytes. */
    this.content = content;
    /** The push id (what `client.ack(id)` takes). */
    this.id = id;
    /** "none", "auto" (acked already) or "biz" (call `ack()`). */
    this.ackMode = ackMode;
  }

  /** The content as UTF-8 text (invalid sequences become U+FFFD). */
  text() {
    return new TextDecoder().decode(this.content);
  }

  /** The content parsed as JSON; throws a `SyntaxError` if it is not JSON. */
  json() {
    return JSON.parse(this.text());
  }

  /**
   * Acknowledges a "biz" push: `true` when this call sent the ack, `false` when none is needed
   * (other modes, acked already here or in another tab). Throws `NOT_CONNECTED` without a
   * connection.
   */
  ack() {
    if (this.#acked) return false;
    const sent = this.#client._ackPush(this.id);
    this.#acked = true;
    return sent;
  }

  /** Nothing to release (kept for compatibility: the push lives in JS). */
  free() {}
}

/**
 * The push client. Tabs of one origin with the same `url`, `publicKey` and `storageKey` share
 * one connection unless `share: false`; see the package README ("Several tabs").
 */
export class MPushClient {
  constructor(options) {
    const given = options !== null && typeof options === "object" ? options : undefined;
    // Per-tab storages mean a device per tab: no sharing unless asked for; and no sharing means
    // a device id per tab (sessionStorage) unless a storage is given.
    const share = given?.share ?? (given?.storage !== "session" && given?.storage !== "memory");
    if (given && typeof share !== "boolean") throw mpushError("INVALID_OPTION", "share must be true or false");
    const opts = given ? { ...given } : options;
    if (given && !share && given.storage == null) opts.storage = "session";
    // The wasm client checks the options (INVALID_OPTION) and creates the device id.
    const core = new Core(opts);
    this._listeners = new Map();
    this._events = new Set([...Core.eventNames(), ...OWN_EVENTS]);
    this._state = "closed";
    this._waiters = [];
    // Getter values while this tab has no client of its own (follower, before connect()).
    this._snap = { state: "closed" };
    for (const g of GETTERS) if (g !== "state") this._snap[g] = core[g];
    if (!share || typeof BroadcastChannel === "undefined" || !globalThis.navigator?.locks) {
      this._sharing = share ? "unsupported" : "off";
      this._core = core;
      this._wire(core);
      return;
    }
    this._sharing = "pending";
    // A copy: the tab that takes over later builds its client from these options.
    this._opts = opts;
    this._name = ["mpush", opts.url, opts.publicKey.trim(), opts.storageKey ?? "mpush:"].join("\n");
    // The leader builds a fresh client when its turn comes: it must read the stored session
    // as it is then, not as it was when this page loaded.
    core.free();
    this._core = null;
    this._attached = false;
    this._leader = null; // the leader's tab id (ours when we lead)
    this._gone = new Set(); // tabs that said bye: late messages from them are ignored
    this._calls = new Map(); // call id -> { resolve, reject }
    this._seq = 0;
    this._awaiting = new Set(); // "biz" push ids not acked yet
    this._wanted = undefined; // the leader's bind arguments (null: none); undefined: unknown
    this._info = undefined; // the last { fast, heartbeat }
    this._connected = false; // a "connect" was emitted for the current connection
    this._everReady = false;
    this._onPage = (e) => this._page(e);
  }

  /** "leader", "follower", "pending" (shared, no role yet), "off" (`share: false`) or "unsupported". */
  get sharing() {
    return this._sharing;
  }

  /** The state of the connection this tab uses (its own or the shared one). */
  get state() {
    return this._core && !this._opts ? this._core.state : this._state;
  }

  // ---- events -------------------------------------------------------------------------------

  /** Adds a listener; returns a function that removes it. */
  on(event, listener) {
    return this._add(event, listener, false);
  }

  /** Adds a listener that runs at most once; returns a function that removes it. */
  once(event, listener) {
    return this._add(event, listener, true);
  }

  /** Removes a listener added with `on` or `once`. */
  off(event, listener) {
    const l = this._listeners.get(event);
    if (l) this._listeners.set(event, l.filter((e) => e.f !== listener));
  }

  _add(event, f, once) {
    if (typeof event !== "string" || !this._events.has(event)) {
      throw mpushError("INVALID_ARGUMENT", `unknown event "${String(event)}"; known: ${[...this._events].join(", ")}`);
    }
    if (typeof f !== "function") throw mpushError("INVALID_ARGUMENT", "on: listener must be a function");
    const l = this._listeners.get(event) || [];
    if (!l.some((e) => e.f === f)) this._listeners.set(event, [...l, { f, once }]);
    return () => this.off(event, f);
  }

  _emit(name, payload) {
    const l = this._listeners.get(name) || [];
    if (!l.length && name === "error") console.error("mpush: unhandled error event:", payload);
    for (const e of l) {
      if (e.once) this.off(name, e.f);
      try {
        e.f.call(undefined, payload);
      } catch (err) {
        console.error(`mpush: a "${name}" listener threw:`, err);
      }
    }
    if (name === "connect") {
      // A new session: pushes of the previous one can no longer be acked.
      this._awaiting?.clear();
      for (const w of this._waiters.splice(0)) w.resolve(payload);
    }
  }

  _setState(s) {
    if (s === this._state) return;
    this._state = s;
    if (s !== "ready") this._connected = false;
    this._emit("state", s);
  }

  // A follower's `connect` event, once per connection.
  _connect(info) {
    this._connected = true;
    this._emit("connect", info);
  }

  _setSharing(s) {
    if (s === this._sharing) return;
    this._sharing = s;
    this._emit("sharing", s);
  }

  // ---- the wasm client ----------------------------------------------------------------------

  _wire(core) {
    for (const name of Core.eventNames()) core.on(name, (p) => this._fromCore(core, name, p));
    if (this._opts) core.__setPushTap((m) => this._tap(core, m));
  }

  // Runs while the wasm client is busy, before it writes the auto ack: post only.
  _tap(core, m) {
    if (core === this._core) this._post({ t: "push", p: { content: m.content, id: m.id, ackMode: m.ackMode } });
  }

  _fromCore(core, name, p) {
    if (core !== this._core) return; // a client we closed or handed over
    if (name === "push") {
      return this._push(p); // a plain { content, id, ackMode }
    }
    if (!this._opts) return this._emit(name, p);
    if (name === "state") {
      // A tab taking over continues a connection the app saw ready: that is a reconnect.
      if (p === "connecting" && this._everReady) p = "reconnecting";
      if (p === "closed") setTimeout(() => this._coreClosed(core));
      if (p === this._state) return;
      this._state = p;
    }
    if (name === "connect") {
      this._info = p;
      this._everReady = true;
      this._lastError = null;
      if (this._rebind) {
        // The user the previous leader had bound stays bound across the handover.
        const a = this._rebind;
        this._rebind = null;
        core.bind(...a).catch((e) => this._fromCore(core, "error", e));
      }
    }
    if (name === "kick" || name === "unbind") this._wanted = null;
    if (name === "error") this._lastError = p;
    this._post({ t: "ev", n: name, p: pack(p), s: this._snapshot() });
    this._emit(name, p);
  }

  _push(m) {
    if (m.ackMode === "biz" && this._opts) {
      if (this._awaiting.size >= MAX_AWAITING) this._awaiting.delete(this._awaiting.values().next().value);
      this._awaiting.add(m.id);
    }
    this._emit("push", new MPushMessage(this, m.content, m.id, m.ackMode));
  }

  _snapshot() {
    const s = { state: this._state, info: this._info, wanted: this._wanted, everReady: this._everReady };
    for (const g of GETTERS) if (g !== "state") s[g] = this._core[g];
    return s;
  }

  // The wasm client went "closed" by itself (gave up): every tab stops, as one tab would.
  _coreClosed(core) {
    if (core !== this._core) return;
    const e = this._connectError || this._lastError || mpushError("CONNECTION_LOST", "connection lost");
    this._post({ t: "fail", e: pack(e) });
    // The lock goes a little after the message, so that a waiting tab learns of the failure
    // before its turn comes and does not try (and fail) again.
    this._leave(e, 100);
  }

  // ---- sharing ------------------------------------------------------------------------------

  _post(m) {
    if (!this._bc) return;
    try {
      this._bc.postMessage({ ...m, from: this._id });
    } catch (e) {
      console.error("mpush: could not send to the other tabs:", e);
    }
  }

  _attach() {
    if (this._attached) return;
    this._attached = true;
    this._suspended = false;
    // A new id per attachment: the other tabs ignore the ids that said bye.
    this._id = Math.random().toString(36).slice(2) + Date.now().toString(36);
    this._setState(this._everReady ? "reconnecting" : "connecting");
    this._bc = new BroadcastChannel(this._name);
    this._bc.onmessage = (e) => this._message(e.data);
    addEventListener("pagehide", this._onPage);
    addEventListener("pageshow", this._onPage);
    globalThis.document?.addEventListener("freeze", this._onPage);
    globalThis.document?.addEventListener("resume", this._onPage);
    const abort = (this._abort = new AbortController());
    navigator.locks
      .request(this._name, { signal: abort.signal }, () => (abort.signal.aborted ? undefined : this._lead()))
      .catch(() => {}); // AbortError: we left before our turn
    this._post({ t: "hello" });
  }

  // Our turn: build the client from the stored session (fast connect) and hold the lock
  // until we leave.
  _lead() {
    this._adopt(this._id);
    const opts = { ...this._opts };
    if (this._wanted !== undefined) {
      // Bind what the previous leader had bound (maybe nobody), not this tab's userId option.
      for (const k of ["userId", "tags", "alias", "bindToken"]) delete opts[k];
      this._rebind = this._wanted;
    } else if (opts.userId) {
      // The option's bind, as bind() arguments (a token goes in the options form).
      this._wanted = opts.bindToken ? [opts.userId, { tags: opts.tags, token: opts.bindToken }] : [opts.userId, opts.tags, opts.alias];
    } else {
      this._wanted = null;
    }
    let core;
    try {
      core = new Core(opts);
    } catch (e) {
      this._leave(e);
      return undefined;
    }
    this._core = core;
    this._connectError = null;
    this._wire(core);
    this._setSharing("leader");
    // A new connection starts: not "ready", even when the old leader's "bye" has not arrived
    // yet (the lock can come first), so that no tab takes the new leader for connected.
    this._setState(this._everReady ? "reconnecting" : "connecting");
    this._post({ t: "lead", s: this._snapshot() });
    core.connect().catch((e) => {
      this._connectError = e;
    });
    return new Promise((release) => {
      this._release = release;
    });
  }

  // A new leader (maybe us): calls sent to the old one cannot be answered any more.
  _adopt(id) {
    if (this._leader === id) return;
    if (this._leader) this._gone.add(this._leader);
    this._leader = id;
    this._awaiting.clear(); // pushes of the old connection can no longer be acked
    this._failCalls(mpushError("CONNECTION_LOST", "connection lost: the tab holding it went away"));
    if (id !== this._id) this._setSharing("follower");
  }

  _failCalls(e) {
    for (const c of this._calls.values()) c.reject(e);
    this._calls.clear();
  }

  // A snapshot from the leader; `withState`: take its state too (events bring their own);
  // `joining`: the answer to our "hello".
  _apply(s, withState, joining = false) {
    const joined = joining && !this._connected && this._state !== "ready" && s.state === "ready" && s.info;
    this._snap = s;
    this._info = s.info;
    this._wanted = s.wanted;
    this._everReady = s.everReady;
    if (withState) this._setState(s.state);
    // A tab that joins a connection which is ready already never saw its `connect` event: it
    // gets it now, so that every tab's "ready" comes with one `connect`, as in a single tab
    // (`_connected`: one per connection; the leader's own may still be on its way).
    if (joined) this._connect(this._info);
    if (s.state === "ready" && this._info) for (const w of this._waiters.splice(0)) w.resolve(this._info);
  }

  _message(m) {
    if (!this._attached || (m.to && m.to !== this._id) || this._gone.has(m.from)) return;
    const leading = this._leader === this._id;
    if (m.t === "hello" && leading) return this._post({ t: "snap", to: m.from, s: this._snapshot() });
    if (m.t === "call" && leading) return this._serve(m);
    if (m.t === "acked") return this._awaiting.delete(m.id);
    if (leading || m.t === "hello" || m.t === "call") return;
    if (m.t === "lead") this._adopt(m.from);
    else if (m.from !== this._leader && (this._leader || m.t === "bye")) return;
    else this._adopt(m.from);
    switch (m.t) {
      case "lead":
        return this._apply(m.s, true);
      case "snap":
        return this._apply(m.s, true, m.to === this._id);
      case "ev":
        this._apply(m.s, false);
        if (m.n === "connect") return this._connected ? undefined : this._connect(unpack(m.p));
        return m.n === "state" ? this._setState(m.p) : this._emit(m.n, unpack(m.p));
      case "push":
        return this._push(m.p);
      case "res": {
        const c = this._calls.get(m.id);
        this._calls.delete(m.id);
        if (c) (m.ok ? c.resolve : c.reject)(unpack(m.v));
        return undefined;
      }
      case "bye":
        this._gone.add(m.from);
        this._leader = null;
        this._failCalls(mpushError("CONNECTION_LOST", "connection lost: the tab holding it went away"));
        this._setState("reconnecting");
        return this._emit("disconnect", { code: 1001, reason: "the tab holding the connection went away" });
      case "fail":
        return this._leave(unpack(m.e));
      default:
        return undefined;
    }
  }

  async _serve(m) {
    let ok = true;
    let v;
    try {
      if (!CALLS.includes(m.m)) throw mpushError("INVALID_ARGUMENT", `${m.m} cannot be called from another tab`);
      v = m.m === "ack" ? this._ackHere(m.a[0]) : await this._invoke(m.m, m.a);
      v = await packResult(v);
    } catch (e) {
      ok = false;
      v = pack(e);
    }
    this._post({ t: "res", to: m.from, id: m.id, ok, v });
  }

  _invoke(method, args) {
    if (method === "bind" || method === "unbind") {
      this._wanted = method === "bind" ? args : null;
      this._post({ t: "snap", s: this._snapshot() });
    }
    return this._core[method](...args);
  }

  _ackHere(id) {
    this._core.ack(id);
    this._awaiting.delete(id);
    this._post({ t: "acked", id });
    return true;
  }

  _call(method, args) {
    if (!this._opts) return this._core[method](...args);
    if (this._leader === this._id && this._core) return this._invoke(method, args);
    if (!this._attached || !this._leader) {
      return Promise.reject(mpushError("NOT_CONNECTED", `${method}: not connected`));
    }
    const to = this._leader;
    return (method === "fetch" ? fetchArgs(...args) : Promise.resolve(args)).then(
      (a) =>
        new Promise((resolve, reject) => {
          if (this._leader !== to) return reject(mpushError("CONNECTION_LOST", "connection lost: the tab holding it went away"));
          const id = ++this._seq;
          this._calls.set(id, { resolve, reject });
          try {
            this._bc.postMessage({ t: "call", from: this._id, to, id, m: method, a });
          } catch (e) {
            this._calls.delete(id);
            reject(mpushError("INVALID_ARGUMENT", `${method}: the arguments cannot be sent to the tab holding the connection (${e.message})`));
          }
          return undefined;
        }),
    );
  }

  // ack from a message or `client.ack(id)`: the leader acks each id once, whichever tab asks.
  _ackPush(id) {
    if (this._opts && !this._awaiting.has(id)) return false;
    try {
      if (this._opts) this._ack(id);
      else this._core.ack(id);
      return true;
    } catch (e) {
      if (e.code === "INVALID_ARGUMENT") return false; // acked already, or from before a reconnect
      throw e;
    }
  }

  _ack(id) {
    if (this._leader === this._id && this._core) return this._ackHere(id);
    if (!this._attached || !this._leader || this._state !== "ready") throw mpushError("NOT_CONNECTED", "ack: not connected");
    this._awaiting.delete(id);
    this._call("ack", [id]).catch((e) => {
      // Another tab's ack of the same push may have won the race: that is fine.
      if (e.code !== "INVALID_ARGUMENT" && e.code !== "CONNECTION_LOST") this._emit("error", e);
    });
    return undefined;
  }

  _page(e) {
    if (e.type === "pagehide" || e.type === "freeze") {
      // Closing, navigating away, into the back/forward cache or frozen (a background tab the
      // browser stops): hand the connection over now, so that no push is acked by a tab that
      // is going away and no tab waits for a frozen one. Back from the cache or thawed: rejoin.
      if (this._attached) {
        this._leave(null);
        this._suspended = e.type === "freeze" || e.persisted;
      }
    } else if (this._suspended && (e.type === "resume" || e.persisted)) {
      this._attach();
    }
  }

  // Leaves the shared connection: hands it over if we lead; `err` rejects what waits
  // (null: keep waiters, for the back/forward cache).
  _leave(err, releaseDelay = 0) {
    if (!this._attached) return;
    this._attached = false;
    this._abort.abort();
    const core = this._core;
    if (core) {
      this._core = null;
      this._post({ t: "bye" });
      core.close();
      core.free();
      // At once unless asked (a timer in a hidden or frozen tab may be late by a minute).
      if (releaseDelay) setTimeout(this._release, releaseDelay);
      else this._release();
      this._release = null;
    }
    this._bc.close();
    this._bc = null;
    this._leader = null;
    this._rebind = null;
    this._failCalls(err || mpushError("CONNECTION_LOST", "connection lost: the page was hidden"));
    if (err) {
      for (const w of this._waiters.splice(0)) w.reject(err);
      removeEventListener("pagehide", this._onPage);
      removeEventListener("pageshow", this._onPage);
      globalThis.document?.removeEventListener("freeze", this._onPage);
      globalThis.document?.removeEventListener("resume", this._onPage);
      // A later connect() starts afresh ("connecting"), unless another tab's snapshot says
      // the shared connection is up.
      this._everReady = false;
    }
    this._setSharing("pending");
    this._setState(err ? "closed" : "reconnecting");
  }

  // ---- the API ------------------------------------------------------------------------------

  /**
   * Connects (or joins the tab that holds the shared connection); resolves with `{ fast,
   * heartbeat }` once the connection is ready.
   */
  connect() {
    if (!this._opts) return this._core.connect();
    if (this._attached && this._state === "ready" && this._info) return Promise.resolve(this._info);
    return new Promise((resolve, reject) => {
      this._waiters.push({ resolve, reject });
      this._attach();
    });
  }

  /** Binds a user on the connection this tab uses (arguments as the wasm client takes them). */
  bind(...args) {
    return this._call("bind", args);
  }

  /** Unbinds the bound user. */
  unbind() {
    return this._call("unbind", []);
  }

  /** Pushes bytes or text to the server. */
  push(content, options) {
    return this._call("push", options === undefined ? [content] : [content, options]);
  }

  /**
   * An HTTP request the MPUSH server performs; resolves with a `Response`. `init.signal` (or
   * the `Request`'s) rejects it with the signal's reason, as `fetch` does.
   */
  fetch(input, init) {
    let signal;
    try {
      signal = fetchSignal(input, init);
    } catch (e) {
      return Promise.reject(e);
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    const pending = this._call("fetch", init === undefined ? [input] : [input, init]);
    return signal ? abortable(pending, signal) : pending;
  }

  /** Acknowledges a "biz" push by id (once, whichever tab calls). */
  ack(pushId) {
    if (!this._opts) return this._core.ack(pushId);
    if (!Number.isInteger(pushId)) throw mpushError("INVALID_ARGUMENT", "ack: pushId must be a push's id (an integer)");
    if (!this._awaiting.has(pushId)) {
      throw mpushError(
        "INVALID_ARGUMENT",
        `ack: push ${pushId} is not waiting for an ack (unknown id, not a "biz" push, acked already in this or another tab, or received before a reconnect)`,
      );
    }
    this._ack(pushId);
    return undefined;
  }

  /**
   * Closes this tab's use of the connection. A shared connection stays up for the other tabs
   * (a leader hands it over); the stored session is kept for the next `connect()`.
   */
  close() {
    if (!this._opts) return this._core.close();
    this._suspended = false;
    if (this._attached) this._leave(mpushError("CLOSED", "client closed"));
    return undefined;
  }

  /** Closes and releases the client. */
  free() {
    this.close();
    if (!this._opts && this._core) this._core.free();
    this._core = null;
  }
}

for (const g of GETTERS) {
  if (!Object.getOwnPropertyDescriptor(MPushClient.prototype, g)) {
    Object.defineProperty(MPushClient.prototype, g, {
      get() {
        return this._core ? this._core[g] : this._snap[g];
      },
      configurable: true,
    });
  }
}
