//! Handshake and fast connect as MPUSH 0.8.0's `HandshakeHandler` and `FastConnectHandler`
//! answer them: the COMPRESS flag honoured, refusals with code 0 and MPUSH's reasons, which of
//! them close, the order MPUSH checks things in, and stored-session expiry.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod server_common;

use mpush_protocol::crypto::mix_key;
// The crate's own deflate, present with every feature set (`crypto::compress` needs
// `compress`): any valid zlib stream will do here.
use mpush_protocol::deflate::compress;
use mpush_protocol::message::{BindUser, FastConnectOk, HandshakeOk, Message};
use mpush_protocol::server::DispatchError;
use mpush_protocol::*;
use server_common::*;

const CK: [u8; 16] = [0x11; 16];
const IV: [u8; 16] = [0x22; 16];

/// Decodes a HandshakeOk sent under AES(CK, IV) and returns it with the session cipher.
fn handshake_ok(bytes: &[u8], session_id: i32) -> (HandshakeOk, AesCipher) {
    let p = parse(bytes);
    assert_eq!((p.cmd, p.flags, p.session_id), (Command::HANDSHAKE, Flags::CRYPTO, session_id));
    let ok = HandshakeOk::decode(&AesCipher::new(CK, IV).decrypt(&p.body).unwrap()).unwrap();
    let key = mix_key(&CK, &<[u8; 16]>::try_from(ok.server_key.as_slice()).unwrap());
    (ok, AesCipher::new(key, IV))
}

#[test]
fn a_compressed_handshake_is_inflated_first() {
    // The Java reference client's handshake body, zlib-compressed, then RSA-encrypted.
    let v = vectors();
    let plain_hex = v["messages"].as_array().unwrap().iter().find(|m| m["name"] == "handshake_plain_body").unwrap()
        ["body_plain_hex"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain = hex::decode(plain_hex).unwrap();
    let hs = message::Handshake::decode(&plain).unwrap();
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO | Flags::COMPRESS, 1, rsa(&compress(&plain))));
    let out = s.out();
    assert_eq!(out.len(), 1);
    let p = parse(&out[0]);
    let ck: [u8; 16] = hs.client_key.as_slice().try_into().unwrap();
    let iv: [u8; 16] = hs.iv.as_slice().try_into().unwrap();
    let ok = HandshakeOk::decode(&AesCipher::new(ck, iv).decrypt(&p.body).unwrap()).unwrap();
    assert_eq!((ok.heartbeat, ok.session_id.len(), ok.expire_time), (180_000, 32, (T0 + 86_400_000) as i64));
    assert!(matches!(&s.events()[..], [ServerEvent::HandshakeOk { client, .. }] if client.device_id == "device-1"));
}

#[test]
fn a_compressed_fast_connect_is_inflated_first() {
    let mut s = Server::new();
    let body = compress(&fast_connect(SESSION_ID, "device-1").encode());
    s.input(&packet(Command::FAST_CONNECT, Flags::COMPRESS, 4, body));
    let fc = FastConnectOk { heartbeat: 180_000 };
    assert_eq!(s.out(), vec![packet(Command::FAST_CONNECT, Flags::NONE, 4, fc.encode())]);
}

#[test]
fn invalid_handshakes_are_param_invalid_code_0_then_close() {
    let cases: [(&str, &[u8], &[u8]); 3] = [("", &CK, &IV), ("device-1", &CK, &[1; 8]), ("device-1", &[1; 17], &IV)];
    for (device, ck, iv) in cases {
        let mut s = Server::new();
        s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 3, rsa(&handshake(device, ck, iv).encode())));
        // Error{cmd 2, code 0, "Param invalid"}: MPUSH 0.8.0 sets no code.
        let want =
            hex::decode("000000130a0000000000000300020000 0d506172616d20696e76616c69640000".replace(' ', "")).unwrap();
        assert_eq!(s.out(), vec![want], "{device:?} {ck:?} {iv:?}");
        assert!(matches!(close_reason(&s.events()), Some(CloseReason::InvalidRequest(_))));
        assert!(s.store.get(SESSION_ID).is_some() && s.store.len() == 1, "nothing stored");
    }
}

#[test]
fn handshakes_mpush_throws_on_are_error_100() {
    // MPUSH mixes the keys before validating: no client key or a short one throws, even
    // without a device id; with a device id, a missing iv throws too.
    let cases: [(&str, &[u8], &[u8]); 4] =
        [("device-1", &[], &IV), ("", &[1; 8], &IV), ("device-1", &[1; 15], &IV), ("device-1", &CK, &[])];
    for (device, ck, iv) in cases {
        let mut s = Server::new();
        s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 3, rsa(&handshake(device, ck, iv).encode())));
        assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 3)], "{device:?} {ck:?} {iv:?}");
        assert!(matches!(
            close_reason(&s.events()),
            Some(CloseReason::DispatchError { error: DispatchError::Handler(_), .. })
        ));
    }
    // An empty handshake body is not decoded: no device id, "Param invalid"... except that the
    // null client key throws first.
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 3, vec![]));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 3)]);
}

#[test]
fn a_repeated_handshake_is_decrypted_with_the_session_key() {
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, rsa(&handshake("device-1", &CK, &IV).encode())));
    let (_, session) = handshake_ok(&s.out()[0], 1);
    s.events();

    // Encrypted with the session key, the same device: code 0 "repeat handshake", connection kept.
    let again = handshake("device-1", &CK, &IV).encode();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 2, session.encrypt(&again)));
    assert_eq!(s.out(), vec![error_packet(Command::HANDSHAKE, 0, "repeat handshake", 2)]);
    assert!(!s.s.is_closed() && s.events().is_empty());

    // Another device id on the same connection: MPUSH would start a second session; the
    // gateway allows one handshake per connection (Error 100, then close).
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 4, session.encrypt(&handshake("device-2", &CK, &IV).encode())));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 4)]);
    assert!(matches!(
        close_reason(&s.events()),
        Some(CloseReason::DispatchError { error: DispatchError::Limit(_), .. })
    ));
    assert!(s.s.is_closed());
}

#[test]
fn an_rsa_encrypted_second_handshake_is_error_100_then_close() {
    let mut s = Server::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, rsa(&handshake("device-1", &CK, &IV).encode())));
    handshake_ok(&s.out()[0], 1);
    s.events();
    // RSA-encrypted, as a client that believes it is on a new connection sends it: the
    // session key cannot decrypt it, Error 100 and close (MPUSH's answer).
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 5, rsa(&handshake("device-2", &CK, &IV).encode())));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 5)]);
    assert!(s.s.is_closed());
}

#[test]
fn fast_connect_refusals_are_code_0_and_keep_the_connection() {
    // The reference vector carries code 103 (the Java client's table); MPUSH 0.8.0 sends 0.
    let mut want = vector_packet("error_session_expired");
    assert_eq!(want[14], 103);
    want[14] = 0;
    for (id, device, reason) in [
        ("no-such-session", "device-1", "session expired"),
        ("", "device-1", "session expired"),
        (SESSION_ID, "device-2", "invalid device"),
        (SESSION_ID, "", "invalid device"),
    ] {
        let mut s = Server::new();
        s.input(&packet(Command::FAST_CONNECT, Flags::NONE, 1, fast_connect(id, device).encode()));
        let out = s.out();
        assert_eq!(out, vec![error_packet(Command::FAST_CONNECT, 0, reason, 1)], "{id} {device}");
        if reason == "session expired" {
            assert_eq!(out[0], want);
        }
        assert!(!s.s.is_closed());
        // The client falls back to a full handshake on the same connection.
        s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 2, rsa(&handshake("device-1", &CK, &IV).encode())));
        handshake_ok(&s.out()[0], 2);
    }
}

#[test]
fn a_stored_session_expires_when_expire_time_is_before_now() {
    for (now, resumes) in
        [(SESSION_EXPIRE as u64 - 1, true), (SESSION_EXPIRE as u64, true), (SESSION_EXPIRE as u64 + 1, false)]
    {
        let mut s = Server::new();
        s.now = now;
        s.input(&packet(Command::FAST_CONNECT, Flags::NONE, 1, fast_connect(SESSION_ID, "device-1").encode()));
        let p = parse(&s.out()[0]);
        assert_eq!(p.cmd == Command::FAST_CONNECT, resumes, "now = expire + {}", now as i64 - SESSION_EXPIRE);
    }
    // The in-memory store purges with the same comparison.
    let st = MemorySessionStore::new(10);
    st.put(
        "a",
        ResumableSession::parse_mpush("web,1,1,d,0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0,0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0", 100)
            .unwrap(),
    );
    assert_eq!(st.purge_expired(100), 1);
    assert_eq!(st.purge_expired(101), 0);
}

#[test]
fn a_session_whose_strings_hold_a_comma_cannot_be_resumed() {
    let mut s = Server::new();
    let mut hs = handshake("device-1", &CK, &IV);
    hs.os_version = "Chrome 156, Linux".into();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, rsa(&hs.encode())));
    let (ok, _) = handshake_ok(&s.out()[0], 1);
    let mut s2 = Server::new();
    s2.store = s.store.clone();
    s2.input(&packet(Command::FAST_CONNECT, Flags::NONE, 1, fast_connect(&ok.session_id, "device-1").encode()));
    assert_eq!(s2.out(), vec![error_packet(Command::FAST_CONNECT, 0, "session expired", 1)]);
}

#[test]
fn null_strings_are_stored_as_java_prints_them() {
    let mut s = Server::new();
    let mut hs = handshake("device-1", &CK, &IV);
    hs.os_name = String::new();
    hs.client_version = String::new();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 1, rsa(&hs.encode())));
    let (ok, session) = handshake_ok(&s.out()[0], 1);
    let stored = s.store.get(&ok.session_id).unwrap();
    assert_eq!(
        (stored.os_name.as_str(), stored.os_version.as_str(), stored.client_version.as_str()),
        ("null", "Chrome 156", "null")
    );
    // Without an OS name MPUSH's client type lookup throws at bind: Error 100.
    let bind = BindUser { user_id: "u".into(), alias: None, tags: None }.encode();
    s.input(&packet(Command::BIND, Flags::CRYPTO, 2, session.encrypt(&bind)));
    assert_eq!(s.out(), vec![dispatch_error(Command::BIND, 2)]);
}

#[test]
fn a_second_fast_connect_is_error_100_then_close() {
    // MPUSH would replace the session context; the gateway allows one per connection.
    let mut s = Server::resumed();
    s.input(&packet(Command::FAST_CONNECT, Flags::NONE, 3, fast_connect(SESSION_ID, "device-1").encode()));
    assert_eq!(s.out(), vec![dispatch_error(Command::FAST_CONNECT, 3)]);
    assert!(matches!(
        close_reason(&s.events()),
        Some(CloseReason::DispatchError { cmd: Command::FAST_CONNECT, error: DispatchError::Limit(_) })
    ));
    assert!(s.s.is_closed());
}

#[test]
fn a_handshake_after_a_fast_connect_is_error_100_then_close() {
    let mut s = Server::resumed();
    let hs = handshake("device-9", &CK, &IV).encode();
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 3, cipher().encrypt(&hs)));
    assert_eq!(s.out(), vec![dispatch_error(Command::HANDSHAKE, 3)]);
    assert!(s.s.is_closed());
}

#[test]
fn a_refused_fast_connect_then_one_handshake_is_fine() {
    let mut s = Server::new();
    s.input(&packet(Command::FAST_CONNECT, Flags::NONE, 1, fast_connect("nope", "device-1").encode()));
    assert_eq!(s.out(), vec![error_packet(Command::FAST_CONNECT, 0, "session expired", 1)]);
    s.input(&packet(Command::HANDSHAKE, Flags::CRYPTO, 2, rsa(&handshake("device-1", &CK, &IV).encode())));
    handshake_ok(&s.out()[0], 2);
    assert!(matches!(&s.events()[..], [ServerEvent::HandshakeOk { .. }]));
    assert!(!s.s.is_closed());
}
