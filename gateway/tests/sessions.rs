//! Connection behaviour over real sockets: handshake, fast connect, bind, kick, idle close,
//! malformed input.

mod common;

use common::{bind, start, WAIT};
use mpush_native_client::{Closed, NativeClient, Options};
use mpush_protocol::{ClientEvent, ErrorCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn handshake_then_fast_connect_after_reconnect() {
    let gw = start(|_| {}).await;
    let mut first = NativeClient::connect(gw.handle.mpush_addr(), gw.client_config("dev-1"), Options::default())
        .await
        .expect("connect");
    let ev = first.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await.expect("handshake");
    let ClientEvent::HandshakeOk { heartbeat, session } = ev else { unreachable!() };
    assert_eq!(heartbeat, 180_000, "MPUSH's default heartbeat is negotiated");
    assert!(session.expire_time > mpush_gateway::now_ms() as i64 + 86_000_000, "sessions live one day");
    first.close().await;

    // A new connection resumes the stored session without a handshake...
    let mut second = NativeClient::connect(
        gw.handle.mpush_addr(),
        gw.client_config("dev-1"),
        Options { resume: Some(session.clone()), ..Options::default() },
    )
    .await
    .expect("connect");
    let ev = second
        .wait_for(|e| matches!(e, ClientEvent::FastConnected { .. } | ClientEvent::HandshakeOk { .. }))
        .await
        .expect("fast connect");
    assert!(matches!(ev, ClientEvent::FastConnected { .. }), "got {ev:?}");
    // ...and the restored session key works: bind is encrypted with it.
    bind(&mut second, "alice", None).await;
    let (_, users) = common::api(gw.handle.api_addr(), "GET", "/users", None, None).await;
    assert_eq!(users["users"][0]["userId"], "alice");

    // Another device cannot take the session over: Error "invalid device", then a full handshake.
    let mut thief = NativeClient::connect(
        gw.handle.mpush_addr(),
        gw.client_config("dev-2"),
        Options { resume: Some(session), ..Options::default() },
    )
    .await
    .expect("connect");
    let ev = thief.wait_for(|e| matches!(e, ClientEvent::FastConnectRefused { .. })).await.expect("refused");
    assert_eq!(
        ev,
        ClientEvent::FastConnectRefused { code: ErrorCode::NONE },
        "MPUSH 0.8.0 refuses with code 0 (\"invalid device\")"
    );
    thief.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await.expect("handshake after refusal");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn second_bind_of_same_user_and_type_kicks_the_first() {
    let gw = start(|_| {}).await;
    let mut a = gw.connect("dev-a").await;
    let mut b = gw.connect("dev-b").await;
    bind(&mut a, "bob", None).await;
    bind(&mut b, "bob", None).await;
    let kick = a.wait_for(|e| matches!(e, ClientEvent::Kick { .. })).await.expect("kick");
    assert_eq!(kick, ClientEvent::Kick { device_id: "dev-a".into(), user_id: "bob".into() });

    // The user's pushes now reach only the new connection.
    let (status, body) = gw.push(json!({"userId": "bob", "content": "to b", "ack": "auto"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["results"], json!([{"userId": "bob", "result": "success", "code": 1}]));
    let ClientEvent::Push(m) = b.wait_for(|e| matches!(e, ClientEvent::Push(_))).await.expect("push") else {
        unreachable!()
    };
    assert_eq!(m.content, b"to b");

    // The kicked connection stays open and usable.
    bind(&mut a, "carol", None).await;
    let (_, users) = common::api(gw.handle.api_addr(), "GET", "/users", None, None).await;
    let ids: Vec<&str> =
        users["users"].as_array().expect("users").iter().filter_map(|u| u["userId"].as_str()).collect();
    assert_eq!(ids, ["bob", "carol"]);
    assert_eq!(users["users"][0]["connections"][0]["deviceId"], "dev-b");
    assert_eq!(users["users"][0]["connections"][0]["clientType"], "WEB");

    // A different client type of the same user is not kicked.
    let mut cfg = gw.client_config("dev-m");
    cfg.os_name = "android".into();
    let mut m = gw.connect_with(cfg, Options::default()).await;
    bind(&mut m, "bob", None).await;
    let (_, users) = common::api(gw.handle.api_addr(), "GET", "/users", None, None).await;
    assert_eq!(users["users"][0]["connections"].as_array().map(Vec::len), Some(2));

    // Unbind removes the route.
    b.unbind().await.expect("unbind");
    b.wait_for(|e| matches!(e, ClientEvent::Unbound { .. })).await.expect("unbound");
    m.close().await;
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = gw.push(json!({"userId": "bob", "content": "x"})).await;
            if body["results"][0]["code"] == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("bob goes offline");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn silent_client_is_closed_after_missed_heartbeats_while_a_live_one_stays() {
    let gw = start(|c| {
        c.core.min_heartbeat = 2000;
        c.core.max_heartbeat = 2000;
    })
    .await;
    let mut cfg = gw.client_config("silent");
    cfg.min_heartbeat = 2000;
    cfg.max_heartbeat = 2000;
    let mut silent = gw.connect_with(cfg.clone(), Options { timers: false, ..Options::default() }).await;
    cfg.device_id = "alive".into();
    let mut alive = gw.connect_with(cfg, Options::default()).await;
    bind(&mut alive, "alive-user", None).await;

    // 3 missed periods of heartbeat + 1 s: about 9 s.
    let closed = tokio::time::timeout(WAIT, silent.closed()).await.expect("silent client closed in time");
    assert_eq!(closed, Closed::ByPeer);

    // The client that heartbeats is still served.
    let (_, body) = gw.push(json!({"userId": "alive-user", "content": "still here", "ack": "auto"})).await;
    assert_eq!(body["results"][0]["code"], 1);
    gw.handle.shutdown().await;
}

async fn expect_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let eof = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "the gateway closes a connection that sent garbage");
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let gw = start(|_| {}).await;
    let mut good = gw.connect("good").await;
    bind(&mut good, "gina", None).await;

    // A length far over max-packet-size.
    let mut raw = TcpStream::connect(gw.handle.mpush_addr()).await.expect("connect");
    raw.write_all(&[0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3]).await.expect("write");
    expect_eof(&mut raw).await;

    // A handshake whose RSA body is not RSA.
    let mut raw = TcpStream::connect(gw.handle.mpush_addr()).await.expect("connect");
    let mut pkt = vec![0, 0, 0, 5, 2, 0, 0, 1, 0, 0, 0, 1, 0];
    pkt.extend_from_slice(b"hello");
    raw.write_all(&pkt).await.expect("write");
    expect_eof(&mut raw).await;

    // An unsupported command (LOGIN, 3): Error 101 then close, as MPUSH does.
    let mut raw = TcpStream::connect(gw.handle.mpush_addr()).await.expect("connect");
    raw.write_all(&[0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 7, 0]).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut reply)).await.expect("closed in time").expect("read");
    assert!(reply.len() >= 13 && reply[4] == 10, "an Error packet comes first: {reply:?}");

    // The well-behaved connection still works.
    let (_, body) = gw.push(json!({"userId": "gina", "content": "ok", "ack": "auto"})).await;
    assert_eq!(body["results"][0]["code"], 1);
    let ev = good.wait_for(|e| matches!(e, ClientEvent::Push(_))).await.expect("push");
    assert!(matches!(ev, ClientEvent::Push(m) if m.content == b"ok"));
    gw.handle.shutdown().await;
}
