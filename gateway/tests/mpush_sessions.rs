//! Connection behaviour over real sockets as MPUSH 0.8.0 shows it to a client: the idle check
//! before any handshake, code-0 refusals, unbind and re-bind, a second fast connect on one
//! connection (refused by the gateway: Error 100 and close), push ids shared by every
//! connection.

mod common;

use std::time::Duration;

use common::{bind, start, RawClient, WAIT};
use mpush_protocol::message::{BindUser, ErrorMessage, FastConnect, Message, OkMessage};
use mpush_protocol::{ClientEvent, Command, ErrorCode, Flags};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn bind_body(user: &str, tags: Option<&str>) -> Vec<u8> {
    BindUser { user_id: user.into(), alias: None, tags: tags.map(str::to_owned) }.encode()
}

fn ok(p: &mpush_protocol::Packet) -> OkMessage {
    assert_eq!(p.cmd, Command::OK, "{p:?}");
    OkMessage::decode(&p.body).expect("ok")
}

fn error(p: &mpush_protocol::Packet) -> ErrorMessage {
    assert_eq!(p.cmd, Command::ERROR, "{p:?}");
    ErrorMessage::decode(&p.body).expect("error")
}

#[tokio::test]
async fn a_connection_that_never_handshakes_is_closed_by_the_idle_check() {
    let gw = start(|c| c.core.pre_handshake_heartbeat = 500).await;
    // Silent: checks at 0.5, 1, 1.5, 2 s; the last three find nothing read for over 1.5 s.
    let mut silent = TcpStream::connect(gw.handle.mpush_addr()).await.expect("connect");
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0, "closed without a message");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_900) && took < Duration::from_secs(6), "{took:?}");

    // Heartbeats alone keep it open, each echoed.
    let mut beating = TcpStream::connect(gw.handle.mpush_addr()).await.expect("connect");
    for _ in 0..15 {
        beating.write_all(&[0xDF]).await.expect("write");
        let n = tokio::time::timeout(WAIT, beating.read(&mut buf)).await.expect("echo").expect("read");
        assert_eq!(&buf[..n], [0xDF]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_code_0_and_mpush_reasons() {
    let gw = start(|_| {}).await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    // Fast connect with a session the server does not know: "session expired", stays open.
    let fc = FastConnect { session_id: "nope".into(), device_id: "d".into(), min_heartbeat: 0, max_heartbeat: 0 };
    raw.send(Command::FAST_CONNECT, Flags::NONE, 1, fc.encode()).await;
    let e = error(&raw.recv(WAIT).await.expect("error"));
    assert_eq!((e.cmd, e.code, e.reason.as_deref()), (Command::FAST_CONNECT, ErrorCode::NONE, Some("session expired")));
    // Bind before a handshake: "not handshake", then the connection closes.
    raw.send(Command::BIND, Flags::NONE, 2, bind_body("u", None)).await;
    let e = error(&raw.recv(WAIT).await.expect("error"));
    assert_eq!((e.cmd, e.code, e.reason.as_deref()), (Command::BIND, ErrorCode::NONE, Some("not handshake")));
    assert!(raw.recv(WAIT).await.is_none(), "closed");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn unbind_and_rebind_as_mpush() {
    let gw = start(|_| {}).await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-ub").await;
    raw.send_sealed(Command::BIND, 2, &bind_body("alice", Some("a"))).await;
    assert_eq!(ok(&raw.recv(WAIT).await.expect("ok")).data.as_deref(), Some("bind success"));

    // The same user again: only the tags change (a tag push now finds "b").
    raw.send_sealed(Command::BIND, 3, &bind_body("alice", Some("b"))).await;
    assert_eq!(ok(&raw.recv(WAIT).await.expect("ok")).data.as_deref(), Some("bind success"));
    let (_, body) = gw.push(json!({"tags": ["b"], "content": "t"})).await;
    assert_eq!(body["results"], json!([{"userId": "alice", "result": "success", "code": 1}]));
    assert_eq!(raw.recv(WAIT).await.expect("push").cmd, Command::PUSH);

    // Another user: MPUSH's unbind answers the bind first, both Oks naming cmd 5.
    raw.send_sealed(Command::BIND, 4, &bind_body("bob", None)).await;
    let first = ok(&raw.recv(WAIT).await.expect("ok"));
    let second = ok(&raw.recv(WAIT).await.expect("ok"));
    assert_eq!((first.cmd, first.data.as_deref()), (Command::BIND, Some("unbind success")));
    assert_eq!((second.cmd, second.data.as_deref()), (Command::BIND, Some("bind success")));
    let (_, users) = common::api(gw.handle.api_addr(), "GET", "/users", None, None).await;
    assert_eq!(users["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(users["users"][0]["userId"], "bob");

    // Unbind takes the connection's user whatever the message names.
    raw.send_sealed(Command::UNBIND, 5, &bind_body("somebody-else", None)).await;
    let o = ok(&raw.recv(WAIT).await.expect("ok"));
    assert_eq!((o.cmd, o.data.as_deref()), (Command::UNBIND, Some("unbind success")));
    let (_, users) = common::api(gw.handle.api_addr(), "GET", "/users", None, None).await;
    assert_eq!(users["users"], json!([]));

    // With nothing bound, MPUSH's unbind throws: Error 100, then close.
    raw.send_sealed(Command::UNBIND, 6, &bind_body("bob", None)).await;
    let e = error(&raw.recv(WAIT).await.expect("error"));
    assert_eq!(
        (e.cmd, e.code, e.reason.as_deref()),
        (Command::UNBIND, ErrorCode::DISPATCH_ERROR, Some("handle message error"))
    );
    assert!(raw.recv(WAIT).await.is_none(), "closed");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn a_second_fast_connect_is_error_100_and_closes() {
    let gw = start(|_| {}).await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-fc").await;
    raw.send_sealed(Command::BIND, 2, &bind_body("carol", None)).await;
    ok(&raw.recv(WAIT).await.expect("ok"));

    // MPUSH would replace the session context; the gateway allows one handshake or fast
    // connect per connection and answers as to a body it cannot handle.
    let (sid, _, _) = raw.session.clone().expect("session");
    let fc = FastConnect { session_id: sid, device_id: "dev-fc".into(), min_heartbeat: 0, max_heartbeat: 0 };
    raw.send(Command::FAST_CONNECT, Flags::NONE, 3, fc.encode()).await;
    let e = error(&raw.recv(WAIT).await.expect("error"));
    assert_eq!(
        (e.cmd, e.code, e.reason.as_deref()),
        (Command::FAST_CONNECT, ErrorCode::DISPATCH_ERROR, Some("handle message error"))
    );
    assert!(raw.recv(WAIT).await.is_none(), "closed");
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn push_ids_are_one_sequence_for_every_connection() {
    let gw = start(|_| {}).await;
    let mut a = gw.connect("dev-id-a").await;
    let mut b = gw.connect("dev-id-b").await;
    bind(&mut a, "ida", None).await;
    bind(&mut b, "idb", None).await;
    let mut ids = Vec::new();
    for user in ["ida", "idb", "ida"] {
        gw.push(json!({"userId": user, "content": "x"})).await;
        let c = if user == "ida" { &mut a } else { &mut b };
        let ClientEvent::Push(m) = c.wait_for(|e| matches!(e, ClientEvent::Push(_))).await.expect("push") else {
            unreachable!()
        };
        ids.push(m.session_id);
    }
    assert_eq!(ids, [1, 2, 3]);
    gw.handle.shutdown().await;
}
