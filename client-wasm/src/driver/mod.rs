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
use web_sys::WebSocket;

use crate::backoff::Backoff;
use crate::browser::{self, deferred, now};
use crate::errors::{
    client_error, client_error_message, decimal, in_method, js_error, request_error, server_error, with_cause,
    ErrorCode,
};
use crate::events::{self, connect_info, object, Listeners};
use crate::fetch;
use crate::options::Options;
use crate::storage::{self, Storage, SESSION_KEY};

mod page;
mod requests;
mod socket;
mod timers;

/// A timer that fires this much later than scheduled, or a page hidden this long, means the
/// browser throttled us: check the connection.
const LATE_MS: f64 = 10_000.0;
/// On such a check, probe with a heartbeat if nothing was read for this long.
const PROBE_IDLE_MS: f64 = 10_000.0;
/// Close code for connections the client gives up on (dead, broken, timed out).
const CLOSE_ABNORMAL: u16 = 4000;
/// Unacked "biz" push ids remembered for `ack()`'s check; older ones are forgotten (and
/// their ack then refused) rather than kept without bound for an app that never acks.
const MAX_AWAITING_ACK: usize = 1024;
/// What a failed attempt that never opened usually means; the browser reports all of these
/// as close code 1006 without a reason.
const NEVER_OPENED_HINT: &str = "the WebSocket closed before it opened. Usual causes: the proxy does not allow this \
     page's origin (mpush-proxy --allowed-origin), the URL path is not the proxy's WebSocket path \
     (ws_path, default /mpush), or the proxy is down or unreachable";

/// The connection state JS sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Opening the first WebSocket after `connect()`.
    Connecting,
    /// WebSocket open, handshake or fast connect under way.
    Handshaking,
    /// Session established.
    Ready,
    /// Waiting to reconnect (backoff, or page in the back/forward cache).
    Reconnecting,
    /// The browser reports no network (`navigator.onLine` false): no attempts until it is
    /// back. An open connection is kept and probed at once when the network returns.
    Offline,
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
            State::Offline => "offline",
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
    /// The API method that made it, named in its errors ("bind: request timed out").
    method: &'static str,
    /// For `fetch`: the URL the `Response` reports as `url`.
    url: Option<String>,
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
        let mut d = shared.try_borrow_mut().map_err(|_| busy())?;
        let r = f(&mut d);
        (r, std::mem::take(&mut d.out), d.listeners.clone())
    };
    run_effects(effects, &listeners);
    Ok(r)
}

/// The error of a call made while the driver is borrowed.
fn busy() -> JsValue {
    js_error(ErrorCode::InvalidArgument, "MPushClient was called from inside its own storage adapter")
}

/// The second half of [`enter`], kept out of line: `enter` is generic over its closure and
/// inlined into every entry point, and this loop was copied into each of them.
#[inline(never)]
fn run_effects(effects: Vec<Effect>, listeners: &RefCell<Listeners>) {
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
    /// `reconnect.maxAttempts`.
    max_attempts: Option<u32>,
    connect_timeout: f64,
    probe_timeout: f64,
    session: ClientSession,
    state: State,
    socket: Option<WebSocket>,
    /// Whether the current socket reached "open": a close before it means the attempt never
    /// got through (origin, path, proxy down), which the browser does not tell apart.
    socket_opened: bool,
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
    /// Ids of "biz" pushes received on this connection and not acked yet (oldest first, at
    /// most [`MAX_AWAITING_ACK`]), so `ack()` of any other id can say so. A `Vec`: dropping
    /// the oldest of 1024 ids is a small copy, and `VecDeque`'s ring code is ~0.6 KB of wasm.
    awaiting_ack: Vec<i32>,
    /// The user the server confirmed bound on this connection.
    bound_user: Option<String>,
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
        browser::random_bytes(&mut seed)?;
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
                max_attempts: opts.max_attempts,
                connect_timeout: opts.connect_timeout as f64,
                probe_timeout: opts.request_timeout.min(10_000) as f64,
                session,
                state: State::Closed,
                socket: None,
                socket_opened: false,
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
                awaiting_ack: Vec::new(),
                bound_user: None,
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

    /// The user the server confirmed bound on the current connection.
    pub fn bound_user(&self) -> Option<&str> {
        self.bound_user.as_deref()
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
