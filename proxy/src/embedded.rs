//! Demo mode (`--demo`, cargo feature `demo`): the binary runs an `mpush-gateway` in-process
//! on loopback and bridges to it. The proxy then also serves what the demo console needs:
//! `/demo-config.json` (public key, paths), `/api/*` forwarded to the gateway's push API, and a
//! small echo service on its own loopback port as the target of the HTTP tunnel.
//!
//! The push API has no authentication here, so `/api/*` answers only requests that can come
//! from the console itself or from a tool on this machine: a loopback peer, a `Host` naming
//! one of the console's origins (a DNS-rebinding page sends its own host name), no
//! `Origin` or one of those origins and no cross-site `Sec-Fetch-Site` (another site's page
//! cannot post), and a JSON body (an HTML form cannot send `application/json`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::origin::Origin;

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
    /// The origins the console is served from (`http://127.0.0.1:8080`, `http://localhost:8080`,
    /// ...): `/api/*` requires a `Host` naming one of them and refuses any other `Origin`.
    pub page_origins: Vec<String>,
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
    if let Err((status, why)) = api_allowed(&e.page_origins, &req) {
        warn!(%peer, why, "push API request refused");
        return error(status, why);
    }
    match forward(e.api_addr, req).await {
        Ok(r) => r,
        Err(msg) => {
            warn!(error = %msg, "push API forward failed");
            error(StatusCode::BAD_GATEWAY, &msg)
        }
    }
}

/// The checks of `/api/*` beyond the loopback peer (see the module documentation).
fn api_allowed(page_origins: &[String], req: &Request<Incoming>) -> Result<(), (StatusCode, &'static str)> {
    let origins: Vec<Origin> = page_origins.iter().filter_map(|o| Origin::parse(o)).collect();
    let h = req.headers();
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !origins.iter().any(|o| o.matches_host(host)) {
        return Err((StatusCode::FORBIDDEN, "unexpected Host: open the console by the address the proxy printed"));
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let ok = origin.to_str().ok().and_then(Origin::parse).is_some_and(|o| origins.contains(&o));
        if !ok {
            return Err((StatusCode::FORBIDDEN, "cross-origin requests to the push API are refused"));
        }
    }
    // Browsers send it on every request, also where they send no Origin (a no-cors GET from
    // an <img> or <script> of another site).
    if let Some(site) = h.get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Err((StatusCode::FORBIDDEN, "cross-site requests to the push API are refused"));
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "the push API takes application/json bodies only"));
        }
    }
    Ok(())
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
