//! One load-generator session: a `ClientSession` on the workspace's one session driver
//! (`mpush-native-client`), over TCP or over a WebSocket [`Transport`] defined here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io;

use futures_util::{SinkExt, StreamExt};
use mpush_native_client::{NativeClient, Options, Transport};
use mpush_protocol::frame::frame_len;
use mpush_protocol::{ClientConfig, ClientEvent, RsaPublicKey, HEARTBEAT_BYTE};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::now_micros;
use crate::Args;

/// Where sessions connect.
#[derive(Clone, Debug)]
pub enum Target {
    /// Directly to the connection server.
    Tcp { addr: String },
    /// Through the bridges at `urls`, session `i` to `urls[i % len]`, offering subprotocol
    /// `protocol` (none if empty). `stream`: the bridge relays a byte stream (messages need not
    /// be whole packets); otherwise each message is checked to be exactly one packet.
    Ws { urls: Arc<Vec<String>>, origin: String, protocol: String, stream: bool },
}

/// Shared counters of all sessions of a run.
#[derive(Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub heartbeats: AtomicU64,
    pub dead: AtomicU64,
    /// Messages that were not exactly one packet on a bridge that promises so.
    pub framing_violations: AtomicU64,
    pub latencies: Mutex<Vec<u64>>,
}

impl Counters {
    pub fn reset_received(&self) {
        self.received.store(0, Ordering::Relaxed);
    }

    /// Waits until `n` pushes arrived or `limit` passed; returns how many arrived.
    pub async fn wait_received(&self, n: u64, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.received.load(Ordering::Relaxed);
            if got >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A running session; dropping it ends the task (and the connection).
pub struct SessionHandle(JoinHandle<()>);

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts the heartbeats among the packets a session sends.
fn count_heartbeats(packets: &[Vec<u8>], counters: &Counters) {
    let n = packets.iter().filter(|p| p.as_slice() == [HEARTBEAT_BYTE]).count();
    if n > 0 {
        counters.heartbeats.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Direct TCP for the shared driver, counting heartbeats.
struct TcpTransport {
    stream: TcpStream,
    counters: Arc<Counters>,
}

impl Transport for TcpTransport {
    async fn send(&mut self, packets: Vec<Vec<u8>>) -> io::Result<()> {
        count_heartbeats(&packets, &self.counters);
        self.stream.send(packets).await
    }

    async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        self.stream.recv(buf).await
    }

    async fn close(&mut self) -> io::Result<()> {
        Transport::close(&mut self.stream).await
    }
}

/// A WebSocket through a bridge for the shared driver: each packet goes out as its own binary
/// message (mpush-proxy's contract; byte-stream bridges take that too).
struct WsTransport {
    ws: Box<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    /// The bridge relays a byte stream: no one-packet-per-message check on what arrives.
    stream: bool,
    counters: Arc<Counters>,
}

impl Transport for WsTransport {
    async fn send(&mut self, packets: Vec<Vec<u8>>) -> io::Result<()> {
        count_heartbeats(&packets, &self.counters);
        for p in packets {
            self.ws.feed(WsMessage::binary(p)).await.map_err(io::Error::other)?;
        }
        self.ws.flush().await.map_err(io::Error::other)
    }

    async fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Binary(b))) => {
                    if !self.stream && !matches!(frame_len(&b, usize::MAX >> 1), Ok(Some(n)) if n == b.len()) {
                        self.counters.framing_violations.fetch_add(1, Ordering::Relaxed);
                    }
                    // The session reassembles packets from any split.
                    buf.extend_from_slice(&b);
                    return Ok(true);
                }
                Some(Ok(WsMessage::Close(_))) | None => return Ok(false),
                Some(Ok(_)) => continue, // ping (answered by tungstenite) or pong
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
    }

    async fn close(&mut self) -> io::Result<()> {
        // A close frame, then the flush (the Sink close: the same in every feature set).
        SinkExt::close(&mut *self.ws).await.map_err(io::Error::other)
    }
}

/// Connects session `i` to `target` and starts it on the shared driver.
async fn connect(
    target: &Target,
    i: usize,
    config: ClientConfig,
    counters: Arc<Counters>,
) -> Result<NativeClient, String> {
    let options = Options { wait_timeout: Duration::from_secs(120), ..Options::default() };
    let started = match target {
        Target::Tcp { addr } => {
            let stream = TcpStream::connect(addr).await.map_err(|e| format!("tcp connect {addr}: {e}"))?;
            let _ = stream.set_nodelay(true);
            NativeClient::start_on(TcpTransport { stream, counters }, config, options)
        }
        Target::Ws { urls, origin, protocol, stream } => {
            let url = urls.get(i % urls.len().max(1)).ok_or("no WebSocket URL")?;
            let mut req = url.as_str().into_client_request().map_err(|e| format!("ws url: {e}"))?;
            let h = req.headers_mut();
            if !protocol.is_empty() {
                h.insert("sec-websocket-protocol", protocol.parse().map_err(|_| "subprotocol header")?);
            }
            h.insert("origin", origin.parse().map_err(|_| "origin header")?);
            let (ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| format!("ws connect {url}: {e}"))?;
            NativeClient::start_on(WsTransport { ws: Box::new(ws), stream: *stream, counters }, config, options)
        }
    };
    started.map_err(|e| e.to_string())
}

/// Takes one session's events: binds after the handshake, reports readiness once bound, and
/// records each push's latency (pushes carry their send time in µs).
async fn run_session(
    mut client: NativeClient,
    user: String,
    counters: Arc<Counters>,
    ready: oneshot::Sender<Result<(), String>>,
) -> Result<(), String> {
    let mut ready = Some(ready);
    while let Some(e) = client.next_event().await {
        match e {
            ClientEvent::HandshakeOk { .. } | ClientEvent::FastConnected { .. } => {
                client.bind(&user, None, None).await.map_err(|e| e.to_string())?;
            }
            ClientEvent::Bound { .. } => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            ClientEvent::Push(m) => {
                let sent: Option<u64> = std::str::from_utf8(&m.content).ok().and_then(|s| s.parse().ok());
                if let Some(sent) = sent {
                    let lat = now_micros().saturating_sub(sent);
                    if let Ok(mut l) = counters.latencies.lock() {
                        l.push(lat);
                    }
                }
                counters.received.fetch_add(1, Ordering::Relaxed);
            }
            ClientEvent::ConnectionDead => {
                counters.dead.fetch_add(1, Ordering::Relaxed);
                return Err("connection dead".into());
            }
            ClientEvent::ConnectFailed(e) | ClientEvent::RequestFailed { error: e, .. } => {
                return Err(format!("session: {e}"));
            }
            _ => {}
        }
    }
    Err(format!("closed: {:?}", client.closed().await))
}

/// Opens `args.sessions` sessions, each handshaked and bound to `{prefix}-{i}`; returns the
/// held sessions and their users. With `args.keep_going` sessions that fail are left out,
/// otherwise the first failure fails the run.
pub async fn open_all(
    args: &Args,
    key: &RsaPublicKey,
    target: &Target,
    prefix: &str,
    counters: Arc<Counters>,
) -> Result<(Vec<SessionHandle>, Vec<String>), String> {
    let limit = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(args.sessions);
    let mut waits = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let permit = limit.clone().acquire_owned().await.map_err(|_| "semaphore closed")?;
        let mut cfg = ClientConfig::new(key.clone(), format!("{prefix}-dev-{i}"));
        cfg.min_heartbeat = args.heartbeat;
        cfg.max_heartbeat = args.heartbeat;
        let (tx, rx) = oneshot::channel();
        let (target, user, counters) = (target.clone(), format!("{prefix}-{i}"), counters.clone());
        let task = tokio::spawn(async move {
            let client = match connect(&target, i, cfg, counters.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    drop(permit);
                    return;
                }
            };
            let (inner_tx, inner_rx) = oneshot::channel();
            let run = run_session(client, user, counters, inner_tx);
            tokio::pin!(run);
            // Hold the handshake permit until the session is bound, then release it.
            let mut tx = Some(tx);
            tokio::select! {
                r = &mut run => {
                    if let Some(tx) = tx.take() { let _ = tx.send(r.and(Err("ended before bind".into()))); }
                    return;
                }
                r = inner_rx => {
                    if let Some(tx) = tx.take() { let _ = tx.send(r.unwrap_or(Err("lost".into()))); }
                }
            }
            drop(permit);
            let _ = run.await;
        });
        handles.push(SessionHandle(task));
        waits.push(rx);
    }
    let mut held = Vec::with_capacity(handles.len());
    let mut users = Vec::with_capacity(handles.len());
    let mut failed = 0usize;
    for (i, (w, h)) in waits.into_iter().zip(handles).enumerate() {
        let why = match tokio::time::timeout(Duration::from_secs(120), w).await {
            Ok(Ok(Ok(()))) => {
                held.push(h);
                users.push(format!("{prefix}-{i}"));
                continue;
            }
            Ok(Ok(Err(e))) => format!("session {i}: {e}"),
            _ => format!("session {i}: no bind within 120 s"),
        };
        if !args.keep_going {
            return Err(why);
        }
        if failed == 0 {
            eprintln!("mpush-loadgen: {why} (keeping the sessions that opened)");
        }
        failed += 1;
    }
    if failed > 0 {
        eprintln!("mpush-loadgen: {failed} of {} sessions failed to open", args.sessions);
    }
    Ok((held, users))
}
