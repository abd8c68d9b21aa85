//! The connection-server side of MPUSH as a sans-IO state machine, for the gateway.
//!
//! It handles the handshake (RSA private key), fast connect against a [`SessionStore`],
//! heartbeat negotiation and idle detection, bind/unbind, pushes with ack tracking, upstream
//! pushes, the HTTP-proxy plumbing, and MPUSH's error behaviour. Routing users to
//! connections, performing HTTP requests and storing sessions for real are the driver's job.

use std::collections::VecDeque;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::codec::DecodeError;
use crate::crypto::{mix_key, AesCipher, CryptoError, RsaPrivateKey};
use crate::frame::{Command, Flags, Frame, FrameError, Packet};
use crate::message::{
    BindUser, ErrorCode, ErrorMessage, FastConnect, FastConnectOk, Handshake, HandshakeOk, HttpRequest, HttpResponse,
    Kick, Message, OkMessage,
};
use crate::session::{AckMode, ClientType, ResumableSession, SessionStore};
use crate::wire::Wire;

/// Connection-server settings, MPUSH's defaults from `Default`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The RSA private key (`mp.security.private-key`).
    pub private_key: RsaPrivateKey,
    /// `mp.core.min-heartbeat`, ms (default 3 min).
    pub min_heartbeat: i32,
    /// `mp.core.max-heartbeat`, ms (default 3 min).
    pub max_heartbeat: i32,
    /// `mp.core.max-packet-size`: largest inbound body (default 10240).
    pub max_packet_size: usize,
    /// `mp.core.compress-threshold`: outbound bodies longer than this are compressed (default 10240).
    pub compress_threshold: usize,
    /// Largest inflated inbound body, against zip bombs (default 1 MiB).
    pub max_inflated_size: usize,
    /// `mp.core.session-expired-time`: resumable session lifetime, ms (default 1 day).
    pub session_expire: u64,
    /// Read-idle periods tolerated before the connection is closed (MPUSH: 2, closing on the 3rd).
    pub max_heartbeat_timeouts: u32,
    /// `mp.http.proxy-enabled`: handle cmd 12 (default false: Error 101 and close, as MPUSH).
    pub http_proxy_enabled: bool,
    /// How long an unauthenticated connection may stay without a handshake, ms (default 1 min).
    pub handshake_timeout: u64,
}

impl ServerConfig {
    /// MPUSH's defaults around the given key.
    pub fn new(private_key: RsaPrivateKey) -> ServerConfig {
        ServerConfig {
            private_key,
            min_heartbeat: 180_000,
            max_heartbeat: 180_000,
            max_packet_size: crate::frame::DEFAULT_MAX_BODY,
            compress_threshold: 10_240,
            max_inflated_size: 1 << 20,
            session_expire: 86_400_000,
            max_heartbeat_timeouts: 2,
            http_proxy_enabled: false,
            handshake_timeout: 60_000,
        }
    }

    /// MPUSH's rule: `max(serverMin, min(clientMax, serverMax))`.
    pub fn negotiate_heartbeat(&self, client_max: i32) -> i32 {
        self.min_heartbeat.max(client_max.min(self.max_heartbeat))
    }
}

/// What the driver learns from the session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A handshake completed; the resumable session was stored.
    HandshakeOk {
        /// Who connected.
        client: ClientInfo,
        /// The resumable session id handed to the client.
        session_id: String,
        /// Negotiated heartbeat, ms.
        heartbeat: i32,
    },
    /// A fast connect restored a stored session (without its bound user).
    FastConnected {
        /// Who connected.
        client: ClientInfo,
        /// Negotiated heartbeat, ms.
        heartbeat: i32,
    },
    /// The client bound a user; any earlier user of this connection was unbound first
    /// (an [`ServerEvent::Unbound`] precedes this event).
    Bound {
        /// User id.
        user_id: String,
        /// Alias (MPUSH's bind `data`).
        alias: Option<String>,
        /// Tags.
        tags: Option<String>,
    },
    /// The connection's user was unbound.
    Unbound {
        /// User id.
        user_id: String,
    },
    /// The client pushed content upstream (already auto-acked if it asked for it).
    UpstreamPush {
        /// Header session id.
        session_id: i32,
        /// Content.
        content: Vec<u8>,
        /// The packet's flags.
        flags: Flags,
    },
    /// The client acknowledged a push sent with [`ServerSession::push`].
    PushAcked {
        /// The push's session id.
        session_id: i32,
    },
    /// A push's ack did not arrive in time.
    PushAckTimeout {
        /// The push's session id.
        session_id: i32,
    },
    /// The client asks the server to perform an HTTP request; answer with
    /// [`ServerSession::http_response`] or [`ServerSession::http_error`].
    HttpRequest {
        /// Header session id to answer with.
        session_id: i32,
        /// The request.
        request: HttpRequest,
    },
    /// The session is over: flush the transmit queue, then close the connection.
    Close {
        /// Why.
        reason: CloseReason,
    },
}

/// Who is on the other end, from the handshake or the restored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Device id.
    pub device_id: String,
    /// OS name.
    pub os_name: String,
    /// OS version.
    pub os_version: String,
    /// Client version.
    pub client_version: String,
    /// Client type derived from the OS name.
    pub client_type: ClientType,
}

impl ClientInfo {
    /// Client info with the client type derived from the OS name, as MPUSH does.
    pub fn new(device_id: String, os_name: String, os_version: String, client_version: String) -> ClientInfo {
        ClientInfo { client_type: ClientType::from_os_name(&os_name), device_id, os_name, os_version, client_version }
    }
}

/// Why the server session closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Nothing read for too many heartbeat periods.
    IdleTimeout,
    /// No handshake within the handshake timeout.
    HandshakeTimeout,
    /// An unsupported command (Error 101 was sent).
    UnsupportedCommand(Command),
    /// A request that needs a handshake came before it.
    NotHandshaked(Command),
    /// A request with invalid parameters (an Error was sent).
    InvalidRequest(&'static str),
    /// The driver asked to close.
    Requested,
}

/// An error from [`ServerSession::handle_input`]; the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The byte stream lost its framing (bad or oversized length).
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// A body could not be decrypted or inflated.
    #[error("{cmd:?} body: {source}")]
    Crypto {
        /// The packet's command.
        cmd: Command,
        /// What failed.
        source: CryptoError,
    },
    /// A body's fields are malformed.
    #[error("{cmd:?} body: {source}")]
    Decode {
        /// The packet's command.
        cmd: Command,
        /// What failed.
        source: DecodeError,
    },
    /// The session is closed; no more input is accepted.
    #[error("session closed")]
    Closed,
}

/// API misuse of the server session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerUsageError {
    /// The client has not completed a handshake or fast connect.
    #[error("client has not handshaked")]
    NotHandshaked,
    /// The session is closed.
    #[error("session closed")]
    Closed,
}

struct PendingAck {
    session_id: i32,
    deadline: u64,
}

/// One client connection, server side.
pub struct ServerSession {
    config: Arc<ServerConfig>,
    rng: ChaCha20Rng,
    wire: Wire,
    client: Option<ClientInfo>,
    heartbeat: i32,
    user: Option<BindUser>,
    next_push_id: i32,
    pending_acks: Vec<PendingAck>,
    idle_misses: u32,
    idle_deadline: u64,
    events: VecDeque<ServerEvent>,
    closed: bool,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession").field("client", &self.client).field("closed", &self.closed).finish()
    }
}

impl ServerSession {
    /// A session for a connection accepted at `now`; `seed` feeds the session's key generator
    /// and must come from a cryptographic source.
    pub fn new(config: Arc<ServerConfig>, seed: [u8; 32], now: u64) -> ServerSession {
        let wire = Wire::new(config.max_packet_size, config.compress_threshold, config.max_inflated_size);
        let idle_deadline = now + config.handshake_timeout;
        ServerSession {
            heartbeat: config.max_heartbeat,
            config,
            rng: ChaCha20Rng::from_seed(seed),
            wire,
            client: None,
            user: None,
            next_push_id: 1,
            pending_acks: Vec::new(),
            idle_misses: 0,
            idle_deadline,
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// The client, once it has handshaked or fast connected.
    pub fn client(&self) -> Option<&ClientInfo> {
        self.client.as_ref()
    }

    /// The bound user id, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.user_id.as_str())
    }

    /// The negotiated heartbeat, ms.
    pub fn heartbeat(&self) -> i32 {
        self.heartbeat
    }

    /// Whether the session has closed (after its final transmits are flushed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes received from the client, in any split.
    pub fn handle_input(&mut self, now: u64, bytes: &[u8], store: &dyn SessionStore) -> Result<(), ServerError> {
        if self.closed {
            return Err(ServerError::Closed);
        }
        self.wire.last_read = now;
        self.idle_misses = 0;
        if self.client.is_some() {
            self.idle_deadline = now + self.read_idle_period();
        }
        self.wire.decoder.feed(bytes);
        while !self.closed {
            let Some(frame) = self.wire.decoder.next_frame()? else { break };
            match frame {
                Frame::Heartbeat => self.wire.send_heartbeat(now),
                Frame::Packet(p) => self.handle_packet(now, p, store)?,
            }
        }
        Ok(())
    }

    fn read_idle_period(&self) -> u64 {
        self.heartbeat.max(0) as u64 + 1000
    }

    fn handle_packet(&mut self, now: u64, p: Packet, store: &dyn SessionStore) -> Result<(), ServerError> {
        let cmd = p.cmd;
        match cmd {
            Command::HEARTBEAT => self.wire.send_heartbeat(now),
            Command::HANDSHAKE => self.on_handshake(now, p, store)?,
            Command::FAST_CONNECT => self.on_fast_connect(now, p, store)?,
            Command::BIND | Command::UNBIND => {
                if !self.require_handshake(now, &p) {
                    return Ok(());
                }
                let body = self.wire.open(&p).map_err(|source| ServerError::Crypto { cmd, source })?;
                let m = BindUser::decode(&body).map_err(|source| ServerError::Decode { cmd, source })?;
                if cmd == Command::BIND {
                    self.on_bind(now, p.session_id, m)
                } else {
                    self.on_unbind(now, p.session_id, m)
                }
            }
            Command::PUSH => {
                if !self.require_handshake(now, &p) {
                    return Ok(());
                }
                let content = self.wire.open(&p).map_err(|source| ServerError::Crypto { cmd, source })?;
                if p.flags.contains(Flags::AUTO_ACK) {
                    // MPUSH's ClientPushHandler acks an auto-ack push with a raw Ack.
                    self.wire.send_packet(now, Packet::new(Command::ACK, p.session_id));
                }
                self.events.push_back(ServerEvent::UpstreamPush { session_id: p.session_id, content, flags: p.flags });
            }
            Command::ACK => {
                if let Some(i) = self.pending_acks.iter().position(|a| a.session_id == p.session_id) {
                    self.pending_acks.swap_remove(i);
                    self.events.push_back(ServerEvent::PushAcked { session_id: p.session_id });
                }
            }
            Command::HTTP_PROXY if self.config.http_proxy_enabled => {
                if !self.require_handshake(now, &p) {
                    return Ok(());
                }
                let body = self.wire.open(&p).map_err(|source| ServerError::Crypto { cmd, source })?;
                let request = HttpRequest::decode(&body).map_err(|source| ServerError::Decode { cmd, source })?;
                self.events.push_back(ServerEvent::HttpRequest { session_id: p.session_id, request });
            }
            _ => {
                self.send_error(now, &p, ErrorCode::UNSUPPORTED_CMD, "unsupported command");
                self.close(CloseReason::UnsupportedCommand(cmd));
            }
        }
        Ok(())
    }

    fn require_handshake(&mut self, now: u64, p: &Packet) -> bool {
        if self.client.is_some() {
            return true;
        }
        self.send_error(now, p, ErrorCode::DISPATCH_ERROR, "not handshake");
        self.close(CloseReason::NotHandshaked(p.cmd));
        false
    }

    fn send_error(&mut self, now: u64, p: &Packet, code: ErrorCode, reason: &str) {
        let m = ErrorMessage { cmd: p.cmd, code, reason: Some(reason.to_owned()), data: None };
        self.wire.send_raw(now, Command::ERROR, p.session_id, &m);
    }

    fn send_ok(&mut self, now: u64, p_cmd: Command, session_id: i32, data: &str) {
        let m = OkMessage { cmd: p_cmd, code: 0, data: Some(data.to_owned()) };
        self.wire.send_raw(now, Command::OK, session_id, &m);
    }

    fn on_handshake(&mut self, now: u64, p: Packet, store: &dyn SessionStore) -> Result<(), ServerError> {
        let cmd = p.cmd;
        let plain = if p.flags.contains(Flags::CRYPTO) {
            self.config.private_key.decrypt(&p.body).map_err(|source| ServerError::Crypto { cmd, source })?
        } else {
            p.body.clone()
        };
        let m = Handshake::decode(&plain).map_err(|source| ServerError::Decode { cmd, source })?;
        if let Some(c) = &self.client {
            if c.device_id == m.device_id {
                self.send_error(now, &p, ErrorCode::REPEAT_HANDSHAKE, "repeat handshake");
                return Ok(());
            }
        }
        let (Ok(client_key), Ok(iv)) =
            (<[u8; 16]>::try_from(m.client_key.as_slice()), <[u8; 16]>::try_from(m.iv.as_slice()))
        else {
            self.send_error(now, &p, ErrorCode::DISPATCH_ERROR, "invalid param");
            self.close(CloseReason::InvalidRequest("handshake key or iv is not 16 bytes"));
            return Ok(());
        };
        if m.device_id.is_empty() {
            self.send_error(now, &p, ErrorCode::DISPATCH_ERROR, "invalid param");
            self.close(CloseReason::InvalidRequest("handshake without device id"));
            return Ok(());
        }
        let mut server_key = [0u8; 16];
        self.rng.fill_bytes(&mut server_key);
        let session_key = mix_key(&client_key, &server_key);
        let heartbeat = self.config.negotiate_heartbeat(m.max_heartbeat);
        let expire_time = now.saturating_add(self.config.session_expire) as i64;
        let mut sid = [0u8; 16];
        self.rng.fill_bytes(&mut sid);
        let session_id: String = sid.iter().map(|b| format!("{b:02x}")).collect();
        let client = ClientInfo::new(m.device_id, m.os_name, m.os_version, m.client_version);
        store.put(
            &session_id,
            ResumableSession {
                os_name: client.os_name.clone(),
                os_version: client.os_version.clone(),
                client_version: client.client_version.clone(),
                device_id: client.device_id.clone(),
                key: session_key,
                iv,
                expire_time,
            },
        );
        let ok =
            HandshakeOk { server_key: server_key.to_vec(), heartbeat, session_id: session_id.clone(), expire_time };
        // The reply goes out under AES(clientKey, iv); everything after under the session key.
        self.wire.cipher = Some(AesCipher::new(client_key, iv));
        self.wire.send(now, Command::HANDSHAKE, p.session_id, &ok, Flags::NONE, true);
        self.wire.cipher = Some(AesCipher::new(session_key, iv));
        self.established(now, client.clone(), heartbeat);
        self.events.push_back(ServerEvent::HandshakeOk { client, session_id, heartbeat });
        Ok(())
    }

    fn on_fast_connect(&mut self, now: u64, p: Packet, store: &dyn SessionStore) -> Result<(), ServerError> {
        let cmd = p.cmd;
        let m = FastConnect::decode(&p.body).map_err(|source| ServerError::Decode { cmd, source })?;
        let stored = store.get(&m.session_id).filter(|s| s.expire_time > now as i64);
        let Some(s) = stored else {
            self.send_error(now, &p, ErrorCode::SESSION_EXPIRED, "session expired");
            return Ok(());
        };
        if s.device_id != m.device_id {
            self.send_error(now, &p, ErrorCode::INVALID_DEVICE, "invalid device");
            return Ok(());
        }
        let heartbeat = self.config.negotiate_heartbeat(m.max_heartbeat);
        self.wire.cipher = Some(AesCipher::new(s.key, s.iv));
        self.wire.send_raw(now, Command::FAST_CONNECT, p.session_id, &FastConnectOk { heartbeat });
        let client = ClientInfo::new(s.device_id, s.os_name, s.os_version, s.client_version);
        self.established(now, client.clone(), heartbeat);
        self.events.push_back(ServerEvent::FastConnected { client, heartbeat });
        Ok(())
    }

    fn established(&mut self, now: u64, client: ClientInfo, heartbeat: i32) {
        self.client = Some(client);
        self.heartbeat = heartbeat;
        self.idle_misses = 0;
        self.idle_deadline = now + self.read_idle_period();
    }

    fn on_bind(&mut self, now: u64, session_id: i32, m: BindUser) {
        if m.user_id.is_empty() {
            let p = Packet::new(Command::BIND, session_id);
            self.send_error(now, &p, ErrorCode::DISPATCH_ERROR, "invalid param");
            self.close(CloseReason::InvalidRequest("bind without user id"));
            return;
        }
        if let Some(old) = self.user.take() {
            if old.user_id != m.user_id {
                self.events.push_back(ServerEvent::Unbound { user_id: old.user_id });
            }
        }
        self.events.push_back(ServerEvent::Bound {
            user_id: m.user_id.clone(),
            alias: m.alias.clone(),
            tags: m.tags.clone(),
        });
        self.user = Some(m);
        self.send_ok(now, Command::BIND, session_id, "bind success");
    }

    fn on_unbind(&mut self, now: u64, session_id: i32, m: BindUser) {
        if self.user.as_ref().is_some_and(|u| u.user_id == m.user_id) {
            self.user = None;
            self.events.push_back(ServerEvent::Unbound { user_id: m.user_id });
        }
        self.send_ok(now, Command::UNBIND, session_id, "unbind success");
    }

    /// Advances timers: idle detection and push-ack timeouts.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.closed {
            return;
        }
        let mut i = 0;
        while i < self.pending_acks.len() {
            if self.pending_acks[i].deadline <= now {
                let a = self.pending_acks.swap_remove(i);
                self.events.push_back(ServerEvent::PushAckTimeout { session_id: a.session_id });
            } else {
                i += 1;
            }
        }
        if now >= self.idle_deadline {
            if self.client.is_none() {
                self.close(CloseReason::HandshakeTimeout);
                return;
            }
            self.idle_misses += 1;
            if self.idle_misses > self.config.max_heartbeat_timeouts {
                self.close(CloseReason::IdleTimeout);
            } else {
                self.idle_deadline = now + self.read_idle_period();
            }
        }
    }

    /// When to call [`ServerSession::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let acks = self.pending_acks.iter().map(|a| a.deadline).min();
        Some(acks.map_or(self.idle_deadline, |a| a.min(self.idle_deadline)))
    }

    /// Next whole packet to write to the client.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.poll_transmit()
    }

    /// Next event for the driver.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Pushes `content` to the client; with an ack mode other than [`AckMode::None`] a
    /// [`ServerEvent::PushAcked`] or [`ServerEvent::PushAckTimeout`] follows within
    /// `ack_timeout` ms. Returns the push's session id.
    pub fn push(
        &mut self,
        now: u64,
        content: Vec<u8>,
        ack: AckMode,
        ack_timeout: u64,
    ) -> Result<i32, ServerUsageError> {
        self.check_ready()?;
        let id = self.next_push_id;
        self.next_push_id = self.next_push_id.checked_add(1).unwrap_or(1);
        self.wire.send_body(now, Command::PUSH, id, content, ack.flags(), true);
        if ack != AckMode::None {
            self.pending_acks.push(PendingAck { session_id: id, deadline: now.saturating_add(ack_timeout) });
        }
        Ok(id)
    }

    /// Tells the client that another connection bound its user.
    pub fn kick(&mut self, now: u64) -> Result<(), ServerUsageError> {
        self.check_ready()?;
        let client = self.client.as_ref().ok_or(ServerUsageError::NotHandshaked)?;
        let m = Kick { device_id: client.device_id.clone(), user_id: self.user_id().unwrap_or_default().to_owned() };
        self.wire.send(now, Command::KICK, 0, &m, Flags::NONE, true);
        Ok(())
    }

    /// Answers an HTTP request with the upstream's response (encrypted, as MPUSH does).
    pub fn http_response(&mut self, now: u64, session_id: i32, resp: &HttpResponse) -> Result<(), ServerUsageError> {
        self.check_ready()?;
        self.wire.send(now, Command::HTTP_PROXY, session_id, resp, Flags::NONE, true);
        Ok(())
    }

    /// Answers an HTTP request with a status the server generated itself (400, 408, 502, 504),
    /// sent unencrypted as MPUSH does.
    pub fn http_error(&mut self, now: u64, session_id: i32, status: i32, reason: &str) -> Result<(), ServerUsageError> {
        self.check_ready()?;
        let resp =
            HttpResponse { status_code: status, reason_phrase: Some(reason.to_owned()), headers: vec![], body: vec![] };
        self.wire.send_raw(now, Command::HTTP_PROXY, session_id, &resp);
        Ok(())
    }

    /// Closes the session from the driver's side.
    pub fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.pending_acks.clear();
            self.events.push_back(ServerEvent::Close { reason });
        }
    }

    fn check_ready(&self) -> Result<(), ServerUsageError> {
        if self.closed {
            Err(ServerUsageError::Closed)
        } else if self.client.is_none() {
            Err(ServerUsageError::NotHandshaked)
        } else {
            Ok(())
        }
    }
}
