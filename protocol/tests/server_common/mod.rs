//! Helpers for the `server_*` tests: a server session driven by hand with packets as the Java
//! client sends them (the reference vectors where they exist), and its output decoded.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use mpush_protocol::frame::parse_frame;
use mpush_protocol::message::{ErrorMessage, FastConnect, Handshake, Message, OkMessage};
use mpush_protocol::*;
use rand_chacha::rand_core::SeedableRng;
use serde_json::Value;

/// Before the vectors' session expires (1764000000000).
pub const T0: u64 = 1_763_000_000_000;
/// The vectors' resumable session id and its expiry.
pub const SESSION_ID: &str = "5d41402abc4b2a76b9719d911017c592";
pub const SESSION_EXPIRE: i64 = 1_764_000_000_000;

pub fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/mpush-java-reference.json")).unwrap()
}

pub fn keys() -> (RsaPublicKey, RsaPrivateKey) {
    let v = vectors();
    let public = RsaPublicKey::from_base64(v["rsa"]["public_key_x509_b64"].as_str().unwrap()).unwrap();
    let private = RsaPrivateKey::from_base64(v["rsa"]["private_key_pkcs8_b64"].as_str().unwrap()).unwrap();
    (public, private)
}

/// The named message vector's packet bytes.
pub fn vector_packet(name: &str) -> Vec<u8> {
    let v = vectors();
    let m = v["messages"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    hex::decode(m["packet_hex"].as_str().unwrap()).unwrap()
}

/// The vectors' session key and iv (they encrypt every message vector).
pub fn key_iv() -> ([u8; 16], [u8; 16]) {
    let s = StoredSession::parse_persistent(vectors()["persistent_session"]["encoded"].as_str().unwrap()).unwrap();
    (s.key, s.iv)
}

pub fn cipher() -> AesCipher {
    let (k, iv) = key_iv();
    AesCipher::new(k, iv)
}

/// MPUSH's defaults, with the HTTP proxy on.
pub fn config() -> ServerConfig {
    let mut c = ServerConfig::new(keys().1);
    c.http_proxy_enabled = true;
    c
}

pub fn packet(cmd: Command, flags: Flags, session_id: i32, body: Vec<u8>) -> Vec<u8> {
    Packet { cmd, flags, session_id, body }.to_bytes()
}

/// A server session with a store and its outputs collected.
pub struct Server {
    pub s: ServerSession,
    pub store: Arc<MemorySessionStore>,
    pub now: u64,
}

impl Server {
    pub fn new() -> Server {
        Server::with(|_| {})
    }

    pub fn with(cfg: impl FnOnce(&mut ServerConfig)) -> Server {
        let mut c = config();
        cfg(&mut c);
        let store = Arc::new(MemorySessionStore::new(100));
        store.put(
            SESSION_ID,
            ResumableSession {
                os_name: "web".into(),
                os_version: "Chrome 156".into(),
                client_version: "1.0.0".into(),
                device_id: "device-1".into(),
                key: key_iv().0,
                iv: key_iv().1,
                expire_time: SESSION_EXPIRE,
            },
        );
        Server { s: ServerSession::new(Arc::new(c), [5; 32], T0), store, now: T0 }
    }

    /// Fast connected with the vectors' session (their `fast_connect` packet, answered with
    /// exactly their `fast_connect_ok`): the session cipher is the vectors'.
    pub fn resumed() -> Server {
        let mut s = Server::new();
        s.input(&vector_packet("fast_connect"));
        assert_eq!(s.out(), vec![vector_packet("fast_connect_ok")]);
        assert!(matches!(s.events()[..], [ServerEvent::FastConnected { heartbeat: 180_000, .. }]));
        s
    }

    pub fn input(&mut self, bytes: &[u8]) {
        self.s.handle_input(self.now, bytes, &*self.store).unwrap();
    }

    pub fn try_input(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        self.s.handle_input(self.now, bytes, &*self.store)
    }

    /// Every transmit, one packet each.
    pub fn out(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.s.poll_transmit()).collect()
    }

    pub fn events(&mut self) -> Vec<ServerEvent> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    pub fn advance_to(&mut self, t: u64) {
        while let Some(at) = self.s.poll_timeout().filter(|at| *at <= t) {
            self.now = self.now.max(at);
            self.s.handle_timeout(self.now);
        }
        self.now = t;
    }
}

/// The one packet in `bytes`.
pub fn parse(bytes: &[u8]) -> Packet {
    match parse_frame(bytes, 1 << 20).unwrap().unwrap() {
        (Frame::Packet(p), n) if n == bytes.len() => p,
        other => panic!("not one packet: {other:?}"),
    }
}

pub fn error_packet(cmd: Command, code: u8, reason: &str, session_id: i32) -> Vec<u8> {
    let m = ErrorMessage { cmd, code: ErrorCode(code), reason: Some(reason.into()), data: None };
    packet(Command::ERROR, Flags::NONE, session_id, m.encode())
}

pub fn ok_packet(cmd: Command, data: &str, session_id: i32) -> Vec<u8> {
    let m = OkMessage { cmd, code: 0, data: Some(data.into()) };
    packet(Command::OK, Flags::NONE, session_id, m.encode())
}

/// MPUSH's Error 100 for a packet of `cmd` with `session_id`.
pub fn dispatch_error(cmd: Command, session_id: i32) -> Vec<u8> {
    error_packet(cmd, 100, "handle message error", session_id)
}

/// A handshake body as the Java client writes it.
pub fn handshake(device_id: &str, client_key: &[u8], iv: &[u8]) -> Handshake {
    Handshake {
        device_id: device_id.into(),
        os_name: "web".into(),
        os_version: "Chrome 156".into(),
        client_version: "1.0.0".into(),
        iv: iv.to_vec(),
        client_key: client_key.to_vec(),
        min_heartbeat: 180_000,
        max_heartbeat: 240_000,
        timestamp: T0 as i64,
    }
}

/// `plain` RSA-encrypted with the vectors' public key, as a Handshake packet body.
pub fn rsa(plain: &[u8]) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
    keys().0.encrypt(&mut rng, plain).unwrap()
}

pub fn fast_connect(session_id: &str, device_id: &str) -> FastConnect {
    FastConnect { session_id: session_id.into(), device_id: device_id.into(), min_heartbeat: 0, max_heartbeat: 0 }
}

/// The close reason the session reported, if any.
pub fn close_reason(events: &[ServerEvent]) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        ServerEvent::Close { reason } => Some(reason.clone()),
        _ => None,
    })
}
