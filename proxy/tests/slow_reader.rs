//! A slow reader: a browser that completes the upgrade and then never reads, while its MPUSH
//! server pushes packets as fast as it can. The proxy must stop reading the upstream once the
//! browser's socket is full (backpressure: what it took from the upstream is bounded by the
//! socket buffers toward the browser plus one packet), close the session with 1008 "send
//! timeout" once a write has waited `send_timeout`, and keep relaying other sessions meanwhile.
//! Time bounds are generous; none is a pass criterion beyond "it happened".
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mpush_protocol::frame::{Command, Flags, Packet};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

/// Body of one packet from the fake MPUSH server.
const BODY: usize = 32 * 1024;
/// `downstream_max_body` for the test: two packets' worth.
const MAX_BODY: usize = 2 * BODY;
/// What the fake server tries to push: far more than any socket buffers hold.
const OFFER: usize = 256 * 1024 * 1024;
/// The browser's receive buffer, asked of its socket.
const BROWSER_RCVBUF: u32 = 64 * 1024;
/// Longest wait for anything in this test (2-core CI, debug build).
const WAIT: Duration = Duration::from_secs(60);

/// A raw WebSocket upgrade (subprotocol mpush) on a socket with a small receive buffer.
async fn raw_ws(addr: std::net::SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(BROWSER_RCVBUF).unwrap();
    raw_upgrade(sock.connect(addr).await.unwrap(), addr).await
}

/// What the fake MPUSH server saw of its pushing.
#[derive(Default)]
struct Pushing {
    /// Bytes its socket accepted.
    accepted: AtomicUsize,
    /// A write would have blocked: the proxy is not taking more.
    blocked: AtomicBool,
    blocked_now: Notify,
}

/// Writes valid packets (13-byte header + body) to `conn` as fast as it takes them, until
/// `OFFER` bytes or an error; returns how it ended.
async fn push_flood(conn: TcpStream, stats: Arc<Pushing>) -> io::Result<()> {
    let packet = Packet { cmd: Command::PUSH, flags: Flags::CRYPTO, session_id: 1, body: vec![0x5A; BODY] }.to_bytes();
    let chunk = packet.repeat(16); // whole packets, so repeating it keeps the framing
    let mut pos = 0;
    while stats.accepted.load(Ordering::Relaxed) < OFFER {
        match conn.try_write(&chunk[pos..]) {
            Ok(n) => {
                stats.accepted.fetch_add(n, Ordering::Relaxed);
                pos = (pos + n) % chunk.len();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !stats.blocked.swap(true, Ordering::Relaxed) {
                    stats.blocked_now.notify_one();
                }
                conn.writable().await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One Prometheus sample from `/metrics`.
async fn metric(addr: std::net::SocketAddr, sample: &str) -> u64 {
    let (_, _, body) = http_get(addr, "/metrics").await;
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {sample} in {text}"))
        .parse()
        .unwrap()
}

/// The most the kernel may hold in one TCP send buffer (Linux: `tcp_wmem`'s maximum).
fn max_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 * 1024 * 1024)
}

#[tokio::test]
async fn a_browser_that_never_reads_stops_the_upstream_and_is_closed_while_others_relay() {
    let mut up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.send_timeout = Duration::from_secs(3);
    c.downstream_max_body = MAX_BODY;
    // Only the send deadline may end the stalled session.
    c.idle_timeout = Duration::from_secs(3600);
    c.ping_interval = Duration::from_secs(3600);
    let proxy = start(c).await;

    let mut slow = raw_ws(proxy.addr).await;
    let conn = up.accept().await;
    let stats = Arc::new(Pushing::default());
    let flood = tokio::spawn(push_flood(conn, stats.clone()));

    // The proxy stops taking packets: the server's writes block.
    tokio::time::timeout(WAIT, stats.blocked_now.notified()).await.expect("the upstream's writes never blocked");

    // Another browser's session relays both ways meanwhile.
    let mut ws = connect(proxy.addr).await;
    let mut other = up.accept().await;
    roundtrip(&mut ws, &mut other, 1).await;

    // The stalled session is closed: the proxy drops its upstream connection, so the flood
    // ends in an error long before the server offered all it had.
    let ended = tokio::time::timeout(WAIT, flood).await.expect("the stalled session was never closed").unwrap();
    let accepted = stats.accepted.load(Ordering::Relaxed);
    assert!(ended.is_err(), "the proxy took all {accepted} bytes the server offered");
    assert_eq!(metric(proxy.addr, "mpush_proxy_closes_total{reason=\"send_timeout\",code=\"1008\"}").await, 1);

    // What the proxy read from the server went toward the browser: at most its socket send
    // buffer, the browser's receive buffer and one read or packet held in the session (the
    // rest waited in the server's socket). Without backpressure it would be all of `accepted`.
    let relayed = metric(proxy.addr, "mpush_proxy_bytes_total{direction=\"downstream\"}").await as usize;
    let bound = max_send_buffer() + 2 * BROWSER_RCVBUF as usize + 2 * MAX_BODY + 64 * 1024;
    assert!(relayed <= bound, "the proxy read {relayed} bytes for a browser that reads nothing (bound {bound})");

    // The browser finds what the kernel held, then the end of the connection.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, slow.read(&mut buf)).await.expect("connection still open") {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }

    // The other session is unaffected.
    roundtrip(&mut ws, &mut other, 2).await;
}
