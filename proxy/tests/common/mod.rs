//! Test harness: a running proxy on 127.0.0.1:0, a scripted fake MPUSH upstream, a WebSocket
//! client, a raw HTTP/1.1 client and the real binary as a child process.
#![allow(dead_code, clippy::unwrap_used)]

pub mod child;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mpush_protocol::frame::{Command, Flags, Packet};
use mpush_proxy::{Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const T: Duration = Duration::from_secs(5);

/// A fake MPUSH connection server: hands every accepted connection to the test.
pub struct FakeUpstream {
    pub addr: String,
    conns: mpsc::Receiver<TcpStream>,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, conns) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                if tx.send(s).await.is_err() {
                    break;
                }
            }
        });
        FakeUpstream { addr, conns }
    }

    /// The next connection the proxy opened.
    pub async fn accept(&mut self) -> TcpStream {
        tokio::time::timeout(T, self.conns.recv()).await.expect("no upstream connection").unwrap()
    }
}

/// An address where nothing listens.
pub async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

pub fn config(upstreams: &[&str]) -> Config {
    let mut c = Config::default();
    c.upstreams = upstreams.iter().map(|s| s.to_string()).collect();
    c.connect_timeout = Duration::from_secs(1);
    c
}

pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), mpush_proxy::ProxyError>>,
}

impl Running {
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start(config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::from_listener(config, listener).unwrap();
    let addr = proxy.local_addr();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.run(async move {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(stop), task }
}

/// Opens a WebSocket with subprotocol "mpush" and the given Origin (if any).
pub async fn try_connect(addr: SocketAddr, origin: Option<&str>) -> Result<(Ws, Option<String>), WsError> {
    let mut req = format!("ws://{addr}/mpush").into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mpush"));
    if let Some(o) = origin {
        req.headers_mut().insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let (ws, resp) = tokio::time::timeout(T, tokio_tungstenite::connect_async(req)).await.expect("connect timeout")?;
    let proto = resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, proto))
}

pub async fn connect(addr: SocketAddr) -> Ws {
    try_connect(addr, None).await.unwrap().0
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(addr: SocketAddr, origin: Option<&str>) -> u16 {
    match try_connect(addr, origin).await {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade was accepted"),
    }
}

pub fn frame(cmd: Command, session_id: i32, body: &[u8]) -> Vec<u8> {
    Packet { cmd, flags: Flags::CRYPTO, session_id, body: body.to_vec() }.to_bytes()
}

pub async fn send(ws: &mut Ws, bytes: &[u8]) {
    ws.send(Message::Binary(bytes.to_vec().into())).await.unwrap();
}

/// The next binary message (pings/pongs skipped).
pub async fn recv(ws: &mut Ws) -> Vec<u8> {
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("no message") {
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code and reason.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("no close frame") {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (u16::from(CloseCode::Status), String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Reads exactly `n` bytes from the upstream side.
pub async fn read_n(up: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    tokio::time::timeout(T, up.read_exact(&mut b)).await.expect("upstream read timeout").unwrap();
    b
}

/// Asserts the proxy closed the upstream connection (EOF or reset, no more data).
pub async fn expect_upstream_closed(up: &mut TcpStream) {
    let mut b = [0u8; 64];
    match tokio::time::timeout(T, up.read(&mut b)).await.expect("upstream still open") {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("unexpected {n} bytes from the proxy: {:?}", &b[..n]),
    }
}

/// One packet each way over an established session, to prove it still works.
pub async fn roundtrip(ws: &mut Ws, up: &mut TcpStream, tag: u8) {
    let p = frame(Command::PUSH, tag as i32, &[tag; 5]);
    send(ws, &p).await;
    assert_eq!(read_n(up, p.len()).await, p);
    up.write_all(&p).await.unwrap();
    assert_eq!(recv(ws).await, p);
}

/// A raw HTTP/1.1 GET; returns status, lower-cased head and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut raw)).await.expect("http timeout").unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// Completes a raw WebSocket upgrade (subprotocol mpush) on a connected socket, byte by byte so
/// nothing after the 101 head is consumed, and returns the socket.
pub async fn raw_upgrade(mut s: TcpStream, addr: SocketAddr) -> TcpStream {
    let req = format!(
        "GET /mpush HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mpush\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(T, s.read_exact(&mut b)).await.unwrap().unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}
