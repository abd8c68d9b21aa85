//! The listener: accept loop, TLS, HTTP routing, the WebSocket upgrade, sessions and drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::bridge::{self, Ctx};
use crate::close::CloseReason;
use crate::config::Config;
use crate::limits::{Counted, LimitError, Limiter, Permit};
use crate::metrics::{Metrics, Rejection};
use crate::origin::{self, Origin};
use crate::upstream::Upstreams;
use crate::{static_files, tls, ProxyError};

/// The WebSocket subprotocol of the MPUSH binary protocol.
pub const SUBPROTOCOL: &str = "mpush";
/// How long shut-down sessions get for their close handshakes before `run` returns anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// At most one warning per this interval about connections refused at accept.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

struct Shared {
    config: Config,
    metrics: Arc<Metrics>,
    upstreams: Arc<Upstreams>,
    /// WebSocket sessions, checked at the upgrade.
    limiter: Arc<Limiter>,
    /// Open TCP connections, checked at accept.
    conn_limiter: Arc<Limiter>,
    /// When a refusal at accept was last logged (ms since `started`), for rate limiting.
    refusal_logged_ms: AtomicU64,
    /// Refusals at accept not logged since then.
    refusals_unlogged: AtomicU64,
    started: Instant,
    /// Stop accepting; finish HTTP keep-alive connections; refuse new upgrades.
    draining: CancellationToken,
    /// Close open WebSocket sessions with 1001.
    closing: CancellationToken,
    /// `config.public_origin`, parsed (validated before).
    public_origin: Option<Origin>,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    /// `listen`: WebSocket, static files, health (and metrics/readiness without `ops_listen`).
    Public,
    /// `ops_listen`: health, readiness and metrics only.
    Ops,
}

/// A bound proxy, ready to [`run`](Proxy::run). Binding first lets a caller (or a test that
/// binds `127.0.0.1:0`) learn the address before serving.
pub struct Proxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    ops: Option<(TcpListener, SocketAddr)>,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr)
            .field("ops_addr", &self.ops_addr())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Proxy {
    /// Validates `config`, loads TLS files and binds `config.listen`.
    pub async fn bind(config: Config) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let listener = Proxy::bind_listener(&config)?;
        Proxy::from_listener(config, listener)
    }

    /// Binds `config.listen` with `config.listen_backlog`, as [`Proxy::bind`] does (for
    /// [`Proxy::from_listener`] when the address is needed before the proxy starts). Call it
    /// inside a Tokio runtime.
    pub fn bind_listener(config: &Config) -> Result<TcpListener, ProxyError> {
        let addr = config.listen;
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As `TcpListener::bind` does: a restarted proxy rebinds at once, despite the previous
        // process's connections in TIME_WAIT.
        #[cfg(not(windows))]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let backlog = u32::try_from(config.listen_backlog).unwrap_or(u32::MAX);
        let listener = socket.listen(backlog)?;
        if let Some(cap) = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .filter(|&cap| cap < config.listen_backlog)
        {
            warn!(
                listen_backlog = config.listen_backlog,
                somaxconn = cap,
                "listen_backlog is capped by net.core.somaxconn; raise that sysctl for the full backlog"
            );
        }
        Ok(listener)
    }

    /// Like [`Proxy::bind`] with an already bound listener (`config.listen` is ignored;
    /// `config.ops_listen`, when set, is bound here). Call it inside a Tokio runtime.
    pub fn from_listener(config: Config, listener: TcpListener) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let local_addr = listener.local_addr()?;
        let ops = match config.ops_listen {
            Some(addr) => {
                let std = std::net::TcpListener::bind(addr)?;
                std.set_nonblocking(true)?;
                let ops = TcpListener::from_std(std)?;
                let addr = ops.local_addr()?;
                Some((ops, addr))
            }
            None => None,
        };
        let public_origin = config.public_origin.as_deref().and_then(Origin::parse);
        if public_origin.is_none() && config.allowed_origins.is_empty() && !local_addr.ip().is_loopback() {
            warn!(
                %local_addr,
                "neither public_origin nor allowed_origins is set: only pages on loopback origins may open \
                 WebSockets; set public_origin to the origin browsers load your pages from"
            );
        }
        let registry = !config.zk.is_empty();
        let metrics = Arc::new(Metrics::new(registry));
        let upstreams = Arc::new(
            Upstreams::new(&config.upstreams, registry, config.connect_timeout, Arc::clone(&metrics))
                .with_proxy_protocol(config.upstream_proxy_protocol),
        );
        let limiter = Arc::new(Limiter::new(
            Counted::Sessions,
            config.max_connections,
            config.max_connections_per_ip,
            Arc::clone(&metrics),
        ));
        let (open, open_per_ip) = config.open_connection_caps();
        let conn_limiter = Arc::new(Limiter::new(Counted::Connections, open, open_per_ip, Arc::clone(&metrics)));
        let shared = Arc::new(Shared {
            config,
            metrics,
            upstreams,
            limiter,
            conn_limiter,
            refusal_logged_ms: AtomicU64::new(0),
            refusals_unlogged: AtomicU64::new(0),
            started: Instant::now(),
            draining: CancellationToken::new(),
            closing: CancellationToken::new(),
            public_origin,
        });
        Ok(Proxy { listener, local_addr, ops, tls, shared })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the ops listener (`/metrics`, `/readyz`), if `ops_listen` is set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting (new connections are
    /// refused), lets open sessions run for `drain_timeout`, closes the remaining WebSockets
    /// with 1001 "going away", waits briefly for their close handshakes and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let Proxy { listener, local_addr, ops, tls, shared } = self;
        let ops_addr = ops.as_ref().map(|(_, a)| *a);
        // With `--zk` the connection servers come from the registry (logged as they arrive):
        // the start-up line names it instead of showing an empty static list.
        info!(
            %local_addr,
            ?ops_addr,
            tls = tls.is_some(),
            upstreams = ?shared.config.upstreams,
            zk = ?shared.config.zk,
            "mpush-proxy listening"
        );
        let tracker = TaskTracker::new();
        // The registry watch lives as long as the proxy serves (also while draining).
        let discovery = crate::discovery::Settings::from_config(&shared.config).map(|settings| {
            tokio::spawn(crate::discovery::run(settings, Arc::clone(&shared.upstreams), Arc::clone(&shared.metrics)))
        });
        if let Some((ops, _)) = ops {
            tracker.spawn(serve_ops(Arc::clone(&shared), ops, tracker.clone()));
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Counted before TLS and HTTP: over a cap, the socket is closed here
                        // and nothing is allocated for it.
                        let Some(permit) = admit(&shared, peer) else { continue };
                        let _ = stream.set_nodelay(true);
                        tracker.spawn(handle_connection(Arc::clone(&shared), tls.clone(), stream, peer, permit));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        let open = shared.metrics.sessions_current.load(Relaxed);
        info!(open_sessions = open, drain_timeout = ?shared.config.drain_timeout, "draining");
        shared.draining.cancel();
        tracker.close();
        if timeout(shared.config.drain_timeout, tracker.wait()).await.is_err() {
            shared.closing.cancel();
            if timeout(CLOSE_WAIT, tracker.wait()).await.is_err() {
                warn!("some connections did not finish closing");
            }
        }
        if let Some(d) = discovery {
            d.abort();
        }
        info!("stopped");
        Ok(())
    }
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains (see [`Proxy::run`]).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    Proxy::from_listener(config, listener)?.run(shutdown).await
}

/// The open-connection caps at accept. `None`: over a cap; the caller drops the socket.
fn admit(shared: &Shared, peer: SocketAddr) -> Option<Permit> {
    let why = match shared.conn_limiter.try_acquire(peer.ip()) {
        Ok(permit) => return Some(permit),
        Err(why) => why,
    };
    let counter = match why {
        LimitError::Total => &shared.metrics.refused_total_cap,
        LimitError::PerIp => &shared.metrics.refused_per_ip_cap,
    };
    counter.fetch_add(1, Relaxed);
    // A flood must not turn into a log flood: one warning per interval, with the count.
    let now = u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let last = shared.refusal_logged_ms.load(Relaxed);
    let interval = u64::try_from(REFUSAL_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
    let due = last == 0 || now.saturating_sub(last) >= interval;
    if due && shared.refusal_logged_ms.compare_exchange(last, now.max(1), Relaxed, Relaxed).is_ok() {
        let suppressed = shared.refusals_unlogged.swap(0, Relaxed);
        warn!(%peer, cap = ?why, suppressed, "connection refused at accept: open-connection cap reached");
    } else {
        shared.refusals_unlogged.fetch_add(1, Relaxed);
        debug!(%peer, cap = ?why, "connection refused at accept");
    }
    None
}

async fn handle_connection(
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: Permit,
) {
    match tls {
        None => serve_http(shared, stream, peer, Listener::Public).await,
        // Boxed: a plain connection's task does not carry the size of a TLS handshake.
        Some(acceptor) => {
            Box::pin(async move {
                match timeout(shared.config.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_http(shared, stream, peer, Listener::Public).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            })
            .await
        }
    }
}

/// The ops listener: plain HTTP, its own connection cap (a flood on the public listener does
/// not take metrics and readiness down with it), stops accepting when draining starts.
async fn serve_ops(shared: Arc<Shared>, listener: TcpListener, tracker: TaskTracker) {
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.config.ops_max_connections));
    loop {
        let accepted = tokio::select! {
            () = shared.draining.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    debug!(%peer, "ops connection refused at accept: ops_max_connections reached");
                    continue;
                };
                let shared = Arc::clone(&shared);
                tracker.spawn(async move {
                    serve_http(shared, stream, peer, Listener::Ops).await;
                    drop(slot);
                });
            }
            Err(e) => {
                warn!(error = %e, "ops accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An accepted upgrade, waiting for hyper to hand over the connection.
struct Pending {
    upgrade: OnUpgrade,
    permit: Permit,
}

type Slot = Arc<Mutex<Option<Pending>>>;

/// Requests seen on one HTTP connection, for the keep-alive idle timeout and request cap.
#[derive(Default)]
struct Activity {
    requests: AtomicUsize,
    notify: tokio::sync::Notify,
}

/// HTTP/1.1 on one connection; if a request was upgraded, the WebSocket session then runs
/// in this same task (one task per connection).
async fn serve_http<I>(shared: Arc<Shared>, io: I, peer: SocketAddr, side: Listener)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot: Slot = Arc::default();
    let activity = Arc::new(Activity::default());
    let service = {
        let (shared, slot, activity) = (Arc::clone(&shared), Arc::clone(&slot), Arc::clone(&activity));
        service_fn(move |req| {
            let (shared, slot, activity) = (Arc::clone(&shared), Arc::clone(&slot), Arc::clone(&activity));
            async move {
                let served = activity.requests.fetch_add(1, Relaxed) + 1;
                activity.notify.notify_one();
                let mut r = match side {
                    Listener::Public => route(&shared, req, peer, &slot).await,
                    Listener::Ops => ops_route(&shared, &req).await.unwrap_or_else(|| not_found(&req)),
                };
                if served >= shared.config.http_max_requests && r.status() != StatusCode::SWITCHING_PROTOCOLS {
                    // hyper closes the connection after a response that says so.
                    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(r)
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .max_buf_size(shared.config.max_header_bytes);
    // hyper's connection state (buffers, dispatcher: kilobytes) lives in its own allocation
    // and is gone before the session starts, so an idle session's task holds only the
    // session itself (issue 12: memory per idle session).
    let result = Box::pin(async {
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        let idle = shared.config.http_idle_timeout;
        loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                () = shared.draining.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
                // Any request restarts the idle timer.
                () = activity.notify.notified() => {}
                () = tokio::time::sleep(idle) => {
                    // Keep-alive idle (or never sent a request): close once any response is out.
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
            }
        }
    })
    .await;
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection error");
    }
    let pending = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop((slot, activity));
    if let Some(pending) = pending {
        run_session(&shared, pending, peer).await;
    }
}

async fn run_session(shared: &Shared, pending: Pending, peer: SocketAddr) {
    let _permit = pending.permit;
    let upgraded = match pending.upgrade.await {
        Ok(u) => u,
        Err(e) => {
            debug!(%peer, error = %e, "upgrade failed");
            return;
        }
    };
    let mut ws = bridge::Browser::new(upgraded);
    let ctx = Ctx { config: &shared.config, metrics: &shared.metrics, shutdown: &shared.closing };
    let connected = tokio::select! {
        biased;
        () = shared.closing.cancelled() => None,
        c = shared.upstreams.connect(peer) => Some(c),
    };
    // Counted before anything is closed, so the metric is exact once either side sees a close.
    let reason = match connected {
        None | Some(None) => {
            let reason = if connected.is_none() { CloseReason::GoingAway } else { CloseReason::UpstreamUnavailable };
            shared.metrics.closed(reason);
            reason
        }
        Some(Some((mut upstream, lease))) => {
            debug!(%peer, upstream = lease.addr(), "session open");
            let reason = bridge::relay(&mut ws, &mut upstream, &ctx).await;
            shared.metrics.closed(reason);
            drop(upstream); // closing either side closes the other
            reason
        }
    };
    bridge::close(&mut ws, reason).await;
    info!(%peer, reason = reason.label(), code = reason.code(), "session closed");
}

/// 200 when some listed upstream accepts TCP connections, else 503; the body says why and,
/// with `--zk`, whether the node set is current or the last known one.
async fn readyz(shared: &Shared) -> Response<Body> {
    let ready = shared.upstreams.ready().await;
    let nodes = shared.upstreams.listed();
    let mut body = if ready { "ready\n".to_owned() } else { "not ready: no upstream reachable\n".to_owned() };
    body.push_str(&format!("upstreams: {}\n", if nodes.is_empty() { "none".to_owned() } else { nodes.join(" ") }));
    if let Some(r) = shared.upstreams.registry_status() {
        let ago = r.since.elapsed().as_secs();
        body.push_str(&match (r.connected, r.listed_once) {
            (true, _) => "registry: connected\n".to_owned(),
            (false, false) => format!("registry: not read yet ({})\n", r.error.as_deref().unwrap_or("connecting")),
            (false, true) => format!(
                "registry: unreachable for {ago}s ({}); serving the last known connection servers\n",
                r.error.as_deref().unwrap_or("disconnected")
            ),
        });
    }
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn method_not_allowed() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// 404, or 405 for a method other than GET/HEAD.
fn not_found(req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed();
    }
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// Health, readiness and metrics: on the ops listener if there is one, else on the public one
/// (`/healthz` on both: it tells nothing and load balancers probe the public port). `None`
/// when `req` is not one of them here.
async fn ops_route(shared: &Shared, req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    Some(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readyz(shared).await,
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render(&shared.upstreams.stats()))));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        _ => return None,
    })
}

async fn route(shared: &Shared, req: Request<Incoming>, peer: SocketAddr, slot: &Slot) -> Response<Body> {
    if req.uri().path() == shared.config.ws_path {
        return upgrade(shared, req, peer, slot);
    }
    #[cfg(feature = "demo")]
    if let Some(e) = &shared.config.embedded {
        if crate::embedded::handles(req.uri().path()) {
            return crate::embedded::route(e, &shared.config.ws_path, req, peer).await;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed();
    }
    let path = req.uri().path();
    if path == "/healthz" || shared.config.ops_listen.is_none() {
        if let Some(r) = ops_route(shared, &req).await {
            return r;
        }
    }
    match &shared.config.www {
        None => text(StatusCode::NOT_FOUND, "not found\n"),
        Some(root) => match static_files::load(root, path).await {
            Ok(Some((bytes, content_type))) => {
                let mut r = Response::new(Full::new(Bytes::from(bytes)));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                r
            }
            Ok(None) => text(StatusCode::NOT_FOUND, "not found\n"),
            Err(e) => {
                warn!(path, error = %e, "static file read failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "read error\n")
            }
        },
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn upgrade(shared: &Shared, mut req: Request<Incoming>, peer: SocketAddr, slot: &Slot) -> Response<Body> {
    let reject = |why: Rejection, status: StatusCode, body: &'static str| {
        shared.metrics.rejected(why);
        debug!(%peer, ?why, "upgrade refused");
        text(status, body)
    };
    if shared.draining.is_cancelled() {
        return reject(Rejection::Draining, StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let h = req.headers();
    if !has_token(h, header::UPGRADE, "websocket") || !has_token(h, header::CONNECTION, "upgrade") {
        let mut r = reject(Rejection::BadHandshake, StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required\n");
        r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    }
    if req.method() != Method::GET {
        return reject(Rejection::BadHandshake, StatusCode::METHOD_NOT_ALLOWED, "GET required\n");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        let mut r = reject(Rejection::BadHandshake, StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 required\n");
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return reject(Rejection::BadHandshake, StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing\n");
    };
    if let Some(origin) = h.get(header::ORIGIN) {
        // Never against the Host header (see crate::origin).
        let allowed = &shared.config.allowed_origins;
        let ok = origin.to_str().is_ok_and(|o| origin::allowed(allowed, shared.public_origin.as_ref(), o));
        if !ok {
            return reject(Rejection::Origin, StatusCode::FORBIDDEN, "origin not allowed\n");
        }
    }
    let accept = derive_accept_key(key.as_bytes());
    let mpush = has_token(h, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    let permit = match shared.limiter.try_acquire(peer.ip()) {
        Ok(p) => p,
        Err(LimitError::Total) => {
            return reject(Rejection::TotalLimit, StatusCode::SERVICE_UNAVAILABLE, "too many connections\n")
        }
        Err(LimitError::PerIp) => {
            return reject(
                Rejection::PerIpLimit,
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from your address\n",
            )
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Pending { upgrade, permit });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = r.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if mpush {
        hs.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    r
}
