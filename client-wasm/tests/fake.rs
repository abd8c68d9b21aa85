//! Browser tests against a scripted fake MPUSH server (`tests/live/fake-mpush.mjs`, started by
//! `tests/live/run.sh`), for what the embedded gateway cannot show: a handshake refused the way
//! MPUSH refuses an undecryptable one, a server that never answers an HTTP request, and what
//! the client really puts on the wire (decrypted and inflated by Node's zlib).
//!
//! `MPUSH_TEST_FAKE_URL` (`host:port`) is baked in at compile time; without it every test here
//! returns at once (and says so on the console).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, missing_docs)]

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use mpush_client_wasm::MPushClient;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The session the fake accepts: key 1..=16, iv 17..=32, expiring in 2100.
const STORED_SESSION: &str =
    "fake-session,4102444800000,1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16,17|18|19|20|21|22|23|24|25|26|27|28|29|30|31|32";

/// Any RSA key will do: the fake never decrypts a handshake.
const KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCI9vj8vqUVx2JVhl+dZumNkgC11+wd6AzO7MiooCylAMkaWRorSjnKX9nUqmVMJQ8n+u+4KguoEh0NN3qRgB8f4bPbwxqnZAXtYE4i4UCR+n/ef14ovI7ws7gLfsYF5rRIFRlw325kKnuCUrQpHSlRG6S15X9CbVJt0XMh5IUe8wIDAQAB";

macro_rules! fake {
    () => {
        match option_env!("MPUSH_TEST_FAKE_URL") {
            Some(f) => f,
            None => {
                console_log!("skipped: MPUSH_TEST_FAKE_URL not set at build time");
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

fn tag(prefix: &str) -> String {
    [prefix, &(js_sys::Math::random() * 1e9).floor().to_string()].concat()
}

async fn wait(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |res, _| {
        let g = js_sys::global();
        let set: Function = get(&g, "setTimeout").unchecked_into();
        set.call2(&g, &res, &ms.into()).unwrap();
    });
    wait(p).await.unwrap();
}

/// A client of `ws://{fake}/{mode}/{tag}`; `session` preloads the stored session.
fn client(fake: &str, mode: &str, tag: &str, session: bool, extra: &str) -> MPushClient {
    let store = js("{ m: new Map(), get(k) { return this.m.has(k) ? this.m.get(k) : null; }, set(k, v) { this.m.set(k, v); }, remove(k) { this.m.delete(k); } }");
    if session {
        let set: Function = get(&store, "set").unchecked_into();
        set.call2(&store, &"mpush:session".into(), &STORED_SESSION.into()).unwrap();
    }
    let o = js(&["{ reconnect: { minDelay: 50, maxDelay: 100 }, ", extra, " }"].concat());
    let url = ["ws://", fake, "/", mode, "/", tag].concat();
    Reflect::set(&o, &"url".into(), &url.into()).unwrap();
    Reflect::set(&o, &"publicKey".into(), &KEY.into()).unwrap();
    Reflect::set(&o, &"storage".into(), &store).unwrap();
    MPushClient::new(o).unwrap()
}

/// What the fake saw on connections with this tag.
async fn stats(fake: &str, tag: &str) -> JsValue {
    let f = Function::new_with_args("url", "return fetch(url).then(r => r.json())");
    let url = ["http://", fake, "/stats/", tag].concat();
    wait(f.call1(&JsValue::NULL, &url.into()).unwrap().unchecked_into()).await.unwrap()
}

fn len(v: &JsValue) -> u32 {
    v.unchecked_ref::<Array>().length()
}

/// Collects the `code` of every "error" event.
fn error_codes(c: &MPushClient) -> Array {
    let codes = Array::new();
    let f = Function::new_with_args("codes", "return (e) => codes.push(e.code)")
        .call1(&JsValue::NULL, &codes)
        .unwrap()
        .unchecked_into::<Function>();
    c.on("error".into(), f.into()).unwrap();
    codes
}

#[wasm_bindgen_test]
async fn a_refused_handshake_stops_reconnecting_and_rejects_connect() {
    let fake = fake!();
    let t = tag("refuse");
    let c = client(fake, "refuse", &t, false, "");
    let errors = error_codes(&c);
    let e = wait(c.connect()).await.unwrap_err();
    assert_eq!(get(&e, "code").as_string().as_deref(), Some("HANDSHAKE_REFUSED"));
    assert_eq!(get(&e, "serverCode").as_f64(), Some(100.0));
    assert_eq!(get(&e, "serverReason").as_string().as_deref(), Some("handle message error"));
    assert_eq!(c.state(), "closed");
    // Reconnect delays are 50..100 ms: after 600 ms a retry would have happened many times.
    sleep(600).await;
    assert_eq!(get(&stats(fake, &t).await, "connections").as_f64(), Some(1.0), "no retry after a refusal");
    assert_eq!(errors.to_vec().iter().filter_map(|v| v.as_string()).collect::<Vec<_>>(), ["HANDSHAKE_REFUSED"]);
    // An explicit connect() tries once more, and is refused once more.
    let e = wait(c.connect()).await.unwrap_err();
    assert_eq!(get(&e, "code").as_string().as_deref(), Some("HANDSHAKE_REFUSED"));
    assert_eq!(get(&stats(fake, &t).await, "connections").as_f64(), Some(2.0));
}

#[wasm_bindgen_test]
async fn an_unanswered_fetch_resolves_with_408_and_sends_one_read_timeout() {
    let fake = fake!();
    let t = tag("http");
    let c = client(fake, "fast", &t, true, "requestTimeout: 300");
    let info = wait(c.connect()).await.unwrap();
    assert_eq!(get(&info, "fast").as_bool(), Some(true));

    // `timeout` replaces a readTimeout header the Headers object lower-cased.
    let init = js("{ headers: { readTimeout: '5000', 'x-a': '1' }, timeout: 200 }");
    let resp: web_sys::Response = wait(c.fetch("http://api.example/x".into(), init)).await.unwrap().unchecked_into();
    assert_eq!((resp.status(), resp.status_text()), (408, "Request Timeout".to_string()));
    // A header alone, in any case, is sent once under MPUSH's name.
    let init = js("{ headers: { ReadTimeout: '250' } }");
    let resp: web_sys::Response = wait(c.fetch("http://api.example/y".into(), init)).await.unwrap().unchecked_into();
    assert_eq!(resp.status(), 408);

    let http = get(&stats(fake, &t).await, "http");
    assert_eq!(len(&http), 2);
    let headers = |i: u32| get(&http.unchecked_ref::<Array>().get(i), "headers").as_string().unwrap();
    let lines = |h: String| {
        h.lines().filter(|l| l.to_ascii_lowercase().starts_with("readtimeout:")).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(lines(headers(0)), ["readTimeout:200"], "{}", headers(0));
    assert!(headers(0).contains("x-a:1"));
    assert_eq!(lines(headers(1)), ["readTimeout:250"], "{}", headers(1));
    c.close();
}

async fn sha256_hex(bytes: &[u8]) -> String {
    let f = Function::new_with_args(
        "b",
        "return crypto.subtle.digest('SHA-256', b).then(d => Array.from(new Uint8Array(d)).map(x => x.toString(16).padStart(2, '0')).join(''))",
    );
    let p = f.call1(&JsValue::NULL, &Uint8Array::from(bytes)).unwrap();
    wait(p.unchecked_into()).await.unwrap().as_string().unwrap()
}

fn random_bytes(n: u32) -> Uint8Array {
    let f = Function::new_with_args(
        "n",
        "const b = new Uint8Array(n); for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536)); return b;",
    );
    f.call1(&JsValue::NULL, &n.into()).unwrap().unchecked_into()
}

#[wasm_bindgen_test]
async fn large_bodies_go_out_compressed_and_too_large_ones_are_refused_before_sending() {
    let fake = fake!();
    let t = tag("big");
    let c = client(fake, "fast", &t, true, "requestTimeout: 2000");
    wait(c.connect()).await.unwrap();

    // ~45 KB of JSON: four times the server's limit raw, far under it compressed.
    let json: String = (0..600)
        .map(|i| ["{\"id\":", &i.to_string(), ",\"text\":\"notification number ", &i.to_string(), "\"},"].concat())
        .collect();
    wait(c.push(json.clone().into(), js("{ ack: 'auto' }"))).await.unwrap();

    // 100 KB of random bytes cannot be compressed: refused, nothing sent, connection intact.
    let e = wait(c.push(random_bytes(100_000).into(), js("{ ack: 'auto' }"))).await.unwrap_err();
    assert_eq!(get(&e, "code").as_string().as_deref(), Some("PAYLOAD_TOO_LARGE"));
    let e = wait(c.fetch(
        "http://api.example/u".into(),
        js("{ method: 'POST', body: new Uint8Array(60000).map(() => Math.random() * 256) }"),
    ))
    .await
    .unwrap_err();
    assert_eq!(get(&e, "code").as_string().as_deref(), Some("PAYLOAD_TOO_LARGE"));
    assert_eq!(c.state(), "ready");
    wait(c.push("after".into(), js("{ ack: 'auto' }"))).await.unwrap();

    let s = stats(fake, &t).await;
    let pushes: Array = get(&s, "pushes").unchecked_into();
    assert_eq!(pushes.length(), 2, "the refused push never reached the server");
    let first = pushes.get(0);
    assert_eq!(get(&first, "compressed").as_bool(), Some(true));
    assert_eq!(get(&first, "length").as_f64(), Some(json.len() as f64));
    assert_eq!(get(&first, "sha256").as_string().unwrap(), sha256_hex(json.as_bytes()).await, "zlib inflates it whole");
    assert_eq!(get(&pushes.get(1), "compressed").as_bool(), Some(false));
    let biggest = get(&s, "packets")
        .unchecked_into::<Array>()
        .iter()
        .map(|p| get(&p, "length").as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(biggest <= 10_240.0, "a packet body of {biggest} bytes went out");
    assert_eq!(len(&get(&s, "http")), 0);
    c.close();
}
