//! `deploy/mpush-proxy.toml`, the production configuration operators start from, is one the
//! proxy accepts: read through the binary's own path (`--config`, flags on top), validated,
//! with the values its comments promise, and consistent with `deploy/mpush-gateway.toml`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use mpush_proxy::{Cli, Config, HttpProxyMode, LogFormat};

const PROXY_TOML: &str = include_str!("../../deploy/mpush-proxy.toml");
const GATEWAY_TOML: &str = include_str!("../../deploy/mpush-gateway.toml");

fn deploy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(name)
}

#[test]
fn production_config_loads_through_the_cli_with_its_documented_values() {
    let path = deploy_file("mpush-proxy.toml");
    let cli = Cli::try_parse_from(["mpush-proxy", "--config", path.to_str().unwrap()]).unwrap();
    let c = cli.load().unwrap_or_else(|e| panic!("deploy/mpush-proxy.toml: {e}"));

    assert_eq!(c.listen, "0.0.0.0:443".parse::<SocketAddr>().unwrap());
    assert_eq!(c.ws_path, "/mpush");
    assert!(c.tls_enabled());
    assert_eq!(c.tls_cert.as_deref(), Some("/etc/mpush-proxy/tls/fullchain.pem".as_ref()));
    assert_eq!(c.tls_key.as_deref(), Some("/etc/mpush-proxy/tls/privkey.pem".as_ref()));
    // Production names its servers (without them, and without --demo, the proxy refuses to start).
    assert_eq!(c.upstreams, ["10.0.0.5:3000", "10.0.0.6:3000"]);
    // Metrics and readiness off the public port.
    assert_eq!(c.ops_listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.ops_max_connections, Config::default().ops_max_connections);
    assert!(!c.allowed_origins.is_empty());
    assert!(c.allowed_origins.iter().all(|o| o.starts_with("https://") && o != "*"), "{:?}", c.allowed_origins);
    assert_eq!((c.max_connections, c.max_connections_per_ip), (10_000, 100));
    // The connection caps written out equal the defaults derived from the session caps.
    assert_eq!((c.max_open_connections, c.max_open_connections_per_ip), (Some(11_024), Some(116)));
    let mut derived = c.clone();
    (derived.max_open_connections, derived.max_open_connections_per_ip) = (None, None);
    assert_eq!(derived.open_connection_caps(), c.open_connection_caps());
    assert_eq!(c.max_header_bytes, 16 * 1024);
    assert_eq!((c.http_idle_timeout, c.http_max_requests), (Duration::from_secs(15), 100));
    assert_eq!((c.upstream_max_body, c.downstream_max_body), (10_240, 6 * 1024 * 1024));
    assert_eq!(c.http_proxy, HttpProxyMode::Forward);
    assert_eq!(c.idle_timeout, Duration::from_secs(600));
    assert_eq!((c.ping_interval, c.pong_timeout), (Duration::from_secs(30), Duration::from_secs(20)));
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.log_format, LogFormat::Json);
    assert!(c.www.is_none());
}

#[test]
fn the_cluster_keys_are_the_defaults_and_zk_is_left_to_the_operator() {
    let path = deploy_file("mpush-proxy.toml");
    let c = Cli::try_parse_from(["mpush-proxy", "--config", path.to_str().unwrap()]).unwrap().load().unwrap();
    let d = Config::default();
    assert!(c.zk.is_empty(), "the ZooKeeper line is an example, commented out");
    assert_eq!(
        (&c.zk_namespace, &c.zk_digest, &c.zk_path, &c.zk_weight_attribute),
        (&d.zk_namespace, &d.zk_digest, &d.zk_path, &d.zk_weight_attribute)
    );
    assert_eq!(
        (c.zk_session_timeout, c.zk_reconnect_max, c.zk_max_nodes),
        (d.zk_session_timeout, d.zk_reconnect_max, d.zk_max_nodes)
    );
    // The commented example is a valid cluster setting.
    let text = PROXY_TOML.replace("# zk = [", "zk = [");
    let with_zk = Config::from_toml(&text).unwrap();
    with_zk.validate().unwrap();
    assert_eq!(with_zk.zk.len(), 3);
    assert_eq!(with_zk.zk_servers_path(), "/mpush/cluster/cs");
}

#[test]
fn the_container_listen_override_wins_over_the_file() {
    // deploy/proxy.Dockerfile sets MPUSH_PROXY_LISTEN=0.0.0.0:8443; the flag takes the same path.
    let path = deploy_file("mpush-proxy.toml");
    let cli =
        Cli::try_parse_from(["mpush-proxy", "--config", path.to_str().unwrap(), "--listen", "0.0.0.0:8443"]).unwrap();
    let c = cli.load().unwrap();
    assert_eq!(c.listen.port(), 8443);
    assert_eq!(c.upstreams.len(), 2, "the rest still comes from the file");
    // The image moves the ops listener off loopback (the file's 127.0.0.1 is unreachable from
    // outside a container); it must be a listener the proxy accepts next to 8443.
    let dockerfile = std::fs::read_to_string(deploy_file("proxy.Dockerfile")).unwrap();
    let ops = dockerfile
        .lines()
        .find_map(|l| l.trim().trim_end_matches('\\').trim().strip_prefix("MPUSH_PROXY_OPS_LISTEN="))
        .expect("proxy.Dockerfile sets MPUSH_PROXY_OPS_LISTEN");
    let cli = Cli::try_parse_from([
        "mpush-proxy",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "0.0.0.0:8443",
        "--ops-listen",
        ops,
    ])
    .unwrap();
    assert_eq!(cli.load().unwrap().ops_listen, Some("0.0.0.0:9090".parse().unwrap()));
}

#[test]
fn every_variable_the_file_names_exists() {
    let known: BTreeSet<String> =
        Cli::command().get_arguments().filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned())).collect();
    let named = variables(PROXY_TOML, "MPUSH_PROXY_");
    assert!(!named.is_empty());
    for v in named {
        assert!(known.contains(&v), "deploy/mpush-proxy.toml names {v}, which the proxy does not read");
    }
}

#[test]
fn proxy_limits_fit_the_gateway_config() {
    let proxy = Config::from_toml(PROXY_TOML).unwrap();
    let gateway = mpush_gateway::GatewayConfig::from_toml(GATEWAY_TOML).unwrap();
    // A packet the proxy forwards is one the server accepts.
    assert!(proxy.upstream_max_body <= gateway.core.max_packet_size);
    // Sessions that only heartbeat are never idle-closed by the proxy.
    let max_heartbeat = Duration::from_millis(u64::try_from(gateway.core.max_heartbeat).unwrap());
    assert!(proxy.idle_timeout > max_heartbeat, "{:?} vs {max_heartbeat:?}", proxy.idle_timeout);
    // The gateway enables the HTTP tunnel, so the proxy forwards it.
    assert_eq!(gateway.http.proxy_enabled, proxy.http_proxy == HttpProxyMode::Forward);
}

/// Names like `MPUSH_PROXY_UPSTREAMS` mentioned in `text` (a trailing `*` is a wildcard, skipped).
fn variables(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_uppercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        if name.len() > prefix.len() && !tail[end..].starts_with('*') {
            out.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    out
}
