//! The `mpush-proxy` binary: parse flags/env/file, set up logging, serve until SIGTERM/SIGINT.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use mpush_proxy::{Cli, LogFormat, Proxy};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(not(feature = "demo"))]
    if cli.demo {
        eprintln!(
            "mpush-proxy: --demo: this binary was built without the \"demo\" feature, so it has no \
             embedded gateway; build with `cargo build -p mpush-proxy --features demo`, or give the \
             MPUSH servers with --upstream"
        );
        return ExitCode::from(2);
    }
    let config = match cli.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpush-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal, and never with NO_COLOR set (https://no-color.org):
    // log files, journald and CI logs get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match runtime(config.runtime_threads) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(cli, config))
}

/// The runtime for `runtime_threads`: 1 thread runs everything (a session's events never wake
/// another thread), more share the sessions by work stealing.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if threads > 1 {
        builder.worker_threads(threads);
    }
    builder.enable_all().build()
}

/// Starts the proxy (and in demo mode the gateway) and serves until a shutdown signal.
#[cfg_attr(not(feature = "demo"), allow(unused_mut, unused_variables))]
async fn serve(cli: Cli, mut config: mpush_proxy::Config) -> ExitCode {
    #[cfg(feature = "demo")]
    let mut gateway = None;
    #[cfg(feature = "demo")]
    let started = if cli.demo {
        demo::start(&cli, &mut config).await.map(|(proxy, handle)| {
            gateway = Some(handle);
            proxy
        })
    } else {
        Proxy::bind(config).await.map_err(|e| e.to_string())
    };
    #[cfg(not(feature = "demo"))]
    let started = Proxy::bind(config).await.map_err(|e| e.to_string());
    let proxy = match started {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let result = proxy.run(shutdown_signal()).await;
    #[cfg(feature = "demo")]
    if let Some(g) = gateway {
        g.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
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

/// Demo mode (`--demo`, feature "demo"): the gateway in-process.
#[cfg(feature = "demo")]
mod demo {
    use std::sync::Arc;

    use mpush_gateway::config::GatewayConfig;
    use mpush_gateway::{Gateway, GatewayHandle};
    use mpush_proxy::{Cli, Embedded, Proxy};

    /// Binds the proxy's listener, starts an in-process gateway on loopback that the proxy
    /// bridges to (its HTTP proxy may reach only the demo echo service), and prints what to
    /// open.
    pub(crate) async fn start(cli: &Cli, config: &mut mpush_proxy::Config) -> Result<(Proxy, GatewayHandle), String> {
        let listener = Proxy::bind_listener(config).map_err(|e| format!("bind {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let echo = mpush_proxy::embedded::start_echo().await.map_err(|e| format!("echo service: {e}"))?;
        let mut g = match &cli.gateway_config {
            Some(path) => GatewayConfig::from_file(path).map_err(|e| e.to_string())?,
            None => {
                let mut g = GatewayConfig::default();
                g.http.proxy_enabled = true;
                g.http.allow = vec![echo.to_string()];
                if config.upstream_proxy_protocol {
                    // The proxy names each browser in a PROXY header: the gateway's per-IP
                    // caps (its defaults) then count browsers, not this proxy.
                    g.limits.trusted_proxies = vec!["127.0.0.1/32".parse()?];
                } else {
                    // Every connection reaches the embedded gateway from this proxy on loopback,
                    // so per-IP caps would count all browsers as one peer; the proxy's own
                    // per-IP limits apply to the browsers themselves.
                    g.limits.max_connections_per_ip = 0;
                    g.limits.max_unauthenticated_per_ip = 0;
                }
                g
            }
        };
        if g.security.private_key.is_none() && g.security.key_file.is_none() {
            g.security.key_file =
                Some(cli.gateway_key_file.clone().unwrap_or_else(|| ".mpush-gateway-key.toml".into()));
        }
        let gateway = Gateway::bind(g).await.map_err(|e| e.to_string())?.spawn();
        let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
        let port = addr.port();
        // What a browser on this machine may have in its address bar (and so in Origin and
        // Host) for the console; /api/* answers only those, plus public_origin when set.
        let mut page_origins: Vec<String> = config.public_origin.iter().cloned().collect();
        if addr.ip().is_loopback() || addr.ip().is_unspecified() {
            let listen = match addr {
                std::net::SocketAddr::V4(a) if !a.ip().is_unspecified() => a.ip().to_string(),
                std::net::SocketAddr::V6(a) if !a.ip().is_unspecified() => format!("[{}]", a.ip()),
                _ => "127.0.0.1".to_owned(),
            };
            for host in [listen.as_str(), "127.0.0.1", "localhost", "[::1]"] {
                let o = format!("{scheme}://{host}:{port}");
                if !page_origins.contains(&o) {
                    page_origins.push(o);
                }
            }
        }
        let base = match addr {
            std::net::SocketAddr::V6(a) if !a.ip().is_unspecified() => format!("{scheme}://[{}]:{port}", a.ip()),
            std::net::SocketAddr::V4(a) if !a.ip().is_unspecified() => format!("{scheme}://{}:{port}", a.ip()),
            _ => format!("{scheme}://127.0.0.1:{port}"),
        };
        config.upstreams = vec![gateway.mpush_addr().to_string()];
        config.embedded = Some(Arc::new(Embedded {
            api_addr: gateway.api_addr(),
            public_key: gateway.public_key().to_owned(),
            echo_url: format!("http://{echo}/demo/echo"),
            page_origins,
        }));
        let proxy = Proxy::from_listener(config.clone(), listener).map_err(|e| e.to_string())?;
        let ws = base.replacen("http", "ws", 1);
        println!("mpush-proxy: embedded mpush-gateway on {}", gateway.mpush_addr());
        // Only a proxy that serves www/ has a console to open.
        if config.www.is_some() {
            println!("  console     {base}/");
        }
        println!("  websocket   {ws}{}", config.ws_path);
        println!("  push API    {base}/api/push   (gateway API at http://{}/push)", gateway.api_addr());
        println!("  public key  {}", gateway.public_key());
        println!("  try:        curl -s {base}/api/push -H 'content-type: application/json' \\");
        println!("                -d '{{\"userId\":\"demo-user\",\"content\":\"hello\",\"ack\":\"auto\"}}'");
        Ok((proxy, gateway))
    }
}
