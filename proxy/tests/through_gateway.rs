//! A native client session over WebSocket -> mpush-proxy -> mpush-gateway, all on 127.0.0.1:
//! handshake, bind, a push with auto ack, an HTTP-proxy request, and fast connect on a new
//! WebSocket. The proxy never sees plaintext; the gateway and the client agree end to end.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use mpush_gateway::config::GatewayConfig;
use mpush_gateway::push::PushTarget;
use mpush_gateway::Gateway;
// `host` is on here through mpush-gateway, a dev-dependency that turns the feature on.
use mpush_protocol::host::now_ms;
use mpush_protocol::message::{HttpMethod, HttpRequest};
use mpush_protocol::{AckMode, ClientConfig, ClientEvent, ClientSession, RsaPublicKey, StoredSession};

/// Sends everything the session queued, then reads until `want` matches an event.
async fn until(ws: &mut Ws, s: &mut ClientSession, want: impl Fn(&ClientEvent) -> bool) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    loop {
        while let Some(b) = s.poll_transmit() {
            send(ws, &b).await;
        }
        while let Some(e) = s.poll_event() {
            let done = want(&e);
            seen.push(e);
            if done {
                // Flush what taking the event queued (an auto ack).
                while let Some(b) = s.poll_transmit() {
                    send(ws, &b).await;
                }
                return seen;
            }
        }
        let bytes = recv(ws).await;
        s.handle_input(now_ms(), &bytes).unwrap();
    }
}

#[tokio::test]
async fn native_client_through_proxy_and_gateway() {
    let echo = mpush_proxy::embedded::start_echo().await.unwrap();
    let mut g = GatewayConfig::default();
    g.http.proxy_enabled = true;
    g.http.allow = vec![echo.to_string()];
    let gateway = Gateway::bind(g).await.unwrap().spawn();
    let upstream = gateway.mpush_addr().to_string();
    let proxy = start(config(&[&upstream])).await;
    let key = RsaPublicKey::from_base64(gateway.public_key()).unwrap();
    let client_config = ClientConfig::new(key, "native-ws-1");

    // Handshake and bind over the bridge.
    let (mut ws, _) = try_connect(proxy.addr, None).await.unwrap();
    let mut s = ClientSession::new(client_config.clone(), [3; 32]).unwrap();
    s.handle_connected(now_ms()).unwrap();
    let ev = until(&mut ws, &mut s, |e| matches!(e, ClientEvent::HandshakeOk { .. })).await;
    let Some(ClientEvent::HandshakeOk { heartbeat, session }) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(*heartbeat, 180_000);
    let stored: StoredSession = session.clone();
    s.bind(now_ms(), "bridge-user", None, Some("vip")).unwrap();
    until(&mut ws, &mut s, |e| matches!(e, ClientEvent::Bound { .. })).await;

    // A push through the gateway with auto ack: success only once the client's ack came back
    // through the proxy.
    let pusher = gateway.pusher().clone();
    let pushed = tokio::spawn(async move {
        pusher
            .push(
                PushTarget::Users(vec!["bridge-user".into()]),
                b"over the bridge".to_vec(),
                AckMode::Auto,
                Duration::from_secs(10),
            )
            .await
    });
    let ev = until(&mut ws, &mut s, |e| matches!(e, ClientEvent::Push(_))).await;
    let Some(ClientEvent::Push(m)) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(m.content, b"over the bridge");
    let results = pushed.await.unwrap();
    assert_eq!((results[0].result, results[0].code), ("success", 1));

    // The HTTP proxy: the gateway performs the request, the answer comes back encrypted.
    let req = HttpRequest {
        method: HttpMethod::Post,
        uri: format!("http://{echo}/demo/echo?via=proxy"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"n":42}"#.to_vec(),
    };
    s.http_request(now_ms(), req).unwrap();
    let ev = until(&mut ws, &mut s, |e| matches!(e, ClientEvent::HttpResponse { .. })).await;
    let Some(ClientEvent::HttpResponse { response, .. }) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(response.status_code, 200);
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["query"], "via=proxy");
    assert_eq!(body["body"]["n"], 42);
    assert!(body["headers"]["x-forwarded-for"].as_str().is_some_and(|v| v.starts_with("127.0.0.1")));

    // A new WebSocket resumes the session with fast connect and binds again by itself.
    drop(ws);
    s.handle_disconnected(now_ms());
    let (mut ws, _) = try_connect(proxy.addr, None).await.unwrap();
    let mut resumed = ClientSession::resume(client_config, [4; 32], stored).unwrap();
    resumed.handle_connected(now_ms()).unwrap();
    let ev = until(&mut ws, &mut resumed, |e| matches!(e, ClientEvent::FastConnected { .. })).await;
    assert!(matches!(ev.last(), Some(ClientEvent::FastConnected { heartbeat: 180_000 })), "{ev:?}");
    resumed.bind(now_ms(), "bridge-user", None, None).unwrap();
    until(&mut ws, &mut resumed, |e| matches!(e, ClientEvent::Bound { .. })).await;
    let results = gateway
        .pusher()
        .push(
            PushTarget::Users(vec!["bridge-user".into()]),
            b"after fast connect".to_vec(),
            AckMode::None,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(results[0].result, "success");
    let ev = until(&mut ws, &mut resumed, |e| matches!(e, ClientEvent::Push(_))).await;
    assert!(matches!(ev.last(), Some(ClientEvent::Push(m)) if m.content == b"after fast connect"));

    gateway.shutdown().await;
}
