//! Shared test support: a gateway on 127.0.0.1:0 with a recording upstream sink, native
//! clients, a tiny HTTP client for the push API, and a local upstream HTTP server.
#![allow(dead_code, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mpush_gateway::http_proxy::{send_plain_http, PlainRequest};
use mpush_gateway::{
    Gateway, GatewayConfig, GatewayHandle, GatewayOptions, KeyPair, Receipt, UpstreamMessage, UpstreamSink,
};
use mpush_native_client::{NativeClient, Options};
use mpush_protocol::{ClientConfig, ClientEvent, RsaPublicKey};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Generous limit for anything a test waits for (2-core CI, debug build).
pub const WAIT: Duration = Duration::from_secs(30);

/// One key pair per test binary: generating 1024-bit keys is slow in debug builds.
pub fn keys() -> KeyPair {
    static KEYS: OnceLock<KeyPair> = OnceLock::new();
    KEYS.get_or_init(|| KeyPair::generate().expect("key generation")).clone()
}

/// Records upstream pushes; each counts as stored (acked) once recorded.
pub struct ChannelSink(pub mpsc::UnboundedSender<UpstreamMessage>);

impl UpstreamSink for ChannelSink {
    fn deliver(&self, msg: UpstreamMessage, receipt: Receipt) {
        let _ = self.0.send(msg);
        receipt.stored();
    }
}

pub struct TestGateway {
    pub handle: GatewayHandle,
    pub upstream: mpsc::UnboundedReceiver<UpstreamMessage>,
}

impl TestGateway {
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey::from_base64(self.handle.public_key()).expect("public key")
    }

    /// A client config with osName "web" (client type WEB).
    pub fn client_config(&self, device_id: &str) -> ClientConfig {
        ClientConfig::new(self.public_key(), device_id)
    }

    /// Connects and completes the handshake.
    pub async fn connect(&self, device_id: &str) -> NativeClient {
        self.connect_with(self.client_config(device_id), Options::default()).await
    }

    /// Connects with explicit settings and waits for the handshake or fast connect.
    pub async fn connect_with(&self, config: ClientConfig, options: Options) -> NativeClient {
        let mut c = NativeClient::connect(self.handle.mpush_addr(), config, options).await.expect("connect");
        c.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. } | ClientEvent::FastConnected { .. }))
            .await
            .expect("handshake");
        c
    }

    /// `POST /push` with a JSON body; returns status and JSON.
    pub async fn push(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        api(self.handle.api_addr(), "POST", "/push", Some(body), None).await
    }
}

/// Binds `user` and waits for the Ok.
pub async fn bind(c: &mut NativeClient, user: &str, tags: Option<&str>) {
    c.bind(user, None, tags).await.expect("bind");
    c.wait_for(|e| matches!(e, ClientEvent::Bound { .. })).await.expect("bound");
}

/// A gateway with the test key, a recording sink, and `tweak` applied to the default config.
pub async fn start(tweak: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
    let mut config = GatewayConfig::default();
    tweak(&mut config);
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: Option<Arc<dyn UpstreamSink>> =
        if config.upstream.webhook.is_some() { None } else { Some(Arc::new(ChannelSink(tx))) };
    let options = GatewayOptions { sink, keys: Some(keys()), ..GatewayOptions::default() };
    let gw = Gateway::bind_with(config, options).await.expect("gateway binds");
    TestGateway { handle: gw.spawn(), upstream: rx }
}

/// A request to the push API.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(t) = token {
        headers.push(("authorization".to_owned(), format!("Bearer {t}")));
    }
    let req = PlainRequest {
        method: method.parse().expect("method"),
        uri: format!("http://{addr}{path}"),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    };
    let resp =
        tokio::time::timeout(WAIT, send_plain_http(req, None, 1 << 20)).await.expect("api in time").expect("api");
    let json = serde_json::from_slice(&resp.body).unwrap_or(serde_json::Value::Null);
    (resp.status.as_u16(), json)
}

/// What the upstream test server saw of one request.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A local HTTP server: `/echo` answers JSON describing the request, `/redirect` -> `/echo`,
/// `/redirect-to?<url>` -> that URL, `/slow` waits 5 s, `/big` sends 64 KiB; every request
/// is also reported on the channel.
pub async fn upstream_server() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, tx.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, rx)
}

async fn handle(req: Request<Incoming>, tx: mpsc::UnboundedSender<Seen>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let describe = serde_json::json!({
        "method": method,
        "path": path,
        "headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "body": String::from_utf8_lossy(&body),
    });
    let _ = tx.send(Seen { method: method.clone(), path: path.clone(), headers, body });
    let resp = match path.as_str() {
        "/redirect" => redirect("/echo"),
        "/redirect-to" => redirect(&query),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            text(StatusCode::OK, "slow".into())
        }
        "/big" => text(StatusCode::OK, "x".repeat(64 * 1024)),
        _ => {
            let mut r = text(StatusCode::OK, describe.to_string());
            r.headers_mut().insert("x-upstream", hyper::header::HeaderValue::from_static("yes"));
            r
        }
    };
    Ok(resp)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::FOUND, String::new());
    if let Ok(v) = hyper::header::HeaderValue::from_str(to) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

/// A hand-driven MPUSH client on a raw socket, for what the session-level client never does
/// (a second fast connect on one connection) or hides (an answer that never comes).
pub struct RawClient {
    pub stream: tokio::net::TcpStream,
    decoder: mpush_protocol::FrameDecoder,
    /// The session cipher after a handshake or fast connect.
    pub cipher: Option<mpush_protocol::AesCipher>,
    /// What fast connect needs: session id, key, iv.
    pub session: Option<(String, [u8; 16], [u8; 16])>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        RawClient { stream, decoder: mpush_protocol::FrameDecoder::new(1 << 20), cipher: None, session: None }
    }

    pub async fn send(&mut self, cmd: mpush_protocol::Command, flags: mpush_protocol::Flags, sid: i32, body: Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        let p = mpush_protocol::Packet { cmd, flags, session_id: sid, body };
        self.stream.write_all(&p.to_bytes()).await.expect("write");
    }

    /// Sends `plain` encrypted with the session cipher.
    pub async fn send_sealed(&mut self, cmd: mpush_protocol::Command, sid: i32, plain: &[u8]) {
        let body = self.cipher.as_ref().expect("session cipher").encrypt(plain);
        self.send(cmd, mpush_protocol::Flags::CRYPTO, sid, body).await;
    }

    /// The next packet (heartbeats skipped), or `None` if nothing comes within `wait` or the
    /// connection ends.
    pub async fn recv(&mut self, wait: Duration) -> Option<mpush_protocol::Packet> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(f) = self.decoder.next_frame().expect("framing") {
                if let mpush_protocol::Frame::Packet(p) = f {
                    return Some(p);
                }
            }
            let mut buf = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.decoder.feed(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// A packet's body opened with the session cipher when its CRYPTO flag says so.
    pub fn open(&self, p: &mpush_protocol::Packet) -> Vec<u8> {
        mpush_protocol::body::open(&p.body, p.flags, self.cipher.as_ref(), 1 << 20).expect("open")
    }

    /// A full handshake as `device_id` (osName "web").
    pub async fn handshake(&mut self, public_key: &RsaPublicKey, device_id: &str) {
        use mpush_protocol::message::{Handshake, HandshakeOk, Message};
        use mpush_protocol::{AesCipher, Command, Flags};
        let (ck, iv) = ([7u8; 16], [9u8; 16]);
        let hs = Handshake {
            device_id: device_id.into(),
            os_name: "web".into(),
            os_version: "1".into(),
            client_version: "1".into(),
            iv: iv.to_vec(),
            client_key: ck.to_vec(),
            min_heartbeat: 0,
            max_heartbeat: 0,
            timestamp: 0,
        };
        let mut rng = rand::rngs::OsRng;
        let body = public_key.encrypt(&mut rng, &hs.encode()).expect("rsa");
        self.send(Command::HANDSHAKE, Flags::CRYPTO, 1, body).await;
        let p = self.recv(WAIT).await.expect("handshake ok");
        assert_eq!(p.cmd, Command::HANDSHAKE, "{p:?}");
        let ok = HandshakeOk::decode(&AesCipher::new(ck, iv).decrypt(&p.body).expect("aes")).expect("decode");
        let sk: [u8; 16] = ok.server_key.as_slice().try_into().expect("16 bytes");
        let key = mpush_protocol::crypto::mix_key(&ck, &sk);
        self.cipher = Some(AesCipher::new(key, iv));
        self.session = Some((ok.session_id, key, iv));
    }
}

/// Connects to `addr` from the loopback address `from` (Linux routes all of 127/8 to lo).
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(std::net::IpAddr::from(from), 0)).expect("bind source address");
    s.connect(addr).await.expect("connect")
}

/// Sends `prefix` and a heartbeat in one write; whether the heartbeat comes back as `0xDF`
/// (the gateway serves this connection).
pub async fn served_after(s: &mut tokio::net::TcpStream, prefix: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bytes = prefix.to_vec();
    bytes.push(0xDF);
    if s.write_all(&bytes).await.is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(WAIT, s.read(&mut b)).await, Ok(Ok(1)) if b[0] == 0xDF)
}

/// Whether the gateway serves this connection: a heartbeat comes back as `0xDF`.
pub async fn echoes_heartbeat(s: &mut tokio::net::TcpStream) -> bool {
    served_after(s, &[]).await
}

/// Whether the gateway closed this connection without a byte.
pub async fn closed_without_a_byte(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 64];
    matches!(tokio::time::timeout(WAIT, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}
