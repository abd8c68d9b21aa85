//! One WebSocket session relayed to one upstream TCP connection, in one task.
//!
//! The session is one hand-written poll loop over both sockets, the shutdown signal and one
//! timer, on the lean WebSocket framing of [`crate::ws`]. Buffers exist only while bytes are in
//! flight: every read goes into a per-thread scratch buffer, the packets cut from it are framed
//! into a second per-thread buffer and written with one system call, and only what is left over
//! (a partly received packet or frame, or bytes the peer's socket did not take) is copied into
//! the session, released again once drained. An idle session holds its two sockets, its timer
//! and a few empty `Vec`s, nothing allocated.
//!
//! Backpressure: while bytes for one side wait in the session, the other side is not read (a
//! slow browser slows reading from the MPUSH server, and the reverse), so at most one read's
//! worth of packets is buffered per direction. There are no queues.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use mpush_protocol::frame::{frame_len, Command, Flags, FrameError, Packet, HEADER_LEN};
use mpush_protocol::message::{HttpResponse, Message as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::close::CloseReason;
use crate::config::{Config, HttpProxyMode};
use crate::metrics::Metrics;
use crate::ws::{self, opcode, FrameViolation};

/// Size of the per-thread read buffer: one read from either socket.
const READ_SIZE: usize = 16 * 1024;
/// Smallest upstream read into the buffer of a partly received packet.
const READ_CHUNK: usize = 4 * 1024;
/// Largest single upstream read while a big packet is coming in.
const MAX_READ_CHUNK: usize = 256 * 1024;
/// The per-thread output buffer is shrunk back to this after a large packet went through it.
const OUTPUT_KEEP: usize = 4 * READ_SIZE;
/// How long a close handshake may take before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// What to do with one binary message from the browser.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Exactly one valid packet: write it to the upstream as is.
    Forward,
    /// An HTTP-proxy request in deny mode: answer 403 with this header session id.
    Deny(i32),
    /// Not acceptable: close the session.
    Reject(CloseReason),
}

/// Checks that `data` is exactly one MPUSH packet (a heartbeat byte or one whole frame) with a
/// known command and a body of at most `max_body` bytes. Never decrypts.
pub(crate) fn check_packet(data: &[u8], max_body: usize, mode: HttpProxyMode) -> Inbound {
    match frame_len(data, max_body) {
        Ok(Some(n)) if n == data.len() => {}
        Ok(_) => return Inbound::Reject(CloseReason::BadLength),
        Err(FrameError::BodyTooLarge { .. }) => return Inbound::Reject(CloseReason::PacketTooLarge),
        Err(_) => return Inbound::Reject(CloseReason::BadLength),
    }
    if data.len() == 1 {
        return Inbound::Forward; // heartbeat
    }
    let Some(&cmd) = data.get(4) else { return Inbound::Reject(CloseReason::BadLength) };
    let cmd = Command(cmd);
    if !cmd.is_known() {
        return Inbound::Reject(CloseReason::UnknownCommand);
    }
    if cmd == Command::HTTP_PROXY && mode == HttpProxyMode::Deny {
        let id = data.get(8..12).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(0, i32::from_be_bytes);
        return Inbound::Deny(id);
    }
    Inbound::Forward
}

/// The unencrypted HttpResponse 403 "Forbidden" that answers a denied HTTP-proxy request.
pub(crate) fn deny_answer(session_id: i32) -> Bytes {
    let resp = HttpResponse {
        status_code: 403,
        reason_phrase: Some("Forbidden".into()),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let packet = Packet { cmd: Command::HTTP_PROXY, flags: Flags::NONE, session_id, body: resp.encode() };
    Bytes::from(packet.to_bytes())
}

/// What a session needs from the server.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub shutdown: &'a CancellationToken,
}

/// Per-thread buffers that a session borrows for the length of one poll, so that no session
/// keeps a buffer of its own between packets.
struct Scratch {
    /// One read from either socket. Zeroed once per thread, never per read.
    input: Vec<u8>,
    /// The frames (or packets) cut from one read, written with one system call.
    output: Vec<u8>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { input: vec![0; READ_SIZE], output: Vec::with_capacity(READ_SIZE + READ_SIZE / 4) }
    }
}

thread_local! {
    /// Taken out for the length of one poll and put back; `None` only while in use.
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's scratch buffers (`output` empty), created on first use. Polls
/// do not nest, so they are always there; were they not (or the thread exiting), a fresh pair
/// is used.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.try_with(Cell::take).ok().flatten().unwrap_or_else(|| Box::new(Scratch::new()));
    s.output.clear();
    let r = f(&mut s);
    if s.output.capacity() > OUTPUT_KEEP {
        // A large packet went through: do not keep its buffer for the thread's lifetime.
        s.output = Vec::with_capacity(READ_SIZE + READ_SIZE / 4);
    }
    let _ = SCRATCH.try_with(|c| c.set(Some(s)));
    r
}

/// The browser's side of a session: the upgraded connection and its framing state.
pub(crate) struct Browser {
    io: BrowserIo,
    /// Bytes of a partly received frame; empty (unallocated) between frames.
    partial: Vec<u8>,
    /// Payload bytes still to discard while waiting for the close reply (an oversized frame).
    skip: u64,
    /// A fragmented binary message being put together (browsers send whole messages).
    message: Option<Vec<u8>>,
    /// Bytes the socket has not taken yet; empty (unallocated) while it keeps up.
    backlog: Vec<u8>,
    /// When `backlog` started waiting: the send deadline runs from here.
    backlog_since: Option<Instant>,
    /// Written but not yet flushed (TLS holds records until flushed).
    unflushed: bool,
    /// The browser's close frame: `Some(code)`, echoed in the reply (`Some(None)`: no code).
    peer_close: Option<Option<u16>>,
}

/// The upgraded connection.
enum BrowserIo {
    /// Plain WebSocket: the accepted socket itself, taken back from hyper.
    Tcp(TcpStream),
    /// Anything else (TLS): hyper's upgraded connection.
    Upgraded(TokioIo<Upgraded>),
}

impl BrowserIo {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            BrowserIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            BrowserIo::Upgraded(u) => Pin::new(u).poll_read(cx, buf),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let n = match self {
            BrowserIo::Tcp(s) => ready!(Pin::new(s).poll_write(cx, data))?,
            BrowserIo::Upgraded(u) => ready!(Pin::new(u).poll_write(cx, data))?,
        };
        if n == 0 && !data.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            BrowserIo::Tcp(_) => Poll::Ready(Ok(())), // nothing buffered above the socket
            BrowserIo::Upgraded(u) => Pin::new(u).poll_flush(cx),
        }
    }
}

impl Browser {
    /// Takes over an upgraded connection. A plain TCP connection is taken back out of hyper's
    /// wrapper (one less indirection per read and write); bytes the browser sent right behind
    /// the upgrade request are kept as the start of the first frame.
    pub(crate) fn new(upgraded: Upgraded) -> Browser {
        let (io, partial) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (BrowserIo::Tcp(parts.io.into_inner()), parts.read_buf.to_vec()),
            Err(upgraded) => (BrowserIo::Upgraded(TokioIo::new(upgraded)), Vec::new()),
        };
        Browser {
            io,
            partial,
            skip: 0,
            message: None,
            backlog: Vec::new(),
            backlog_since: None,
            unflushed: false,
            peer_close: None,
        }
    }

    /// Whether bytes wait to be written or flushed.
    fn wants_write(&self) -> bool {
        !self.backlog.is_empty() || self.unflushed
    }

    /// Queues a frame behind anything already waiting.
    fn queue_frame(&mut self, op: u8, payload: &[u8], now: Instant) {
        ws::put_frame(&mut self.backlog, op, payload);
        self.backlog_since.get_or_insert(now);
    }

    /// Writes `data` now if nothing waits and the socket takes it; queues what it does not.
    fn send(&mut self, cx: &mut Context<'_>, data: &[u8], now: Instant) -> io::Result<()> {
        let mut rest = data;
        if self.backlog.is_empty() {
            if let Poll::Ready(n) = self.io.poll_write(cx, data) {
                rest = data.get(n?..).unwrap_or_default();
            }
            self.unflushed = matches!(self.io, BrowserIo::Upgraded(_));
        }
        if !rest.is_empty() {
            self.backlog.extend_from_slice(rest);
            self.backlog_since.get_or_insert(now);
        }
        Ok(())
    }

    /// Writes and flushes the backlog; releases its buffer once empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.backlog.is_empty() {
            let n = ready!(self.io.poll_write(cx, &self.backlog))?;
            self.backlog.drain(..n);
            self.unflushed = matches!(self.io, BrowserIo::Upgraded(_));
        }
        self.backlog = Vec::new();
        self.backlog_since = None;
        if self.unflushed {
            ready!(self.io.poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// After our close frame: reads and drops frames until the browser's close frame, the end
    /// of the stream or broken framing, skipping payloads without buffering them.
    fn poll_close_reply(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.scan_for_close() {
                return Poll::Ready(());
            }
            let read = with_scratch(|s| {
                let mut rb = ReadBuf::new(&mut s.input);
                match self.io.poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(_)) => Poll::Ready(false),
                    Poll::Ready(Ok(())) => {
                        let data = rb.filled();
                        let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(data.len());
                        self.skip -= skipped as u64;
                        self.partial.extend_from_slice(&data[skipped..]);
                        Poll::Ready(!data.is_empty())
                    }
                }
            });
            if !ready!(read) {
                return Poll::Ready(());
            }
        }
    }

    /// Drops the whole frames in `partial` (and arranges to skip the rest of a long one);
    /// true once a close frame is seen or the framing is broken.
    fn scan_for_close(&mut self) -> bool {
        let mut pos = 0;
        let done = loop {
            let rest = self.partial.get(pos..).unwrap_or_default();
            match ws::parse_header(rest) {
                Err(_) => break true,
                Ok(None) => break false,
                Ok(Some(h)) if h.opcode == opcode::CLOSE => break true,
                Ok(Some(h)) => {
                    let total = h.header_len as u64 + h.payload_len;
                    match usize::try_from(total) {
                        Ok(t) if t <= rest.len() => pos += t,
                        _ => {
                            self.skip = total - rest.len() as u64;
                            pos = self.partial.len();
                            break false;
                        }
                    }
                }
            }
        };
        self.partial.drain(..pos);
        if self.partial.is_empty() {
            self.partial = Vec::new();
        }
        done
    }
}

/// The relay's state besides the browser connection.
struct Relay<'a> {
    cfg: &'a Config,
    metrics: &'a Metrics,
    /// Largest message the browser may send: one packet with the largest allowed body.
    max_message: usize,
    /// A partly received upstream packet; empty (unallocated) between packets.
    up_partial: BytesMut,
    /// Bytes the upstream socket has not taken yet; empty (unallocated) while it keeps up.
    up_backlog: Vec<u8>,
    /// When `up_backlog` started waiting.
    up_backlog_since: Option<Instant>,
    /// Last packet either way (idle timeout).
    last_packet: Instant,
    /// Last bytes from the browser (keepalive).
    last_heard: Instant,
    /// When the unanswered ping went out.
    ping_sent: Option<Instant>,
}

/// Relays packets between the browser and the upstream until one side ends, a rule is broken
/// or the proxy shuts down; returns why. The caller sends the close frame ([`close`]).
///
/// Per packet: one read and one write system call (several packets cut from one read go out
/// in one write), no allocation, no timer touched (the timer only fires at the idle or
/// keepalive deadline and then re-arms from the recorded times; a send deadline is armed only
/// when a socket does not take a write at once).
pub(crate) async fn relay(browser: &mut Browser, upstream: &mut TcpStream, ctx: &Ctx<'_>) -> CloseReason {
    let cfg = ctx.config;
    let now = Instant::now();
    let mut relay = Relay {
        cfg,
        metrics: ctx.metrics,
        max_message: HEADER_LEN.saturating_add(cfg.upstream_max_body),
        up_partial: BytesMut::new(),
        up_backlog: Vec::new(),
        up_backlog_since: None,
        last_packet: now,
        last_heard: now,
        ping_sent: None,
    };
    // Frames that arrived together with the upgrade request go out with the first write.
    if !browser.partial.is_empty() {
        let mut buf = std::mem::take(&mut browser.partial);
        let mut out = Vec::new();
        let (used, r) = relay.on_frames(&mut buf, browser, &mut out, now);
        browser.partial = buf.split_off(used);
        if !out.is_empty() {
            relay.up_backlog = out;
            relay.up_backlog_since = Some(now);
        }
        if let Err(reason) = r {
            return reason;
        }
    }
    let timer = sleep_until(now + cfg.ping_interval.min(cfg.idle_timeout));
    tokio::pin!(timer);
    // A child token has its own lock and waiter list, so polling it once per wake-up does not
    // contend with other sessions.
    let shutdown_token = ctx.shutdown.child_token();
    let shutdown = shutdown_token.cancelled();
    tokio::pin!(shutdown);
    poll_fn(|cx| {
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(CloseReason::GoingAway);
        }
        relay.poll(cx, browser, upstream, timer.as_mut())
    })
    .await
}

impl Relay<'_> {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        b: &mut Browser,
        up: &mut TcpStream,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<CloseReason> {
        loop {
            let mut progress = false;
            if b.wants_write() {
                match b.poll_drain(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(_)) => return Poll::Ready(CloseReason::ClientClosed),
                    Poll::Pending => {}
                }
            }
            if !self.up_backlog.is_empty() {
                match self.poll_drain_upstream(cx, up) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(_)) => return Poll::Ready(CloseReason::UpstreamError),
                    Poll::Pending => {}
                }
            }
            // Backpressure: read a side only while everything bound for the other was taken
            // (and the browser takes our pongs).
            if self.up_backlog.is_empty() && !b.wants_write() {
                match self.poll_browser(cx, b, up, timer.as_mut()) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(r)) => return Poll::Ready(r),
                    Poll::Pending => {}
                }
            }
            if !b.wants_write() {
                match self.poll_upstream(cx, b, up) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(r)) => return Poll::Ready(r),
                    Poll::Pending => {}
                }
            }
            self.arm_send_deadline(b, timer.as_mut());
            if timer.as_mut().poll(cx).is_ready() {
                if let Err(r) = self.on_timer(b, timer.as_mut()) {
                    return Poll::Ready(r);
                }
                progress = true;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Brings the timer forward to a send deadline, if bytes wait in either direction.
    fn arm_send_deadline(&self, b: &Browser, timer: Pin<&mut Sleep>) {
        let due = match (b.backlog_since, self.up_backlog_since) {
            (None, None) => return,
            (Some(t), None) | (None, Some(t)) => t,
            (Some(a), Some(c)) => a.min(c),
        } + self.cfg.send_timeout;
        if due < timer.deadline() {
            timer.reset(due);
        }
    }

    /// One read from the browser: every whole packet in it goes upstream in one write.
    fn poll_browser(
        &mut self,
        cx: &mut Context<'_>,
        b: &mut Browser,
        up: &mut TcpStream,
        timer: Pin<&mut Sleep>,
    ) -> Poll<Result<(), CloseReason>> {
        with_scratch(|s| {
            let mut rb = ReadBuf::new(&mut s.input);
            if ready!(b.io.poll_read(cx, &mut rb)).is_err() {
                return Poll::Ready(Err(CloseReason::ClientClosed));
            }
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Err(CloseReason::ClientClosed));
            }
            let now = Instant::now();
            self.heard(now, timer);
            let Scratch { input, output } = s;
            let result = if b.partial.is_empty() {
                let (used, r) = self.on_frames(&mut input[..n], b, output, now);
                b.partial.extend_from_slice(&input[used..n]);
                r
            } else {
                let mut buf = std::mem::take(&mut b.partial);
                buf.extend_from_slice(&input[..n]);
                let (used, r) = self.on_frames(&mut buf, b, output, now);
                buf.drain(..used);
                if !buf.is_empty() {
                    b.partial = buf; // else dropped: the buffer is released
                }
                r
            };
            // Packets before a refused frame still go out, as they were valid.
            if !output.is_empty() {
                let rest = match Pin::new(&mut *up).poll_write(cx, output) {
                    Poll::Ready(Ok(k)) => output.get(k..).unwrap_or_default(),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(CloseReason::UpstreamError)),
                    Poll::Pending => &output[..],
                };
                if !rest.is_empty() {
                    self.up_backlog.extend_from_slice(rest);
                    self.up_backlog_since = Some(now);
                }
            }
            Poll::Ready(result)
        })
    }

    /// The browser was heard from: a pending ping is answered, the keepalive deadline moves.
    fn heard(&mut self, now: Instant, timer: Pin<&mut Sleep>) {
        self.last_heard = now;
        if self.ping_sent.take().is_some() {
            // The keepalive deadline may move earlier than the armed one.
            let next = (now + self.cfg.ping_interval).min(self.last_packet + self.cfg.idle_timeout);
            if next < timer.deadline() {
                timer.reset(next);
            }
        }
    }

    /// Handles the whole frames at the start of `buf` (unmasking in place); packets for the
    /// upstream are appended to `out`, pongs and deny answers queued for the browser. Returns
    /// how many bytes were used: on an error, the offending frame is left unused, so the close
    /// handshake can skip the rest of it.
    fn on_frames(
        &mut self,
        buf: &mut [u8],
        b: &mut Browser,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> (usize, Result<(), CloseReason>) {
        let mut pos = 0;
        loop {
            let rest = buf.get_mut(pos..).unwrap_or_default();
            let h = match ws::parse_header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => return (pos, Ok(())),
                Err(FrameViolation::ReservedBits | FrameViolation::UnknownOpcode(_))
                | Err(FrameViolation::Unmasked | FrameViolation::BadControlFrame | FrameViolation::BadLength) => {
                    return (pos, Err(CloseReason::WebSocketError))
                }
            };
            let gathered = b.message.as_ref().map_or(0, Vec::len) as u64;
            if !h.is_control() && gathered + h.payload_len > self.max_message as u64 {
                return (pos, Err(CloseReason::PacketTooLarge));
            }
            // Within max_message (or 125 for control frames), so it fits a usize.
            let total = h.header_len + h.payload_len as usize;
            let Some(payload) = rest.get_mut(h.header_len..total) else { return (pos, Ok(())) };
            ws::unmask(payload, h.mask);
            pos += total;
            let handled = match h.opcode {
                opcode::TEXT => Err(CloseReason::TextFrame),
                opcode::BINARY | opcode::CONTINUATION if (h.opcode == opcode::BINARY) == b.message.is_some() => {
                    // A new message inside a fragmented one, or a continuation of nothing.
                    Err(CloseReason::WebSocketError)
                }
                opcode::BINARY if h.fin => self.on_message(payload, b, out, now),
                opcode::BINARY => {
                    b.message = Some(payload.to_vec());
                    Ok(())
                }
                opcode::CONTINUATION => match b.message.as_mut() {
                    Some(m) if !h.fin => {
                        m.extend_from_slice(payload);
                        Ok(())
                    }
                    Some(m) => {
                        m.extend_from_slice(payload);
                        let whole = b.message.take().unwrap_or_default();
                        self.on_message(&whole, b, out, now)
                    }
                    None => Err(CloseReason::WebSocketError),
                },
                opcode::CLOSE => match ws::check_close_payload(payload) {
                    Ok(code) => {
                        b.peer_close = Some(code);
                        Err(CloseReason::ClientClosed)
                    }
                    Err(()) => Err(CloseReason::WebSocketError),
                },
                opcode::PING => {
                    b.queue_frame(opcode::PONG, payload, now);
                    Ok(())
                }
                opcode::PONG => Ok(()),
                _ => Err(CloseReason::WebSocketError), // parse_header admits no other opcode
            };
            if let Err(r) = handled {
                return (pos, Err(r));
            }
        }
    }

    /// One whole binary message from the browser.
    fn on_message(&mut self, data: &[u8], b: &mut Browser, out: &mut Vec<u8>, now: Instant) -> Result<(), CloseReason> {
        match check_packet(data, self.cfg.upstream_max_body, self.cfg.http_proxy) {
            Inbound::Forward => {
                out.extend_from_slice(data);
                self.metrics.upstream_packet(data.len());
            }
            Inbound::Deny(id) => {
                self.metrics.http_proxy_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = deny_answer(id);
                b.queue_frame(opcode::BINARY, &answer, now);
                self.metrics.downstream_packet(answer.len());
            }
            Inbound::Reject(r) => return Err(r),
        }
        self.last_packet = now;
        Ok(())
    }

    /// One read from the upstream: every whole packet in it goes to the browser, each as its
    /// own binary message, all in one write.
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
        b: &mut Browser,
        up: &mut TcpStream,
    ) -> Poll<Result<(), CloseReason>> {
        let max = self.cfg.downstream_max_body;
        with_scratch(|s| {
            let Scratch { input, output } = s;
            let cut = if self.up_partial.is_empty() {
                // `poll_read` clears readiness after a short read: no extra read ending in
                // `WouldBlock`.
                let mut rb = ReadBuf::new(input);
                if ready!(Pin::new(&mut *up).poll_read(cx, &mut rb)).is_err() {
                    return Poll::Ready(Err(CloseReason::UpstreamError));
                }
                let data = rb.filled();
                if data.is_empty() {
                    return Poll::Ready(Err(CloseReason::UpstreamClosed));
                }
                let cut = cut_packets(data, max, output);
                self.up_partial.extend_from_slice(&data[cut.used..]);
                cut
            } else {
                // Inside a packet: read into its buffer, sized for what is missing.
                let want = match frame_len(&self.up_partial, max) {
                    Ok(Some(n)) if n > self.up_partial.len() => {
                        (n - self.up_partial.len()).clamp(READ_CHUNK, MAX_READ_CHUNK)
                    }
                    _ => READ_CHUNK,
                };
                self.up_partial.reserve(want);
                let n = loop {
                    if ready!(up.poll_read_ready(cx)).is_err() {
                        return Poll::Ready(Err(CloseReason::UpstreamError));
                    }
                    match up.try_read_buf(&mut self.up_partial) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue, // readiness cleared
                        Err(_) => return Poll::Ready(Err(CloseReason::UpstreamError)),
                    }
                };
                if n == 0 {
                    return Poll::Ready(Err(CloseReason::UpstreamClosed));
                }
                if matches!(frame_len(&self.up_partial, max), Ok(Some(n)) if n > self.up_partial.len()) {
                    return Poll::Ready(Ok(())); // still incomplete
                }
                let buf = std::mem::take(&mut self.up_partial);
                let cut = cut_packets(&buf, max, output);
                if cut.used < buf.len() {
                    self.up_partial.extend_from_slice(&buf[cut.used..]);
                }
                cut
            };
            if cut.packets > 0 {
                let now = Instant::now();
                self.metrics.downstream_packets(cut.packets, cut.bytes);
                self.last_packet = now;
                if b.send(cx, output, now).is_err() {
                    return Poll::Ready(Err(CloseReason::ClientClosed));
                }
            }
            Poll::Ready(cut.result)
        })
    }

    fn poll_drain_upstream(&mut self, cx: &mut Context<'_>, up: &mut TcpStream) -> Poll<io::Result<()>> {
        while !self.up_backlog.is_empty() {
            let n = ready!(Pin::new(&mut *up).poll_write(cx, &self.up_backlog))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.up_backlog.drain(..n);
        }
        self.up_backlog = Vec::new();
        self.up_backlog_since = None;
        Poll::Ready(Ok(()))
    }

    /// The timer fired: a send, idle or keepalive deadline passed, or a ping is due.
    fn on_timer(&mut self, b: &mut Browser, timer: Pin<&mut Sleep>) -> Result<(), CloseReason> {
        let cfg = self.cfg;
        let now = Instant::now();
        if b.backlog_since.is_some_and(|t| now >= t + cfg.send_timeout) {
            return Err(CloseReason::SendTimeout);
        }
        if self.up_backlog_since.is_some_and(|t| now >= t + cfg.send_timeout) {
            return Err(CloseReason::UpstreamError);
        }
        if now >= self.last_packet + cfg.idle_timeout {
            return Err(CloseReason::IdleTimeout);
        }
        match self.ping_sent {
            Some(at) if now >= at + cfg.pong_timeout => return Err(CloseReason::KeepaliveTimeout),
            Some(_) => {}
            None if now >= self.last_heard + cfg.ping_interval => {
                b.queue_frame(opcode::PING, &[], now);
                self.ping_sent = Some(now);
            }
            None => {}
        }
        let keepalive = match self.ping_sent {
            Some(at) => at + cfg.pong_timeout,
            None => self.last_heard + cfg.ping_interval,
        };
        // Send deadlines are brought forward again by `arm_send_deadline`.
        timer.reset(keepalive.min(self.last_packet + cfg.idle_timeout));
        Ok(())
    }
}

/// What [`cut_packets`] did.
struct Cut {
    /// Bytes of the input used (whole packets); the rest starts a packet.
    used: usize,
    packets: u64,
    bytes: u64,
    /// `Err` if the stream cannot be cut further (bad length, body too large).
    result: Result<(), CloseReason>,
}

/// Frames every whole packet at the start of `data` as a binary message into `out`.
fn cut_packets(data: &[u8], max_body: usize, out: &mut Vec<u8>) -> Cut {
    let mut cut = Cut { used: 0, packets: 0, bytes: 0, result: Ok(()) };
    loop {
        let rest = data.get(cut.used..).unwrap_or_default();
        match frame_len(rest, max_body) {
            Err(_) => {
                cut.result = Err(CloseReason::UpstreamFraming);
                return cut;
            }
            Ok(Some(n)) if n <= rest.len() => {
                ws::put_frame(out, opcode::BINARY, &rest[..n]);
                cut.used += n;
                cut.packets += 1;
                cut.bytes += n as u64;
            }
            Ok(_) => return cut,
        }
    }
}

/// Ends the WebSocket side: sends the close frame for `reason` (or echoes the browser's) and
/// waits a moment for the browser's reply, so the frame is read before the TCP connection goes.
pub(crate) async fn close(b: &mut Browser, reason: CloseReason) {
    match (reason.code(), b.peer_close) {
        (Some(code), _) => ws::put_close(&mut b.backlog, code, reason.reason()),
        (None, Some(code)) => {
            let echo = code.map(u16::to_be_bytes);
            ws::put_frame(&mut b.backlog, opcode::CLOSE, echo.as_ref().map_or(&[][..], |c| &c[..]));
        }
        (None, None) => return, // the connection is gone: nothing to say
    }
    let sent = tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| b.poll_drain(cx))).await;
    if reason.code().is_none() || !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| b.poll_close_reply(cx))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpush_protocol::frame::{parse_frame, Frame, HEARTBEAT_BYTE};

    fn frame(cmd: u8, session_id: i32, body_len: usize) -> Vec<u8> {
        Packet { cmd: Command(cmd), flags: Flags::CRYPTO, session_id, body: vec![7; body_len] }.to_bytes()
    }

    #[test]
    fn accepts_exactly_one_packet() {
        let fwd = HttpProxyMode::Forward;
        assert_eq!(check_packet(&[HEARTBEAT_BYTE], 10, fwd), Inbound::Forward);
        assert_eq!(check_packet(&frame(15, 1, 10), 10, fwd), Inbound::Forward);
        assert_eq!(check_packet(&frame(12, 1, 0), 10, fwd), Inbound::Forward);
        let bad = CloseReason::BadLength;
        assert_eq!(check_packet(&[], 10, fwd), Inbound::Reject(bad));
        assert_eq!(check_packet(&[HEARTBEAT_BYTE, HEARTBEAT_BYTE], 10, fwd), Inbound::Reject(bad));
        assert_eq!(check_packet(&[0, 0, 0], 10, fwd), Inbound::Reject(bad));
        let mut two = frame(15, 1, 2);
        two.push(HEARTBEAT_BYTE);
        assert_eq!(check_packet(&two, 10, fwd), Inbound::Reject(bad));
        let short = frame(15, 1, 3);
        assert_eq!(check_packet(&short[..short.len() - 1], 10, fwd), Inbound::Reject(bad));
        assert_eq!(check_packet(&[0x80, 0, 0, 0, 15], 10, fwd), Inbound::Reject(bad));
        assert_eq!(check_packet(&frame(15, 1, 11), 10, fwd), Inbound::Reject(CloseReason::PacketTooLarge));
        assert_eq!(check_packet(&frame(0, 1, 1), 10, fwd), Inbound::Reject(CloseReason::UnknownCommand));
        assert_eq!(check_packet(&frame(25, 1, 1), 10, fwd), Inbound::Reject(CloseReason::UnknownCommand));
    }

    #[test]
    fn deny_mode_answers_http_proxy_requests_only() {
        let deny = HttpProxyMode::Deny;
        assert_eq!(check_packet(&frame(12, -77, 5), 10, deny), Inbound::Deny(-77));
        assert_eq!(check_packet(&frame(15, 3, 5), 10, deny), Inbound::Forward);
        let answer = deny_answer(-77);
        let Some((Frame::Packet(p), n)) = parse_frame(&answer, 100).unwrap() else { panic!("not a frame") };
        assert_eq!(n, answer.len());
        assert_eq!((p.cmd, p.flags, p.session_id), (Command::HTTP_PROXY, Flags::NONE, -77));
        let resp = HttpResponse::decode(&p.body).unwrap();
        assert_eq!((resp.status_code, resp.reason_phrase.as_deref()), (403, Some("Forbidden")));
    }
}
