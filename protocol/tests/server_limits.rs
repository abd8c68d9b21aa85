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
