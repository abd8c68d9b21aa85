//! MPUSH's HTTP proxy (cmd 12): the gateway performs a client's plain-HTTP request and sends
//! the answer back. Unlike an open relay it only reaches allowlisted hosts, re-checks every
//! redirect target, caps the response size and bounds the whole exchange by `readTimeout`.
//!
//! Statuses the gateway generates itself (sent unencrypted, as MPUSH does): 400 empty or
//! invalid URI (or not `http://`), 403 host not allowlisted, 408 `readTimeout` elapsed,
//! 502 any other failure (bad upstream response, body over the cap, too many redirects),
//! 504 cannot connect.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mpush_protocol::client::READ_TIMEOUT_HEADER;
use mpush_protocol::{HttpMethod, HttpRequest, HttpResponse};
use rand::Rng;
use tokio::net::TcpStream;

use crate::config::HttpProxyConfig;

/// A plain-HTTP request for [`send_plain_http`].
#[derive(Clone, Debug)]
pub struct PlainRequest {
    /// Method.
    pub method: Method,
    /// Absolute `http://` URL.
    pub uri: String,
    /// Headers to send (hop-by-hop headers, `host` and `content-length` are replaced).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A plain-HTTP response.
#[derive(Clone, Debug)]
pub struct PlainResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers (hop-by-hop ones dropped).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why a plain-HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlainError {
    /// The URL is not an absolute `http://` URL.
    #[error("invalid uri: {0}")]
    InvalidUri(String),
    /// No TCP connection could be made.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The response body exceeded the cap.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
}

const HOP_BY_HOP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Performs one HTTP/1.1 exchange (no redirects), connecting to `connect_to` instead of the
/// URL's host when given. Has no timeout of its own: wrap it.
pub async fn send_plain_http(
    req: PlainRequest,
    connect_to: Option<&str>,
    max_body: usize,
) -> Result<PlainResponse, PlainError> {
    let uri: Uri = req.uri.parse().map_err(|e| PlainError::InvalidUri(format!("{e}")))?;
    if uri.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("http") {
        return Err(PlainError::InvalidUri("only http:// is supported".into()));
    }
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        return Err(PlainError::InvalidUri("no host".into()));
    };
    let port = uri.port_u16().unwrap_or(80);
    let stream = match connect_to {
        Some(addr) => TcpStream::connect(addr).await,
        None => TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)).await,
    }
    .map_err(PlainError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| PlainError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = hyper::Request::builder().method(req.method).uri(path).header(header::HOST, authority.as_str());
    for (k, v) in &req.headers {
        let name = k.trim();
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        builder = builder.header(name, v.trim());
    }
    let request = builder.body(Full::new(Bytes::from(req.body))).map_err(|e| PlainError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| PlainError::Http(e.to_string()))?;
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let mut body_stream = response.into_body();
    let mut body = Vec::new();
    while let Some(frame) = body_stream.frame().await {
        let frame = frame.map_err(|e| PlainError::Http(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if body.len() + data.len() > max_body {
                return Err(PlainError::TooLarge(max_body));
            }
            body.extend_from_slice(&data);
        }
    }
    Ok(PlainResponse { status, headers, body })
}

/// What to send back for an HTTP-proxy request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// The upstream's response (sent encrypted).
    Response(HttpResponse),
    /// A status the gateway generated (sent unencrypted).
    Error {
        /// 400, 403, 408, 502 or 504.
        status: i32,
        /// Reason phrase.
        reason: &'static str,
    },
}

fn error(status: StatusCode) -> ProxyOutcome {
    ProxyOutcome::Error { status: i32::from(status.as_u16()), reason: status.canonical_reason().unwrap_or("Error") }
}

/// The proxy policy: allowlist, DNS mapping, limits.
#[derive(Clone, Debug)]
pub struct HttpProxy {
    config: HttpProxyConfig,
}

impl HttpProxy {
    /// A proxy with this configuration.
    pub fn new(config: HttpProxyConfig) -> HttpProxy {
        HttpProxy { config }
    }

    /// Whether `uri`'s host (any port, or exactly this port) is allowlisted.
    pub fn is_allowed(&self, uri: &Uri) -> bool {
        let Some(host) = uri.host().map(str::to_ascii_lowercase) else { return false };
        let with_port = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        self.config.allow.iter().map(|a| a.trim().to_ascii_lowercase()).any(|a| a == host || a == with_port)
    }

    fn mapped_address(&self, uri: &Uri) -> Option<String> {
        let host = uri.host()?;
        let addrs = self.config.dns_mapping.iter().find(|(k, _)| k.eq_ignore_ascii_case(host)).map(|(_, v)| v)?;
        match addrs.len() {
            0 => None,
            1 => addrs.first().cloned(),
            n => addrs.get(rand::thread_rng().gen_range(0..n)).cloned(),
        }
    }

    /// Performs a client's request for the client at `peer`.
    pub async fn perform(&self, mut req: HttpRequest, peer: SocketAddr) -> ProxyOutcome {
        // MPUSH consumes its `readTimeout` header; it is not forwarded.
        let mut read_timeout = self.config.default_read_timeout;
        req.headers.retain(|(k, v)| {
            if k.trim().eq_ignore_ascii_case(READ_TIMEOUT_HEADER) {
                // As MPUSH: only a positive number counts (the Java client sends "0" by default).
                if let Some(ms) = v.trim().parse::<u64>().ok().filter(|ms| *ms > 0) {
                    read_timeout = ms;
                }
                false
            } else {
                // The gateway states the client's address itself; a client cannot forge it.
                !k.trim().eq_ignore_ascii_case("x-forwarded-for") && !k.trim().eq_ignore_ascii_case("x-forwarded-port")
            }
        });
        if req.uri.trim().is_empty() {
            return error(StatusCode::BAD_REQUEST);
        }
        req.headers.push(("x-forwarded-for".into(), peer.ip().to_string()));
        req.headers.push(("x-forwarded-port".into(), peer.port().to_string()));
        let limit = Duration::from_millis(read_timeout);
        match tokio::time::timeout(limit, self.follow(req)).await {
            Ok(outcome) => outcome,
            Err(_) => error(StatusCode::REQUEST_TIMEOUT),
        }
    }

    async fn follow(&self, req: HttpRequest) -> ProxyOutcome {
        let mut method = match req.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Delete => Method::DELETE,
        };
        let mut body = req.body;
        let mut uri_text = req.uri.trim().to_owned();
        let mut redirects = 0;
        loop {
            let Ok(uri) = uri_text.parse::<Uri>() else { return error(StatusCode::BAD_REQUEST) };
            if uri.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("http") || uri.host().is_none() {
                return error(StatusCode::BAD_REQUEST);
            }
            if !self.is_allowed(&uri) {
                tracing::info!(uri = %uri_text, "http proxy: host not allowlisted");
                return error(StatusCode::FORBIDDEN);
            }
            let connect_to = self.mapped_address(&uri);
            let plain = PlainRequest {
                method: method.clone(),
                uri: uri_text.clone(),
                headers: req.headers.clone(),
                body: body.clone(),
            };
            let resp = match send_plain_http(plain, connect_to.as_deref(), self.config.max_content_length).await {
                Ok(r) => r,
                Err(PlainError::Connect(e)) => {
                    tracing::info!(uri = %uri_text, error = %e, "http proxy: cannot connect");
                    return error(StatusCode::GATEWAY_TIMEOUT);
                }
                Err(PlainError::InvalidUri(_)) => return error(StatusCode::BAD_REQUEST),
                Err(e) => {
                    tracing::info!(uri = %uri_text, error = %e, "http proxy: upstream failed");
                    return error(StatusCode::BAD_GATEWAY);
                }
            };
            let location =
                resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.clone());
            if let (true, Some(loc)) = (resp.status.is_redirection(), location) {
                if redirects >= self.config.max_redirects {
                    return error(StatusCode::BAD_GATEWAY);
                }
                redirects += 1;
                let Some(next) = resolve_location(&uri, &loc) else { return error(StatusCode::BAD_GATEWAY) };
                let s = resp.status;
                if s == StatusCode::SEE_OTHER
                    || ((s == StatusCode::MOVED_PERMANENTLY || s == StatusCode::FOUND) && method == Method::POST)
                {
                    method = Method::GET;
                    body = Vec::new();
                }
                uri_text = next;
                continue;
            }
            return ProxyOutcome::Response(HttpResponse {
                status_code: i32::from(resp.status.as_u16()),
                reason_phrase: resp.status.canonical_reason().map(str::to_owned),
                headers: resp.headers,
                body: resp.body,
            });
        }
    }
}

/// Resolves a `Location` header against the URL that answered with it.
fn resolve_location(base: &Uri, loc: &str) -> Option<String> {
    let loc = loc.trim();
    if loc.contains("://") {
        return Some(loc.to_owned());
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if let Some(rest) = loc.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if loc.starts_with('/') {
        return Some(format!("{scheme}://{authority}{loc}"));
    }
    let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{scheme}://{authority}{dir}/{loc}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(allow: &[&str]) -> HttpProxy {
        HttpProxy::new(HttpProxyConfig {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            ..HttpProxyConfig::default()
        })
    }

    #[test]
    fn allowlist_matches_host_or_host_and_port() {
        let p = proxy(&["api.internal", "127.0.0.1:8080"]);
        assert!(p.is_allowed(&"http://API.internal:9999/x".parse().unwrap()));
        assert!(p.is_allowed(&"http://127.0.0.1:8080/".parse().unwrap()));
        assert!(!p.is_allowed(&"http://127.0.0.1:8081/".parse().unwrap()));
        assert!(!p.is_allowed(&"http://127.0.0.1/".parse().unwrap()));
        assert!(!p.is_allowed(&"http://evil.example/".parse().unwrap()));
        assert!(proxy(&["example.org:80"]).is_allowed(&"http://example.org/".parse().unwrap()));
    }

    #[test]
    fn locations_resolve() {
        let base: Uri = "http://h:1/a/b?q".parse().unwrap();
        assert_eq!(resolve_location(&base, "/c").as_deref(), Some("http://h:1/c"));
        assert_eq!(resolve_location(&base, "c").as_deref(), Some("http://h:1/a/c"));
        assert_eq!(resolve_location(&base, "//x/y").as_deref(), Some("http://x/y"));
        assert_eq!(resolve_location(&base, "http://z/").as_deref(), Some("http://z/"));
    }

    #[tokio::test]
    async fn refused_and_invalid_requests_get_generated_statuses() {
        let p = proxy(&["127.0.0.1:1"]);
        let peer = SocketAddr::from(([127, 0, 0, 1], 5));
        let req = |uri: &str| HttpRequest { method: HttpMethod::Get, uri: uri.into(), headers: vec![], body: vec![] };
        let status = |o: ProxyOutcome| match o {
            ProxyOutcome::Error { status, .. } => status,
            ProxyOutcome::Response(r) => r.status_code,
        };
        assert_eq!(status(p.perform(req(""), peer).await), 400);
        assert_eq!(status(p.perform(req("https://127.0.0.1:1/"), peer).await), 400);
        assert_eq!(status(p.perform(req("http://169.254.169.254/"), peer).await), 403);
        // Port 1 on loopback refuses connections.
        assert_eq!(status(p.perform(req("http://127.0.0.1:1/"), peer).await), 504);
    }
}
