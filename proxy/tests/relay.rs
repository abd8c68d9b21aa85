//! Packets relayed both ways over real sockets, and every way a session can end.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use mpush_protocol::frame::{parse_frame, Command, Flags, Frame, HEARTBEAT_BYTE};
use mpush_protocol::message::{HttpResponse, Message as _};
use mpush_proxy::HttpProxyMode;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn packets_arrive_as_exact_messages_both_ways() {
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;
    let (mut ws, proto) = try_connect(proxy.addr, None).await.unwrap();
    assert_eq!(proto.as_deref(), Some("mpush"), "subprotocol echoed");
    let mut conn = up.accept().await;

    // Browser -> server: each message lands on the TCP stream unchanged, in order.
    let handshake = frame(Command::HANDSHAKE, 1, &[0xAB; 200]);
    send(&mut ws, &[HEARTBEAT_BYTE]).await;
    send(&mut ws, &handshake).await;
    let mut expected = vec![HEARTBEAT_BYTE];
    expected.extend_from_slice(&handshake);
    assert_eq!(read_n(&mut conn, expected.len()).await, expected);

    // Server -> browser: two packets merged in one write...
    let a = frame(Command::HANDSHAKE, 1, b"handshake ok");
    let b = frame(Command::PUSH, 9, &[1, 2, 3]);
    conn.write_all(&[a.clone(), b.clone()].concat()).await.unwrap();
    // ...then one packet split across three writes, then a heartbeat merged with a frame
    // whose header is split.
    let c = frame(Command::PUSH, 10, &[7; 3000]);
    for part in [&c[..2], &c[2..20], &c[20..]] {
        conn.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let d = frame(Command::OK, 11, b"");
    conn.write_all(&[&[HEARTBEAT_BYTE][..], &d[..5]].concat()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    conn.write_all(&d[5..]).await.unwrap();
    for want in [a, b, c, vec![HEARTBEAT_BYTE], d] {
        assert_eq!(recv(&mut ws).await, want);
    }

    // A large downstream packet (an HTTP-proxy response of ~1 MB) arrives as one message.
    let big = frame(Command::HTTP_PROXY, 12, &vec![5; 1 << 20]);
    conn.write_all(&big).await.unwrap();
    assert_eq!(recv(&mut ws).await, big);

    let (_, _, metrics) = http_get(proxy.addr, "/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("mpush_proxy_packets_total{direction=\"upstream\"} 2\n"), "{metrics}");
    assert!(metrics.contains("mpush_proxy_packets_total{direction=\"downstream\"} 6\n"), "{metrics}");
    assert!(metrics.contains(&format!("mpush_proxy_bytes_total{{direction=\"upstream\"}} {}\n", expected.len())));
    assert!(metrics.contains("mpush_proxy_connections 1\n"), "{metrics}");
}

/// Each bad message gets its close code while a bystander session keeps working, and the
/// offender's upstream connection is closed with it.
#[tokio::test]
async fn rejections_close_only_the_offending_session() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.upstream_max_body = 100;
    let proxy = start(cfg).await;
    let mut bystander = connect(proxy.addr).await;
    let mut bystander_up = up.accept().await;

    let too_long = frame(Command::PUSH, 1, &[0; 101]);
    let mut two_packets = frame(Command::PUSH, 1, b"x");
    two_packets.push(HEARTBEAT_BYTE);
    let mut truncated = frame(Command::PUSH, 1, b"abc");
    truncated.pop();
    let cases: Vec<(Message, u16, &str)> = vec![
        (Message::Text("hello".into()), 1003, "text frames are not supported"),
        (Message::Binary(two_packets.into()), 1002, "bad packet length"),
        (Message::Binary(truncated.into()), 1002, "bad packet length"),
        (Message::Binary(vec![0, 0].into()), 1002, "bad packet length"),
        (Message::Binary(frame(Command(99), 1, b"x").into()), 1002, "unknown command"),
        (Message::Binary(too_long.into()), 1009, "packet too large"),
        // Far over the limit: cut off inside the WebSocket layer, same close code.
        (Message::Binary(frame(Command::PUSH, 1, &[0; 200_000]).into()), 1009, "packet too large"),
    ];
    for (i, (msg, code, reason)) in cases.into_iter().enumerate() {
        let mut ws = connect(proxy.addr).await;
        let mut conn = up.accept().await;
        ws.send(msg).await.unwrap();
        assert_eq!(expect_close(&mut ws).await, (code, reason.to_owned()), "case {i}");
        expect_upstream_closed(&mut conn).await;
        roundtrip(&mut bystander, &mut bystander_up, i as u8).await;
    }
    let (_, _, m) = http_get(proxy.addr, "/metrics").await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("mpush_proxy_closes_total{reason=\"bad_length\",code=\"1002\"} 3\n"), "{m}");
    assert!(m.contains("mpush_proxy_closes_total{reason=\"packet_too_large\",code=\"1009\"} 2\n"), "{m}");
    assert!(m.contains("mpush_proxy_closes_total{reason=\"text_frame\",code=\"1003\"} 1\n"), "{m}");
}

#[tokio::test]
async fn origin_and_per_ip_limits_refuse_before_the_upgrade() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.allowed_origins = vec!["https://app.example.com".into()];
    cfg.max_connections_per_ip = 2;
    let proxy = start(cfg).await;
    let (mut first, _) = try_connect(proxy.addr, Some("https://app.example.com")).await.unwrap();
    let mut first_up = up.accept().await;
    assert_eq!(refused_status(proxy.addr, Some("https://evil.example.com")).await, 403);
    let (_second, _) = try_connect(proxy.addr, None).await.unwrap();
    let _second_up = up.accept().await;
    assert_eq!(refused_status(proxy.addr, None).await, 429);
    roundtrip(&mut first, &mut first_up, 1).await;
    // A slot frees up when a session ends.
    first.close(None).await.unwrap();
    expect_upstream_closed(&mut first_up).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut third, _) = try_connect(proxy.addr, None).await.unwrap();
    let mut third_up = up.accept().await;
    roundtrip(&mut third, &mut third_up, 3).await;
    let (_, _, m) = http_get(proxy.addr, "/metrics").await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("mpush_proxy_handshake_rejections_total{reason=\"origin\"} 1\n"), "{m}");
    assert!(m.contains("mpush_proxy_handshake_rejections_total{reason=\"per_ip_limit\"} 1\n"), "{m}");
}

#[tokio::test]
async fn total_limit_answers_503_and_default_origin_is_same_origin() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.max_connections = 1;
    let proxy = start(cfg).await;
    let same = format!("http://{}", proxy.addr);
    assert_eq!(refused_status(proxy.addr, Some("http://other.example")).await, 403);
    let (mut ws, _) = try_connect(proxy.addr, Some(&same)).await.unwrap();
    let mut conn = up.accept().await;
    assert_eq!(refused_status(proxy.addr, None).await, 503);
    roundtrip(&mut ws, &mut conn, 4).await;
}

#[tokio::test]
async fn upstream_down_closes_1013_after_trying_every_server() {
    let (a, b) = (dead_addr().await, dead_addr().await);
    let proxy = start(config(&[&a, &b])).await;
    let mut ws = connect(proxy.addr).await;
    assert_eq!(expect_close(&mut ws).await, (1013, "upstream unavailable".into()));
    let (_, _, m) = http_get(proxy.addr, "/metrics").await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains(&format!("mpush_proxy_upstream_connect_failures_total{{upstream=\"{a}\"}} 1\n")), "{m}");
    assert!(m.contains(&format!("mpush_proxy_upstream_connect_failures_total{{upstream=\"{b}\"}} 1\n")), "{m}");
}

#[tokio::test]
async fn fails_over_to_the_next_server() {
    let dead = dead_addr().await;
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&dead, &up.addr])).await;
    for i in 0..3 {
        let mut ws = connect(proxy.addr).await;
        let mut conn = up.accept().await;
        roundtrip(&mut ws, &mut conn, i).await;
    }
}

#[tokio::test]
async fn deny_mode_answers_403_with_the_same_session_id() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.http_proxy = HttpProxyMode::Deny;
    let proxy = start(cfg).await;
    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    send(&mut ws, &frame(Command::HTTP_PROXY, 0x0102_0304, &[9; 48])).await;
    let answer = recv(&mut ws).await;
    let Some((Frame::Packet(p), n)) = parse_frame(&answer, 1 << 20).unwrap() else { panic!("not a frame") };
    assert_eq!(n, answer.len());
    assert_eq!((p.cmd, p.flags, p.session_id), (Command::HTTP_PROXY, Flags::NONE, 0x0102_0304));
    let resp = HttpResponse::decode(&p.body).unwrap();
    assert_eq!((resp.status_code, resp.reason_phrase.as_deref()), (403, Some("Forbidden")));
    // Nothing of the request reached the server: the next bytes it sees are the next packet.
    roundtrip(&mut ws, &mut conn, 5).await;
}

#[tokio::test]
async fn forward_mode_passes_http_proxy_packets() {
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;
    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    let req = frame(Command::HTTP_PROXY, 77, &[9; 48]);
    send(&mut ws, &req).await;
    assert_eq!(read_n(&mut conn, req.len()).await, req);
}

#[tokio::test]
async fn closing_either_side_closes_the_other() {
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;

    let mut ws = connect(proxy.addr).await;
    let conn = up.accept().await;
    drop(conn);
    assert_eq!(expect_close(&mut ws).await, (1011, "upstream closed".into()));

    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    ws.close(None).await.unwrap();
    expect_upstream_closed(&mut conn).await;

    // A browser that vanishes without a close frame.
    let ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    drop(ws);
    expect_upstream_closed(&mut conn).await;

    // Garbage from the upstream (negative length) ends the session too.
    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    conn.write_all(&[0xF0, 0, 0, 0, 1]).await.unwrap();
    assert_eq!(expect_close(&mut ws).await, (1011, "upstream framing error".into()));
    expect_upstream_closed(&mut conn).await;
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.idle_timeout = Duration::from_millis(300);
    let proxy = start(cfg).await;
    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    assert_eq!(expect_close(&mut ws).await, (1000, "idle timeout".into()));
    expect_upstream_closed(&mut conn).await;
}

#[tokio::test]
async fn silent_browsers_are_pinged_then_closed() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.ping_interval = Duration::from_millis(100);
    cfg.pong_timeout = Duration::from_millis(200);
    let proxy = start(cfg).await;
    // A raw client that completes the upgrade and then never reads or answers.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!(
        "GET /mpush HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        proxy.addr
    );
    raw.write_all(req.as_bytes()).await.unwrap();
    let mut conn = up.accept().await;
    expect_upstream_closed(&mut conn).await;
    let (_, _, m) = http_get(proxy.addr, "/metrics").await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("mpush_proxy_closes_total{reason=\"keepalive_timeout\",code=\"1000\"} 1\n"), "{m}");

    // A live client answers the pings and stays open past the pong timeout.
    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    while tokio::time::Instant::now() < until {
        // Reading lets tungstenite answer the pings.
        let _ = tokio::time::timeout(Duration::from_millis(50), futures_util::StreamExt::next(&mut ws)).await;
    }
    roundtrip(&mut ws, &mut conn, 6).await;
}

#[tokio::test]
async fn shutdown_drains_with_1001_and_refuses_new_connections() {
    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.drain_timeout = Duration::from_millis(200);
    let mut proxy = start(cfg).await;
    let mut ws = connect(proxy.addr).await;
    let mut conn = up.accept().await;
    roundtrip(&mut ws, &mut conn, 7).await;
    proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Still within the drain timeout: the session keeps relaying, new connections fail.
    roundtrip(&mut ws, &mut conn, 8).await;
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err(), "listener still open");
    assert_eq!(expect_close(&mut ws).await, (1001, "going away".into()));
    expect_upstream_closed(&mut conn).await;
    let result = tokio::time::timeout(T, proxy.task).await.expect("run did not return");
    assert!(result.unwrap().is_ok());
}
