//! Gateway settings: a TOML file in MPUSH's vocabulary (`mp.core.*`, `mp.security.*`,
//! `mp.http.*`), overridable from the environment and the command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::GatewayError;

/// Everything the gateway needs. `Default` binds both listeners to 127.0.0.1:0 and generates
/// an ephemeral key pair.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GatewayConfig {
    /// Where the MPUSH byte stream is served (MPUSH's connection server port is 3000).
    pub listen: SocketAddr,
    /// Where the push API is served; keep it on loopback unless a token is set.
    pub api_listen: SocketAddr,
    /// `drain-timeout`: on SIGTERM or SIGINT (and [`crate::GatewayHandle::shutdown`]), how
    /// long in-flight work may take, ms: pushes waiting for their acks, upstream pushes on
    /// their way to the webhook, HTTP-proxy requests. Connections close as soon as theirs is
    /// done; whatever is left at the end is closed (an upstream push not yet stored is then
    /// never acked).
    pub drain_timeout: u64,
    /// `mp.security.*`: the RSA key pair.
    pub security: SecurityConfig,
    /// `mp.core.*`: heartbeat, packet and session limits.
    pub core: CoreConfig,
    /// `mp.http.*`: the HTTP proxy (cmd 12).
    pub http: HttpProxyConfig,
    /// The push API.
    pub api: ApiConfig,
    /// Where upstream pushes (client -> server) go.
    pub upstream: UpstreamConfig,
    /// Per-peer and per-packet bounds MPUSH does not have, against hostile clients.
    pub limits: LimitsConfig,
    /// Bind authentication (signed bind tokens); open binding when no secret is set.
    pub bind: BindConfig,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            drain_timeout: 10_000,
            security: SecurityConfig::default(),
            core: CoreConfig::default(),
            http: HttpProxyConfig::default(),
            api: ApiConfig::default(),
            upstream: UpstreamConfig::default(),
            limits: LimitsConfig::default(),
            bind: BindConfig::default(),
        }
    }
}

/// `[bind]`: who may bind which user id. MPUSH's default lets any connected client bind any
/// user; with a secret the gateway accepts only binds carrying a token minted for that user
/// (see [`crate::bind_token`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BindConfig {
    /// A file holding the HMAC secret (at least 32 bytes; surrounding whitespace ignored).
    pub token_secret_file: Option<PathBuf>,
    /// The secret itself, from `MPUSH_GATEWAY_BIND_TOKEN_SECRET` only: never from the file
    /// (config files get committed) nor the command line (visible in `ps`).
    #[serde(skip)]
    pub token_secret: Option<Secret>,
    /// Lifetime of a token minted by `POST /bind-token` without `ttl`, seconds.
    pub default_token_ttl: u64,
    /// Longest `ttl` `POST /bind-token` accepts, seconds.
    pub max_token_ttl: u64,
}

impl Default for BindConfig {
    fn default() -> BindConfig {
        BindConfig { token_secret_file: None, token_secret: None, default_token_ttl: 3600, max_token_ttl: 86_400 }
    }
}

impl BindConfig {
    /// Whether binds must carry a token.
    pub fn enforced(&self) -> bool {
        self.token_secret.is_some() || self.token_secret_file.is_some()
    }
}

/// A secret string that `Debug` does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Bounds on what one peer can cost the gateway, checked before the work they bound
/// (gateway-specific; MPUSH has none of them). `0` disables a connection cap.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Open MPUSH connections in total; more are closed at accept.
    pub max_connections: usize,
    /// Open MPUSH connections per client IP address (IPv6: per /64); more are closed at
    /// accept.
    pub max_connections_per_ip: usize,
    /// Connections per client IP (IPv6: per /64) that have not completed a handshake or fast
    /// connect yet; more are closed at accept.
    pub max_unauthenticated_per_ip: usize,
    /// Largest RSA-encrypted handshake or fast connect body, bytes, checked before
    /// decrypting (a real one is 1 to 3 blocks of 128 bytes); bigger: Error 100 and close.
    pub max_handshake_body: usize,
    /// Longest string field (device id, OS strings, session id, user id, alias, tags) of a
    /// handshake, fast connect, bind or unbind, bytes; longer: Error 100 and close.
    pub max_field_length: usize,
    /// RSA private-key operations (handshake bodies) running at once, on blocking threads
    /// off the async workers; `0`: one per CPU core.
    pub rsa_workers: usize,
    /// Content bytes of pushes queued for one connection and not yet taken by it (a client
    /// that does not read stops taking them once its socket is full); a push beyond it gets
    /// `failure` at once. A push is always queued when nothing else is.
    pub max_queued_push_bytes: usize,
    /// Commands queued for one connection and not yet taken by it: pushes, kicks, HTTP-proxy
    /// replies (1 to [`MAX_QUEUED_COMMANDS`]). A push beyond it gets `failure` at once, like
    /// one beyond `max-queued-push-bytes`; this one also bounds pushes with little content.
    pub max_queued_commands: usize,
    /// A write to a client that does not complete within this long closes the connection
    /// (a client that stopped reading), ms.
    pub write_timeout: u64,
    /// Connections the kernel completes and queues for the MPUSH and API listeners before
    /// the gateway accepts them (`listen(2)`'s backlog); beyond it a new client's SYN is
    /// dropped and retried a second later. The kernel caps it at `net.core.somaxconn` on
    /// Linux (a warning at start says so).
    pub listen_backlog: usize,
    /// Addresses of proxies (CIDR ranges; a bare address is one host) whose connections open
    /// with a PROXY protocol header (v1 or v2) naming the client: the per-IP caps, the RSA
    /// workers' turns and the logs then count that client. From these addresses the header is
    /// required (a connection without one is closed); from any other it is never read. Empty
    /// (the default): no header is read, as MPUSH clients connect directly.
    pub trusted_proxies: Vec<crate::proxy_protocol::Cidr>,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_connections: 100_000,
            max_connections_per_ip: 10_000,
            max_unauthenticated_per_ip: 256,
            max_handshake_body: 512,
            max_field_length: 1024,
            rsa_workers: 0,
            max_queued_push_bytes: 4 * 1024 * 1024,
            max_queued_commands: 1024,
            write_timeout: 30_000,
            // tokio's TcpListener::bind takes 128 (std's); a flood of a few hundred
            // connections overflows that.
            listen_backlog: 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `mp.security.*`. With neither key nor key file, an ephemeral key pair is generated.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecurityConfig {
    /// `mp.security.private-key`: base64 PKCS#8.
    pub private_key: Option<String>,
    /// `mp.security.public-key`: base64 X.509; checked against the private key when given.
    pub public_key: Option<String>,
    /// Dev mode: a TOML file holding `private-key`/`public-key`; generated (1024 bits, as
    /// MPUSH) on first start when missing. Ignored when `private-key` is set.
    pub key_file: Option<PathBuf>,
}

/// `mp.core.*`, MPUSH's defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CoreConfig {
    /// `min-heartbeat`, ms.
    pub min_heartbeat: i32,
    /// `max-heartbeat`, ms.
    pub max_heartbeat: i32,
    /// `max-hb-timeout-times`: idle checks in a row that may find nothing read; the next one
    /// closes the connection (MPUSH: 2).
    #[serde(alias = "max-hb-timeout-times")]
    pub max_heartbeat_timeouts: u32,
    /// `max-packet-size`: largest inbound body, bytes.
    pub max_packet_size: usize,
    /// `compress-threshold`: outbound bodies longer than this are compressed, bytes.
    pub compress_threshold: usize,
    /// `session-expired-time`: resumable session lifetime, ms (1 day).
    pub session_expired_time: u64,
    /// The heartbeat of a connection that has not handshaked yet, ms: its idle check runs
    /// this often and a check finding nothing read for this + 1 s is a miss. MPUSH
    /// hard-codes 10 s (`SessionContext.heartbeat`): a silent connection is closed 40 s after
    /// it opened; one that sends only heartbeats stays.
    pub pre_handshake_heartbeat: i32,
    /// No longer used (MPUSH has no handshake timeout; see `pre-handshake-heartbeat`); still
    /// accepted so older files load, with a warning at start.
    pub handshake_timeout: Option<u64>,
    /// Most resumable sessions kept in memory.
    pub max_sessions: usize,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        CoreConfig {
            min_heartbeat: 180_000,
            max_heartbeat: 180_000,
            max_heartbeat_timeouts: 2,
            max_packet_size: 10_240,
            compress_threshold: 10_240,
            session_expired_time: 86_400_000,
            pre_handshake_heartbeat: 10_000,
            handshake_timeout: None,
            max_sessions: 1_000_000,
        }
    }
}

/// `mp.http.*`: the HTTP proxy. Disabled by default (cmd 12 then gets Error 101 and the
/// connection is closed, as MPUSH does); when enabled, only allowlisted hosts are reached.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpProxyConfig {
    /// `proxy-enabled`.
    pub proxy_enabled: bool,
    /// Hosts the proxy may reach: `host` (port 80 only) or `host:port`, matched case-insensitively
    /// against the request URI (before mapping). Empty means every request is refused (403).
    pub allow: Vec<String>,
    /// `dns-mapping`: host -> addresses (`ip:port`) to connect to instead of resolving the
    /// host. Mapping targets are trusted configuration.
    pub dns_mapping: BTreeMap<String, Vec<String>>,
    /// `default-read-timeout` when the client sends no `readTimeout` header, ms.
    pub default_read_timeout: u64,
    /// `max-content-length`: largest upstream response body, bytes (5 MB).
    pub max_content_length: usize,
    /// Most redirects followed.
    pub max_redirects: u32,
    /// `max-in-flight`: most HTTP-proxy requests one connection may have under way at once
    /// (gateway-specific; MPUSH has no bound). One more is answered at once with a generated
    /// 503 "Service Unavailable".
    pub max_in_flight: usize,
    /// `max-read-timeout`: the largest `readTimeout` a client may ask for, ms (gateway-specific;
    /// larger values are clamped to it).
    pub max_read_timeout: u64,
    /// `deny-private-addresses`: refuse (403) a host that resolves only to private,
    /// loopback, link-local, unique-local, unspecified, multicast or reserved addresses
    /// (IPv4 and IPv6, IPv4-mapped included), and connect to exactly the address checked
    /// (gateway-specific). `dns-mapping` targets are trusted and not checked. Off by default
    /// so that a gateway and its services on one machine work out of the box.
    pub deny_private_addresses: bool,
}

impl Default for HttpProxyConfig {
    fn default() -> HttpProxyConfig {
        HttpProxyConfig {
            proxy_enabled: false,
            allow: Vec::new(),
            dns_mapping: BTreeMap::new(),
            default_read_timeout: 10_000,
            max_content_length: 5 * 1024 * 1024,
            max_redirects: 5,
            max_in_flight: 8,
            max_read_timeout: 30_000,
            deny_private_addresses: false,
        }
    }
}

/// The push API.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiConfig {
    /// When set, `POST /push`, `POST /bind-token` and `GET /users` need
    /// `Authorization: Bearer <token>`. Required when `api-listen` is not a loopback address.
    pub token: Option<String>,
    /// Time a client has to send a whole request head, ms; a connection still sending one
    /// after this (slowloris) is closed. Also bounds an idle keep-alive connection's wait.
    pub header_read_timeout: u64,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig { token: None, header_read_timeout: 10_000 }
    }
}

/// Upstream pushes. With a webhook, an auto-ack push is acked to its client only once the
/// webhook has answered 2xx, so an acked push is never lost.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpstreamConfig {
    /// A plain-HTTP URL each upstream push is POSTed to as JSON; logged only when unset.
    pub webhook: Option<String>,
    /// `webhook-queue`: upstream pushes accepted and not yet stored (queued, being posted
    /// or waiting for a retry); one more is refused: not acked, logged.
    pub webhook_queue: usize,
    /// `webhook-concurrency`: POSTs under way at once.
    pub webhook_concurrency: usize,
    /// `webhook-timeout`: longest wait for one POST's answer, ms.
    pub webhook_timeout: u64,
    /// `webhook-attempts`: POSTs per push before it is given up (not acked, logged).
    pub webhook_attempts: u32,
    /// `webhook-backoff`: wait before the first retry, ms; doubled for each next one.
    pub webhook_backoff: u64,
    /// `webhook-max-backoff`: the longest wait between two attempts, ms.
    pub webhook_max_backoff: u64,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            webhook: None,
            webhook_queue: 1024,
            webhook_concurrency: 8,
            webhook_timeout: 10_000,
            webhook_attempts: 5,
            webhook_backoff: 200,
            webhook_max_backoff: 5_000,
        }
    }
}

impl GatewayConfig {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<GatewayConfig, GatewayError> {
        toml::from_str(text).map_err(|e| GatewayError::Config(e.to_string()))
    }

    /// Reads and parses a TOML configuration file.
    pub fn from_file(path: &std::path::Path) -> Result<GatewayConfig, GatewayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::Config(format!("cannot read {}: {e}", path.display())))?;
        GatewayConfig::from_toml(&text)
    }

    /// Applies `MPUSH_GATEWAY_*` variables looked up with `var`: `LISTEN`, `API_LISTEN`,
    /// `PRIVATE_KEY`, `PUBLIC_KEY`, `KEY_FILE`, `API_TOKEN`, `WEBHOOK`, `BIND_TOKEN_SECRET`,
    /// `BIND_TOKEN_SECRET_FILE`, `API_HEADER_READ_TIMEOUT`, and the `[limits]`
    /// keys `MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_IP`, `MAX_UNAUTHENTICATED_PER_IP`,
    /// `MAX_HANDSHAKE_BODY`, `MAX_FIELD_LENGTH`, `RSA_WORKERS`, `MAX_QUEUED_PUSH_BYTES`,
    /// `MAX_QUEUED_COMMANDS`, `WRITE_TIMEOUT`, `LISTEN_BACKLOG`, `TRUSTED_PROXIES` (comma-separated). Also `DRAIN_TIMEOUT`, the
    /// `[http]` keys `MAX_IN_FLIGHT`, `MAX_READ_TIMEOUT`, `DENY_PRIVATE_ADDRESSES`
    /// (`true`/`false`), and the `[upstream]` keys `WEBHOOK_QUEUE`, `WEBHOOK_CONCURRENCY`,
    /// `WEBHOOK_TIMEOUT`, `WEBHOOK_ATTEMPTS`, `WEBHOOK_BACKOFF`, `WEBHOOK_MAX_BACKOFF`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), GatewayError> {
        let get = |name: &str| var(&format!("MPUSH_GATEWAY_{name}")).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("LISTEN") {
            self.listen = parse_addr("MPUSH_GATEWAY_LISTEN", &v)?;
        }
        if let Some(v) = get("API_LISTEN") {
            self.api_listen = parse_addr("MPUSH_GATEWAY_API_LISTEN", &v)?;
        }
        if let Some(v) = get("PRIVATE_KEY") {
            self.security.private_key = Some(v);
        }
        if let Some(v) = get("PUBLIC_KEY") {
            self.security.public_key = Some(v);
        }
        if let Some(v) = get("KEY_FILE") {
            self.security.key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("API_TOKEN") {
            self.api.token = Some(v);
        }
        if let Some(v) = get("WEBHOOK") {
            self.upstream.webhook = Some(v);
        }
        if let Some(v) = get("BIND_TOKEN_SECRET") {
            self.bind.token_secret = Some(Secret(v.trim().to_owned()));
        }
        if let Some(v) = get("BIND_TOKEN_SECRET_FILE") {
            self.bind.token_secret_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("API_HEADER_READ_TIMEOUT") {
            self.api.header_read_timeout = v.trim().parse().map_err(|_| {
                GatewayError::Config(format!("MPUSH_GATEWAY_API_HEADER_READ_TIMEOUT: not a number: {v:?}"))
            })?;
        }
        let number = |name: &str| -> Result<Option<u64>, GatewayError> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| GatewayError::Config(format!("MPUSH_GATEWAY_{name}: not a number: {v:?}")))
                })
                .transpose()
        };
        let u = &mut self.upstream;
        for (name, field) in [
            ("DRAIN_TIMEOUT", &mut self.drain_timeout),
            ("WRITE_TIMEOUT", &mut self.limits.write_timeout),
            ("MAX_READ_TIMEOUT", &mut self.http.max_read_timeout),
            ("WEBHOOK_TIMEOUT", &mut u.webhook_timeout),
            ("WEBHOOK_BACKOFF", &mut u.webhook_backoff),
            ("WEBHOOK_MAX_BACKOFF", &mut u.webhook_max_backoff),
        ] {
            if let Some(v) = number(name)? {
                *field = v;
            }
        }
        for (name, field) in [
            ("MAX_IN_FLIGHT", &mut self.http.max_in_flight),
            ("WEBHOOK_QUEUE", &mut u.webhook_queue),
            ("WEBHOOK_CONCURRENCY", &mut u.webhook_concurrency),
        ] {
            if let Some(v) = number(name)? {
                *field = usize::try_from(v).unwrap_or(usize::MAX);
            }
        }
        if let Some(v) = number("WEBHOOK_ATTEMPTS")? {
            u.webhook_attempts = u32::try_from(v).unwrap_or(u32::MAX);
        }
        if let Some(v) = get("DENY_PRIVATE_ADDRESSES") {
            self.http.deny_private_addresses = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(GatewayError::Config(format!(
                        "MPUSH_GATEWAY_DENY_PRIVATE_ADDRESSES: not true or false: {v:?}"
                    )))
                }
            };
        }
        if let Some(v) = get("TRUSTED_PROXIES") {
            self.limits.trusted_proxies = v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.parse().map_err(|e| GatewayError::Config(format!("MPUSH_GATEWAY_TRUSTED_PROXIES: {e}"))))
                .collect::<Result<_, _>>()?;
        }
        let l = &mut self.limits;
        for (name, field) in [
            ("MAX_CONNECTIONS", &mut l.max_connections),
            ("MAX_CONNECTIONS_PER_IP", &mut l.max_connections_per_ip),
            ("MAX_UNAUTHENTICATED_PER_IP", &mut l.max_unauthenticated_per_ip),
            ("MAX_HANDSHAKE_BODY", &mut l.max_handshake_body),
            ("MAX_FIELD_LENGTH", &mut l.max_field_length),
            ("RSA_WORKERS", &mut l.rsa_workers),
            ("MAX_QUEUED_PUSH_BYTES", &mut l.max_queued_push_bytes),
            ("MAX_QUEUED_COMMANDS", &mut l.max_queued_commands),
            ("LISTEN_BACKLOG", &mut l.listen_backlog),
        ] {
            if let Some(v) = get(name) {
                *field = v
                    .trim()
                    .parse()
                    .map_err(|_| GatewayError::Config(format!("MPUSH_GATEWAY_{name}: not a number: {v:?}")))?;
            }
        }
        Ok(())
    }

    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let c = &self.core;
        if c.min_heartbeat < 1000 || c.max_heartbeat < c.min_heartbeat {
            return Err(GatewayError::Config(format!(
                "heartbeat bounds must satisfy 1000 <= min-heartbeat <= max-heartbeat, got {}..{}",
                c.min_heartbeat, c.max_heartbeat
            )));
        }
        if c.max_packet_size == 0 || c.session_expired_time == 0 || c.pre_handshake_heartbeat <= 0 {
            return Err(GatewayError::Config(
                "max-packet-size, session-expired-time and pre-handshake-heartbeat must be > 0".into(),
            ));
        }
        if self.limits.max_handshake_body < 128 || self.limits.max_field_length == 0 {
            return Err(GatewayError::Config(
                "limits: max-handshake-body must be >= 128 (one RSA block) and max-field-length > 0".into(),
            ));
        }
        if self.limits.max_queued_push_bytes == 0 || self.limits.write_timeout == 0 {
            return Err(GatewayError::Config("limits: max-queued-push-bytes and write-timeout must be > 0".into()));
        }
        if self.limits.max_queued_commands == 0 || self.limits.max_queued_commands > MAX_QUEUED_COMMANDS {
            return Err(GatewayError::Config(format!(
                "limits: max-queued-commands must be 1 to {MAX_QUEUED_COMMANDS}, got {}",
                self.limits.max_queued_commands
            )));
        }
        if self.limits.listen_backlog == 0 || self.limits.listen_backlog > MAX_LISTEN_BACKLOG {
            return Err(GatewayError::Config(format!(
                "limits: listen-backlog must be 1 to {MAX_LISTEN_BACKLOG}, got {}",
                self.limits.listen_backlog
            )));
        }
        if self.http.max_content_length == 0
            || self.http.default_read_timeout == 0
            || self.http.max_in_flight == 0
            || self.http.max_read_timeout == 0
        {
            return Err(GatewayError::Config(
                "http max-content-length, default-read-timeout, max-in-flight and max-read-timeout must be > 0".into(),
            ));
        }
        for (host, addrs) in &self.http.dns_mapping {
            if addrs.is_empty() {
                return Err(GatewayError::Config(format!("dns-mapping for {host:?} has no address")));
            }
        }
        if !self.api_listen.ip().is_loopback() && self.api.token.as_deref().is_none_or(|t| t.trim().is_empty()) {
            // The push API pushes to any user and mints bind tokens: never open to a network.
            return Err(GatewayError::Config(format!(
                "api-listen {} is not a loopback address: set [api] token (MPUSH_GATEWAY_API_TOKEN) to expose \
                 the push API, or listen on 127.0.0.1",
                self.api_listen
            )));
        }
        if self.api.header_read_timeout == 0 {
            return Err(GatewayError::Config("api header-read-timeout must be > 0 (ms)".into()));
        }
        let b = &self.bind;
        if b.default_token_ttl == 0 || b.max_token_ttl < b.default_token_ttl {
            return Err(GatewayError::Config(format!(
                "bind: need 0 < default-token-ttl <= max-token-ttl, got {} and {}",
                b.default_token_ttl, b.max_token_ttl
            )));
        }
        let u = &self.upstream;
        if u.webhook_queue == 0
            || u.webhook_concurrency == 0
            || u.webhook_timeout == 0
            || u.webhook_attempts == 0
            || u.webhook_max_backoff < u.webhook_backoff
        {
            return Err(GatewayError::Config(
                "upstream: webhook-queue, webhook-concurrency, webhook-timeout and webhook-attempts must be > 0, \
                 webhook-backoff <= webhook-max-backoff"
                    .into(),
            ));
        }
        if let Some(url) = &self.upstream.webhook {
            if !url.starts_with("http://") {
                return Err(GatewayError::Config(format!("webhook must be a plain http:// URL, got {url:?}")));
            }
        }
        Ok(())
    }
}

/// The largest `max-queued-commands`, 2^20. The queue is a bound, not a buffer to size for a
/// burst: a queued push costs about 150 bytes besides its content (the command and its reply
/// channel), so a million of them let one client that stopped reading pin some 150 MB until
/// `write-timeout`; a value beyond that is more likely a byte count typed into the wrong key
/// than a wish. 0 would be a queue that takes nothing (tokio's channel panics on it).
pub const MAX_QUEUED_COMMANDS: usize = 1 << 20;

/// The largest `listen-backlog`: `listen(2)` takes an `int`. (Linux caps it lower anyway, at
/// `net.core.somaxconn`.)
pub const MAX_LISTEN_BACKLOG: usize = i32::MAX as usize;

fn parse_addr(name: &str, v: &str) -> Result<SocketAddr, GatewayError> {
    v.trim().parse().map_err(|_| GatewayError::Config(format!("{name}: not a socket address: {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_uses_mpush_names_and_defaults() {
        let c = GatewayConfig::from_toml(
            r#"
            listen = "0.0.0.0:3000"
            [core]
            min-heartbeat = 2000
            max-heartbeat = 4000
            [http]
            proxy-enabled = true
            allow = ["api.internal", "127.0.0.1:8080"]
            dns-mapping = { "api.internal" = ["127.0.0.1:9000"] }
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.core.min_heartbeat, 2000);
        assert_eq!(c.core.max_packet_size, 10_240);
        assert_eq!(c.core.session_expired_time, 86_400_000);
        assert!(c.http.proxy_enabled);
        assert_eq!(c.http.dns_mapping["api.internal"], vec!["127.0.0.1:9000".to_owned()]);
        assert_eq!(c.http.max_content_length, 5 * 1024 * 1024);
        c.validate().unwrap();
        assert!(GatewayConfig::from_toml("nonsense = 1").is_err());
        assert_eq!(c.core.pre_handshake_heartbeat, 10_000);
        let c = GatewayConfig::from_toml(
            "[core]\nmax-hb-timeout-times = 4\npre-handshake-heartbeat = 3000\nhandshake-timeout = 1",
        )
        .unwrap();
        assert_eq!((c.core.max_heartbeat_timeouts, c.core.pre_handshake_heartbeat), (4, 3000));
        assert_eq!(c.core.handshake_timeout, Some(1));
        assert!(GatewayConfig::from_toml("[core]\npre-handshake-heartbeat = 0").unwrap().validate().is_err());
        let c = GatewayConfig::from_toml("[limits]\nmax-connections = 5\nmax-handshake-body = 384").unwrap();
        assert_eq!((c.limits.max_connections, c.limits.max_handshake_body), (5, 384));
        assert_eq!((c.limits.max_unauthenticated_per_ip, c.limits.max_field_length), (256, 1024));
        assert!(GatewayConfig::from_toml("[limits]\nmax-handshake-body = 100").unwrap().validate().is_err());
        assert_eq!((c.limits.max_queued_push_bytes, c.limits.write_timeout), (4 * 1024 * 1024, 30_000));
        let c = GatewayConfig::from_toml("[limits]\nmax-queued-push-bytes = 65536\nwrite-timeout = 5000").unwrap();
        assert_eq!((c.limits.max_queued_push_bytes, c.limits.write_timeout), (65_536, 5000));
        for bad in ["[limits]\nmax-queued-push-bytes = 0", "[limits]\nwrite-timeout = 0"] {
            assert!(GatewayConfig::from_toml(bad).unwrap().validate().is_err(), "{bad}");
        }
        let mut c = GatewayConfig::default();
        c.apply_env(|k| match k {
            "MPUSH_GATEWAY_MAX_QUEUED_PUSH_BYTES" => Some("1000".into()),
            "MPUSH_GATEWAY_WRITE_TIMEOUT" => Some("700".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.limits.max_queued_push_bytes, c.limits.write_timeout), (1000, 700));
    }

    #[test]
    fn listen_backlog_key() {
        assert_eq!(GatewayConfig::default().limits.listen_backlog, 1024);
        let c = GatewayConfig::from_toml("[limits]\nlisten-backlog = 4096").unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits.listen_backlog, 4096);
        let e = GatewayConfig::from_toml("[limits]\nlisten-backlog = 0").unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("listen-backlog must be 1 to"), "{e}");
        let huge = GatewayConfig::from_toml("[limits]\nlisten-backlog = 3000000000").unwrap();
        assert!(huge.validate().is_err(), "listen(2) takes an int");
        assert!(GatewayConfig::from_toml("[limits]\nlisten-backlog = -1").is_err());
        assert!(GatewayConfig::from_toml("[limits]\nlisten-backlog = \"big\"").is_err());
        let mut c = GatewayConfig::default();
        c.apply_env(|k| (k == "MPUSH_GATEWAY_LISTEN_BACKLOG").then(|| "512".into())).unwrap();
        assert_eq!(c.limits.listen_backlog, 512);
        let e = c.apply_env(|k| (k == "MPUSH_GATEWAY_LISTEN_BACKLOG").then(|| "lots".into())).unwrap_err();
        assert!(e.to_string().contains("MPUSH_GATEWAY_LISTEN_BACKLOG: not a number"), "{e}");
    }

    #[test]
    fn max_queued_commands_key() {
        assert_eq!(GatewayConfig::default().limits.max_queued_commands, 1024);
        let c = GatewayConfig::from_toml("[limits]\nmax-queued-commands = 2").unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits.max_queued_commands, 2);
        let c = GatewayConfig::from_toml(&format!("[limits]\nmax-queued-commands = {MAX_QUEUED_COMMANDS}")).unwrap();
        c.validate().unwrap();
        for bad in [0, MAX_QUEUED_COMMANDS + 1, 4 * 1024 * 1024] {
            let c = GatewayConfig::from_toml(&format!("[limits]\nmax-queued-commands = {bad}")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("max-queued-commands must be 1 to 1048576, got {bad}")), "{e}");
        }
        assert!(GatewayConfig::from_toml("[limits]\nmax-queued-commands = -1").is_err());
        let mut c = GatewayConfig::default();
        c.apply_env(|k| (k == "MPUSH_GATEWAY_MAX_QUEUED_COMMANDS").then(|| "64".into())).unwrap();
        assert_eq!(c.limits.max_queued_commands, 64);
        let e = c.apply_env(|k| (k == "MPUSH_GATEWAY_MAX_QUEUED_COMMANDS").then(|| "many".into())).unwrap_err();
        assert!(e.to_string().contains("MPUSH_GATEWAY_MAX_QUEUED_COMMANDS: not a number"), "{e}");
    }

    #[test]
    fn trusted_proxies_key() {
        assert!(GatewayConfig::default().limits.trusted_proxies.is_empty());
        let c = GatewayConfig::from_toml("[limits]\ntrusted-proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]").unwrap();
        assert_eq!(c.limits.trusted_proxies.len(), 2);
        assert!(c.limits.trusted_proxies[1].contains("10.9.8.7".parse().unwrap()));
        assert!(GatewayConfig::from_toml("[limits]\ntrusted-proxies = [\"10.0.0.0/40\"]").is_err());
        let mut c = GatewayConfig::default();
        c.apply_env(|k| (k == "MPUSH_GATEWAY_TRUSTED_PROXIES").then(|| "127.0.0.1, ::1/128".into())).unwrap();
        assert_eq!(c.limits.trusted_proxies.len(), 2);
        let e = c.apply_env(|k| (k == "MPUSH_GATEWAY_TRUSTED_PROXIES").then(|| "localhost".into())).unwrap_err();
        assert!(e.to_string().contains("MPUSH_GATEWAY_TRUSTED_PROXIES"), "{e}");
    }

    #[test]
    fn env_overrides() {
        let mut c = GatewayConfig::default();
        c.apply_env(|k| match k {
            "MPUSH_GATEWAY_LISTEN" => Some("127.0.0.1:3000".into()),
            "MPUSH_GATEWAY_API_TOKEN" => Some("secret".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.api.token.as_deref(), Some("secret"));
        c.apply_env(|k| (k == "MPUSH_GATEWAY_MAX_CONNECTIONS_PER_IP").then(|| "7".into())).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, 7);
        c.apply_env(|k| (k == "MPUSH_GATEWAY_RSA_WORKERS").then(|| "3".into())).unwrap();
        assert_eq!(c.limits.rsa_workers, 3);
        assert!(c.apply_env(|k| (k == "MPUSH_GATEWAY_MAX_FIELD_LENGTH").then(|| "x".into())).is_err());
        assert!(c.apply_env(|_| Some("nope".into())).is_err());
    }

    #[test]
    fn a_push_api_off_loopback_needs_a_token() {
        let open = GatewayConfig::from_toml(r#"api-listen = "0.0.0.0:8081""#).unwrap();
        let e = open.validate().unwrap_err().to_string();
        assert!(e.contains("api-listen 0.0.0.0:8081") && e.contains("[api] token"), "{e}");
        let blank = GatewayConfig::from_toml("api-listen = \"10.0.0.5:8081\"\n[api]\ntoken = \" \"").unwrap();
        assert!(blank.validate().is_err(), "a blank token is no token");
        let guarded = GatewayConfig::from_toml("api-listen = \"0.0.0.0:8081\"\n[api]\ntoken = \"t\"").unwrap();
        guarded.validate().unwrap();
        for loopback in ["127.0.0.1:8081", "[::1]:8081", "127.0.0.2:1"] {
            let c = GatewayConfig::from_toml(&format!("api-listen = \"{loopback}\"")).unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn bind_and_api_keys() {
        let c = GatewayConfig::default();
        assert!(!c.bind.enforced(), "binding is open without a secret");
        assert_eq!((c.bind.default_token_ttl, c.bind.max_token_ttl, c.api.header_read_timeout), (3600, 86_400, 10_000));
        let c = GatewayConfig::from_toml(
            "[bind]\ntoken-secret-file = \"/run/secrets/bind\"\ndefault-token-ttl = 60\nmax-token-ttl = 600\n\
             [api]\nheader-read-timeout = 2500",
        )
        .unwrap();
        assert!(c.bind.enforced());
        assert_eq!((c.bind.default_token_ttl, c.bind.max_token_ttl, c.api.header_read_timeout), (60, 600, 2500));
        // The secret itself only comes from the environment, and never shows in Debug.
        assert!(GatewayConfig::from_toml("[bind]\ntoken-secret = \"x\"").is_err());
        let mut c = GatewayConfig::default();
        c.apply_env(|k| (k == "MPUSH_GATEWAY_BIND_TOKEN_SECRET").then(|| "hunter2-hunter2\n".into())).unwrap();
        assert_eq!(c.bind.token_secret, Some(Secret("hunter2-hunter2".into())));
        assert!(c.bind.enforced() && !format!("{c:?}").contains("hunter2"));
        c.apply_env(|k| (k == "MPUSH_GATEWAY_API_HEADER_READ_TIMEOUT").then(|| "700".into())).unwrap();
        assert_eq!(c.api.header_read_timeout, 700);
        for bad in ["[api]\nheader-read-timeout = 0", "[bind]\ndefault-token-ttl = 0", "[bind]\nmax-token-ttl = 10"] {
            assert!(GatewayConfig::from_toml(bad).unwrap().validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn drain_http_and_webhook_keys() {
        let c = GatewayConfig::default();
        assert_eq!(c.drain_timeout, 10_000);
        assert!(!c.http.deny_private_addresses);
        assert_eq!((c.upstream.webhook_queue, c.upstream.webhook_attempts), (1024, 5));
        let c = GatewayConfig::from_toml(
            "drain-timeout = 2500\n[http]\ndeny-private-addresses = true\n\
             [upstream]\nwebhook-queue = 3\nwebhook-attempts = 2\nwebhook-backoff = 50\nwebhook-max-backoff = 100",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.drain_timeout, 2500);
        assert!(c.http.deny_private_addresses);
        assert_eq!((c.upstream.webhook_queue, c.upstream.webhook_attempts, c.upstream.webhook_backoff), (3, 2, 50));
        assert!(GatewayConfig::from_toml("[upstream]\nwebhook-queue = 0").unwrap().validate().is_err());
        assert!(GatewayConfig::from_toml("[upstream]\nwebhook-backoff = 9000").unwrap().validate().is_err());
        let mut c = GatewayConfig::default();
        let env = |k: &str| match k {
            "MPUSH_GATEWAY_DRAIN_TIMEOUT" => Some("0".into()),
            "MPUSH_GATEWAY_MAX_IN_FLIGHT" => Some("3".into()),
            "MPUSH_GATEWAY_MAX_READ_TIMEOUT" => Some("4000".into()),
            "MPUSH_GATEWAY_DENY_PRIVATE_ADDRESSES" => Some("true".into()),
            "MPUSH_GATEWAY_WEBHOOK_QUEUE" => Some("7".into()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!((c.drain_timeout, c.http.max_in_flight, c.http.max_read_timeout), (0, 3, 4000));
        assert!(c.http.deny_private_addresses);
        assert_eq!(c.upstream.webhook_queue, 7);
        assert!(c.apply_env(|k| (k == "MPUSH_GATEWAY_DENY_PRIVATE_ADDRESSES").then(|| "maybe".into())).is_err());
        assert!(c.apply_env(|k| (k == "MPUSH_GATEWAY_MAX_IN_FLIGHT").then(|| "-1".into())).is_err());
    }
}
