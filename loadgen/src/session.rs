//! One load-generator session: a `ClientSession` driven over TCP or a WebSocket by a task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mpush_protocol::frame::frame_len;
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

enum Io {
    Tcp(TcpStream),
    /// `bool`: the bridge relays a byte stream (no one-packet-per-message check).
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>, bool),
}

impl Io {
    async fn connect(target: &Target, i: usize) -> Result<Io, String> {
        match target {
            Target::Tcp { addr } => {
                let s = TcpStream::connect(addr).await.map_err(|e| format!("tcp connect {addr}: {e}"))?;
                let _ = s.set_nodelay(true);
                Ok(Io::Tcp(s))
            }
            Target::Ws { urls, origin, protocol, stream } => {
                let url = urls.get(i % urls.len().max(1)).ok_or("no WebSocket URL")?;
                let mut req = url.as_str().into_client_request().map_err(|e| format!("ws url: {e}"))?;
                let h = req.headers_mut();
                if !protocol.is_empty() {
                    h.insert("sec-websocket-protocol", protocol.parse().map_err(|_| "subprotocol header")?);
                }
                h.insert("origin", origin.parse().map_err(|_| "origin header")?);
                let (ws, _) =
                    tokio_tungstenite::connect_async(req).await.map_err(|e| format!("ws connect {url}: {e}"))?;
                Ok(Io::Ws(Box::new(ws), *stream))
            }
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        match self {
            Io::Tcp(s) => s.write_all(&bytes).await.map_err(|e| e.to_string()),
            Io::Ws(ws, _) => ws.send(WsMessage::binary(bytes)).await.map_err(|e| e.to_string()),
        }
    }

    /// Next bytes; `Ok(None)` when the peer closed.
    async fn recv(&mut self, buf: &mut Vec<u8>, counters: &Counters) -> Result<Option<()>, String> {
        buf.clear();
        match self {
            Io::Tcp(s) => {
                buf.resize(16 * 1024, 0);
                let n = s.read(buf).await.map_err(|e| e.to_string())?;
                buf.truncate(n);
                Ok((n > 0).then_some(()))
            }
            Io::Ws(ws, stream) => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Binary(b))) => {
                        if !*stream && !matches!(frame_len(&b, usize::MAX >> 1), Ok(Some(n)) if n == b.len()) {
                            counters.framing_violations.fetch_add(1, Ordering::Relaxed);
                        }
                        // The session reassembles packets from any split.
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
            r = io.recv(&mut buf, &counters) => {
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
