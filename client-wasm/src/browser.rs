//! Thin bindings to the browser pieces the driver uses: timers, the clock, `navigator.onLine`,
//! page visibility, and the global event targets. Works in windows and (minus `document`)
//! in workers.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::EventTarget;

use crate::errors::{js_error, ErrorCode};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout_raw(cb: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout_raw(handle: &JsValue);
    // `globalThis.crypto` (windows, workers, Node >= 19); throws when it is missing.
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
    // `globalThis` (every browser since 2019, workers, Node): one import, where
    // `js_sys::global()` brings four (globalThis, self, window, global) and a fallback.
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL_THIS: JsValue;
}

/// The global object (`window` or the worker scope).
pub fn global() -> JsValue {
    GLOBAL_THIS.with(JsValue::clone)
}

/// The largest delay `setTimeout` honours (larger ones fire at once).
const MAX_DELAY: f64 = 2_147_483_647.0;

/// Schedules `cb` in `ms` milliseconds; returns the handle for [`clear_timeout`].
pub fn set_timeout(cb: &Function, ms: f64) -> JsValue {
    set_timeout_raw(cb, ms.clamp(0.0, MAX_DELAY))
}

/// Cancels a [`set_timeout`].
pub fn clear_timeout(handle: &JsValue) {
    clear_timeout_raw(handle);
}

/// Wall-clock time, epoch ms (`Date.now()`): what the session takes as `now`.
pub fn now() -> f64 {
    js_sys::Date::now()
}

/// Fills `buf` from `crypto.getRandomValues` (seeds and device ids). The direct binding
/// rather than the `getrandom` crate: its Node.js fallbacks cost the package ~1 KB gzipped.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), JsValue> {
    get_random_values(buf)
        .map(drop)
        .map_err(|_| js_error(ErrorCode::Unsupported, "crypto.getRandomValues is not available"))
}

/// Uniform in [0, 1) (`Math.random()`); only used for reconnect jitter.
pub fn random() -> f64 {
    js_sys::Math::random()
}

fn global_get(name: &str) -> JsValue {
    Reflect::get(&global(), &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// `false` only when the browser says it is offline.
pub fn online() -> bool {
    let nav = global_get("navigator");
    !nav.is_object() || Reflect::get(&nav, &"onLine".into()).ok().and_then(|v| v.as_bool()) != Some(false)
}

/// The global object as an event target (`window` or the worker scope).
pub fn global_target() -> EventTarget {
    global().unchecked_into()
}

/// `document`, if there is one.
pub fn document() -> Option<EventTarget> {
    let d = global_get("document");
    d.is_object().then(|| d.unchecked_into())
}

/// Whether the page is hidden (`document.visibilityState === "hidden"`).
pub fn page_hidden() -> bool {
    document()
        .and_then(|d| Reflect::get(&d, &"visibilityState".into()).ok())
        .and_then(|v| v.as_string())
        .is_some_and(|s| s == "hidden")
}

/// A boolean property of an event (`persisted` of page transition events).
pub fn event_flag(ev: &JsValue, name: &str) -> bool {
    Reflect::get(ev, &name.into()).ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// A new promise with its resolve and reject functions.
pub fn deferred() -> (Promise, Function, Function) {
    let mut slot = None;
    let p = Promise::new(&mut |res, rej| slot = Some((res, rej)));
    // The executor runs synchronously, so the slot is always filled; a dummy keeps this total.
    let (res, rej) = slot.unwrap_or_else(|| (JsValue::UNDEFINED.unchecked_into(), JsValue::UNDEFINED.unchecked_into()));
    (p, res, rej)
}
