//! Proxy configuration: the [`Config`] struct, its TOML form, durations and validation.
//!
//! Precedence, highest first: command-line flags, `MPUSH_PROXY_*` environment variables, the
//! TOML file given with `--config`, built-in defaults (see [`crate::cli::Cli`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Default browser -> server body limit: MPUSH's `mp.core.max-packet-size`.
pub const DEFAULT_UPSTREAM_MAX_BODY: usize = mpush_protocol::frame::DEFAULT_MAX_BODY;
/// Default server -> browser body limit: room for MPUSH's 5 MB HTTP-proxy responses.
pub const DEFAULT_DOWNSTREAM_MAX_BODY: usize = 6 * 1024 * 1024;
/// Open TCP connections allowed beyond `max_connections` when `max_open_connections` is unset:
/// plain HTTP (health checks, metrics, static files) and connections not yet upgraded.
pub const OPEN_CONNECTION_HEADROOM: usize = 1024;
/// Like [`OPEN_CONNECTION_HEADROOM`], per client IP beyond `max_connections_per_ip`.
pub const OPEN_CONNECTION_HEADROOM_PER_IP: usize = 16;
/// hyper's smallest allowed read buffer; `max_header_bytes` may not be below it.
pub const MIN_HEADER_BYTES: usize = 8192;
/// The largest `listen_backlog`: `listen(2)` takes an `int` (Linux caps it lower anyway, at
/// `net.core.somaxconn`).
pub const MAX_LISTEN_BACKLOG: usize = i32::MAX as usize;

/// What the proxy does with HTTP-proxy packets (cmd 12) from the browser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HttpProxyMode {
    /// Pass them to the MPUSH server, which performs the request (`mp.http.proxy-enabled`).
    #[default]
    Forward,
    /// Answer them in the proxy with an unencrypted HttpResponse 403 "Forbidden".
    Deny,
}

/// Log output format of the binary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the proxy needs to run. Build it with [`Config::default`] and set fields, or load
/// it with [`crate::cli::Cli::load`]. Durations in TOML are strings like `"10s"`, `"500ms"`,
/// `"5m"` or integers (seconds).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on (HTTP or HTTPS, WebSocket, health, metrics, static files).
    pub listen: SocketAddr,
    /// Connections the kernel completes and queues on `listen` before the proxy accepts them
    /// (`listen(2)`'s backlog); beyond it a new client's SYN is dropped and retried a second
    /// later. Linux caps it at `net.core.somaxconn`.
    pub listen_backlog: usize,
    /// URL path of the WebSocket endpoint.
    pub ws_path: String,
    /// Fixed list of MPUSH connection servers as `host:port`. The proxy connects only to
    /// these (never an open relay). May be empty in the library: every session then closes
    /// with "upstream unavailable" and `/readyz` answers 503.
    // Empty in the binary only with --demo: `main.rs` then starts an in-process mpush-gateway
    // and puts its loopback address here.
    pub upstreams: Vec<String>,
    /// ZooKeeper servers (`host:port`) of an MPUSH cluster. The connection servers MPUSH
    /// registers there (`{zk_namespace}{zk_path}/<id>`) are watched and join the upstream set
    /// while registered, alongside `upstreams`. Empty: no registry.
    pub zk: Vec<String>,
    /// MPUSH's `mp.zk.namespace`: the root node MPUSH registers under.
    pub zk_namespace: String,
    /// MPUSH's `mp.zk.digest`: the digest credentials (`user:password`, or MPUSH's bare
    /// `mpush`) its nodes' ACL requires for reading. Empty: no authentication.
    pub zk_digest: String,
    /// The node below `zk_namespace` whose children are the connection servers: MPUSH 0.8.0
    /// registers them at `/cluster/cs`.
    pub zk_path: String,
    /// The registered attribute (in the node's `attrs`) used as the server's weight; MPUSH
    /// registers `weight`. Empty, missing or not a positive number: weight 1.
    pub zk_weight_attribute: String,
    /// ZooKeeper session timeout asked of the server.
    #[serde(deserialize_with = "de_duration")]
    pub zk_session_timeout: Duration,
    /// Longest wait between attempts to reach an unreachable registry (the wait starts at
    /// 250 ms and doubles).
    #[serde(deserialize_with = "de_duration")]
    pub zk_reconnect_max: Duration,
    /// Most registered connection servers used; further ones are ignored with a warning.
    pub zk_max_nodes: usize,
    /// Timeout of one upstream TCP connect attempt (then the next server is tried).
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Open each upstream connection with a PROXY protocol v2 header naming the browser's
    /// address (as this proxy sees it), so that a gateway trusting this proxy
    /// (`mpush-gateway`'s `[limits] trusted-proxies`) counts its per-IP caps per browser.
    /// Off by default: MPUSH's own servers do not understand it and would drop the connection.
    pub upstream_proxy_protocol: bool,
    /// Largest packet body accepted from the browser (browser -> MPUSH server).
    pub upstream_max_body: usize,
    /// Largest packet body accepted from the MPUSH server (server -> browser).
    pub downstream_max_body: usize,
    /// Handling of HTTP-proxy packets (cmd 12).
    pub http_proxy: HttpProxyMode,
    /// Allowed `Origin` values, exact (`https://app.example.com`), or `*` for any, in addition
    /// to `public_origin`. With neither set, only loopback origins (`http://127.0.0.1:*`,
    /// `http://localhost:*`, `[::1]`) are allowed. Requests without an Origin header
    /// (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// The origin browsers load this proxy's pages from, `https://push.example.com` (scheme,
    /// host, port if not the default): pages of this origin may open WebSockets. The request's
    /// own `Host` header is never trusted for this (it is the attacker's to set; DNS rebinding).
    pub public_origin: Option<String>,
    /// A second, plain-HTTP listener for `/metrics` and `/readyz` (e.g. `127.0.0.1:9090`);
    /// when set, the public listener no longer answers those two paths.
    pub ops_listen: Option<SocketAddr>,
    /// Concurrent connections on `ops_listen`; more are closed at accept.
    pub ops_max_connections: usize,
    /// Maximum concurrent WebSocket sessions (HTTP 503 beyond it).
    pub max_connections: usize,
    /// Maximum concurrent WebSocket sessions per client IP (IPv6: per /64) (HTTP 429 beyond).
    pub max_connections_per_ip: usize,
    /// Maximum open TCP connections (before TLS and HTTP; sessions included), checked at
    /// accept: beyond it a connection is closed at once. Unset: `max_connections` +
    /// [`OPEN_CONNECTION_HEADROOM`]. Never below `max_connections`.
    pub max_open_connections: Option<usize>,
    /// Like `max_open_connections`, per client IP (IPv6: per /64). Unset:
    /// `max_connections_per_ip` + [`OPEN_CONNECTION_HEADROOM_PER_IP`].
    pub max_open_connections_per_ip: Option<usize>,
    /// Largest HTTP request head (request line and headers) in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// A plain HTTP connection with no request for this long is closed (keep-alive idle).
    #[serde(deserialize_with = "de_duration")]
    pub http_idle_timeout: Duration,
    /// Requests served on one plain HTTP connection before it is closed (`Connection: close`).
    pub http_max_requests: usize,
    /// Time allowed for the TLS handshake and for reading HTTP request headers.
    #[serde(deserialize_with = "de_duration")]
    pub handshake_timeout: Duration,
    /// A session with no MPUSH packet in either direction for this long is closed.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// A WebSocket ping is sent after this long without any frame from the browser.
    #[serde(deserialize_with = "de_duration")]
    pub ping_interval: Duration,
    /// The session is closed when no frame arrives this long after a ping.
    #[serde(deserialize_with = "de_duration")]
    pub pong_timeout: Duration,
    /// Longest wait for one packet write to the browser or the upstream to complete.
    #[serde(deserialize_with = "de_duration")]
    pub send_timeout: Duration,
    /// On shutdown: how long open sessions may keep running before they are closed with 1001.
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS/WSS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Directory served as static files (`index.html` for directories).
    pub www: Option<PathBuf>,
    /// Threads that run the proxy (used by the binary). 1: one thread, Tokio's current-thread
    /// runtime, where a session's events never wake another thread; run one process per core
    /// (the proxy is stateless) to use more cores. 0: Tokio's multi-thread runtime with one
    /// worker per CPU; N > 1: with N workers (work stealing: a ready session may wake a parked
    /// worker, a futex call and a context switch).
    pub runtime_threads: usize,
    /// Log format (used by the binary).
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (used by the binary).
    pub log_level: String,
    /// Set by the binary in demo mode: serves `/demo-config.json` and `/api/*`.
    #[cfg(feature = "demo")]
    #[serde(skip)]
    pub embedded: Option<std::sync::Arc<crate::embedded::Embedded>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            // Tokio's TcpListener::bind takes 128 (std's), which a burst of reconnecting
            // browsers overflows.
            listen_backlog: 1024,
            ws_path: "/mpush".into(),
            upstreams: Vec::new(),
            zk: Vec::new(),
            zk_namespace: "mpush".into(),
            zk_digest: "mpush".into(),
            zk_path: "/cluster/cs".into(),
            zk_weight_attribute: "weight".into(),
            zk_session_timeout: Duration::from_secs(6),
            zk_reconnect_max: Duration::from_secs(30),
            zk_max_nodes: 1024,
            connect_timeout: Duration::from_secs(3),
            upstream_proxy_protocol: false,
            upstream_max_body: DEFAULT_UPSTREAM_MAX_BODY,
            downstream_max_body: DEFAULT_DOWNSTREAM_MAX_BODY,
            http_proxy: HttpProxyMode::Forward,
            allowed_origins: Vec::new(),
            public_origin: None,
            ops_listen: None,
            ops_max_connections: 64,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            max_open_connections: None,
            max_open_connections_per_ip: None,
            max_header_bytes: 16 * 1024,
            http_idle_timeout: Duration::from_secs(15),
            http_max_requests: 100,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            tls_cert: None,
            tls_key: None,
            www: None,
            runtime_threads: 1,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            #[cfg(feature = "demo")]
            embedded: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks values and their combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !self.ws_path.starts_with('/') {
            return bad(format!("ws_path {:?} must start with '/'", self.ws_path));
        }
        for u in &self.upstreams {
            match u.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {}
                _ => return bad(format!("upstream {u:?} is not host:port")),
            }
        }
        if let Some(o) = &self.public_origin {
            if crate::origin::Origin::parse(o).is_none() {
                return bad(format!("public_origin {o:?} is not an origin like \"https://push.example.com\""));
            }
        }
        if self.ops_listen.is_some_and(|ops| ops == self.listen && ops.port() != 0) {
            return bad("ops_listen must differ from listen".into());
        }
        if self.ops_max_connections == 0 {
            return bad("ops_max_connections must be at least 1".into());
        }
        if self.listen_backlog == 0 || self.listen_backlog > MAX_LISTEN_BACKLOG {
            return bad(format!("listen_backlog must be 1 to {MAX_LISTEN_BACKLOG}, got {}", self.listen_backlog));
        }
        for z in &self.zk {
            match z.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {}
                _ => return bad(format!("zk server {z:?} is not host:port")),
            }
        }
        if !self.zk.is_empty() {
            let plain = |s: &str| !s.contains("//") && !s.ends_with('/') && !s.chars().any(char::is_whitespace);
            if self.zk_namespace.contains('/') || !plain(&self.zk_namespace) {
                return bad(format!("zk_namespace {:?} must be a node name without '/'", self.zk_namespace));
            }
            if !self.zk_path.starts_with('/') || !plain(&self.zk_path) {
                return bad(format!("zk_path {:?} must look like /cluster/cs", self.zk_path));
            }
            if self.zk_max_nodes == 0 {
                return bad("zk_max_nodes must be at least 1".into());
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key must be given together".into());
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return bad("max_connections and max_connections_per_ip must be at least 1".into());
        }
        let (open, open_per_ip) = self.open_connection_caps();
        if open < self.max_connections || open_per_ip < self.max_connections_per_ip {
            return bad("max_open_connections(_per_ip) must not be below max_connections(_per_ip): \
                 every session also holds an open connection"
                .into());
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return bad(format!("max_header_bytes must be at least {MIN_HEADER_BYTES}"));
        }
        if self.http_max_requests == 0 {
            return bad("http_max_requests must be at least 1".into());
        }
        if self.upstream_max_body > i32::MAX as usize || self.downstream_max_body > i32::MAX as usize {
            return bad("body limits must fit in an int32".into());
        }
        let durations = [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("http_idle_timeout", self.http_idle_timeout),
            ("idle_timeout", self.idle_timeout),
            ("ping_interval", self.ping_interval),
            ("pong_timeout", self.pong_timeout),
            ("send_timeout", self.send_timeout),
            ("zk_session_timeout", self.zk_session_timeout),
            ("zk_reconnect_max", self.zk_reconnect_max),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }

    /// The caps on open TCP connections, total and per IP, with unset ones derived from the
    /// session caps (see [`Config::max_open_connections`]).
    pub fn open_connection_caps(&self) -> (usize, usize) {
        (
            self.max_open_connections.unwrap_or(self.max_connections.saturating_add(OPEN_CONNECTION_HEADROOM)),
            self.max_open_connections_per_ip
                .unwrap_or(self.max_connections_per_ip.saturating_add(OPEN_CONNECTION_HEADROOM_PER_IP)),
        )
    }

    /// Whether some upstream source is configured: the static list or the registry.
    pub fn has_upstream_source(&self) -> bool {
        !self.upstreams.is_empty() || !self.zk.is_empty()
    }

    /// The registry's parent node of the connection servers, e.g. `/mpush/cluster/cs`.
    pub fn zk_servers_path(&self) -> String {
        if self.zk_namespace.is_empty() {
            self.zk_path.clone()
        } else {
            format!("/{}{}", self.zk_namespace, self.zk_path)
        }
    }

    /// Whether TLS is configured.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"1h"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?} (try \"10s\" or \"500ms\")"))?;
    let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs);
    let d = match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => secs(60),
        "h" => secs(3600),
        _ => None,
    };
    d.ok_or_else(|| format!("invalid duration {s:?} (units: ms, s, m, h)"))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            "upstreams = [\"10.0.0.5:3000\"]\nidle_timeout = \"90s\"\nconnect_timeout = 2\nhttp_proxy = \"deny\"\n",
        )
        .unwrap();
        assert_eq!(c.upstreams, ["10.0.0.5:3000"]);
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.http_proxy, HttpProxyMode::Deny);
        assert_eq!(c.ws_path, "/mpush");
        assert!(c.validate().is_ok());
        assert!(Config::from_toml("upstream = []").is_err());
    }

    #[test]
    fn the_example_file_is_valid() {
        let c = Config::from_toml(include_str!("../mpush-proxy.example.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.upstreams.len(), 2);
        let d = Config::default();
        assert_eq!(
            (c.idle_timeout, c.downstream_max_body, c.listen),
            (d.idle_timeout, d.downstream_max_body, d.listen)
        );
    }

    #[test]
    fn validation() {
        let mut c = Config { upstreams: vec!["nohost".into()], ..Config::default() };
        assert!(c.validate().is_err());
        c.upstreams = vec!["[::1]:3000".into(), "mpush.internal:3000".into()];
        assert!(c.validate().is_ok());
        c.tls_cert = Some("c.pem".into());
        assert!(c.validate().is_err());
        c.tls_cert = None;
        c.ws_path = "mpush".into();
        assert!(c.validate().is_err());
        c.ws_path = "/mpush".into();
        c.public_origin = Some("https://push.example.com".into());
        assert!(c.validate().is_ok());
        c.public_origin = Some("push.example.com".into());
        assert!(c.validate().is_err(), "an origin needs its scheme");
        c.public_origin = Some("https://push.example.com/app".into());
        assert!(c.validate().is_err(), "an origin has no path");
        c.public_origin = None;
        c.ops_listen = Some(c.listen);
        assert!(c.validate().is_err());
        c.ops_listen = Some("127.0.0.1:9090".parse().unwrap());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn connection_caps_follow_the_session_caps_and_never_undercut_them() {
        let mut c = Config { max_connections: 50, max_connections_per_ip: 5, ..Config::default() };
        assert_eq!(c.open_connection_caps(), (50 + OPEN_CONNECTION_HEADROOM, 5 + OPEN_CONNECTION_HEADROOM_PER_IP));
        assert!(c.validate().is_ok());
        c.max_open_connections_per_ip = Some(4);
        assert!(c.validate().is_err());
        c.max_open_connections_per_ip = Some(5);
        c.max_open_connections = Some(60);
        assert_eq!(c.open_connection_caps(), (60, 5));
        assert!(c.validate().is_ok());
        c.max_header_bytes = 4096;
        assert!(c.validate().is_err(), "hyper panics below 8 KiB");
    }

    #[test]
    fn listen_backlog() {
        assert_eq!(Config::default().listen_backlog, 1024);
        let c = Config::from_toml("listen_backlog = 4096\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen_backlog, 4096);
        let e = Config::from_toml("listen_backlog = 0\n").unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("listen_backlog must be 1 to"), "{e}");
        assert!(Config::from_toml("listen_backlog = 3000000000\n").unwrap().validate().is_err());
        assert!(Config::from_toml("listen_backlog = -1\n").is_err());
    }

    #[test]
    fn registry_settings() {
        let c = Config::from_toml("zk = [\"10.0.0.9:2181\", \"zk2:2181\"]\nzk_namespace = \"push\"\n").unwrap();
        c.validate().unwrap();
        assert!(c.has_upstream_source(), "the registry alone is a source");
        assert_eq!(c.zk_servers_path(), "/push/cluster/cs");
        assert_eq!(Config { zk_namespace: String::new(), ..c.clone() }.zk_servers_path(), "/cluster/cs");
        assert!(!Config::default().has_upstream_source());
        for bad in [
            Config { zk: vec!["zk".into()], ..c.clone() },
            Config { zk_namespace: "a/b".into(), ..c.clone() },
            Config { zk_path: "cluster/cs".into(), ..c.clone() },
            Config { zk_path: "/cluster/cs/".into(), ..c.clone() },
            Config { zk_max_nodes: 0, ..c.clone() },
            Config { zk_reconnect_max: Duration::ZERO, ..c.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
