//! `mpush-gateway`: an MPUSH-compatible connection server with a push API.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mpush_gateway::{Gateway, GatewayConfig};

/// An MPUSH-compatible connection server with an HTTP push API.
#[derive(Debug, Parser)]
#[command(name = "mpush-gateway", version, about)]
struct Cli {
    /// TOML configuration file (see gateway/README.md).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address of the MPUSH byte stream (MPUSH's connection server uses port 3000).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the push API (keep it on loopback unless a token is set).
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// Dev-mode key file: generated on first start, reused afterwards.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Bearer token for the push API (env MPUSH_GATEWAY_API_TOKEN is preferred).
    #[arg(long)]
    api_token: Option<String>,
    /// Enable the HTTP proxy (cmd 12) for this host (port 80 only) or host:port; repeatable.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    allow_hosts: Vec<String>,
    /// POST upstream pushes as JSON to this http:// URL.
    #[arg(long)]
    webhook: Option<String>,
    /// Smallest heartbeat, ms (mp.core.min-heartbeat).
    #[arg(long)]
    min_heartbeat: Option<i32>,
    /// Largest heartbeat, ms (mp.core.max-heartbeat).
    #[arg(long)]
    max_heartbeat: Option<i32>,
    /// Heartbeat before a handshake, ms: a silent connection is closed by the 4th idle check
    /// (MPUSH: 10000, so about 40 s).
    #[arg(long)]
    pre_handshake_heartbeat: Option<i32>,
    /// Open MPUSH connections in total; 0: no cap ([limits] max-connections).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Open MPUSH connections per client IP; 0: no cap.
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Connections per client IP not yet handshaked; 0: no cap.
    #[arg(long)]
    max_unauthenticated_per_ip: Option<usize>,
    /// Largest RSA-encrypted handshake or fast connect body, bytes.
    #[arg(long)]
    max_handshake_body: Option<usize>,
    /// Longest string field of a handshake, fast connect, bind or unbind, bytes.
    #[arg(long)]
    max_field_length: Option<usize>,
    /// RSA private-key operations at once, off the async workers; 0: one per core.
    #[arg(long)]
    rsa_workers: Option<usize>,
    /// Content bytes of pushes queued for one connection; one more push gets "failure"
    /// ([limits] max-queued-push-bytes).
    #[arg(long)]
    max_queued_push_bytes: Option<usize>,
    /// Commands (pushes, kicks, HTTP replies) queued for one connection, 1 to 1048576; one
    /// more push gets "failure" ([limits] max-queued-commands).
    #[arg(long)]
    max_queued_commands: Option<usize>,
    /// A write to a client not done within this long closes the connection, ms
    /// ([limits] write-timeout).
    #[arg(long)]
    write_timeout: Option<u64>,
    /// Connections queued by the kernel before they are accepted (listen backlog; capped by
    /// net.core.somaxconn) ([limits] listen-backlog).
    #[arg(long)]
    listen_backlog: Option<usize>,
    /// A proxy address range (CIDR) whose connections open with a PROXY protocol header
    /// naming the client; repeatable ([limits] trusted-proxies).
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<mpush_gateway::proxy_protocol::Cidr>,
    /// HTTP-proxy requests one connection may have under way; one more gets 503 at once
    /// ([http] max-in-flight).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Largest readTimeout a client may ask the HTTP proxy for, ms ([http] max-read-timeout).
    #[arg(long)]
    max_read_timeout: Option<u64>,
    /// Refuse HTTP-proxy requests to hosts that resolve to private, loopback, link-local or
    /// similar addresses ([http] deny-private-addresses).
    #[arg(long)]
    deny_private_addresses: bool,
    /// On SIGTERM/SIGINT, how long in-flight work may take before connections are closed, ms.
    #[arg(long)]
    drain_timeout: Option<u64>,
}

/// Where the dev-mode key pair is kept when nothing else is configured.
const DEFAULT_KEY_FILE: &str = ".mpush-gateway-key.toml";

fn load_config(cli: Cli) -> Result<GatewayConfig, mpush_gateway::GatewayError> {
    let mut config = match &cli.config {
        Some(path) => GatewayConfig::from_file(path)?,
        None => GatewayConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            ..GatewayConfig::default()
        },
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(a) = cli.listen {
        config.listen = a;
    }
    if let Some(a) = cli.api_listen {
        config.api_listen = a;
    }
    if let Some(p) = cli.key_file {
        config.security.key_file = Some(p);
    }
    if let Some(t) = cli.api_token {
        config.api.token = Some(t);
    }
    if !cli.allow_hosts.is_empty() {
        config.http.proxy_enabled = true;
        config.http.allow.extend(cli.allow_hosts);
    }
    if let Some(w) = cli.webhook {
        config.upstream.webhook = Some(w);
    }
    if let Some(v) = cli.min_heartbeat {
        config.core.min_heartbeat = v;
    }
    if let Some(v) = cli.pre_handshake_heartbeat {
        config.core.pre_handshake_heartbeat = v;
    }
    if let Some(v) = cli.max_heartbeat {
        config.core.max_heartbeat = v;
    }
    let l = &mut config.limits;
    for (cli, field) in [
        (cli.max_connections, &mut l.max_connections),
        (cli.max_connections_per_ip, &mut l.max_connections_per_ip),
        (cli.max_unauthenticated_per_ip, &mut l.max_unauthenticated_per_ip),
        (cli.max_handshake_body, &mut l.max_handshake_body),
        (cli.max_field_length, &mut l.max_field_length),
        (cli.rsa_workers, &mut l.rsa_workers),
        (cli.max_queued_push_bytes, &mut l.max_queued_push_bytes),
        (cli.max_queued_commands, &mut l.max_queued_commands),
        (cli.listen_backlog, &mut l.listen_backlog),
    ] {
        if let Some(v) = cli {
            *field = v;
        }
    }
    if let Some(v) = cli.write_timeout {
        l.write_timeout = v;
    }
    l.trusted_proxies.extend(cli.trusted_proxies);
    if let Some(v) = cli.max_in_flight {
        config.http.max_in_flight = v;
    }
    if let Some(v) = cli.max_read_timeout {
        config.http.max_read_timeout = v;
    }
    if cli.deny_private_addresses {
        config.http.deny_private_addresses = true;
    }
    if let Some(v) = cli.drain_timeout {
        config.drain_timeout = v;
    }
    if config.security.private_key.is_none() && config.security.key_file.is_none() {
        config.security.key_file = Some(PathBuf::from(DEFAULT_KEY_FILE));
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colours only on a terminal, and never with NO_COLOR set (https://no-color.org), as
        // in mpush-proxy: journald and `docker logs` show escape codes verbatim.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let config = match load_config(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpush-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if config.security.private_key.is_none() {
        if let Some(p) = &config.security.key_file {
            tracing::warn!(key_file = %p.display(), "dev mode: key pair kept in a file; set mp.security keys for production");
        }
    }
    let gateway = match Gateway::bind(config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("mpush-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mpush-gateway: MPUSH on {}, push API on http://{}", gateway.mpush_addr(), gateway.api_addr());
    println!("public key (mp.security.public-key): {}", gateway.public_key());
    if gateway.bind_enforced() {
        println!("bind: signed bind tokens required (mint them with POST /bind-token)");
    } else {
        // MPUSH's default: any client that handshakes may bind any user id and get its pushes.
        println!(
            "bind: OPEN (dev mode): any client may bind any user id; set [bind] token-secret-file or \
             MPUSH_GATEWAY_BIND_TOKEN_SECRET to require signed bind tokens"
        );
        tracing::warn!("binding is open: any client may bind any user id (no [bind] token secret)");
    }
    gateway
        .run_until(async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        })
        .await;
    ExitCode::SUCCESS
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM: `docker stop` and systemd send SIGTERM,
/// and a gateway that ignored it was killed after the stop timeout instead of closing cleanly.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
