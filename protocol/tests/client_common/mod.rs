//! Helpers for the `client_*` tests: a client session resumed with the Java reference
//! vectors' stored session (so its packets are byte-comparable with the vectors), packets as
//! MPUSH sends them, and the client's output decoded.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use mpush_protocol::frame::parse_frame;
use mpush_protocol::message::{ErrorMessage, Message, OkMessage};
use mpush_protocol::*;
use serde_json::Value;

/// Before the vectors' session expires (1764000000000).
pub const T0: u64 = 1_763_000_000_000;

pub fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/mpush-java-reference.json")).unwrap()
}

pub fn keys() -> (RsaPublicKey, RsaPrivateKey) {
    let v = vectors();
    let public = RsaPublicKey::from_base64(v["rsa"]["public_key_x509_b64"].as_str().unwrap()).unwrap();
    let private = RsaPrivateKey::from_base64(v["rsa"]["private_key_pkcs8_b64"].as_str().unwrap()).unwrap();
    (public, private)
}

/// The named message vector.
pub fn vector(name: &str) -> Value {
    vectors()["messages"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone()
}

pub fn vector_packet(name: &str) -> Vec<u8> {
    hex::decode(vector(name)["packet_hex"].as_str().unwrap()).unwrap()
}

/// The stored session of the vectors (its key and iv encrypt every message vector).
pub fn stored() -> StoredSession {
    let v = vectors();
    StoredSession::parse_persistent(v["persistent_session"]["encoded"].as_str().unwrap()).unwrap()
}

pub fn cipher() -> AesCipher {
    let s = stored();
    AesCipher::new(s.key, s.iv)
}

/// The configuration the vectors were made with: device-1, heartbeat 180000..240000.
pub fn config() -> ClientConfig {
    let mut c = ClientConfig::new(keys().0, "device-1");
    c.min_heartbeat = 180_000;
    c.max_heartbeat = 240_000;
    c
}

/// A client resumed with the vectors' session, connected and fast-connected: its next request
/// id is 2, its cipher the vectors'.
pub fn ready_with(cfg: impl FnOnce(&mut ClientConfig)) -> ClientSession {
    let mut c = config();
    cfg(&mut c);
    let mut s = ClientSession::resume(c, [3; 32], stored()).unwrap();
    s.handle_connected(T0).unwrap();
    assert_eq!(transmits(&mut s), vec![vector_packet("fast_connect")]);
    s.handle_input(T0, &vector_packet("fast_connect_ok")).unwrap();
    assert_eq!(events(&mut s), vec![ClientEvent::FastConnected { heartbeat: 180_000 }]);
    assert_eq!(s.state(), ClientState::Ready);
    s
}

pub fn ready() -> ClientSession {
    ready_with(|_| {})
}

pub fn transmits(s: &mut ClientSession) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

pub fn events(s: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// One whole packet.
pub fn packet(bytes: &[u8]) -> Packet {
    match parse_frame(bytes, 1 << 20).unwrap() {
        Some((Frame::Packet(p), n)) if n == bytes.len() => p,
        other => panic!("not one packet: {other:?}"),
    }
}

/// A packet's plaintext body under the vectors' cipher.
pub fn plain(p: &Packet) -> Vec<u8> {
    body::open(&p.body, p.flags, Some(&cipher()), 1 << 20).unwrap()
}

/// MPUSH's Ok, sent raw: `OkMessage.from(request).setData(..).sendRaw()`.
pub fn ok(id: i32, cmd: Command, data: &str) -> Vec<u8> {
    let m = OkMessage { cmd, code: 0, data: Some(data.into()) };
    Packet { cmd: Command::OK, flags: Flags::NONE, session_id: id, body: m.encode() }.to_bytes()
}

/// MPUSH's Error, sent raw.
pub fn error(id: i32, cmd: Command, code: ErrorCode, reason: &str) -> Vec<u8> {
    let m = ErrorMessage { cmd, code, reason: Some(reason.into()), data: None };
    Packet { cmd: Command::ERROR, flags: Flags::NONE, session_id: id, body: m.encode() }.to_bytes()
}

/// A session-encrypted packet from the server.
pub fn sealed(cmd: Command, id: i32, plain: Vec<u8>) -> Vec<u8> {
    let (body, flags) = body::seal(plain, Some(&cipher()), 10_240);
    Packet { cmd, flags, session_id: id, body }.to_bytes()
}

/// A client and an in-memory server session (the project's gateway core), bytes moved between
/// them until nothing moves.
pub struct Pair {
    pub client: ClientSession,
    pub server: ServerSession,
    pub config: Arc<ServerConfig>,
    pub store: Arc<MemorySessionStore>,
    pub now: u64,
    pub cev: Vec<ClientEvent>,
    pub sev: Vec<ServerEvent>,
    /// Every packet the client sent, in order.
    pub sent: Vec<Vec<u8>>,
    pub deliver_to_server: bool,
}

impl Pair {
    pub fn new(cfg: impl FnOnce(&mut ClientConfig)) -> Pair {
        let (public, private) = keys();
        let mut cc = ClientConfig::new(public, "device-1");
        cfg(&mut cc);
        let mut sc = ServerConfig::new(private);
        sc.http_proxy_enabled = true;
        let config = Arc::new(sc);
        let mut p = Pair {
            client: ClientSession::new(cc, [7; 32]).unwrap(),
            server: ServerSession::new(config.clone(), [9; 32], T0),
            config,
            store: Arc::new(MemorySessionStore::new(10)),
            now: T0,
            cev: vec![],
            sev: vec![],
            sent: vec![],
            deliver_to_server: true,
        };
        p.client.handle_connected(p.now).unwrap();
        p.drive();
        assert_eq!(p.client.state(), ClientState::Ready);
        p.cev.clear();
        p.sev.clear();
        p.sent.clear();
        p
    }

    pub fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                moved = true;
                if self.deliver_to_server && !self.server.is_closed() {
                    let _ = self.server.handle_input(self.now, &b, &*self.store);
                }
                self.sent.push(b);
            }
            while let Some(b) = self.server.poll_transmit() {
                moved = true;
                self.client.handle_input(self.now, &b).unwrap();
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

    /// Fires the client's timers up to `t`.
    pub fn advance_to(&mut self, t: u64) {
        while let Some(n) = self.client.poll_timeout().filter(|n| *n <= t) {
            self.now = self.now.max(n);
            self.client.handle_timeout(self.now);
            self.drive();
        }
        self.now = t;
        self.drive();
    }

    /// A new connection to a fresh server session; the client fast-connects.
    pub fn reconnect(&mut self) {
        self.client.handle_disconnected(self.now);
        self.server = ServerSession::new(self.config.clone(), [10; 32], self.now);
        self.deliver_to_server = true;
        self.client.handle_connected(self.now).unwrap();
        self.drive();
    }

    /// The client's packets sent since the last call, with their plaintext bodies under the
    /// current session key.
    pub fn take_sent(&mut self) -> Vec<(Packet, Vec<u8>)> {
        let key = self.client.stored_session().unwrap().clone();
        let c = AesCipher::new(key.key, key.iv);
        std::mem::take(&mut self.sent)
            .iter()
            .filter(|b| b.len() > 1)
            .map(|b| {
                let p = packet(b);
                let plain = body::open(&p.body, p.flags, Some(&c), 1 << 20).unwrap();
                (p, plain)
            })
            .collect()
    }

    pub fn take_client(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.cev)
    }

    pub fn take_server(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.sev)
    }
}
