//! WSS: the proxy serves TLS from PEM files; a client trusting the self-signed certificate
//! relays a packet both ways.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use futures_util::{SinkExt, StreamExt};
use mpush_protocol::frame::Command;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn wss_relays_packets_with_a_pem_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let mut up = FakeUpstream::start().await;
    let mut cfg = config(&[&up.addr]);
    cfg.tls_cert = Some(cert_path);
    cfg.tls_key = Some(key_path);
    let proxy = start(cfg).await;

    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(T, TlsConnector::from(Arc::new(client)).connect(name, tcp))
        .await
        .expect("TLS handshake timeout")
        .unwrap();
    let mut req = format!("wss://127.0.0.1:{}/mpush", proxy.addr.port()).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mpush"));
    let (mut ws, resp) =
        tokio::time::timeout(T, tokio_tungstenite::client_async(req, tls)).await.expect("upgrade timeout").unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "mpush");
    let mut conn = up.accept().await;

    let hello = frame(Command::HANDSHAKE, 1, &[0xAB; 300]);
    ws.send(Message::Binary(hello.clone().into())).await.unwrap();
    assert_eq!(read_n(&mut conn, hello.len()).await, hello);
    let push = frame(Command::PUSH, 2, &[7; 5000]);
    conn.write_all(&push).await.unwrap();
    let got = loop {
        match tokio::time::timeout(T, ws.next()).await.expect("no message") {
            Some(Ok(Message::Binary(b))) => break b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    };
    assert_eq!(got, push);

    // A plain-text WebSocket on the TLS port does not get through.
    assert!(tokio::time::timeout(T, try_connect(proxy.addr, None)).await.expect("plain connect hung").is_err());
}
