//! # mpush-proxy
//!
//! A WebSocket <-> TCP bridge that lets browsers speak the binary MPUSH protocol to MPUSH
//! connection servers. Each binary WebSocket message is exactly one MPUSH packet (a `0xDF`
//! heartbeat or one whole frame); the upstream TCP byte stream is cut into packets and each is
//! sent as its own message. The proxy never decrypts: it checks lengths, command bytes and
//! size limits only, and optionally answers HTTP-proxy packets with a 403 itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mpush_proxy::ProxyError> {
//! let mut config = mpush_proxy::Config::default();
//! config.upstreams = vec!["10.0.0.5:3000".into()];
//! let proxy = mpush_proxy::Proxy::bind(config).await?;
//! println!("listening on {}", proxy.local_addr());
//! proxy.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! See `README.md` for configuration keys, close codes and metrics.
#![forbid(unsafe_code)]

mod bridge;
pub mod cli;
pub mod close;
pub mod config;
mod discovery;
#[cfg(feature = "demo")]
pub mod embedded;
mod limits;
mod metrics;
mod origin;
mod server;
mod static_files;
mod tls;
mod upstream;
mod ws;

pub use cli::Cli;
pub use close::CloseReason;
pub use config::{Config, ConfigError, HttpProxyMode, LogFormat};
#[cfg(feature = "demo")]
pub use embedded::Embedded;
pub use server::{serve, Proxy, SUBPROTOCOL};

/// Why the proxy could not start or keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or reading the listener failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}
