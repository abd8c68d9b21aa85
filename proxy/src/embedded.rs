//! Embedded mode: with no upstream configured, the binary runs an `mpush-gateway` in-process
//! on loopback and bridges to it. The proxy then also serves what the demo console needs:
//! `/demo-config.json` (public key, paths), `/api/*` forwarded to the gateway's push API (for
//! loopback peers only: the push API must never face the internet unauthenticated), and a
//! small echo service on its own loopback port as the target of the HTTP tunnel.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

type Body = Full<Bytes>;

/// Largest request body forwarded to the push API or echoed.
const MAX_BODY: usize = 1 << 20;

/// What the proxy knows about its embedded gateway.
#[derive(Clone, Debug)]
pub struct Embedded {
    /// The gateway's push API address (loopback).
    pub api_addr: SocketAddr,
    /// The gateway's public key, base64 X.509.
    pub public_key: String,
    /// URL of the demo echo service reachable through the HTTP tunnel.
    pub echo_url: String,
}

/// Whether `path` is served by [`route`] in embedded mode.
pub(crate) fn handles(path: &str) -> bool {
    path == "/demo-config.json" || path == "/api" || path.starts_with("/api/")
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": msg }).to_string())
}

/// Serves the embedded-mode paths.
pub(crate) async fn route(e: &Embedded, ws_path: &str, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.uri().path() == "/demo-config.json" {
        let body = serde_json::json!({
            "publicKey": e.public_key,
            "wsPath": ws_path,
            "pushApi": "/api/push",
            "echoUrl": e.echo_url,
        });
        return json(StatusCode::OK, body.to_string());
    }
    if !peer.ip().is_loopback() {
        return error(StatusCode::FORBIDDEN, "the push API is only forwarded for loopback clients");
    }
    match forward(e.api_addr, req).await {
        Ok(r) => r,
        Err(msg) => {
            warn!(error = %msg, "push API forward failed");
            error(StatusCode::BAD_GATEWAY, &msg)
        }
    }
}

/// Forwards `/api/<rest>` to the gateway's `/<rest>`.
async fn forward(api: SocketAddr, req: Request<Incoming>) -> Result<Response<Body>, String> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().strip_prefix("/api").unwrap_or("/");
    let path = if path.is_empty() { "/" } else { path };
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| format!("request body: {e}"))?.to_bytes();
    let mut out = Request::builder().method(parts.method).uri(pq).header(header::HOST, api.to_string());
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    let out = out.body(Full::new(body)).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(api).await.map_err(|e| format!("connect {api}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, 16 * MAX_BODY).collect().await.map_err(|e| format!("response body: {e}"))?;
    let mut r = Response::new(Full::new(body.to_bytes()));
    *r.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    Ok(r)
}

/// Starts the demo echo service on `127.0.0.1:0`; it answers every request with a JSON
/// description of it (method, path, headers, body). Returns its address.
pub async fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(
                        |req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(req).await) },
                    );
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(addr)
}

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let text = String::from_utf8_lossy(&body).into_owned();
    let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let out = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": parsed.unwrap_or(serde_json::Value::String(text)),
        "servedAt": now,
        "servedBy": "mpush-proxy demo echo (via the MPUSH HTTP proxy)",
    });
    json(StatusCode::OK, serde_json::to_string_pretty(&out).unwrap_or_default())
}
