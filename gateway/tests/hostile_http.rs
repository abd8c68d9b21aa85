//! A hostile client against the HTTP proxy's gateway-specific bounds, over real sockets on
//! 127.0.0.1: the per-connection cap on requests in flight (one more is answered at once with
//! a raw 503), the cap on `readTimeout`, and requests aborted when their client goes away.
//! Also: an allowlist entry without a port allows the default port only, Authorization and
//! Cookie are dropped on a redirect to another host, `deny-private-addresses` refuses a name
//! that resolves to loopback (and trusts `dns-mapping` targets), and redirect Locations are
//! resolved as RFC 3986 says. The upstreams are raw listeners.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{start, RawClient, WAIT};
use mpush_protocol::message::Message;
use mpush_protocol::{Command, Flags, HttpMethod, HttpRequest, HttpResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the silent upstream saw of one connection.
#[derive(Debug)]
enum Upstream {
    /// A request head arrived.
    Request,
    /// The gateway closed the connection.
    Closed,
}

/// An upstream that reads requests and never answers; it reports each request head and each
/// connection the gateway closes.
async fn silent_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Upstream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut reported = false;
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => {
                            seen.extend_from_slice(&chunk[..n]);
                            if !reported && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                reported = true;
                                let _ = tx.send(Upstream::Request);
                            }
                        }
                        _ => break,
                    }
                }
                let _ = tx.send(Upstream::Closed);
            });
        }
    });
    (addr, rx)
}

fn request(uri: String, read_timeout: &str) -> HttpRequest {
    HttpRequest {
        method: HttpMethod::Get,
        uri,
        headers: vec![("readTimeout".to_owned(), read_timeout.to_owned())],
        body: vec![],
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Upstream>) -> Upstream {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("upstream in time").expect("upstream running")
}

#[tokio::test]
async fn one_request_over_max_in_flight_gets_an_immediate_raw_503() {
    let (up, mut seen) = silent_upstream().await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port())];
        c.http.max_in_flight = 2;
        // The two requests the upstream never answers are in-flight work a stopping gateway
        // waits for: not for long here.
        c.drain_timeout = 200;
    })
    .await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-flood").await;
    let uri = format!("http://127.0.0.1:{}/slow", up.port());
    for sid in [5, 6] {
        raw.send_sealed(Command::HTTP_PROXY, sid, &request(uri.clone(), "20000").encode()).await;
    }
    // Both are under way at the upstream before the third is sent.
    for _ in 0..2 {
        assert!(matches!(next(&mut seen).await, Upstream::Request));
    }
    let started = tokio::time::Instant::now();
    raw.send_sealed(Command::HTTP_PROXY, 7, &request(uri.clone(), "20000").encode()).await;
    let p = raw.recv(Duration::from_secs(5)).await.expect("an answer to the third request");
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once");
    assert_eq!((p.cmd, p.session_id), (Command::HTTP_PROXY, 7));
    assert!(!p.flags.contains(Flags::CRYPTO), "generated statuses go out raw, as MPUSH's 502/504");
    let r = HttpResponse::decode(&raw.open(&p)).expect("response");
    assert_eq!(
        (r.status_code, r.reason_phrase.as_deref(), r.headers.len(), r.body.len()),
        (503, Some("Service Unavailable"), 0, 0)
    );
    // The third never reached the upstream; the first two are still pending.
    assert!(tokio::time::timeout(Duration::from_millis(300), seen.recv()).await.is_err());
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn a_huge_read_timeout_is_clamped_to_max_read_timeout() {
    let (up, mut seen) = silent_upstream().await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port())];
        c.http.max_read_timeout = 400;
    })
    .await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-patient").await;
    let started = tokio::time::Instant::now();
    let req = request(format!("http://127.0.0.1:{}/slow", up.port()), "2000000000");
    raw.send_sealed(Command::HTTP_PROXY, 5, &req.encode()).await;
    let p = raw.recv(Duration::from_secs(10)).await.expect("a 408 long before the asked 23 days");
    let elapsed = started.elapsed();
    let r = HttpResponse::decode(&raw.open(&p)).expect("response");
    assert_eq!((p.session_id, r.status_code, r.reason_phrase.as_deref()), (5, 408, Some("Request Timeout")));
    assert!(elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(matches!(next(&mut seen).await, Upstream::Request));
    // The timed-out exchange's upstream socket is closed, not left open.
    assert!(matches!(next(&mut seen).await, Upstream::Closed));
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn requests_in_flight_are_aborted_when_their_client_disconnects() {
    let (up, mut seen) = silent_upstream().await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port())];
    })
    .await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-leaver").await;
    let req = request(format!("http://127.0.0.1:{}/slow", up.port()), "25000");
    raw.send_sealed(Command::HTTP_PROXY, 5, &req.encode()).await;
    assert!(matches!(next(&mut seen).await, Upstream::Request));
    let started = tokio::time::Instant::now();
    drop(raw);
    let closed = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await;
    assert!(matches!(closed, Ok(Some(Upstream::Closed))), "upstream closed soon after the client left: {closed:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.handle.shutdown().await;
}

/// A request head as a recording upstream read it: target and headers (names lowercased).
#[derive(Debug)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k == name)
    }
}

/// An upstream on `ip` that records each request head and answers it with `respond(target)`.
async fn recording_upstream(
    ip: &str,
    respond: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (tx, respond) = (tx.clone(), respond.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut lines = head.split("\r\n");
                let target = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or_default().to_owned();
                let headers = lines
                    .filter_map(|l| {
                        l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    })
                    .collect();
                let _ = stream.write_all(respond(&target).as_bytes()).await;
                let _ = stream.shutdown().await;
                let _ = tx.send(Seen { target, headers });
            });
        }
    });
    (addr, rx)
}

async fn answer(raw: &mut RawClient, sid: i32) -> HttpResponse {
    let p = raw.recv(WAIT).await.expect("an answer");
    assert_eq!(p.session_id, sid);
    HttpResponse::decode(&raw.open(&p)).expect("response")
}

#[tokio::test]
async fn an_allowlist_entry_without_a_port_allows_the_default_port_only() {
    let (up, mut seen) = silent_upstream().await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec!["127.0.0.1".into()];
    })
    .await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-port").await;
    let req = request(format!("http://127.0.0.1:{}/", up.port()), "2000");
    raw.send_sealed(Command::HTTP_PROXY, 5, &req.encode()).await;
    let r = answer(&mut raw, 5).await;
    assert_eq!((r.status_code, r.reason_phrase.as_deref()), (403, Some("Forbidden")));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.recv()).await.is_err(),
        "nothing reached the upstream"
    );
    gw.handle.shutdown().await;
}

#[tokio::test]
async fn credentials_are_dropped_on_a_redirect_to_another_host_only() {
    let ok = || "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned();
    let (other, mut other_seen) = recording_upstream("127.0.0.2", move |_| ok()).await;
    let (up, mut up_seen) = recording_upstream("127.0.0.1", move |target| {
        let to = if target.ends_with("/to-other") {
            format!("http://127.0.0.2:{}/landed", other.port())
        } else if target.ends_with("/to-same") {
            "/landed".to_owned()
        } else {
            return ok();
        };
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
    })
    .await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port()), format!("127.0.0.2:{}", other.port())];
    })
    .await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-creds").await;
    let with_credentials = |path: &str| HttpRequest {
        method: HttpMethod::Get,
        uri: format!("http://127.0.0.1:{}{path}", up.port()),
        headers: vec![
            ("Authorization".to_owned(), "Bearer secret".to_owned()),
            ("Cookie".to_owned(), "sid=secret".to_owned()),
            ("X-Other".to_owned(), "kept".to_owned()),
        ],
        body: vec![],
    };

    // Another host: the first hop gets the credentials, the second does not.
    raw.send_sealed(Command::HTTP_PROXY, 5, &with_credentials("/to-other").encode()).await;
    assert_eq!(answer(&mut raw, 5).await.status_code, 200);
    let first = tokio::time::timeout(WAIT, up_seen.recv()).await.expect("in time").expect("first hop");
    assert!(first.has("authorization") && first.has("cookie"), "{first:?}");
    let landed = tokio::time::timeout(WAIT, other_seen.recv()).await.expect("in time").expect("second hop");
    assert!(landed.target.ends_with("/landed"), "{landed:?}");
    assert!(!landed.has("authorization") && !landed.has("cookie"), "{landed:?}");
    assert!(landed.has("x-other"), "other headers follow the redirect: {landed:?}");

    // The same host: they follow the redirect, as MPUSH.
    raw.send_sealed(Command::HTTP_PROXY, 6, &with_credentials("/to-same").encode()).await;
    assert_eq!(answer(&mut raw, 6).await.status_code, 200);
    for _ in 0..2 {
        let hop = tokio::time::timeout(WAIT, up_seen.recv()).await.expect("in time").expect("hop");
        assert!(hop.has("authorization") && hop.has("cookie"), "{hop:?}");
    }
    gw.handle.shutdown().await;
}

fn get(uri: String) -> HttpRequest {
    HttpRequest { method: HttpMethod::Get, uri, headers: vec![], body: vec![] }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_only_with_the_private_address_check() {
    let ok = || "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned();
    let (up, mut seen) = recording_upstream("127.0.0.1", move |_| ok()).await;
    let port = up.port();
    let allow = vec![format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("mapped.test:{port}")];
    for deny in [true, false] {
        let allow = allow.clone();
        let gw = start(move |c| {
            c.http.proxy_enabled = true;
            c.http.allow = allow;
            c.http.deny_private_addresses = deny;
            c.http.dns_mapping.insert("mapped.test".into(), vec![format!("127.0.0.1:{port}")]);
        })
        .await;
        let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
        raw.handshake(&gw.public_key(), "dev-private").await;
        // "localhost" resolves to loopback (127.0.0.1, perhaps ::1 too).
        raw.send_sealed(Command::HTTP_PROXY, 5, &get(format!("http://localhost:{port}/by-name")).encode()).await;
        let r = answer(&mut raw, 5).await;
        // An IP literal is checked the same way.
        raw.send_sealed(Command::HTTP_PROXY, 6, &get(format!("http://127.0.0.1:{port}/by-ip")).encode()).await;
        let literal = answer(&mut raw, 6).await;
        if deny {
            assert_eq!((r.status_code, r.reason_phrase.as_deref()), (403, Some("Forbidden")));
            assert_eq!(literal.status_code, 403);
        } else {
            assert_eq!((r.status_code, r.body.as_slice()), (200, &b"ok"[..]));
            assert_eq!(literal.status_code, 200);
            for path in ["/by-name", "/by-ip"] {
                let hop = tokio::time::timeout(WAIT, seen.recv()).await.expect("in time").expect("request");
                assert!(hop.target.ends_with(path), "{hop:?}");
            }
        }
        // A dns-mapping target is trusted configuration: reached either way.
        raw.send_sealed(Command::HTTP_PROXY, 7, &get(format!("http://mapped.test:{port}/mapped")).encode()).await;
        assert_eq!(answer(&mut raw, 7).await.status_code, 200);
        let hop = tokio::time::timeout(WAIT, seen.recv()).await.expect("in time").expect("mapped request");
        assert!(hop.target.ends_with("/mapped"), "{hop:?}");
        // With the check on, nothing but the mapped request reached the upstream.
        assert!(tokio::time::timeout(Duration::from_millis(200), seen.recv()).await.is_err());
        gw.handle.shutdown().await;
    }
}

#[tokio::test]
async fn redirect_locations_resolve_as_rfc_3986() {
    let ok = || "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned();
    let (other, mut other_seen) = recording_upstream("127.0.0.2", move |_| ok()).await;
    let (up, mut seen) = recording_upstream("127.0.0.1", move |target| {
        let path = target.split_once("://").and_then(|(_, r)| r.find('/').map(|i| &r[i..])).unwrap_or(target);
        let to = match path {
            "/a/b/relative" => "c?x=1".to_owned(),
            "/a/b/dots" => "../../up".to_owned(),
            "/a/b/rooted" => "/rooted-landed".to_owned(),
            "/a/b/absolute" => format!("http://127.0.0.2:{}/abs-landed", other.port()),
            "/a/b/scheme-relative" => format!("//127.0.0.2:{}/sr-landed", other.port()),
            "/a/b/scheme-relative-unlisted" => "//127.0.0.3:1/nope".to_owned(),
            _ => return ok(),
        };
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
    })
    .await;
    let gw = start(|c| {
        c.http.proxy_enabled = true;
        c.http.allow = vec![format!("127.0.0.1:{}", up.port()), format!("127.0.0.2:{}", other.port())];
    })
    .await;
    let mut raw = RawClient::connect(gw.handle.mpush_addr()).await;
    raw.handshake(&gw.public_key(), "dev-locations").await;
    let base = format!("http://127.0.0.1:{}", up.port());
    let mut sid = 10;
    let mut follow = |path: &'static str| {
        sid += 1;
        (sid, get(format!("{base}/a/b/{path}")))
    };
    // (first path, where the second request lands: on `up` or on `other`)
    for (path, landed, on_other) in [
        // RFC 3986: the last segment is replaced (netty would append: /a/b/relative/c).
        ("relative", "/a/b/c?x=1", false),
        ("dots", "/up", false),
        ("rooted", "/rooted-landed", false),
        ("absolute", "/abs-landed", true),
        ("scheme-relative", "/sr-landed", true),
    ] {
        let (sid, req) = follow(path);
        raw.send_sealed(Command::HTTP_PROXY, sid, &req.encode()).await;
        assert_eq!(answer(&mut raw, sid).await.status_code, 200, "{path}");
        let first = tokio::time::timeout(WAIT, seen.recv()).await.expect("in time").expect("first hop");
        assert!(first.target.ends_with(&format!("/a/b/{path}")), "{first:?}");
        let rx = if on_other { &mut other_seen } else { &mut seen };
        let second = tokio::time::timeout(WAIT, rx.recv()).await.expect("in time").expect("second hop");
        assert!(second.target.ends_with(landed), "{path}: {second:?}");
    }
    // A scheme-relative Location naming a host off the allowlist: 403, as an absolute one.
    let (sid, req) = follow("scheme-relative-unlisted");
    raw.send_sealed(Command::HTTP_PROXY, sid, &req.encode()).await;
    assert_eq!(answer(&mut raw, sid).await.status_code, 403);
    gw.handle.shutdown().await;
}
