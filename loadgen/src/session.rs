//! One load-generator session: a `ClientSession` driven over TCP or a WebSocket by a task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mpush_protocol::{ClientConfig, ClientEvent, ClientSession, RsaPublicKey, HEARTBEAT_BYTE};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::{now_micros, now_ms};
use crate::Args;

/// Where sessions connect.
#[derive(Clone, Debug)]
pub enum Target {
    /// Directly to the connection server.
    Tcp { addr: String },
    /// Through the proxy.
    /// Through the proxies at `urls`, session `i` to `urls[i % len]`.
    Ws { urls: Arc<Vec<String>>, origin: String },
}

/// Shared counters of all sessions of a run.
#[derive(Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub heartbeats: AtomicU64,
    pub dead: AtomicU64,
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

enum Io {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

impl Io {
    async fn connect(target: &Target, i: usize) -> Result<Io, String> {
        match target {
            Target::Tcp { addr } => {
                let s = TcpStream::connect(addr).await.map_err(|e| format!("tcp connect {addr}: {e}"))?;
                let _ = s.set_nodelay(true);
                Ok(Io::Tcp(s))
            }
            Target::Ws { urls, origin } => {
                let url = urls.get(i % urls.len().max(1)).ok_or("no WebSocket URL")?;
                let mut req = url.as_str().into_client_request().map_err(|e| format!("ws url: {e}"))?;
                let h = req.headers_mut();
                h.insert("sec-websocket-protocol", "mpush".parse().map_err(|_| "header")?);
                h.insert("origin", origin.parse().map_err(|_| "origin header")?);
                let (ws, _) =
                    tokio_tungstenite::connect_async(req).await.map_err(|e| format!("ws connect {url}: {e}"))?;
                Ok(Io::Ws(Box::new(ws)))
            }
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        match self {
            Io::Tcp(s) => s.write_all(&bytes).await.map_err(|e| e.to_string()),
            Io::Ws(ws) => ws.send(WsMessage::binary(bytes)).await.map_err(|e| e.to_string()),
        }
    }

    /// Next bytes; `Ok(None)` when the peer closed.
    async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<Option<()>, String> {
        buf.clear();
        match self {
            Io::Tcp(s) => {
                buf.resize(16 * 1024, 0);
                let n = s.read(buf).await.map_err(|e| e.to_string())?;
                buf.truncate(n);
                Ok((n > 0).then_some(()))
            }
            Io::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        return Ok(Some(()));
                    }
                    Some(Ok(WsMessage::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                }
            },
        }
    }
}

async fn flush(session: &mut ClientSession, io: &mut Io, counters: &Counters) -> Result<(), String> {
    while let Some(b) = session.poll_transmit() {
        if b.as_slice() == [HEARTBEAT_BYTE] {
            counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
        io.send(b).await?;
    }
    Ok(())
}

async fn drive(
    mut session: ClientSession,
    mut io: Io,
    user: String,
    counters: Arc<Counters>,
    ready: oneshot::Sender<Result<(), String>>,
) -> Result<(), String> {
    let mut ready = Some(ready);
    session.handle_connected(now_ms()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    loop {
        flush(&mut session, &mut io, &counters).await?;
        while let Some(e) = session.poll_event() {
            match e {
                ClientEvent::HandshakeOk { .. } | ClientEvent::FastConnected { .. } => {
                    session.bind(now_ms(), &user, None, None).map_err(|e| e.to_string())?;
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
        flush(&mut session, &mut io, &counters).await?;
        let wake = session.poll_timeout().map(|t| Duration::from_millis(t.saturating_sub(now_ms())));
        tokio::select! {
            r = io.recv(&mut buf) => {
                match r? {
                    Some(()) => session.handle_input(now_ms(), &buf).map_err(|e| e.to_string())?,
                    None => return Err("closed by peer".into()),
                }
            }
            _ = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600))) => {
                session.handle_timeout(now_ms());
            }
        }
    }
}

/// Opens `args.sessions` sessions, each handshaked and bound to `{prefix}-{i}`.
pub async fn open_all(
    args: &Args,
    key: &RsaPublicKey,
    target: &Target,
    prefix: &str,
    counters: Arc<Counters>,
) -> Result<Vec<SessionHandle>, String> {
    let limit = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(args.sessions);
    let mut waits = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let permit = limit.clone().acquire_owned().await.map_err(|_| "semaphore closed")?;
        let mut cfg = ClientConfig::new(key.clone(), format!("{prefix}-dev-{i}"));
        cfg.min_heartbeat = args.heartbeat;
        cfg.max_heartbeat = args.heartbeat;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let session = ClientSession::new(cfg, seed).map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel();
        let (target, user, counters) = (target.clone(), format!("{prefix}-{i}"), counters.clone());
        let task = tokio::spawn(async move {
            let io = match Io::connect(&target, i).await {
                Ok(io) => io,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    drop(permit);
                    return;
                }
            };
            let (inner_tx, inner_rx) = oneshot::channel();
            let drive = drive(session, io, user, counters, inner_tx);
            tokio::pin!(drive);
            // Hold the handshake permit until the session is bound, then release it.
            let mut tx = Some(tx);
            tokio::select! {
                r = &mut drive => {
                    if let Some(tx) = tx.take() { let _ = tx.send(r.and(Err("ended before bind".into()))); }
                    return;
                }
                r = inner_rx => {
                    if let Some(tx) = tx.take() { let _ = tx.send(r.unwrap_or(Err("lost".into()))); }
                }
            }
            drop(permit);
            let _ = drive.await;
        });
        handles.push(SessionHandle(task));
        waits.push(rx);
    }
    for (i, w) in waits.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(120), w).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("session {i}: {e}")),
            _ => return Err(format!("session {i}: no bind within 120 s")),
        }
    }
    Ok(handles)
}
