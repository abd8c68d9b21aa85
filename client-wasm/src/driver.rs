//! The driver: moves bytes and time between the browser (one WebSocket, one timer, page
//! lifecycle events) and the sans-IO [`ClientSession`], and turns session events into JS
//! events and promise settlements. It never re-implements protocol rules.
//!
//! Re-entrancy: every entry point borrows the driver, queues [`Effect`]s, releases the borrow
//! and only then calls into user code (listeners, promise functions), so listeners may call
//! any client method.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Function, Promise, Reflect, Uint8Array};
use mpush_protocol::{
    AckMode, ClientConfig, ClientEvent, ClientSession, ClientState, RequestError, RequestId, StoredSession,
    HEARTBEAT_BYTE,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, WebSocket};

use crate::backoff::Backoff;
use crate::browser::{self, deferred, now};
use crate::errors::{client_error, client_error_message, js_error, request_error, server_error, ErrorCode};
use crate::events::{self, connect_info, object, Acker, Listeners, PushMessage};
use crate::fetch;
use crate::options::Options;
use crate::storage::{self, Storage, SESSION_KEY};

/// A timer that fires this much later than scheduled, or a page hidden this long, means the
/// browser throttled us: check the connection.
const LATE_MS: f64 = 10_000.0;
/// On such a check, probe with a heartbeat if nothing was read for this long.
const PROBE_IDLE_MS: f64 = 10_000.0;
/// Close code for connections the client gives up on (dead, broken, timed out).
const CLOSE_ABNORMAL: u16 = 4000;

/// The connection state JS sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Opening the first WebSocket after `connect()`.
    Connecting,
    /// WebSocket open, handshake or fast connect under way.
    Handshaking,
    /// Session established.
    Ready,
    /// Waiting to reconnect (backoff, offline, or page in the back/forward cache).
    Reconnecting,
    /// Not connected and not trying.
    Closed,
}

impl State {
    /// The JS name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Handshaking => "handshaking",
            State::Ready => "ready",
            State::Reconnecting => "reconnecting",
            State::Closed => "closed",
        }
    }
}

/// Something to do once the driver is no longer borrowed.
pub enum Effect {
    /// Call the listeners of an event.
    Emit(&'static str, JsValue),
    /// Call a promise's resolve or reject function.
    Settle(Function, JsValue),
}

struct Request {
    id: RequestId,
    resolve: Function,
    reject: Function,
}

type Handler = Closure<dyn FnMut(JsValue)>;

/// The closures the browser calls, created once per client and owned here; listeners are
/// removed from the socket and the page when they are no longer needed.
struct Callbacks {
    socket: [(&'static str, Handler); 3],
    page: [(&'static str, Handler); 4],
    visibility: Handler,
    timer: Closure<dyn FnMut()>,
}

fn handler(weak: &Weak<RefCell<Driver>>, f: fn(&mut Driver, JsValue)) -> Handler {
    let weak = weak.clone();
    Closure::new(move |ev: JsValue| enter_weak(&weak, |d| f(d, ev)))
}

impl Callbacks {
    fn new(weak: &Weak<RefCell<Driver>>) -> Callbacks {
        let w = weak.clone();
        Callbacks {
            socket: [
                ("open", handler(weak, |d, _| d.on_open())),
                ("message", handler(weak, Driver::on_message)),
                ("close", handler(weak, Driver::on_close)),
            ],
            page: [
                ("online", handler(weak, |d, _| d.on_online())),
                ("offline", handler(weak, |d, _| d.on_offline())),
                ("pagehide", handler(weak, Driver::on_pagehide)),
                ("pageshow", handler(weak, |d, _| d.on_pageshow())),
            ],
            visibility: handler(weak, |d, _| d.on_visibility()),
            timer: Closure::new(move || enter_weak(&w, Driver::on_timer)),
        }
    }
}

/// A shared driver, as the JS object and the browser callbacks hold it.
pub type Shared = Rc<RefCell<Driver>>;

/// Runs `f` on the driver, then the effects it queued (with the borrow released).
pub fn enter<R>(shared: &Shared, f: impl FnOnce(&mut Driver) -> R) -> Result<R, JsValue> {
    let (r, effects, listeners) = {
        let mut d = shared.try_borrow_mut().map_err(|_| {
            js_error(ErrorCode::InvalidArgument, "MPushClient was called from inside its own storage adapter")
        })?;
        let r = f(&mut d);
        (r, std::mem::take(&mut d.out), d.listeners.clone())
    };
    for e in effects {
        match e {
            Effect::Emit(name, payload) => {
                let fs = listeners.borrow().get(name);
                events::emit(&fs, name, &payload);
            }
            Effect::Settle(f, v) => {
                let _ = f.call1(&JsValue::UNDEFINED, &v);
            }
        }
    }
    Ok(r)
}

fn enter_weak(weak: &Weak<RefCell<Driver>>, f: impl FnOnce(&mut Driver)) {
    if let Some(shared) = weak.upgrade() {
        if let Err(e) = enter(&shared, f) {
            events::log_error("mpush:", &e);
        }
    }
}

/// One client's connection machinery.
pub struct Driver {
    url: String,
    storage: Storage,
    session_key: String,
    device_id: String,
    /// The `userId` option's bind, until an explicit bind/unbind or a kick replaces it.
    auto_bind: Option<(String, Option<String>, Option<String>)>,
    reconnect: Option<Backoff>,
    connect_timeout: f64,
    probe_timeout: f64,
    session: ClientSession,
    state: State,
    socket: Option<WebSocket>,
    timer: Option<(JsValue, f64)>,
    page_listening: bool,
    reconnect_at: Option<f64>,
    connect_deadline: Option<f64>,
    probe_deadline: Option<f64>,
    last_read: f64,
    hidden_since: Option<f64>,
    suspended: bool,
    heartbeat: Option<i32>,
    /// When the client last sent a heartbeat (`Date.now()` ms).
    last_heartbeat_at: Option<f64>,
    last_fast: bool,
    last_error: Option<JsValue>,
    /// The last attempt failed in a way a retry cannot fix (the server refused the handshake):
    /// when its connection is gone, give up instead of reconnecting.
    fatal: bool,
    closing_reason: &'static str,
    waiters: Vec<(Function, Function)>,
    requests: Vec<Request>,
    listeners: Rc<RefCell<Listeners>>,
    out: Vec<Effect>,
    cb: Callbacks,
    weak: Weak<RefCell<Driver>>,
}

impl Driver {
    /// A closed client; the stored session (if any, and unexpired) is used by the first connect.
    pub fn new(opts: Options, listeners: Rc<RefCell<Listeners>>) -> Result<Shared, JsValue> {
        let device_id = storage::device_id(&opts.storage, &opts.storage_key, opts.device_id.as_deref())?;
        let mut config = ClientConfig::new(opts.public_key, device_id.clone());
        config.os_name = opts.os_name;
        config.os_version = opts.os_version;
        config.client_version = opts.client_version;
        config.min_heartbeat = opts.min_heartbeat;
        config.max_heartbeat = opts.max_heartbeat;
        config.request_timeout = opts.request_timeout;
        config.max_outbound_body = opts.max_packet_size;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|_| js_error(ErrorCode::Unsupported, "crypto.getRandomValues is not available"))?;
        let session_key = [opts.storage_key.as_str(), SESSION_KEY].concat();
        let stored = opts
            .storage
            .get(&session_key)
            .and_then(|s| StoredSession::parse_persistent(&s).ok())
            .filter(|s| !s.is_expired(now() as u64));
        let session = match stored {
            Some(s) => ClientSession::resume(config, seed, s),
            None => ClientSession::new(config, seed),
        }
        .map_err(|e| js_error(ErrorCode::InvalidOption, &client_error_message(&e)))?;
        let auto_bind = opts.user_id.map(|u| (u, opts.tags, opts.alias));
        Ok(Rc::new_cyclic(|weak| {
            RefCell::new(Driver {
                url: opts.url,
                storage: opts.storage,
                session_key,
                device_id,
                auto_bind,
                reconnect: opts.reconnect.map(|(min, max)| Backoff::new(min, max)),
                connect_timeout: opts.connect_timeout as f64,
                probe_timeout: opts.request_timeout.min(10_000) as f64,
                session,
                state: State::Closed,
                socket: None,
                timer: None,
                page_listening: false,
                reconnect_at: None,
                connect_deadline: None,
                probe_deadline: None,
                last_read: 0.0,
                hidden_since: None,
                suspended: false,
                heartbeat: None,
                last_heartbeat_at: None,
                last_fast: false,
                last_error: None,
                fatal: false,
                closing_reason: "connection closed",
                waiters: Vec::new(),
                requests: Vec::new(),
                listeners,
                out: Vec::new(),
                cb: Callbacks::new(weak),
                weak: weak.clone(),
            })
        }))
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The negotiated heartbeat of the current or last session, ms.
    pub fn heartbeat(&self) -> Option<i32> {
        self.heartbeat
    }

    /// When the client last sent a heartbeat (`Date.now()` ms), on any connection.
    pub fn last_heartbeat_at(&self) -> Option<f64> {
        self.last_heartbeat_at
    }

    /// Whether the last established session was a fast connect.
    pub fn last_connect_was_fast(&self) -> bool {
        self.last_fast
    }

    /// The device id in use.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    fn fire(&mut self, name: &'static str, payload: JsValue) {
        self.out.push(Effect::Emit(name, payload));
    }

    fn set_state(&mut self, s: State) {
        if self.state != s {
            self.state = s;
            self.fire("state", s.as_str().into());
        }
    }

    // ---- API ------------------------------------------------------------------------------

    /// `connect()`: resolves with `{ fast, heartbeat }` once a session is established.
    pub fn connect(&mut self) -> Promise {
        let (p, res, rej) = deferred();
        if self.state == State::Ready {
            self.out.push(Effect::Settle(res, connect_info(self.last_fast, self.heartbeat.unwrap_or(0))));
            return p;
        }
        self.waiters.push((res, rej));
        if self.state == State::Closed {
            self.start_page_listeners();
            if let Some(b) = &mut self.reconnect {
                b.reset();
            }
            self.last_error = None;
            self.fatal = false;
            self.set_state(State::Connecting);
            self.open_socket();
        } else if self.socket.is_none() && !self.suspended {
            // An explicit connect() skips the rest of the backoff.
            self.open_socket();
        }
        self.arm();
        p
    }

    fn request(&mut self, r: Result<RequestId, JsValue>) -> Promise {
        let (p, resolve, reject) = deferred();
        match r {
            Ok(id) => self.requests.push(Request { id, resolve, reject }),
            Err(e) => self.out.push(Effect::Settle(reject, e)),
        }
        self.flush();
        self.arm();
        p
    }

    /// `bind(userId, tags?, alias?)`.
    pub fn bind(&mut self, user_id: &str, tags: Option<String>, alias: Option<String>) -> Promise {
        self.auto_bind = None;
        let r = self.session.bind(now() as u64, user_id, alias.as_deref(), tags.as_deref());
        self.request(r.map_err(|e| client_error(&e)))
    }

    /// `unbind()`.
    pub fn unbind(&mut self) -> Promise {
        self.auto_bind = None;
        let r = self.session.unbind(now() as u64);
        self.request(r.map_err(|e| client_error(&e)))
    }

    /// `push(content, { ack })`: resolves when sent ("none") or acked by the server ("auto").
    pub fn push(&mut self, content: &JsValue, options: &JsValue) -> Promise {
        let r = (|| {
            let bytes = fetch::body_bytes(content)?;
            let ack = if options.is_object() { Reflect::get(options, &"ack".into())? } else { JsValue::UNDEFINED };
            let mode = match ack.as_string().as_deref() {
                None if ack.is_undefined() => AckMode::None,
                Some("none") => AckMode::None,
                Some("auto") => AckMode::Auto,
                Some("biz") => AckMode::Biz,
                _ => return Err(js_error(ErrorCode::InvalidArgument, "push: ack must be \"none\" or \"auto\"")),
            };
            self.session.push(now() as u64, bytes, mode).map_err(|e| client_error(&e))
        })();
        match r {
            Ok(Some(id)) => self.request(Ok(id)),
            Ok(None) => {
                self.flush();
                self.arm();
                Promise::resolve(&JsValue::UNDEFINED)
            }
            Err(e) => Promise::reject(&e),
        }
    }

    /// `ack(pushId)` for biz-ack pushes.
    pub fn ack(&mut self, push_id: i32) -> Result<(), JsValue> {
        self.session.ack(now() as u64, push_id).map_err(|e| client_error(&e))?;
        self.flush();
        self.arm();
        Ok(())
    }

    /// `fetch(input, init)` through the HTTP tunnel.
    pub fn fetch(&mut self, input: &JsValue, init: &JsValue) -> Promise {
        let r = fetch::build_request(input, init)
            .and_then(|req| self.session.http_request(now() as u64, req).map_err(|e| client_error(&e)));
        self.request(r)
    }

    /// `close()`: rejects what is pending with `CLOSED` and stops reconnecting. The stored
    /// session stays, so the next `connect()` (or page load) fast-connects.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        let err = js_error(ErrorCode::Closed, "client closed");
        for r in std::mem::take(&mut self.requests) {
            self.out.push(Effect::Settle(r.reject, err.clone()));
        }
        for (_, rej) in std::mem::take(&mut self.waiters) {
            self.out.push(Effect::Settle(rej, err.clone()));
        }
        let had_socket = self.detach(1000, "client closed");
        self.session.handle_disconnected(now() as u64);
        self.drain(now());
        if had_socket {
            self.fire("disconnect", object(&[("code", 1000.into()), ("reason", "client closed".into())]));
        }
        self.shutdown();
    }

    /// See `MPushClient::debug_send_text`.
    pub fn debug_send_text(&self, text: &str) {
        if let Some(ws) = &self.socket {
            let _ = ws.send_with_str(text);
        }
    }

    fn acker(&self) -> Acker {
        let weak = self.weak.clone();
        Rc::new(move |id| match weak.upgrade() {
            Some(shared) => enter(&shared, |d| d.ack(id))?,
            None => Err(js_error(ErrorCode::NotConnected, "client is gone")),
        })
    }

    // ---- transport ------------------------------------------------------------------------

    fn open_socket(&mut self) {
        self.reconnect_at = None;
        if self.socket.is_some() {
            return;
        }
        if !browser::online() {
            // Wait for the "online" event instead of spinning.
            return;
        }
        let ws = match WebSocket::new_with_str(&self.url, "mpush") {
            Ok(ws) => ws,
            Err(e) => {
                // A URL the browser refuses (e.g. ws:// from an https page) never starts working.
                let err = js_error(ErrorCode::InvalidOption, &describe(&e, "the WebSocket could not be created"));
                self.fire("error", err.clone());
                self.last_error = Some(err);
                self.give_up();
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        for (name, h) in &self.cb.socket {
            let _ = ws.add_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        self.socket = Some(ws);
        self.connect_deadline = Some(now() + self.connect_timeout);
    }

    /// Forgets the socket: removes our listeners and closes it if still open. Returns whether
    /// there was one.
    fn detach(&mut self, code: u16, reason: &str) -> bool {
        let Some(ws) = self.socket.take() else { return false };
        for (name, h) in &self.cb.socket {
            let _ = ws.remove_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        if ws.ready_state() <= WebSocket::OPEN {
            let _ = ws.close_with_code_and_reason(code, reason);
        }
        self.connect_deadline = None;
        self.probe_deadline = None;
        true
    }

    /// Closes the socket ourselves and treats the connection as lost.
    fn drop_socket(&mut self, reason: &'static str) {
        if self.detach(CLOSE_ABNORMAL, reason) {
            self.lost(CLOSE_ABNORMAL, reason);
        }
    }

    /// The connection is gone (socket already detached): fail what was pending on it and
    /// reconnect, wait, or give up.
    fn lost(&mut self, code: u16, reason: &str) {
        let t = now();
        self.session.handle_disconnected(t as u64);
        self.drain(t);
        self.fire("disconnect", object(&[("code", code.into()), ("reason", reason.into())]));
        if self.state == State::Closed {
            return;
        }
        match &mut self.reconnect {
            _ if self.fatal => self.give_up(),
            _ if self.suspended => self.set_state(State::Reconnecting),
            None => self.give_up(),
            Some(b) => {
                let delay = b.next_delay(browser::random());
                self.set_state(State::Reconnecting);
                if browser::online() {
                    self.reconnect_at = Some(t + delay);
                }
            }
        }
        self.arm();
    }

    fn give_up(&mut self) {
        let err = self.last_error.take().unwrap_or_else(|| js_error(ErrorCode::ConnectionLost, "connection lost"));
        for (_, rej) in std::mem::take(&mut self.waiters) {
            self.out.push(Effect::Settle(rej, err.clone()));
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop_page_listeners();
        self.reconnect_at = None;
        self.suspended = false;
        self.hidden_since = None;
        self.clear_timer();
        self.set_state(State::Closed);
    }

    fn on_open(&mut self) {
        let t = now();
        self.last_read = t;
        match self.session.handle_connected(t as u64) {
            Ok(()) => self.set_state(State::Handshaking),
            Err(e) => {
                // The options make a handshake the server cannot take (device id and version
                // strings over maxPacketSize): retrying cannot help.
                let e = client_error(&e);
                self.fire("error", e.clone());
                self.last_error = Some(e);
                self.fatal = true;
                self.drop_socket("handshake failed");
            }
        }
        self.process(t);
    }

    fn on_message(&mut self, ev: JsValue) {
        let t = now();
        let data = Reflect::get(&ev, &"data".into()).unwrap_or(JsValue::UNDEFINED);
        let Some(buf) = data.dyn_ref::<ArrayBuffer>() else {
            self.fire("error", js_error(ErrorCode::ProtocolError, "the server sent a text frame"));
            self.drop_socket("protocol error");
            return self.arm();
        };
        self.last_read = t;
        self.probe_deadline = None;
        if let Err(e) = self.session.handle_input(t as u64, &Uint8Array::new(buf).to_vec()) {
            self.closing_reason = "protocol error";
            self.fire("error", client_error(&e));
        }
        self.process(t);
    }

    fn on_close(&mut self, ev: JsValue) {
        let code = Reflect::get(&ev, &"code".into()).ok().and_then(|v| v.as_f64()).unwrap_or(1006.0) as u16;
        let reason = Reflect::get(&ev, &"reason".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        if self.state != State::Ready && self.last_error.is_none() {
            self.last_error = Some(js_error(ErrorCode::ConnectionLost, "could not connect"));
        }
        if self.detach(code, &reason) {
            self.lost(code, &reason);
        }
    }

    // ---- session pump ---------------------------------------------------------------------

    /// Drains events, writes packets, and closes the socket if the session gave up on it.
    fn process(&mut self, t: f64) {
        self.drain(t);
        self.flush();
        if self.session.state() == ClientState::Closing {
            let reason = std::mem::replace(&mut self.closing_reason, "connection closed");
            self.drop_socket(reason);
        }
        self.arm();
    }

    fn flush(&mut self) {
        while let Some(b) = self.session.poll_transmit() {
            if let Some(ws) = &self.socket {
                let _ = ws.send_with_u8_array(&b);
                if b == [HEARTBEAT_BYTE] {
                    self.heartbeat_sent();
                }
            }
        }
    }

    /// Records a heartbeat written to the socket and reports it ("heartbeat" event).
    fn heartbeat_sent(&mut self) {
        let at = now();
        self.last_heartbeat_at = Some(at);
        self.fire("heartbeat", object(&[("at", at.into())]));
    }

    fn drain(&mut self, t: f64) {
        while let Some(e) = self.session.poll_event() {
            self.on_event(t, e);
        }
    }

    fn take_request(&mut self, id: RequestId) -> Option<Request> {
        let i = self.requests.iter().position(|r| r.id == id)?;
        Some(self.requests.swap_remove(i))
    }

    fn on_event(&mut self, t: f64, e: ClientEvent) {
        match e {
            ClientEvent::HandshakeOk { heartbeat, session } => {
                self.storage.set(&self.session_key, &session.to_persistent_string());
                self.ready(t, false, heartbeat);
            }
            ClientEvent::FastConnected { heartbeat } => self.ready(t, true, heartbeat),
            ClientEvent::FastConnectRefused { .. } => self.storage.remove(&self.session_key),
            ClientEvent::ConnectFailed(err) => {
                self.closing_reason = "connect failed";
                if matches!(err, RequestError::Refused { .. }) {
                    // Every retry would be refused too, at the cost of an RSA decryption on the
                    // server: stop, as the Java client does (connect() rejects, state "closed").
                    self.closing_reason = "handshake refused";
                    self.fatal = true;
                }
                if err != RequestError::ConnectionLost {
                    let e = request_error(&err);
                    self.fire("error", e.clone());
                    self.last_error = Some(e);
                }
            }
            ClientEvent::Bound { request, user_id, rebind } => {
                let info = object(&[("userId", user_id.into()), ("rebind", rebind.into())]);
                if let Some(r) = self.take_request(request) {
                    self.out.push(Effect::Settle(r.resolve, info.clone()));
                }
                self.fire("bind", info);
            }
            ClientEvent::Unbound { request } => {
                if let Some(r) = self.take_request(request) {
                    self.out.push(Effect::Settle(r.resolve, JsValue::UNDEFINED));
                }
                self.fire("unbind", object(&[]));
            }
            ClientEvent::Push(m) => {
                let acker = (m.ack == AckMode::Biz).then(|| self.acker());
                let msg = PushMessage::new(&m.content, m.session_id, m.ack, acker);
                self.fire("push", msg.into());
            }
            ClientEvent::PushAcked { request } => {
                if let Some(r) = self.take_request(request) {
                    self.out.push(Effect::Settle(r.resolve, JsValue::UNDEFINED));
                }
            }
            ClientEvent::Kick { device_id, user_id } => {
                self.auto_bind = None;
                self.fire("kick", object(&[("deviceId", device_id.into()), ("userId", user_id.into())]));
            }
            ClientEvent::HttpResponse { request, response } => {
                if let Some(r) = self.take_request(request) {
                    match fetch::build_response(&response) {
                        Ok(resp) => self.out.push(Effect::Settle(r.resolve, resp.into())),
                        Err(e) => self.out.push(Effect::Settle(r.reject, e)),
                    }
                }
            }
            ClientEvent::RequestFailed { request, error } => {
                let e = request_error(&error);
                match self.take_request(request) {
                    Some(r) => self.out.push(Effect::Settle(r.reject, e)),
                    // The automatic (re-)bind has no promise: report its failure as an event.
                    None if error != RequestError::ConnectionLost => self.fire("error", e),
                    None => {}
                }
            }
            ClientEvent::ServerError { code, reason, .. } => {
                self.fire("error", server_error(code.0, reason.as_deref()))
            }
            ClientEvent::ConnectionDead => self.closing_reason = "heartbeat timeout",
            _ => {}
        }
    }

    fn ready(&mut self, t: f64, fast: bool, heartbeat: i32) {
        self.connect_deadline = None;
        if let Some(b) = &mut self.reconnect {
            b.reset();
        }
        self.heartbeat = Some(heartbeat);
        self.last_fast = fast;
        self.last_error = None;
        self.set_state(State::Ready);
        let info = connect_info(fast, heartbeat);
        self.fire("connect", info.clone());
        for (res, _) in std::mem::take(&mut self.waiters) {
            self.out.push(Effect::Settle(res, info.clone()));
        }
        // The session re-binds a user it bound before; the option's user is bound here once.
        if let Some((user, tags, alias)) = self.auto_bind.clone() {
            if self.session.bound_user().is_none() {
                if let Err(e) = self.session.bind(t as u64, &user, alias.as_deref(), tags.as_deref()) {
                    self.fire("error", client_error(&e));
                }
            }
        }
    }

    // ---- time -----------------------------------------------------------------------------

    /// Sets the one timer to the earliest deadline.
    fn arm(&mut self) {
        let mut wake: Option<f64> = None;
        let mut consider = |t: Option<f64>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        if self.socket.is_some() {
            consider(self.session.poll_timeout().map(|t| t as f64));
            consider(self.connect_deadline);
            consider(self.probe_deadline);
        }
        consider(self.reconnect_at);
        let Some(at) = wake else { return self.clear_timer() };
        if self.timer.as_ref().is_some_and(|(_, t)| *t == at) {
            return;
        }
        self.clear_timer();
        let handle = browser::set_timeout(self.cb.timer.as_ref().unchecked_ref(), at - now());
        self.timer = Some((handle, at));
    }

    fn clear_timer(&mut self) {
        if let Some((h, _)) = self.timer.take() {
            browser::clear_timeout(&h);
        }
    }

    fn on_timer(&mut self) {
        let scheduled = self.timer.take().map(|(_, at)| at);
        let t = now();
        // Throttled timers (background tabs, sleeping laptops) fire late: check liveness.
        self.tick(t, scheduled.is_some_and(|at| t - at > LATE_MS));
    }

    /// Handles every deadline that has passed.
    fn tick(&mut self, t: f64, check_liveness: bool) {
        if self.reconnect_at.is_some_and(|at| at <= t) {
            self.open_socket();
        }
        if self.socket.is_some() {
            if self.connect_deadline.is_some_and(|at| at <= t) {
                let e = js_error(ErrorCode::Timeout, "connect timed out");
                self.fire("error", e.clone());
                self.last_error = Some(e);
                self.drop_socket("connect timeout");
            } else if self.probe_deadline.is_some_and(|at| at <= t) {
                self.drop_socket("no answer to heartbeat");
            } else {
                self.session.handle_timeout(t as u64);
                if check_liveness {
                    self.probe(t, false);
                }
                self.process(t);
            }
        }
        self.arm();
    }

    /// Sends a heartbeat the server echoes; no read before the probe deadline means the
    /// connection is dead (what centrifuge-js does after a throttled period).
    fn probe(&mut self, t: f64, force: bool) {
        if self.state != State::Ready || self.probe_deadline.is_some() {
            return;
        }
        if force || t - self.last_read > PROBE_IDLE_MS {
            if let Some(ws) = &self.socket {
                let _ = ws.send_with_u8_array(&[HEARTBEAT_BYTE]);
                self.heartbeat_sent();
            }
            self.probe_deadline = Some(t + self.probe_timeout);
        }
    }

    // ---- page lifecycle -------------------------------------------------------------------

    fn start_page_listeners(&mut self) {
        if std::mem::replace(&mut self.page_listening, true) {
            return;
        }
        let g = browser::global_target();
        for (name, h) in &self.cb.page {
            let _ = g.add_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        if let Some(d) = browser::document() {
            let _ = d.add_event_listener_with_callback("visibilitychange", self.cb.visibility.as_ref().unchecked_ref());
        }
        self.hidden_since = browser::page_hidden().then(now);
    }

    fn stop_page_listeners(&mut self) {
        if !std::mem::replace(&mut self.page_listening, false) {
            return;
        }
        let g = browser::global_target();
        for (name, h) in &self.cb.page {
            let _ = g.remove_event_listener_with_callback(name, h.as_ref().unchecked_ref());
        }
        if let Some(d) = browser::document() {
            let _ =
                d.remove_event_listener_with_callback("visibilitychange", self.cb.visibility.as_ref().unchecked_ref());
        }
    }

    fn on_online(&mut self) {
        if self.suspended {
            return;
        }
        match self.state {
            State::Connecting | State::Reconnecting if self.socket.is_none() => self.open_socket(),
            // The network changed under an open socket: make sure it still works.
            State::Ready => self.probe(now(), true),
            _ => {}
        }
        self.arm();
    }

    fn on_offline(&mut self) {
        if self.socket.is_none() {
            self.reconnect_at = None;
        }
        self.arm();
    }

    fn on_visibility(&mut self) {
        let t = now();
        if browser::page_hidden() {
            self.hidden_since = Some(t);
            return;
        }
        if self.hidden_since.take().is_some_and(|since| t - since >= LATE_MS) {
            self.tick(t, true);
        }
    }

    /// Leaving for the back/forward cache: an open WebSocket would keep the page out of it.
    fn on_pagehide(&mut self, ev: JsValue) {
        if !browser::event_flag(&ev, "persisted") || self.state == State::Closed {
            return;
        }
        self.suspended = true;
        self.reconnect_at = None;
        if self.detach(1000, "page hidden") {
            self.lost(1000, "page hidden");
        } else {
            self.set_state(State::Reconnecting);
        }
        self.arm();
    }

    fn on_pageshow(&mut self) {
        if !std::mem::replace(&mut self.suspended, false) || self.state == State::Closed {
            return;
        }
        self.open_socket();
        self.arm();
    }
}

fn describe(e: &JsValue, fallback: &str) -> String {
    Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| fallback.into())
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.detach(1000, "client dropped");
        self.stop_page_listeners();
        self.clear_timer();
    }
}
