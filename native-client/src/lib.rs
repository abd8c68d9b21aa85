//! # mpush-native-client
//!
//! A tokio driver around [`mpush_protocol::ClientSession`]: one task per connection that only
//! moves bytes and time in and out of the sans-IO session, as the Android/Java SDK's
//! connection thread does. Tests use it to speak the native MPUSH byte stream to a connection
//! server (the Java MPUSH server or `mpush-gateway`); `mpush-loadgen` runs every one of its
//! sessions on it, over TCP or over its own WebSocket [`Transport`]. This is the one session
//! driver of the workspace.
//!
//! ```no_run
//! # async fn demo(public_key: mpush_protocol::RsaPublicKey) -> Result<(), Box<dyn std::error::Error>> {
//! use mpush_native_client::{NativeClient, Options};
//! use mpush_protocol::{ClientConfig, ClientEvent};
//!
//! let config = ClientConfig::new(public_key, "device-1");
//! let mut client = NativeClient::connect("127.0.0.1:3000", config, Options::default()).await?;
//! client.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await?;
//! client.bind("user-1", None, None).await?;
//! while let Some(event) = client.next_event().await {
//!     if let ClientEvent::Push(m) = event {
//!         println!("push: {:?}", String::from_utf8_lossy(&m.content));
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::time::Duration;

pub use mpush_protocol::host::{now_ms, os_seed};
use mpush_protocol::{
    AckMode, ClientConfig, ClientError, ClientEvent, ClientSession, HttpRequest, RequestId, StoredSession,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};

/// A connection the driver runs a session over: TCP (the native byte stream) or anything else
/// that carries packets, such as a WebSocket through a bridge.
pub trait Transport: Send + 'static {
    /// Sends the packets the session queued, in order. A byte stream may write them in one
    /// go; a WebSocket to `mpush-proxy` must send each as its own message.
    fn send(&mut self, packets: Vec<Vec<u8>>) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Waits for more bytes from the server and appends them to `buf` (any split of the
    /// stream: the session reassembles packets); `Ok(false)` at the end of the stream. Must be
    /// cancel-safe: the driver races it against calls and timers.
    fn recv(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = std::io::Result<bool>> + Send;
    /// Ends the connection from this side.
    fn close(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Most bytes one TCP read takes.
const TCP_READ: usize = 16 * 1024;

impl Transport for TcpStream {
    async fn send(&mut self, packets: Vec<Vec<u8>>) -> std::io::Result<()> {
        // One write for everything queued together.
        let all = packets.concat();
        self.write_all(&all).await
    }

    async fn recv(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        buf.reserve(TCP_READ);
        Ok(self.read_buf(buf).await? > 0)
    }

    async fn close(&mut self) -> std::io::Result<()> {
        self.shutdown().await
    }
}

/// How the driver behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// A stored session to fast connect with (from an earlier [`ClientEvent::HandshakeOk`]).
    pub resume: Option<StoredSession>,
    /// Whether the driver calls `handle_timeout` (heartbeats, request timeouts, dead-connection
    /// detection). Switch it off to simulate a client that never sends heartbeats.
    pub timers: bool,
    /// How long [`NativeClient::wait_for`] waits before giving up (default 30 s).
    pub wait_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { resume: None, timers: true, wait_timeout: Duration::from_secs(30) }
    }
}

/// An error from the driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting or writing the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The session refused the call (API misuse or wrong state).
    #[error("session: {0}")]
    Session(#[from] ClientError),
    /// The connection is gone; the driver task has ended.
    #[error("connection closed")]
    Closed,
    /// [`NativeClient::wait_for`] saw no matching event in time.
    #[error("no matching event within {0:?}")]
    Timeout(Duration),
}

type Call = Box<dyn FnOnce(&mut ClientSession, u64) + Send>;

/// Why the driver task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Closed {
    /// The server closed the connection (EOF).
    ByPeer,
    /// [`NativeClient::close`] was called or the client was dropped.
    Locally,
    /// The session asked for the connection to be closed (dead connection, refused handshake,
    /// malformed input).
    BySession(String),
    /// A socket error.
    Io(String),
}

/// A connected client: a driver task plus channels to it. Dropping it closes the connection.
#[derive(Debug)]
pub struct NativeClient {
    calls: mpsc::UnboundedSender<Call>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    closed: Option<oneshot::Receiver<Closed>>,
    close_reason: Option<Closed>,
    wait_timeout: Duration,
    local_addr: Option<std::net::SocketAddr>,
}

impl NativeClient {
    /// Connects over TCP and starts the session (handshake, or fast connect with
    /// `options.resume`).
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
        options: Options,
    ) -> Result<NativeClient, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        NativeClient::start(stream, config, options)
    }

    /// Starts the session over an already connected stream.
    pub fn start(stream: TcpStream, config: ClientConfig, options: Options) -> Result<NativeClient, Error> {
        let local_addr = stream.local_addr().ok();
        NativeClient::spawn(stream, local_addr, config, options)
    }

    /// Starts the session over any [`Transport`] (e.g. a WebSocket through a bridge).
    pub fn start_on<T: Transport>(transport: T, config: ClientConfig, options: Options) -> Result<NativeClient, Error> {
        NativeClient::spawn(transport, None, config, options)
    }

    fn spawn<T: Transport>(
        stream: T,
        local_addr: Option<std::net::SocketAddr>,
        config: ClientConfig,
        options: Options,
    ) -> Result<NativeClient, Error> {
        let mut session = match options.resume.clone() {
            Some(stored) => ClientSession::resume(config, os_seed(), stored)?,
            None => ClientSession::new(config, os_seed())?,
        };
        session.handle_connected(now_ms())?;
        let (call_tx, call_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = oneshot::channel();
        tokio::spawn(async move {
            let reason = drive(stream, session, call_rx, event_tx, options.timers).await;
            let _ = closed_tx.send(reason);
        });
        Ok(NativeClient {
            calls: call_tx,
            events: event_rx,
            closed: Some(closed_rx),
            close_reason: None,
            wait_timeout: options.wait_timeout,
            local_addr,
        })
    }

    /// The client's own socket address (what the server sees as the peer).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local_addr
    }

    /// The next session event; `None` once the connection is closed and every event was taken.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Waits (at most the configured wait timeout) for an event matching `pred`, dropping the
    /// others.
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&ClientEvent) -> bool) -> Result<ClientEvent, Error> {
        let limit = self.wait_timeout;
        let found = tokio::time::timeout(limit, async {
            while let Some(e) = self.events.recv().await {
                if pred(&e) {
                    return Some(e);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// Waits for the connection to end and tells why.
    pub async fn closed(&mut self) -> Closed {
        if let Some(rx) = self.closed.take() {
            self.close_reason = Some(rx.await.unwrap_or(Closed::Locally));
        }
        self.close_reason.clone().unwrap_or(Closed::Locally)
    }

    /// Runs `f` on the session inside the driver task (then flushes its transmits).
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ClientSession, u64) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |s, now| {
            let _ = tx.send(f(s, now));
        });
        self.calls.send(call).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Sends a Bind; the answer arrives as [`ClientEvent::Bound`] or
    /// [`ClientEvent::RequestFailed`].
    pub async fn bind(&self, user_id: &str, alias: Option<&str>, tags: Option<&str>) -> Result<RequestId, Error> {
        let (u, a, t) = (user_id.to_owned(), alias.map(str::to_owned), tags.map(str::to_owned));
        Ok(self.call(move |s, now| s.bind(now, &u, a.as_deref(), t.as_deref())).await??)
    }

    /// Sends an Unbind.
    pub async fn unbind(&self) -> Result<RequestId, Error> {
        Ok(self.call(|s, now| s.unbind(now)).await??)
    }

    /// Sends an HTTP-proxy request; the answer arrives as [`ClientEvent::HttpResponse`].
    pub async fn http_request(&self, req: HttpRequest) -> Result<RequestId, Error> {
        Ok(self.call(move |s, now| s.http_request(now, req)).await??)
    }

    /// Pushes content upstream.
    pub async fn push(&self, content: Vec<u8>, ack: AckMode) -> Result<Option<RequestId>, Error> {
        Ok(self.call(move |s, now| s.push(now, content, ack)).await??)
    }

    /// Acknowledges a (biz-ack) push.
    pub async fn ack(&self, push_session_id: i32) -> Result<(), Error> {
        Ok(self.call(move |s, now| s.ack(now, push_session_id)).await??)
    }

    /// The session's stored session (for a later fast connect), if it has one.
    pub async fn stored_session(&self) -> Result<Option<StoredSession>, Error> {
        self.call(|s, _| s.stored_session().cloned()).await
    }

    /// Closes the connection and waits for the driver task to end.
    pub async fn close(mut self) -> Closed {
        let (tx, _) = mpsc::unbounded_channel();
        // Dropping the call sender makes the driver stop.
        self.calls = tx;
        self.closed().await
    }
}

/// Runs until the connection ends; never panics on network data.
async fn drive<T: Transport>(
    mut stream: T,
    mut session: ClientSession,
    mut calls: mpsc::UnboundedReceiver<Call>,
    events: mpsc::UnboundedSender<ClientEvent>,
    timers: bool,
) -> Closed {
    let mut buf = Vec::new();
    loop {
        if let Err(e) = flush(&mut stream, &mut session).await {
            return Closed::Io(e.to_string());
        }
        let mut closing = None;
        while let Some(e) = session.poll_event() {
            if matches!(e, ClientEvent::ConnectionDead) || matches!(e, ClientEvent::ConnectFailed(_)) {
                closing = Some(format!("{e:?}"));
            }
            let _ = events.send(e);
        }
        // Auto acks are queued while events are taken.
        if let Err(e) = flush(&mut stream, &mut session).await {
            return Closed::Io(e.to_string());
        }
        if let Some(why) = closing {
            session.handle_disconnected(now_ms());
            while let Some(e) = session.poll_event() {
                let _ = events.send(e);
            }
            return Closed::BySession(why);
        }
        let wake = if timers { session.poll_timeout() } else { None };
        let sleep = wake.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        tokio::select! {
            r = stream.recv(&mut buf) => match r {
                Ok(false) => {
                    session.handle_disconnected(now_ms());
                    while let Some(e) = session.poll_event() {
                        let _ = events.send(e);
                    }
                    return Closed::ByPeer;
                }
                Ok(true) => {
                    let input = std::mem::take(&mut buf);
                    let handled = session.handle_input(now_ms(), &input);
                    buf = input;
                    buf.clear();
                    if let Err(e) = handled {
                        while let Some(ev) = session.poll_event() {
                            let _ = events.send(ev);
                        }
                        session.handle_disconnected(now_ms());
                        return Closed::BySession(e.to_string());
                    }
                }
                Err(e) => return Closed::Io(e.to_string()),
            },
            call = calls.recv() => match call {
                Some(f) => f(&mut session, now_ms()),
                None => {
                    let _ = stream.close().await;
                    return Closed::Locally;
                }
            },
            () = sleep_opt(sleep) => session.handle_timeout(now_ms()),
        }
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn flush<T: Transport>(stream: &mut T, session: &mut ClientSession) -> std::io::Result<()> {
    let mut out = Vec::new();
    while let Some(b) = session.poll_transmit() {
        out.push(b);
    }
    if !out.is_empty() {
        stream.send(out).await?;
    }
    Ok(())
}

/// Helper for tests: a biz-ack push is acked only when the application says so; this acks
/// every push whatever its mode (auto acks are already sent by the session).
pub async fn ack_if_biz(client: &NativeClient, event: &ClientEvent) -> Result<(), Error> {
    if let ClientEvent::Push(m) = event {
        if m.ack == AckMode::Biz {
            client.ack(m.session_id).await?;
        }
    }
    Ok(())
}
