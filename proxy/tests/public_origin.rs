//! The WebSocket origin rule against forged Host headers: the proxy compares `Origin` with its
//! configured `public_origin` (or, unset, allows loopback pages only), never with the request's
//! own `Host`, which a script sets freely and a DNS-rebinding page fills with its own name.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket upgrade with exactly these Host and Origin headers; returns the status code.
async fn upgrade_status(addr: SocketAddr, host: &str, origin: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /mpush HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: mpush\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(T, s.read(&mut b)).await.expect("no answer").unwrap();
        assert!(n > 0, "closed without an answer");
        head.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[tokio::test]
async fn a_forged_host_does_not_make_a_foreign_origin_same_origin() {
    let mut up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.public_origin = Some("https://push.example.com".into());
    let p = start(c).await;
    // Origin equal to the Host the attacker sent: the old "same origin" rule let this through.
    assert_eq!(upgrade_status(p.addr, "evil.example", "https://evil.example").await, 403);
    assert_eq!(upgrade_status(p.addr, "evil.example:8080", "http://evil.example:8080").await, 403);
    // With a public origin set, loopback pages are not special either.
    let local = format!("http://{}", p.addr);
    assert_eq!(upgrade_status(p.addr, &p.addr.to_string(), &local).await, 403);
    // The public origin opens a session whatever Host arrives (TLS may end in front).
    assert_eq!(upgrade_status(p.addr, "10.1.2.3:8080", "https://push.example.com").await, 101);
    let _conn = up.accept().await;
    let (_, _, m) = http_get(p.addr, "/metrics").await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("mpush_proxy_handshake_rejections_total{reason=\"origin\"} 3\n"), "{m}");
}

#[tokio::test]
async fn unset_public_origin_allows_loopback_pages_only() {
    let mut up = FakeUpstream::start().await;
    let p = start(config(&[&up.addr])).await;
    // DNS rebinding: the attacker's name resolves to this proxy, so Host and Origin agree.
    assert_eq!(upgrade_status(p.addr, "rebind.evil.example:8080", "http://rebind.evil.example:8080").await, 403);
    assert_eq!(upgrade_status(p.addr, "push.example.com", "https://push.example.com").await, 403);
    assert_eq!(upgrade_status(p.addr, &p.addr.to_string(), "null").await, 403);
    // A page on this machine (the demo console, a dev server on another port).
    assert_eq!(upgrade_status(p.addr, &p.addr.to_string(), &format!("http://{}", p.addr)).await, 101);
    let _a = up.accept().await;
    assert_eq!(upgrade_status(p.addr, "whatever", "http://localhost:5173").await, 101);
    let _b = up.accept().await;
}

#[tokio::test]
async fn an_allowlist_adds_to_the_public_origin() {
    let mut up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.public_origin = Some("https://push.example.com".into());
    c.allowed_origins = vec!["https://app.example.com".into()];
    let p = start(c).await;
    assert_eq!(upgrade_status(p.addr, "app.example.com", "https://app.example.com").await, 101);
    let _a = up.accept().await;
    assert_eq!(upgrade_status(p.addr, "push.example.com", "https://push.example.com").await, 101);
    let _b = up.accept().await;
    assert_eq!(upgrade_status(p.addr, "app.example.com.evil", "https://app.example.com.evil").await, 403);
}
