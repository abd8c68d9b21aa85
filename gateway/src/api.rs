//! The push API over HTTP/1.1: `POST /push`, `POST /bind-token`, `GET /users`, `GET /health`,
//! `GET /public-key`. See the crate README for the request and response shapes.
//!
//! Hardening: a client gets `[api] header-read-timeout` to send a whole request head (then
//! the connection is closed, against slowloris), bodies are capped, and the configuration
//! refuses a non-loopback `api-listen` without a token (`GatewayConfig::validate`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mpush_protocol::AckMode;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::push::{PushTarget, Pusher};
use crate::Shared;

/// Largest accepted request body.
const MAX_BODY: usize = 1024 * 1024;
/// MPUSH's default push timeout (`PushContext.timeout`), ms.
const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Longest accepted `timeoutMs`.
const MAX_TIMEOUT_MS: u64 = 600_000;

/// `POST /push` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PushBody {
    user_id: Option<String>,
    user_ids: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    #[serde(default)]
    broadcast: bool,
    content: Option<String>,
    content_base64: Option<String>,
    ack: Option<String>,
    timeout_ms: Option<u64>,
}

/// `POST /bind-token` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BindTokenBody {
    user_id: String,
    /// Seconds; `[bind] default-token-ttl` when absent.
    ttl: Option<u64>,
}

type Body = Full<Bytes>;

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &json!({ "error": msg }))
}

fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(token) = shared.api_token.as_deref() else { return true };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit so timing says little about the token.
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => json_response(StatusCode::OK, &health(&shared)),
        (&Method::GET, "/public-key") => {
            let mut r = Response::new(Full::new(Bytes::from(format!("{}\n", shared.public_key))));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
            r
        }
        (&Method::GET, "/users") if !authorized(&shared, &req) => {
            error(StatusCode::UNAUTHORIZED, "bad or missing token")
        }
        (&Method::GET, "/users") => {
            let users: Vec<serde_json::Value> = shared
                .router
                .users()
                .into_iter()
                .map(|(user, conns)| json!({ "userId": user, "connections": conns }))
                .collect();
            json_response(StatusCode::OK, &json!({ "users": users }))
        }
        (&Method::POST, "/push") if !authorized(&shared, &req) => {
            error(StatusCode::UNAUTHORIZED, "bad or missing token")
        }
        (&Method::POST, "/push") => push(shared, req).await,
        (&Method::POST, "/bind-token") if !authorized(&shared, &req) => {
            error(StatusCode::UNAUTHORIZED, "bad or missing token")
        }
        (&Method::POST, "/bind-token") => bind_token(shared, req).await,
        (_, "/health" | "/public-key" | "/users" | "/push" | "/bind-token") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(resp)
}

/// `GET /health`: open connections, bound users, connections refused by the caps and, with
/// `[upstream] webhook`, the webhook sink's counters (`upstream`), so an operator sees pushes
/// piling up or being given up.
fn health(shared: &Shared) -> serde_json::Value {
    let mut health = json!({
        "status": "ok",
        "connections": shared.active.load(std::sync::atomic::Ordering::Relaxed),
        "users": shared.router.user_count(),
        "refusedConnections": shared.limits.refused.load(std::sync::atomic::Ordering::Relaxed),
    });
    if let Some(webhook) = &shared.webhook {
        let s = webhook.stats();
        health["upstream"] = json!({
            "stored": s.stored,
            "refused": s.refused,
            "givenUp": s.given_up,
            "retries": s.retries,
            "queued": s.queued,
            "posting": s.posting,
        });
    }
    health
}

/// The body, at most `MAX_BODY` bytes.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable")),
    }
}

/// `POST /bind-token`: mints a token the application's backend hands to its page, which
/// passes it with its bind.
async fn bind_token(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let Some(tokens) = shared.bind_tokens.clone() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "bind tokens are off: set [bind] token-secret-file or MPUSH_GATEWAY_BIND_TOKEN_SECRET",
        );
    };
    let bytes = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let body: BindTokenBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let ttl = body.ttl.unwrap_or(shared.bind.default_token_ttl);
    if body.user_id.is_empty() {
        return error(StatusCode::BAD_REQUEST, "userId must not be empty");
    }
    if ttl == 0 || ttl > shared.bind.max_token_ttl {
        return error(StatusCode::BAD_REQUEST, &format!("ttl must be in 1..={} seconds", shared.bind.max_token_ttl));
    }
    let expires_at = crate::now_ms() / 1000 + ttl;
    let token = tokens.mint(&body.user_id, expires_at);
    json_response(StatusCode::OK, &json!({ "token": token, "expiresAt": expires_at }))
}

async fn push(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let bytes = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let body: PushBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let (target, content, ack, timeout) = match parse_push(body) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let results = Pusher { shared }.push(target, content, ack, timeout).await;
    json_response(StatusCode::OK, &json!({ "results": results }))
}

fn parse_push(b: PushBody) -> Result<(PushTarget, Vec<u8>, AckMode, Duration), String> {
    let targets = usize::from(b.user_id.is_some())
        + usize::from(b.user_ids.is_some())
        + usize::from(b.tags.is_some())
        + usize::from(b.broadcast);
    if targets != 1 {
        return Err("give exactly one of userId, userIds, tags, broadcast:true".into());
    }
    let target = if let Some(u) = b.user_id {
        PushTarget::Users(vec![u])
    } else if let Some(us) = b.user_ids {
        PushTarget::Users(us)
    } else if let Some(tags) = b.tags {
        PushTarget::Tags(tags)
    } else {
        PushTarget::Broadcast
    };
    if let PushTarget::Users(us) = &target {
        if us.is_empty() || us.iter().any(String::is_empty) {
            return Err("user ids must not be empty".into());
        }
    }
    let content = match (b.content, b.content_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => {
            base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| format!("contentBase64: {e}"))?
        }
        _ => return Err("give exactly one of content, contentBase64".into()),
    };
    let ack = match b.ack.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("none" | "no_ack") => AckMode::None,
        Some("auto" | "auto_ack") => AckMode::Auto,
        Some("biz" | "biz_ack") => AckMode::Biz,
        Some(other) => return Err(format!("ack must be none, auto or biz, got {other:?}")),
    };
    let timeout_ms = b.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!("timeoutMs must be in 1..={MAX_TIMEOUT_MS}"));
    }
    Ok((target, content, ack, Duration::from_millis(timeout_ms)))
}

/// Serves the API until `shutdown` turns true, then returns once the requests under way have
/// answered (each connection gets a graceful shutdown): a push waiting for its acks during the
/// drain still gets its result written before the process exits.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let requests = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        requests.spawn(async move {
            let header_read_timeout = shared.api_header_read_timeout;
            let svc = service_fn(move |req| route(shared.clone(), req));
            // hyper times the head out only with a timer: without one a client could hold
            // the connection (and its task) forever by sending a header a byte at a time.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    drop(listener);
    requests.close();
    requests.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> PushBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn push_bodies_parse() {
        let (t, c, a, d) = parse_push(body(r#"{"userId":"u1","content":"hi","ack":"auto","timeoutMs":500}"#)).unwrap();
        assert_eq!(t, PushTarget::Users(vec!["u1".into()]));
        assert_eq!((c, a, d), (b"hi".to_vec(), AckMode::Auto, Duration::from_millis(500)));
        let (t, c, a, _) = parse_push(body(r#"{"broadcast":true,"contentBase64":"aGk="}"#)).unwrap();
        assert_eq!((t, c, a), (PushTarget::Broadcast, b"hi".to_vec(), AckMode::None));
        for bad in [
            r#"{"content":"x"}"#,
            r#"{"userId":"u","tags":["t"],"content":"x"}"#,
            r#"{"userId":"u"}"#,
            r#"{"userId":"u","content":"x","contentBase64":"eA=="}"#,
            r#"{"userId":"u","content":"x","ack":"maybe"}"#,
            r#"{"userIds":[],"content":"x"}"#,
            r#"{"userId":"u","content":"x","timeoutMs":0}"#,
        ] {
            assert!(parse_push(body(bad)).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<PushBody>(r#"{"userid":"u"}"#).is_err());
    }
}
