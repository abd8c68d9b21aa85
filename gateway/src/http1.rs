//! One HTTP/1.1 exchange for the HTTP proxy, written and read the way MPUSH 0.8.0's netty
//! client (`HttpRequestEncoder`, `HttpResponseDecoder`, `HttpObjectAggregator`) does it, down
//! to what a client can see: header names as the upstream wrote them, the upstream's own
//! reason phrase, and what netty makes of a response cut short.
//!
//! A general client (hyper) normalises exactly these things away, hence this small one; the
//! parsing itself is `httparse`'s.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// netty's `CONNECT_TIMEOUT_MILLIS` in MPUSH's HTTP client.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// A response head larger than this is garbage to netty (its line and header limits).
const MAX_HEAD: usize = 4096 + 8192;

/// What to send.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The request target as netty writes it (absolute form, see [`netty_target`]).
    pub(crate) target: &'a str,
    /// In wire order and case.
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
}

/// A response as netty's aggregator hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The upstream's reason phrase, possibly empty.
    pub(crate) reason: String,
    /// In wire order and case, adjusted as the aggregator adjusts them: `Transfer-Encoding:
    /// chunked` removed, `content-length` added when absent.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The first header called `name`, case-insensitively (netty's `headers().get`).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// What netty makes of a status line it cannot read: status 999 "Unknown", nothing else.
    fn invalid() -> Response {
        Response { status: 999, reason: "Unknown".into(), headers: vec![], body: vec![] }
    }
}

/// How an exchange failed, each as MPUSH answers it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Writing the request failed: 503 Service Unavailable.
    Write(io::Error),
    /// Reading failed, or the body passed the cap: 502 Bad Gateway.
    Read(String),
    /// The upstream closed before netty had a response to hand over: MPUSH sends nothing
    /// and its read timeout answers 408.
    NoResponse,
}

/// Connects as MPUSH's client does, giving up after [`CONNECT_TIMEOUT`] (then MPUSH answers
/// 504 Gateway Timeout, as for a refused or unresolvable host).
pub(crate) async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// netty's `HttpRequestEncoder` keeps an absolute URI as the request target, adding the `/`
/// it lacks before a query or at the end.
pub(crate) fn netty_target(uri: &str) -> String {
    if uri.is_empty() {
        return "/".into();
    }
    let Some(start) = uri.find("://").filter(|_| !uri.starts_with('/')) else { return uri.to_owned() };
    let from = start + 3;
    match uri[from..].find('?').map(|q| q + from) {
        None if uri.rfind('/').is_none_or(|s| s < from) => format!("{uri}/"),
        Some(q) if uri[..q].rfind('/').is_none_or(|s| s < from) => format!("{}/{}", &uri[..q], &uri[q..]),
        _ => uri.to_owned(),
    }
}

/// Writes `req` on `stream` and reads the response.
pub(crate) async fn exchange(stream: &mut TcpStream, req: &Request<'_>, max_body: usize) -> Result<Response, Failure> {
    let mut out = Vec::with_capacity(256 + req.body.len());
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", req.method, req.target).as_bytes());
    for (k, v) in req.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
    stream.write_all(&out).await.map_err(Failure::Write)?;
    read_response(stream, max_body).await
}

/// Bytes in, as they arrive; `Ok(0)` is the end of the stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await.map_err(|e| Failure::Read(e.to_string()))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

enum Head {
    Complete { len: usize, status: u16, reason: String, headers: Vec<(String, String)> },
    Partial,
    Invalid,
}

fn parse_head(buf: &[u8]) -> Head {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Response::new(&mut slots);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Head::Complete {
            len,
            status: r.code.unwrap_or(999),
            reason: r.reason.unwrap_or_default().to_owned(),
            headers: r
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
                .collect(),
        },
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Invalid,
    }
}

/// The status line alone, when the stream ended inside the headers.
fn status_line(buf: &[u8]) -> Option<(u16, String)> {
    let end = buf.iter().position(|b| *b == b'\n')?;
    let mut line = buf[..end].to_vec();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line.extend_from_slice(b"\r\n\r\n");
    match parse_head(&line) {
        Head::Complete { status, reason, .. } => Some((status, reason)),
        _ => None,
    }
}

async fn read_response(stream: &mut TcpStream, max_body: usize) -> Result<Response, Failure> {
    let mut buf = Vec::new();
    let (len, status, reason, mut headers) = loop {
        match parse_head(&buf) {
            Head::Complete { len, status, reason, headers } => break (len, status, reason, headers),
            Head::Invalid => return Ok(Response::invalid()),
            Head::Partial if buf.len() > MAX_HEAD => return Ok(Response::invalid()),
            Head::Partial => {}
        }
        if fill(stream, &mut buf).await? == 0 {
            // netty hands over the status it read with no headers and no body; before a whole
            // status line it has nothing.
            return match status_line(&buf) {
                Some((status, reason)) => Ok(aggregate(status, reason, vec![], vec![])),
                None => Err(Failure::NoResponse),
            };
        }
    };
    buf.drain(..len);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let content_length = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v);
    let body = if status / 100 == 1 || status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        read_chunked(stream, buf, max_body).await?
    } else if let Some(cl) = content_length {
        let n: usize = cl.parse().map_err(|_| Failure::Read(format!("bad content-length {cl:?}")))?;
        if n > max_body {
            return Err(Failure::Read(format!("response entity too large: {n} bytes")));
        }
        while buf.len() < n {
            if fill(stream, &mut buf).await? == 0 {
                // netty's aggregator never completes a short fixed-length body.
                return Err(Failure::NoResponse);
            }
        }
        buf.truncate(n);
        buf
    } else {
        // Delimited by the end of the stream.
        while fill(stream, &mut buf).await? > 0 {
            if buf.len() > max_body {
                return Err(Failure::Read("response entity too large".into()));
            }
        }
        buf
    };
    if body.len() > max_body {
        return Err(Failure::Read("response entity too large".into()));
    }
    if chunked {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
    }
    Ok(aggregate(status, reason, headers, body))
}

/// netty's aggregator adds `content-length` when the response has none.
fn aggregate(status: u16, reason: String, mut headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    Response { status, reason, headers, body }
}

/// A chunked body; a stream that ends inside it yields what arrived, as netty's aggregator
/// finishes a prematurely closed chunked message.
async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>, max_body: usize) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        // The size line.
        let line_end = loop {
            if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                break i;
            }
            if fill(stream, &mut buf).await? == 0 {
                return Ok(body);
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        buf.drain(..=line_end);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| Failure::Read(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            return Ok(body);
        }
        if body.len().saturating_add(size) > max_body {
            return Err(Failure::Read("response entity too large".into()));
        }
        let mut left = size;
        loop {
            let take = left.min(buf.len());
            body.extend(buf.drain(..take));
            left -= take;
            if left == 0 {
                break;
            }
            if fill(stream, &mut buf).await? == 0 {
                return Ok(body);
            }
        }
        // The CRLF after the data.
        while buf.len() < 2 {
            if fill(stream, &mut buf).await? == 0 {
                return Ok(body);
            }
        }
        buf.drain(..2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_as_netty_writes_them() {
        assert_eq!(netty_target("http://h:1"), "http://h:1/");
        assert_eq!(netty_target("http://h:1?x=1"), "http://h:1/?x=1");
        assert_eq!(netty_target("http://h/a?x=/"), "http://h/a?x=/");
        assert_eq!(netty_target("http://h/a/b"), "http://h/a/b");
        assert_eq!(netty_target("/rel"), "/rel");
        assert_eq!(netty_target(""), "/");
    }

    #[test]
    fn heads() {
        assert!(matches!(parse_head(b"NOT HTTP AT ALL\r\n\r\n"), Head::Invalid));
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"), Head::Partial));
        assert_eq!(status_line(b"HTTP/1.1 201 \r\nX-A"), Some((201, String::new())));
        assert_eq!(status_line(b"HTTP/1.1 200 Fine Thanks\r\n"), Some((200, "Fine Thanks".into())));
        assert_eq!(status_line(b"HTTP/1.1 20"), None);
        let Head::Complete { headers, reason, .. } =
            parse_head(b"HTTP/1.1 200 Okay Dokay\r\nX-Mixed-Case:  v \r\n\r\n")
        else {
            panic!()
        };
        assert_eq!((reason.as_str(), headers), ("Okay Dokay", vec![("X-Mixed-Case".into(), "v".into())]));
    }
}
