//! MPUSH's HTTP proxy (cmd 12): the gateway performs a client's plain-HTTP request and sends
//! the answer back as MPUSH 0.8.0's `HttpProxyHandler` and netty HTTP client do, with one
//! addition: unlike MPUSH (an open relay) it only reaches allowlisted hosts.
//!
//! What a client sees, as MPUSH:
//! * the upstream's response, encrypted: its status, its own reason phrase, its headers with
//!   their names as sent (carried in a Java `HashMap`: repeated names keep the last value,
//!   MPUSH's `content-length` added, in the map's iteration order), its body;
//! * redirects (300, 301, 302, 303, 305, 307; not 308) followed with the same method, at most
//!   5: the 6th 3xx itself is the answer. A redirect of a request with a body fails with 503
//!   (netty has released the body by then). A 3xx without `Location`, or with one that is
//!   not URL-decodable, is never answered; one whose target is not a URI times out (408);
//! * statuses generated here, unencrypted, no headers, no body: 400 "Bad Request" (and then
//!   502) for an empty URI (answered by the session), 408 "Request Timeout" when
//!   `readTimeout` elapses, 502 "Bad Gateway" for an unusable URI or a failed read (a body
//!   over the cap), 503 "Service Unavailable" when the request cannot be written, 504
//!   "Gateway Timeout" when no connection is made within 4 s; and, gateway-specific, 403
//!   "Forbidden" for a host (or absolute redirect target) not on the allowlist.
//! * The scheme is not looked at: `https://host/` is plain HTTP to port 80 of `host`.
//!
//! Gateway-specific bounds: an allowlist entry without a port allows port 80 only; at most
//! `max-in-flight` requests per connection (one more: 503 at once), `readTimeout` clamped
//! to `max-read-timeout`, requests aborted with their connection (see `conn.rs`);
//! `Authorization` and `Cookie` are not sent on to a redirect target on another host or port;
//! with `deny-private-addresses`, a host that resolves only to private, loopback, link-local
//! and similar addresses is refused (403), and the connection goes to exactly the address
//! that was checked (one lookup, so DNS rebinding cannot slip a second answer past); a
//! relative `Location` is resolved as RFC 3986 says (`Url::join`), not appended as netty does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use http::{header, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mpush_protocol::{HttpMethod, HttpRequest, HttpResponse};
use rand::Rng;
use tokio::net::TcpStream;

use crate::config::HttpProxyConfig;
use crate::http1;
use crate::java;

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
    /// The upstream's response (sent sealed: encrypted, compressed over the threshold).
    Response(HttpResponse),
    /// A status the gateway generated (sent raw).
    Error {
        /// 403, 408, 502, 503 or 504.
        status: i32,
        /// Reason phrase.
        reason: &'static str,
    },
    /// Nothing is ever sent, as MPUSH sends nothing (a redirect without usable `Location`).
    NoResponse,
}

fn error(status: StatusCode) -> ProxyOutcome {
    ProxyOutcome::Error { status: i32::from(status.as_u16()), reason: status.canonical_reason().unwrap_or("Error") }
}

/// The statuses netty's `HttpClientHandler` follows.
fn is_redirect(status: u16) -> bool {
    matches!(status, 300 | 301 | 302 | 303 | 305 | 307)
}

/// Java's `InetAddress.getHostAddress()`: dotted IPv4 (also for an IPv4-mapped peer), IPv6
/// as eight uncompressed hex groups.
fn java_host_address(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":"),
    }
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

    /// Most requests one connection may have under way (`max-in-flight`).
    pub fn max_in_flight(&self) -> usize {
        self.config.max_in_flight
    }

    /// Whether `uri`'s host and port are allowlisted: an entry `host:port` allows that port,
    /// an entry `host` only the default port 80 (the scheme is not looked at).
    pub fn is_allowed(&self, uri: &Uri) -> bool {
        let Some(host) = uri.host().map(str::to_ascii_lowercase) else { return false };
        let port = uri.port_u16().unwrap_or(80);
        let with_port = format!("{host}:{port}");
        self.config
            .allow
            .iter()
            .map(|a| a.trim().to_ascii_lowercase())
            .any(|a| a == with_port || (port == 80 && a == host))
    }

    /// MPUSH's `doDnsMapping`: a mapped host's URL becomes `scheme://ip:port` + path + query,
    /// so the request (its `Host` header and relative redirects included) goes to that address.
    /// `None` when the host is not mapped.
    fn map_url(&self, uri_text: &str, uri: &Uri) -> Option<String> {
        let host = uri.host()?;
        let addrs = self.config.dns_mapping.iter().find(|(k, _)| k.eq_ignore_ascii_case(host)).map(|(_, v)| v)?;
        let addr = match addrs.len() {
            0 => return None,
            1 => &addrs[0],
            n => &addrs[rand::thread_rng().gen_range(0..n)],
        };
        // DnsMapping.parse: "ip" means port 80.
        let (ip, port) = match addr.split_once(':') {
            Some((ip, port)) => (ip, port),
            None => (addr.as_str(), "80"),
        };
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("{}://{ip}:{port}{}{query}", uri.scheme_str().unwrap_or("http"), java_url_path(uri_text)))
    }

    /// Resolves `host` once and connects to the first address that passes the
    /// private-address check (when on and the host is not a trusted `dns-mapping` target),
    /// within netty's connect timeout. The address connected to is the one checked: no second
    /// lookup happens, so a name cannot answer a public address to the check and a private
    /// one to the connect (DNS rebinding).
    async fn connect(&self, host: &str, port: u16, trusted: bool) -> Result<TcpStream, ConnectFailure> {
        let check = self.config.deny_private_addresses && !trusted;
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let attempt = async {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name, port)).await.map_err(ConnectFailure::Io)?.collect();
            let permitted: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| !check || !is_private_address(a.ip())).collect();
            if permitted.is_empty() && !resolved.is_empty() {
                return Err(ConnectFailure::Denied(resolved));
            }
            let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
            for addr in permitted {
                // An IP literal: `http1::connect` looks nothing up again.
                match http1::connect(&addr.ip().to_string(), addr.port()).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(ConnectFailure::Io(last))
        };
        tokio::time::timeout(http1::CONNECT_TIMEOUT, attempt).await.unwrap_or_else(|_| {
            Err(ConnectFailure::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))
        })
    }

    /// Performs a client's request for the client at `peer`. `req.headers` are the session's
    /// (MPUSH's `HashMap` entries); the empty-URI and refused-header cases never get here.
    pub async fn perform(&self, req: HttpRequest, peer: SocketAddr) -> ProxyOutcome {
        // The headers MPUSH's request carries: the client's, in its HashMap's order, then
        // content-length for a body and x-forwarded-for/-port. Gateway-specific: the client's
        // own x-forwarded-* and message-framing headers are dropped (not forgeable, no
        // request smuggling).
        let mut headers: Vec<(String, String)> = java::hash_map(req.headers)
            .into_iter()
            .filter(|(k, _)| {
                !["x-forwarded-for", "x-forwarded-port", "content-length", "transfer-encoding"]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
            })
            .collect();
        if !req.body.is_empty() {
            headers.push(("content-length".into(), req.body.len().to_string()));
        }
        headers.push(("x-forwarded-for".into(), java_host_address(peer.ip())));
        headers.push(("x-forwarded-port".into(), peer.port().to_string()));
        // RequestContext: the first `readTimeout` (any case) counts if it is a positive int;
        // all of them are consumed.
        let read_timeout = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(mpush_protocol::client::READ_TIMEOUT_HEADER))
            .and_then(|(_, v)| java::ints_try_parse(v))
            .filter(|ms| *ms > 0)
            // Gateway-specific: a client cannot hold an upstream exchange open for longer.
            .map_or(self.config.default_read_timeout, |ms| (ms as u64).min(self.config.max_read_timeout));
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(mpush_protocol::client::READ_TIMEOUT_HEADER));
        let limit = std::time::Duration::from_millis(read_timeout);
        match tokio::time::timeout(limit, self.follow(req.method, req.uri, headers, req.body)).await {
            Ok(outcome) => outcome,
            Err(_) => error(StatusCode::REQUEST_TIMEOUT),
        }
    }

    async fn follow(
        &self,
        method: HttpMethod,
        uri_text: String,
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> ProxyOutcome {
        // `new URI(...)` or a missing host throws inside MPUSH's handler: 502.
        let Some(first) = uri_text.parse::<Uri>().ok().filter(|u| u.scheme().is_some() && u.host().is_some()) else {
            return error(StatusCode::BAD_GATEWAY);
        };
        if !self.is_allowed(&first) {
            tracing::info!(uri = %uri_text, "http proxy: host not allowlisted");
            return error(StatusCode::FORBIDDEN);
        }
        // A mapped URL goes to an address from trusted configuration (mapping targets are
        // often private on purpose): the private-address check is for names clients chose.
        let (mut url, mut trusted) = match self.map_url(&uri_text, &first) {
            Some(mapped) => (mapped, true),
            None => (uri_text.clone(), false),
        };
        let mut redirects = 0u32;
        loop {
            let parsed = url.parse::<Uri>().ok();
            let Some((uri, host)) = parsed.as_ref().filter(|u| u.scheme().is_some()).and_then(|u| Some((u, u.host()?)))
            else {
                // Only a redirect target can get here (the first URL was checked): MPUSH's
                // client throws after re-arming the request, and its timer answers 408.
                return std::future::pending().await;
            };
            let port = uri.port_u16().unwrap_or(80);
            // NettyHttpClient: `set(HOST, host)` (no port), `set(CONNECTION, keep-alive)`.
            set_header(&mut headers, "host", host);
            set_header(&mut headers, "connection", "keep-alive");
            let mut stream = match self.connect(host, port, trusted).await {
                Ok(s) => s,
                Err(ConnectFailure::Denied(addrs)) => {
                    tracing::info!(uri = %url, ?addrs, "http proxy: host resolves to private addresses only, 403");
                    return error(StatusCode::FORBIDDEN);
                }
                Err(ConnectFailure::Io(e)) => {
                    tracing::info!(uri = %url, error = %e, "http proxy: cannot connect");
                    return ProxyOutcome::Error { status: 504, reason: "Gateway Timeout" };
                }
            };
            if redirects > 0 && !body.is_empty() {
                // netty released the body with the first request; writing it again fails.
                return ProxyOutcome::Error { status: 503, reason: "Service Unavailable" };
            }
            let target = http1::netty_target(&url);
            let req = http1::Request { method: method.as_str(), target: &target, headers: &headers, body: &body };
            let resp = match http1::exchange(&mut stream, &req, self.config.max_content_length).await {
                Ok(r) => r,
                Err(http1::Failure::Write(e)) => {
                    tracing::info!(uri = %url, error = %e, "http proxy: write failed");
                    return ProxyOutcome::Error { status: 503, reason: "Service Unavailable" };
                }
                Err(http1::Failure::Read(e)) => {
                    tracing::info!(uri = %url, error = %e, "http proxy: upstream failed");
                    return error(StatusCode::BAD_GATEWAY);
                }
                Err(http1::Failure::NoResponse) => return std::future::pending().await,
            };
            if is_redirect(resp.status) {
                // `redirectCount++ < 5`: the count grows even when it says no.
                let follow = redirects < self.config.max_redirects;
                redirects = redirects.saturating_add(1);
                if follow {
                    // No Location, or one URLDecoder rejects: MPUSH's handler throws with the
                    // request already marked done; nothing is ever sent.
                    let Some(location) = resp.header("location").and_then(java::url_decode) else {
                        tracing::info!(uri = %url, "http proxy: redirect without usable Location, no answer (as MPUSH)");
                        return ProxyOutcome::NoResponse;
                    };
                    let Some(next) = redirect_target(uri, &location) else { return ProxyOutcome::NoResponse };
                    let same_origin = next.parse::<Uri>().is_ok_and(|n| {
                        n.host().is_some_and(|h| h.eq_ignore_ascii_case(host)) && n.port_u16().unwrap_or(80) == port
                    });
                    if !same_origin {
                        // Another host or port (an absolute or scheme-relative Location): on
                        // the allowlist again, no longer a trusted mapping target, and
                        // (gateway-specific) the client's credentials stay behind.
                        let allowed = next.parse::<Uri>().is_ok_and(|u| self.is_allowed(&u));
                        if !allowed {
                            tracing::info!(uri = %next, "http proxy: redirect target not allowlisted");
                            return error(StatusCode::FORBIDDEN);
                        }
                        trusted = false;
                        headers.retain(|(k, _)| {
                            !k.eq_ignore_ascii_case("authorization") && !k.eq_ignore_ascii_case("cookie")
                        });
                    }
                    url = next;
                    continue;
                }
            }
            return ProxyOutcome::Response(client_response(resp));
        }
    }
}

/// `java.net.URL.getPath()`: the path as written, empty when there is none.
fn java_url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]);
    rest.split(['?', '#']).next().unwrap_or_default()
}

/// netty's `headers().set`: every header of that name (any case) removed, the new one last.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_owned()));
}

fn is_absolute(location: &str) -> bool {
    let l = location.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// The next URL for a (URL-decoded) `Location`: an absolute `http(s)://` one as is, as
/// netty takes it; anything else resolved against the current URL as RFC 3986 says
/// (`Url::join`: `c` from `/a/b` is `/a/c`, `../c` climbs, `//h/p` is another host, `?q`
/// keeps the path). Gateway-specific: netty appends a relative location to the current path
/// instead (`/a/b/c`), which is not what any server sending one means. The base is written as
/// `http://host:port` because the scheme is not looked at (plain HTTP to port 80 unless the
/// URL names one), and `url` would otherwise drop an explicit `:443` of an `https` URL.
/// `None` for a location that does not resolve, or resolves to another scheme.
fn redirect_target(current: &Uri, location: &str) -> Option<String> {
    if is_absolute(location) {
        return Some(location.to_owned());
    }
    let host = current.host()?;
    let port = current.port_u16().unwrap_or(80);
    let path = current.path_and_query().map_or("/", |p| p.as_str());
    let base = url::Url::parse(&format!("http://{host}:{port}{path}")).ok()?;
    let next = base.join(location).ok()?;
    matches!(next.scheme(), "http" | "https").then(|| next.into())
}

/// Addresses a client's request must not reach when `deny-private-addresses` is on: the
/// gateway's own host and networks (loopback, RFC 1918, CGNAT, link-local: cloud metadata
/// at 169.254.169.254, IPv6 unique-local and link-local), addresses that mean "this host"
/// (unspecified), multicast and broadcast, and ranges reserved for documentation,
/// benchmarking or future use. IPv4 inside IPv6 (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the IPv4 address it
/// carries; Teredo and local-use NAT64 tunnels are refused outright.
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                   // "this network", 0.0.0.0
        || a == 10                           // RFC 1918
        || a == 127                          // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT shared space
        || (a == 169 && b == 254)            // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // RFC 1918
        || (a == 192 && b == 0 && c == 0)    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)    // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast
        || (a == 192 && b == 168)            // RFC 1918
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)  // TEST-NET-3
        || a >= 224 // multicast, reserved, broadcast
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d.
        return ip.is_unspecified() || ip.is_loopback() || is_private_v4(embedded_v4(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_private_v4(embedded_v4(s[6], s[7])); // NAT64 well-known prefix
    }
    if s[0] == 0x2002 {
        return is_private_v4(embedded_v4(s[1], s[2])); // 6to4
    }
    (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64, 64:ff9b:1::/48
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only, 100::/64
        || (s[0] == 0x2001 && s[1] == 0)           // Teredo, 2001::/32
        || (s[0] == 0x2001 && s[1] == 0xdb8)       // documentation
        || (s[0] & 0xfe00) == 0xfc00               // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80               // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0               // site-local (deprecated), fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
}

/// Why the proxy made no connection.
#[derive(Debug)]
enum ConnectFailure {
    /// Every address the host resolved to is private (`deny-private-addresses`): 403.
    Denied(Vec<SocketAddr>),
    /// Unresolvable, refused or timed out: 504, as MPUSH.
    Io(std::io::Error),
}

/// The HttpResponse MPUSH builds: status, reason, the headers put into a Java `HashMap` (then
/// its `content-length` for a non-empty body), the body.
fn client_response(r: http1::Response) -> HttpResponse {
    let mut entries = r.headers;
    if !r.body.is_empty() {
        entries.push(("content-length".into(), r.body.len().to_string()));
    }
    HttpResponse {
        status_code: i32::from(r.status),
        reason_phrase: Some(r.reason),
        headers: java::hash_map(entries),
        body: r.body,
    }
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
        // Without a port: the default port only (80, also for https://).
        assert!(p.is_allowed(&"http://API.internal/x".parse().unwrap()));
        assert!(p.is_allowed(&"http://api.internal:80/x".parse().unwrap()));
        assert!(p.is_allowed(&"https://api.internal/x".parse().unwrap()));
        assert!(!p.is_allowed(&"http://API.internal:9999/x".parse().unwrap()));
        assert!(!p.is_allowed(&"http://api.internal:443/x".parse().unwrap()));
        assert!(p.is_allowed(&"http://127.0.0.1:8080/".parse().unwrap()));
        assert!(!p.is_allowed(&"http://127.0.0.1:8081/".parse().unwrap()));
        assert!(!p.is_allowed(&"http://127.0.0.1/".parse().unwrap()));
        assert!(!p.is_allowed(&"http://evil.example/".parse().unwrap()));
        assert!(proxy(&["example.org:80"]).is_allowed(&"http://example.org/".parse().unwrap()));
    }

    #[test]
    fn redirect_targets_resolve_as_rfc_3986() {
        let base: Uri = "http://h:1/a/b?q".parse().unwrap();
        let t = |loc: &str| redirect_target(&base, loc);
        assert_eq!(t("/c").as_deref(), Some("http://h:1/c"));
        assert_eq!(t("c?x=1").as_deref(), Some("http://h:1/a/c?x=1"));
        assert_eq!(t("../c").as_deref(), Some("http://h:1/c"));
        assert_eq!(t("../../../../c").as_deref(), Some("http://h:1/c"));
        assert_eq!(t("?y").as_deref(), Some("http://h:1/a/b?y"));
        // Scheme-relative: another host (the caller checks the allowlist again).
        assert_eq!(t("//x/y").as_deref(), Some("http://x/y"));
        assert_eq!(t("//x:8/y").as_deref(), Some("http://x:8/y"));
        // Absolute http(s) locations are taken as they are written.
        assert_eq!(t("HTTPS://z/").as_deref(), Some("HTTPS://z/"));
        assert_eq!(t("javascript:alert(1)"), None);
        let no_port: Uri = "http://h/dir/".parse().unwrap();
        assert_eq!(redirect_target(&no_port, "c").as_deref(), Some("http://h/dir/c"));
        // An explicit :443 of an https URL stays (the scheme means nothing here).
        let tls: Uri = "https://h:443/p/q".parse().unwrap();
        assert_eq!(redirect_target(&tls, "r").as_deref(), Some("http://h:443/p/r"));
        let no_path: Uri = "http://h:2".parse().unwrap();
        assert_eq!(redirect_target(&no_path, "c").as_deref(), Some("http://h:2/c"));
        let v6: Uri = "http://[::1]:9/a".parse().unwrap();
        assert_eq!(redirect_target(&v6, "b").as_deref(), Some("http://[::1]:9/b"));
    }

    #[test]
    fn private_addresses() {
        let private = |s: &str| is_private_address(s.parse().unwrap());
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(private(ip), "{ip} is private");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
            "2606:4700:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(!private(ip), "{ip} is public");
        }
    }

    #[test]
    fn dns_mapping_rewrites_the_url_as_mpush() {
        let mut c = HttpProxyConfig::default();
        c.dns_mapping.insert("api.test".into(), vec!["10.0.0.7:8080".into()]);
        c.dns_mapping.insert("plain.test".into(), vec!["10.0.0.8".into()]);
        let p = HttpProxy::new(c);
        let m = |u: &str| p.map_url(u, &u.parse().unwrap()).unwrap_or_else(|| u.to_owned());
        assert_eq!(m("http://api.test/v1/x?y=1#f"), "http://10.0.0.7:8080/v1/x?y=1");
        assert_eq!(m("http://api.test"), "http://10.0.0.7:8080");
        assert_eq!(m("http://plain.test:9/p"), "http://10.0.0.8:80/p");
        assert_eq!(m("http://other.test/p"), "http://other.test/p");
        assert_eq!(java_url_path("http://h?x=/y"), "");
    }

    #[test]
    fn java_addresses() {
        assert_eq!(java_host_address("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(java_host_address("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(java_host_address("::1".parse().unwrap()), "0:0:0:0:0:0:0:1");
    }

    #[tokio::test]
    async fn refused_and_invalid_requests_get_generated_statuses() {
        let p = proxy(&["127.0.0.1:1", "localhost"]);
        let peer = SocketAddr::from(([127, 0, 0, 1], 5));
        let req = |uri: &str| HttpRequest { method: HttpMethod::Get, uri: uri.into(), headers: vec![], body: vec![] };
        let status = |o: ProxyOutcome| match o {
            ProxyOutcome::Error { status, .. } => status,
            ProxyOutcome::Response(r) => r.status_code,
            ProxyOutcome::NoResponse => 0,
        };
        // Not a URI with a host: MPUSH's handler throws, 502.
        assert_eq!(status(p.perform(req(" "), peer).await), 502);
        assert_eq!(status(p.perform(req("foo"), peer).await), 502);
        assert_eq!(status(p.perform(req("http://h/a b"), peer).await), 502);
        assert_eq!(status(p.perform(req("http://169.254.169.254/"), peer).await), 403);
        // Port 1 on loopback refuses connections; https:// is plain HTTP to the same port.
        assert_eq!(status(p.perform(req("http://127.0.0.1:1/"), peer).await), 504);
        assert_eq!(status(p.perform(req("https://127.0.0.1:1/"), peer).await), 504);
    }
}
