//! Gateway limits MPUSH does not have, answered as MPUSH answers a body it cannot handle
//! (Error 100, then close): an RSA-encrypted handshake body over `max_handshake_body`, refused
//! before any private-key work, and string fields over `max_field_len`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod server_common;

use mpush_protocol::message::{BindUser, Message};
use mpush_protocol::server::DispatchError;
use mpush_protocol::*;
use server_common::*;

const CK: [u8; 16] = [0x11; 16];
const IV: [u8; 16] = [0x22; 16];

fn limit_closed(s: &mut Server) -> bool {
    matches!(close_reason(&s.events()), Some(CloseReason::DispatchError { error: DispatchError::Limit(_), .. }))
        && s.s.is_closed()
}

#[test]
fn an_oversized_rsa_handshake_is_refused_before_decrypting() {
    // Five RSA blocks of garbage: decrypting would fail anyway, but the answer must come from
    // the size check, not from the private key (the close reason says which).
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, vec![0xAB; 5 * 128]));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 1)]);
    assert!(limit_closed(&mut s));

    // A real handshake padded to five blocks would decrypt; still refused.
    let mut hs = handshake("device-1", &CK, &IV).encode();
    hs.resize(500, 0);
    let body = rsa(&hs);
    assert!(body.len() > 512);
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 2, body.clone()));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 2)]);
    assert!(limit_closed(&mut s));

    // With the cap raised it is a handshake like any other (trailing bytes ignored).
    let mut s = Server::with(|c| c.max_handshake_body = 1024);
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 2, body));
    assert!(matches!(&s.events()[..], [ServerEvent::HandshakeOk { .. }]));
}

#[test]
fn an_oversized_rsa_fast_connect_is_refused_before_decrypting() {
    let mut s = Server::new();
    s.input(&packet(Command::FAST_CONNECT, Flags::CRYPTO, 1, vec![0xAB; 5 * 128]));
    assert_eq!(s.out(), vec![dispatch_error(Command::FAST_CONNECT, 1)]);
    assert!(limit_closed(&mut s));
}

#[test]
fn long_handshake_fields_are_refused() {
    let mut s = Server::with(|c| c.max_field_len = 8);
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, rsa(&handshake("device-long", &CK, &IV).encode())));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 1)]);
    assert!(limit_closed(&mut s));
    assert_eq!(s.store.len(), 1, "nothing stored");
}

#[test]
fn long_fast_connect_fields_are_refused() {
    let mut s = Server::with(|c| c.max_field_len = 8);
    s.input(&packet(Command::FAST_CONNECT, Flags::NONE, 1, fast_connect(SESSION_ID, "device-1").encode()));
    assert_eq!(s.out(), vec![dispatch_error(Command::FAST_CONNECT, 1)]);
    assert!(limit_closed(&mut s));
}

#[test]
fn long_bind_fields_are_refused() {
    let mut s = Server::resumed();
    let long = "t".repeat(1025);
    let bind = BindUser { user_id: "u".into(), alias: None, tags: Some(long) }.encode();
    s.input(&packet(Command::BIND, Flags::CRYPTO, 2, cipher().encrypt(&bind)));
    assert_eq!(s.out(), vec![dispatch_error(Command::BIND, 2)]);
    assert!(limit_closed(&mut s));

    // At the limit it binds.
    let mut s = Server::resumed();
    let bind = BindUser { user_id: "u".into(), alias: None, tags: Some("t".repeat(1024)) }.encode();
    s.input(&packet(Command::BIND, Flags::CRYPTO, 2, cipher().encrypt(&bind)));
    assert_eq!(s.out(), vec![ok_packet(Command::BIND, "bind success", 2)]);
}

/// With `defer_rsa` the session asks for the RSA work instead of doing it.
fn deferred() -> Server {
    Server::with(|c| c.defer_rsa = true)
}

fn rsa_request(s: &mut Server) -> Vec<u8> {
    match &s.events()[..] {
        [ServerEvent::RsaDecryptNeeded { ciphertext }] => ciphertext.clone(),
        other => panic!("expected an RSA request, got {other:?}"),
    }
}

#[test]
fn deferred_rsa_answers_byte_for_byte_as_inline() {
    // The same handshake followed by a heartbeat, in one read.
    let mut bytes = packet(Command::HANDSHAKE, Flags::CRYPTO, 1, rsa(&handshake("device-1", &CK, &IV).encode()));
    bytes.push(0xDF);
    let mut inline = Server::new();
    inline.input(&bytes);
    let want = inline.out();
    assert_eq!(want.len(), 2);

    let mut s = deferred();
    s.input(&bytes);
    // Nothing is processed past the handshake until the plaintext comes back: no echo yet.
    assert!(s.out().is_empty() && s.s.is_awaiting_rsa());
    let ct = rsa_request(&mut s);
    // More input meanwhile is kept, in order.
    s.input(&[0xDF]);
    assert!(s.out().is_empty());
    let plain = keys().1.decrypt(&ct);
    s.s.rsa_decrypted(s.now, plain, &*s.store).unwrap();
    let mut got = s.out();
    assert_eq!(got.pop(), Some(vec![0xDF]));
    assert_eq!(got, want);
    assert!(matches!(&s.events()[..], [ServerEvent::HandshakeOk { .. }]));
    assert!(!s.s.is_awaiting_rsa());
}

#[test]
fn deferred_rsa_checks_the_size_first_and_answers_failures_with_error_100() {
    // Oversized: refused without asking for the RSA work.
    let mut s = deferred();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, vec![0xAB; 5 * 128]));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 1)]);
    assert!(limit_closed(&mut s));

    // A body that does not decrypt: Error 100 and close once the driver says so.
    let mut s = deferred();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 2, vec![0xAB; 128]));
    let ct = rsa_request(&mut s);
    let plain = keys().1.decrypt(&ct);
    assert!(plain.is_err());
    s.s.rsa_decrypted(s.now, plain, &*s.store).unwrap();
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 2)]);
    assert!(matches!(
        close_reason(&s.events()),
        Some(CloseReason::DispatchError { error: DispatchError::Crypto(_), .. })
    ));

    // Unencrypted bodies and commands that do not open theirs never ask.
    let mut s = deferred();
    s.input(&packet(Command::FAST_CONNECT, Flags::NONE, 3, fast_connect(SESSION_ID, "device-1").encode()));
    assert!(matches!(&s.events()[..], [ServerEvent::FastConnected { .. }]));
    // After it, the session key opens everything: no RSA.
    let bind = BindUser { user_id: "u".into(), alias: None, tags: None }.encode();
    s.input(&packet(Command::BIND, Flags::CRYPTO, 4, cipher().encrypt(&bind)));
    assert_eq!(s.out().len(), 2);
    assert!(matches!(&s.events()[..], [ServerEvent::Bound { .. }]));
}
