//! How a connect attempt ends: a refused handshake (any Error naming cmd 2 but 102, e.g. what
//! MPUSH's dispatcher sends when a wrong public key makes the handshake undecryptable) is a
//! `Refused` the driver must not retry; answers naming HANDSHAKE or FAST_CONNECT settle the
//! attempt whatever their request id.
#![allow(clippy::unwrap_used)]

mod client_common;

use client_common::*;
use mpush_protocol::message::{FastConnectOk, Handshake, HandshakeOk, Message};
use mpush_protocol::*;

/// A fresh client that has sent its handshake (request id 1).
fn handshaking() -> ClientSession {
    let mut s = ClientSession::new(config(), [5; 32]).unwrap();
    s.handle_connected(T0).unwrap();
    let p = packet(&transmits(&mut s)[0]);
    assert_eq!((p.cmd, p.session_id), (Command::HANDSHAKE, 1));
    assert_eq!(s.state(), ClientState::Handshaking);
    s
}

fn fast_connecting() -> ClientSession {
    let mut s = ClientSession::resume(config(), [3; 32], stored()).unwrap();
    s.handle_connected(T0).unwrap();
    assert_eq!(transmits(&mut s), vec![vector_packet("fast_connect")]);
    s
}

#[test]
fn an_undecryptable_handshake_is_refused_not_retried() {
    // MPUSH's MessageDispatcher: the RSA decryption throws, so it sends
    // `ErrorMessage.from(packet).setErrorCode(DISPATCH_ERROR).close()`: cmd 2, code 100,
    // reason "handle message error", the handshake's own id, then closes.
    for id in [1, 0, 77] {
        let mut s = handshaking();
        s.handle_input(T0, &error(id, Command::HANDSHAKE, ErrorCode::DISPATCH_ERROR, "handle message error")).unwrap();
        assert_eq!(
            events(&mut s),
            vec![ClientEvent::ConnectFailed(RequestError::Refused {
                code: ErrorCode::DISPATCH_ERROR,
                reason: Some("handle message error".into())
            })],
            "id {id}"
        );
        assert_eq!(s.state(), ClientState::Closing);
        assert_eq!(s.poll_timeout(), None, "nothing left to time out");
        s.handle_disconnected(T0);
        assert!(events(&mut s).is_empty(), "the attempt settled once");
    }
    // "Param invalid" (HandshakeHandler, no code) is a refusal as well.
    let mut s = handshaking();
    s.handle_input(T0, &error(1, Command::HANDSHAKE, ErrorCode(0), "Param invalid")).unwrap();
    assert!(matches!(
        &events(&mut s)[..],
        [ClientEvent::ConnectFailed(RequestError::Refused { code: ErrorCode(0), .. })]
    ));
}

#[test]
fn repeat_handshake_is_not_a_refusal() {
    let mut s = handshaking();
    s.handle_input(T0, &error(1, Command::HANDSHAKE, ErrorCode::REPEAT_HANDSHAKE, "repeat handshake")).unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(
            &ev[..],
            [ClientEvent::ConnectFailed(RequestError::Rejected { code: ErrorCode::REPEAT_HANDSHAKE, .. })]
        ),
        "{ev:?}"
    );
    assert_eq!(s.state(), ClientState::Closing);
}

#[test]
fn a_refused_fallback_handshake_after_fast_connect_is_refused_too() {
    let mut s = fast_connecting();
    s.handle_input(T0, &vector_packet("error_session_expired")).unwrap();
    assert_eq!(s.state(), ClientState::Handshaking);
    s.handle_input(T0, &error(2, Command::HANDSHAKE, ErrorCode::DISPATCH_ERROR, "handle message error")).unwrap();
    let ev = events(&mut s);
    assert!(matches!(ev.last(), Some(ClientEvent::ConnectFailed(RequestError::Refused { .. }))), "{ev:?}");
}

#[test]
fn an_ok_naming_handshake_or_fast_connect_settles_the_attempt() {
    // Before: the Ok took the pending handshake and left the session in Handshaking forever,
    // with no timer to end it.
    let mut s = handshaking();
    let e = s.handle_input(T0, &ok(1, Command::HANDSHAKE, "")).unwrap_err();
    assert!(matches!(e, ClientError::PeerMisbehaved(_)), "{e:?}");
    assert_eq!(s.state(), ClientState::Closing);
    s.handle_disconnected(T0);
    assert_eq!(events(&mut s), vec![ClientEvent::ConnectFailed(RequestError::ConnectionLost)]);

    let mut s = fast_connecting();
    assert!(s.handle_input(T0, &ok(1, Command::FAST_CONNECT, "")).is_err());
    s.handle_disconnected(T0);
    assert_eq!(events(&mut s), vec![ClientEvent::ConnectFailed(RequestError::ConnectionLost)]);
}

#[test]
fn an_error_naming_fast_connect_with_another_id_still_falls_back() {
    let mut s = fast_connecting();
    s.handle_input(T0, &error(9, Command::FAST_CONNECT, ErrorCode::INVALID_DEVICE, "invalid device")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::FastConnectRefused { code: ErrorCode::INVALID_DEVICE }]);
    assert_eq!(s.state(), ClientState::Handshaking);
    assert_eq!(packet(&transmits(&mut s)[0]).cmd, Command::HANDSHAKE);
}

#[test]
fn errors_naming_other_commands_while_connecting_leave_the_attempt_running() {
    let mut s = handshaking();
    s.handle_input(T0, &error(1, Command::BIND, ErrorCode::DISPATCH_ERROR, "x")).unwrap();
    assert!(matches!(&events(&mut s)[..], [ClientEvent::ServerError { cmd: Command::BIND, .. }]));
    assert_eq!(s.state(), ClientState::Handshaking);
    // ... and its timeout still ends it.
    s.handle_timeout(T0 + 10_000);
    assert_eq!(events(&mut s), vec![ClientEvent::ConnectFailed(RequestError::Timeout)]);
}

#[test]
fn connect_answers_are_matched_by_command_not_id() {
    // HandshakeOk with an id the client did not use: accepted, as the Java client does.
    let mut s = ClientSession::new(config(), [5; 32]).unwrap();
    s.handle_connected(T0).unwrap();
    let p = packet(&transmits(&mut s)[0]);
    let hs = Handshake::decode(&keys().1.decrypt(&p.body).unwrap()).unwrap();
    let client = AesCipher::from_slices(&hs.client_key, &hs.iv).unwrap();
    let ok = HandshakeOk { server_key: vec![1; 16], heartbeat: 60_000, session_id: "s1".into(), expire_time: 1 };
    let body = client.encrypt(&ok.encode());
    let pkt = Packet { cmd: Command::HANDSHAKE, flags: Flags::CRYPTO, session_id: 42, body };
    s.handle_input(T0, &pkt.to_bytes()).unwrap();
    assert!(matches!(&events(&mut s)[..], [ClientEvent::HandshakeOk { heartbeat: 60_000, .. }]));
    assert_eq!(s.state(), ClientState::Ready);
    // A second HandshakeOk once ready is ignored.
    s.handle_input(T0, &pkt.to_bytes()).unwrap();
    assert!(events(&mut s).is_empty());

    let mut s = fast_connecting();
    let ok = Packet {
        cmd: Command::FAST_CONNECT,
        flags: Flags::NONE,
        session_id: 5,
        body: FastConnectOk { heartbeat: 30_000 }.encode(),
    };
    s.handle_input(T0, &ok.to_bytes()).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::FastConnected { heartbeat: 30_000 }]);
}

#[test]
fn a_malformed_handshake_ok_fails_the_attempt_when_the_connection_closes() {
    let mut s = handshaking();
    // Encrypted with a key the client does not have: undecryptable.
    let pkt = Packet { cmd: Command::HANDSHAKE, flags: Flags::CRYPTO, session_id: 1, body: vec![0; 32] };
    assert!(matches!(s.handle_input(T0, &pkt.to_bytes()), Err(ClientError::Crypto { .. })));
    s.handle_disconnected(T0);
    assert_eq!(events(&mut s), vec![ClientEvent::ConnectFailed(RequestError::ConnectionLost)]);
}

#[test]
fn a_wrong_public_key_against_the_gateway_core_is_a_refusal() {
    use rand_chacha::rand_core::SeedableRng;
    let other = RsaPrivateKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1), 1024).unwrap();
    let mut c = config();
    c.public_key = other.public_key();
    let mut client = ClientSession::new(c, [5; 32]).unwrap();
    client.handle_connected(T0).unwrap();
    let (_, private) = keys();
    let mut server = ServerSession::new(std::sync::Arc::new(ServerConfig::new(private)), [1; 32], T0);
    let store = MemorySessionStore::new(1);
    for b in transmits(&mut client) {
        let _ = server.handle_input(T0, &b, &store);
    }
    assert!(server.is_closed());
    while let Some(b) = server.poll_transmit() {
        client.handle_input(T0, &b).unwrap();
    }
    let ev = events(&mut client);
    assert!(
        matches!(&ev[..], [ClientEvent::ConnectFailed(RequestError::Refused { code: ErrorCode::DISPATCH_ERROR, .. })]),
        "{ev:?}"
    );
    assert_eq!(client.state(), ClientState::Closing);
}
