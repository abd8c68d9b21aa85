//! The JS-facing `MPushClient` in headless Chromium, without a server: option errors, state,
//! and how calls fail when there is no connection.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, missing_docs)]

use js_sys::{Promise, Reflect};
use mpush_client_wasm::MPushClient;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCI9vj8vqUVx2JVhl+dZumNkgC11+wd6AzO7MiooCylAMkaWRorSjnKX9nUqmVMJQ8n+u+4KguoEh0NN3qRgB8f4bPbwxqnZAXtYE4i4UCR+n/ef14ovI7ws7gLfsYF5rRIFRlw325kKnuCUrQpHSlRG6S15X9CbVJt0XMh5IUe8wIDAQAB";

fn options(url: &str, extra: &str) -> JsValue {
    let src = ["({ url: '", url, "', publicKey: '", KEY, "', storage: 'memory', ", extra, " })"].concat();
    js_sys::eval(&src).unwrap()
}

fn code(e: &JsValue) -> String {
    Reflect::get(e, &"code".into()).unwrap().as_string().unwrap_or_default()
}

async fn rejected(p: Promise) -> JsValue {
    JsFuture::from(p).await.expect_err("promise should reject")
}

#[wasm_bindgen_test]
fn constructor_rejects_bad_options_with_a_code() {
    let e = MPushClient::new(JsValue::from("nope")).err().unwrap();
    assert!(e.is_instance_of::<js_sys::Error>());
    assert_eq!(code(&e), "INVALID_OPTION");
    let e = MPushClient::new(options("http://127.0.0.1:9/x", "")).err().unwrap();
    assert_eq!(code(&e), "INVALID_OPTION");
}

#[wasm_bindgen_test]
fn a_new_client_is_closed_with_a_device_id() {
    let c = MPushClient::new(options("ws://127.0.0.1:9/mpush", "deviceId: 'dev-1'")).unwrap();
    assert_eq!(c.state(), "closed");
    assert_eq!(c.device_id(), "dev-1");
    assert_eq!(c.heartbeat(), None);
    assert!(!c.last_connect_was_fast());
    let generated = MPushClient::new(options("ws://127.0.0.1:9/mpush", "")).unwrap();
    assert_eq!(generated.device_id().len(), 32);
}

#[wasm_bindgen_test]
async fn calls_without_a_connection_fail_with_not_connected() {
    let c = MPushClient::new(options("ws://127.0.0.1:9/mpush", "")).unwrap();
    assert_eq!(
        code(&rejected(c.bind(JsValue::from("u"), JsValue::UNDEFINED, JsValue::UNDEFINED)).await),
        "NOT_CONNECTED"
    );
    assert_eq!(code(&rejected(c.unbind()).await), "NOT_CONNECTED");
    assert_eq!(code(&rejected(c.push("x".into(), JsValue::UNDEFINED)).await), "NOT_CONNECTED");
    assert_eq!(code(&rejected(c.fetch("http://a/".into(), JsValue::UNDEFINED)).await), "NOT_CONNECTED");
    let e = rejected(c.fetch("http://a/".into(), js_sys::eval("({ method: 'PATCH' })").unwrap())).await;
    assert_eq!(code(&e), "HTTP_METHOD_UNSUPPORTED");
    assert_eq!(code(&c.ack(1.into()).unwrap_err()), "NOT_CONNECTED");
    assert_eq!(code(&c.on("nope".into(), js_sys::Function::new_no_args("").into()).unwrap_err()), "INVALID_ARGUMENT");
}

#[wasm_bindgen_test]
async fn a_refused_connection_without_reconnect_rejects_connect() {
    // Port 9 (discard) is closed on the test machine: the WebSocket fails at once.
    let c = MPushClient::new(options("ws://127.0.0.1:9/mpush", "reconnect: false")).unwrap();
    let states = js_sys::Array::new();
    let s2 = states.clone();
    let rec = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |s: JsValue| {
        s2.push(&s);
    });
    c.on("state".into(), rec.as_ref().unchecked_ref::<js_sys::Function>().clone().into()).unwrap();
    let e = rejected(c.connect()).await;
    // Never opened: the error names the URL and the usual causes.
    assert_eq!(code(&e), "CONNECT_FAILED");
    let msg = String::from(e.unchecked_ref::<js_sys::Error>().message());
    assert!(msg.contains("ws://127.0.0.1:9/mpush") && msg.contains("origin") && msg.contains("path"), "{msg}");
    assert_eq!(c.state(), "closed");
    let seen: Vec<String> = states.iter().filter_map(|v| v.as_string()).collect();
    assert_eq!(seen, ["connecting", "closed"]);
}

#[wasm_bindgen_test]
async fn the_attempt_limit_settles_connect_with_the_last_failure_as_cause() {
    let c =
        MPushClient::new(options("ws://127.0.0.1:9/mpush", "reconnect: { minDelay: 5, maxDelay: 10, maxAttempts: 2 }"))
            .unwrap();
    let attempts = js_sys::Array::new();
    let a2 = attempts.clone();
    let rec = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |p: JsValue| {
        a2.push(&Reflect::get(&p, &"attempt".into()).unwrap());
    });
    c.on("reconnecting".into(), rec.as_ref().unchecked_ref::<js_sys::Function>().clone().into()).unwrap();
    let e = rejected(c.connect()).await;
    assert_eq!(code(&e), "ATTEMPT_LIMIT");
    assert_eq!(code(&Reflect::get(&e, &"cause".into()).unwrap()), "CONNECT_FAILED");
    let seen: Vec<f64> = attempts.iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(seen, [1.0, 2.0]);
    assert_eq!(c.state(), "closed");
}

#[wasm_bindgen_test]
async fn close_rejects_a_pending_connect_with_closed() {
    let c = MPushClient::new(options("ws://127.0.0.1:9/mpush", "reconnect: { minDelay: 10000 }")).unwrap();
    let p = c.connect();
    assert_eq!(c.state(), "connecting");
    c.close();
    assert_eq!(code(&rejected(p).await), "CLOSED");
    assert_eq!(c.state(), "closed");
}

#[wasm_bindgen_test]
async fn a_refused_connection_with_reconnect_backs_off() {
    let c = MPushClient::new(options("ws://127.0.0.1:9/mpush", "reconnect: { minDelay: 20, maxDelay: 40 }")).unwrap();
    let p = c.connect();
    // Let a few attempts fail.
    let wait = Promise::new(&mut |res, _| {
        let g = js_sys::global();
        let set: js_sys::Function =
            wasm_bindgen::JsCast::unchecked_into(Reflect::get(&g, &"setTimeout".into()).unwrap());
        set.call2(&g, &res, &JsValue::from(300)).unwrap();
    });
    JsFuture::from(wait).await.unwrap();
    assert!(matches!(c.state().as_str(), "reconnecting" | "connecting"), "{}", c.state());
    c.close();
    assert_eq!(code(&rejected(p).await), "CLOSED");
}
