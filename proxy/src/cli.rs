//! Command line: every [`Config`] key as a flag, each also readable from an `MPUSH_PROXY_*`
//! environment variable, on top of an optional TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{parse_duration, Config, ConfigError, HttpProxyMode, LogFormat};

/// WebSocket <-> TCP bridge for MPUSH: browsers speak the binary MPUSH protocol over
/// WebSocket (subprotocol "mpush", one binary message = one packet), the proxy relays it to a
/// fixed set of MPUSH connection servers over plain TCP.
///
/// Precedence: flags, then MPUSH_PROXY_* environment variables, then the --config TOML file,
/// then defaults. Durations: "500ms", "10s", "5m", "1h" or seconds.
#[derive(Debug, Default, Parser)]
#[command(name = "mpush-proxy", version, after_help = AFTER_HELP)]
#[non_exhaustive]
pub struct Cli {
    /// TOML config file (keys as in mpush-proxy.example.toml).
    #[arg(long, short = 'c', env = "MPUSH_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "MPUSH_PROXY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Connections queued by the kernel before they are accepted; capped by
    /// net.core.somaxconn [default: 1024].
    #[arg(long, env = "MPUSH_PROXY_LISTEN_BACKLOG")]
    pub listen_backlog: Option<usize>,
    /// WebSocket path [default: /mpush].
    #[arg(long, env = "MPUSH_PROXY_WS_PATH")]
    pub ws_path: Option<String>,
    /// MPUSH connection server host:port; repeat, or comma-separate in the variable.
    #[arg(long = "upstream", env = "MPUSH_PROXY_UPSTREAMS", value_delimiter = ',', value_name = "HOST:PORT")]
    pub upstreams: Vec<String>,
    /// ZooKeeper of an MPUSH cluster: use the connection servers registered there (with or
    /// instead of --upstream); repeat, or comma-separate in the variable.
    #[arg(long = "zk", env = "MPUSH_PROXY_ZK", value_delimiter = ',', value_name = "HOST:PORT")]
    pub zk: Vec<String>,
    /// MPUSH's mp.zk.namespace [default: mpush].
    #[arg(long, env = "MPUSH_PROXY_ZK_NAMESPACE")]
    pub zk_namespace: Option<String>,
    /// MPUSH's mp.zk.digest, the credentials for reading its nodes; "" for none [default: mpush].
    #[arg(long, env = "MPUSH_PROXY_ZK_DIGEST")]
    pub zk_digest: Option<String>,
    /// Where connection servers register below the namespace [default: /cluster/cs].
    #[arg(long, env = "MPUSH_PROXY_ZK_PATH")]
    pub zk_path: Option<String>,
    /// Registered attribute used as weight; "" for none [default: weight].
    #[arg(long, env = "MPUSH_PROXY_ZK_WEIGHT_ATTRIBUTE")]
    pub zk_weight_attribute: Option<String>,
    /// ZooKeeper session timeout [default: 6s].
    #[arg(long, env = "MPUSH_PROXY_ZK_SESSION_TIMEOUT", value_parser = parse_duration)]
    pub zk_session_timeout: Option<Duration>,
    /// Longest wait between attempts to reach the registry [default: 30s].
    #[arg(long, env = "MPUSH_PROXY_ZK_RECONNECT_MAX", value_parser = parse_duration)]
    pub zk_reconnect_max: Option<Duration>,
    /// Most registered connection servers used [default: 1024].
    #[arg(long, env = "MPUSH_PROXY_ZK_MAX_NODES")]
    pub zk_max_nodes: Option<usize>,
    /// Upstream connect timeout per server [default: 3s].
    #[arg(long, env = "MPUSH_PROXY_CONNECT_TIMEOUT", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Send a PROXY protocol v2 header with the browser's address on each upstream connection;
    /// only for servers that expect it (mpush-gateway with trusted-proxies), not MPUSH
    /// [default: false].
    #[arg(long, env = "MPUSH_PROXY_UPSTREAM_PROXY_PROTOCOL", num_args = 0..=1, default_missing_value = "true")]
    pub upstream_proxy_protocol: Option<bool>,
    /// Largest browser -> server packet body in bytes [default: 10240].
    #[arg(long, env = "MPUSH_PROXY_UPSTREAM_MAX_BODY")]
    pub upstream_max_body: Option<usize>,
    /// Largest server -> browser packet body in bytes [default: 6291456].
    #[arg(long, env = "MPUSH_PROXY_DOWNSTREAM_MAX_BODY")]
    pub downstream_max_body: Option<usize>,
    /// HTTP-proxy packets (cmd 12): forward to the server, or deny with a 403 [default: forward].
    #[arg(long, env = "MPUSH_PROXY_HTTP_PROXY", value_enum)]
    pub http_proxy: Option<HttpProxyMode>,
    /// Allowed Origin (exact, or *); repeat, or comma-separate [default: same origin only].
    #[arg(long = "allowed-origin", env = "MPUSH_PROXY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// The origin this proxy's pages are served from, e.g. `https://push.example.com`; its pages
    /// may open WebSockets [default: none: with no --allowed-origin, loopback pages only].
    #[arg(long, env = "MPUSH_PROXY_PUBLIC_ORIGIN", value_name = "ORIGIN")]
    pub public_origin: Option<String>,
    /// Serve /metrics and /readyz on this separate address (plain HTTP), not on --listen.
    #[arg(long, env = "MPUSH_PROXY_OPS_LISTEN", value_name = "ADDR")]
    pub ops_listen: Option<SocketAddr>,
    /// Concurrent connections on --ops-listen [default: 64].
    #[arg(long, env = "MPUSH_PROXY_OPS_MAX_CONNECTIONS")]
    pub ops_max_connections: Option<usize>,
    /// Maximum concurrent WebSocket sessions [default: 10000].
    #[arg(long, env = "MPUSH_PROXY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Maximum concurrent WebSocket sessions per client IP [default: 100].
    #[arg(long, env = "MPUSH_PROXY_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Maximum open TCP connections, checked at accept [default: max-connections + 1024].
    #[arg(long, env = "MPUSH_PROXY_MAX_OPEN_CONNECTIONS")]
    pub max_open_connections: Option<usize>,
    /// Maximum open TCP connections per client IP [default: max-connections-per-ip + 16].
    #[arg(long, env = "MPUSH_PROXY_MAX_OPEN_CONNECTIONS_PER_IP")]
    pub max_open_connections_per_ip: Option<usize>,
    /// Largest HTTP request head in bytes, at least 8192 [default: 16384].
    #[arg(long, env = "MPUSH_PROXY_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Close plain HTTP connections with no request for this long [default: 15s].
    #[arg(long, env = "MPUSH_PROXY_HTTP_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub http_idle_timeout: Option<Duration>,
    /// Requests per plain HTTP connection before it is closed [default: 100].
    #[arg(long, env = "MPUSH_PROXY_HTTP_MAX_REQUESTS")]
    pub http_max_requests: Option<usize>,
    /// TLS handshake and HTTP request header timeout [default: 10s].
    #[arg(long, env = "MPUSH_PROXY_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Close sessions with no packet either way for this long [default: 10m].
    #[arg(long, env = "MPUSH_PROXY_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Ping the browser after this long without a frame from it [default: 30s].
    #[arg(long, env = "MPUSH_PROXY_PING_INTERVAL", value_parser = parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Close when nothing arrives this long after a ping [default: 20s].
    #[arg(long, env = "MPUSH_PROXY_PONG_TIMEOUT", value_parser = parse_duration)]
    pub pong_timeout: Option<Duration>,
    /// Longest wait for one packet write to either side [default: 30s].
    #[arg(long, env = "MPUSH_PROXY_SEND_TIMEOUT", value_parser = parse_duration)]
    pub send_timeout: Option<Duration>,
    /// On SIGTERM/SIGINT, let sessions run this long before closing them with 1001 [default: 10s].
    #[arg(long, env = "MPUSH_PROXY_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// PEM certificate chain file (enables TLS, with --tls-key).
    #[arg(long, env = "MPUSH_PROXY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key file.
    #[arg(long, env = "MPUSH_PROXY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve this directory as static files.
    #[arg(long, env = "MPUSH_PROXY_WWW", value_name = "DIR")]
    pub www: Option<PathBuf>,
    /// Threads: 1 one (no cross-thread wake-ups), 0 one per CPU, N that many [default: 1].
    #[arg(long, env = "MPUSH_PROXY_RUNTIME_THREADS")]
    pub runtime_threads: Option<usize>,
    /// Log format [default: text].
    #[arg(long, env = "MPUSH_PROXY_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in RUST_LOG syntax, e.g. "info" or "mpush_proxy=debug" [default: info].
    #[arg(long, env = "MPUSH_PROXY_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Demo mode: run an mpush-gateway in-process on loopback as the only upstream and serve
    /// /demo-config.json and /api/* for the demo console. Needs a binary built with the cargo
    /// feature "demo". A flag only (no variable, no file key), so nothing but an explicit
    /// command line turns it on.
    #[arg(long, conflicts_with_all = ["upstreams", "zk"])]
    pub demo: bool,
    /// Demo mode: the gateway's TOML config (mpush-gateway format).
    #[arg(long, env = "MPUSH_PROXY_GATEWAY_CONFIG", value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
    /// Demo mode: where the gateway keeps its dev key pair, generated on first start
    /// [default: .mpush-gateway-key.toml].
    #[arg(long, env = "MPUSH_PROXY_GATEWAY_KEY_FILE", value_name = "FILE")]
    pub gateway_key_file: Option<PathBuf>,
}

const AFTER_HELP: &str = "\
WebSocket close codes sent by the proxy:
  1000 idle timeout | keepalive timeout     1001 going away (shutdown)
  1002 bad packet length | unknown command | websocket protocol error
  1003 text frames are not supported        1008 send timeout
  1009 packet too large                     1011 upstream closed | upstream error | upstream framing error
  1013 upstream unavailable
HTTP answers before the upgrade: 403 origin not allowed, 429 per-IP limit, 503 total limit or draining,
431 request head over max-header-bytes. Over the open-connection caps, connections are closed at accept.
Endpoints: /healthz, /readyz, /metrics (Prometheus), the WebSocket path, static files with --www.
Demo mode (--demo, binaries built with the \"demo\" feature): an in-process mpush-gateway on loopback;
the proxy also serves /demo-config.json and forwards /api/* to the gateway's push API (loopback
clients, the console's own origin and Host, JSON bodies only).";

impl Cli {
    /// Reads the config file (if any), applies flags and environment variables, validates.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Config::from_toml(&text)
                    .map_err(|source| ConfigError::Parse { path: path.clone(), source: Box::new(source) })?
            }
            None => Config::default(),
        };
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut c.listen, &self.listen);
        set(&mut c.ws_path, &self.ws_path);
        if !self.upstreams.is_empty() {
            c.upstreams = self.upstreams.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        }
        if !self.zk.is_empty() {
            c.zk = self.zk.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        }
        set(&mut c.zk_namespace, &self.zk_namespace);
        set(&mut c.zk_digest, &self.zk_digest);
        set(&mut c.zk_path, &self.zk_path);
        set(&mut c.zk_weight_attribute, &self.zk_weight_attribute);
        set(&mut c.zk_session_timeout, &self.zk_session_timeout);
        set(&mut c.zk_reconnect_max, &self.zk_reconnect_max);
        set(&mut c.zk_max_nodes, &self.zk_max_nodes);
        set(&mut c.connect_timeout, &self.connect_timeout);
        set(&mut c.upstream_proxy_protocol, &self.upstream_proxy_protocol);
        set(&mut c.upstream_max_body, &self.upstream_max_body);
        set(&mut c.downstream_max_body, &self.downstream_max_body);
        set(&mut c.http_proxy, &self.http_proxy);
        if !self.allowed_origins.is_empty() {
            c.allowed_origins =
                self.allowed_origins.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        }
        if self.public_origin.is_some() {
            c.public_origin.clone_from(&self.public_origin);
        }
        if self.ops_listen.is_some() {
            c.ops_listen = self.ops_listen;
        }
        set(&mut c.ops_max_connections, &self.ops_max_connections);
        set(&mut c.listen_backlog, &self.listen_backlog);
        set(&mut c.max_connections, &self.max_connections);
        set(&mut c.max_connections_per_ip, &self.max_connections_per_ip);
        if self.max_open_connections.is_some() {
            c.max_open_connections = self.max_open_connections;
        }
        if self.max_open_connections_per_ip.is_some() {
            c.max_open_connections_per_ip = self.max_open_connections_per_ip;
        }
        set(&mut c.max_header_bytes, &self.max_header_bytes);
        set(&mut c.http_idle_timeout, &self.http_idle_timeout);
        set(&mut c.http_max_requests, &self.http_max_requests);
        set(&mut c.handshake_timeout, &self.handshake_timeout);
        set(&mut c.idle_timeout, &self.idle_timeout);
        set(&mut c.ping_interval, &self.ping_interval);
        set(&mut c.pong_timeout, &self.pong_timeout);
        set(&mut c.send_timeout, &self.send_timeout);
        set(&mut c.drain_timeout, &self.drain_timeout);
        if self.tls_cert.is_some() {
            c.tls_cert.clone_from(&self.tls_cert);
        }
        if self.tls_key.is_some() {
            c.tls_key.clone_from(&self.tls_key);
        }
        if self.www.is_some() {
            c.www.clone_from(&self.www);
        }
        set(&mut c.runtime_threads, &self.runtime_threads);
        set(&mut c.log_format, &self.log_format);
        set(&mut c.log_level, &self.log_level);
        c.validate()?;
        // An empty list used to start the demo gateway silently; now that takes --demo, and a
        // server config without upstreams is a mistake worth stopping for.
        if self.demo && c.has_upstream_source() {
            return Err(ConfigError::Invalid(
                "--demo runs its own gateway as the upstream: remove the configured upstreams".into(),
            ));
        }
        if !self.demo && !c.has_upstream_source() {
            return Err(ConfigError::Invalid(
                "no upstream configured: give the MPUSH servers with --upstream HOST:PORT \
                 (MPUSH_PROXY_UPSTREAMS, `upstreams` in the config file) or their ZooKeeper with --zk HOST:PORT, \
                 or run the demo with --demo"
                    .into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "upstreams = [\"a:1\"]\nws_path = \"/ws\"\nmax_connections = 5\n").unwrap();
        let cli = Cli::try_parse_from([
            "mpush-proxy",
            "--config",
            path.to_str().unwrap(),
            "--upstream",
            "b:2,c:3",
            "--idle-timeout",
            "90s",
            "--http-proxy",
            "deny",
            "--runtime-threads",
            "0",
        ])
        .unwrap();
        let c = cli.load().unwrap();
        assert_eq!(c.runtime_threads, 0);
        assert_eq!(Config::default().runtime_threads, 1, "one thread unless asked: the least CPU per push");
        assert_eq!(c.upstreams, ["b:2", "c:3"]);
        assert_eq!(c.ws_path, "/ws");
        assert_eq!(c.max_connections, 5);
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.http_proxy, HttpProxyMode::Deny);
    }

    #[test]
    fn no_upstream_needs_demo() {
        let err = Cli::try_parse_from(["mpush-proxy"]).unwrap().load().unwrap_err().to_string();
        assert!(err.contains("no upstream configured") && err.contains("--demo"), "{err}");
        let demo = Cli::try_parse_from(["mpush-proxy", "--demo"]).unwrap().load().unwrap();
        assert!(demo.upstreams.is_empty());
        assert!(Cli::try_parse_from(["mpush-proxy", "--demo", "--upstream", "a:1"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "upstreams = [\"a:1\"]\n").unwrap();
        let cli = Cli::try_parse_from(["mpush-proxy", "--demo", "--config", path.to_str().unwrap()]).unwrap();
        assert!(cli.load().unwrap_err().to_string().contains("remove the configured upstreams"));
    }

    #[test]
    fn public_origin_and_ops_listener_from_flags() {
        let cli = Cli::try_parse_from([
            "mpush-proxy",
            "--upstream",
            "a:1",
            "--public-origin",
            "https://push.example.com",
            "--ops-listen",
            "127.0.0.1:9090",
        ])
        .unwrap();
        let c = cli.load().unwrap();
        assert_eq!(c.public_origin.as_deref(), Some("https://push.example.com"));
        assert_eq!(c.ops_listen, Some("127.0.0.1:9090".parse().unwrap()));
        let bad = Cli::try_parse_from(["mpush-proxy", "--upstream", "a:1", "--public-origin", "push.example.com"]);
        assert!(bad.unwrap().load().is_err());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let cli = Cli { config: Some("/nonexistent/p.toml".into()), ..Cli::default() };
        assert!(matches!(cli.load(), Err(ConfigError::Read { .. })));
    }
}
