//! Hostile clients before the upgrade, over real sockets on 127.0.0.x: idle keep-alive floods
//! from one address, half-sent and oversized headers, and the total cap. Every resource a
//! connection can hold before it becomes a session is bounded per peer, and refusals happen at
//! accept. Time limits here only guard against hangs; the assertions are about behaviour.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2 is a second client).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    tokio::time::timeout(T, s.connect(addr)).await.expect("connect timeout").unwrap()
}

/// Sends one keep-alive GET and reads exactly its response; returns status and lower-cased head.
async fn keepalive_get(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut b = [0u8; 4096];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(T, s.read(&mut b)).await.expect("response timeout").unwrap();
        assert!(n > 0, "closed before a response");
        raw.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
    while raw.len() < split + 4 + len {
        let n = tokio::time::timeout(T, s.read(&mut b)).await.expect("body timeout").unwrap();
        assert!(n > 0, "closed inside the body");
        raw.extend_from_slice(&b[..n]);
    }
    (head[9..12].parse().unwrap(), head)
}

/// Reads until the proxy closes the connection; returns what it sent. Panics if it stays open.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match tokio::time::timeout(T, s.read(&mut b)).await.expect("the proxy kept the connection open") {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
}

/// A connection the proxy closed at accept: a request on it gets no answer, only EOF/reset.
async fn assert_refused_at_accept(s: &mut TcpStream) {
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n").await;
    let got = read_until_closed(s).await;
    assert!(got.is_empty(), "expected a close at accept, got {:?}", String::from_utf8_lossy(&got));
}

async fn metrics_from(from: &str, addr: SocketAddr) -> String {
    let mut s = connect_from(from, addr).await;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n").await.unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned()
}

#[tokio::test]
async fn idle_keepalive_connections_from_one_ip_are_capped_while_another_ip_still_relays() {
    let mut up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.max_connections_per_ip = 2;
    c.max_open_connections_per_ip = Some(4);
    let p = start(c).await;

    // Four idle keep-alive connections from 127.0.0.1, each proven served.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from("127.0.0.1", p.addr).await;
        assert_eq!(keepalive_get(&mut s, "/healthz").await.0, 200);
        idle.push(s);
    }
    // The fifth from the same address is closed at accept, unanswered.
    let mut fifth = connect_from("127.0.0.1", p.addr).await;
    assert_refused_at_accept(&mut fifth).await;

    // Another address still upgrades and relays.
    let stream = connect_from("127.0.0.2", p.addr).await;
    let mut req = format!("ws://{}/mpush", p.addr).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mpush"));
    let (mut ws, _) =
        tokio::time::timeout(T, tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream)))
            .await
            .expect("upgrade timeout")
            .unwrap();
    let mut upstream = up.accept().await;
    roundtrip(&mut ws, &mut upstream, 7).await;

    // Closing one idle connection frees its slot for the flooding address.
    drop(idle.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = connect_from("127.0.0.1", p.addr).await;
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n").await;
        let got = read_until_closed(&mut s).await;
        if got.starts_with(b"HTTP/1.1 200") {
            again = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // the proxy notices the close
    }
    assert!(again.is_some(), "a freed slot was not reusable");

    let m = metrics_from("127.0.0.3", p.addr).await;
    assert!(m.contains("mpush_proxy_tcp_refused_total{reason=\"per_ip_limit\"} 1\n"), "{m}");
    assert!(m.contains("mpush_proxy_tcp_refused_total{reason=\"total_limit\"} 0\n"), "{m}");
}

#[tokio::test]
async fn a_session_counts_once_against_each_cap() {
    // Session and connection caps equal: every session also holds its connection, and two
    // sessions from one address still fit (counting does not halve capacity).
    let mut up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.max_connections_per_ip = 2;
    c.max_open_connections_per_ip = Some(2);
    let p = start(c).await;
    let mut a = connect(p.addr).await;
    let mut ua = up.accept().await;
    let mut b = connect(p.addr).await;
    let mut ub = up.accept().await;
    roundtrip(&mut a, &mut ua, 1).await;
    roundtrip(&mut b, &mut ub, 2).await;
    let mut third = connect_from("127.0.0.1", p.addr).await;
    assert_refused_at_accept(&mut third).await;
}

#[tokio::test]
async fn half_a_header_is_closed_after_the_header_timeout() {
    let mut c = config(&[]);
    c.handshake_timeout = Duration::from_millis(300);
    c.http_idle_timeout = Duration::from_secs(30);
    let p = start(c).await;
    let mut s = connect_from("127.0.0.1", p.addr).await;
    let t0 = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nX-Slow: ").await.unwrap();
    let got = read_until_closed(&mut s).await;
    let waited = t0.elapsed();
    assert!(!got.starts_with(b"HTTP/1.1 200"), "a half header was answered: {:?}", String::from_utf8_lossy(&got));
    assert!(waited >= Duration::from_millis(250), "closed before the timeout: {waited:?}");
    // A well-behaved client is unaffected.
    let mut ok = connect_from("127.0.0.1", p.addr).await;
    assert_eq!(keepalive_get(&mut ok, "/healthz").await.0, 200);
}

#[tokio::test]
async fn an_oversized_header_is_refused() {
    let mut c = config(&[]);
    c.max_header_bytes = 8192;
    let p = start(c).await;
    let mut s = connect_from("127.0.0.1", p.addr).await;
    let big = "a".repeat(32 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: proxy\r\nX-Big: {big}\r\n\r\n");
    // The proxy may close while we still write: a write error is part of the refusal.
    let _ = s.write_all(req.as_bytes()).await;
    let got = read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "oversized head not refused: {text:?}");
    // Just under the cap is fine.
    let mut ok = connect_from("127.0.0.1", p.addr).await;
    let small = "b".repeat(6 * 1024);
    ok.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: proxy\r\nX-Ok: {small}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert!(read_until_closed(&mut ok).await.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn the_total_cap_refuses_at_accept() {
    let mut c = config(&[]);
    c.max_connections = 1;
    c.max_connections_per_ip = 1;
    c.max_open_connections = Some(2);
    let p = start(c).await;
    let mut a = connect_from("127.0.0.1", p.addr).await;
    assert_eq!(keepalive_get(&mut a, "/healthz").await.0, 200);
    let mut b = connect_from("127.0.0.2", p.addr).await;
    assert_eq!(keepalive_get(&mut b, "/healthz").await.0, 200);
    // A third address, under its own per-IP cap, meets the total cap.
    let mut c3 = connect_from("127.0.0.3", p.addr).await;
    assert_refused_at_accept(&mut c3).await;
    drop(b);
    let mut m = String::new();
    for _ in 0..50 {
        m = metrics_from("127.0.0.4", p.addr).await;
        if !m.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(m.contains("mpush_proxy_tcp_refused_total{reason=\"total_limit\"} 1\n"), "{m}");
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed_and_requests_are_capped() {
    let mut c = config(&[]);
    c.http_idle_timeout = Duration::from_millis(300);
    c.http_max_requests = 2;
    let p = start(c).await;

    let mut s = connect_from("127.0.0.1", p.addr).await;
    assert_eq!(keepalive_get(&mut s, "/healthz").await.0, 200);
    let t0 = Instant::now();
    assert!(read_until_closed(&mut s).await.is_empty());
    assert!(t0.elapsed() >= Duration::from_millis(250), "closed before the idle timeout");

    let mut s = connect_from("127.0.0.1", p.addr).await;
    let (_, first) = keepalive_get(&mut s, "/healthz").await;
    assert!(!first.contains("connection: close"), "{first}");
    let (status, second) = keepalive_get(&mut s, "/healthz").await;
    assert_eq!(status, 200);
    assert!(second.contains("connection: close"), "{second}");
    assert!(read_until_closed(&mut s).await.is_empty());
}
