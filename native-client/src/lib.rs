//! # mpush-native-client
//!
//! A tokio driver around [`mpush_protocol::ClientSession`]: one task per connection that only
//! moves bytes and time in and out of the sans-IO session, as the Android/Java SDK's
//! connection thread does. Tests and load generators use it to speak the native MPUSH byte
//! stream to a connection server (the Java MPUSH server or `mpush-gateway`).
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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpush_protocol::{
    AckMode, ClientConfig, ClientError, ClientEvent, ClientSession, HttpRequest, RequestId, StoredSession,
};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};

/// Milliseconds since the Unix epoch: the `now` every session call takes.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// 32 bytes from the operating system's CSPRNG, the seed a session needs.
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
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
async fn drive(
    mut stream: TcpStream,
    mut session: ClientSession,
    mut calls: mpsc::UnboundedReceiver<Call>,
    events: mpsc::UnboundedSender<ClientEvent>,
    timers: bool,
) -> Closed {
    let mut buf = vec![0u8; 16 * 1024];
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
            r = stream.read(&mut buf) => match r {
                Ok(0) => {
                    session.handle_disconnected(now_ms());
                    while let Some(e) = session.poll_event() {
                        let _ = events.send(e);
                    }
                    return Closed::ByPeer;
                }
                Ok(n) => {
                    if let Err(e) = session.handle_input(now_ms(), &buf[..n]) {
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
                    let _ = stream.shutdown().await;
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

async fn flush(stream: &mut TcpStream, session: &mut ClientSession) -> std::io::Result<()> {
    let mut out = Vec::new();
    while let Some(b) = session.poll_transmit() {
        out.extend_from_slice(&b);
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
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
