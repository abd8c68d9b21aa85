//! Outbound size: bodies over 1024 bytes are compressed as the Java client does, and what is
//! still larger than the server's `mp.core.max-packet-size` after compression and encryption
//! is refused before anything is sent, leaving the connection as it was.
#![allow(clippy::unwrap_used)]

mod client_common;

use client_common::*;
use mpush_protocol::message::{HttpMethod, HttpRequest};
use mpush_protocol::*;

fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// About 50 KB of JSON: over the limit raw, well under it compressed.
fn json() -> Vec<u8> {
    let mut s = String::from("[");
    for i in 0..1000 {
        s.push_str(
            &["{\"id\":", &i.to_string(), ",\"title\":\"message number ", &i.to_string(), "\",\"read\":false},"]
                .concat(),
        );
    }
    s.push(']');
    s.into_bytes()
}

#[test]
fn a_large_compressible_push_is_compressed_under_the_limit_and_arrives_whole() {
    let mut p = Pair::new(|_| {});
    let content = json();
    assert!(content.len() > 4 * 10_240);
    let id = p.client.push(p.now, content.clone(), AckMode::Auto).unwrap().unwrap();
    p.drive();
    let sent = p.take_sent();
    let [(pkt, plain)] = &sent[..] else { panic!("{sent:?}") };
    assert_eq!(pkt.flags, Flags::CRYPTO | Flags::COMPRESS | Flags::AUTO_ACK);
    assert!(pkt.body.len() <= 10_240, "{}", pkt.body.len());
    assert_eq!(plain, &content);
    // The server inflated it and acked.
    assert!(matches!(&p.take_server()[..], [ServerEvent::UpstreamPush { content: c, .. }] if *c == content));
    assert_eq!(p.take_client(), vec![ClientEvent::PushAcked { request: id }]);
}

#[test]
fn too_large_after_compression_is_refused_before_sending_and_the_connection_stays() {
    let mut s = ready();
    let big = noise(50_000, 7);
    let e = s.push(T0, big.clone(), AckMode::Auto).unwrap_err();
    let ClientError::PayloadTooLarge { size, max } = e else { panic!("{e:?}") };
    assert_eq!(max, 10_240);
    assert!(size > 50_000, "sealed size {size}");
    let req = HttpRequest { method: HttpMethod::Post, uri: "http://a/upload".into(), headers: vec![], body: big };
    assert!(matches!(s.http_request(T0, req), Err(ClientError::PayloadTooLarge { .. })));
    let huge_tags = String::from_utf8(noise(20_000, 9).iter().map(|b| b'a' + b % 26).collect()).unwrap();
    assert!(matches!(s.bind(T0, "u", None, Some(&huge_tags)), Err(ClientError::PayloadTooLarge { .. })));
    // Nothing went out, nothing is pending, no user was taken on, the session is still ready.
    assert!(transmits(&mut s).is_empty());
    assert!(events(&mut s).is_empty());
    assert_eq!(s.state(), ClientState::Ready);
    assert_eq!(s.bound_user(), None);
    assert_eq!(s.poll_timeout(), Some(T0 + 180_000 - 1000), "only the heartbeat timer");
    // The refused requests used no request id: the next request is 2, as after connecting.
    assert_eq!(s.push(T0, b"small".to_vec(), AckMode::Auto).unwrap(), Some(RequestId(2)));
    assert_eq!(packet(&transmits(&mut s)[0]).session_id, 2);
}

#[test]
fn the_limit_is_configurable_and_counts_compression_and_encryption() {
    // Under the compression limit, AES padding (1..=16 bytes) still counts.
    let mut s = ready_with(|c| c.max_outbound_body = 1000);
    assert!(s.push(T0, noise(991, 1), AckMode::None).is_ok());
    let p = packet(&transmits(&mut s)[0]);
    assert_eq!((p.body.len(), p.flags), (992, Flags::CRYPTO));
    assert_eq!(s.push(T0, noise(992, 1), AckMode::None), Err(ClientError::PayloadTooLarge { size: 1008, max: 1000 }));
    // 100 KB of one byte compresses to a few hundred bytes: accepted.
    assert!(s.push(T0, vec![b'x'; 100_000], AckMode::None).is_ok());
    let p = packet(&transmits(&mut s)[0]);
    assert!(p.flags.contains(Flags::COMPRESS) && p.body.len() < 1000);
    assert_eq!(plain(&p), vec![b'x'; 100_000]);
}

#[test]
fn bodies_up_to_1024_bytes_are_not_compressed() {
    let mut s = ready();
    s.push(T0, vec![b'a'; 1024], AckMode::None).unwrap();
    let p = packet(&transmits(&mut s)[0]);
    assert_eq!(p.flags, Flags::CRYPTO);
    s.push(T0, vec![b'a'; 1025], AckMode::None).unwrap();
    let p = packet(&transmits(&mut s)[0]);
    assert_eq!(p.flags, Flags::CRYPTO | Flags::COMPRESS);
    assert_eq!(plain(&p), vec![b'a'; 1025]);
}

#[test]
fn a_handshake_too_large_for_the_server_is_refused_at_connect() {
    let mut s = ClientSession::new(
        {
            let mut c = config();
            c.os_version = "x".repeat(12_000);
            c
        },
        [1; 32],
    )
    .unwrap();
    assert!(matches!(s.handle_connected(T0), Err(ClientError::PayloadTooLarge { max: 10_240, .. })));
    assert!(transmits(&mut s).is_empty());
}
