//! The connection-server side of MPUSH 0.8.0 as a sans-IO state machine, for the gateway.
//!
//! Every rule here is what MPUSH's connection server (`MessageDispatcher` and the handlers of
//! `mpush-core` 0.8.0, as released on Maven Central) does, including the parts a client can
//! observe that look like accidents: error code 0 with a reason for a refused handshake, fast
//! connect, bind or unbind (0.8.0 has no codes 102-104); Error 100 for a body that does not
//! decrypt or decode *and* for the inputs MPUSH's handlers throw on (an unbind with nothing
//! bound, a handshake without a 16-byte client key); a repeated handshake decrypted with the
//! current session key; pushes and HTTP requests accepted before any handshake; an idle check
//! that ticks every heartbeat from the moment of connection.
//!
//! Where MPUSH lets one hostile connection cost the server without bound, the session is
//! stricter, answering as MPUSH answers a body it cannot handle (Error 100, then close; see
//! [`DispatchError::Limit`]): one handshake or fast connect per connection, a size cap on an
//! RSA-encrypted handshake body checked before decrypting, and a length cap on string fields.
//!
//! Routing users to connections, performing HTTP requests and storing sessions for real are
//! the driver's job.

mod decode;
mod framing;

use std::collections::VecDeque;
use std::sync::Arc;

use rand_core::{RngCore, SeedableRng};

use crate::codec::DecodeError;
use crate::crypto::{decompress, mix_key, AesCipher, CryptoError, RsaPrivateKey};
use crate::frame::{Command, Flags, Frame, FrameError, Packet};
use crate::message::{ErrorCode, ErrorMessage, FastConnectOk, HandshakeOk, HttpRequest, HttpResponse, Kick, OkMessage};
use crate::rng::ChaCha20Rng;
use crate::session::{AckMode, ClientType, ResumableSession, SessionStore};
use crate::wire::Wire;

/// The texts MPUSH 0.8.0 puts in its Error and Ok messages.
pub mod reason {
    /// Error, code 0, then close: a handshake without device id, or with an iv or client key
    /// that is not 16 bytes.
    pub const PARAM_INVALID: &str = "Param invalid";
    /// Error, code 0, connection kept: a second handshake with the same device id.
    pub const REPEAT_HANDSHAKE: &str = "repeat handshake";
    /// Error, code 0, connection kept: fast connect with an unknown or expired session.
    pub const SESSION_EXPIRED: &str = "session expired";
    /// Error, code 0, connection kept: fast connect from another device.
    pub const INVALID_DEVICE: &str = "invalid device";
    /// Error, code 0, then close: bind or unbind without a user id.
    pub const INVALID_PARAM: &str = "invalid param";
    /// Error, code 0, then close: bind or unbind before a handshake.
    pub const NOT_HANDSHAKE: &str = "not handshake";
    /// Error, code 100, then close: the dispatcher caught an exception.
    pub const DISPATCH_ERROR: &str = "handle message error";
    /// Error, code 101, then close: no handler for the command.
    pub const UNSUPPORTED_CMD: &str = "unsupported command";
    /// Error, code 0, then close: the bind validator refused the bind.
    pub const BIND_FAILED: &str = "bind failed";
    /// Ok data of a bind (and of a re-bind of the same user).
    pub const BIND_SUCCESS: &str = "bind success";
    /// Ok data of an unbind, and of the implicit unbind when another user binds.
    pub const UNBIND_SUCCESS: &str = "unbind success";
}

/// MPUSH's `BindValidator` SPI: decides whether a connection may bind a user.
///
/// Consulted for every bind of a user the connection does not already hold (re-binding the
/// held user only changes its tags, as in MPUSH, and is not validated again), with the bind's
/// `data` field (MPUSH's `BindUserMessage.data`, the client's alias) and the current time
/// from the driver (ms since the Unix epoch, the `now` of the session call), so the protocol
/// crate stays free of clocks. A refusal is answered as MPUSH answers one: Error (cmd 5,
/// code 0, `bind failed`), then close.
pub trait BindValidator: std::fmt::Debug + Send + Sync {
    /// Whether `user_id` may be bound with `data` at `now_ms`.
    fn validate(&self, user_id: &str, data: Option<&str>, now_ms: u64) -> bool;
}

/// Connection-server settings, MPUSH's defaults from [`ServerConfig::new`].
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
    /// Largest inflated inbound body, against zip bombs (default 1 MiB; MPUSH has no limit).
    pub max_inflated_size: usize,
    /// `mp.core.session-expired-time`: resumable session lifetime, ms (default 1 day).
    pub session_expire: u64,
    /// `mp.core.max-hb-timeout-times`: idle checks in a row that may find nothing read; the
    /// next one closes the connection (default 2).
    pub max_heartbeat_timeouts: u32,
    /// `mp.http.proxy-enabled`: handle cmd 12 (default false: Error 101 and close, as MPUSH).
    pub http_proxy_enabled: bool,
    /// The heartbeat a connection has until it handshakes or fast connects, ms: the idle
    /// check's period and read timeout (+1 s) before then. MPUSH hard-codes 10 s
    /// (`SessionContext.heartbeat`), so a connection that sends nothing is closed about 40 s
    /// after it opened, and one that only sends heartbeats is never closed.
    pub pre_handshake_heartbeat: i32,
    /// Largest RSA-encrypted handshake or fast connect body, bytes, checked *before*
    /// decrypting (default 512: four 1024-bit RSA blocks; a real handshake takes one to
    /// three). Each block costs one private-key operation, so this bounds what one packet can
    /// cost. Gateway-specific: a bigger one gets Error 100 and a close.
    pub max_handshake_body: usize,
    /// Longest string field of a handshake, fast connect, bind or unbind (device id, OS name
    /// and version, client version, session id, user id, alias, tags), bytes (default 1024).
    /// Gateway-specific: a longer one gets Error 100 and a close.
    pub max_field_len: usize,
    /// Hand RSA private-key work to the driver instead of doing it inside
    /// [`ServerSession::handle_input`] (default false). When set, a body that needs the RSA
    /// key (one sent before a handshake or fast connect) yields
    /// [`ServerEvent::RsaDecryptNeeded`] and the session processes nothing else until
    /// [`ServerSession::rsa_decrypted`] brings the plaintext back. A driver on an async
    /// runtime uses it to decrypt on a blocking thread, so a flood of handshakes cannot stall
    /// the workers serving live connections.
    pub defer_rsa: bool,
    /// Leave the raw Ack of an upstream auto-ack push to the driver (default false: sent at
    /// once, as MPUSH's `ClientPushHandler` does). When set, [`ServerEvent::UpstreamPush`]
    /// arrives with the ack not yet sent and the driver calls
    /// [`ServerSession::ack_upstream`] once it has stored the push: the same raw Ack (same
    /// session id) as MPUSH's, only later, so an acked push is never lost.
    pub defer_upstream_ack: bool,
    /// MPUSH's bind validator SPI (default `None`: every bind is accepted, as MPUSH's default
    /// validator does). See [`BindValidator`].
    pub bind_validator: Option<Arc<dyn BindValidator>>,
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
            pre_handshake_heartbeat: 10_000,
            max_handshake_body: 512,
            max_field_len: 1024,
            defer_rsa: false,
            defer_upstream_ack: false,
            bind_validator: None,
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
    /// A handshake completed; the resumable session was stored. At most one handshake or fast
    /// connect completes per connection (see [`DispatchError::Limit`]).
    HandshakeOk {
        /// Who connected.
        client: ClientInfo,
        /// The resumable session id handed to the client.
        session_id: String,
        /// Negotiated heartbeat, ms.
        heartbeat: i32,
    },
    /// A fast connect restored a stored session; the client must bind again. Only on a
    /// connection that has not completed a handshake or fast connect yet.
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
    /// The client bound the user it already had: MPUSH only replaces the tags (no new route,
    /// nobody kicked).
    TagsChanged {
        /// User id.
        user_id: String,
        /// The new tags.
        tags: Option<String>,
    },
    /// The connection's user was unbound.
    Unbound {
        /// User id.
        user_id: String,
    },
    /// The client pushed content upstream (already auto-acked if it asked for it, unless
    /// [`ServerConfig::defer_upstream_ack`] is set).
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
    /// [`ServerSession::http_response`] or [`ServerSession::http_error`]. Requests MPUSH
    /// refuses before any I/O (no URI: 400 and 502; a header netty rejects: 502) were
    /// answered already and give no event. The headers are MPUSH's `HashMap` entries in
    /// insertion order: unique names (case-sensitive), the last value of a repeated name.
    HttpRequest {
        /// Header session id to answer with.
        session_id: i32,
        /// The request.
        request: HttpRequest,
    },
    /// Only with [`ServerConfig::defer_rsa`]: decrypt `ciphertext` with the RSA private key
    /// ([`RsaPrivateKey::decrypt`]) and hand the result to [`ServerSession::rsa_decrypted`].
    /// Until then the session processes no further input (keep feeding it or stop reading;
    /// stopping is the backpressure). The body is at most
    /// [`ServerConfig::max_handshake_body`] for a handshake or fast connect, at most
    /// `max_packet_size` otherwise.
    RsaDecryptNeeded {
        /// The packet body, as received.
        ciphertext: Vec<u8>,
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
    /// Too many idle checks in a row found nothing read (before a handshake too).
    IdleTimeout,
    /// An unsupported command (Error 101 was sent).
    UnsupportedCommand(Command),
    /// Bind or unbind before a handshake (Error "not handshake" was sent).
    NotHandshaked(Command),
    /// The [`BindValidator`] refused binding this user (Error "bind failed" was sent).
    BindRefused {
        /// The user the client asked to bind.
        user_id: String,
    },
    /// A request with invalid parameters (Error "Param invalid" or "invalid param" was sent).
    InvalidRequest(&'static str),
    /// MPUSH's dispatcher caught an exception handling this packet (Error 100 was sent).
    DispatchError {
        /// The packet's command.
        cmd: Command,
        /// What went wrong.
        error: DispatchError,
    },
    /// The driver asked to close.
    Requested,
}

/// Why a packet ended in Error 100 (`DISPATCH_ERROR`) and a close: what made MPUSH's handler
/// throw.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The body did not decrypt (with the RSA key before a handshake, the session key after)
    /// or did not inflate.
    #[error("body: {0}")]
    Crypto(#[from] CryptoError),
    /// The body's fields are truncated or have a negative length.
    #[error("body: {0}")]
    Decode(#[from] DecodeError),
    /// A non-empty body opened to nothing.
    #[error("body opened to nothing")]
    EmptyBody,
    /// The JSON flag on a binary connection (MPUSH casts the body to a map and fails).
    #[error("JSON body on a binary connection")]
    JsonBody,
    /// A request MPUSH's handler throws on (a null or short field it dereferences).
    #[error("{0}")]
    Handler(&'static str),
    /// A gateway limit MPUSH does not have: a second handshake (another device id) or fast
    /// connect on a connection that already completed one, an RSA-encrypted handshake body
    /// over [`ServerConfig::max_handshake_body`], a string field over
    /// [`ServerConfig::max_field_len`]. Answered as MPUSH answers a body it cannot handle.
    #[error("limit: {0}")]
    Limit(&'static str),
}

/// An error from [`ServerSession::handle_input`]; the connection must be closed (MPUSH closes
/// it without a message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The byte stream lost its framing (an oversized body).
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
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

/// The bound user, as MPUSH's session context holds it.
#[derive(Clone, Debug)]
struct BoundUser {
    user_id: String,
}

/// One client connection, server side.
pub struct ServerSession {
    config: Arc<ServerConfig>,
    rng: ChaCha20Rng,
    /// Outbound plumbing; its cipher is the session context's AES cipher, `None` while the
    /// context still has MPUSH's RSA cipher (before a handshake or fast connect).
    wire: Wire,
    decoder: framing::PacketDecoder,
    client: Option<ClientInfo>,
    /// The handshake carried no OS name: MPUSH's client type lookup throws on it at bind.
    os_name_null: bool,
    heartbeat: i32,
    user: Option<BoundUser>,
    next_push_id: i32,
    pending_acks: Vec<PendingAck>,
    last_read: u64,
    next_idle_check: u64,
    idle_misses: u32,
    events: VecDeque<ServerEvent>,
    closed: bool,
    /// With `defer_rsa`: the packet waiting for its RSA plaintext.
    parked: Option<Packet>,
    /// The plaintext [`ServerSession::rsa_decrypted`] brought for the parked packet.
    rsa_plain: Option<Vec<u8>>,
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
        let heartbeat = config.pre_handshake_heartbeat;
        ServerSession {
            decoder: framing::PacketDecoder::new(config.max_packet_size),
            heartbeat,
            config,
            rng: ChaCha20Rng::from_seed(seed),
            wire,
            client: None,
            os_name_null: false,
            user: None,
            next_push_id: 1,
            pending_acks: Vec::new(),
            last_read: now,
            next_idle_check: now.saturating_add(heartbeat.max(1) as u64),
            idle_misses: 0,
            events: VecDeque::new(),
            closed: false,
            parked: None,
            rsa_plain: None,
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

    /// The current heartbeat, ms: negotiated, or the pre-handshake one.
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
        self.decoder.feed(bytes);
        self.process(now, store)
    }

    /// Whether the session waits for [`ServerSession::rsa_decrypted`].
    pub fn is_awaiting_rsa(&self) -> bool {
        self.parked.is_some()
    }

    /// The driver's answer to [`ServerEvent::RsaDecryptNeeded`]: the plaintext, or the
    /// decryption error (answered with Error 100 and a close, as without `defer_rsa`).
    /// Processing then goes on with the input received meanwhile. Ignored when nothing waits.
    pub fn rsa_decrypted(
        &mut self,
        now: u64,
        plaintext: Result<Vec<u8>, CryptoError>,
        store: &dyn SessionStore,
    ) -> Result<(), ServerError> {
        if self.closed {
            return Err(ServerError::Closed);
        }
        let Some(p) = self.parked.take() else { return Ok(()) };
        match plaintext {
            Ok(plain) => {
                self.rsa_plain = Some(plain);
                self.dispatch(now, p, store);
                self.rsa_plain = None;
            }
            Err(e) => self.fail(now, &p, DispatchError::Crypto(e)),
        }
        self.process(now, store)
    }

    /// Whole frames from the decoder until it needs more bytes, the session closes or a
    /// packet waits for its RSA plaintext.
    fn process(&mut self, now: u64, store: &dyn SessionStore) -> Result<(), ServerError> {
        while !self.closed && self.parked.is_none() {
            let frame = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    // MPUSH's decoder throws and netty closes the channel, nothing sent.
                    self.closed = true;
                    self.pending_acks.clear();
                    return Err(ServerError::Frame(e));
                }
            };
            // MPUSH counts a read per decoded packet, not per byte.
            self.last_read = now;
            match frame {
                Frame::Heartbeat => self.wire.send_heartbeat(now),
                Frame::Packet(p) => self.dispatch(now, p, store),
            }
        }
        Ok(())
    }

    /// MPUSH's `MessageDispatcher`: the handler for the command, Error 100 and close when it
    /// throws, Error 101 and close when there is none.
    fn dispatch(&mut self, now: u64, p: Packet, store: &dyn SessionStore) {
        if self.rsa_plain.is_none() && self.needs_rsa(&p) {
            // The size cap comes before any private-key work, deferred or not.
            if matches!(p.cmd, Command::HANDSHAKE | Command::FAST_CONNECT) {
                if let Err(error) = self.check_rsa_body(&p) {
                    self.fail(now, &p, error);
                    return;
                }
            }
            if self.config.defer_rsa {
                self.events.push_back(ServerEvent::RsaDecryptNeeded { ciphertext: p.body.clone() });
                self.parked = Some(p);
                return;
            }
        }
        let handled = match p.cmd {
            // Echoed as the one-byte heartbeat whatever the frame held.
            Command::HEARTBEAT => {
                self.wire.send_heartbeat(now);
                Ok(())
            }
            Command::HANDSHAKE => self.on_handshake(now, &p, store),
            Command::FAST_CONNECT => self.on_fast_connect(now, &p, store),
            Command::BIND => self.on_bind(now, &p),
            Command::UNBIND => self.on_unbind(now, &p),
            Command::PUSH => self.on_push(now, &p),
            Command::ACK => self.on_ack(&p),
            Command::HTTP_PROXY if self.config.http_proxy_enabled => self.on_http_request(now, &p),
            cmd => {
                self.send_error(now, &p, ErrorCode::UNSUPPORTED_CMD, reason::UNSUPPORTED_CMD);
                self.close(CloseReason::UnsupportedCommand(cmd));
                Ok(())
            }
        };
        if let Err(error) = handled {
            self.fail(now, &p, error);
        }
    }

    /// MPUSH's dispatcher catching an exception: Error 100, then close.
    fn fail(&mut self, now: u64, p: &Packet, error: DispatchError) {
        self.send_error(now, p, ErrorCode::DISPATCH_ERROR, reason::DISPATCH_ERROR);
        self.close(CloseReason::DispatchError { cmd: p.cmd, error });
    }

    /// Whether the packet's handler will open its body with the RSA key: a non-empty CRYPTO
    /// body (not JSON, which fails first) before a handshake or fast connect, for a command
    /// whose handler opens the body.
    fn needs_rsa(&self, p: &Packet) -> bool {
        let opens = match p.cmd {
            Command::HANDSHAKE
            | Command::FAST_CONNECT
            | Command::BIND
            | Command::UNBIND
            | Command::PUSH
            | Command::ACK => true,
            Command::HTTP_PROXY => self.config.http_proxy_enabled,
            _ => false,
        };
        opens
            && self.wire.cipher.is_none()
            && !p.body.is_empty()
            && p.flags.contains(Flags::CRYPTO)
            && !p.flags.contains(Flags::JSON)
    }

    /// MPUSH's `BaseMessage.decodeBody`: an empty body is not touched; otherwise the JSON flag
    /// fails, CRYPTO decrypts with the context's cipher (RSA until a handshake), COMPRESS
    /// inflates, and nothing left is an error.
    fn open(&mut self, p: &Packet) -> Result<Vec<u8>, DispatchError> {
        if p.body.is_empty() {
            return Ok(Vec::new());
        }
        if p.flags.contains(Flags::JSON) {
            return Err(DispatchError::JsonBody);
        }
        let mut body = if p.flags.contains(Flags::CRYPTO) {
            match &self.wire.cipher {
                Some(aes) => aes.decrypt(&p.body)?,
                None => match self.rsa_plain.take() {
                    Some(plain) => plain,
                    None => self.config.private_key.decrypt(&p.body)?,
                },
            }
        } else {
            p.body.clone()
        };
        if p.flags.contains(Flags::COMPRESS) {
            body = decompress(&body, self.config.max_inflated_size)?;
        }
        if body.is_empty() {
            return Err(DispatchError::EmptyBody);
        }
        Ok(body)
    }

    /// An Error message with `code` and `reason`, sent raw with the request's session id.
    fn send_error(&mut self, now: u64, p: &Packet, code: ErrorCode, reason: &str) {
        let m = ErrorMessage { cmd: p.cmd, code, reason: Some(reason.to_owned()), data: None };
        self.wire.send_raw(now, Command::ERROR, p.session_id, &m);
    }

    /// MPUSH's `ErrorMessage.from(msg).setReason(reason)`: code 0.
    fn refuse(&mut self, now: u64, p: &Packet, reason: &str) {
        self.send_error(now, p, ErrorCode::NONE, reason);
    }

    fn send_ok(&mut self, now: u64, p: &Packet, data: &str) {
        let m = OkMessage { cmd: p.cmd, code: 0, data: Some(data.to_owned()) };
        self.wire.send_raw(now, Command::OK, p.session_id, &m);
    }

    /// MPUSH's `BaseMessage.send()`: compressed over the threshold, then encrypted with the
    /// context's cipher, which before a handshake is the server's RSA key pair (only an HTTP
    /// response can go out then).
    fn send_sealed(&mut self, now: u64, cmd: Command, session_id: i32, plain: Vec<u8>, extra: Flags) {
        if self.wire.cipher.is_some() || plain.is_empty() {
            self.wire.send_body(now, cmd, session_id, plain, extra, true);
            return;
        }
        let (mut body, mut flags) = crate::body::seal(plain, None, self.config.compress_threshold);
        if let Ok(rsa) = self.config.private_key.public_key().encrypt(&mut self.rng, &body) {
            body = rsa;
            flags.insert(Flags::CRYPTO);
        }
        self.wire.send_packet(now, Packet { cmd, flags: flags | extra, session_id, body });
    }

    /// Refuses an RSA-encrypted handshake or fast connect body too large to be worth
    /// decrypting; called before any private-key work.
    fn check_rsa_body(&self, p: &Packet) -> Result<(), DispatchError> {
        if p.body.len() > self.config.max_handshake_body {
            return Err(DispatchError::Limit("RSA-encrypted body over max_handshake_body"));
        }
        Ok(())
    }

    fn check_fields(&self, fields: &[&Option<String>]) -> Result<(), DispatchError> {
        if fields.iter().any(|f| f.as_ref().is_some_and(|s| s.len() > self.config.max_field_len)) {
            return Err(DispatchError::Limit("string field over max_field_len"));
        }
        Ok(())
    }

    fn on_handshake(&mut self, now: u64, p: &Packet, store: &dyn SessionStore) -> Result<(), DispatchError> {
        let m = decode::decode(&self.open(p)?, decode::handshake)?;
        self.check_fields(&[&m.device_id, &m.os_name, &m.os_version, &m.client_version])?;
        // MPUSH mixes the keys before it validates anything: a missing or short client key
        // throws there.
        let client_key = m.client_key.as_deref().unwrap_or_default();
        if client_key.len() < 16 {
            return Err(DispatchError::Handler("handshake client key missing or shorter than 16 bytes"));
        }
        let mut server_key = [0u8; 16];
        self.rng.fill_bytes(&mut server_key);
        let Some(device_id) = m.device_id else {
            self.refuse(now, p, reason::PARAM_INVALID);
            self.close(CloseReason::InvalidRequest("handshake without device id"));
            return Ok(());
        };
        let Some(iv) = m.iv else { return Err(DispatchError::Handler("handshake without iv")) };
        let (Ok(client_key), Ok(iv)) = (<[u8; 16]>::try_from(client_key), <[u8; 16]>::try_from(iv.as_slice())) else {
            self.refuse(now, p, reason::PARAM_INVALID);
            self.close(CloseReason::InvalidRequest("handshake key or iv is not 16 bytes"));
            return Ok(());
        };
        if self.client.as_ref().is_some_and(|c| c.device_id == device_id) {
            self.refuse(now, p, reason::REPEAT_HANDSHAKE);
            return Ok(());
        }
        // MPUSH would start a new session here (another device id on a live connection): one
        // connection could then mint any number of resumable sessions. Refused and closed.
        if self.client.is_some() {
            return Err(DispatchError::Limit("second handshake on one connection"));
        }
        let session_key = mix_key(&client_key, &server_key);
        let heartbeat = self.config.negotiate_heartbeat(m.max_heartbeat);
        let expire_time = now.saturating_add(self.config.session_expire) as i64;
        let mut sid = [0u8; 16];
        self.rng.fill_bytes(&mut sid);
        let session_id: String = sid.iter().map(|b| format!("{b:02x}")).collect();
        // Java appends a null field as "null" to the stored session string.
        let java = |s: &Option<String>| s.clone().unwrap_or_else(|| "null".to_owned());
        store.put(
            &session_id,
            ResumableSession {
                os_name: java(&m.os_name),
                os_version: java(&m.os_version),
                client_version: java(&m.client_version),
                device_id: device_id.clone(),
                key: session_key,
                iv,
                expire_time,
            },
        );
        self.os_name_null = m.os_name.is_none();
        let client = ClientInfo::new(
            device_id,
            m.os_name.unwrap_or_default(),
            m.os_version.unwrap_or_default(),
            m.client_version.unwrap_or_default(),
        );
        let ok =
            HandshakeOk { server_key: server_key.to_vec(), heartbeat, session_id: session_id.clone(), expire_time };
        // The reply goes out under AES(clientKey, iv); everything after under the session key.
        self.wire.cipher = Some(AesCipher::new(client_key, iv));
        self.wire.send(now, Command::HANDSHAKE, p.session_id, &ok, Flags::NONE, true);
        self.wire.cipher = Some(AesCipher::new(session_key, iv));
        self.client = Some(client.clone());
        self.heartbeat = heartbeat;
        self.events.push_back(ServerEvent::HandshakeOk { client, session_id, heartbeat });
        Ok(())
    }

    fn on_fast_connect(&mut self, now: u64, p: &Packet, store: &dyn SessionStore) -> Result<(), DispatchError> {
        // MPUSH lets a connected client fast connect again (and replace its session context);
        // one handshake or fast connect per connection here. A *refused* fast connect does
        // not count: the client handshakes next on the same connection, as MPUSH expects.
        if self.client.is_some() {
            return Err(DispatchError::Limit("fast connect on a connection that already connected"));
        }
        let m = decode::decode(&self.open(p)?, decode::fast_connect)?;
        self.check_fields(&[&m.session_id, &m.device_id])?;
        // Redis keys the session by the id as Java prints it; an expired key is gone
        // (`expireTime < now`), and a stored string that does not split into its six fields
        // (a comma in an OS string) decodes to nothing.
        let key = m.session_id.as_deref().unwrap_or("null");
        let stored = store
            .get(key)
            .filter(|s| s.expire_time >= now as i64)
            .filter(|s| ResumableSession::parse_mpush(&s.to_mpush_string(), s.expire_time).is_ok());
        let Some(s) = stored else {
            self.refuse(now, p, reason::SESSION_EXPIRED);
            return Ok(());
        };
        if m.device_id.as_deref() != Some(s.device_id.as_str()) {
            self.refuse(now, p, reason::INVALID_DEVICE);
            return Ok(());
        }
        let heartbeat = self.config.negotiate_heartbeat(m.max_heartbeat);
        // The restored context replaces this connection's: cipher, client, heartbeat; no user.
        self.wire.cipher = Some(AesCipher::new(s.key, s.iv));
        self.wire.send_raw(now, Command::FAST_CONNECT, p.session_id, &FastConnectOk { heartbeat });
        let client = ClientInfo::new(s.device_id, s.os_name, s.os_version, s.client_version);
        self.client = Some(client.clone());
        self.os_name_null = false;
        self.user = None;
        self.heartbeat = heartbeat;
        self.events.push_back(ServerEvent::FastConnected { client, heartbeat });
        Ok(())
    }

    /// MPUSH's `SessionContext.getClientType()`, which throws on a null OS name.
    fn client_type(&self) -> Result<ClientType, DispatchError> {
        match &self.client {
            Some(c) if !self.os_name_null => Ok(c.client_type),
            _ => Err(DispatchError::Handler("client type of a handshake without OS name")),
        }
    }

    fn on_bind(&mut self, now: u64, p: &Packet) -> Result<(), DispatchError> {
        let m = decode::decode(&self.open(p)?, decode::bind_user)?;
        self.check_fields(&[&m.user_id, &m.data, &m.tags])?;
        let Some(user_id) = m.user_id else {
            self.refuse(now, p, reason::INVALID_PARAM);
            self.close(CloseReason::InvalidRequest("bind without user id"));
            return Ok(());
        };
        if self.client.is_none() {
            self.refuse(now, p, reason::NOT_HANDSHAKE);
            self.close(CloseReason::NotHandshaked(p.cmd));
            return Ok(());
        }
        match &self.user {
            Some(u) if u.user_id == user_id => {
                self.events.push_back(ServerEvent::TagsChanged { user_id, tags: m.tags });
                self.send_ok(now, p, reason::BIND_SUCCESS);
                return Ok(());
            }
            // Another user: MPUSH runs its unbind first, which answers this very request with
            // Ok "unbind success" before the bind's own Ok.
            Some(_) => self.unbind_current(now, p)?,
            None => {}
        }
        // MPUSH asks its validator before it looks at the client type; a refusal unregisters
        // with that client type (a null OS name throws there too) and answers "bind failed".
        let valid = self.config.bind_validator.as_ref().is_none_or(|v| v.validate(&user_id, m.data.as_deref(), now));
        self.client_type()?;
        if !valid {
            // Gateway-specific: MPUSH's refusal also removes whatever route the user had for
            // this client type, on any connection, so a bad token could de-route anyone; here
            // only this connection is affected.
            self.refuse(now, p, reason::BIND_FAILED);
            self.close(CloseReason::BindRefused { user_id });
            return Ok(());
        }
        self.user = Some(BoundUser { user_id: user_id.clone() });
        self.events.push_back(ServerEvent::Bound { user_id, alias: m.data, tags: m.tags });
        self.send_ok(now, p, reason::BIND_SUCCESS);
        Ok(())
    }

    fn on_unbind(&mut self, now: u64, p: &Packet) -> Result<(), DispatchError> {
        let m = decode::decode(&self.open(p)?, decode::bind_user)?;
        self.check_fields(&[&m.user_id, &m.data, &m.tags])?;
        if m.user_id.is_none() {
            self.refuse(now, p, reason::INVALID_PARAM);
            self.close(CloseReason::InvalidRequest("unbind without user id"));
            return Ok(());
        }
        if self.client.is_none() {
            self.refuse(now, p, reason::NOT_HANDSHAKE);
            self.close(CloseReason::NotHandshaked(p.cmd));
            return Ok(());
        }
        // The connection's user goes, whatever user id the message names.
        self.unbind_current(now, p)
    }

    fn unbind_current(&mut self, now: u64, p: &Packet) -> Result<(), DispatchError> {
        self.client_type()?;
        // MPUSH looks the null user up in a ConcurrentHashMap, which throws.
        let Some(user) = self.user.take() else { return Err(DispatchError::Handler("unbind with no user bound")) };
        self.events.push_back(ServerEvent::Unbound { user_id: user.user_id });
        self.send_ok(now, p, reason::UNBIND_SUCCESS);
        Ok(())
    }

    /// MPUSH's `ClientPushHandler`: no handshake needed; an auto-ack push is acked raw.
    fn on_push(&mut self, now: u64, p: &Packet) -> Result<(), DispatchError> {
        let content = self.open(p)?;
        if p.flags.contains(Flags::AUTO_ACK) && !self.config.defer_upstream_ack {
            self.wire.send_packet(now, Packet::new(Command::ACK, p.session_id));
        }
        self.events.push_back(ServerEvent::UpstreamPush { session_id: p.session_id, content, flags: p.flags });
        Ok(())
    }

    fn on_ack(&mut self, p: &Packet) -> Result<(), DispatchError> {
        // The body means nothing, but MPUSH still opens it.
        self.open(p)?;
        if let Some(i) = self.pending_acks.iter().position(|a| a.session_id == p.session_id) {
            self.pending_acks.swap_remove(i);
            self.events.push_back(ServerEvent::PushAcked { session_id: p.session_id });
        }
        Ok(())
    }

    /// MPUSH's `HttpProxyHandler` up to the point where it hands the request to its HTTP
    /// client; no handshake needed.
    fn on_http_request(&mut self, now: u64, p: &Packet) -> Result<(), DispatchError> {
        let m = decode::decode(&self.open(p)?, decode::http_request)?;
        let Some(uri) = m.uri else {
            // 400, and then, building the request with the null URI throws: 502 as well.
            self.send_http_status(now, p.session_id, 400, "Bad Request");
            self.send_http_status(now, p.session_id, 502, "Bad Gateway");
            return Ok(());
        };
        let headers = m.headers.as_deref().map(decode::java_headers).unwrap_or_default();
        if !headers.iter().all(|(k, v)| decode::netty_accepts(k, v.as_deref())) {
            self.send_http_status(now, p.session_id, 502, "Bad Gateway");
            return Ok(());
        }
        let request = HttpRequest {
            method: decode::method(m.method),
            uri,
            headers: headers.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect(),
            body: m.body.unwrap_or_default(),
        };
        self.events.push_back(ServerEvent::HttpRequest { session_id: p.session_id, request });
        Ok(())
    }

    fn send_http_status(&mut self, now: u64, session_id: i32, status: i32, reason: &str) {
        let resp =
            HttpResponse { status_code: status, reason_phrase: Some(reason.to_owned()), headers: vec![], body: vec![] };
        self.wire.send_raw(now, Command::HTTP_PROXY, session_id, &resp);
    }

    /// Advances timers: the idle check and push-ack timeouts.
    ///
    /// The idle check is MPUSH's: it runs every heartbeat (the current one, pre-handshake
    /// until then) from the moment the connection opened; a check that finds nothing read
    /// for more than heartbeat + 1 s counts a miss, any other resets the count, and the miss
    /// past `max_heartbeat_timeouts` closes the connection.
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
        if now >= self.next_idle_check {
            let read_timeout = self.heartbeat.max(0) as u64 + 1000;
            if now.saturating_sub(self.last_read) > read_timeout {
                self.idle_misses += 1;
                if self.idle_misses > self.config.max_heartbeat_timeouts {
                    self.close(CloseReason::IdleTimeout);
                    return;
                }
            } else {
                self.idle_misses = 0;
            }
            self.next_idle_check = now.saturating_add(self.heartbeat.max(1) as u64);
        }
    }

    /// When to call [`ServerSession::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let acks = self.pending_acks.iter().map(|a| a.deadline).min();
        Some(acks.map_or(self.next_idle_check, |a| a.min(self.next_idle_check)))
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

    /// Pushes `content` to the client under the session's own push ids (1, 2, ...); see
    /// [`ServerSession::push_with_id`].
    pub fn push(
        &mut self,
        now: u64,
        content: Vec<u8>,
        ack: AckMode,
        ack_timeout: u64,
    ) -> Result<i32, ServerUsageError> {
        let id = self.next_push_id;
        self.push_with_id(now, id, content, ack, ack_timeout)?;
        self.next_push_id = self.next_push_id.checked_add(1).unwrap_or(1);
        Ok(id)
    }

    /// Pushes `content` with header session id `session_id` (MPUSH takes it from one counter
    /// shared by every connection of the server). Compressed over the threshold and
    /// encrypted; an empty content goes out as an empty, unencrypted body. With an ack mode
    /// other than [`AckMode::None`] a [`ServerEvent::PushAcked`] or
    /// [`ServerEvent::PushAckTimeout`] follows within `ack_timeout` ms.
    pub fn push_with_id(
        &mut self,
        now: u64,
        session_id: i32,
        content: Vec<u8>,
        ack: AckMode,
        ack_timeout: u64,
    ) -> Result<(), ServerUsageError> {
        self.check_ready()?;
        self.send_sealed(now, Command::PUSH, session_id, content, ack.flags());
        if ack != AckMode::None {
            self.pending_acks.push(PendingAck { session_id, deadline: now.saturating_add(ack_timeout) });
        }
        Ok(())
    }

    /// Tells the client that another connection bound its user; see
    /// [`ServerSession::kick_user`].
    pub fn kick(&mut self, now: u64) -> Result<(), ServerUsageError> {
        let user = self.user_id().unwrap_or_default().to_owned();
        self.kick_user(now, &user)
    }

    /// MPUSH's kick: Kick{this connection's device id, `user_id`} with session id 0,
    /// encrypted. The user id is the one of the bind that displaced this connection's route,
    /// which need not be this session's current user (after a fast connect it has none).
    pub fn kick_user(&mut self, now: u64, user_id: &str) -> Result<(), ServerUsageError> {
        self.check_ready()?;
        let client = self.client.as_ref().ok_or(ServerUsageError::NotHandshaked)?;
        let m = Kick { device_id: client.device_id.clone(), user_id: user_id.to_owned() };
        self.send_sealed(now, Command::KICK, 0, crate::message::Message::encode(&m), Flags::NONE);
        Ok(())
    }

    /// With [`ServerConfig::defer_upstream_ack`]: acks the upstream push `session_id` (raw
    /// Ack, as MPUSH's `ClientPushHandler` sends it). Call it only for a push whose flags
    /// asked for an auto ack; MPUSH never acks the others.
    pub fn ack_upstream(&mut self, now: u64, session_id: i32) -> Result<(), ServerUsageError> {
        if self.closed {
            return Err(ServerUsageError::Closed);
        }
        self.wire.send_packet(now, Packet::new(Command::ACK, session_id));
        Ok(())
    }

    /// Answers an HTTP request with the upstream's response, sealed as MPUSH seals it
    /// (compressed over the threshold; encrypted with the session key, or with the RSA key
    /// before a handshake).
    pub fn http_response(&mut self, now: u64, session_id: i32, resp: &HttpResponse) -> Result<(), ServerUsageError> {
        if self.closed {
            return Err(ServerUsageError::Closed);
        }
        self.send_sealed(now, Command::HTTP_PROXY, session_id, crate::message::Message::encode(resp), Flags::NONE);
        Ok(())
    }

    /// Answers an HTTP request with a status the server generated itself (408, 502, 503,
    /// 504), sent unencrypted with no headers and no body, as MPUSH does.
    pub fn http_error(&mut self, now: u64, session_id: i32, status: i32, reason: &str) -> Result<(), ServerUsageError> {
        if self.closed {
            return Err(ServerUsageError::Closed);
        }
        self.send_http_status(now, session_id, status, reason);
        Ok(())
    }

    /// Closes the session from the driver's side.
    pub fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.pending_acks.clear();
            self.parked = None;
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
