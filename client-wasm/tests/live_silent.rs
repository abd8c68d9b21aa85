//! Live tests in headless Chromium of the client's liveness checks against an upstream that
//! stops answering WITHOUT closing: browser -> mpush-proxy -> a relay that goes silent on
//! command (`tests/live/silent-relay.mjs`) -> mpush-gateway. The WebSocket stays open and the
//! proxy sees nothing wrong; only the client can notice. Bounds (client-wasm/README.md):
//!
//! * nothing read for two read periods, 2 x (heartbeat + 1 s): the session declares the
//!   connection dead ("heartbeat timeout");
//! * a timer that fires more than 10 s late (throttled background tab, suspended machine) with
//!   nothing read for 10 s: a heartbeat probe, and the connection is dropped when no answer
//!   comes within the probe timeout, min(requestTimeout, 10 s) ("no answer to heartbeat").
//!
//! Either way the client reconnects (fast connect) over a fresh link.
//!
//! Baked in at compile time by `tests/live/run.sh` (`tests/live/silent-stack.sh`):
//! `MPUSH_TEST_SILENT_WS_URL`, `MPUSH_TEST_SILENT_CONTROL_URL` (the relay's control port),
//! `MPUSH_TEST_SILENT_API_URL` (the gateway's push API behind a CORS shim) and
//! `MPUSH_TEST_PUBLIC_KEY`. Without them every test here returns at once and says so.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, missing_docs)]

use js_sys::{Array, Function, Promise, Reflect};
use mpush_client_wasm::MPushClient;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The heartbeat both tests negotiate (the gateway allows 2..60 s), ms.
const HEARTBEAT: f64 = 3000.0;
/// The driver's "late timer" threshold (LATE_MS in src/driver.rs), ms.
const LATE: f64 = 10_000.0;
/// Slack for timer scheduling and the loopback round trips, ms.
const SLACK: f64 = 1000.0;

struct Env {
    ws: &'static str,
    key: &'static str,
    control: &'static str,
    api: &'static str,
}

fn env() -> Option<Env> {
    Some(Env {
        ws: option_env!("MPUSH_TEST_SILENT_WS_URL")?,
        key: option_env!("MPUSH_TEST_PUBLIC_KEY")?,
        control: option_env!("MPUSH_TEST_SILENT_CONTROL_URL")?,
        api: option_env!("MPUSH_TEST_SILENT_API_URL")?,
    })
}

macro_rules! silent_env {
    () => {
        match env() {
            Some(e) => e,
            None => {
                console_log!("skipped: MPUSH_TEST_SILENT_* / MPUSH_TEST_PUBLIC_KEY not set at build time (run tests/live/run.sh)");
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

fn now() -> f64 {
    js_sys::Date::now()
}

async fn wait(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

fn unique(prefix: &str) -> String {
    [prefix, &(js_sys::Math::random() * 1e9).floor().to_string()].concat()
}

/// Client options: a 3 s heartbeat, fast reconnects, storage in a JS map, plus `extra`.
fn client(e: &Env, extra: &str) -> MPushClient {
    let o = js(&[
        "{ minHeartbeat: 3000, maxHeartbeat: 3000, reconnect: { minDelay: 50, maxDelay: 300 }, ",
        "storage: { m: new Map(), get(k) { return this.m.has(k) ? this.m.get(k) : null; }, ",
        "set(k, v) { this.m.set(k, v); }, remove(k) { this.m.delete(k); } }, ",
        extra,
        " }",
    ]
    .concat());
    Reflect::set(&o, &"url".into(), &e.ws.into()).unwrap();
    Reflect::set(&o, &"publicKey".into(), &e.key.into()).unwrap();
    MPushClient::new(o).unwrap()
}

/// A promise for the next `event` (its payload gets `at`, the `Date.now()` it arrived), or
/// rejected after `ms`; the listener is returned for `off`.
fn next_event(client: &MPushClient, event: &str, ms: f64) -> (Function, Promise) {
    let make = Function::new_with_args(
        "name, ms",
        "let f; const p = new Promise((res, rej) => { \
           const t = setTimeout(() => rej(new Error('no ' + name + ' event within ' + ms + ' ms')), ms); \
           f = (v) => { clearTimeout(t); if (v && typeof v === 'object') v.at = Date.now(); res(v); }; \
         }); return [f, p];",
    );
    let pair: Array = make.call2(&JsValue::NULL, &event.into(), &ms.into()).unwrap().unchecked_into();
    let f: Function = pair.get(0).unchecked_into();
    client.on(event.into(), f.clone().into()).unwrap();
    (f, pair.get(1).unchecked_into())
}

/// `fetch(url, { method })` and the JSON answer.
async fn http_json(method: &str, url: &str, body: Option<String>) -> JsValue {
    let f = Function::new_with_args(
        "method, url, body",
        "return fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body ?? undefined }) \
           .then(async r => { if (!r.ok) throw new Error(method + ' ' + url + ': ' + r.status + ' ' + await r.text()); return r.json(); })",
    );
    let body = body.map_or(JsValue::NULL, JsValue::from);
    wait(f.call3(&JsValue::NULL, &method.into(), &url.into(), &body).unwrap().unchecked_into())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// Makes every link open through the relay go silent; returns how many.
async fn silence(e: &Env) -> f64 {
    let r = http_json("POST", &[e.control, "/silence"].concat(), None).await;
    get(&r, "silenced").as_f64().unwrap()
}

/// Connections the relay has accepted so far.
async fn relay_accepted(e: &Env) -> f64 {
    get(&http_json("GET", &[e.control, "/stats"].concat(), None).await, "accepted").as_f64().unwrap()
}

async fn push_to(e: &Env, user: &str, content: &str) -> String {
    let body = js_sys::JSON::stringify(&js(&[
        "{ userId: '",
        user,
        "', content: '",
        content,
        "', ack: 'auto', timeoutMs: 3000 }",
    ]
    .concat()))
    .unwrap()
    .as_string()
    .unwrap();
    let r = http_json("POST", &[e.api, "/push"].concat(), Some(body)).await;
    let results: Array = get(&r, "results").unchecked_into();
    get(&results.get(0), "result").as_string().unwrap_or_default()
}

#[wasm_bindgen_test]
async fn a_silent_upstream_is_detected_by_the_heartbeat_and_the_client_reconnects() {
    let e = silent_env!();
    let user = unique("silent-hb-");
    let client = client(&e, "requestTimeout: 5000");
    let info = wait(client.connect()).await.unwrap();
    assert_eq!(get(&info, "heartbeat").as_f64(), Some(HEARTBEAT), "the gateway must grant the 3 s heartbeat");
    wait(client.bind(JsValue::from(user.clone()), JsValue::UNDEFINED, JsValue::UNDEFINED)).await.unwrap();
    let accepted = relay_accepted(&e).await;

    // Registered first, so nothing is missed; the bound is counted from the silence.
    let dead_bound = 2.0 * (HEARTBEAT + 1000.0);
    let (fd, gone) = next_event(&client, "disconnect", dead_bound + 5000.0);
    let (fc, back) = next_event(&client, "connect", dead_bound + 15_000.0);
    let (fb, rebound) = next_event(&client, "bind", dead_bound + 15_000.0);
    let t0 = now();
    assert!(silence(&e).await >= 1.0, "the client's link was not open through the relay");

    let gone = wait(gone).await.unwrap_or_else(|err| panic!("the dead link was not detected: {err:?}"));
    let detected = get(&gone, "at").as_f64().unwrap() - t0;
    assert_eq!(get(&gone, "reason").as_string().as_deref(), Some("heartbeat timeout"), "{gone:?}");
    assert_eq!(get(&gone, "code").as_f64(), Some(4000.0), "the client closes the socket itself");
    // The last read was at most one heartbeat interval before the silence, so the session
    // needs at least one read period and at most two after it.
    assert!(detected <= dead_bound + SLACK, "detected after {detected} ms, bound {dead_bound} ms");
    assert!(detected >= HEARTBEAT + 1000.0 - SLACK, "dropped after only {detected} ms");
    console_log!("silent upstream detected by the heartbeat after {} ms (bound {} ms)", detected, dead_bound);

    // Reconnected over a new relay link, with fast connect, and the user bound again.
    let back = wait(back).await.unwrap_or_else(|err| panic!("no reconnect: {err:?}"));
    assert_eq!(get(&back, "fast").as_bool(), Some(true), "the reconnect must resume the session");
    wait(rebound).await.unwrap_or_else(|err| panic!("the user was not bound again: {err:?}"));
    assert!(relay_accepted(&e).await > accepted, "the reconnect did not open a new upstream link");
    assert_eq!(client.state(), "ready");

    // The new link carries pushes.
    let (fp, pushed) = next_event(&client, "push", 5000.0);
    assert_eq!(push_to(&e, &user, "after the silence").await, "success");
    let m = wait(pushed).await.unwrap();
    let content: js_sys::Uint8Array = get(&m, "content").unchecked_into();
    assert_eq!(content.to_vec(), b"after the silence");
    for (name, f) in [("disconnect", &fd), ("connect", &fc), ("bind", &fb), ("push", &fp)] {
        client.off(name, f);
    }
    client.close();
}

#[wasm_bindgen_test]
async fn a_late_timer_probes_a_silent_upstream_and_drops_it_within_the_probe_timeout() {
    let e = silent_env!();
    // The probe waits min(requestTimeout, 10 s) for the heartbeat's echo.
    let probe_timeout = 2000.0;
    let client = client(&e, "requestTimeout: 2000");
    let info = wait(client.connect()).await.unwrap();
    let ready_at = now();
    assert_eq!(get(&info, "heartbeat").as_f64(), Some(HEARTBEAT));

    let (fd, gone) = next_event(&client, "disconnect", 60_000.0);
    let (fc, back) = next_event(&client, "connect", 60_000.0);
    assert!(silence(&e).await >= 1.0, "the client's link was not open through the relay");

    // Freeze the page, as a throttled background tab or a suspended laptop does: no timer and
    // no event runs. The driver's next timer (a heartbeat, due at most heartbeat - 1 s after
    // the connect) then fires more than LATE ms late, with nothing read for as long.
    let until = ready_at + (HEARTBEAT - 1000.0) + LATE + 1500.0;
    Function::new_with_args("until", "while (Date.now() < until) {}").call1(&JsValue::NULL, &until.into()).unwrap();
    let woke = now();

    let gone = wait(gone).await.unwrap_or_else(|err| panic!("the dead link was not detected: {err:?}"));
    let detected = get(&gone, "at").as_f64().unwrap() - woke;
    assert_eq!(
        get(&gone, "reason").as_string().as_deref(),
        Some("no answer to heartbeat"),
        "the late timer must probe and drop the link: {gone:?}"
    );
    assert_eq!(get(&gone, "code").as_f64(), Some(4000.0));
    // The probe waited for its answer, and no longer than the probe timeout.
    assert!(detected >= probe_timeout - 50.0, "dropped {detected} ms after waking, before the probe timed out");
    assert!(detected <= probe_timeout + SLACK, "dropped {detected} ms after waking, bound {probe_timeout} ms");
    console_log!(
        "after a late timer the silent upstream was dropped {} ms after waking (bound {} ms)",
        detected,
        probe_timeout
    );

    let back = wait(back).await.unwrap_or_else(|err| panic!("no reconnect: {err:?}"));
    assert_eq!(get(&back, "fast").as_bool(), Some(true));
    assert_eq!(client.state(), "ready");
    client.off("disconnect", &fd);
    client.off("connect", &fc);
    client.close();
}
