//! Nothing acked is lost, over real sockets on 127.0.0.1: an upstream auto-ack push is acked
//! only once the webhook answered 2xx (after retries with backoff), what the webhook sink
//! stored, retried, gave up and holds shows in `GET /health`, a webhook that never
//! answers gets no acks and a full queue refuses more, and a connection task that panics
//! still gives back its connection slots and its routes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{api, bind, keys, WAIT};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use mpush_gateway::config::UpstreamConfig;
use mpush_gateway::{
    Gateway, GatewayConfig, GatewayHandle, GatewayOptions, Receipt, UpstreamMessage, UpstreamSink, WebhookSink,
};
use mpush_native_client::{NativeClient, Options};
use mpush_protocol::{AckMode, ClientConfig, ClientEvent, RequestId, RsaPublicKey};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// One POST the scripted webhook received; the test answers it with a status, or drops
/// `respond` to never answer.
struct Post {
    body: serde_json::Value,
    attempt: String,
    respond: oneshot::Sender<u16>,
}

/// A webhook whose every answer the test decides.
async fn scripted_webhook() -> (SocketAddr, mpsc::UnboundedReceiver<Post>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind webhook");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let attempt = req
                            .headers()
                            .get("x-mpush-attempt")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        let (respond, answer) = oneshot::channel();
                        let _ = tx.send(Post { body, attempt, respond });
                        match answer.await {
                            Ok(status) => {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                                Ok::<_, std::convert::Infallible>(r)
                            }
                            // The test dropped the responder: this webhook never answers.
                            Err(_) => std::future::pending().await,
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, rx)
}

async fn next_post(rx: &mut mpsc::UnboundedReceiver<Post>) -> Post {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("a post in time").expect("webhook running")
}

async fn start_with(config: GatewayConfig, sink: Option<Arc<dyn UpstreamSink>>) -> GatewayHandle {
    let options = GatewayOptions { sink, keys: Some(keys()), ..GatewayOptions::default() };
    Gateway::bind_with(config, options).await.expect("gateway binds").spawn()
}

async fn client(gw: &GatewayHandle, device: &str, request_timeout: u64) -> NativeClient {
    let key = RsaPublicKey::from_base64(gw.public_key()).expect("key");
    let mut config = ClientConfig::new(key, device);
    config.request_timeout = request_timeout;
    let mut c = NativeClient::connect(gw.mpush_addr(), config, Options::default()).await.expect("connect");
    c.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await.expect("handshake");
    c
}

/// `GET /health`'s `upstream` counters.
async fn upstream_health(gw: &GatewayHandle) -> serde_json::Value {
    let (status, health) = api(gw.api_addr(), "GET", "/health", None, None).await;
    assert_eq!(status, 200, "{health}");
    health["upstream"].clone()
}

fn acked(id: RequestId) -> impl FnMut(&ClientEvent) -> bool {
    move |e| matches!(e, ClientEvent::PushAcked { request } if *request == id)
}

#[tokio::test]
async fn an_upstream_push_is_acked_only_once_the_webhook_has_it() {
    let (hook, mut posts) = scripted_webhook().await;
    let mut config = GatewayConfig::default();
    config.upstream.webhook = Some(format!("http://{hook}/hook"));
    config.upstream.webhook_attempts = 3;
    config.upstream.webhook_backoff = 20;
    config.upstream.webhook_max_backoff = 40;
    let gw = start_with(config, None).await;
    let counters = |stored: u64, given_up: u64, retries: u64, queued: u64, posting: u64| json!({"stored": stored, "refused": 0, "givenUp": given_up, "retries": retries, "queued": queued, "posting": posting});
    assert_eq!(upstream_health(&gw).await, counters(0, 0, 0, 0, 0));
    let mut c = client(&gw, "dev-retry", 20_000).await;
    bind(&mut c, "writer", None).await;
    let id = c.push(b"keep me".to_vec(), AckMode::Auto).await.expect("push").expect("auto ack has an id");

    // The first two POSTs fail (500, 503): retried with backoff, and no ack meanwhile.
    for (n, status) in [("1", 500), ("2", 503)] {
        let post = next_post(&mut posts).await;
        assert_eq!(post.attempt, n);
        assert_eq!(post.body["contentBase64"], "a2VlcCBtZQ==");
        post.respond.send(status).expect("answered");
    }
    let third = next_post(&mut posts).await;
    assert_eq!((third.attempt.as_str(), &third.body["userId"]), ("3", &json!("writer")));
    let early = tokio::time::timeout(Duration::from_millis(300), c.wait_for(acked(id))).await;
    assert!(early.is_err(), "acked before the webhook stored it: {early:?}");
    // An operator sees the push queued, its third POST under way and the two retries.
    assert_eq!(upstream_health(&gw).await, counters(0, 0, 2, 1, 1));
    // The webhook takes it: now the client gets its ack, and it counts as stored.
    third.respond.send(200).expect("answered");
    c.wait_for(acked(id)).await.expect("acked once stored");
    assert_eq!(upstream_health(&gw).await, counters(1, 0, 2, 0, 0));

    // Two more taken at once: stored counts each push once.
    for text in ["two", "three"] {
        let id = c.push(text.as_bytes().to_vec(), AckMode::Auto).await.expect("push").expect("id");
        next_post(&mut posts).await.respond.send(200).expect("answered");
        c.wait_for(acked(id)).await.expect("acked once stored");
    }
    assert_eq!(upstream_health(&gw).await, counters(3, 0, 2, 0, 0));

    // One the webhook refuses on every attempt is given up (and never acked).
    let lost = c.push(b"refused".to_vec(), AckMode::Auto).await.expect("push").expect("id");
    for n in ["1", "2", "3"] {
        let post = next_post(&mut posts).await;
        assert_eq!((post.attempt.as_str(), &post.body["contentBase64"]), (n, &json!("cmVmdXNlZA==")));
        post.respond.send(500).expect("answered");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut upstream = upstream_health(&gw).await;
    while upstream["givenUp"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the push was not given up: {upstream}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        upstream = upstream_health(&gw).await;
    }
    assert_eq!(upstream, counters(3, 1, 4, 0, 0));
    let late = tokio::time::timeout(Duration::from_millis(300), c.wait_for(acked(lost))).await;
    assert!(late.is_err(), "a push given up was acked: {late:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_webhook_that_never_answers_gets_no_acks_and_a_full_queue_refuses() {
    let (hook, mut posts) = scripted_webhook().await;
    let config = GatewayConfig { drain_timeout: 300, ..GatewayConfig::default() };
    let upstream =
        UpstreamConfig { webhook_queue: 2, webhook_attempts: 1, webhook_timeout: 60_000, ..UpstreamConfig::default() };
    let sink = WebhookSink::with_config(format!("http://{hook}/hook"), &upstream);
    let gw = start_with(config, Some(Arc::new(sink.clone()))).await;
    let mut c = client(&gw, "dev-stuck", 1_500).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(c.push(format!("p{n}").into_bytes(), AckMode::Auto).await.expect("push").expect("id"));
    }
    // Two fill the queue and reach the webhook (which holds them); the third is refused.
    let held: Vec<Post> = vec![next_post(&mut posts).await, next_post(&mut posts).await];
    let deadline = tokio::time::Instant::now() + WAIT;
    while sink.stats().refused < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the third push was not refused: {:?}", sink.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), posts.recv()).await.is_err(), "no third post");
    // None of the three is acked: each ends in the client's own ack timeout.
    let mut failed = Vec::new();
    while failed.len() < 3 {
        match c.next_event().await.expect("client open") {
            ClientEvent::PushAcked { request } => panic!("push {request:?} acked without being stored"),
            ClientEvent::RequestFailed { request, .. } => failed.push(request),
            _ => {}
        }
    }
    failed.sort_by_key(|r| r.0);
    assert_eq!(failed, ids);
    assert_eq!((sink.stats().stored, sink.stats().refused), (0, 1));
    drop(held);
    gw.shutdown().await;
}

/// A sink that panics: an embedder's bug, run inside the connection task.
struct PanickingSink;

impl UpstreamSink for PanickingSink {
    fn deliver(&self, _msg: UpstreamMessage, _receipt: Receipt) {
        panic!("sink bug (expected by this test)");
    }
}

#[tokio::test]
async fn a_panicking_connection_task_gives_back_its_slots_and_routes() {
    let mut config = GatewayConfig::default();
    config.limits.max_connections = 1;
    let gw = start_with(config, Some(Arc::new(PanickingSink))).await;
    let api_addr = gw.api_addr();
    let mut c = client(&gw, "dev-victim", 10_000).await;
    bind(&mut c, "victim", None).await;
    let (_, users) = api(api_addr, "GET", "/users", None, None).await;
    assert_eq!(users["users"][0]["userId"], "victim");

    // The push reaches the sink, which panics inside the connection task.
    c.push(b"boom".to_vec(), AckMode::None).await.expect("push");
    c.closed().await;

    // The connection slot, the open-connection count and the user's route are given back.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, health) = api(api_addr, "GET", "/health", None, None).await;
        if health["connections"] == 0 && health["users"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not released: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, users) = api(api_addr, "GET", "/users", None, None).await;
    assert_eq!(users["users"], json!([]));
    // No webhook configured: `/health` has no webhook counters.
    let (_, health) = api(api_addr, "GET", "/health", None, None).await;
    assert_eq!(health.get("upstream"), None, "{health}");
    let (_, pushed) = api(api_addr, "POST", "/push", Some(json!({"userId": "victim", "content": "x"})), None).await;
    assert_eq!(pushed["results"][0]["result"], "offline");
    // max-connections = 1: a new connection is admitted, so the slot came back.
    let mut again = client(&gw, "dev-after", 10_000).await;
    bind(&mut again, "victim", None).await;
    gw.shutdown().await;
}
