//! Bind authentication over real sockets: with a `[bind]` secret the gateway accepts only binds
//! whose `data` is a token minted by `POST /bind-token` for that user, and refuses the rest as
//! MPUSH refuses a bind its validator rejects (Error cmd 5, code 0, `bind failed`, close);
//! without one, binding stays open. Also the push API's own hardening: the token guard on
//! minting and the header read timeout.

mod common;

use common::{api, start, TestGateway, WAIT};
use mpush_gateway::config::Secret;
use mpush_native_client::{Closed, NativeClient};
use mpush_protocol::{ClientEvent, ErrorCode, RequestError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "an HMAC secret of more than thirty-two bytes";
const API_TOKEN: &str = "api-token-for-tests";

async fn enforced() -> TestGateway {
    start(|c| {
        c.bind.token_secret = Some(Secret(SECRET.into()));
        c.api.token = Some(API_TOKEN.into());
    })
    .await
}

async fn mint(gw: &TestGateway, user: &str, ttl: Option<u64>) -> String {
    let mut body = json!({ "userId": user });
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let (status, resp) = api(gw.handle.api_addr(), "POST", "/bind-token", Some(body), Some(API_TOKEN)).await;
    assert_eq!(status, 200, "{resp}");
    resp["token"].as_str().expect("token").to_owned()
}

/// Binds with `data` and returns what came back: bound, or the refusal and how the
/// connection ended.
async fn try_bind(c: &mut NativeClient, user: &str, data: Option<&str>) -> Result<(), (RequestError, Closed)> {
    c.bind(user, data, None).await.expect("bind sent");
    match c.wait_for(|e| matches!(e, ClientEvent::Bound { .. } | ClientEvent::RequestFailed { .. })).await {
        Ok(ClientEvent::Bound { .. }) => Ok(()),
        Ok(ClientEvent::RequestFailed { error, .. }) => {
            let closed = tokio::time::timeout(WAIT, c.closed()).await.expect("closed in time");
            Err((error, closed))
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn users(gw: &TestGateway) -> serde_json::Value {
    api(gw.handle.api_addr(), "GET", "/users", None, Some(API_TOKEN)).await.1["users"].clone()
}

#[tokio::test]
async fn enforced_mode_refuses_missing_and_bad_tokens_as_mpush_and_accepts_minted_ones() {
    let gw = enforced().await;
    let alice = mint(&gw, "alice", Some(60)).await;
    let bob = mint(&gw, "bob", None).await;
    let tampered = alice.replacen("v1.", "v1.9", 1);
    for (data, why) in [
        (None, "no token"),
        (Some(bob.as_str()), "a token for another user"),
        (Some(tampered.as_str()), "a changed expiry"),
        (Some("v1.garbage"), "a malformed token"),
    ] {
        let mut c = gw.connect("dev-1").await;
        let (error, closed) = try_bind(&mut c, "alice", data).await.expect_err(why);
        // MPUSH's refusal: Error{cmd 5, code 0, "bind failed"}, then the server closes.
        assert_eq!(
            error,
            RequestError::Rejected { code: ErrorCode::NONE, reason: Some("bind failed".into()) },
            "{why}"
        );
        assert_eq!(closed, Closed::ByPeer, "{why}");
    }
    assert_eq!(users(&gw).await, json!([]), "nobody got bound");

    let mut c = gw.connect("dev-1").await;
    try_bind(&mut c, "alice", Some(&alice)).await.expect("a minted token binds");
    let listed = users(&gw).await;
    assert_eq!(listed[0]["userId"], "alice");
    // The bound user receives pushes as usual.
    let (status, body) = api(
        gw.handle.api_addr(),
        "POST",
        "/push",
        Some(json!({"userId": "alice", "content": "hi", "ack": "auto"})),
        Some(API_TOKEN),
    )
    .await;
    assert_eq!((status, &body["results"][0]["result"]), (200, &json!("success")), "{body}");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let gw = enforced().await;
    // Minted by a backend holding the same secret, already expired (the API never mints one).
    let tokens = mpush_gateway::bind_token::BindTokens::new(SECRET.as_bytes()).expect("secret");
    let expired = tokens.mint("alice", mpush_gateway::now_ms() / 1000 - 1);
    let mut c = gw.connect("dev-1").await;
    let (error, _) = try_bind(&mut c, "alice", Some(&expired)).await.expect_err("expired");
    assert_eq!(error, RequestError::Rejected { code: ErrorCode::NONE, reason: Some("bind failed".into()) });
    // The same backend's fresh token binds: the format is the documented one.
    let fresh = tokens.mint("alice", mpush_gateway::now_ms() / 1000 + 30);
    let mut c = gw.connect("dev-2").await;
    try_bind(&mut c, "alice", Some(&fresh)).await.expect("fresh token binds");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn a_refused_bind_does_not_touch_the_users_other_connection() {
    let gw = enforced().await;
    let token = mint(&gw, "alice", None).await;
    let mut owner = gw.connect("dev-owner").await;
    try_bind(&mut owner, "alice", Some(&token)).await.expect("bound");
    let mut thief = gw.connect("dev-thief").await;
    let _ = try_bind(&mut thief, "alice", Some("v1.1.AAAA")).await.expect_err("refused");
    // MPUSH's refusal would unregister alice's route for this client type; here the owner
    // keeps receiving her pushes.
    let (status, body) = api(
        gw.handle.api_addr(),
        "POST",
        "/push",
        Some(json!({"userId": "alice", "content": "still yours", "ack": "auto"})),
        Some(API_TOKEN),
    )
    .await;
    assert_eq!((status, &body["results"][0]["result"]), (200, &json!("success")), "{body}");
    let ev = owner.wait_for(|e| matches!(e, ClientEvent::Push(_))).await.expect("push");
    let ClientEvent::Push(m) = ev else { unreachable!() };
    assert_eq!(m.content, b"still yours");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn dev_mode_binds_without_a_token_and_mints_none() {
    let gw = start(|_| {}).await;
    let mut c = gw.connect("dev-1").await;
    try_bind(&mut c, "alice", None).await.expect("open binding");
    try_bind(&mut c, "bob", Some("anything at all")).await.expect("open binding ignores data");
    let (status, body) = api(gw.handle.api_addr(), "POST", "/bind-token", Some(json!({"userId": "a"})), None).await;
    assert_eq!(status, 501, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("token-secret-file"), "{body}");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn minting_needs_the_api_token_and_a_sane_request() {
    let gw = enforced().await;
    let addr = gw.handle.api_addr();
    let body = json!({"userId": "alice"});
    assert_eq!(api(addr, "POST", "/bind-token", Some(body.clone()), None).await.0, 401);
    assert_eq!(api(addr, "POST", "/bind-token", Some(body.clone()), Some("wrong")).await.0, 401);
    let (status, resp) =
        api(addr, "POST", "/bind-token", Some(json!({"userId": "alice", "ttl": 120})), Some(API_TOKEN)).await;
    assert_eq!(status, 200);
    let now = mpush_gateway::now_ms() / 1000;
    let expires = resp["expiresAt"].as_u64().expect("expiresAt");
    assert!(expires > now + 60 && expires <= now + 120, "{resp}");
    let token = resp["token"].as_str().expect("token");
    assert!(token.starts_with(&format!("v1.{expires}.")), "{token}");
    for (bad, status) in [
        (json!({"userId": ""}), 400),
        (json!({"userId": "a", "ttl": 0}), 400),
        (json!({"userId": "a", "ttl": 86_401}), 400),
        (json!({"user": "a"}), 400),
    ] {
        assert_eq!(api(addr, "POST", "/bind-token", Some(bad.clone()), Some(API_TOKEN)).await.0, status, "{bad}");
    }
    assert_eq!(api(addr, "GET", "/bind-token", None, Some(API_TOKEN)).await.0, 405);
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn the_push_api_closes_a_connection_that_sends_half_a_header() {
    let gw = start(|c| c.api.header_read_timeout = 300).await;
    let mut slow = TcpStream::connect(gw.handle.api_addr()).await.expect("connect");
    slow.write_all(b"POST /push HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
    // The gateway ends it: EOF or a 408, well before WAIT, while a client that keeps its
    // header unfinished would otherwise hold the connection forever.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await.expect("closed by the gateway");
    assert!(read.is_ok() || buf.is_empty(), "{read:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    // A connection that opens and says nothing is closed the same way.
    let mut silent = TcpStream::connect(gw.handle.api_addr()).await.expect("connect");
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(WAIT, silent.read(&mut one)).await.expect("closed by the gateway");
    assert!(matches!(n, Ok(0) | Err(_)) || one[0] == b'H', "{n:?}");
    // A prompt client is served as usual.
    let (status, _) = api(gw.handle.api_addr(), "GET", "/health", None, None).await;
    assert_eq!(status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn a_non_loopback_push_api_without_a_token_does_not_start() {
    let mut config =
        mpush_gateway::GatewayConfig { api_listen: "0.0.0.0:0".parse().expect("addr"), ..Default::default() };
    let err = mpush_gateway::Gateway::bind(config.clone()).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("api-listen") && msg.contains("[api] token"), "{msg}");
    config.api.token = Some(API_TOKEN.into());
    config.api_listen = "127.0.0.1:0".parse().expect("addr");
    let keys = common::keys();
    let options = mpush_gateway::GatewayOptions { keys: Some(keys), ..Default::default() };
    let gw = mpush_gateway::Gateway::bind_with(config, options).await.expect("loopback with token starts");
    drop(gw);
}
