//! A hostile client against the gateway's limits, over real sockets on 127.0.0.x: one
//! handshake per connection, an oversized RSA handshake refused before decrypting, long
//! fields, and the connection caps (total, per IP, unauthenticated per IP) closing
//! connections at accept. Time bounds are generous (`WAIT`); none is a pass criterion beyond
//! "the answer came".

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{api, closed_without_a_byte, connect_from, echoes_heartbeat, start, RawClient, WAIT};
use mpush_protocol::message::{ErrorMessage, Handshake, Message};
use mpush_protocol::{Command, ErrorCode, Flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keeps connecting from `from` until the gateway serves the connection (slots are given
/// back when a closed connection's task ends, a moment after the client sees the close).
async fn eventually_served(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        let mut s = connect_from(from, addr).await;
        if echoes_heartbeat(&mut s).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never served again");
}

fn handshake_body(device_id: &str) -> Vec<u8> {
    Handshake {
        device_id: device_id.into(),
        os_name: "web".into(),
        os_version: "1".into(),
        client_version: "1".into(),
        iv: vec![9; 16],
        client_key: vec![7; 16],
        min_heartbeat: 0,
        max_heartbeat: 0,
        timestamp: 0,
    }
    .encode()
}

fn dispatch_error(p: &mpush_protocol::Packet, cmd: Command) {
    assert_eq!(p.cmd, Command::ERROR, "{p:?}");
    let e = ErrorMessage::decode(&p.body).expect("error message");
    assert_eq!((e.cmd, e.code, e.reason.as_deref()), (cmd, ErrorCode::DISPATCH_ERROR, Some("handle message error")));
}

#[tokio::test]
async fn a_second_handshake_with_another_device_id_is_refused_and_closed() {
    let gw = start(|_| {}).await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-1").await;
    // Encrypted with the session key, so it opens: MPUSH would start a second session.
    raw.send_sealed(Command::HANDSHAKE, 2, &handshake_body("dev-2")).await;
    dispatch_error(&raw.recv(WAIT).await.expect("error"), Command::HANDSHAKE);
    assert!(raw.recv(WAIT).await.is_none(), "closed");
}

#[tokio::test]
async fn an_oversized_rsa_handshake_is_refused_without_decrypting() {
    // A genuine handshake padded to five RSA blocks (640 bytes) decrypts fine...
    let mut plain = handshake_body("dev-big");
    plain.resize(500, 0);
    let gw = start(|c| c.limits.max_handshake_body = 1024).await;
    let body = gw.public_key().encrypt(&mut rand::rngs::OsRng, &plain).expect("rsa");
    assert_eq!(body.len(), 640);
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.send(Command::HANDSHAKE, Flags::CRYPTO, 1, body.clone()).await;
    assert_eq!(raw.recv(WAIT).await.expect("handshake ok").cmd, Command::HANDSHAKE);
    gw.handle.shutdown().await;

    // ...and is refused under the default cap of 512 bytes: Error 100, then close.
    let gw = start(|_| {}).await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.send(Command::HANDSHAKE, Flags::CRYPTO, 1, body).await;
    dispatch_error(&raw.recv(WAIT).await.expect("error"), Command::HANDSHAKE);
    assert!(raw.recv(WAIT).await.is_none(), "closed");
}

#[tokio::test]
async fn a_long_device_id_is_refused() {
    let gw = start(|c| c.limits.max_field_length = 16).await;
    let body = gw.public_key().encrypt(&mut rand::rngs::OsRng, &handshake_body(&"d".repeat(17))).expect("rsa");
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.send(Command::HANDSHAKE, Flags::CRYPTO, 1, body).await;
    dispatch_error(&raw.recv(WAIT).await.expect("error"), Command::HANDSHAKE);
    assert!(raw.recv(WAIT).await.is_none(), "closed");
}

#[tokio::test]
async fn the_per_ip_cap_closes_connections_at_accept() {
    let gw = start(|c| c.limits.max_connections_per_ip = 2).await;
    let addr = gw.handle.mpush_addr();
    let mut a = connect_from([127, 0, 0, 1], addr).await;
    let mut b = connect_from([127, 0, 0, 1], addr).await;
    assert!(echoes_heartbeat(&mut a).await && echoes_heartbeat(&mut b).await);
    let mut c = connect_from([127, 0, 0, 1], addr).await;
    assert!(closed_without_a_byte(&mut c).await, "third from one address refused");
    // Another address is not affected.
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert!(echoes_heartbeat(&mut other).await);
    // A closed connection gives its slot back.
    drop(a);
    let _again = eventually_served([127, 0, 0, 1], addr).await;
    let (_, health) = api(gw.handle.api_addr(), "GET", "/health", None, None).await;
    assert!(health["refusedConnections"].as_u64() >= Some(1), "{health}");
}

#[tokio::test]
async fn the_total_cap_closes_connections_at_accept() {
    let gw = start(|c| c.limits.max_connections = 2).await;
    let addr = gw.handle.mpush_addr();
    let mut a = connect_from([127, 0, 0, 1], addr).await;
    let mut b = connect_from([127, 0, 0, 2], addr).await;
    assert!(echoes_heartbeat(&mut a).await && echoes_heartbeat(&mut b).await);
    let mut c = connect_from([127, 0, 0, 3], addr).await;
    assert!(closed_without_a_byte(&mut c).await, "third connection refused");
    drop(b);
    let _again = eventually_served([127, 0, 0, 3], addr).await;
}

#[tokio::test]
async fn the_unauthenticated_cap_counts_only_connections_not_yet_handshaked() {
    let gw = start(|c| c.limits.max_unauthenticated_per_ip = 2).await;
    let addr = gw.handle.mpush_addr();
    let mut first = RawClient::connect(addr).await;
    let mut second = connect_from([127, 0, 0, 1], addr).await;
    assert!(echoes_heartbeat(&mut second).await);
    let mut third = connect_from([127, 0, 0, 1], addr).await;
    assert!(closed_without_a_byte(&mut third).await, "third silent connection refused");
    // Another address has its own count.
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert!(echoes_heartbeat(&mut other).await);
    // Once the first handshakes it no longer counts: a new connection is served, and
    // heartbeats alone do not authenticate (the one after that is refused again).
    first.handshake(&gw.public_key(), "dev-auth").await;
    let mut fourth = connect_from([127, 0, 0, 1], addr).await;
    assert!(echoes_heartbeat(&mut fourth).await, "served after the first handshook");
    let mut fifth = connect_from([127, 0, 0, 1], addr).await;
    assert!(closed_without_a_byte(&mut fifth).await, "cap reached again");
}

#[tokio::test]
async fn a_handshake_flood_does_not_stall_an_established_connection() {
    // One RSA worker and a single-threaded runtime (the test's): private-key work done inline
    // would hold the only async thread for the whole flood.
    const FLOOD: usize = 40;
    let gw = start(|c| c.limits.rsa_workers = 1).await;
    let addr = gw.handle.mpush_addr();
    let mut live = RawClient::connect(addr).await;
    live.handshake(&gw.public_key(), "dev-live").await;

    // Handshakes padded to four RSA blocks (the most the default cap lets through).
    let mut plain = handshake_body("dev-flood");
    plain.resize(400, 0);
    let body = gw.public_key().encrypt(&mut rand::rngs::OsRng, &plain).expect("rsa");
    assert_eq!(body.len(), 512);
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel(FLOOD);
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let (body, answered, sent) = (body.clone(), answered.clone(), sent_tx.clone());
        flood.push(tokio::spawn(async move {
            let mut raw = RawClient::connect(addr).await;
            raw.send(Command::HANDSHAKE, Flags::CRYPTO, 1, body).await;
            let _ = sent.send(()).await;
            let p = raw.recv(WAIT).await.expect("flood handshake answered");
            assert_eq!(p.cmd, Command::HANDSHAKE);
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    for _ in 0..FLOOD {
        sent_rx.recv().await.expect("flood sent");
    }
    // The live connection's heartbeat is echoed while the flood is still being worked off.
    live.stream.write_all(&[0xDF]).await.expect("heartbeat");
    let mut b = [0u8; 1];
    let echo = tokio::time::timeout(Duration::from_secs(10), live.stream.read_exact(&mut b)).await;
    let done = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(echo, Ok(Ok(_))) && b[0] == 0xDF, "no heartbeat echo during the flood");
    assert!(done < FLOOD, "the echo waited for the whole flood ({done} of {FLOOD} answered first)");
    for t in flood {
        t.await.expect("flood task");
    }
}
