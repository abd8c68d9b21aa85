//! `ops_listen`: metrics and readiness on their own listener, gone from the public one, and
//! still reachable while the public listener is full.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;

use common::*;
use mpush_proxy::{Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Both {
    public: SocketAddr,
    ops: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start_with_ops(mut c: Config) -> Both {
    c.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    let proxy = Proxy::from_listener(c, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let (public, ops) = (proxy.local_addr(), proxy.ops_addr().expect("ops listener bound"));
    assert_ne!(public, ops);
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(proxy.run(async move {
        let _ = rx.await;
    }));
    Both { public, ops, _stop: stop }
}

#[tokio::test]
async fn metrics_and_readiness_move_to_the_ops_listener() {
    let up = FakeUpstream::start().await;
    let p = start_with_ops(config(&[&up.addr])).await;

    let (status, head, body) = http_get(p.ops, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(String::from_utf8(body).unwrap().contains("# TYPE mpush_proxy_connections gauge"));
    assert_eq!(http_get(p.ops, "/readyz").await.0, 200);
    assert_eq!(http_get(p.ops, "/healthz").await.0, 200);
    // Only those: no WebSocket, no files on the ops listener.
    assert_eq!(http_get(p.ops, "/mpush").await.0, 404);
    assert_eq!(http_get(p.ops, "/").await.0, 404);

    assert_eq!(http_get(p.public, "/metrics").await.0, 404);
    assert_eq!(http_get(p.public, "/readyz").await.0, 404);
    assert_eq!(http_get(p.public, "/healthz").await.0, 200, "load balancers probe the public port");
    assert_eq!(http_get(p.public, "/mpush").await.0, 426);
}

#[tokio::test]
async fn the_ops_listener_answers_while_the_public_one_is_full() {
    let up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.max_connections = 1;
    c.max_connections_per_ip = 1;
    c.max_open_connections = Some(2);
    c.max_open_connections_per_ip = Some(2);
    let p = start_with_ops(c).await;
    // Two idle connections fill the public listener's caps; the next one is closed at accept.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(p.public).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n").await.unwrap();
        let mut b = [0u8; 256];
        let n = tokio::time::timeout(T, s.read(&mut b)).await.unwrap().unwrap();
        assert!(b[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(p.public).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n").await;
    let mut b = [0u8; 256];
    let got = tokio::time::timeout(T, third.read(&mut b)).await.expect("the public listener kept it open");
    assert!(matches!(got, Ok(0) | Err(_)), "the public listener was not full");

    let (status, _, body) = http_get(p.ops, "/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("mpush_proxy_tcp_connections 2\n"), "{text}");
    assert!(text.contains("mpush_proxy_tcp_refused_total{reason=\"total_limit\"} 1\n"), "{text}");
}

#[tokio::test]
async fn the_ops_listener_has_its_own_connection_cap() {
    let up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.ops_max_connections = 1;
    let p = start_with_ops(c).await;
    let mut first = TcpStream::connect(p.ops).await.unwrap();
    first.write_all(b"GET /healthz HTTP/1.1\r\nHost: ops\r\n\r\n").await.unwrap();
    let mut b = [0u8; 256];
    let n = tokio::time::timeout(T, first.read(&mut b)).await.unwrap().unwrap();
    assert!(b[..n].starts_with(b"HTTP/1.1 200"));
    let mut second = TcpStream::connect(p.ops).await.unwrap();
    let _ = second.write_all(b"GET /healthz HTTP/1.1\r\nHost: ops\r\n\r\n").await;
    let got = tokio::time::timeout(T, second.read(&mut b)).await.expect("the second ops connection stayed open");
    assert!(matches!(got, Ok(0) | Err(_)), "over ops_max_connections but answered");
    drop(first);
    // The slot comes back once the first connection is gone.
    let mut ok = false;
    for _ in 0..50 {
        if http_get_opt(p.ops).await == Some(200) {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "the ops slot was not released");
}

/// `/healthz` status on `addr`, `None` if the connection was closed unanswered.
async fn http_get_opt(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut raw)).await.ok()?.ok()?;
    String::from_utf8_lossy(raw.get(9..12)?).parse().ok()
}
