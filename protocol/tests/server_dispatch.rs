//! MPUSH's `MessageDispatcher`: what the server sends for bodies it cannot open or decode
//! (Error 100, then close), for commands it has no handler for (Error 101, then close), for
//! heartbeats, and how its netty decoder cuts the byte stream.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod server_common;

use mpush_protocol::message::{BindUser, Message};
use mpush_protocol::server::DispatchError;
use mpush_protocol::*;
use server_common::*;

#[test]
fn undecryptable_body_gets_error_100_naming_the_packet_then_close() {
    let mut s = Server::resumed();
    // 16 bytes that are not AES under the session key (bad padding).
    s.input(&packet(Command::BIND, Flags::CRYPTO, 7, vec![0x55; 16]));
    // Error{cmd 5, code 100, reason "handle message error", data null}, raw, session id 7.
    let want = hex::decode(concat!(
        "0000001a0a000000000000070005640014",
        "68616e646c65206d657373616765206572726f72", // "handle message error"
        "0000"
    ))
    .unwrap();
    assert_eq!(s.out(), vec![want.clone()]);
    assert_eq!(dispatch_error(Command::BIND, 7), want);
    assert!(s.s.is_closed());
    assert!(matches!(
        close_reason(&s.events()),
        Some(CloseReason::DispatchError { cmd: Command::BIND, error: DispatchError::Crypto(_) })
    ));
    // Nothing more is read.
    assert_eq!(s.try_input(&[0xDF]), Err(ServerError::Closed));
}

#[test]
fn every_kind_of_malformed_body_is_error_100_and_close() {
    let aes = cipher();
    let bind = BindUser { user_id: "u".into(), alias: None, tags: None }.encode();
    let cases: Vec<(&str, Command, Flags, Vec<u8>)> = vec![
        ("truncated field", Command::BIND, Flags::NONE, vec![0, 5, b'a']),
        ("negative field length", Command::BIND, Flags::NONE, vec![0x80, 0]),
        ("JSON flag", Command::BIND, Flags(0x10), br#"{"userId":"u"}"#.to_vec()),
        ("decrypts to nothing", Command::BIND, Flags::CRYPTO, aes.encrypt(&[])),
        ("not zlib", Command::BIND, Flags::COMPRESS, bind.clone()),
        ("truncated fast connect", Command::FAST_CONNECT, Flags::NONE, vec![0, 5, b'a']),
        ("ack with a body that does not decrypt", Command::ACK, Flags::CRYPTO, vec![1; 16]),
        ("push that does not decrypt", Command::PUSH, Flags::CRYPTO, vec![1; 15]),
        ("http request truncated", Command::HTTP_PROXY, Flags::NONE, vec![1, 0, 9]),
    ];
    for (what, cmd, flags, body) in cases {
        let mut s = Server::resumed();
        s.input(&packet(cmd, flags, 42, body));
        assert_eq!(s.out(), vec![dispatch_error(cmd, 42)], "{what}");
        assert!(s.s.is_closed(), "{what}");
        assert!(
            matches!(close_reason(&s.events()), Some(CloseReason::DispatchError { cmd: c, .. }) if c == cmd),
            "{what}"
        );
    }
}

#[test]
fn before_a_handshake_crypto_bodies_are_rsa_decrypted() {
    // The context cipher is RSA until a handshake: an AES-encrypted bind or push cannot open.
    for cmd in [Command::BIND, Command::PUSH, Command::FAST_CONNECT] {
        let mut s = Server::new();
        s.input(&packet(cmd, Flags::CRYPTO, 3, cipher().encrypt(b"whatever")));
        assert_eq!(s.out(), vec![dispatch_error(cmd, 3)], "{cmd:?}");
        assert!(s.s.is_closed());
    }
    // A handshake whose RSA body is garbage.
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, vec![1; 128]));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 1)]);
}

#[test]
fn an_empty_body_is_not_decoded() {
    // MPUSH skips decoding a packet without body: every field is null. A bind without user id
    // is "invalid param" (code 0) and close, not Error 100.
    let mut s = Server::resumed();
    s.input(&packet(Command::BIND, Flags::CRYPTO, 9, vec![]));
    assert_eq!(s.out(), vec![error_packet(Command::BIND, 0, "invalid param", 9)]);
    assert_eq!(close_reason(&s.events()), Some(CloseReason::InvalidRequest("bind without user id")));
}

#[test]
fn trailing_bytes_and_invalid_utf8_are_accepted_as_java_reads_them() {
    let mut s = Server::resumed();
    let mut body = BindUser { user_id: "u\u{1F600}".into(), alias: None, tags: Some("t".into()) }.encode();
    body[3] = 0xFF; // break the emoji's UTF-8
    body.extend_from_slice(&[1, 2, 3]); // trailing garbage
    s.input(&packet(Command::BIND, Flags::CRYPTO, 2, cipher().encrypt(&body)));
    assert_eq!(s.out(), vec![ok_packet(Command::BIND, "bind success", 2)]);
    let ev = s.events();
    assert!(
        matches!(&ev[..], [ServerEvent::Bound { user_id, tags: Some(t), .. }] if user_id.starts_with("u\u{FFFD}") && t == "t"),
        "{ev:?}"
    );
}

#[test]
fn unsupported_commands_get_error_101_then_close() {
    for (cmd, proxy) in
        [(Command(99), true), (Command::LOGIN, true), (Command::KICK, true), (Command::HTTP_PROXY, false)]
    {
        let mut s = Server::with(|c| c.http_proxy_enabled = proxy);
        s.input(&packet(cmd, Flags::NONE, 5, vec![1, 2, 3]));
        assert_eq!(s.out(), vec![error_packet(cmd, 101, "unsupported command", 5)], "{cmd:?}");
        assert_eq!(close_reason(&s.events()), Some(CloseReason::UnsupportedCommand(cmd)));
    }
}

#[test]
fn heartbeats_are_echoed_as_one_byte_before_and_after_a_handshake() {
    let mut s = Server::new();
    s.input(&[0xDF, 0xDF]);
    // A framed HEARTBEAT (cmd 1), body and all, is echoed as the single byte too.
    s.input(&packet(Command::HEARTBEAT, Flags::CRYPTO, 77, vec![9; 20]));
    assert_eq!(s.out(), vec![vec![0xDF], vec![0xDF], vec![0xDF]]);
    assert!(!s.s.is_closed());
}

#[test]
fn the_stream_is_cut_as_netty_cuts_it() {
    // A negative body length is a header with no body, not an error.
    let mut s = Server::new();
    s.input(&[0xFF, 0xFF, 0xFF, 0xF0, 1, 0, 0, 0, 0, 0, 0, 3, 0]);
    assert_eq!(s.out(), vec![vec![0xDF]]);
    assert!(!s.s.is_closed());

    // An oversized body is refused only when the whole frame has arrived; nothing is sent.
    let mut s = Server::new();
    let mut big = packet(Command::PUSH, Flags::NONE, 1, vec![0; 10_241]);
    let tail = big.split_off(5_000);
    s.input(&big);
    assert!(s.out().is_empty());
    assert!(!s.s.is_closed());
    let (almost, last) = tail.split_at(tail.len() - 1);
    s.input(almost);
    assert_eq!(s.try_input(last), Err(ServerError::Frame(FrameError::BodyTooLarge { len: 10_241, max: 10_240 })));
    assert!(s.out().is_empty());
    assert!(s.s.is_closed());

    // 10240 bytes is allowed.
    let mut s = Server::new();
    s.input(&packet(Command::PUSH, Flags::NONE, 1, vec![7; 10_240]));
    assert!(matches!(&s.events()[..], [ServerEvent::UpstreamPush { content, .. }] if content.len() == 10_240));
}
