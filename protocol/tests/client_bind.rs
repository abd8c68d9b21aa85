//! Bind, unbind and kicks as the Java client does them, and where this session deliberately
//! differs (see the `client` module docs): another user is unbound first, unbind carries the
//! user id only, a timed-out bind is not believed, a kick ends the automatic re-bind.
#![allow(clippy::unwrap_used)]

mod client_common;

use client_common::*;
use mpush_protocol::message::{BindUser, Kick, Message};
use mpush_protocol::*;

fn bind_user(plain: &[u8]) -> BindUser {
    BindUser::decode(plain).unwrap()
}

#[test]
fn binding_another_user_unbinds_the_first_with_its_user_id_only() {
    let mut p = Pair::new(|_| {});
    let a = p.client.bind(p.now, "alice", Some("al"), Some("vip")).unwrap();
    p.drive();
    p.take_sent();
    let b = p.client.bind(p.now, "bob", None, Some("beta")).unwrap();
    p.drive();
    let sent = p.take_sent();
    let [(unbind, ub), (bind, bb)] = &sent[..] else { panic!("{sent:?}") };
    assert_eq!((unbind.cmd, bind.cmd), (Command::UNBIND, Command::BIND));
    assert_eq!(bind_user(ub), BindUser { user_id: "alice".into(), alias: None, tags: None });
    assert_eq!(bind_user(bb), BindUser { user_id: "bob".into(), alias: None, tags: Some("beta".into()) });
    assert_eq!(bind.session_id, b.0);
    assert!(unbind.session_id > a.0 && unbind.session_id < b.0);
    let ev = p.take_client();
    assert!(ev.contains(&ClientEvent::Bound { request: a, user_id: "alice".into(), rebind: false }), "{ev:?}");
    assert!(ev.contains(&ClientEvent::Bound { request: b, user_id: "bob".into(), rebind: false }), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, ClientEvent::Unbound { .. })), "the internal unbind is silent: {ev:?}");
    let sev = p.take_server();
    assert!(sev.contains(&ServerEvent::Unbound { user_id: "alice".into() }), "{sev:?}");
    assert_eq!(p.server.user_id(), Some("bob"));
    assert_eq!(p.client.bound_user(), Some("bob"));

    // Binding the same user again (new tags) sends no unbind.
    p.client.bind(p.now, "bob", None, Some("gamma")).unwrap();
    p.drive();
    let sent = p.take_sent();
    assert_eq!(sent.iter().map(|(p, _)| p.cmd).collect::<Vec<_>>(), vec![Command::BIND]);
}

#[test]
fn a_bind_answered_twice_settles_on_the_bind_answer() {
    // MPUSH's BindUserHandler, binding a different user than the one it holds: unbind(message)
    // answers "unbind success" on the bind's own id, then the bind answers "bind success".
    let mut s = ready();
    let id = s.bind(T0, "bob", None, None).unwrap();
    transmits(&mut s);
    s.handle_input(T0, &ok(id.0, Command::BIND, "unbind success")).unwrap();
    assert!(events(&mut s).is_empty(), "not bound yet");
    // (An implicit unbind that failed is not the bind's failure either.)
    s.handle_input(T0, &error(id.0, Command::BIND, ErrorCode(0), "unbind failed")).unwrap();
    assert!(events(&mut s).is_empty());
    s.handle_input(T0, &ok(id.0, Command::BIND, "bind success")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::Bound { request: id, user_id: "bob".into(), rebind: false }]);
}

#[test]
fn unbind_sends_the_user_id_only_and_needs_a_bound_user() {
    let mut s = ready();
    assert_eq!(s.unbind(T0), Err(ClientError::NotBound));
    s.bind(T0, "user-42", Some("alias"), Some("t1,t2")).unwrap();
    transmits(&mut s);
    let id = s.unbind(T0).unwrap();
    let p = packet(&transmits(&mut s)[0]);
    assert_eq!((p.cmd, p.session_id), (Command::UNBIND, id.0));
    assert_eq!(hex::encode(plain(&p)), "0007757365722d343200000000");
    s.handle_input(T0, &ok(id.0, Command::UNBIND, "unbind success")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::Unbound { request: id }]);
    assert_eq!(s.bound_user(), None);
    assert_eq!(s.unbind(T0), Err(ClientError::NotBound));
}

#[test]
fn a_bind_that_times_out_is_not_believed_and_is_bound_again_later() {
    let mut p = Pair::new(|c| c.request_timeout = 3000);
    p.deliver_to_server = false;
    let id = p.client.bind(p.now, "carol", None, None).unwrap();
    p.drive();
    p.advance_to(p.now + 3000);
    assert_eq!(p.take_client(), vec![ClientEvent::RequestFailed { request: id, error: RequestError::Timeout }]);
    // Still wanted: the session keeps it and does not claim it is confirmed.
    assert_eq!(p.client.bound_user(), Some("carol"));
    assert_eq!(p.server.user_id(), None);
    // A late answer is still reported.
    p.client.handle_input(p.now, &ok(id.0, Command::BIND, "bind success")).unwrap();
    p.drive();
    assert_eq!(p.take_client(), vec![ClientEvent::Bound { request: id, user_id: "carol".into(), rebind: false }]);
    // The next connection binds it again.
    p.reconnect();
    assert!(p
        .take_client()
        .iter()
        .any(|e| matches!(e, ClientEvent::Bound { user_id, rebind: true, .. } if user_id == "carol")));
    assert_eq!(p.server.user_id(), Some("carol"));
}

#[test]
fn a_rejected_bind_is_forgotten() {
    let mut s = ready();
    let id = s.bind(T0, "dave", None, None).unwrap();
    transmits(&mut s);
    s.handle_input(T0, &error(id.0, Command::BIND, ErrorCode(0), "bind failed")).unwrap();
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::RequestFailed {
            request: id,
            error: RequestError::Rejected { code: ErrorCode(0), reason: Some("bind failed".into()) }
        }]
    );
    assert_eq!(s.bound_user(), None);
}

#[test]
fn a_kick_ends_the_automatic_rebind_and_a_new_bind_takes_the_user_back() {
    let mut p = Pair::new(|_| {});
    p.client.bind(p.now, "erin", None, Some("vip")).unwrap();
    p.drive();
    p.take_client();
    p.server.kick(p.now).unwrap();
    p.drive();
    assert_eq!(p.take_client(), vec![ClientEvent::Kick { device_id: "device-1".into(), user_id: "erin".into() }]);
    assert_eq!(p.client.bound_user(), None);
    // Unbinding from here could take the route of the connection that kicked us.
    assert_eq!(p.client.unbind(p.now), Err(ClientError::NotBound));
    p.take_sent();

    // Binding the same user again on this connection unbinds the stale one first: MPUSH
    // answers a bind of the user it still holds with "bind success" without routing it here.
    let id = p.client.bind(p.now, "erin", None, None).unwrap();
    p.drive();
    let cmds: Vec<Command> = p.take_sent().iter().map(|(p, _)| p.cmd).collect();
    assert_eq!(cmds, vec![Command::UNBIND, Command::BIND]);
    assert!(p.take_client().contains(&ClientEvent::Bound { request: id, user_id: "erin".into(), rebind: false }));
    assert_eq!(p.client.bound_user(), Some("erin"));
}

#[test]
fn after_a_kick_the_next_connection_binds_nobody() {
    let mut p = Pair::new(|_| {});
    p.client.bind(p.now, "frank", None, None).unwrap();
    p.drive();
    p.server.kick(p.now).unwrap();
    p.drive();
    p.take_client();
    p.reconnect();
    let ev = p.take_client();
    assert!(matches!(&ev[..], [ClientEvent::FastConnected { .. }]), "{ev:?}");
    assert_eq!(p.server.user_id(), None);
}

#[test]
fn a_stale_kick_for_a_previous_user_keeps_the_current_one() {
    let mut s = ready();
    s.bind(T0, "old", None, None).unwrap();
    s.bind(T0, "new", None, None).unwrap();
    transmits(&mut s);
    let k = Kick { device_id: "device-1".into(), user_id: "old".into() };
    s.handle_input(T0, &sealed(Command::KICK, 0, k.encode())).unwrap();
    assert!(matches!(&events(&mut s)[..], [ClientEvent::Kick { .. }]));
    assert_eq!(s.bound_user(), Some("new"));
    // A kick naming the current user (MPUSH's KickUserMessage) does end it.
    let k = Kick { device_id: "device-1".into(), user_id: "new".into() };
    s.handle_input(T0, &sealed(Command::KICK, 0, k.encode())).unwrap();
    assert_eq!(s.bound_user(), None);
}
