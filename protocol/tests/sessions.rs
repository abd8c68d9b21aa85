//! A client session and a server session driven against each other in memory: every flow
//! of PROTOCOL.md section 5, with time as a plain number and no sockets.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mpush_protocol::message::{HttpMethod, HttpRequest, HttpResponse};
use mpush_protocol::*;

const T0: u64 = 1_764_000_000_000;

fn keys() -> (RsaPublicKey, RsaPrivateKey) {
    let v: serde_json::Value = serde_json::from_str(include_str!("data/mpush-java-reference.json")).unwrap();
    let public = RsaPublicKey::from_base64(v["rsa"]["public_key_x509_b64"].as_str().unwrap()).unwrap();
    let private = RsaPrivateKey::from_base64(v["rsa"]["private_key_pkcs8_b64"].as_str().unwrap()).unwrap();
    (public, private)
}

struct Pair {
    client: ClientSession,
    server: ServerSession,
    server_config: Arc<ServerConfig>,
    store: Arc<MemorySessionStore>,
    now: u64,
    cev: Vec<ClientEvent>,
    sev: Vec<ServerEvent>,
    /// When false, bytes from the server are dropped (a silent network).
    deliver_to_client: bool,
    /// When false, bytes from the client are dropped.
    deliver_to_server: bool,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(|_| {}, |_| {})
    }

    fn with(cfg_client: impl FnOnce(&mut ClientConfig), cfg_server: impl FnOnce(&mut ServerConfig)) -> Pair {
        let (public, private) = keys();
        let mut cc = ClientConfig::new(public, "device-1");
        cc.os_version = "Chrome 156, Linux".into();
        cc.min_heartbeat = 10_000;
        cc.max_heartbeat = 60_000;
        cfg_client(&mut cc);
        let mut sc = ServerConfig::new(private);
        sc.min_heartbeat = 20_000;
        sc.max_heartbeat = 30_000;
        sc.http_proxy_enabled = true;
        cfg_server(&mut sc);
        let server_config = Arc::new(sc);
        Pair {
            client: ClientSession::new(cc, [7; 32]).unwrap(),
            server: ServerSession::new(server_config.clone(), [9; 32], T0),
            server_config,
            store: Arc::new(MemorySessionStore::new(100)),
            now: T0,
            cev: vec![],
            sev: vec![],
            deliver_to_client: true,
            deliver_to_server: true,
        }
    }

    /// Moves bytes both ways until nothing moves, collecting events.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                moved = true;
                if self.deliver_to_server && !self.server.is_closed() {
                    let _ = self.server.handle_input(self.now, &b, &*self.store);
                }
            }
            while let Some(b) = self.server.poll_transmit() {
                moved = true;
                if self.deliver_to_client {
                    self.client.handle_input(self.now, &b).unwrap();
                }
            }
            while let Some(e) = self.client.poll_event() {
                moved = true;
                self.cev.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                moved = true;
                self.sev.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    fn advance_to(&mut self, t: u64) {
        // Fire every timer up to t in order, as a driver would.
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.drive();
                }
                _ => break,
            }
        }
        self.now = t;
        self.drive();
    }

    fn connect(&mut self) {
        self.client.handle_connected(self.now).unwrap();
        self.drive();
    }

    /// Drops the connection and gives the client a fresh server-side connection.
    fn reconnect(&mut self) {
        self.client.handle_disconnected(self.now);
        self.server = ServerSession::new(self.server_config.clone(), [10; 32], self.now);
        self.connect();
    }

    fn take_client(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.cev)
    }
    fn take_server(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.sev)
    }
}

#[test]
fn handshake_negotiates_heartbeat_and_stores_session() {
    let mut p = Pair::new();
    p.connect();
    assert_eq!(p.client.state(), ClientState::Ready);
    let ev = p.take_client();
    let [ClientEvent::HandshakeOk { heartbeat, session }] = ev.as_slice() else { panic!("{ev:?}") };
    // max(serverMin 20 s, min(clientMax 60 s, serverMax 30 s))
    assert_eq!(*heartbeat, 30_000);
    assert_eq!(session.expire_time, (T0 + 86_400_000) as i64);
    let sev = p.take_server();
    let [ServerEvent::HandshakeOk { client, session_id, heartbeat: 30_000 }] = sev.as_slice() else {
        panic!("{sev:?}")
    };
    assert_eq!(session_id, &session.session_id);
    assert_eq!(client.client_type, ClientType::Web);
    // Commas were stripped so MPUSH's 6-field session string survives.
    assert_eq!(client.os_version, "Chrome 156 Linux");
    assert_eq!(p.store.get(session_id).unwrap().to_mpush_string().split(',').count(), 6);
}

#[test]
fn fast_connect_resumes_and_rebinds() {
    let mut p = Pair::new();
    p.connect();
    p.client.bind(p.now, "user-42", None, Some("vip")).unwrap();
    p.drive();
    assert!(p.take_client().iter().any(|e| matches!(e, ClientEvent::Bound { rebind: false, .. })));
    p.take_server();

    p.now += 5_000;
    p.reconnect();
    let ev = p.take_client();
    assert!(matches!(ev[0], ClientEvent::FastConnected { heartbeat: 30_000 }), "{ev:?}");
    // The server restores the session without the user: the client binds again by itself.
    assert!(matches!(&ev[1], ClientEvent::Bound { user_id, rebind: true, .. } if user_id == "user-42"), "{ev:?}");
    let sev = p.take_server();
    assert!(matches!(&sev[0], ServerEvent::FastConnected { client, .. } if client.device_id == "device-1"));
    assert!(matches!(&sev[1], ServerEvent::Bound { user_id, tags: Some(t), .. } if user_id == "user-42" && t == "vip"));
    // The resumed cipher works both ways: a push decrypts.
    p.server.push(p.now, b"after resume".to_vec(), AckMode::None, 0).unwrap();
    p.drive();
    assert!(matches!(&p.take_client()[0], ClientEvent::Push(m) if m.content == b"after resume"));
}

#[test]
fn fast_connect_refused_falls_back_to_handshake() {
    // MPUSH 0.8.0 refuses both with code 0 ("session expired", "invalid device").
    for (stored_in_server, device) in [(false, "device-1"), (true, "device-2")] {
        let mut p = Pair::new();
        p.connect();
        let session = p.client.stored_session().unwrap().clone();
        if !stored_in_server {
            p.store = Arc::new(MemorySessionStore::new(10));
        }
        // A client with another device id presenting this session gets "invalid device".
        let (public, _) = keys();
        let mut cc = ClientConfig::new(public, device);
        cc.min_heartbeat = 10_000;
        p.client = ClientSession::resume(cc, [1; 32], session).unwrap();
        p.take_client();
        p.reconnect();
        let ev = p.take_client();
        assert!(matches!(ev[0], ClientEvent::FastConnectRefused { code: ErrorCode::NONE }), "{ev:?}");
        assert!(matches!(ev[1], ClientEvent::HandshakeOk { .. }), "{ev:?}");
        assert_eq!(p.client.state(), ClientState::Ready);
        assert_ne!(p.client.stored_session().unwrap().session_id, "");
    }
}

#[test]
fn expired_stored_session_goes_straight_to_handshake() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.now += 86_400_001;
    p.reconnect();
    assert!(matches!(p.take_client()[0], ClientEvent::HandshakeOk { .. }));
}

#[test]
fn push_with_each_ack_model() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.take_server();

    let none = p.server.push(p.now, b"n".to_vec(), AckMode::None, 1000).unwrap();
    let auto = p.server.push(p.now, b"a".to_vec(), AckMode::Auto, 1000).unwrap();
    let biz = p.server.push(p.now, vec![b'b'; 20_000], AckMode::Biz, 1000).unwrap();
    p.drive();
    let ev = p.take_client();
    let pushes: Vec<&PushMessage> =
        ev.iter().filter_map(|e| if let ClientEvent::Push(m) = e { Some(m) } else { None }).collect();
    assert_eq!(pushes.len(), 3);
    assert_eq!((pushes[0].session_id, pushes[0].ack), (none, AckMode::None));
    assert_eq!((pushes[1].session_id, pushes[1].ack), (auto, AckMode::Auto));
    // 20,000 bytes is over the server's compression threshold: compressed + encrypted.
    assert_eq!((pushes[2].session_id, pushes[2].ack, pushes[2].content.len()), (biz, AckMode::Biz, 20_000));
    // The auto ack went out when the event was taken; the biz push waits for the app.
    assert_eq!(p.take_server(), vec![ServerEvent::PushAcked { session_id: auto }]);
    p.client.ack(p.now, biz).unwrap();
    p.drive();
    assert_eq!(p.take_server(), vec![ServerEvent::PushAcked { session_id: biz }]);

    // A biz push nobody acks times out on the server.
    let lost = p.server.push(p.now, b"x".to_vec(), AckMode::Biz, 1000).unwrap();
    p.drive();
    p.advance_to(p.now + 1000);
    assert!(p.take_server().contains(&ServerEvent::PushAckTimeout { session_id: lost }));
}

#[test]
fn upstream_push_is_acked_by_server() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.take_server();
    let id = p.client.push(p.now, b"hello server".to_vec(), AckMode::Auto).unwrap().unwrap();
    assert_eq!(p.client.push(p.now, b"fire".to_vec(), AckMode::None).unwrap(), None);
    assert!(matches!(p.client.push(p.now, vec![], AckMode::Biz), Err(ClientError::InvalidArgument(_))));
    p.drive();
    assert_eq!(p.take_client(), vec![ClientEvent::PushAcked { request: id }]);
    let sev = p.take_server();
    assert!(matches!(&sev[0], ServerEvent::UpstreamPush { content, .. } if content == b"hello server"));
    assert!(matches!(&sev[1], ServerEvent::UpstreamPush { content, .. } if content == b"fire"));
}

#[test]
fn kick_reaches_client_and_stops_rebind() {
    let mut p = Pair::new();
    p.connect();
    p.client.bind(p.now, "user-42", None, None).unwrap();
    p.drive();
    p.take_client();
    p.server.kick(p.now).unwrap();
    p.drive();
    assert_eq!(p.take_client(), vec![ClientEvent::Kick { device_id: "device-1".into(), user_id: "user-42".into() }]);
    assert_eq!(p.client.bound_user(), None);
    p.reconnect();
    assert!(!p.take_client().iter().any(|e| matches!(e, ClientEvent::Bound { .. })));
}

#[test]
fn unbind_and_rebinding_another_user() {
    let mut p = Pair::new();
    p.connect();
    p.client.bind(p.now, "a", None, None).unwrap();
    p.client.bind(p.now, "b", Some("alias"), None).unwrap();
    p.drive();
    let sev = p.take_server();
    assert!(sev.contains(&ServerEvent::Unbound { user_id: "a".into() }), "{sev:?}");
    assert_eq!(p.server.user_id(), Some("b"));
    let r = p.client.unbind(p.now).unwrap();
    p.drive();
    assert!(p.take_client().contains(&ClientEvent::Unbound { request: r }));
    assert_eq!(p.server.user_id(), None);
    assert_eq!(p.client.unbind(p.now), Err(ClientError::NotBound));
}

#[test]
fn http_request_and_response() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.take_server();
    let req = HttpRequest {
        method: HttpMethod::Post,
        uri: "http://api.internal/v1/echo".into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"a":1}"#.to_vec(),
    };
    let id = p.client.http_request(p.now, req).unwrap();
    p.drive();
    let sev = p.take_server();
    let [ServerEvent::HttpRequest { session_id, request }] = sev.as_slice() else { panic!("{sev:?}") };
    assert_eq!(*session_id, id.0);
    assert!(request.headers.contains(&("readTimeout".into(), "10000".into())));
    let resp = HttpResponse {
        status_code: 200,
        reason_phrase: Some("OK".into()),
        headers: vec![("Content-Length".into(), "11".into())],
        body: b"{\"ok\":true}".to_vec(),
    };
    p.server.http_response(p.now, *session_id, &resp).unwrap();
    p.drive();
    assert_eq!(p.take_client(), vec![ClientEvent::HttpResponse { request: id, response: resp }]);

    // Proxy-generated errors travel unencrypted and still match the request.
    let id = p.client.http_request(p.now, HttpRequest { uri: "http://x/".into(), ..request.clone() }).unwrap();
    p.drive();
    p.take_server();
    p.server.http_error(p.now, id.0, 502, "Bad Gateway").unwrap();
    p.drive();
    let ev = p.take_client();
    assert!(
        matches!(&ev[0], ClientEvent::HttpResponse { request, response } if *request == id && response.status_code == 502)
    );
    assert!(matches!(
        p.client.http_request(p.now, HttpRequest { uri: "/relative".into(), ..request.clone() }),
        Err(ClientError::InvalidArgument(_))
    ));
}

#[test]
fn http_proxy_disabled_is_error_101_and_close() {
    let mut p = Pair::with(|_| {}, |s| s.http_proxy_enabled = false);
    p.connect();
    p.take_client();
    let req = HttpRequest { method: HttpMethod::Get, uri: "http://x/".into(), headers: vec![], body: vec![] };
    let id = p.client.http_request(p.now, req).unwrap();
    p.drive();
    assert!(p.server.is_closed());
    assert!(p
        .take_server()
        .contains(&ServerEvent::Close { reason: CloseReason::UnsupportedCommand(Command::HTTP_PROXY) }));
    let ev = p.take_client();
    assert!(
        matches!(&ev[0], ClientEvent::RequestFailed { request, error: RequestError::Rejected { code: ErrorCode::UNSUPPORTED_CMD, .. } } if *request == id),
        "{ev:?}"
    );
}

#[test]
fn heartbeats_flow_and_keep_both_sides_alive() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.take_server();
    // Ten minutes of silence from the application: heartbeats every 29 s keep it up.
    p.advance_to(p.now + 600_000);
    assert_eq!(p.client.state(), ClientState::Ready);
    assert!(!p.server.is_closed());
    assert!(p.take_client().is_empty());
    assert!(p.take_server().is_empty());
}

#[test]
fn dead_connection_is_detected_after_two_read_timeouts() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.deliver_to_client = false;
    // Read period = 30 s + 1 s; two misses.
    p.advance_to(p.now + 31_000);
    assert_eq!(p.client.state(), ClientState::Ready);
    p.advance_to(p.now + 31_000);
    assert_eq!(p.client.state(), ClientState::Closing);
    assert_eq!(p.take_client(), vec![ClientEvent::ConnectionDead]);
    p.client.handle_disconnected(p.now);
    assert_eq!(p.client.state(), ClientState::Disconnected);
}

#[test]
fn server_closes_idle_connection_on_third_miss() {
    let mut p = Pair::new();
    p.connect();
    p.take_server();
    p.deliver_to_server = false;
    // MPUSH's check runs every heartbeat from the connection's start: at 10 s (the
    // pre-handshake period, the handshake was just read), then every 30 s; the checks at
    // 40, 70 and 100 s find nothing read for more than 31 s, and the third closes.
    let t0 = p.now;
    p.advance_to(t0 + 99_999);
    assert!(!p.server.is_closed());
    p.advance_to(t0 + 100_000);
    assert_eq!(p.take_server(), vec![ServerEvent::Close { reason: CloseReason::IdleTimeout }]);
}

#[test]
fn request_timeout_is_typed() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.deliver_to_server = false;
    let id = p.client.bind(p.now, "u", None, None).unwrap();
    p.drive();
    p.advance_to(p.now + 10_000);
    assert!(p.take_client().contains(&ClientEvent::RequestFailed { request: id, error: RequestError::Timeout }));
}

#[test]
fn handshake_timeout_and_connection_loss_fail_requests() {
    let mut p = Pair::new();
    p.deliver_to_server = false;
    p.connect();
    p.advance_to(p.now + 10_000);
    assert_eq!(p.take_client(), vec![ClientEvent::ConnectFailed(RequestError::Timeout)]);
    assert_eq!(p.client.state(), ClientState::Closing);

    let mut p = Pair::new();
    p.connect();
    p.deliver_to_server = false;
    let id = p.client.bind(p.now, "u", None, None).unwrap();
    p.client.handle_disconnected(p.now);
    p.drive();
    assert!(p.take_client().contains(&ClientEvent::RequestFailed { request: id, error: RequestError::ConnectionLost }));
}

#[test]
fn replies_match_by_id_and_command() {
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    let id = p.client.bind(p.now, "u", None, None).unwrap();
    p.deliver_to_server = false;
    p.drive();
    // An Ok with the right id but naming another command does not complete the bind.
    let ok = message::OkMessage { cmd: Command::UNBIND, code: 0, data: None };
    let pkt = Packet { cmd: Command::OK, flags: Flags::NONE, session_id: id.0, body: message::Message::encode(&ok) };
    p.client.handle_input(p.now, &pkt.to_bytes()).unwrap();
    // A server push that happens to reuse the id is a push, not the answer.
    let (_, key) = (0, p.client.stored_session().unwrap().clone());
    let cipher = AesCipher::new(key.key, key.iv);
    let push = Packet { cmd: Command::PUSH, flags: Flags::CRYPTO, session_id: id.0, body: cipher.encrypt(b"p") };
    p.client.handle_input(p.now, &push.to_bytes()).unwrap();
    let ev: Vec<ClientEvent> = std::iter::from_fn(|| p.client.poll_event()).collect();
    assert_eq!(ev.len(), 1);
    assert!(matches!(&ev[0], ClientEvent::Push(m) if m.content == b"p"));
    let ok = message::OkMessage { cmd: Command::BIND, code: 0, data: None };
    let pkt = Packet { cmd: Command::OK, flags: Flags::NONE, session_id: id.0, body: message::Message::encode(&ok) };
    p.client.handle_input(p.now, &pkt.to_bytes()).unwrap();
    assert!(matches!(p.client.poll_event(), Some(ClientEvent::Bound { request, .. }) if request == id));
}

#[test]
fn server_error_behaviour() {
    // Repeated handshake: the client RSA-encrypts it, MPUSH decrypts it with the session key,
    // fails: Error 100 and close (server_handshake.rs has the "repeat handshake" case).
    let mut p = Pair::new();
    p.connect();
    p.take_client();
    p.client.handle_disconnected(p.now);
    p.client.set_stored_session(None);
    p.client.handle_connected(p.now).unwrap();
    p.drive();
    let ev = p.take_client();
    assert!(
        matches!(&ev[0], ClientEvent::ConnectFailed(RequestError::Refused { code: ErrorCode::DISPATCH_ERROR, .. })),
        "{ev:?}"
    );
    assert!(p.server.is_closed());

    // Unknown command: Error 101 and close.
    let mut p = Pair::new();
    p.connect();
    let junk = Packet::new(Command(99), 5).to_bytes();
    p.server.handle_input(p.now, &junk, &*p.store).unwrap();
    assert!(p.server.is_closed());
    let out = p.server.poll_transmit().unwrap();
    let (Frame::Packet(err), _) = frame::parse_frame(&out, 1000).unwrap().unwrap() else { panic!() };
    assert_eq!(err.cmd, Command::ERROR);
    let e: message::ErrorMessage = message::Message::decode(&err.body).unwrap();
    assert_eq!((e.cmd, e.code), (Command(99), ErrorCode::UNSUPPORTED_CMD));

    // Bind before handshake: Error and close.
    let (_, private) = keys();
    let mut s = ServerSession::new(Arc::new(ServerConfig::new(private)), [0; 32], T0);
    let store = MemorySessionStore::new(1);
    let bind = message::BindUser { user_id: "u".into(), alias: None, tags: None };
    let bind = Packet { cmd: Command::BIND, flags: Flags::NONE, session_id: 1, body: message::Message::encode(&bind) };
    s.handle_input(T0, &bind.to_bytes(), &store).unwrap();
    assert!(s.is_closed());
    assert!(matches!(s.poll_event(), Some(ServerEvent::Close { reason: CloseReason::NotHandshaked(Command::BIND) })));
}

#[test]
fn malformed_input_gives_typed_errors_never_panics() {
    let (_, private) = keys();
    let cfg = Arc::new(ServerConfig::new(private));
    let store = MemorySessionStore::new(10);
    let fresh = || ServerSession::new(cfg.clone(), [0; 32], T0);

    // Oversized body: refused once the whole frame is in, as MPUSH's decoder does.
    let mut big = vec![0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0];
    big.resize(13 + 65536, 0);
    assert!(matches!(
        fresh().handle_input(T0, &big, &store),
        Err(ServerError::Frame(FrameError::BodyTooLarge { len: 65536, max: 10240 }))
    ));
    // A handshake whose RSA body is garbage, a truncated fast connect: Error 100 and close,
    // as MPUSH's dispatcher does (server_dispatch.rs has the bytes).
    let hs = Packet { cmd: Command::HANDSHAKE, flags: Flags::CRYPTO, session_id: 1, body: vec![1; 128] };
    let fc = Packet { cmd: Command::FAST_CONNECT, flags: Flags::NONE, session_id: 1, body: vec![0, 5, b'a'] };
    for p in [hs, fc] {
        let mut s = fresh();
        assert_eq!(s.handle_input(T0, &p.to_bytes(), &store), Ok(()));
        assert!(s.is_closed());
    }
    // Truncated frames just wait for more bytes.
    assert!(fresh().handle_input(T0, &[0, 0, 0, 9, 2, 0], &store).is_ok());

    // The client: garbage after the handshake.
    let mut p = Pair::new();
    p.connect();
    let bad = Packet { cmd: Command::PUSH, flags: Flags::CRYPTO, session_id: 3, body: vec![0; 15] };
    assert!(matches!(p.client.handle_input(p.now, &bad.to_bytes()), Err(ClientError::Crypto { .. })));
    assert_eq!(p.client.state(), ClientState::Closing);
    let mut p = Pair::with(|c| c.max_packet_size = 100, |_| {});
    p.connect();
    assert!(matches!(p.client.handle_input(p.now, &[0, 0, 1, 0]), Err(ClientError::Frame(_))));

    // Deterministic pseudo-random garbage into fresh sessions of both kinds.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..300 {
        let len = (round % 60) + 1;
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        if round % 3 == 0 && bytes.len() >= 5 {
            // Plausible headers get further into the decoders.
            bytes[..4].copy_from_slice(&((len as u32).saturating_sub(13)).to_be_bytes());
            bytes[4] = (round % 26) as u8;
        }
        let _ = fresh().handle_input(T0, &bytes, &store);
        let mut p = Pair::new();
        p.connect();
        let _ = p.client.handle_input(p.now, &bytes);
    }
}
