//! `upstream_proxy_protocol`: each upstream connection opens with a PROXY v2 header naming the
//! browser, so a gateway that trusts the proxy counts its per-IP caps per browser, not per
//! proxy. Off by default (MPUSH itself does not speak it).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{IpAddr, SocketAddr};

use common::child::spawn_until_line;
use common::*;
use futures_util::StreamExt;
use mpush_gateway::config::GatewayConfig;
use mpush_gateway::Gateway;
use mpush_protocol::frame::{Command, HEARTBEAT_BYTE};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// A WebSocket to the proxy from the browser address `from` (any 127.0.0.0/8 address).
async fn ws_from(from: [u8; 4], proxy: SocketAddr) -> Ws {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    let stream = s.connect(proxy).await.unwrap();
    let mut req = format!("ws://{proxy}/mpush").into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mpush"));
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await.unwrap();
    ws
}

/// Whether a heartbeat sent through the proxy comes back from the gateway (the session is
/// served), as opposed to the session being closed.
async fn heartbeat_echoed(ws: &mut Ws) -> bool {
    send(ws, &[HEARTBEAT_BYTE]).await;
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("neither an answer nor a close") {
            Some(Ok(Message::Binary(b))) => return b[..] == [HEARTBEAT_BYTE],
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return false,
        }
    }
}

#[tokio::test]
async fn the_header_precedes_the_first_packet_and_names_the_browser() {
    let mut up = FakeUpstream::start().await;
    let mut c = config(&[&up.addr]);
    c.upstream_proxy_protocol = true;
    let proxy = start(c).await;
    let mut ws = ws_from([127, 0, 0, 9], proxy.addr).await;
    let mut conn = up.accept().await;
    let p = frame(Command::HANDSHAKE, 1, &[1, 2, 3]);
    send(&mut ws, &p).await;
    let upstream_port = conn.local_addr().unwrap().port();
    let header = read_n(&mut conn, 28).await;
    assert_eq!(&header[..16], b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c");
    assert_eq!(&header[16..24], &[127, 0, 0, 9, 127, 0, 0, 1]);
    assert_eq!(&header[26..28], &upstream_port.to_be_bytes());
    // The browser's first packet follows the header intact.
    assert_eq!(read_n(&mut conn, p.len()).await, p);
}

#[tokio::test]
async fn off_by_default_the_first_bytes_are_the_browsers() {
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;
    let mut ws = ws_from([127, 0, 0, 9], proxy.addr).await;
    let mut conn = up.accept().await;
    let p = frame(Command::HANDSHAKE, 1, &[1, 2, 3]);
    send(&mut ws, &p).await;
    assert_eq!(read_n(&mut conn, p.len()).await, p);
}

#[tokio::test]
async fn a_gateway_trusting_the_proxy_counts_each_browser() {
    // One connection per client IP at the gateway: were the proxy's own address counted,
    // only one browser could be served in total.
    let mut g = GatewayConfig::default();
    g.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    g.limits.max_connections_per_ip = 1;
    let gateway = Gateway::bind(g).await.unwrap().spawn();
    let mut c = config(&[&gateway.mpush_addr().to_string()]);
    c.upstream_proxy_protocol = true;
    let proxy = start(c).await;

    let mut first = ws_from([127, 0, 0, 2], proxy.addr).await;
    assert!(heartbeat_echoed(&mut first).await, "first browser served");
    let mut other = ws_from([127, 0, 0, 3], proxy.addr).await;
    assert!(heartbeat_echoed(&mut other).await, "a browser at another address served too");
    // A second session of the browser at 127.0.0.2 is over the gateway's per-IP cap.
    let mut again = ws_from([127, 0, 0, 2], proxy.addr).await;
    assert!(!heartbeat_echoed(&mut again).await, "second session from 127.0.0.2 refused by the gateway");
    // The first sessions are unaffected.
    assert!(heartbeat_echoed(&mut first).await && heartbeat_echoed(&mut other).await);
}

#[tokio::test]
async fn demo_mode_with_the_flag_has_its_gateway_trust_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.toml");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mpush-proxy"));
    cmd.args(["--demo", "--upstream-proxy-protocol", "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(["--gateway-key-file", key.to_str().unwrap()]);
    // The banner's "websocket   ws://127.0.0.1:PORT/mpush" line.
    let websocket = |line: &str| {
        let url = line.trim().strip_prefix("websocket")?.trim();
        url.strip_prefix("ws://")?.split('/').next()?.parse::<SocketAddr>().ok()
    };
    let (_child, addr) = spawn_until_line(&mut cmd, websocket, std::time::Duration::from_secs(60)).await;
    // A header the embedded gateway did not read would swallow the heartbeat as the start of
    // an oversized packet.
    let mut ws = ws_from([127, 0, 0, 2], addr).await;
    assert!(heartbeat_echoed(&mut ws).await, "a session through the demo proxy with upstream_proxy_protocol is served");
}
