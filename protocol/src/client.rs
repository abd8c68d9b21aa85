//! The client side of MPUSH as a sans-IO state machine: what the Android/Java SDK
//! (mpusher/mpush-client-java) does, with time and randomness as inputs.
//!
//! Where this session follows the Java client and where it deliberately does not:
//!
//! * **Request ids** count up from 1 per session, handshake and fast connect included, as the
//!   Java client's message counter does. Replies are matched by id *and* by the command they
//!   answer; the answer to a handshake or fast connect is matched by command alone (there is
//!   only ever one in flight, and the Java client ignores the id there too).
//! * **Outbound bodies** longer than [`ClientConfig::compress_over`] (1024) are zlib-compressed,
//!   then encrypted. A sealed body longer than [`ClientConfig::max_outbound_body`] (MPUSH's
//!   `mp.core.max-packet-size`, 10240) is refused with [`ClientError::PayloadTooLarge`] before
//!   anything is sent: MPUSH would close the connection on it, and every retry would too.
//! * **A refused handshake** (an Error naming HANDSHAKE, whatever its code but 102
//!   REPEAT_HANDSHAKE) ends in [`RequestError::Refused`]: the Java client stops for good then,
//!   and so should a driver, since every retry costs the server an RSA decryption and is refused
//!   again. A wrong public key looks like this from MPUSH: it cannot decrypt the handshake and
//!   answers Error 100 DISPATCH_ERROR naming cmd 2, then closes.
//! * **Binding another user** first unbinds the one bound on this connection, as the Java client
//!   does (MPUSH would otherwise answer the bind twice, "unbind success" then "bind success", on
//!   the same request id). **Unbind** carries the user id only, as the Java client sends it.
//! * **A bind that times out** fails its request; the user stays wanted (bound again after every
//!   reconnect), a late "bind success" still produces [`ClientEvent::Bound`], and
//!   [`ClientSession::bound_user`] keeps naming the user. The Java client reconnects instead; a
//!   slow server would make that a reconnect loop.
//! * **A kick** ends the automatic re-bind (the Java client binds again on its next reconnect).
//!   Two tabs or two devices of the same client type would otherwise take the user from each
//!   other at every reconnect, and pushes would go to whichever reconnected last. The
//!   application decides: binding the user again takes it back (the session unbinds the stale
//!   user on this connection first, because MPUSH answers a bind of the user it still holds
//!   with "bind success" without routing it here again).
//! * **HTTP-proxy requests** carry exactly one `readTimeout` header (matched case-insensitively,
//!   named as MPUSH reads it). A request the server does not answer in time is answered with a
//!   408 "Request Timeout" response, as the Java client's `HttpRequestMgr` answers it.

use std::borrow::Cow;
use std::collections::VecDeque;

use rand_core::{RngCore, SeedableRng};

use crate::codec::DecodeError;
use crate::crypto::{mix_key, AesCipher, CryptoError, RsaPublicKey};
use crate::frame::{Command, Flags, Frame, FrameError, Packet, DEFAULT_MAX_BODY};
use crate::message::{
    BindUser, ErrorCode, ErrorMessage, FastConnect, FastConnectOk, Handshake, HandshakeOk, HttpRequest, HttpResponse,
    Kick, Message, OkMessage,
};
use crate::rng::ChaCha20Rng;
use crate::session::{AckMode, StoredSession};
use crate::wire::Wire;

/// The MPUSH header `readTimeout` the server consumes for HTTP-proxy requests.
pub const READ_TIMEOUT_HEADER: &str = "readTimeout";

/// The status of the response an unanswered HTTP-proxy request resolves with (the Java
/// client's `HttpRequestMgr`: 408 "Request Timeout", no headers, no body).
pub const HTTP_TIMEOUT_STATUS: i32 = 408;

/// MPUSH's Ok data for the implicit unbind it performs inside a bind of another user.
const IMPLICIT_UNBIND_OK: &str = "unbind success";
/// MPUSH's Error reason for a failed implicit unbind inside a bind (the bind goes on).
const IMPLICIT_UNBIND_FAILED: &str = "unbind failed";

/// Client settings. Build with [`ClientConfig::new`], adjust fields, and the session checks
/// them again when it is created.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's RSA public key (`mp.security.public-key`).
    pub public_key: RsaPublicKey,
    /// Device id: non-empty, no commas.
    pub device_id: String,
    /// OS name; MPUSH derives the client type from it ("web" -> WEB). Commas are stripped.
    pub os_name: String,
    /// OS version. Commas are stripped.
    pub os_version: String,
    /// Client version. Commas are stripped.
    pub client_version: String,
    /// Smallest acceptable heartbeat, ms.
    pub min_heartbeat: i32,
    /// Largest acceptable heartbeat, ms.
    pub max_heartbeat: i32,
    /// Largest inbound body (default 6 MiB: MPUSH HTTP responses reach 5 MB).
    pub max_packet_size: usize,
    /// Largest inflated inbound body (default 8 MiB).
    pub max_inflated_size: usize,
    /// Outbound bodies longer than this are compressed (Java client: 1024).
    pub compress_over: usize,
    /// Largest outbound body after compression and encryption: the server's
    /// `mp.core.max-packet-size` (default 10240). Larger requests fail with
    /// [`ClientError::PayloadTooLarge`] instead of being sent.
    pub max_outbound_body: usize,
    /// Timeout of handshake, fast connect, bind, unbind and push acks, ms (default 10 s).
    pub request_timeout: u64,
    /// Default `readTimeout` for HTTP-proxy requests, ms (default 10 s).
    pub http_read_timeout: u64,
}

/// Keeps commas out: MPUSH stores the session as a comma-separated string and a comma in
/// these fields makes every later fast connect fail.
fn strip_commas(s: &str) -> String {
    // Words between commas and whitespace, joined by single spaces (one pass: smaller in wasm
    // than replace + split_whitespace + join).
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

impl ClientConfig {
    /// A configuration with the Java client's defaults and osName "web".
    pub fn new(public_key: RsaPublicKey, device_id: impl Into<String>) -> ClientConfig {
        ClientConfig {
            public_key,
            device_id: device_id.into(),
            os_name: "web".into(),
            os_version: String::new(),
            client_version: String::new(),
            min_heartbeat: 180_000,
            max_heartbeat: 180_000,
            max_packet_size: 6 << 20,
            max_inflated_size: 8 << 20,
            compress_over: 1024,
            max_outbound_body: DEFAULT_MAX_BODY,
            request_timeout: 10_000,
            http_read_timeout: 10_000,
        }
    }

    /// Checks the settings and strips commas from the OS and version strings.
    pub fn validate(mut self) -> Result<ClientConfig, ClientError> {
        if self.device_id.is_empty() {
            return Err(ClientError::InvalidArgument("deviceId must not be empty".into()));
        }
        if self.device_id.contains(',') {
            return Err(ClientError::InvalidArgument("deviceId must not contain ',' (it breaks fast connect)".into()));
        }
        if self.min_heartbeat < 2000 || self.max_heartbeat < self.min_heartbeat {
            return Err(ClientError::InvalidArgument("heartbeat bounds must satisfy 2000 <= min <= max".into()));
        }
        if self.request_timeout == 0 || self.max_packet_size == 0 || self.max_outbound_body == 0 {
            return Err(ClientError::InvalidArgument("timeouts and limits must be positive".into()));
        }
        if self.http_read_timeout == 0 || self.http_read_timeout > i32::MAX as u64 {
            return Err(ClientError::InvalidArgument("the HTTP read timeout must be 1..=2147483647 ms".into()));
        }
        self.os_name = strip_commas(&self.os_name);
        self.os_version = strip_commas(&self.os_version);
        self.client_version = strip_commas(&self.client_version);
        Ok(self)
    }
}

/// Identifies a request: its header session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub i32);

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// No transport; call [`ClientSession::handle_connected`] once one is up.
    Disconnected,
    /// Handshake sent, waiting for HandshakeOk.
    Handshaking,
    /// FastConnect sent, waiting for FastConnectOk.
    FastConnecting,
    /// Session established: requests can be made.
    Ready,
    /// The connection must be closed (dead, refused or broken); call
    /// [`ClientSession::handle_disconnected`] once it is.
    Closing,
}

/// How a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer within the request's timeout.
    #[error("request timed out")]
    Timeout,
    /// The server answered with an Error message.
    #[error("server error {code:?}: {}", reason.as_deref().unwrap_or(""))]
    Rejected {
        /// MPUSH error code.
        code: ErrorCode,
        /// The server's reason.
        reason: Option<String>,
    },
    /// The server refused the handshake (an Error naming HANDSHAKE with any code but 102, e.g.
    /// 100 when it cannot decrypt it: a wrong public key). Retrying is refused the same way:
    /// stop reconnecting, as the Java client does.
    #[error("handshake refused {code:?}: {}", reason.as_deref().unwrap_or(""))]
    Refused {
        /// MPUSH error code.
        code: ErrorCode,
        /// The server's reason.
        reason: Option<String>,
    },
    /// The connection was lost before the answer.
    #[error("connection lost")]
    ConnectionLost,
}

/// A push from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushMessage {
    /// The push's header session id (what [`ClientSession::ack`] takes).
    pub session_id: i32,
    /// The content.
    pub content: Vec<u8>,
    /// How the server wants it acknowledged. Auto acks are sent by the session when the
    /// event is taken with [`ClientSession::poll_event`].
    pub ack: AckMode,
}

/// What the driver learns from the session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A full handshake completed; persist `session` for fast connect.
    HandshakeOk {
        /// Negotiated heartbeat, ms.
        heartbeat: i32,
        /// The resumable session.
        session: StoredSession,
    },
    /// A fast connect resumed the stored session.
    FastConnected {
        /// Negotiated heartbeat, ms.
        heartbeat: i32,
    },
    /// The server refused the stored session (Error 103/104); it was dropped (remove it from
    /// storage) and a handshake follows on the same connection.
    FastConnectRefused {
        /// The server's code.
        code: ErrorCode,
    },
    /// The connect attempt failed; the connection must be closed. With
    /// [`RequestError::Refused`] the server refused the handshake: do not reconnect.
    ConnectFailed(RequestError),
    /// A user was bound; `rebind` marks the automatic bind after a (re)connect. Also follows a
    /// bind that had already timed out when the server's answer arrives late.
    Bound {
        /// The request.
        request: RequestId,
        /// The user.
        user_id: String,
        /// Whether this was the automatic re-bind.
        rebind: bool,
    },
    /// The user was unbound.
    Unbound {
        /// The request.
        request: RequestId,
    },
    /// A push arrived.
    Push(PushMessage),
    /// The server acknowledged an upstream push.
    PushAcked {
        /// The request.
        request: RequestId,
    },
    /// Another connection bound this user; the automatic re-bind is switched off.
    Kick {
        /// Device id in the kick.
        device_id: String,
        /// User id in the kick.
        user_id: String,
    },
    /// The answer to an HTTP-proxy request; a synthesized [`HTTP_TIMEOUT_STATUS`] response
    /// when the server did not answer in time.
    HttpResponse {
        /// The request.
        request: RequestId,
        /// The response.
        response: HttpResponse,
    },
    /// A request failed.
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        error: RequestError,
    },
    /// An Error from the server that answers no pending request.
    ServerError {
        /// The command it names.
        cmd: Command,
        /// The code.
        code: ErrorCode,
        /// The reason.
        reason: Option<String>,
    },
    /// Nothing was read for two heartbeat periods: the connection must be closed.
    ConnectionDead,
}

/// An error from the client session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Malformed input: the byte stream lost its framing.
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// Malformed input: a body could not be decrypted or inflated.
    #[error("{cmd:?} body: {source}")]
    Crypto {
        /// The packet's command.
        cmd: Command,
        /// What failed.
        source: CryptoError,
    },
    /// Malformed input: a body's fields are malformed.
    #[error("{cmd:?} body: {source}")]
    Decode {
        /// The packet's command.
        cmd: Command,
        /// What failed.
        source: DecodeError,
    },
    /// The peer broke a protocol rule.
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(&'static str),
    /// API misuse: the session is not ready for requests.
    #[error("not connected (state {0:?})")]
    NotReady(ClientState),
    /// API misuse: the call does not fit the session's state.
    #[error("invalid in state {0:?}")]
    InvalidState(ClientState),
    /// API misuse: unbind without a bound user.
    #[error("no user is bound")]
    NotBound,
    /// API misuse: a bad argument or setting (mostly static text: no formatting code in the
    /// browser package).
    #[error("invalid argument: {0}")]
    InvalidArgument(Cow<'static, str>),
    /// API misuse: the request's body, compressed and encrypted, is larger than the server
    /// accepts ([`ClientConfig::max_outbound_body`]). Nothing was sent; the connection is
    /// unaffected.
    #[error("body of {size} bytes exceeds the server's limit of {max}")]
    PayloadTooLarge {
        /// The sealed body's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Encrypting the handshake failed.
    #[error("handshake encryption: {0}")]
    Encrypt(CryptoError),
}

#[derive(Clone, Debug)]
enum PendingKind {
    Handshake {
        client_key: [u8; 16],
        iv: [u8; 16],
    },
    FastConnect,
    Bind {
        user: BindUser,
        rebind: bool,
    },
    /// `internal`: the unbind the session sends before binding another user (no event on
    /// success).
    Unbind {
        user_id: String,
        internal: bool,
    },
    Http,
    PushAck,
}

impl PendingKind {
    fn cmd(&self) -> Command {
        match self {
            PendingKind::Handshake { .. } => Command::HANDSHAKE,
            PendingKind::FastConnect => Command::FAST_CONNECT,
            PendingKind::Bind { .. } => Command::BIND,
            PendingKind::Unbind { .. } => Command::UNBIND,
            PendingKind::Http => Command::HTTP_PROXY,
            PendingKind::PushAck => Command::PUSH,
        }
    }

    /// Requests MPUSH answers with an Ok message.
    fn answered_by_ok(&self) -> bool {
        matches!(self, PendingKind::Bind { .. } | PendingKind::Unbind { .. })
    }
}

#[derive(Debug)]
struct Pending {
    id: i32,
    kind: PendingKind,
    deadline: u64,
    /// A bind that already failed with a timeout, kept to recognise a late answer.
    timed_out: bool,
}

/// The client session. See the crate docs for the driving loop.
pub struct ClientSession {
    config: ClientConfig,
    rng: ChaCha20Rng,
    wire: Wire,
    state: ClientState,
    stored: Option<StoredSession>,
    /// The user to bind, again after every reconnect, until unbind or a kick.
    binding: Option<BindUser>,
    /// The user MPUSH holds in this connection's context: a Bind was sent for it and no
    /// Unbind since.
    server_user: Option<String>,
    /// That user was kicked: MPUSH still holds it here but routes it to another connection.
    kicked: bool,
    heartbeat: i32,
    read_misses: u32,
    read_deadline: u64,
    next_id: i32,
    pending: Vec<Pending>,
    events: VecDeque<ClientEvent>,
    now: u64,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession").field("state", &self.state).field("heartbeat", &self.heartbeat).finish()
    }
}

impl ClientSession {
    /// A new session; `seed` (32 bytes from a cryptographic source) drives key generation and
    /// RSA padding.
    pub fn new(config: ClientConfig, seed: [u8; 32]) -> Result<ClientSession, ClientError> {
        let config = config.validate()?;
        let wire = Wire::new(config.max_packet_size, config.compress_over, config.max_inflated_size);
        Ok(ClientSession {
            heartbeat: config.max_heartbeat,
            config,
            rng: ChaCha20Rng::from_seed(seed),
            wire,
            state: ClientState::Disconnected,
            stored: None,
            binding: None,
            server_user: None,
            kicked: false,
            read_misses: 0,
            read_deadline: 0,
            next_id: 1,
            pending: Vec::new(),
            events: VecDeque::new(),
            now: 0,
        })
    }

    /// A new session that will try fast connect with `stored` first.
    pub fn resume(config: ClientConfig, seed: [u8; 32], stored: StoredSession) -> Result<ClientSession, ClientError> {
        let mut s = ClientSession::new(config, seed)?;
        s.stored = Some(stored);
        Ok(s)
    }

    /// The configuration in use (commas stripped).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The negotiated heartbeat (ms), or the configured maximum before negotiation.
    pub fn heartbeat(&self) -> i32 {
        self.heartbeat
    }

    /// The stored session fast connect will use.
    pub fn stored_session(&self) -> Option<&StoredSession> {
        self.stored.as_ref()
    }

    /// Replaces (or clears) the stored session; takes effect at the next connect.
    pub fn set_stored_session(&mut self, stored: Option<StoredSession>) {
        self.stored = stored;
    }

    /// The user the session binds (again after each reconnect), if any: set by
    /// [`ClientSession::bind`] (even while its answer is pending or after it timed out), cleared
    /// by [`ClientSession::unbind`], a rejected bind, or a kick.
    pub fn bound_user(&self) -> Option<&str> {
        self.binding.as_ref().map(|b| b.user_id.as_str())
    }

    fn next_request_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = if self.next_id == i32::MAX { 1 } else { self.next_id + 1 };
        id
    }

    /// Forgets what belonged to the previous connection.
    fn reset_connection(&mut self) {
        self.wire.clear();
        self.server_user = None;
        self.kicked = false;
    }

    /// The transport is up: queues FastConnect (with an unexpired stored session) or a
    /// Handshake. Fails with [`ClientError::PayloadTooLarge`] when the configured device and
    /// version strings make a handshake larger than the server accepts.
    pub fn handle_connected(&mut self, now: u64) -> Result<(), ClientError> {
        self.now = now;
        if self.state != ClientState::Disconnected {
            return Err(ClientError::InvalidState(self.state));
        }
        self.reset_connection();
        self.wire.last_read = now;
        self.wire.last_write = now;
        if let Some(s) = self.stored.as_ref().filter(|s| !s.is_expired(now)).cloned() {
            let id = self.next_request_id();
            let m = FastConnect {
                session_id: s.session_id.clone(),
                device_id: self.config.device_id.clone(),
                min_heartbeat: self.config.min_heartbeat,
                max_heartbeat: self.config.max_heartbeat,
            };
            self.wire.send_raw(now, Command::FAST_CONNECT, id, &m);
            self.wire.cipher = Some(AesCipher::new(s.key, s.iv));
            self.pending.push(Pending {
                id,
                kind: PendingKind::FastConnect,
                deadline: now + self.config.request_timeout,
                timed_out: false,
            });
            self.state = ClientState::FastConnecting;
            Ok(())
        } else {
            self.stored = None;
            self.start_handshake(now)
        }
    }

    fn start_handshake(&mut self, now: u64) -> Result<(), ClientError> {
        let mut client_key = [0u8; 16];
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut client_key);
        self.rng.fill_bytes(&mut iv);
        let m = Handshake {
            device_id: self.config.device_id.clone(),
            os_name: self.config.os_name.clone(),
            os_version: self.config.os_version.clone(),
            client_version: self.config.client_version.clone(),
            iv: iv.to_vec(),
            client_key: client_key.to_vec(),
            min_heartbeat: self.config.min_heartbeat,
            max_heartbeat: self.config.max_heartbeat,
            timestamp: now as i64,
        };
        let body = self.config.public_key.encrypt(&mut self.rng, &m.encode()).map_err(ClientError::Encrypt)?;
        self.check_size(body.len())?;
        let id = self.next_request_id();
        self.wire.send_packet(now, Packet { cmd: Command::HANDSHAKE, flags: Flags::CRYPTO, session_id: id, body });
        // The HandshakeOk comes back under AES(clientKey, iv).
        self.wire.cipher = Some(AesCipher::new(client_key, iv));
        self.pending.push(Pending {
            id,
            kind: PendingKind::Handshake { client_key, iv },
            deadline: now + self.config.request_timeout,
            timed_out: false,
        });
        self.state = ClientState::Handshaking;
        Ok(())
    }

    /// The transport is gone: pending requests fail with [`RequestError::ConnectionLost`].
    /// The stored session and the bound user are kept for the next connect.
    pub fn handle_disconnected(&mut self, now: u64) {
        self.now = now;
        for p in std::mem::take(&mut self.pending) {
            if !p.timed_out {
                self.fail(p, RequestError::ConnectionLost);
            }
        }
        self.reset_connection();
        self.state = ClientState::Disconnected;
    }

    fn fail(&mut self, p: Pending, error: RequestError) {
        let request = RequestId(p.id);
        match p.kind {
            PendingKind::Handshake { .. } | PendingKind::FastConnect => {
                self.events.push_back(ClientEvent::ConnectFailed(error));
            }
            PendingKind::Http if error == RequestError::Timeout => {
                let response = HttpResponse {
                    status_code: HTTP_TIMEOUT_STATUS,
                    reason_phrase: Some("Request Timeout".into()),
                    headers: Vec::new(),
                    body: Vec::new(),
                };
                self.events.push_back(ClientEvent::HttpResponse { request, response });
            }
            _ => self.events.push_back(ClientEvent::RequestFailed { request, error }),
        }
    }

    /// Bytes from the transport, in any split. An error means the connection must be closed
    /// (the session moves to [`ClientState::Closing`]).
    pub fn handle_input(&mut self, now: u64, bytes: &[u8]) -> Result<(), ClientError> {
        self.now = now;
        match self.state {
            ClientState::Handshaking | ClientState::FastConnecting | ClientState::Ready => {}
            // Late bytes after the session gave up on the connection are ignored.
            ClientState::Closing => return Ok(()),
            ClientState::Disconnected => return Err(ClientError::InvalidState(self.state)),
        }
        self.wire.last_read = now;
        self.read_misses = 0;
        self.read_deadline = now + self.read_period();
        self.wire.decoder.feed(bytes);
        loop {
            if self.state == ClientState::Closing {
                return Ok(());
            }
            let frame = match self.wire.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.broken(e.into())),
            };
            if let Frame::Packet(p) = frame {
                if let Err(e) = self.handle_packet(now, p) {
                    return Err(self.broken(e));
                }
            }
        }
    }

    fn broken(&mut self, e: ClientError) -> ClientError {
        self.state = ClientState::Closing;
        e
    }

    fn take_pending(&mut self, id: i32, cmd: Command) -> Option<Pending> {
        let i = self.pending.iter().position(|p| p.id == id && p.kind.cmd() == cmd)?;
        Some(self.pending.swap_remove(i))
    }

    /// The pending handshake or fast connect (whatever its id: there is only one).
    fn connect_pending(&self, cmd: Command) -> Option<usize> {
        self.pending.iter().position(|p| p.kind.cmd() == cmd)
    }

    fn open(&self, p: &Packet) -> Result<Vec<u8>, ClientError> {
        self.wire.open(p).map_err(|source| ClientError::Crypto { cmd: p.cmd, source })
    }

    fn handle_packet(&mut self, now: u64, p: Packet) -> Result<(), ClientError> {
        let cmd = p.cmd;
        let dec = |source| ClientError::Decode { cmd, source };
        match cmd {
            Command::HANDSHAKE => {
                if self.state != ClientState::Handshaking {
                    return Ok(());
                }
                let Some(i) = self.connect_pending(cmd) else { return Ok(()) };
                let PendingKind::Handshake { client_key, iv } = self.pending[i].kind else { return Ok(()) };
                // Decoded before the request is settled: on bad input it stays pending and
                // fails as the connection closes.
                let ok = HandshakeOk::decode(&self.open(&p)?).map_err(dec)?;
                let server_key: [u8; 16] = ok
                    .server_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| ClientError::PeerMisbehaved("HandshakeOk server key is not 16 bytes"))?;
                self.pending.swap_remove(i);
                let key = mix_key(&client_key, &server_key);
                self.wire.cipher = Some(AesCipher::new(key, iv));
                let session = StoredSession { session_id: ok.session_id, expire_time: ok.expire_time, key, iv };
                self.stored = Some(session.clone());
                self.established(now, ok.heartbeat);
                self.events.push_back(ClientEvent::HandshakeOk { heartbeat: self.heartbeat, session });
                self.rebind(now);
            }
            Command::FAST_CONNECT => {
                if self.state != ClientState::FastConnecting {
                    return Ok(());
                }
                let Some(i) = self.connect_pending(cmd) else { return Ok(()) };
                let ok = FastConnectOk::decode(&self.open(&p)?).map_err(dec)?;
                self.pending.swap_remove(i);
                self.established(now, ok.heartbeat);
                self.events.push_back(ClientEvent::FastConnected { heartbeat: self.heartbeat });
                self.rebind(now);
            }
            Command::OK => {
                let ok = OkMessage::decode(&self.open(&p)?).map_err(dec)?;
                self.on_ok(p.session_id, ok)?;
            }
            Command::ERROR => {
                let err = ErrorMessage::decode(&self.open(&p)?).map_err(dec)?;
                self.on_error(now, p.session_id, err)?;
            }
            Command::PUSH => {
                let content = self.open(&p)?;
                let ack = AckMode::from_flags(p.flags);
                self.events.push_back(ClientEvent::Push(PushMessage { session_id: p.session_id, content, ack }));
            }
            Command::ACK => {
                if let Some(pending) = self.take_pending(p.session_id, Command::PUSH) {
                    self.events.push_back(ClientEvent::PushAcked { request: RequestId(pending.id) });
                }
            }
            Command::KICK => {
                let k = Kick::decode(&self.open(&p)?).map_err(dec)?;
                self.on_kick(&k.user_id);
                self.events.push_back(ClientEvent::Kick { device_id: k.device_id, user_id: k.user_id });
            }
            Command::HTTP_PROXY => {
                let Some(i) = self.pending.iter().position(|q| q.id == p.session_id && q.kind.cmd() == cmd) else {
                    return Ok(());
                };
                let response = HttpResponse::decode(&self.open(&p)?).map_err(dec)?;
                self.pending.swap_remove(i);
                self.events.push_back(ClientEvent::HttpResponse { request: RequestId(p.session_id), response });
            }
            // Heartbeat frames and commands a client never receives are ignored, as the Java
            // client does.
            _ => {}
        }
        Ok(())
    }

    fn on_ok(&mut self, id: i32, ok: OkMessage) -> Result<(), ClientError> {
        if ok.cmd == Command::HANDSHAKE || ok.cmd == Command::FAST_CONNECT {
            // MPUSH answers these with HandshakeOk / FastConnectOk, never with Ok.
            if matches!(self.state, ClientState::Handshaking | ClientState::FastConnecting) {
                return Err(ClientError::PeerMisbehaved("Ok message answering a handshake or fast connect"));
            }
            return Ok(());
        }
        if ok.cmd == Command::BIND && ok.data.as_deref() == Some(IMPLICIT_UNBIND_OK) {
            // MPUSH unbound a user it held here before binding the new one; the bind's own
            // answer follows with the same id.
            return Ok(());
        }
        let Some(i) = self.pending.iter().position(|p| p.id == id && p.kind.cmd() == ok.cmd && p.kind.answered_by_ok())
        else {
            return Ok(());
        };
        let pending = self.pending.swap_remove(i);
        let request = RequestId(pending.id);
        match pending.kind {
            PendingKind::Bind { user, rebind } => {
                self.events.push_back(ClientEvent::Bound { request, user_id: user.user_id, rebind });
            }
            PendingKind::Unbind { internal: false, .. } => self.events.push_back(ClientEvent::Unbound { request }),
            _ => {}
        }
        Ok(())
    }

    fn on_error(&mut self, now: u64, id: i32, err: ErrorMessage) -> Result<(), ClientError> {
        // The answer to a handshake or fast connect, whatever its id.
        let connecting = match (self.state, err.cmd) {
            (ClientState::Handshaking, Command::HANDSHAKE) | (ClientState::FastConnecting, Command::FAST_CONNECT) => {
                self.connect_pending(err.cmd)
            }
            _ => None,
        };
        let found = connecting.or_else(|| self.pending.iter().position(|p| p.id == id && p.kind.cmd() == err.cmd));
        let Some(i) = found else {
            self.events.push_back(ClientEvent::ServerError { cmd: err.cmd, code: err.code, reason: err.reason });
            return Ok(());
        };
        if err.cmd == Command::BIND && err.reason.as_deref() == Some(IMPLICIT_UNBIND_FAILED) {
            // MPUSH could not unbind the user it held here; it goes on with the bind and answers
            // it with the same id.
            return Ok(());
        }
        let pending = self.pending.swap_remove(i);
        let request = RequestId(pending.id);
        let rejected = RequestError::Rejected { code: err.code, reason: err.reason.clone() };
        match pending.kind {
            PendingKind::FastConnect => {
                // 103 expired / 104 other device (or anything else): forget the session and
                // fall back to a full handshake on this same connection, as the Java client does.
                self.stored = None;
                self.wire.cipher = None;
                self.events.push_back(ClientEvent::FastConnectRefused { code: err.code });
                self.start_handshake(now)?;
            }
            PendingKind::Handshake { .. } => {
                self.state = ClientState::Closing;
                // 102 answers a second handshake on one connection: a transient mix-up, not a
                // refusal (the Java client ignores it too).
                let error = if err.code == ErrorCode::REPEAT_HANDSHAKE {
                    rejected
                } else {
                    RequestError::Refused { code: err.code, reason: err.reason }
                };
                self.events.push_back(ClientEvent::ConnectFailed(error));
            }
            PendingKind::Bind { user, .. } => {
                // MPUSH closes the connection after a refused bind; binding again would be
                // refused again.
                if self.binding.as_ref().is_some_and(|b| b.user_id == user.user_id) {
                    self.binding = None;
                }
                self.server_user = None;
                self.events.push_back(if pending.timed_out {
                    // Its request already failed with a timeout.
                    ClientEvent::ServerError { cmd: err.cmd, code: err.code, reason: err.reason }
                } else {
                    ClientEvent::RequestFailed { request, error: rejected }
                });
            }
            PendingKind::Unbind { user_id, .. } => {
                // "unbind failed": MPUSH keeps the user on this connection.
                if self.server_user.is_none() {
                    self.server_user = Some(user_id);
                }
                self.events.push_back(ClientEvent::RequestFailed { request, error: rejected });
            }
            _ => self.events.push_back(ClientEvent::RequestFailed { request, error: rejected }),
        }
        Ok(())
    }

    fn on_kick(&mut self, user_id: &str) {
        // A kick names the user; one for a user this connection no longer binds is stale. An
        // empty name can only mean ours.
        let ours = user_id.is_empty()
            || self.server_user.as_deref() == Some(user_id)
            || self.binding.as_ref().is_some_and(|b| b.user_id == user_id);
        if ours {
            // No automatic re-bind: it would only kick the other connection back (see the
            // module docs).
            self.binding = None;
            self.kicked = self.server_user.is_some();
        }
    }

    fn established(&mut self, now: u64, heartbeat: i32) {
        // A heartbeat below 2 s would make the write-idle period vanish; keep within bounds.
        self.heartbeat = heartbeat.max(2000);
        self.state = ClientState::Ready;
        self.read_misses = 0;
        self.read_deadline = now + self.read_period();
    }

    fn read_period(&self) -> u64 {
        self.heartbeat as u64 + 1000
    }

    fn write_idle_period(&self) -> u64 {
        self.heartbeat as u64 - 1000
    }

    fn rebind(&mut self, now: u64) {
        if let Some(user) = self.binding.clone() {
            // The same body passed the size check when it was first bound; the new session key
            // does not change its size.
            if self.send_bind(now, user, true).is_err() {
                self.binding = None;
            }
        }
    }

    fn check_size(&self, size: usize) -> Result<(), ClientError> {
        let max = self.config.max_outbound_body;
        if size > max {
            return Err(ClientError::PayloadTooLarge { size, max });
        }
        Ok(())
    }

    /// Seals `plain` (compressed over the limit, session-encrypted) and checks its size.
    fn seal(&self, plain: Vec<u8>) -> Result<(Vec<u8>, Flags), ClientError> {
        let (body, flags) = self.wire.seal(plain, true);
        self.check_size(body.len())?;
        Ok((body, flags))
    }

    /// Sends a sealed body under a fresh request id, and tracks the answer if `kind` says so.
    fn send_sealed(&mut self, now: u64, cmd: Command, sealed: (Vec<u8>, Flags), kind: Option<PendingKind>) -> i32 {
        let id = self.next_request_id();
        let (body, flags) = sealed;
        self.wire.send_packet(now, Packet { cmd, flags, session_id: id, body });
        if let Some(kind) = kind {
            let deadline = now + self.config.request_timeout;
            self.pending.push(Pending { id, kind, deadline, timed_out: false });
        }
        id
    }

    fn send_bind(&mut self, now: u64, user: BindUser, rebind: bool) -> Result<RequestId, ClientError> {
        let sealed = self.seal(user.encode())?;
        if let Some(old) = self.server_user.clone().filter(|old| *old != user.user_id || self.kicked) {
            self.send_unbind(now, old, true);
        }
        self.server_user = Some(user.user_id.clone());
        self.kicked = false;
        Ok(RequestId(self.send_sealed(now, Command::BIND, sealed, Some(PendingKind::Bind { user, rebind }))))
    }

    /// Unbind carries the user id only, as the Java client sends it (MPUSH unbinds the user it
    /// holds on the connection and only checks that the id is present).
    fn send_unbind(&mut self, now: u64, user_id: String, internal: bool) -> RequestId {
        let m = BindUser { user_id: user_id.clone(), alias: None, tags: None };
        // A user id that passed the bind's size check cannot make a larger unbind.
        let sealed = self.wire.seal(m.encode(), true);
        self.server_user = None;
        self.kicked = false;
        RequestId(self.send_sealed(now, Command::UNBIND, sealed, Some(PendingKind::Unbind { user_id, internal })))
    }

    fn check_ready(&self) -> Result<(), ClientError> {
        if self.state == ClientState::Ready {
            Ok(())
        } else {
            Err(ClientError::NotReady(self.state))
        }
    }

    /// Binds `user_id` (with optional alias and tags); it is bound again automatically after
    /// every reconnect until [`ClientSession::unbind`] or a kick. When another user is bound on
    /// this connection (or this one was kicked), an Unbind for it goes out first.
    pub fn bind(
        &mut self,
        now: u64,
        user_id: &str,
        alias: Option<&str>,
        tags: Option<&str>,
    ) -> Result<RequestId, ClientError> {
        self.now = now;
        self.check_ready()?;
        if user_id.is_empty() {
            return Err(ClientError::InvalidArgument("userId must not be empty".into()));
        }
        let user =
            BindUser { user_id: user_id.to_owned(), alias: alias.map(str::to_owned), tags: tags.map(str::to_owned) };
        let id = self.send_bind(now, user.clone(), false)?;
        self.binding = Some(user);
        Ok(id)
    }

    /// Unbinds the bound user. Fails with [`ClientError::NotBound`] when no user is bound,
    /// also after a kick: the user then belongs to another connection, and an Unbind from here
    /// could remove that connection's route (MPUSH matches routes by device id).
    pub fn unbind(&mut self, now: u64) -> Result<RequestId, ClientError> {
        self.now = now;
        self.check_ready()?;
        if self.binding.take().is_none() {
            return Err(ClientError::NotBound);
        }
        match self.server_user.clone().filter(|_| !self.kicked) {
            Some(held) => Ok(self.send_unbind(now, held, false)),
            None => {
                // Nothing bound on this connection (MPUSH would fail on an Unbind then): done.
                let request = RequestId(self.next_request_id());
                self.events.push_back(ClientEvent::Unbound { request });
                Ok(request)
            }
        }
    }

    /// Sends an HTTP request for the server to perform. Exactly one `readTimeout` header (ms)
    /// is sent: the caller's (matched case-insensitively, the last one wins) or the configured
    /// default. Without an answer `request_timeout` after that, the request resolves with a
    /// [`HTTP_TIMEOUT_STATUS`] response.
    pub fn http_request(&mut self, now: u64, mut req: HttpRequest) -> Result<RequestId, ClientError> {
        self.now = now;
        self.check_ready()?;
        let lower = req.uri.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            // Plain concatenation, no `format!`: keeps core::fmt out of the wasm package.
            return Err(ClientError::InvalidArgument(
                ["uri must be an absolute http(s) URL: ", &req.uri].concat().into(),
            ));
        }
        let read_timeout = canonical_read_timeout(&mut req.headers, self.config.http_read_timeout)?;
        let sealed = self.seal(req.encode())?;
        let id = self.send_sealed(now, Command::HTTP_PROXY, sealed, None);
        let deadline = now + read_timeout + self.config.request_timeout;
        self.pending.push(Pending { id, kind: PendingKind::Http, deadline, timed_out: false });
        Ok(RequestId(id))
    }

    /// Pushes `content` to the server. With [`AckMode::Auto`] the server acks (MPUSH acks
    /// auto-ack pushes) and a [`ClientEvent::PushAcked`] or a timeout follows; with
    /// [`AckMode::None`] nothing follows and `None` is returned. MPUSH never acks BIZ_ACK
    /// upstream pushes, so that mode is refused.
    pub fn push(&mut self, now: u64, content: Vec<u8>, ack: AckMode) -> Result<Option<RequestId>, ClientError> {
        self.now = now;
        self.check_ready()?;
        if ack == AckMode::Biz {
            return Err(ClientError::InvalidArgument("MPUSH servers never ack biz-ack upstream pushes".into()));
        }
        let (body, flags) = self.seal(content)?;
        let kind = (ack == AckMode::Auto).then_some(PendingKind::PushAck);
        let id = self.send_sealed(now, Command::PUSH, (body, flags | ack.flags()), kind);
        Ok((ack == AckMode::Auto).then_some(RequestId(id)))
    }

    /// Acknowledges a push (for [`AckMode::Biz`] pushes; auto acks are sent for you).
    pub fn ack(&mut self, now: u64, push_session_id: i32) -> Result<(), ClientError> {
        self.now = now;
        self.check_ready()?;
        self.wire.send_packet(now, Packet::new(Command::ACK, push_session_id));
        Ok(())
    }

    /// Advances timers: request timeouts, write-idle heartbeats and read-timeout detection.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = now;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.deadline <= now && matches!(p.kind, PendingKind::Bind { .. }) {
                // MPUSH answers in order on a connection and may still bind it: keep the entry
                // to report a late answer; the user stays wanted for the next connect.
                p.timed_out = true;
                p.deadline = u64::MAX;
                let request = RequestId(p.id);
                self.events.push_back(ClientEvent::RequestFailed { request, error: RequestError::Timeout });
                i += 1;
            } else if p.deadline <= now {
                let p = self.pending.swap_remove(i);
                if matches!(p.kind, PendingKind::Handshake { .. } | PendingKind::FastConnect) {
                    self.state = ClientState::Closing;
                }
                self.fail(p, RequestError::Timeout);
            } else {
                i += 1;
            }
        }
        if self.state != ClientState::Ready {
            return;
        }
        if now >= self.read_deadline {
            self.read_misses += 1;
            if self.read_misses >= 2 {
                self.state = ClientState::Closing;
                self.events.push_back(ClientEvent::ConnectionDead);
                return;
            }
            self.read_deadline = now + self.read_period();
        }
        if now >= self.wire.last_write + self.write_idle_period() {
            self.wire.send_heartbeat(now);
        }
    }

    /// When to call [`ClientSession::handle_timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        let requests = self.pending.iter().filter(|p| !p.timed_out).map(|p| p.deadline).min();
        let timers = (self.state == ClientState::Ready)
            .then(|| self.read_deadline.min(self.wire.last_write + self.write_idle_period()));
        match (requests, timers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next whole packet to write to the transport.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.poll_transmit()
    }

    /// Next event. Taking an auto-ack push queues its Ack: the push counts as delivered.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let e = self.events.pop_front()?;
        if let ClientEvent::Push(m) = &e {
            if m.ack == AckMode::Auto && self.state == ClientState::Ready {
                self.wire.send_packet(self.now, Packet::new(Command::ACK, m.session_id));
            }
        }
        Some(e)
    }
}

/// Leaves exactly one `readTimeout` header, named as MPUSH reads it, at the place of the first
/// one the caller gave in any letter case (browsers lower-case header names), with the value of
/// the last one; adds the default if there is none. Returns the timeout in ms.
fn canonical_read_timeout(headers: &mut Vec<(String, String)>, default: u64) -> Result<u64, ClientError> {
    let is_it = |k: &str| k.trim().eq_ignore_ascii_case(READ_TIMEOUT_HEADER);
    let Some(first) = headers.iter().position(|(k, _)| is_it(k)) else {
        headers.push((READ_TIMEOUT_HEADER.to_owned(), default.to_string()));
        return Ok(default);
    };
    let value = headers.iter().rev().find(|(k, _)| is_it(k)).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
    // MPUSH falls back to its own default for anything but a positive int: refuse those.
    let ms = value.parse::<u64>().ok().filter(|ms| (1..=i32::MAX as u64).contains(ms)).ok_or_else(|| {
        ClientError::InvalidArgument(
            ["readTimeout header must be 1..=2147483647 milliseconds, not ", &value].concat().into(),
        )
    })?;
    let mut i = 0;
    headers.retain(|(k, _)| {
        i += 1;
        i - 1 == first || !is_it(k)
    });
    headers[first] = (READ_TIMEOUT_HEADER.to_owned(), value);
    Ok(ms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn strip_commas_joins_the_words_between_commas_and_whitespace() {
        let old = |s: &str| s.replace(',', " ").split_whitespace().collect::<Vec<_>>().join(" ");
        for s in ["", "web", " a,b ,, c\t\n d ", ",,,", "Chrome 120,Windows", "a\u{a0}b\u{3000}c,", "é , ü"] {
            assert_eq!(strip_commas(s), old(s), "{s:?}");
        }
    }

    #[test]
    fn read_timeout_header_is_made_canonical() {
        let mut a = h(&[("a", "1")]);
        assert_eq!(canonical_read_timeout(&mut a, 10_000), Ok(10_000));
        assert_eq!(a, h(&[("a", "1"), ("readTimeout", "10000")]));
        let mut b = h(&[("readtimeout", "5000"), ("b", "2"), ("READTIMEOUT", " 7000 ")]);
        assert_eq!(canonical_read_timeout(&mut b, 10_000), Ok(7000));
        assert_eq!(b, h(&[("readTimeout", "7000"), ("b", "2")]));
        for bad in ["0", "-1", "5000, 3000", "", "2147483648"] {
            let mut c = h(&[("readTimeout", bad)]);
            assert!(matches!(canonical_read_timeout(&mut c, 1), Err(ClientError::InvalidArgument(_))), "{bad}");
        }
    }
}
