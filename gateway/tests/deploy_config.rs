//! `deploy/mpush-gateway.toml`, the production configuration operators start from, is one the
//! gateway accepts: parsed and validated by its own parser, holding no secret, with the values
//! its comments promise, and every environment variable it names is one the gateway reads.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use mpush_gateway::GatewayConfig;

const TOML: &str = include_str!("../../deploy/mpush-gateway.toml");

#[test]
fn production_config_parses_validates_and_has_the_documented_values() {
    let c = GatewayConfig::from_toml(TOML).unwrap_or_else(|e| panic!("deploy/mpush-gateway.toml: {e}"));
    c.validate().unwrap();

    assert_eq!(c.listen, "0.0.0.0:3000".parse::<SocketAddr>().unwrap());
    assert!(c.api_listen.ip().is_loopback(), "the push API stays on loopback unless overridden");
    // Secrets come from the environment, never from the file.
    assert_eq!(c.security.private_key, None);
    assert_eq!(c.api.token, None);
    assert_eq!(c.security.key_file.as_deref(), Some(Path::new("mpush-gateway-key.toml")));
    // MPUSH's defaults.
    assert_eq!((c.core.min_heartbeat, c.core.max_heartbeat), (180_000, 180_000));
    assert_eq!(c.core.max_heartbeat_timeouts, 2);
    assert_eq!((c.core.max_packet_size, c.core.compress_threshold), (10_240, 10_240));
    assert_eq!(c.core.session_expired_time, 86_400_000);
    assert_eq!(c.core.pre_handshake_heartbeat, 10_000);
    assert_eq!(c.core.handshake_timeout, None, "no key that is only accepted with a warning");
    // The HTTP tunnel: on, allowlisted, mapped.
    assert!(c.http.proxy_enabled);
    assert_eq!(c.http.allow, ["api.internal", "files.internal:8080"]);
    assert_eq!(c.http.dns_mapping["api.internal"], ["10.0.1.10:8080", "10.0.1.11:8080"]);
    assert_eq!(c.http.max_content_length, 5 * 1024 * 1024);
    assert_eq!(c.upstream.webhook, None);
}

#[test]
fn the_environment_supplies_keys_token_and_the_container_api_address() {
    let mut c = GatewayConfig::from_toml(TOML).unwrap();
    let env: BTreeMap<&str, &str> = [
        ("MPUSH_GATEWAY_API_LISTEN", "0.0.0.0:8081"),
        ("MPUSH_GATEWAY_API_TOKEN", "s3cret"),
        ("MPUSH_GATEWAY_PRIVATE_KEY", "MIICdwIBADANBg..."),
        ("MPUSH_GATEWAY_PUBLIC_KEY", "MIGfMA0GCSqGSIb3..."),
    ]
    .into_iter()
    .collect();
    c.apply_env(|k| env.get(k).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(c.api_listen, "0.0.0.0:8081".parse::<SocketAddr>().unwrap());
    assert_eq!(c.api.token.as_deref(), Some("s3cret"));
    assert_eq!(c.security.private_key.as_deref(), Some("MIICdwIBADANBg..."));
    assert_eq!(c.security.public_key.as_deref(), Some("MIGfMA0GCSqGSIb3..."));
    assert_eq!(c.listen.port(), 3000, "untouched keys keep the file's values");
}

#[test]
fn every_variable_the_file_names_changes_the_config() {
    let names = variables(TOML, "MPUSH_GATEWAY_");
    assert!(names.len() >= 7, "{names:?}");
    let base = GatewayConfig::from_toml(TOML).unwrap();
    for name in names {
        let value = if name.ends_with("LISTEN") { "127.0.0.1:1" } else { "http://127.0.0.1:1/x" };
        let mut c = base.clone();
        c.apply_env(|k| (k == name).then(|| value.to_owned())).unwrap();
        assert_ne!(
            format!("{c:?}"),
            format!("{base:?}"),
            "deploy/mpush-gateway.toml names {name}, which has no effect"
        );
    }
}

/// Names like `MPUSH_GATEWAY_LISTEN` mentioned in `text`.
fn variables(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_uppercase() || c == '_')).unwrap_or(tail.len());
        if end > prefix.len() && !out.iter().any(|n| n == &tail[..end]) {
            out.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}
