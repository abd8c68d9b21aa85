//! The push API with each ack model and MPUSH's result codes, and upstream pushes reaching
//! the sink (a test sink and a webhook).

mod common;

use std::time::Duration;

use common::{api, bind, start, upstream_server, WAIT};
use mpush_protocol::{AckMode, ClientEvent};
use serde_json::json;

fn push_of(e: &ClientEvent) -> Option<(i32, Vec<u8>, AckMode)> {
    match e {
        ClientEvent::Push(m) => Some((m.session_id, m.content.clone(), m.ack)),
        _ => None,
    }
}

#[tokio::test]
async fn push_api_result_codes_for_every_ack_model() {
    let gw = start(|_| {}).await;
    let mut c = gw.connect("dev-1").await;
    bind(&mut c, "u1", Some("vip,beta")).await;

    // ack none: success once written.
    let (status, body) = gw.push(json!({"userId": "u1", "content": "plain", "ack": "none"})).await;
    assert_eq!((status, &body["results"]), (200, &json!([{"userId": "u1", "result": "success", "code": 1}])));
    let ev = c.wait_for(|e| push_of(e).is_some()).await.expect("push");
    assert_eq!(push_of(&ev).map(|p| (p.1, p.2)), Some((b"plain".to_vec(), AckMode::None)));

    // auto ack: the client session acks on delivery.
    let (_, body) = gw.push(json!({"userIds": ["u1", "ghost"], "contentBase64": "AAEC", "ack": "auto"})).await;
    assert_eq!(
        body["results"],
        json!([
            {"userId": "u1", "result": "success", "code": 1},
            {"userId": "ghost", "result": "offline", "code": 3},
        ])
    );
    let ev = c.wait_for(|e| push_of(e).is_some()).await.expect("push");
    assert_eq!(push_of(&ev).map(|p| (p.1, p.2)), Some((vec![0, 1, 2], AckMode::Auto)));

    // biz ack: success only after the application acks.
    let api_addr = gw.handle.api_addr();
    let pending = tokio::spawn(async move {
        api(
            api_addr,
            "POST",
            "/push",
            Some(json!({"tags": ["vip"], "content": "biz", "ack": "biz", "timeoutMs": 20000})),
            None,
        )
        .await
    });
    let ev = c.wait_for(|e| push_of(e).is_some()).await.expect("push");
    let (id, content, ack) = push_of(&ev).expect("push");
    assert_eq!((content.as_slice(), ack), (&b"biz"[..], AckMode::Biz));
    c.ack(id).await.expect("ack");
    let (_, body) = pending.await.expect("api task");
    assert_eq!(body["results"], json!([{"userId": "u1", "result": "success", "code": 1}]));

    // biz ack never given: timeout (code 4).
    let (_, body) = gw.push(json!({"userId": "u1", "content": "ignored", "ack": "biz", "timeoutMs": 300})).await;
    assert_eq!(body["results"], json!([{"userId": "u1", "result": "timeout", "code": 4}]));

    // broadcast reaches bound users only; a tag nobody has reaches nobody.
    let _unbound = gw.connect("dev-2").await;
    let (_, body) = gw.push(json!({"broadcast": true, "content": "all"})).await;
    assert_eq!(body["results"], json!([{"userId": "u1", "result": "success", "code": 1}]));
    let (_, body) = gw.push(json!({"tags": ["nobody"], "content": "x"})).await;
    assert_eq!(body["results"], json!([]));

    // offline user.
    let (_, body) = gw.push(json!({"userId": "nobody", "content": "x"})).await;
    assert_eq!(body["results"], json!([{"userId": "nobody", "result": "offline", "code": 3}]));

    // bad requests.
    let (status, _) = gw.push(json!({"userId": "u1"})).await;
    assert_eq!(status, 400);
    let (status, _) = gw.push(json!({"userId": "u1", "content": "x", "ack": "sometimes"})).await;
    assert_eq!(status, 400);
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn a_push_whose_connection_closes_before_the_ack_times_out_as_in_mpush() {
    let gw = start(|_| {}).await;
    let mut c = gw.connect("dev-1").await;
    bind(&mut c, "u1", None).await;
    let api_addr = gw.handle.api_addr();
    let pending = tokio::spawn(async move {
        api(
            api_addr,
            "POST",
            "/push",
            Some(json!({"userId": "u1", "content": "x", "ack": "biz", "timeoutMs": 2000})),
            None,
        )
        .await
    });
    c.wait_for(|e| push_of(e).is_some()).await.expect("push");
    let pushed = tokio::time::Instant::now();
    c.close().await;
    // MPUSH keeps waiting for the ack after the close: timeout (4) once timeoutMs has passed.
    let (_, body) = tokio::time::timeout(WAIT, pending).await.expect("in time").expect("api task");
    assert_eq!(body["results"], json!([{"userId": "u1", "result": "timeout", "code": 4}]));
    assert!(pushed.elapsed() >= std::time::Duration::from_millis(1_500), "{:?}", pushed.elapsed());
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn api_token_health_and_public_key() {
    let gw = start(|c| c.api.token = Some("s3cret".into())).await;
    let addr = gw.handle.api_addr();
    let (status, _) = api(addr, "POST", "/push", Some(json!({"userId": "u", "content": "x"})), None).await;
    assert_eq!(status, 401);
    let (status, _) = api(addr, "GET", "/users", None, Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, body) = api(addr, "POST", "/push", Some(json!({"userId": "u", "content": "x"})), Some("s3cret")).await;
    assert_eq!((status, body["results"][0]["code"].as_u64()), (200, Some(3)));
    let (status, body) = api(addr, "GET", "/health", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let req = mpush_gateway::http_proxy::PlainRequest {
        method: http::Method::GET,
        uri: format!("http://{addr}/public-key"),
        headers: vec![],
        body: vec![],
    };
    let resp = mpush_gateway::http_proxy::send_plain_http(req, None, 1 << 16).await.expect("public key");
    assert_eq!(String::from_utf8_lossy(&resp.body).trim(), gw.handle.public_key());
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn upstream_push_reaches_the_sink() {
    let mut gw = start(|_| {}).await;
    let mut c = gw.connect("dev-up").await;
    bind(&mut c, "uploader", None).await;
    let req = c.push(b"hello server".to_vec(), AckMode::Auto).await.expect("push").expect("request id");
    let ev = c.wait_for(|e| matches!(e, ClientEvent::PushAcked { .. })).await.expect("acked");
    assert_eq!(ev, ClientEvent::PushAcked { request: req });
    let msg = tokio::time::timeout(WAIT, gw.upstream.recv()).await.expect("in time").expect("message");
    assert_eq!(msg.user_id.as_deref(), Some("uploader"));
    assert_eq!(msg.device_id, "dev-up");
    assert_eq!(msg.content, b"hello server");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn upstream_push_reaches_the_webhook() {
    let (hook, mut seen) = upstream_server().await;
    let gw = start(|c| c.upstream.webhook = Some(format!("http://{hook}/hook"))).await;
    let mut c = gw.connect("dev-hook").await;
    bind(&mut c, "hooked", None).await;
    c.push(b"via webhook".to_vec(), AckMode::None).await.expect("push");
    let req = tokio::time::timeout(WAIT, seen.recv()).await.expect("in time").expect("request");
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(body["userId"], "hooked");
    assert_eq!(body["deviceId"], "dev-hook");
    assert_eq!(body["contentBase64"], "dmlhIHdlYmhvb2s=");
    tokio::time::sleep(Duration::from_millis(10)).await;
    gw.handle.shutdown().await;
}
