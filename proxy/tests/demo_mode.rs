//! The binary's demo mode (`--demo`, feature "demo", which `cargo test` turns on through the
//! self dev-dependency): it starts only when asked, and its unauthenticated push API under
//! `/api/*` answers the console's own origin only: no cross-site POST, no HTML form body, no
//! DNS-rebinding Host.
#![allow(clippy::unwrap_used, missing_docs)]
#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::child::{spawn_until_line, ChildGuard};
use common::T;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The binary in demo mode on 127.0.0.1:0; killed on drop.
struct Demo {
    _child: ChildGuard,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start_demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpush-proxy"));
    cmd.args(["--demo", "--listen", "127.0.0.1:0", "--gateway-key-file", key.to_str().unwrap()])
        .args(["--log-level", "warn"]);
    // The banner's "push API    http://127.0.0.1:PORT/api/push ..." line (the console line is
    // printed only when www/ is served).
    let push_api = |line: &str| {
        let url = line.trim().strip_prefix("push API")?.split_whitespace().next()?;
        url.strip_prefix("http://")?.strip_suffix("/api/push")?.parse::<SocketAddr>().ok()
    };
    // Generating the gateway's key pair takes a moment on first start.
    let (child, addr) = spawn_until_line(&mut cmd, push_api, Duration::from_secs(60)).await;
    Demo { _child: child, addr, _dir: dir }
}

/// One request with exactly these headers (and `Connection: close`); returns status and body.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut raw)).await.expect("no answer").unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

const PUSH: &str = r#"{"userId":"nobody-online","content":"hello","ack":"none"}"#;

#[tokio::test]
async fn without_demo_an_empty_upstream_list_is_a_config_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mpush-proxy"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("MPUSH_PROXY_UPSTREAMS")
        .env_remove("MPUSH_PROXY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no upstream configured") && err.contains("--demo"), "{err}");
    // --demo and upstreams contradict each other.
    let out = Command::new(env!("CARGO_BIN_EXE_mpush-proxy")).args(["--demo", "--upstream", "a:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_push_api_answers_the_console_and_local_tools() {
    let d = start_demo().await;
    let host = d.addr.to_string();
    let page = format!("http://{host}");
    let json = ("Content-Type", "application/json; charset=utf-8");
    // curl on this machine: no Origin.
    let (status, body) = request(d.addr, "POST", "/api/push", &[("Host", &host), json], PUSH).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("results"), "{body}");
    // The console page itself (browsers send Origin and Sec-Fetch-Site on a POST).
    let console = [("Host", host.as_str()), ("Origin", page.as_str()), ("Sec-Fetch-Site", "same-origin"), json];
    assert_eq!(request(d.addr, "POST", "/api/push", &console, PUSH).await.0, 200);
    // The same console opened as localhost.
    let lhost = format!("localhost:{}", d.addr.port());
    let lpage = format!("http://{lhost}");
    let local = [("Host", lhost.as_str()), ("Origin", lpage.as_str()), json];
    assert_eq!(request(d.addr, "POST", "/api/push", &local, PUSH).await.0, 200);
    assert_eq!(request(d.addr, "GET", "/api/health", &[("Host", &host)], "").await.0, 200);
}

#[tokio::test]
async fn the_push_api_refuses_cross_site_form_and_rebinding_requests() {
    let d = start_demo().await;
    let host = d.addr.to_string();
    let page = format!("http://{host}");
    let json = ("Content-Type", "application/json");

    // Another site's page posting to the console's API (CSRF).
    let cross = [("Host", host.as_str()), ("Origin", "https://evil.example"), json];
    let (status, body) = request(d.addr, "POST", "/api/push", &cross, PUSH).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross-origin"), "{body}");
    // A local page on another port is another origin too.
    let other = format!("http://127.0.0.1:{}", d.addr.port().wrapping_add(1).max(1));
    let (status, _) = request(d.addr, "POST", "/api/push", &[("Host", &host), ("Origin", &other), json], PUSH).await;
    assert_eq!(status, 403);
    // An HTML form: text/plain (or urlencoded) needs no CORS preflight, so it must not pass.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let form = [("Host", host.as_str()), ("Origin", page.as_str()), ("Content-Type", ct)];
        let (status, body) = request(d.addr, "POST", "/api/push", &form, PUSH).await;
        assert_eq!(status, 415, "{ct}: {body}");
    }
    let (status, _) = request(d.addr, "POST", "/api/push", &[("Host", &host)], PUSH).await;
    assert_eq!(status, 415, "no content type");
    // DNS rebinding: the attacker's host name resolves to 127.0.0.1; the browser sends it as
    // Host, and as Origin, since the page is "same-origin" with itself.
    let rebind_host = format!("rebind.evil.example:{}", d.addr.port());
    let rebind_page = format!("http://{rebind_host}");
    let rebound = [("Host", rebind_host.as_str()), ("Origin", rebind_page.as_str()), json];
    let (status, body) = request(d.addr, "POST", "/api/push", &rebound, PUSH).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("unexpected Host"), "{body}");
    // A same-origin GET sends no Origin; the Host still gives the rebinding page away.
    assert_eq!(request(d.addr, "GET", "/api/users", &[("Host", &rebind_host)], "").await.0, 403);
    assert_eq!(request(d.addr, "GET", "/api/health", &[], "").await.0, 403, "no Host at all");
    // A no-cors GET from another site (<img>, <script>) carries no Origin, only Sec-Fetch-Site.
    let sneaky = [("Host", host.as_str()), ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(request(d.addr, "GET", "/api/users", &sneaky, "").await.0, 403);

    // The WebSocket follows the origin rule too: the rebinding page is not a loopback origin.
    let ws = [
        ("Host", rebind_host.as_str()),
        ("Origin", rebind_page.as_str()),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    assert_eq!(request(d.addr, "GET", "/mpush", &ws, "").await.0, 403);
}
