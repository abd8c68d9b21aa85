//! Event listeners (`on`/`off`), the push object handed to "push" listeners, and small helpers
//! to build payload objects. Listener exceptions are caught and logged, never propagated.

use std::rc::Rc;

use js_sys::{Function, Object, Reflect, Uint8Array};
use mpush_protocol::AckMode;
use wasm_bindgen::prelude::*;

use crate::errors::{js_error, ErrorCode};

/// The events a client emits.
pub const EVENT_NAMES: [&str; 10] =
    ["state", "connect", "reconnecting", "heartbeat", "push", "kick", "bind", "unbind", "error", "disconnect"];

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error2(msg: &str, v: &JsValue);
}

/// Logs `msg` and `v` with `console.error`.
pub fn log_error(msg: &str, v: &JsValue) {
    console_error2(msg, v);
}

/// Registered callbacks per event name, in registration order.
#[derive(Debug, Default)]
pub struct Listeners {
    by_name: Vec<(&'static str, Vec<Function>)>,
    /// The tab-sharing facade's push tap (`MPushClient::set_push_tap`).
    pub push_tap: Option<Function>,
}

fn known(name: &str) -> Result<&'static str, JsValue> {
    EVENT_NAMES.iter().find(|n| **n == name).copied().ok_or_else(|| {
        js_error(
            ErrorCode::InvalidArgument,
            &["unknown event \"", name, "\"; known: ", &EVENT_NAMES.join(", ")].concat(),
        )
    })
}

impl Listeners {
    /// Adds `f` for `name` (once: adding the same function again does nothing).
    pub fn add(&mut self, name: &str, f: Function) -> Result<(), JsValue> {
        let name = known(name)?;
        match self.by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, fs)) if fs.iter().any(|g| JsValue::from(g) == JsValue::from(&f)) => {}
            Some((_, fs)) => fs.push(f),
            None => self.by_name.push((name, vec![f])),
        }
        Ok(())
    }

    /// Removes `f` from `name`.
    pub fn remove(&mut self, name: &str, f: &Function) {
        if let Some((_, fs)) = self.by_name.iter_mut().find(|(n, _)| *n == name) {
            fs.retain(|g| JsValue::from(g) != JsValue::from(f));
        }
    }

    /// A snapshot of the callbacks for `name` (listeners may change while they run).
    pub fn get(&self, name: &str) -> Vec<Function> {
        self.by_name.iter().find(|(n, _)| *n == name).map(|(_, fs)| fs.clone()).unwrap_or_default()
    }
}

/// Calls every listener of `name` with `payload`; exceptions are logged. An "error" without
/// listeners is logged too, so it is never lost silently.
pub fn emit(listeners: &[Function], name: &str, payload: &JsValue) {
    if listeners.is_empty() && name == "error" {
        log_error("mpush: unhandled error event:", payload);
    }
    for f in listeners {
        if let Err(e) = f.call1(&JsValue::UNDEFINED, payload) {
            log_error(&["mpush: a \"", name, "\" listener threw:"].concat(), &e);
        }
    }
}

/// A plain object from `(key, value)` pairs.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

/// The payload of "connect" and of `connect()`: `{ fast, heartbeat }`.
pub fn connect_info(fast: bool, heartbeat: i32) -> JsValue {
    object(&[("fast", fast.into()), ("heartbeat", heartbeat.into())])
}

/// The JS name of an ack mode.
pub fn ack_mode_name(m: AckMode) -> &'static str {
    match m {
        AckMode::None => "none",
        AckMode::Auto => "auto",
        AckMode::Biz => "biz",
    }
}

/// Sends the ack of a push id; `Ok(false)` when the push no longer waits for one (acked with
/// `client.ack(id)` already, or received before a reconnect).
pub type Acker = Rc<dyn Fn(i32) -> Result<bool, JsValue>>;

/// A push from the server, as "push" listeners receive it.
#[wasm_bindgen(js_name = MPushMessage)]
pub struct PushMessage {
    content: Uint8Array,
    id: i32,
    ack_mode: AckMode,
    acked: bool,
    acker: Option<Acker>,
}

impl PushMessage {
    /// A push object; `acker` sends the ack for biz-ack pushes.
    pub fn new(content: &[u8], id: i32, ack_mode: AckMode, acker: Option<Acker>) -> PushMessage {
        PushMessage { content: Uint8Array::from(content), id, ack_mode, acked: ack_mode != AckMode::Biz, acker }
    }
}

#[wasm_bindgen(js_class = MPushMessage)]
impl PushMessage {
    /// The content bytes.
    #[wasm_bindgen(getter)]
    pub fn content(&self) -> Uint8Array {
        self.content.clone()
    }

    /// The push id (what `client.ack(id)` takes).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> i32 {
        self.id
    }

    /// "none", "auto" (already acked by the client) or "biz" (call `ack()`).
    #[wasm_bindgen(getter = ackMode)]
    pub fn ack_mode(&self) -> String {
        ack_mode_name(self.ack_mode).into()
    }

    /// The content as UTF-8 text (invalid sequences become U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content.to_vec()).into_owned()
    }

    /// The content parsed as JSON; throws a `SyntaxError` if it is not JSON.
    pub fn json(&self) -> Result<JsValue, JsValue> {
        js_sys::JSON::parse(&self.text())
    }

    /// Acknowledges a "biz" push. Returns `true` when an ack was sent, `false` when none is
    /// needed (modes "none" and "auto", or already acked). Throws `NOT_CONNECTED` if the
    /// connection is gone.
    pub fn ack(&mut self) -> Result<bool, JsValue> {
        if self.acked {
            return Ok(false);
        }
        let acker = self.acker.as_ref().ok_or_else(|| js_error(ErrorCode::NotConnected, "ack: client is gone"))?;
        let sent = acker(self.id)?;
        self.acked = true;
        Ok(sent)
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn push_text_and_json() {
        let m = PushMessage::new(br#"{"a":[1,"x"]}"#, 7, AckMode::None, None);
        assert_eq!(m.text(), r#"{"a":[1,"x"]}"#);
        let v = m.json().unwrap();
        let a = Reflect::get(&v, &"a".into()).unwrap().dyn_into::<js_sys::Array>().unwrap();
        assert_eq!(a.get(1).as_string().as_deref(), Some("x"));
        assert_eq!(m.content().to_vec(), br#"{"a":[1,"x"]}"#.to_vec());
        assert_eq!((m.id(), m.ack_mode()), (7, "none".to_string()));

        let bad = PushMessage::new(&[0xff, b'h', b'i'], 1, AckMode::None, None);
        assert_eq!(bad.text(), "\u{fffd}hi");
        assert!(bad.json().unwrap_err().is_instance_of::<js_sys::SyntaxError>());
    }

    #[wasm_bindgen_test]
    fn biz_push_acks_once_and_others_never() {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let s = sent.clone();
        let acker: Acker = Rc::new(move |id| {
            s.borrow_mut().push(id);
            Ok(true)
        });
        let mut biz = PushMessage::new(b"x", 9, AckMode::Biz, Some(acker.clone()));
        assert_eq!(biz.ack_mode(), "biz");
        assert!(biz.ack().unwrap());
        assert!(!biz.ack().unwrap());
        let mut auto = PushMessage::new(b"x", 10, AckMode::Auto, Some(acker));
        assert!(!auto.ack().unwrap());
        assert_eq!(*sent.borrow(), vec![9]);
    }

    #[wasm_bindgen_test]
    fn listeners_are_deduplicated_removed_and_isolated() {
        let mut l = Listeners::default();
        let f: Function = js_sys::eval("(function () { throw new Error('boom'); })").unwrap().unchecked_into();
        let g: Function = js_sys::eval("(function (p) { globalThis.__mpushSeen = p; })").unwrap().unchecked_into();
        l.add("push", f.clone()).unwrap();
        l.add("push", f.clone()).unwrap();
        l.add("push", g.clone()).unwrap();
        assert_eq!(l.get("push").len(), 2);
        // The throwing listener is logged and the next one still runs.
        emit(&l.get("push"), "push", &JsValue::from(42));
        let seen = Reflect::get(&js_sys::global(), &"__mpushSeen".into()).unwrap();
        assert_eq!(seen.as_f64(), Some(42.0));
        l.remove("push", &f);
        assert_eq!(l.get("push").len(), 1);
        let e = l.add("nope", g).unwrap_err();
        assert_eq!(crate::errors::code_of(&e).as_deref(), Some("INVALID_ARGUMENT"));
    }
}
