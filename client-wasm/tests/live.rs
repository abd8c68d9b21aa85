//! Live tests in headless Chromium against a running mpush-proxy + mpush-gateway on 127.0.0.1.
//!
//! The addresses are baked in at compile time (wasm tests cannot read the environment):
//!
//! * `MPUSH_TEST_WS_URL`      e.g. `ws://127.0.0.1:8080/mpush`
//! * `MPUSH_TEST_PUBLIC_KEY`  the gateway's public key (base64 X.509)
//! * `MPUSH_TEST_API_URL`     base of the push API, e.g. `http://127.0.0.1:8080/api`
//!   (`POST {base}/push`); it must answer CORS requests from the test page's origin
//! * `MPUSH_TEST_ECHO_URL`    optional: an http URL the gateway's HTTP proxy may reach
//!
//! Without them every test here returns at once (and says so on the console).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, missing_docs)]

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use mpush_client_wasm::MPushClient;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

struct Env {
    ws: &'static str,
    key: &'static str,
    api: &'static str,
}

fn env() -> Option<Env> {
    let e = Env {
        ws: option_env!("MPUSH_TEST_WS_URL")?,
        key: option_env!("MPUSH_TEST_PUBLIC_KEY")?,
        api: option_env!("MPUSH_TEST_API_URL")?,
    };
    Some(e)
}

macro_rules! live_env {
    () => {
        match env() {
            Some(e) => e,
            None => {
                console_log!(
                    "skipped: MPUSH_TEST_WS_URL / MPUSH_TEST_PUBLIC_KEY / MPUSH_TEST_API_URL not set at build time"
                );
                return;
            }
        }
    };
}

fn get(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &k.into()).unwrap()
}

fn js(src: &str) -> JsValue {
    js_sys::eval(&["(", src, ")"].concat()).unwrap()
}

fn unique(prefix: &str) -> String {
    [prefix, &(js_sys::Math::random() * 1e9).floor().to_string()].concat()
}

/// Options with a fast reconnect and storage shared through `store` (a JS object adapter).
fn options(e: &Env, store: &JsValue, extra: &str) -> JsValue {
    let o = js(&["{ reconnect: { minDelay: 50, maxDelay: 300 }, requestTimeout: 5000, ", extra, " }"].concat());
    Reflect::set(&o, &"url".into(), &e.ws.into()).unwrap();
    Reflect::set(&o, &"publicKey".into(), &e.key.into()).unwrap();
    Reflect::set(&o, &"storage".into(), store).unwrap();
    o
}

fn map_store() -> JsValue {
    js("{ m: new Map(), get(k) { return this.m.has(k) ? this.m.get(k) : null; }, set(k, v) { this.m.set(k, v); }, remove(k) { this.m.delete(k); } }")
}

async fn wait(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// Resolves with the next payload of `event` (after `body(payload)` ran), or rejects after `ms`.
fn next_event(client: &MPushClient, event: &str, ms: u32, body: &str) -> (Function, Promise) {
    let make = Function::new_with_args(
        "name, ms",
        &[
            "let f; const p = new Promise((res, rej) => { const t = setTimeout(() => rej(new Error('timed out waiting for ' + name)), ms); f = (v) => { clearTimeout(t); ",
            body,
            "; res(v); }; }); return [f, p];",
        ]
        .concat(),
    );
    let pair: Array = make.call2(&JsValue::NULL, &event.into(), &ms.into()).unwrap().unchecked_into();
    let f: Function = pair.get(0).unchecked_into();
    client.on(event.into(), f.clone().into()).unwrap();
    (f, pair.get(1).unchecked_into())
}

async fn expect_event(
    client: &MPushClient,
    event: &str,
    ms: u32,
    body: &str,
    trigger: impl std::future::Future<Output = ()>,
) -> JsValue {
    let (f, p) = next_event(client, event, ms, body);
    trigger.await;
    let v = wait(p).await.unwrap_or_else(|e| panic!("{event}: {e:?}"));
    client.off(event, &f);
    v
}

async fn push_api(e: &Env, user: &str, content: &str, ack: &str) -> JsValue {
    let f = Function::new_with_args(
        "url, user, content, ack",
        "return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, \
         body: JSON.stringify({ userId: user, content, ack, timeoutMs: 3000 }) }).then(r => r.json())",
    );
    let url = [e.api, "/push"].concat();
    let p = f.call4(&JsValue::NULL, &url.into(), &user.into(), &content.into(), &ack.into()).unwrap();
    wait(p.unchecked_into()).await.unwrap()
}

fn first_result(r: &JsValue) -> String {
    let results: Array = get(r, "results").unchecked_into();
    get(&results.get(0), "result").as_string().unwrap_or_default()
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |res, _| {
        let g = js_sys::global();
        let set: Function = get(&g, "setTimeout").unchecked_into();
        set.call2(&g, &res, &ms.into()).unwrap();
    });
    wait(p).await.unwrap();
}

#[wasm_bindgen_test]
async fn connect_bind_push_and_acks() {
    let e = live_env!();
    let client = std::rc::Rc::new(MPushClient::new(options(&e, &map_store(), "")).unwrap());
    // A "biz" push is acked from its listener, as an app does (the push API call below waits
    // for the ack): `client.ack(id)`, here from JS.
    let c = client.clone();
    let acker = wasm_bindgen::closure::Closure::<dyn Fn(JsValue)>::new(move |id: JsValue| c.ack(id).unwrap());
    Reflect::set(&js_sys::global(), &"__mpushAck".into(), acker.as_ref()).unwrap();
    let info = wait(client.connect()).await.unwrap();
    assert_eq!(get(&info, "fast").as_bool(), Some(false));
    assert!(get(&info, "heartbeat").as_f64().unwrap() >= 2000.0);
    assert_eq!(client.state(), "ready");

    let user = unique("live-u");
    let bound = wait(client.bind(user.clone().into(), "t1".into(), JsValue::UNDEFINED)).await.unwrap();
    assert_eq!(get(&bound, "userId").as_string().as_deref(), Some(user.as_str()));

    for (ack, body) in [("none", ""), ("auto", ""), ("biz", "globalThis.__mpushAck(v.id)")] {
        let content = ["hello ", ack].concat();
        let (f, p) = next_event(&client, "push", 5000, body);
        let result = push_api(&e, &user, &content, ack).await;
        let m = wait(p).await.unwrap();
        client.off("push", &f);
        assert_eq!(first_result(&result), "success", "ack {ack}: {result:?}");
        assert_eq!(get(&m, "ackMode").as_string().as_deref(), Some(ack));
        let bytes: Uint8Array = get(&m, "content").unchecked_into();
        assert_eq!(bytes.to_vec(), content.as_bytes());
    }

    // Upstream push with an auto ack is acknowledged by the server.
    wait(client.push("up".into(), js("{ ack: 'auto' }"))).await.unwrap();

    wait(client.unbind()).await.unwrap();
    let r = push_api(&e, &user, "after unbind", "none").await;
    assert_ne!(first_result(&r), "success");
    client.close();
    assert_eq!(client.state(), "closed");
}

#[wasm_bindgen_test]
async fn fetch_through_the_tunnel() {
    let _e = live_env!();
    let Some(echo) = option_env!("MPUSH_TEST_ECHO_URL") else {
        console_log!("skipped: MPUSH_TEST_ECHO_URL not set");
        return;
    };
    let e = env().unwrap();
    let client = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(client.connect()).await.unwrap();
    let init = js("{ method: 'POST', headers: { 'x-test': 'yes' }, body: 'ping', timeout: 3000 }");
    let resp: web_sys::Response = wait(client.fetch(echo.into(), init)).await.unwrap().unchecked_into();
    assert_eq!(resp.status(), 200);
    let text = wait(resp.text().unwrap()).await.unwrap().as_string().unwrap();
    assert!(text.contains("ping"), "{text}");
    let e2 = wait(client.fetch(echo.into(), js("{ method: 'PATCH' }"))).await.unwrap_err();
    assert_eq!(get(&e2, "code").as_string().as_deref(), Some("HTTP_METHOD_UNSUPPORTED"));
    client.close();
}

#[wasm_bindgen_test]
async fn reconnects_with_fast_connect_and_rebinds_after_the_proxy_drops_the_socket() {
    let e = live_env!();
    let store = map_store();
    let client = MPushClient::new(options(&e, &store, "")).unwrap();
    wait(client.connect()).await.unwrap();
    let user = unique("live-r");
    wait(client.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();

    // A text frame breaks the proxy's framing contract: it closes the WebSocket (1003).
    let reconnected = expect_event(&client, "connect", 10_000, "", async { client.debug_send_text("not mpush") }).await;
    assert_eq!(get(&reconnected, "fast").as_bool(), Some(true), "reconnect must use fast connect");
    assert!(client.last_connect_was_fast());
    // The session binds the user again by itself.
    sleep(300).await;
    let (f, p) = next_event(&client, "push", 5000, "");
    let r = push_api(&e, &user, "after reconnect", "auto").await;
    wait(p).await.unwrap();
    client.off("push", &f);
    assert_eq!(first_result(&r), "success");
    client.close();

    // A new client over the same storage (a page reload) fast-connects too.
    let again = MPushClient::new(options(&e, &store, "")).unwrap();
    let info = wait(again.connect()).await.unwrap();
    assert_eq!(get(&info, "fast").as_bool(), Some(true));
    again.close();
}

#[wasm_bindgen_test]
async fn a_second_device_binding_the_same_user_kicks_the_first() {
    let e = live_env!();
    let user = unique("live-k");
    let first = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(first.connect()).await.unwrap();
    wait(first.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    let second = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(second.connect()).await.unwrap();
    let kick = expect_event(&first, "kick", 5000, "", async {
        wait(second.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    })
    .await;
    assert_eq!(get(&kick, "userId").as_string().as_deref(), Some(user.as_str()));
    // The kicked client keeps its connection.
    assert_eq!(first.state(), "ready");
    first.close();
    second.close();
}

#[wasm_bindgen_test]
async fn user_id_option_binds_after_connect() {
    let e = live_env!();
    let user = unique("live-o");
    let o = options(&e, &map_store(), "");
    Reflect::set(&o, &"userId".into(), &user.clone().into()).unwrap();
    let client = MPushClient::new(o).unwrap();
    let bound = expect_event(&client, "bind", 5000, "", async {
        wait(client.connect()).await.unwrap();
    })
    .await;
    assert_eq!(get(&bound, "userId").as_string().as_deref(), Some(user.as_str()));
    let (f, p) = next_event(&client, "push", 5000, "");
    let r = push_api(&e, &user, "x", "auto").await;
    wait(p).await.unwrap();
    client.off("push", &f);
    assert_eq!(first_result(&r), "success");
    client.close();
}

#[wasm_bindgen_test]
async fn pagehide_into_the_bfcache_closes_and_pageshow_fast_connects() {
    let e = live_env!();
    let client = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(client.connect()).await.unwrap();
    let fire = |name: &str| {
        let ev = js(&["new PageTransitionEvent('", name, "', { persisted: true })"].concat());
        let dispatch: Function = get(&js_sys::global(), "dispatchEvent").unchecked_into();
        dispatch.call1(&js_sys::global(), &ev).unwrap();
    };
    let gone = expect_event(&client, "disconnect", 5000, "", async { fire("pagehide") }).await;
    assert_eq!(get(&gone, "code").as_f64(), Some(1000.0));
    assert_eq!(client.state(), "reconnecting");
    // Suspended: no reconnect while the page sits in the cache.
    sleep(400).await;
    assert_eq!(client.state(), "reconnecting");
    let back = expect_event(&client, "connect", 5000, "", async { fire("pageshow") }).await;
    assert_eq!(get(&back, "fast").as_bool(), Some(true));
    client.close();
}

#[wasm_bindgen_test]
async fn an_online_event_probes_a_healthy_connection_without_dropping_it() {
    let e = live_env!();
    let client = MPushClient::new(options(&e, &map_store(), "requestTimeout: 1000")).unwrap();
    wait(client.connect()).await.unwrap();
    let drops = Array::new();
    let d2 = drops.clone();
    let rec = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |v: JsValue| {
        d2.push(&v);
    });
    client.on("disconnect".into(), rec.as_ref().unchecked_ref::<Function>().clone().into()).unwrap();
    // The probe is a heartbeat the server echoes within the probe timeout (1 s here).
    let dispatch: Function = get(&js_sys::global(), "dispatchEvent").unchecked_into();
    dispatch.call1(&js_sys::global(), &js("new Event('online')")).unwrap();
    sleep(1500).await;
    assert_eq!(drops.length(), 0, "a healthy connection must survive the probe");
    assert_eq!(client.state(), "ready");
    client.close();
}

#[wasm_bindgen_test]
async fn a_sent_heartbeat_is_reported_by_event_and_last_heartbeat_at() {
    let e = live_env!();
    let client = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(client.connect()).await.unwrap();
    // The negotiated heartbeat here is minutes; the liveness probe an "online" event triggers
    // is a heartbeat written now.
    assert_eq!(client.last_heartbeat_at(), None, "no heartbeat before the first one is sent");
    let before = js_sys::Date::now();
    let hb = expect_event(&client, "heartbeat", 3000, "", async {
        let dispatch: Function = get(&js_sys::global(), "dispatchEvent").unchecked_into();
        dispatch.call1(&js_sys::global(), &js("new Event('online')")).unwrap();
    })
    .await;
    let at = get(&hb, "at").as_f64().expect("heartbeat event carries `at`");
    assert!(at >= before && at <= js_sys::Date::now(), "`at` is the send time: {at} (before {before})");
    assert_eq!(client.last_heartbeat_at(), Some(at));
    client.close();
}

#[wasm_bindgen_test]
async fn binding_another_user_moves_the_pushes_to_it() {
    let e = live_env!();
    let client = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(client.connect()).await.unwrap();
    let (a, b) = (unique("live-a"), unique("live-b"));
    wait(client.bind(JsValue::from(a.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    let bound = wait(client.bind(JsValue::from(b.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    assert_eq!(get(&bound, "userId").as_string().as_deref(), Some(b.as_str()));
    // The first user was unbound first: it is offline now.
    assert_ne!(first_result(&push_api(&e, &a, "to a", "none").await), "success");
    let (f, p) = next_event(&client, "push", 5000, "");
    let r = push_api(&e, &b, "to b", "auto").await;
    wait(p).await.unwrap();
    client.off("push", &f);
    assert_eq!(first_result(&r), "success");
    client.close();
}

#[wasm_bindgen_test]
async fn a_kicked_client_does_not_take_the_user_back_until_it_binds_again() {
    let e = live_env!();
    let user = unique("live-kb");
    let first = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(first.connect()).await.unwrap();
    wait(first.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    let second = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(second.connect()).await.unwrap();
    expect_event(&first, "kick", 5000, "", async {
        wait(second.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    })
    .await;
    let e2 = wait(first.unbind()).await.unwrap_err();
    assert_eq!(get(&e2, "code").as_string().as_deref(), Some("NOT_BOUND"));

    // The first client reconnects (the proxy drops it on a text frame): no re-bind, so the
    // second keeps the user and is not kicked back.
    let kicks = Array::new();
    let k2 = kicks.clone();
    let rec = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |v: JsValue| {
        k2.push(&v);
    });
    second.on("kick".into(), rec.as_ref().unchecked_ref::<Function>().clone().into()).unwrap();
    expect_event(&first, "connect", 10_000, "", async { first.debug_send_text("drop me") }).await;
    sleep(300).await;
    assert_eq!(kicks.length(), 0, "the reconnect must not take the user back");
    let (f, p) = next_event(&second, "push", 5000, "");
    let r = push_api(&e, &user, "still second", "auto").await;
    wait(p).await.unwrap();
    second.off("push", &f);
    assert_eq!(first_result(&r), "success");

    // An explicit bind takes it back: the second is kicked, pushes go to the first.
    expect_event(&second, "kick", 5000, "", async {
        wait(first.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    })
    .await;
    let (f, p) = next_event(&first, "push", 5000, "");
    let r = push_api(&e, &user, "first again", "auto").await;
    wait(p).await.unwrap();
    first.off("push", &f);
    assert_eq!(first_result(&r), "success");
    first.close();
    second.close();
}

#[wasm_bindgen_test]
async fn large_bodies_reach_the_gateway_compressed() {
    let e = live_env!();
    let client = MPushClient::new(options(&e, &map_store(), "")).unwrap();
    wait(client.connect()).await.unwrap();
    // ~45 KB of JSON, over the 10240-byte packet limit unless compressed.
    let json: String = (0..600)
        .map(|i| ["{\"id\":", &i.to_string(), ",\"text\":\"notification number ", &i.to_string(), "\"},"].concat())
        .collect();
    wait(client.push(json.clone().into(), js("{ ack: 'auto' }"))).await.unwrap();
    assert_eq!(client.state(), "ready");
    if let Some(echo) = option_env!("MPUSH_TEST_ECHO_URL") {
        let init = js("{ method: 'POST', timeout: 3000 }");
        Reflect::set(&init, &"body".into(), &json.clone().into()).unwrap();
        let resp: web_sys::Response = wait(client.fetch(echo.into(), init)).await.unwrap().unchecked_into();
        assert_eq!(resp.status(), 200);
        // The echo service returns the body it received as a string (it is not valid JSON).
        let echoed = wait(resp.json().unwrap()).await.unwrap();
        assert_eq!(get(&echoed, "body").as_string().as_deref(), Some(json.as_str()));
    }
    client.close();
}
