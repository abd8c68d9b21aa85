//! The PROXY protocol on the MPUSH listener: from `[limits] trusted-proxies` a header is
//! required and the client it names is what the per-IP caps count; from anyone else (and with
//! the default empty list) a header is never read and is just garbage to MPUSH.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{closed_without_a_byte, connect_from, served_after, start, RawClient, WAIT};
use mpush_protocol::message::{Handshake, Message};
use mpush_protocol::{Command, Flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A PROXY v2 header (PROXY command, TCP over IPv4) naming `client` as the source.
fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&3000u16.to_be_bytes());
    h
}

#[tokio::test]
async fn a_trusted_proxys_header_names_the_client_the_per_ip_cap_counts() {
    let gw = start(|c| {
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.limits.max_connections_per_ip = 1;
    })
    .await;
    let addr = gw.handle.mpush_addr();
    // The header and the first MPUSH byte in one segment: the byte after it is not lost.
    let mut first = connect_from([127, 0, 0, 1], addr).await;
    assert!(served_after(&mut first, &v2_header([192, 0, 2, 7], 40000)).await);
    // A full handshake behind a header works.
    let mut hs = RawClient::connect(addr).await;
    hs.stream.write_all(&v2_header([192, 0, 2, 9], 40001)).await.unwrap();
    hs.handshake(&gw.public_key(), "dev-proxied").await;
    // The cap counts 192.0.2.7, not the proxy's 127.0.0.1: a second 192.0.2.7 is refused,
    // while 192.0.2.8 (and a v1 header for 192.0.2.10) from the same proxy address are served.
    let mut again = connect_from([127, 0, 0, 1], addr).await;
    again.write_all(&v2_header([192, 0, 2, 7], 40002)).await.unwrap();
    assert!(closed_without_a_byte(&mut again).await, "second connection for 192.0.2.7 refused");
    let mut other = connect_from([127, 0, 0, 1], addr).await;
    assert!(served_after(&mut other, &v2_header([192, 0, 2, 8], 40003)).await, "192.0.2.8 served");
    let mut v1 = connect_from([127, 0, 0, 1], addr).await;
    assert!(served_after(&mut v1, b"PROXY TCP4 192.0.2.10 127.0.0.1 40004 3000\r\n").await, "v1 served");
    assert!(first.write_all(&[0xDF]).await.is_ok());
}

#[tokio::test]
async fn a_trusted_proxy_without_a_header_is_refused() {
    let gw = start(|c| {
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        // The header timeout: at least a second.
        c.core.pre_handshake_heartbeat = 1000;
    })
    .await;
    let addr = gw.handle.mpush_addr();
    // MPUSH straight away (a heartbeat): no signature, closed.
    let mut s = connect_from([127, 0, 0, 1], addr).await;
    assert!(!served_after(&mut s, &[]).await, "a heartbeat without a header is not served");
    // A malformed header (a v2 header claiming UDP) is refused too.
    let mut bad = v2_header([192, 0, 2, 7], 1);
    bad[13] = 0x12;
    let mut s = connect_from([127, 0, 0, 1], addr).await;
    assert!(!served_after(&mut s, &bad).await, "a malformed header is refused");
    // Silence: closed once the header timeout passes, without a byte.
    let mut s = connect_from([127, 0, 0, 1], addr).await;
    let started = tokio::time::Instant::now();
    assert!(closed_without_a_byte(&mut s).await);
    assert!(started.elapsed() < Duration::from_secs(10), "closed after {:?}", started.elapsed());
    // An address outside the list connects directly, as an MPUSH client does.
    let mut direct = connect_from([127, 0, 0, 2], addr).await;
    assert!(served_after(&mut direct, &[]).await, "untrusted peers speak MPUSH directly");
}

/// A raw client whose connection comes from `from`.
async fn raw_from(from: [u8; 4], addr: SocketAddr) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.stream = connect_from(from, addr).await;
    c
}

/// A header sent where none is read is garbage to MPUSH: the handshake after it never
/// succeeds, while the same handshake without the header does.
async fn header_is_not_parsed(addr: SocketAddr, from: [u8; 4], public_key: &mpush_protocol::RsaPublicKey) {
    let mut control = raw_from(from, addr).await;
    control.handshake(public_key, "dev-control").await;
    let mut c = raw_from(from, addr).await;
    c.stream.write_all(&v2_header([192, 0, 2, 7], 40000)).await.unwrap();
    let hs = Handshake {
        device_id: "dev-behind-header".into(),
        os_name: "web".into(),
        os_version: "1".into(),
        client_version: "1".into(),
        iv: vec![9; 16],
        client_key: vec![7; 16],
        min_heartbeat: 0,
        max_heartbeat: 0,
        timestamp: 0,
    };
    let body = public_key.encrypt(&mut rand::rngs::OsRng, &hs.encode()).expect("rsa");
    c.send(Command::HANDSHAKE, Flags::CRYPTO, 1, body).await;
    let answer = c.recv(Duration::from_secs(3)).await;
    assert!(answer.as_ref().map(|p| p.cmd) != Some(Command::HANDSHAKE), "{answer:?}");
    // The header reads as the length of an oversized packet; the idle checks close it.
    let mut b = [0u8; 1];
    let read = tokio::time::timeout(WAIT, c.stream.read(&mut b)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "connection closed: {read:?}");
}

#[tokio::test]
async fn with_no_trusted_proxies_a_header_is_garbage() {
    let gw = start(|c| c.core.pre_handshake_heartbeat = 1000).await;
    header_is_not_parsed(gw.handle.mpush_addr(), [127, 0, 0, 1], &gw.public_key()).await;
}

#[tokio::test]
async fn from_an_untrusted_address_a_header_is_garbage() {
    let gw = start(|c| {
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.core.pre_handshake_heartbeat = 1000;
    })
    .await;
    header_is_not_parsed(gw.handle.mpush_addr(), [127, 0, 0, 2], &gw.public_key()).await;
}

#[tokio::test]
async fn a_drain_does_not_wait_for_a_header_still_to_come() {
    // A 30 s header timeout, a 20 s drain: a connection from the proxy that has not sent its
    // header yet holds nothing, and must not hold the shutdown up.
    let gw = start(|c| {
        c.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.core.pre_handshake_heartbeat = 30_000;
        c.drain_timeout = 20_000;
    })
    .await;
    let mut pending = connect_from([127, 0, 0, 1], gw.handle.mpush_addr()).await;
    // Accepted and waiting for its header.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(WAIT, gw.handle.shutdown()).await.expect("gateway stopped");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert!(closed_without_a_byte(&mut pending).await);
}
