//! One task per MPUSH connection. It only moves bytes and time in and out of the
//! [`ServerSession`] and reacts to its events: routing, push results, the HTTP proxy, the
//! upstream sink. Protocol rules live in `mpush-protocol`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use mpush_protocol::{AckMode, CloseReason, CryptoError, Flags, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::http_proxy::ProxyOutcome;
use crate::limits::Admission;
use crate::push::PushResult;
use crate::router::{split_tags, ConnHandle, ConnId};
use crate::sink::{Receipt, UpstreamMessage};
use crate::{now_ms, os_seed, Phase, Shared};

/// What other tasks ask of a connection task.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnCommand {
    /// Push content; the result arrives on `reply` (success once written for
    /// [`AckMode::None`], else when acked or timed out).
    Push {
        /// Content.
        content: Vec<u8>,
        /// Ack mode.
        ack: AckMode,
        /// Ack timeout, ms.
        timeout_ms: u64,
        /// Where the result goes.
        reply: oneshot::Sender<PushResult>,
    },
    /// Another connection bound `user_id` with this connection's client type.
    Kick {
        /// The user whose route moved away.
        user_id: String,
    },
    /// The answer to an HTTP-proxy request performed in a spawned task.
    HttpReply {
        /// The request's header session id.
        session_id: i32,
        /// What to answer.
        outcome: ProxyOutcome,
    },
    /// Close the connection (after flushing).
    Close,
}

struct Conn {
    id: ConnId,
    peer: SocketAddr,
    tx: mpsc::Sender<ConnCommand>,
    /// Content bytes of the pushes queued in `tx`, shared with the pushers.
    queued_push_bytes: Arc<AtomicUsize>,
    session: ServerSession,
    shared: Arc<Shared>,
    /// Pushes waiting for an ack, by push session id, with the time their ack is due.
    awaiting_ack: HashMap<i32, (tokio::time::Instant, oneshot::Sender<PushResult>)>,
    /// No-ack pushes that succeed once the next flush completes.
    awaiting_write: Vec<oneshot::Sender<PushResult>>,
    /// Users routed to this connection. A fast connect makes the session forget its user but
    /// not the route (as MPUSH); routes are removed on unbind and at close.
    routes: HashSet<String>,
    /// This connection's slots in the connection caps.
    admission: Admission,
    /// The RSA decryption just requested by the session, for the loop to wait on.
    rsa_requested: Option<RsaResult>,
    /// HTTP-proxy requests under way. Dropped with the connection, which aborts them (and
    /// closes their upstream sockets).
    http_tasks: JoinSet<()>,
    /// Upstream auto-ack pushes handed to the sink and not yet answered: each resolves to
    /// (session id, stored). The Ack goes out only when stored.
    upstream: FuturesUnordered<BoxFuture<'static, (i32, bool)>>,
    /// The gateway is stopping: no new work is taken, and the connection closes as soon as
    /// what it has under way is done.
    draining: bool,
}

/// Where the plaintext of a deferred RSA decryption arrives.
type RsaResult = oneshot::Receiver<Result<Vec<u8>, CryptoError>>;

/// Serves one accepted MPUSH connection until it closes.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    early: Vec<u8>,
    admission: Admission,
    mut shutdown: watch::Receiver<Phase>,
) {
    let _ = stream.set_nodelay(true);
    let id = shared.next_conn_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Commands queued for this connection (pushes, kicks, HTTP replies), at most
    // `[limits] max-queued-commands`: a push storm at a slow client fails fast (push result
    // "failure") instead of growing memory; the bytes of the queued pushes are bounded by
    // `max-queued-push-bytes`. `validate` already refused values outside this range; the clamp
    // only keeps tokio's channel from panicking should that ever be skipped.
    let queue = shared.max_queued_commands.clamp(1, crate::config::MAX_QUEUED_COMMANDS);
    let (tx, mut rx) = mpsc::channel(queue);
    let session = ServerSession::new(shared.server_config.clone(), os_seed(), now_ms());
    let mut c = Conn {
        id,
        peer,
        tx,
        queued_push_bytes: Arc::default(),
        session,
        shared,
        awaiting_ack: HashMap::new(),
        awaiting_write: Vec::new(),
        routes: HashSet::new(),
        admission,
        rsa_requested: None,
        http_tasks: JoinSet::new(),
        upstream: FuturesUnordered::new(),
        draining: false,
    };
    let (reader, mut writer) = stream.into_split();
    // Bytes already read with a PROXY header are the start of the MPUSH stream.
    let mut reader = std::io::Cursor::new(early).chain(reader);
    let mut buf = vec![0u8; 16 * 1024];
    // While the session waits for an RSA plaintext the socket is not read: backpressure.
    let mut rsa_pending: Option<RsaResult> = None;
    tracing::debug!(conn = id, %peer, "connection accepted");
    let why = loop {
        c.process_events();
        if let Some(rx) = c.rsa_requested.take() {
            rsa_pending = Some(rx);
        }
        // A client that stops reading blocks this write, and so this task: its queue fills
        // and further pushes are refused (`failure`) until the write completes or times out.
        match tokio::time::timeout(c.shared.write_timeout, flush(&mut writer, &mut c.session)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break format!("write failed: {e}"),
            Err(_) => break "write timed out".to_owned(),
        }
        for reply in c.awaiting_write.drain(..) {
            let _ = reply.send(PushResult::Success);
        }
        match *shutdown.borrow() {
            Phase::Running => {}
            Phase::Draining => c.draining = true,
            Phase::Closing => c.session.close(CloseReason::Requested),
        }
        if c.draining && rsa_pending.is_none() && c.is_idle() {
            // Everything this connection had under way is done (and flushed above).
            c.session.close(CloseReason::Requested);
        }
        if c.session.is_closed() {
            break "closed by the session".to_owned();
        }
        let sleep = c.session.poll_timeout().map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
        tokio::select! {
            r = reader.read(&mut buf), if rsa_pending.is_none() => match r {
                Ok(0) => break "closed by the client".to_owned(),
                Ok(n) => {
                    // The phase may have changed while this read was pending (select picks
                    // either branch when both are ready): input is judged by the current one.
                    if *shutdown.borrow() != Phase::Running {
                        c.draining = true;
                    }
                    if let Err(e) = c.session.handle_input(now_ms(), &buf[..n], &*c.shared.store) {
                        // Malformed input closes only this connection.
                        c.process_events();
                        break format!("bad input: {e}");
                    }
                }
                Err(e) => break format!("read failed: {e}"),
            },
            cmd = rx.recv() => {
                if let Some(cmd) = cmd {
                    c.handle_command(cmd);
                }
            }
            plain = rsa_wait(&mut rsa_pending) => {
                rsa_pending = None;
                match plain {
                    Ok(plain) => {
                        if let Err(e) = c.session.rsa_decrypted(now_ms(), plain, &*c.shared.store) {
                            c.process_events();
                            break format!("bad input: {e}");
                        }
                    }
                    Err(_) => c.session.close(CloseReason::Requested),
                }
            }
            // Finished HTTP-proxy tasks are reaped as they end, so a draining connection
            // sees at once that it has nothing left under way.
            Some(_) = c.http_tasks.join_next(), if !c.http_tasks.is_empty() => {}
            Some((session_id, stored)) = c.upstream.next(), if !c.upstream.is_empty() => {
                c.upstream_answered(session_id, stored);
            }
            () = sleep_opt(sleep) => c.session.handle_timeout(now_ms()),
            changed = shutdown.changed() => {
                // The phase itself is read at the top of the loop; a gateway gone is a close.
                if changed.is_err() {
                    c.session.close(CloseReason::Requested);
                }
            }
        }
    };
    tracing::debug!(conn = id, %peer, reason = %why, "connection closed");
    let _ = writer.shutdown().await;
    // `Conn`'s Drop gives back its routes and slots, here or when a panic unwinds the task.
}

async fn rsa_wait(rx: &mut Option<RsaResult>) -> Result<Result<Vec<u8>, CryptoError>, oneshot::error::RecvError> {
    match rx {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn flush(writer: &mut OwnedWriteHalf, session: &mut ServerSession) -> std::io::Result<()> {
    let mut out = Vec::new();
    while let Some(b) = session.poll_transmit() {
        out.extend_from_slice(&b);
    }
    if !out.is_empty() {
        writer.write_all(&out).await?;
    }
    Ok(())
}

impl Conn {
    fn handle(&self) -> Option<ConnHandle> {
        let client = self.session.client()?;
        Some(ConnHandle {
            id: self.id,
            tx: self.tx.clone(),
            peer: self.peer,
            device_id: client.device_id.clone(),
            client_type: client.client_type,
            queued_push_bytes: self.queued_push_bytes.clone(),
        })
    }

    fn process_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            self.on_event(e);
        }
    }

    fn on_event(&mut self, e: ServerEvent) {
        match e {
            ServerEvent::HandshakeOk { client, heartbeat, .. } => {
                self.admission.authenticated();
                tracing::debug!(conn = self.id, device = %client.device_id, heartbeat, "handshake ok");
            }
            ServerEvent::FastConnected { client, heartbeat } => {
                self.admission.authenticated();
                tracing::debug!(conn = self.id, device = %client.device_id, heartbeat, "fast connected");
            }
            ServerEvent::Bound { user_id, tags, .. } => {
                let Some(handle) = self.handle() else { return };
                tracing::debug!(conn = self.id, user = %user_id, "bound");
                self.routes.insert(user_id.clone());
                if let Some(old) = self.shared.router.bind(&user_id, handle, split_tags(tags.as_deref())) {
                    // MPUSH kicks the connection the user's route pointed to (same client
                    // type); it stays open but no longer receives the user's pushes. After a
                    // second fast connect that is this very connection.
                    tracing::info!(user = %user_id, old = old.id, new = self.id, "kicking the route's previous connection");
                    if old.id == self.id {
                        let _ = self.session.kick_user(now_ms(), &user_id);
                    } else {
                        let _ = old.tx.try_send(ConnCommand::Kick { user_id });
                    }
                }
            }
            ServerEvent::TagsChanged { user_id, tags } => {
                self.shared.router.set_tags(&user_id, self.id, split_tags(tags.as_deref()));
            }
            ServerEvent::Unbound { user_id } => {
                self.shared.router.unbind(&user_id, self.id);
                self.routes.remove(&user_id);
            }
            ServerEvent::UpstreamPush { session_id, content, flags } => {
                let auto_ack = flags.contains(Flags::AUTO_ACK);
                if auto_ack && self.draining {
                    // Stopping: not taken and not acked, so the client sends it again to the
                    // next gateway; taking it would keep this connection busy to the deadline.
                    tracing::debug!(conn = self.id, session_id, "draining: upstream push not taken, not acked");
                    return;
                }
                let device_id = self.session.client().map(|c| c.device_id.clone()).unwrap_or_default();
                let user_id = self.session.user_id().map(str::to_owned);
                let (receipt, stored) = Receipt::new();
                self.shared.sink.deliver(UpstreamMessage { user_id, device_id, session_id, content }, receipt);
                // MPUSH acks AUTO_ACK pushes only (a BIZ_ACK one never); the gateway does so
                // once the sink has the push, so an acked push is never lost.
                if auto_ack {
                    self.upstream.push(Box::pin(async move { (session_id, stored.await.unwrap_or(false)) }));
                }
            }
            ServerEvent::PushAcked { session_id } => {
                if let Some((_, reply)) = self.awaiting_ack.remove(&session_id) {
                    let _ = reply.send(PushResult::Success);
                }
            }
            ServerEvent::PushAckTimeout { session_id } => {
                if let Some((_, reply)) = self.awaiting_ack.remove(&session_id) {
                    let _ = reply.send(PushResult::Timeout);
                }
            }
            ServerEvent::HttpRequest { session_id, request } => {
                // Finished requests (their replies already queued) no longer count.
                while self.http_tasks.try_join_next().is_some() {}
                let proxy = self.shared.http_proxy.clone();
                if self.draining {
                    // Stopping: a new request would only be cut short at the drain deadline.
                    if let Err(e) = self.session.http_error(now_ms(), session_id, 503, "Service Unavailable") {
                        tracing::debug!(conn = self.id, error = %e, "http reply dropped");
                    }
                    return;
                }
                if self.http_tasks.len() >= proxy.max_in_flight() {
                    // Gateway-specific cap: answered at once, raw, like MPUSH's own failures.
                    tracing::info!(conn = self.id, "http proxy: too many requests in flight, 503");
                    if let Err(e) = self.session.http_error(now_ms(), session_id, 503, "Service Unavailable") {
                        tracing::debug!(conn = self.id, error = %e, "http reply dropped");
                    }
                    return;
                }
                let tx = self.tx.clone();
                let peer = self.peer;
                self.http_tasks.spawn(async move {
                    let outcome = proxy.perform(request, peer).await;
                    let _ = tx.send(ConnCommand::HttpReply { session_id, outcome }).await;
                });
            }
            ServerEvent::RsaDecryptNeeded { ciphertext } => {
                let (mut tx, rx) = oneshot::channel();
                let permits = self.shared.rsa_permits.clone();
                let config = self.shared.server_config.clone();
                let peer = crate::limits::peer_key(self.peer.ip());
                tokio::spawn(async move {
                    // At most `rsa-workers` private-key operations at once, on blocking
                    // threads, taken in turn by peer: a handshake flood queues here instead
                    // of stalling the workers that serve live connections, and mostly delays
                    // its own handshakes.
                    let permit = tokio::select! {
                        p = permits.acquire_owned(peer) => p,
                        // The connection is gone: give up the place (else a client that
                        // connects, sends a handshake and closes in a loop piles up waiters).
                        () = tx.closed() => return,
                    };
                    let Ok(_permit) = permit else { return };
                    if tx.is_closed() {
                        return; // the connection is gone: skip the work
                    }
                    let work = tokio::task::spawn_blocking(move || config.private_key.decrypt(&ciphertext));
                    if let Ok(plain) = work.await {
                        let _ = tx.send(plain);
                    }
                });
                self.rsa_requested = Some(rx);
            }
            ServerEvent::Close { reason } => {
                tracing::debug!(conn = self.id, ?reason, "session closing");
            }
            other => tracing::debug!(conn = self.id, event = ?other, "unhandled session event"),
        }
    }

    fn handle_command(&mut self, cmd: ConnCommand) {
        let now = now_ms();
        if let ConnCommand::Push { content, .. } = &cmd {
            // Out of the queue: its bytes no longer count against `max-queued-push-bytes`.
            let n = content.len();
            let _ = self
                .queued_push_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(n)));
        }
        match cmd {
            ConnCommand::Push { reply, .. } if self.draining => {
                // Stopping: not written, so a failure the pusher can retry elsewhere or later.
                let _ = reply.send(PushResult::Failure);
            }
            ConnCommand::Push { content, ack, timeout_ms, reply } => {
                // One id sequence for the whole server, as MPUSH.
                let id = self.shared.next_push_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match self.session.push_with_id(now, id, content, ack, timeout_ms) {
                    Ok(()) if ack == AckMode::None => self.awaiting_write.push(reply),
                    Ok(()) => {
                        let due = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
                        self.awaiting_ack.insert(id, (due, reply));
                    }
                    Err(_) => {
                        let _ = reply.send(PushResult::Failure);
                    }
                }
            }
            ConnCommand::Kick { user_id } => {
                let _ = self.session.kick_user(now, &user_id);
            }
            ConnCommand::HttpReply { session_id, outcome } => {
                let r = match outcome {
                    ProxyOutcome::Response(resp) => self.session.http_response(now, session_id, &resp),
                    ProxyOutcome::Error { status, reason } => self.session.http_error(now, session_id, status, reason),
                    ProxyOutcome::NoResponse => Ok(()),
                };
                if let Err(e) = r {
                    tracing::debug!(conn = self.id, error = %e, "http reply dropped");
                }
            }
            ConnCommand::Close => self.session.close(CloseReason::Requested),
        }
    }

    /// The sink answered an upstream auto-ack push: ack it if stored.
    fn upstream_answered(&mut self, session_id: i32, stored: bool) {
        if !stored {
            // No ack: the client's own ack timeout makes it send the push again.
            tracing::info!(conn = self.id, session_id, "upstream push not stored: not acked");
        } else if let Err(e) = self.session.ack_upstream(now_ms(), session_id) {
            tracing::debug!(conn = self.id, session_id, error = %e, "upstream ack dropped");
        }
    }

    /// Nothing under way: no push waiting for its write or ack, no upstream push waiting for
    /// the sink, no HTTP-proxy request.
    fn is_idle(&mut self) -> bool {
        while self.http_tasks.try_join_next().is_some() {}
        self.awaiting_ack.is_empty()
            && self.awaiting_write.is_empty()
            && self.upstream.is_empty()
            && self.http_tasks.is_empty()
    }
}

/// Gives back what the connection holds in shared state, however its task ends: a normal
/// close, or a panic unwinding it (its [`Admission`] slots go back by their own Drop).
impl Drop for Conn {
    fn drop(&mut self) {
        // The client is gone: its HTTP-proxy requests stop, their upstream sockets close.
        self.http_tasks.abort_all();
        for user in self.routes.drain() {
            self.shared.router.unbind(&user, self.id);
        }
        // MPUSH keeps a push's ack task after the connection closed: it ends as a timeout
        // when its time is up, not as a failure. Without a runtime (it is shutting down)
        // the timeout is reported at once.
        let runtime = tokio::runtime::Handle::try_current().ok();
        for (_, (due, reply)) in self.awaiting_ack.drain() {
            match &runtime {
                Some(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep_until(due).await;
                        let _ = reply.send(PushResult::Timeout);
                    });
                }
                None => {
                    let _ = reply.send(PushResult::Timeout);
                }
            }
        }
        // A no-ack push whose write did not complete failed.
        for reply in self.awaiting_write.drain(..) {
            let _ = reply.send(PushResult::Failure);
        }
    }
}
