//! # mpush-client-wasm
//!
//! The MPUSH push client for browsers: [`mpush_protocol::ClientSession`] driven over a
//! `WebSocket` (through `mpush-proxy`) and browser timers, exported to JavaScript as
//! `MPushClient`. The wire protocol is MPUSH's own binary protocol, end-to-end encrypted with
//! the server's RSA key and a per-session AES key, exactly like the Android/Java SDK.
//!
//! ```js
//! import init, { MPushClient } from "mpush-client-wasm";
//! await init();
//! const client = new MPushClient({ url: "wss://push.example.com/mpush", publicKey: "MIGf..." });
//! client.on("push", (m) => console.log(m.text()));
//! await client.connect();
//! await client.bind("user-42");
//! ```
//!
//! Security note: the `rsa` crate's advisory RUSTSEC-2023-0071 concerns private-key
//! operations; this client only encrypts with the public key.
#![forbid(unsafe_code)]

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

pub mod backoff;
pub mod browser;
pub mod driver;
pub mod errors;
pub mod events;
pub mod fetch;
pub mod options;
pub mod storage;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::driver::{enter, Driver, Shared};
use crate::errors::js_error;
use crate::events::Listeners;
use crate::options::Options;

pub use crate::errors::ErrorCode;

/// A push client. See the package README for the options and events.
#[wasm_bindgen(js_name = MPushClient)]
pub struct MPushClient {
    driver: Shared,
    listeners: Rc<RefCell<Listeners>>,
}

impl MPushClient {
    fn call(&self, f: impl FnOnce(&mut Driver) -> Promise) -> Promise {
        enter(&self.driver, f).unwrap_or_else(|e| Promise::reject(&e))
    }

    fn read<R>(&self, f: impl FnOnce(&Driver) -> R) -> R {
        f(&self.driver.borrow())
    }

    /// A string argument of `method`: `None` for undefined/null when it is optional; anything
    /// else that is not a string is an `INVALID_ARGUMENT` naming the method and the argument
    /// (wasm-bindgen itself would turn `bind(42)` into the user "42").
    fn string_arg(method: &str, name: &str, v: &JsValue, optional: bool) -> Result<Option<String>, JsValue> {
        if optional && (v.is_undefined() || v.is_null()) {
            return Ok(None);
        }
        match v.as_string() {
            Some(s) if optional || !s.is_empty() => Ok(Some(s)),
            _ => {
                let what = if optional { " must be a string" } else { " must be a non-empty string" };
                Err(js_error(ErrorCode::InvalidArgument, &[method, ": ", name, what].concat()))
            }
        }
    }

    // The getters below are the Rust side of what the facade reads from `__snapshot()`.

    /// "connecting", "handshaking", "ready", "reconnecting", "offline" or "closed".
    pub fn state(&self) -> String {
        self.read(|d| d.state().as_str().into())
    }

    /// The negotiated heartbeat in ms (`undefined` before the first connect).
    pub fn heartbeat(&self) -> Option<i32> {
        self.read(Driver::heartbeat)
    }

    /// When the client last sent a heartbeat, as `Date.now()` ms (`undefined` before the
    /// first one).
    pub fn last_heartbeat_at(&self) -> Option<f64> {
        self.read(Driver::last_heartbeat_at)
    }

    /// Whether the last established session was resumed with fast connect.
    pub fn last_connect_was_fast(&self) -> bool {
        self.read(Driver::last_connect_was_fast)
    }

    /// The user the server confirmed bound on the current connection (`undefined` when none:
    /// before the bind's answer, after `unbind()`, a kick, or while disconnected).
    pub fn user_id(&self) -> Option<String> {
        self.read(|d| d.bound_user().map(str::to_owned))
    }

    /// The device id sent to the server.
    pub fn device_id(&self) -> String {
        self.read(|d| d.device_id().to_owned())
    }

    /// Test hook (not exported to JS): sends a text frame, which `mpush-proxy` answers by
    /// closing the WebSocket, so tests can watch a server-side drop and the reconnect.
    #[doc(hidden)]
    pub fn debug_send_text(&self, text: &str) {
        self.read(|d| d.debug_send_text(text));
    }
}

#[wasm_bindgen(js_class = MPushClient)]
impl MPushClient {
    /// Checks the options (throws `INVALID_OPTION`); does not connect yet.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<MPushClient, JsValue> {
        let opts = Options::parse(&options)?;
        let listeners = Rc::new(RefCell::new(Listeners::default()));
        Ok(MPushClient { driver: Driver::new(opts, listeners.clone())?, listeners })
    }

    /// Adds a listener: "state", "connect", "reconnecting", "heartbeat", "push", "kick",
    /// "bind", "unbind", "error" or "disconnect". Exceptions thrown by listeners are logged
    /// with `console.error`.
    pub fn on(&self, event: JsValue, listener: JsValue) -> Result<(), JsValue> {
        let event = Self::string_arg("on", "event", &event, false)?.unwrap_or_default();
        let listener = listener
            .dyn_into::<Function>()
            .map_err(|_| js_error(ErrorCode::InvalidArgument, "on: listener must be a function"))?;
        self.listeners.borrow_mut().add(&event, listener)
    }

    /// The event names `on` accepts. The tab-sharing facade (client-wasm/js/shared.js)
    /// forwards every one of them, so an event added here reaches every tab.
    #[wasm_bindgen(js_name = eventNames)]
    pub fn event_names() -> js_sys::Array {
        events::EVENT_NAMES.iter().map(|n| JsValue::from_str(n)).collect()
    }

    /// Not public API, for the tab-sharing facade: `tap(push)` is called with each push as
    /// the session delivers it, before the client writes its auto ack, so the tab holding the
    /// connection hands the push to the other tabs before the server counts it as delivered.
    /// `tap` runs while the client is busy: it must not call the client.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = __setPushTap)]
    pub fn set_push_tap(&self, tap: Option<Function>) {
        self.listeners.borrow_mut().push_tap = tap;
    }

    /// Removes a listener added with `on`.
    pub fn off(&self, event: &str, listener: &Function) {
        self.listeners.borrow_mut().remove(event, listener);
    }

    /// Connects (and keeps reconnecting); resolves with `{ fast, heartbeat }` after the
    /// handshake or fast connect. Rejects on `close()`, when the attempt fails and
    /// reconnecting is off, or with `HANDSHAKE_REFUSED` (no more retries) when the server
    /// refuses the handshake.
    pub fn connect(&self) -> Promise {
        self.call(Driver::connect)
    }

    /// Binds a user (re-bound automatically after reconnects until `unbind` or a kick); another
    /// user bound on this connection is unbound first. `bind(userId, tags?, alias?)` or
    /// `bind(userId, { tags, alias, token })`: a bind token from the application's backend
    /// travels as the bind's data; a refusal rejects with `BIND_REFUSED`.
    pub fn bind(&self, user_id: JsValue, tags: JsValue, alias: JsValue) -> Promise {
        let args = (|| {
            let (tags, data) = crate::options::bind_args(&tags, &alias)?;
            Ok::<_, JsValue>((Self::string_arg("bind", "userId", &user_id, false)?.unwrap_or_default(), tags, data))
        })();
        match args {
            Ok((user_id, tags, alias)) => self.call(|d| d.bind(&user_id, tags, alias)),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Unbinds the bound user.
    pub fn unbind(&self) -> Promise {
        self.call(Driver::unbind)
    }

    /// Pushes bytes or text to the server; `{ ack: "auto" }` waits for the server's ack.
    pub fn push(&self, content: JsValue, options: JsValue) -> Promise {
        self.call(|d| d.push(&content, &options))
    }

    /// Acknowledges a push with ack mode "biz" by id; throws `INVALID_ARGUMENT` for an id that
    /// is not waiting for an ack on this connection, `NOT_CONNECTED` without a connection.
    pub fn ack(&self, push_id: JsValue) -> Result<(), JsValue> {
        let id = push_id
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= f64::from(i32::MIN) && *n <= f64::from(i32::MAX))
            .ok_or_else(|| js_error(ErrorCode::InvalidArgument, "ack: pushId must be a push's id (an integer)"))?;
        enter(&self.driver, |d| d.ack(id as i32))?
    }

    /// An HTTP request performed by the MPUSH server; resolves with a `Response`.
    pub fn fetch(&self, input: JsValue, init: JsValue) -> Promise {
        self.call(|d| d.fetch(&input, &init))
    }

    /// Closes the connection and stops reconnecting; `connect()` may be called again.
    pub fn close(&self) {
        if let Err(e) = enter(&self.driver, Driver::close) {
            events::log_error("mpush:", &e);
        }
    }

    /// Not public API, for the tab-sharing facade (client-wasm/js/shared.js), which defines the
    /// getters `state`, `heartbeat`, `lastHeartbeatAt`, `lastConnectWasFast`, `userId` and
    /// `deviceId` from it: all of them in one object, one export instead of six getter shims.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = __snapshot)]
    pub fn snapshot(&self) -> JsValue {
        let opt = |v: Option<JsValue>| v.unwrap_or(JsValue::UNDEFINED);
        self.read(|d| {
            events::object(&[
                ("state", d.state().as_str().into()),
                ("heartbeat", opt(d.heartbeat().map(JsValue::from))),
                ("lastHeartbeatAt", opt(d.last_heartbeat_at().map(JsValue::from))),
                ("lastConnectWasFast", d.last_connect_was_fast().into()),
                ("userId", opt(d.bound_user().map(JsValue::from))),
                ("deviceId", d.device_id().into()),
            ])
        })
    }
}
