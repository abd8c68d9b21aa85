//! Bind, unbind, kick and pushes as MPUSH 0.8.0's `BindUserHandler`, `ClientPushHandler`,
//! `AckHandler` and push task put them on the wire, byte for byte against the Java reference
//! vectors where they exist.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod server_common;

use mpush_protocol::message::{BindUser, Message};
use mpush_protocol::server::DispatchError;
use mpush_protocol::*;
use server_common::*;

fn bind(user: &str, tags: Option<&str>) -> Vec<u8> {
    BindUser { user_id: user.into(), alias: Some("data".into()), tags: tags.map(str::to_owned) }.encode()
}

fn send(s: &mut Server, cmd: Command, sid: i32, plain: &[u8]) {
    s.input(&packet(cmd, Flags::CRYPTO, sid, cipher().encrypt(plain)));
}

#[test]
fn bind_kick_and_unbind_match_the_reference_vectors() {
    let mut s = Server::resumed();
    // The Java client's bind (session id 2) gets exactly the reference Ok.
    s.input(&vector_packet("bind"));
    assert_eq!(s.out(), vec![vector_packet("ok_bind")]);
    let ev = s.events();
    assert!(
        matches!(&ev[..], [ServerEvent::Bound { user_id, alias: None, tags: Some(t) }] if user_id == "user-42" && t == "vip,web"),
        "{ev:?}"
    );
    // The kick MPUSH sends this connection when the user binds elsewhere: session id 0.
    s.s.kick_user(s.now, "user-42").unwrap();
    assert_eq!(s.out(), vec![vector_packet("kick")]);
    // The reference unbind (session id 3) gets Ok{cmd 6, code 0, "unbind success"}.
    s.input(&vector_packet("unbind"));
    let want = hex::decode("000000120b0000000000000300060000 0e756e62696e642073756363657373".replace(' ', "")).unwrap();
    assert_eq!(s.out(), vec![want.clone()]);
    assert_eq!(want, ok_packet(Command::UNBIND, "unbind success", 3));
    assert_eq!(s.events(), vec![ServerEvent::Unbound { user_id: "user-42".into() }]);
}

#[test]
fn unbind_removes_the_connections_user_whatever_the_message_names() {
    let mut s = Server::resumed();
    send(&mut s, Command::BIND, 2, &bind("alice", None));
    s.out();
    s.events();
    send(&mut s, Command::UNBIND, 3, &bind("somebody-else", None));
    assert_eq!(s.out(), vec![ok_packet(Command::UNBIND, "unbind success", 3)]);
    assert_eq!(s.events(), vec![ServerEvent::Unbound { user_id: "alice".into() }]);
    assert_eq!(s.s.user_id(), None);
}

#[test]
fn unbind_with_nothing_bound_is_error_100_and_close() {
    // MPUSH looks the connection's null user up in a ConcurrentHashMap, which throws.
    let mut s = Server::resumed();
    send(&mut s, Command::UNBIND, 3, &bind("user-42", None));
    assert_eq!(s.out(), vec![dispatch_error(Command::UNBIND, 3)]);
    assert!(matches!(
        close_reason(&s.events()),
        Some(CloseReason::DispatchError { cmd: Command::UNBIND, error: DispatchError::Handler(_) })
    ));
}

#[test]
fn an_empty_user_id_is_invalid_param_and_close_for_bind_and_unbind() {
    for cmd in [Command::BIND, Command::UNBIND] {
        let mut s = Server::resumed();
        send(&mut s, Command::BIND, 2, &bind("alice", None));
        s.out();
        s.events();
        send(&mut s, cmd, 3, &bind("", Some("t")));
        assert_eq!(s.out(), vec![error_packet(cmd, 0, "invalid param", 3)], "{cmd:?}");
        assert!(matches!(close_reason(&s.events()), Some(CloseReason::InvalidRequest(_))));
        assert_eq!(s.s.user_id(), Some("alice"));
    }
}

#[test]
fn bind_or_unbind_before_a_handshake_is_not_handshake_and_close() {
    for cmd in [Command::BIND, Command::UNBIND] {
        let mut s = Server::new();
        // Raw: with the CRYPTO flag MPUSH would try its RSA key on it and fail with Error 100.
        s.input(&packet(cmd, Flags::NONE, 1, bind("u", None)));
        assert_eq!(s.out(), vec![error_packet(cmd, 0, "not handshake", 1)]);
        assert_eq!(close_reason(&s.events()), Some(CloseReason::NotHandshaked(cmd)));
    }
}

#[test]
fn binding_the_same_user_again_only_changes_the_tags() {
    let mut s = Server::resumed();
    send(&mut s, Command::BIND, 2, &bind("alice", Some("a")));
    s.out();
    s.events();
    send(&mut s, Command::BIND, 3, &bind("alice", Some("b")));
    assert_eq!(s.out(), vec![ok_packet(Command::BIND, "bind success", 3)]);
    assert_eq!(s.events(), vec![ServerEvent::TagsChanged { user_id: "alice".into(), tags: Some("b".into()) }]);
}

#[test]
fn binding_another_user_answers_unbind_success_then_bind_success() {
    let mut s = Server::resumed();
    send(&mut s, Command::BIND, 2, &bind("alice", None));
    s.out();
    s.events();
    send(&mut s, Command::BIND, 3, &bind("bob", None));
    // MPUSH's unbind runs with the bind message: its Ok names cmd 5 too.
    assert_eq!(
        s.out(),
        vec![ok_packet(Command::BIND, "unbind success", 3), ok_packet(Command::BIND, "bind success", 3)]
    );
    assert_eq!(
        s.events(),
        vec![
            ServerEvent::Unbound { user_id: "alice".into() },
            ServerEvent::Bound { user_id: "bob".into(), alias: Some("data".into()), tags: None }
        ]
    );
}

#[test]
fn server_pushes_match_the_reference_vector() {
    let mut s = Server::resumed();
    s.s.push_with_id(s.now, 1001, br#"{"title":"hi"}"#.to_vec(), AckMode::Biz, 3000).unwrap();
    assert_eq!(s.out(), vec![vector_packet("push_biz_ack")]);
    // The raw Ack (the reference ack vector's layout) completes it.
    s.input(&packet(Command::ACK, Flags::NONE, 1001, vec![]));
    assert_eq!(s.events(), vec![ServerEvent::PushAcked { session_id: 1001 }]);
    // An empty push has no body and no CRYPTO flag; the ack flag stays.
    s.s.push_with_id(s.now, 5, vec![], AckMode::Auto, 3000).unwrap();
    assert_eq!(s.out(), vec![packet(Command::PUSH, Flags::AUTO_ACK, 5, vec![])]);
    // Pushes need a handshake.
    let mut fresh = Server::new();
    assert_eq!(fresh.s.push(T0, b"x".to_vec(), AckMode::None, 0), Err(ServerUsageError::NotHandshaked));
}

#[test]
fn an_upstream_auto_ack_push_is_acked_raw() {
    let mut s = Server::resumed();
    s.input(&vector_packet("push_upstream_auto_ack"));
    // The reference ack vector is session id 77; this one answers 6.
    let mut want = vector_packet("ack");
    want[8..12].copy_from_slice(&6i32.to_be_bytes());
    assert_eq!(s.out(), vec![want]);
    assert!(
        matches!(&s.events()[..], [ServerEvent::UpstreamPush { session_id: 6, content, .. }] if content == b"hello server")
    );
}

#[test]
fn pushes_need_no_handshake_and_acks_open_their_body() {
    // MPUSH's ClientPushHandler checks nothing: a raw push before any handshake is taken
    // and auto-acked.
    let mut s = Server::new();
    s.input(&packet(Command::PUSH, Flags::AUTO_ACK, 8, b"early".to_vec()));
    assert_eq!(s.out(), vec![packet(Command::ACK, Flags::NONE, 8, vec![])]);
    assert!(matches!(&s.events()[..], [ServerEvent::UpstreamPush { content, .. }] if content == b"early"));
    // An ack with a readable body is fine; its body means nothing.
    s.input(&packet(Command::ACK, Flags::NONE, 8, vec![1, 2, 3]));
    assert!(s.out().is_empty() && !s.s.is_closed());
}

#[test]
fn a_deferred_upstream_ack_is_the_same_raw_ack_sent_when_the_driver_says() {
    let mut s = Server::with(|c| c.defer_upstream_ack = true);
    s.input(&packet(Command::PUSH, Flags::AUTO_ACK, 9, b"keep me".to_vec()));
    // Nothing on the wire yet: the driver has not stored the push.
    assert!(s.out().is_empty());
    assert!(
        matches!(&s.events()[..], [ServerEvent::UpstreamPush { session_id: 9, flags, .. }] if flags.contains(Flags::AUTO_ACK))
    );
    s.s.ack_upstream(s.now, 9).unwrap();
    assert_eq!(s.out(), vec![packet(Command::ACK, Flags::NONE, 9, vec![])]);
    s.s.close(CloseReason::Requested);
    assert_eq!(s.s.ack_upstream(s.now, 10), Err(ServerUsageError::Closed));
}

/// A validator that accepts `data == "ok:<user>"` and records what it was asked, with the time.
#[derive(Debug, Default)]
struct Recording(std::sync::Mutex<Vec<(String, Option<String>, u64)>>);

impl BindValidator for Recording {
    fn validate(&self, user_id: &str, data: Option<&str>, now_ms: u64) -> bool {
        self.0.lock().unwrap().push((user_id.to_owned(), data.map(str::to_owned), now_ms));
        data == Some(&format!("ok:{user_id}"))
    }
}

fn resumed_with(v: &std::sync::Arc<Recording>) -> Server {
    let mut s = Server::with(|c| c.bind_validator = Some(v.clone()));
    s.input(&vector_packet("fast_connect"));
    s.out();
    s.events();
    s
}

fn bind_data(user: &str, data: Option<&str>) -> Vec<u8> {
    BindUser { user_id: user.into(), alias: data.map(str::to_owned), tags: Some("t".into()) }.encode()
}

#[test]
fn a_refused_bind_is_bind_failed_and_close_as_mpush() {
    let v = std::sync::Arc::new(Recording::default());
    for data in [None, Some("ok:someone-else"), Some("garbage")] {
        let mut s = resumed_with(&v);
        send(&mut s, Command::BIND, 2, &bind_data("alice", data));
        // MPUSH: ErrorMessage.from(bind).setReason("bind failed").close(): raw, code 0.
        assert_eq!(s.out(), vec![error_packet(Command::BIND, 0, "bind failed", 2)]);
        let events = s.events();
        assert_eq!(close_reason(&events), Some(CloseReason::BindRefused { user_id: "alice".into() }));
        assert!(!events.iter().any(|e| matches!(e, ServerEvent::Bound { .. })), "{events:?}");
        assert!(s.s.is_closed() && s.s.user_id().is_none());
    }
    // The validator saw the bind's data field and the driver's clock.
    assert_eq!(v.0.lock().unwrap()[1], ("alice".into(), Some("ok:someone-else".into()), T0));
}

#[test]
fn an_accepted_bind_is_answered_as_without_a_validator_and_a_rebind_is_not_validated_again() {
    let v = std::sync::Arc::new(Recording::default());
    let mut s = resumed_with(&v);
    send(&mut s, Command::BIND, 2, &bind_data("alice", Some("ok:alice")));
    assert_eq!(s.out(), vec![ok_packet(Command::BIND, "bind success", 2)]);
    assert!(matches!(&s.events()[..], [ServerEvent::Bound { user_id, .. }] if user_id == "alice"));
    // MPUSH only swaps the tags of the user the connection holds, before asking its validator.
    send(&mut s, Command::BIND, 3, &bind_data("alice", None));
    assert_eq!(s.out(), vec![ok_packet(Command::BIND, "bind success", 3)]);
    assert_eq!(v.0.lock().unwrap().len(), 1);
    assert!(matches!(&s.events()[..], [ServerEvent::TagsChanged { .. }]));
    // Another user: MPUSH's unbind answers first, then the validator refuses.
    send(&mut s, Command::BIND, 4, &bind_data("bob", Some("ok:alice")));
    assert_eq!(
        s.out(),
        vec![ok_packet(Command::BIND, "unbind success", 4), error_packet(Command::BIND, 0, "bind failed", 4)]
    );
    let events = s.events();
    assert_eq!(events[0], ServerEvent::Unbound { user_id: "alice".into() });
    assert_eq!(close_reason(&events), Some(CloseReason::BindRefused { user_id: "bob".into() }));
}
