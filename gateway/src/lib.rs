//! # mpush-gateway
//!
//! An MPUSH-compatible connection server: native MPUSH clients (the Java/Android SDK, the
//! browser client through `mpush-proxy`) handshake, fast connect, heartbeat, bind, receive
//! pushes with acks and use the HTTP proxy, exactly as against MPUSH's Java connection
//! server. A small HTTP API pushes to users.
//!
//! The protocol lives in `mpush-protocol`'s [`ServerSession`](mpush_protocol::ServerSession);
//! this crate only drives it: one tokio task per connection moves bytes and time in and out
//! and reacts to its events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mpush_gateway::GatewayError> {
//! let gateway = mpush_gateway::Gateway::bind(mpush_gateway::GatewayConfig::default()).await?;
//! println!("mpush on {}, api on {}, key {}", gateway.mpush_addr(), gateway.api_addr(), gateway.public_key());
//! gateway.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpush_protocol::{MemorySessionStore, ServerConfig, SessionStore};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub mod api;
pub mod bind_token;
pub mod config;
pub mod conn;
mod http1;
pub mod http_proxy;
mod java;
pub mod keys;
mod limits;
pub mod proxy_protocol;
pub mod push;
pub mod router;
mod rsa_queue;
pub mod sink;

pub use config::GatewayConfig;
pub use http_proxy::{HttpProxy, ProxyOutcome};
pub use keys::KeyPair;
pub use push::{PushResult, PushTarget, Pusher, UserResult};
pub use router::Router;
pub use sink::{LogSink, Receipt, UpstreamMessage, UpstreamSink, WebhookSink, WebhookStats};

/// An error starting the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The RSA keys are missing, malformed or mismatched.
    #[error("keys: {0}")]
    Key(String),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The `now` every session call takes (milliseconds since the Unix epoch, monotonic), shared
/// with the other native drivers.
pub use mpush_protocol::host::now_ms;

/// Where a stopping gateway is, as its connection tasks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serving.
    Running,
    /// Stopping: take no new work, close once what is under way is done.
    Draining,
    /// `drain-timeout` is up: close now (after a last flush).
    Closing,
}

/// One open connection in `Shared::active` (`connections` in `/health`), given back when
/// dropped: when its task ends, also by a panic.
struct ActiveConn(Arc<Shared>);

impl ActiveConn {
    fn new(shared: Arc<Shared>) -> ActiveConn {
        shared.active.fetch_add(1, Ordering::Relaxed);
        ActiveConn(shared)
    }
}

impl Drop for ActiveConn {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A session seed from the OS CSPRNG.
pub(crate) use mpush_protocol::host::os_seed;

/// How long closing connections get to flush and close once `drain-timeout` is up.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// State shared by every task of one gateway.
pub(crate) struct Shared {
    pub(crate) server_config: Arc<ServerConfig>,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) router: Router,
    pub(crate) sink: Arc<dyn UpstreamSink>,
    /// The webhook sink built from `[upstream] webhook`, whose counters `GET /health` shows;
    /// `None` with the log sink or a sink given in [`GatewayOptions`].
    pub(crate) webhook: Option<WebhookSink>,
    pub(crate) http_proxy: Arc<HttpProxy>,
    pub(crate) public_key: String,
    pub(crate) api_token: Option<String>,
    /// `[api] header-read-timeout`.
    pub(crate) api_header_read_timeout: Duration,
    /// Bind tokens, when `[bind]` has a secret (binding is open otherwise).
    pub(crate) bind_tokens: Option<Arc<bind_token::BindTokens>>,
    /// `[bind]`: token lifetimes for `POST /bind-token`.
    pub(crate) bind: config::BindConfig,
    pub(crate) next_conn_id: AtomicU64,
    /// Push session ids: one counter for every connection, as MPUSH's `BaseMessage.ID_SEQ`.
    pub(crate) next_push_id: AtomicI32,
    pub(crate) active: AtomicUsize,
    pub(crate) limits: Arc<limits::ConnLimits>,
    /// Permits for RSA private-key work on blocking threads (`[limits] rsa-workers`).
    pub(crate) rsa_permits: Arc<rsa_queue::RsaQueue>,
    /// `[limits] max-queued-push-bytes`.
    pub(crate) max_queued_push_bytes: usize,
    /// `[limits] max-queued-commands`.
    pub(crate) max_queued_commands: usize,
    /// `[limits] write-timeout`.
    pub(crate) write_timeout: Duration,
    /// `[limits] trusted-proxies`: peers whose connections open with a PROXY header.
    pub(crate) trusted_proxies: Vec<proxy_protocol::Cidr>,
    /// How long a trusted proxy has to send that header: the pre-handshake heartbeat, the
    /// time a client gets before it must show it is alive.
    pub(crate) proxy_header_timeout: Duration,
}

/// Replaceable parts: where upstream pushes go, where resumable sessions live, and the key
/// pair (to skip generating one).
#[derive(Default)]
pub struct GatewayOptions {
    /// Upstream sink; default: [`WebhookSink`] when `upstream.webhook` is set, else [`LogSink`].
    pub sink: Option<Arc<dyn UpstreamSink>>,
    /// Session store; default: a [`MemorySessionStore`] purged every minute.
    pub session_store: Option<Arc<dyn SessionStore>>,
    /// Key pair; default: from `config.security`.
    pub keys: Option<KeyPair>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions").field("keys", &self.keys.is_some()).finish_non_exhaustive()
    }
}

/// A bound, not yet running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    mpush: TcpListener,
    api: TcpListener,
    purge: Option<Arc<MemorySessionStore>>,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("mpush", &self.mpush_addr()).field("api", &self.api_addr()).finish()
    }
}

/// A connection from a trusted proxy: its PROXY header first (required), then the caps
/// counted against the client it names, then MPUSH with the bytes read past the header.
async fn serve_proxied(
    shared: Arc<Shared>,
    mut stream: tokio::net::TcpStream,
    proxy: SocketAddr,
    phase: watch::Receiver<Phase>,
) {
    let mut draining = phase.clone();
    let header = tokio::select! {
        h = proxy_protocol::read_header(&mut stream, shared.proxy_header_timeout) => h,
        // Nothing is under way before the header: a drain need not wait for it.
        _ = draining.wait_for(|p| *p != Phase::Running) => return,
    };
    let (client, early) = match header {
        Ok((client, early)) => (client.unwrap_or(proxy), early),
        Err(error) => {
            shared.limits.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%proxy, %error, "connection from a trusted proxy refused: no valid PROXY protocol header");
            return;
        }
    };
    let admission = match shared.limits.admit(client.ip()) {
        Ok(a) => a,
        Err(refusal) => {
            tracing::warn!(peer = %client, %proxy, %refusal, "connection refused at accept");
            return;
        }
    };
    conn::serve(shared, stream, client, early, admission, phase).await;
}

/// A listener with an explicit backlog (`[limits] listen-backlog`): `TcpListener::bind` takes
/// std's 128, which a flood of a few hundred connections overflows (new clients' SYNs are then
/// dropped and retried after a second).
fn listen(addr: SocketAddr, backlog: usize) -> Result<TcpListener, GatewayError> {
    let bind = || {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As `TcpListener::bind` does: a restarted gateway rebinds at once, despite the
        // previous process's connections in TIME_WAIT.
        #[cfg(not(windows))]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(u32::try_from(backlog).unwrap_or(u32::MAX))
    };
    bind().map_err(|source| GatewayError::Bind { addr, source })
}

/// Warns when the kernel caps `listen-backlog` lower (Linux: `net.core.somaxconn`).
fn warn_if_backlog_capped(backlog: usize) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/core/somaxconn") else { return };
    if let Ok(cap) = text.trim().parse::<usize>() {
        if cap < backlog {
            tracing::warn!(
                listen_backlog = backlog,
                somaxconn = cap,
                "limits.listen-backlog is capped by net.core.somaxconn; raise that sysctl for the full backlog"
            );
        }
    }
}

impl Gateway {
    /// Validates `config`, loads or generates the keys and binds both listeners.
    pub async fn bind(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        Gateway::bind_with(config, GatewayOptions::default()).await
    }

    /// [`Gateway::bind`] with replaced parts.
    pub async fn bind_with(config: GatewayConfig, options: GatewayOptions) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let keys = match options.keys {
            Some(k) => k,
            None => {
                let security = config.security.clone();
                tokio::task::spawn_blocking(move || KeyPair::from_config(&security))
                    .await
                    .map_err(|e| GatewayError::Key(e.to_string()))??
            }
        };
        let c = &config.core;
        let mut server_config = ServerConfig::new(keys.private_key.clone());
        server_config.min_heartbeat = c.min_heartbeat;
        server_config.max_heartbeat = c.max_heartbeat;
        server_config.max_heartbeat_timeouts = c.max_heartbeat_timeouts;
        server_config.max_packet_size = c.max_packet_size;
        server_config.compress_threshold = c.compress_threshold;
        server_config.session_expire = c.session_expired_time;
        server_config.pre_handshake_heartbeat = c.pre_handshake_heartbeat;
        if c.handshake_timeout.is_some() {
            tracing::warn!(
                "core.handshake-timeout is ignored: MPUSH closes a connection that never handshakes by its idle \
                 check (core.pre-handshake-heartbeat, 4 checks)"
            );
        }
        server_config.http_proxy_enabled = config.http.proxy_enabled;
        server_config.max_handshake_body = config.limits.max_handshake_body;
        server_config.max_field_len = config.limits.max_field_length;
        let bind_tokens = bind_token::from_config(&config.bind)?;
        server_config.bind_validator = bind_tokens
            .clone()
            .map(|t| Arc::new(bind_token::BindTokenValidator::new(t)) as Arc<dyn mpush_protocol::BindValidator>);
        // Private-key work goes to blocking threads behind `rsa_permits` (conn.rs).
        server_config.defer_rsa = true;
        // Upstream auto-ack pushes are acked once the sink has them (conn.rs, sink.rs).
        server_config.defer_upstream_ack = true;
        let rsa_workers = match config.limits.rsa_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (store, purge): (Arc<dyn SessionStore>, _) = match options.session_store {
            Some(s) => (s, None),
            None => {
                let m = Arc::new(MemorySessionStore::new(c.max_sessions));
                (m.clone(), Some(m))
            }
        };
        let (sink, webhook): (Arc<dyn UpstreamSink>, _) = match (options.sink, &config.upstream.webhook) {
            (Some(s), _) => (s, None),
            (None, Some(url)) => {
                let webhook = WebhookSink::with_config(url.clone(), &config.upstream);
                (Arc::new(webhook.clone()), Some(webhook))
            }
            (None, None) => (Arc::new(LogSink), None),
        };
        let backlog = config.limits.listen_backlog;
        let mpush = listen(config.listen, backlog)?;
        let api = listen(config.api_listen, backlog)?;
        warn_if_backlog_capped(backlog);
        let shared = Arc::new(Shared {
            server_config: Arc::new(server_config),
            store,
            router: Router::default(),
            sink,
            webhook,
            http_proxy: Arc::new(HttpProxy::new(config.http.clone())),
            public_key: keys.public_key_base64,
            api_token: config.api.token.clone().filter(|t| !t.is_empty()),
            api_header_read_timeout: Duration::from_millis(config.api.header_read_timeout),
            bind_tokens,
            bind: config.bind.clone(),
            next_conn_id: AtomicU64::new(1),
            next_push_id: AtomicI32::new(1),
            active: AtomicUsize::new(0),
            limits: Arc::new(limits::ConnLimits::new(&config.limits)),
            // Newest first once more than two rounds of workers wait (see rsa_queue.rs).
            rsa_permits: Arc::new(rsa_queue::RsaQueue::new(rsa_workers, 2 * rsa_workers)),
            max_queued_push_bytes: config.limits.max_queued_push_bytes,
            max_queued_commands: config.limits.max_queued_commands,
            write_timeout: Duration::from_millis(config.limits.write_timeout),
            trusted_proxies: config.limits.trusted_proxies.clone(),
            proxy_header_timeout: Duration::from_millis(
                u64::try_from(config.core.pre_handshake_heartbeat).unwrap_or(0).max(1000),
            ),
        });
        Ok(Gateway { shared, mpush, api, purge, drain_timeout: Duration::from_millis(config.drain_timeout) })
    }

    /// Where the MPUSH byte stream is served.
    pub fn mpush_addr(&self) -> SocketAddr {
        self.mpush.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the push API is served.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The public key clients need, base64 X.509 (`mp.security.public-key`).
    pub fn public_key(&self) -> String {
        self.shared.public_key.clone()
    }

    /// Whether binds must carry a bind token (`[bind]` has a secret); open binding otherwise.
    pub fn bind_enforced(&self) -> bool {
        self.shared.bind_tokens.is_some()
    }

    /// Pushes to users from the embedding program, as `POST /push` does.
    pub fn pusher(&self) -> Pusher {
        Pusher { shared: self.shared.clone() }
    }

    /// Runs until `shutdown` completes, then drains and returns: stops accepting (MPUSH
    /// connections and push API requests), lets every connection finish what it has under
    /// way (pushes waiting for acks, upstream pushes waiting for the sink, HTTP-proxy
    /// requests) and close, for at most `drain-timeout`; then closes what is left (each
    /// connection flushes first) and waits for the sink's posts still under way until that
    /// same deadline.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let (api_stop_tx, api_stop_rx) = watch::channel(false);
        let Gateway { shared, mpush, api, purge, drain_timeout } = self;
        let api_task = tokio::spawn(api::serve(shared.clone(), api, api_stop_rx));
        let purge_task = purge.map(|store| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let left = store.purge_expired(now_ms());
                    tracing::debug!(sessions = left, "purged expired sessions");
                }
            })
        });
        let connections = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                r = mpush.accept() => match r {
                    Ok((stream, peer)) => {
                        if shared.trusted_proxies.iter().any(|c| c.contains(peer.ip())) {
                            let active = ActiveConn::new(shared.clone());
                            let shared = shared.clone();
                            let phase = phase_rx.clone();
                            // The header is read in the connection's task (a slow proxy must
                            // not hold up accept) and the caps are counted against the client
                            // it names, not against the proxy.
                            connections.spawn(async move {
                                serve_proxied(shared, stream, peer, phase).await;
                                drop(active);
                            });
                            continue;
                        }
                        // Caps before the connection costs anything: dropping the stream
                        // closes it.
                        let admission = match shared.limits.admit(peer.ip()) {
                            Ok(a) => a,
                            Err(refusal) => {
                                tracing::warn!(%peer, %refusal, "connection refused at accept");
                                continue;
                            }
                        };
                        let active = ActiveConn::new(shared.clone());
                        let shared = shared.clone();
                        let phase = phase_rx.clone();
                        connections.spawn(async move {
                            conn::serve(shared, stream, peer, Vec::new(), admission, phase).await;
                            drop(active);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        // Connections learn of the drain before the listener closes: anything a client sends
        // once it can see the gateway has stopped accepting is handled as draining work.
        let _ = phase_tx.send(Phase::Draining);
        // The API finishes the requests it has (a push waits for its acks) and takes no more.
        let _ = api_stop_tx.send(true);
        drop(mpush);
        let deadline = tokio::time::Instant::now() + drain_timeout;
        tracing::info!(
            connections = shared.active.load(Ordering::Relaxed),
            drain_timeout_ms = drain_timeout.as_millis() as u64,
            "draining"
        );
        connections.close();
        if tokio::time::timeout_at(deadline, connections.wait()).await.is_err() {
            tracing::warn!(
                connections = shared.active.load(Ordering::Relaxed),
                "drain-timeout reached: closing the connections still busy"
            );
            let _ = phase_tx.send(Phase::Closing);
            if tokio::time::timeout(CLOSE_WAIT, connections.wait()).await.is_err() {
                tracing::warn!("some connections did not finish closing");
            }
        }
        // Upstream pushes still being posted (no-ack ones; auto-ack ones kept their
        // connection open above): finished, within the same deadline.
        if tokio::time::timeout_at(deadline, shared.sink.drain()).await.is_err() {
            tracing::warn!("drain-timeout reached with upstream pushes still being posted (none of them was acked)");
        }
        if let Some(t) = purge_task {
            t.abort();
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, api_task).await;
        tracing::info!("stopped");
    }

    /// Runs the gateway in a background task; the handle stops it.
    pub fn spawn(self) -> GatewayHandle {
        let (tx, mut rx) = watch::channel(false);
        let mpush_addr = self.mpush_addr();
        let api_addr = self.api_addr();
        let public_key = self.public_key();
        let pusher = self.pusher();
        let task = tokio::spawn(self.run_until(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
        GatewayHandle { stop: tx, task, mpush_addr, api_addr, public_key, pusher }
    }
}

/// A gateway running in the background (from [`Gateway::spawn`]).
#[derive(Debug)]
pub struct GatewayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    mpush_addr: SocketAddr,
    api_addr: SocketAddr,
    public_key: String,
    pusher: Pusher,
}

impl GatewayHandle {
    /// Where the MPUSH byte stream is served.
    pub fn mpush_addr(&self) -> SocketAddr {
        self.mpush_addr
    }

    /// Where the push API is served.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The public key clients need, base64 X.509.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Pushes to users from the embedding program.
    pub fn pusher(&self) -> &Pusher {
        &self.pusher
    }

    /// Stops the gateway as SIGTERM stops the binary, and waits for it to finish: no new
    /// connections or API requests, work under way finished within `drain-timeout`, then
    /// every connection closed (see [`Gateway::run_until`]).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
