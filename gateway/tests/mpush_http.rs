//! The HTTP proxy over real sockets as MPUSH 0.8.0 answers it, against a scripted upstream
//! that writes raw responses: what the client gets (upstream header case, reason phrase, the
//! Java HashMap order MPUSH carries headers in, redirects followed with the method kept (a
//! relative Location resolved as RFC 3986 says, a gateway-specific difference), the
//! 6th 3xx answered, 503 for a redirected body, never an answer to a 3xx without Location,
//! 408 for an upstream that hangs up) and what the upstream sees (absolute-form target,
//! headers in MPUSH's order, `host` without port).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start, RawClient, WAIT};
use mpush_native_client::NativeClient;
use mpush_protocol::message::Message;
use mpush_protocol::{ClientEvent, Command, HttpMethod, HttpRequest, HttpResponse, RequestError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A request as the upstream read it off the wire.
#[derive(Debug)]
struct RawRequest {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An upstream that answers each request with `script(path)`'s raw bytes, then closes (an
/// empty script closes without answering).
async fn raw_upstream(script: fn(&str, u16) -> Vec<u8>) -> (SocketAddr, mpsc::UnboundedReceiver<RawRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(req) = read_request(stream, script, addr.port()).await {
                    let _ = tx.send(req);
                }
            });
        }
    });
    (addr, rx)
}

async fn read_request(mut stream: TcpStream, script: fn(&str, u16) -> Vec<u8>, port: u16) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_owned(), v.to_owned()))).collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse::<usize>().unwrap_or(0));
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let path = path
        .split_once("://")
        .map_or(path.clone(), |(_, rest)| rest.find('/').map_or("/".into(), |i| rest[i..].to_owned()));
    let out = script(&path, port);
    if !out.is_empty() {
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
    Some(RawRequest { line, headers, body })
}

fn script(path: &str, port: u16) -> Vec<u8> {
    let redirect = |status: &str, to: &str| format!("HTTP/1.1 {status}\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
    let s = match path {
        "/ok" => "HTTP/1.1 200 Okay Dokay\r\nServer: S\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\nhello".to_owned(),
        "/chunked" => "HTTP/1.1 201\r\nTransfer-Encoding: chunked\r\nX-Mixed-Case: v\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_owned(),
        "/dup" => "HTTP/1.1 200 OK\r\nX-Dup: a\r\nX-Dup: b\r\nx-dup: c\r\nContent-Length: 2\r\n\r\nhi".to_owned(),
        p if p.starts_with("/r/") => {
            let n: u32 = p[3..].parse().unwrap_or(0);
            let to = if n > 1 { format!("/r/{}", n - 1) } else { "/ok".to_owned() };
            redirect(if n % 2 == 1 { "307 Temporary Redirect" } else { "302 Found" }, &to)
        }
        "/absolute" => redirect("301 Moved Permanently", &format!("http://127.0.0.1:{port}/ok")),
        "/dir/rel" => redirect("302 Found", "sub?x=1"),
        "/s308" => redirect("308 Permanent Redirect", "/ok"),
        "/noloc" => "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "/garbage" => "NOT HTTP AT ALL\r\n\r\n".to_owned(),
        "/hangup" => String::new(),
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
    };
    s.into_bytes()
}

async fn fetch(c: &mut NativeClient, req: HttpRequest) -> Result<HttpResponse, RequestError> {
    let id = c.http_request(req).await.expect("request");
    let ev = c
        .wait_for(|e| {
            matches!(e, ClientEvent::HttpResponse { request, .. } | ClientEvent::RequestFailed { request, .. } if *request == id)
        })
        .await
        .expect("an answer or a client timeout");
    match ev {
        ClientEvent::HttpResponse { response, .. } => Ok(response),
        ClientEvent::RequestFailed { error, .. } => Err(error),
        _ => unreachable!(),
    }
}

fn get(uri: String) -> HttpRequest {
    HttpRequest { method: HttpMethod::Get, uri, headers: vec![], body: vec![] }
}

fn pairs(h: &[(&str, &str)]) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn responses_and_requests_as_mpush_carries_them() {
    let (up, mut seen) = raw_upstream(script).await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port())];
    })
    .await;
    let mut c = gw.connect("dev-mpush-http").await;
    let local = c.local_addr().expect("local addr");

    // The upstream's reason phrase and header names; MPUSH's HashMap order, with its own
    // lower-case content-length beside the upstream's.
    let mut req = get(format!("http://127.0.0.1:{}/ok", up.port()));
    req.headers = pairs(&[("X-Custom", "1"), ("Accept", "text/plain"), ("readTimeout", "5000")]);
    let r = fetch(&mut c, req).await.expect("response");
    assert_eq!(
        (r.status_code, r.reason_phrase.as_deref(), r.body.as_slice()),
        (200, Some("Okay Dokay"), &b"hello"[..])
    );
    assert_eq!(
        r.headers,
        pairs(&[
            ("content-length", "5"),
            ("Server", "S"),
            ("Connection", "keep-alive"),
            ("Content-Length", "5"),
            ("X-A", "1"),
            ("Date", "D"),
            ("Content-Type", "text/plain"),
        ])
    );
    // The upstream saw the absolute URI and MPUSH's headers: the client's (HashMap order,
    // readTimeout consumed), x-forwarded-*, then host without port and keep-alive.
    let s = seen.recv().await.expect("seen");
    assert_eq!(s.line, format!("GET http://127.0.0.1:{}/ok HTTP/1.1", up.port()));
    assert_eq!(
        s.headers,
        pairs(&[
            ("Accept", "text/plain"),
            ("X-Custom", "1"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-port", &local.port().to_string()),
            ("host", "127.0.0.1"),
            ("connection", "keep-alive"),
        ])
    );

    // Chunked: Transfer-Encoding gone, content-length added; no reason phrase reads as none.
    let r = fetch(&mut c, get(format!("http://127.0.0.1:{}/chunked", up.port()))).await.expect("response");
    assert_eq!((r.status_code, r.reason_phrase, r.body.as_slice()), (201, None, &b"hello"[..]));
    assert_eq!(r.headers, pairs(&[("content-length", "5"), ("X-Mixed-Case", "v")]));

    // Repeated names: the last value of each exact name.
    let r = fetch(&mut c, get(format!("http://127.0.0.1:{}/dup", up.port()))).await.expect("response");
    assert_eq!(r.headers, pairs(&[("content-length", "2"), ("X-Dup", "b"), ("x-dup", "c"), ("Content-Length", "2")]));

    // What netty cannot read as a status line: 999 "Unknown".
    let r = fetch(&mut c, get(format!("http://127.0.0.1:{}/garbage", up.port()))).await.expect("response");
    assert_eq!((r.status_code, r.reason_phrase.as_deref(), r.headers.len()), (999, Some("Unknown"), 0));

    // A body goes with MPUSH's content-length.
    let post = HttpRequest {
        method: HttpMethod::Post,
        uri: format!("http://127.0.0.1:{}/ok", up.port()),
        headers: vec![],
        body: b"payload".to_vec(),
    };
    assert_eq!(fetch(&mut c, post).await.expect("response").status_code, 200);
    let s = loop {
        let s = seen.recv().await.expect("seen");
        if s.line.starts_with("POST") {
            break s;
        }
    };
    assert_eq!((s.header("content-length"), s.body.as_slice()), (Some("7"), &b"payload"[..]));

    // https:// is plain HTTP to the given port.
    let r = fetch(&mut c, get(format!("https://127.0.0.1:{}/ok", up.port()))).await.expect("response");
    assert_eq!(r.status_code, 200);
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn redirects_as_mpush_follows_them() {
    let (up, mut seen) = raw_upstream(script).await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port())];
    })
    .await;
    let mut c = gw.connect("dev-redirects").await;
    let base = format!("http://127.0.0.1:{}", up.port());

    // Five redirects are followed...
    let r = fetch(&mut c, get(format!("{base}/r/5"))).await.expect("response");
    assert_eq!((r.status_code, r.body.as_slice()), (200, &b"hello"[..]));
    // ...the sixth 3xx is the answer itself.
    let r = fetch(&mut c, get(format!("{base}/r/6"))).await.expect("response");
    assert_eq!(r.status_code, 307);
    assert!(r.headers.contains(&("Location".into(), "/ok".into())), "{:?}", r.headers);
    // 308 is not one MPUSH follows.
    let r = fetch(&mut c, get(format!("{base}/s308"))).await.expect("response");
    assert_eq!(r.status_code, 308);
    // Gateway-specific: a relative Location is resolved as RFC 3986 says (netty appends it
    // to the path: /dir/rel/sub); an absolute one is taken as is.
    let r = fetch(&mut c, get(format!("{base}/dir/rel"))).await.expect("response");
    assert_eq!(r.status_code, 404);
    let want = format!("GET {base}/dir/sub?x=1 HTTP/1.1");
    while seen.recv().await.expect("seen").line != want {}
    let r = fetch(&mut c, get(format!("{base}/absolute"))).await.expect("response");
    assert_eq!(r.status_code, 200);

    // The method is kept (a DELETE stays a DELETE)...
    let mut del = get(format!("{base}/r/1"));
    del.method = HttpMethod::Delete;
    assert_eq!(fetch(&mut c, del).await.expect("response").status_code, 200);
    let mut deletes = Vec::new();
    while deletes.len() < 2 {
        let line = seen.recv().await.expect("seen").line;
        if line.starts_with("DELETE") {
            deletes.push(line);
        }
    }
    deletes.sort();
    assert_eq!(deletes, [format!("DELETE {base}/ok HTTP/1.1"), format!("DELETE {base}/r/1 HTTP/1.1")]);
    // ...but a body cannot be sent twice: 503, raw.
    let post = HttpRequest {
        method: HttpMethod::Post,
        uri: format!("{base}/r/1"),
        headers: vec![],
        body: b"payload".to_vec(),
    };
    let r = fetch(&mut c, post).await.expect("response");
    assert_eq!((r.status_code, r.reason_phrase.as_deref()), (503, Some("Service Unavailable")));
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn what_mpush_never_answers_and_what_it_answers_late() {
    let (up, _seen) = raw_upstream(script).await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port())];
    })
    .await;
    let base = format!("http://127.0.0.1:{}", up.port());

    // A 3xx without Location: MPUSH throws with the request already marked done and never
    // answers (the client's own timeout is all it gets). Seen on the wire: nothing for this
    // request, while the next one is answered.
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-raw-http").await;
    for (sid, path) in [(5, "/noloc"), (6, "/ok")] {
        let req = HttpRequest {
            method: HttpMethod::Get,
            uri: format!("{base}{path}"),
            headers: pairs(&[("readTimeout", "1500")]),
            body: vec![],
        };
        raw.send_sealed(Command::HTTP_PROXY, sid, &req.encode()).await;
    }
    let p = raw.recv(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(p.session_id, 6, "only /ok is answered");
    let r = HttpResponse::decode(&raw.open(&p)).expect("response");
    assert_eq!(r.status_code, 200);
    assert!(raw.recv(Duration::from_millis(2500)).await.is_none(), "no 408 either, even after readTimeout");

    // An upstream that hangs up without answering: the read timeout answers 408, raw.
    let mut c = gw.connect("dev-late").await;
    let mut req = get(format!("{base}/hangup"));
    req.headers = pairs(&[("readTimeout", "500")]);
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(WAIT, fetch(&mut c, req)).await.expect("in time").expect("response");
    assert_eq!((r.status_code, r.reason_phrase.as_deref(), r.headers.len()), (408, Some("Request Timeout"), 0));
    assert!(started.elapsed() >= Duration::from_millis(450));
    gw.handle.shutdown().await;
}
