//! The proxy's own WebSocket framing against a raw client: what a browser may legally do
//! (fragment a message, dribble bytes, ping, close) and what it may not (unmasked or reserved
//! frames), over real sockets.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mpush_protocol::frame::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A masked client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![b0];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// Upgrades a raw connection (subprotocol mpush) and returns it.
async fn raw_ws(addr: std::net::SocketAddr) -> TcpStream {
    raw_upgrade(TcpStream::connect(addr).await.unwrap(), addr).await
}

/// Reads one server frame: (opcode, payload). Server frames are never masked.
async fn server_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    tokio::time::timeout(T, s.read_exact(&mut h)).await.expect("no frame").unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).await.unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.unwrap();
    assert_ne!(h[0] & 0x80, 0, "final frame");
    (h[0] & 0x0F, payload)
}

#[tokio::test]
async fn fragments_dribbled_bytes_pings_and_close_are_handled() {
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;
    let mut ws = raw_ws(proxy.addr).await;
    let mut conn = up.accept().await;

    // A packet in three fragments, with a ping between them: one packet upstream, one pong.
    let p = frame(Command::PUSH, 5, &[9; 300]);
    ws.write_all(&client_frame(0x02, &p[..100])).await.unwrap();
    ws.write_all(&client_frame(0x89, b"hi")).await.unwrap();
    ws.write_all(&client_frame(0x00, &p[100..250])).await.unwrap();
    ws.write_all(&client_frame(0x80, &p[250..])).await.unwrap();
    assert_eq!(server_frame(&mut ws).await, (0xA, b"hi".to_vec()));
    assert_eq!(read_n(&mut conn, p.len()).await, p);

    // Two packets in one write, then one dribbled a byte at a time: all arrive in order.
    let (a, b) = (frame(Command::PUSH, 6, b"a"), frame(Command::PUSH, 7, b"b"));
    ws.write_all(&[client_frame(0x82, &a), client_frame(0x82, &b)].concat()).await.unwrap();
    let c = frame(Command::PUSH, 8, &[1; 40]);
    for byte in client_frame(0x82, &c) {
        ws.write_all(&[byte]).await.unwrap();
    }
    assert_eq!(read_n(&mut conn, a.len() + b.len() + c.len()).await, [a, b, c].concat());

    // Downstream: two packets in one upstream write arrive as two binary messages.
    let (d, e) = (frame(Command::PUSH, 9, b"d"), frame(Command::OK, 10, &[2; 200]));
    conn.write_all(&[d.clone(), e.clone()].concat()).await.unwrap();
    assert_eq!(server_frame(&mut ws).await, (0x2, d));
    assert_eq!(server_frame(&mut ws).await, (0x2, e));

    // The browser closes: its code is echoed and the upstream connection closed.
    ws.write_all(&client_frame(0x88, &1000u16.to_be_bytes())).await.unwrap();
    assert_eq!(server_frame(&mut ws).await, (0x8, 1000u16.to_be_bytes().to_vec()));
    expect_upstream_closed(&mut conn).await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let mut up = FakeUpstream::start().await;
    let proxy = start(config(&[&up.addr])).await;
    let unmasked = vec![0x82, 0x01, 0xDF];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", unmasked),
        ("reserved bit", client_frame(0xC2, &[0xDF])),
        ("unknown opcode", client_frame(0x83, &[0xDF])),
        ("continuation of nothing", client_frame(0x80, &[0xDF])),
        ("fragmented ping", client_frame(0x09, b"x")),
        ("close with a 1-byte payload", client_frame(0x88, &[3])),
    ];
    for (what, bytes) in cases {
        let mut ws = raw_ws(proxy.addr).await;
        let mut conn = up.accept().await;
        ws.write_all(&bytes).await.unwrap();
        let (op, payload) = server_frame(&mut ws).await;
        assert_eq!(op, 0x8, "{what}: a close frame");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002, "{what}");
        assert_eq!(&payload[2..], b"websocket protocol error", "{what}");
        expect_upstream_closed(&mut conn).await;
    }
}
