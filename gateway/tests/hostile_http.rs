//! A hostile client against the HTTP proxy's gateway-specific bounds, over real sockets on
//! 127.0.0.1: the per-connection cap on requests in flight (one more is answered at once with
//! a raw 503), the cap on `readTimeout`, and requests aborted when their client goes away.
//! The upstream is a raw listener that reads a request and never answers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start, RawClient, WAIT};
use mpush_protocol::message::Message;
use mpush_protocol::{Command, Flags, HttpMethod, HttpRequest, HttpResponse};
use tokio::io::AsyncReadExt;
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
