//! What the client session EMITS, byte for byte, against the packets the Java reference
//! client produced (`tests/data/mpush-java-reference.json`): one session resumed with the
//! vectors' stored session sends fast connect (id 1), bind (2), unbind (3), two HTTP requests
//! (4, 5) and an auto-ack push (6), exactly the ids and bodies of the vectors.
#![allow(clippy::unwrap_used)]

mod client_common;

use client_common::*;
use mpush_protocol::message::{HttpMethod, HttpRequest, Kick, Message};
use mpush_protocol::*;

fn one(s: &mut ClientSession) -> Vec<u8> {
    let mut out = transmits(s);
    assert_eq!(out.len(), 1, "expected one packet");
    out.remove(0)
}

#[test]
fn a_session_emits_the_java_clients_packets() {
    // fast_connect (id 1) and fast_connect_ok are checked inside `ready()`.
    let mut s = ready();

    // bind: user-42, tags "vip,web", no alias; id 2.
    let id = s.bind(T0, "user-42", None, Some("vip,web")).unwrap();
    assert_eq!(id, RequestId(2));
    assert_eq!(hex::encode(one(&mut s)), hex::encode(vector_packet("bind")));
    s.handle_input(T0, &vector_packet("ok_bind")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::Bound { request: id, user_id: "user-42".into(), rebind: false }]);

    // unbind: the user id only (no alias, no tags); id 3.
    let id = s.unbind(T0).unwrap();
    assert_eq!(id, RequestId(3));
    assert_eq!(hex::encode(one(&mut s)), hex::encode(vector_packet("unbind")));

    // http_request; the caller's header arrives lower-cased, as a browser's Headers object
    // gives it, and still goes out exactly once, named as MPUSH reads it; id 4.
    let req = HttpRequest {
        method: HttpMethod::Post,
        uri: "http://api.example.com/v1/echo?x=1".into(),
        headers: vec![("Content-Type".into(), "application/json".into()), ("readtimeout".into(), "5000".into())],
        body: br#"{"a":1}"#.to_vec(),
    };
    assert_eq!(s.http_request(T0, req).unwrap(), RequestId(4));
    assert_eq!(hex::encode(one(&mut s)), hex::encode(vector_packet("http_request")));

    // http_request_compressed: a 1500-byte body makes the message longer than 1024 bytes, so
    // it is zlib-compressed before encryption (flags CRYPTO|COMPRESS); id 5. Our deflate need
    // not produce Java's bytes, and the session adds its default readTimeout, so the check is
    // on the header and on what the server inflates.
    let req = HttpRequest {
        method: HttpMethod::Put,
        uri: "http://api.example.com/upload".into(),
        headers: vec![],
        body: vec![b'z'; 1500],
    };
    assert_eq!(s.http_request(T0, req.clone()).unwrap(), RequestId(5));
    let p = packet(&one(&mut s));
    let want = packet(&vector_packet("http_request_compressed"));
    assert_eq!((p.cmd, p.flags, p.session_id), (want.cmd, want.flags, want.session_id));
    assert_eq!(p.flags, Flags::CRYPTO | Flags::COMPRESS);
    let sent = HttpRequest::decode(&plain(&p)).unwrap();
    assert_eq!(sent, HttpRequest { headers: vec![("readTimeout".into(), "10000".into())], ..req });
    // Java's deflate made a 64-byte body of it; ours is in the same range, far from 1.5 KB.
    assert!(p.body.len() <= 2 * want.body.len(), "{} vs Java's {}", p.body.len(), want.body.len());

    // push_upstream_auto_ack: flags CRYPTO|AUTO_ACK; id 6.
    assert_eq!(s.push(T0, b"hello server".to_vec(), AckMode::Auto).unwrap(), Some(RequestId(6)));
    assert_eq!(hex::encode(one(&mut s)), hex::encode(vector_packet("push_upstream_auto_ack")));

    // ack of push 77.
    s.ack(T0, 77).unwrap();
    assert_eq!(hex::encode(one(&mut s)), hex::encode(vector_packet("ack")));
}

#[test]
fn inbound_vectors_become_events() {
    let mut s = ready();
    // A biz-ack push waits for the application's ack.
    s.handle_input(T0, &vector_packet("push_biz_ack")).unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [ClientEvent::Push(m)] if m.session_id == 1001 && m.ack == AckMode::Biz && m.content == br#"{"title":"hi"}"#),
        "{ev:?}"
    );
    assert!(transmits(&mut s).is_empty(), "a biz-ack push is not acked by the session");

    // The HTTP response to request 4 (and only to request 4).
    let req = HttpRequest { method: HttpMethod::Get, uri: "http://a/".into(), headers: vec![], body: vec![] };
    let ids: Vec<RequestId> = (0..3).map(|_| s.http_request(T0, req.clone()).unwrap()).collect();
    assert_eq!(ids, [RequestId(2), RequestId(3), RequestId(4)]);
    s.handle_input(T0, &vector_packet("http_response")).unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [ClientEvent::HttpResponse { request: RequestId(4), response }] if response.status_code == 200),
        "{ev:?}"
    );

    // Kick: device-1 / user-42.
    let mut s = ready();
    s.bind(T0, "user-42", None, None).unwrap();
    transmits(&mut s);
    s.handle_input(T0, &vector_packet("kick")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::Kick { device_id: "device-1".into(), user_id: "user-42".into() }]);
    assert_eq!(s.bound_user(), None);
    let k = Kick::decode(&plain(&packet(&vector_packet("kick")))).unwrap();
    assert_eq!(k.user_id, "user-42");
}

#[test]
fn an_expired_session_error_falls_back_to_a_handshake() {
    let mut s = ClientSession::resume(config(), [3; 32], stored()).unwrap();
    s.handle_connected(T0).unwrap();
    assert_eq!(transmits(&mut s), vec![vector_packet("fast_connect")]);
    s.handle_input(T0, &vector_packet("error_session_expired")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::FastConnectRefused { code: ErrorCode::SESSION_EXPIRED }]);
    assert_eq!(s.state(), ClientState::Handshaking);
    assert_eq!(s.stored_session(), None);
    // The handshake goes out on the same connection with the next id, RSA-encrypted.
    let p = packet(&transmits(&mut s)[0]);
    assert_eq!((p.cmd, p.flags, p.session_id), (Command::HANDSHAKE, Flags::CRYPTO, 2));
    let hs: message::Handshake = Message::decode(&keys().1.decrypt(&p.body).unwrap()).unwrap();
    assert_eq!((hs.device_id.as_str(), hs.min_heartbeat, hs.max_heartbeat), ("device-1", 180_000, 240_000));
}
