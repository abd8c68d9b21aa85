//! # mpush-protocol
//!
//! A sans-IO implementation of the MPUSH push protocol (github.com/mpusher/mpush): framing,
//! the body field codec, every message, MPUSH's crypto, and the client and server sessions as
//! deterministic state machines. Nothing here touches sockets, clocks or global randomness:
//! drivers pass bytes, the current time (`now`, milliseconds since the Unix epoch) and a random
//! seed in, and take bytes, events and the next wake-up time out.
//!
//! ```text
//! session.handle_connected(now);
//! session.handle_input(now, &bytes)?;      // any split of the byte stream
//! session.handle_timeout(now);
//! while let Some(b) = session.poll_transmit() { /* write b */ }
//! while let Some(e) = session.poll_event() { /* react */ }
//! let wake_at = session.poll_timeout();
//! ```
#![forbid(unsafe_code)]

pub mod body;
pub mod codec;
pub mod crypto;
pub mod deflate;
pub mod frame;
#[cfg(feature = "host")]
pub mod host;
pub mod message;
// Used without the `compress` feature; its tests compare it with miniz_oxide either way.
#[cfg_attr(feature = "compress", allow(dead_code))]
mod inflate;
mod pkcs1;
#[cfg(feature = "proxy-header")]
pub mod proxy_header;
mod rng;

pub use codec::DecodeError;
#[cfg(feature = "server")]
pub use crypto::RsaPrivateKey;
pub use crypto::{AesCipher, CryptoError, RsaPublicKey};
pub use frame::{Command, Flags, Frame, FrameDecoder, FrameError, Packet, HEARTBEAT_BYTE};
pub use message::{ErrorCode, Headers, HttpMethod, HttpRequest, HttpResponse, Message};
pub mod client;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
mod wire;

pub use client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, ClientState, PushMessage, RequestError, RequestId,
};
#[cfg(feature = "server")]
pub use server::{
    BindValidator, ClientInfo, CloseReason, ServerConfig, ServerError, ServerEvent, ServerSession, ServerUsageError,
};
pub use session::{AckMode, ClientType, MemorySessionStore, ResumableSession, SessionStore, StoredSession};
