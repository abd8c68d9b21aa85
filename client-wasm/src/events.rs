//! Event listeners (`on`/`off`), the push object handed to "push" listeners, and small helpers
//! to build payload objects. Listener exceptions are caught and logged, never propagated.

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

/// A push from the server as the wasm client hands it to "push" listeners and the push tap: a
/// plain `{ content, id, ackMode }` (content a `Uint8Array`, ackMode "none", "auto" or "biz").
/// The package's `MPushMessage` (client-wasm/js/shared.js) wraps it with `text()`, `json()`
/// and `ack()` (which acks through `client.ack(id)`), so no wasm class is needed for it.
pub fn push_payload(content: &[u8], id: i32, ack_mode: AckMode) -> JsValue {
    object(&[
        ("content", Uint8Array::from(content).into()),
        ("id", id.into()),
        ("ackMode", ack_mode_name(ack_mode).into()),
    ])
}

#[cfg(all(test, target_arch = "wasm32"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn push_carries_content_id_and_ack_mode() {
        let m = push_payload(br#"{"a":[1,"x"]}"#, 7, AckMode::None);
        let content: Uint8Array = Reflect::get(&m, &"content".into()).unwrap().unchecked_into();
        assert_eq!(content.to_vec(), br#"{"a":[1,"x"]}"#.to_vec());
        assert_eq!(Reflect::get(&m, &"id".into()).unwrap().as_f64(), Some(7.0));
        for (mode, name) in [(AckMode::None, "none"), (AckMode::Auto, "auto"), (AckMode::Biz, "biz")] {
            let m = push_payload(b"x", 9, mode);
            assert_eq!(Reflect::get(&m, &"ackMode".into()).unwrap().as_string().as_deref(), Some(name));
        }
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
