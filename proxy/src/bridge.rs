//! One WebSocket session relayed to one upstream TCP connection, in one task.
//!
//! The loop waits on the browser, the upstream socket, the shutdown signal and one timer, and
//! handles one event at a time: while a packet is being written to one side, the other side is
//! not read. That is the backpressure: a slow browser slows reading from the upstream (and the
//! reverse), and at most one packet plus one read chunk is buffered per direction. Idle
//! sessions hold no read buffer at all: between packets the upstream is read into a stack
//! buffer and only what arrived is copied out; only a partly received packet is kept.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use mpush_protocol::frame::{frame_len, Command, Flags, FrameError, Packet};
use mpush_protocol::message::{HttpResponse, Message as _};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::close::CloseReason;
use crate::config::{Config, HttpProxyMode};
use crate::metrics::Metrics;

/// Upstream read between packets, into a stack buffer (not kept by the session).
const STACK_READ: usize = 16 * 1024;
/// Smallest upstream read into the buffer of a partly received packet.
const READ_CHUNK: usize = 4 * 1024;
/// Largest single upstream read while a big packet is coming in.
const MAX_READ_CHUNK: usize = 256 * 1024;
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

/// Relays packets between the browser and the upstream until one side ends, a rule is broken
/// or the proxy shuts down; returns why. The caller sends the close frame ([`close`]).
///
/// Per-packet cost is kept low: the timer is only re-armed when it fires (events move the
/// deadlines later, never earlier, except when a pong clears a pending ping, which is
/// checked), a send deadline is only created when a write does not complete at once, all
/// packets cut from one upstream read are fed to the WebSocket and flushed once under one
/// deadline, and the shutdown future is a per-session child token polled in place.
pub(crate) async fn relay<S>(ws: &mut S, upstream: &mut TcpStream, ctx: &Ctx<'_>) -> CloseReason
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let cfg = ctx.config;
    // Only a partly received packet is kept here; empty (unallocated) between packets.
    let mut pending = BytesMut::new();
    let mut last_packet = Instant::now();
    let mut last_heard = last_packet;
    let mut ping_sent: Option<Instant> = None;
    let timer = sleep_until(last_packet + cfg.ping_interval.min(cfg.idle_timeout));
    tokio::pin!(timer);
    // A child token has its own waiter list, so polling it does not contend with other sessions.
    let shutdown_token = ctx.shutdown.child_token();
    let shutdown = shutdown_token.cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return CloseReason::GoingAway,
            msg = ws.next() => {
                let now = Instant::now();
                last_heard = now;
                if ping_sent.take().is_some() {
                    // The keepalive deadline may move earlier than the armed one.
                    let next = (now + cfg.ping_interval).min(last_packet + cfg.idle_timeout);
                    if next < timer.deadline() {
                        timer.as_mut().reset(next);
                    }
                }
                let data = match msg {
                    None => return CloseReason::ClientClosed,
                    Some(Err(WsError::Capacity(_))) => return CloseReason::PacketTooLarge,
                    Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => return CloseReason::WebSocketError,
                    Some(Err(_)) => return CloseReason::ClientClosed,
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(Message::Text(_))) => return CloseReason::TextFrame,
                    Some(Ok(Message::Close(_))) => return CloseReason::ClientClosed,
                    Some(Ok(_)) => continue, // ping (answered by tungstenite) or pong
                };
                match check_packet(&data, cfg.upstream_max_body, cfg.http_proxy) {
                    Inbound::Forward => {
                        if write_upstream(upstream, &data, cfg.send_timeout).await.is_err() {
                            return CloseReason::UpstreamError;
                        }
                        ctx.metrics.upstream_packet(data.len());
                    }
                    Inbound::Deny(id) => {
                        ctx.metrics.http_proxy_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let answer = deny_answer(id);
                        let len = answer.len();
                        if let Err(r) = send(ws, answer, cfg.send_timeout).await {
                            return r;
                        }
                        ctx.metrics.downstream_packet(len);
                    }
                    Inbound::Reject(r) => return r,
                }
                last_packet = now;
            }
            read = poll_fn(|cx| poll_upstream(cx, upstream, &mut pending, cfg.downstream_max_body)) => {
                let chunk = match read {
                    Ok(Read::Eof) => return CloseReason::UpstreamClosed,
                    Ok(Read::Partial) => continue,
                    Ok(Read::Data(chunk)) => chunk,
                    Err(_) => return CloseReason::UpstreamError,
                };
                let forwarded = with_deadline(cfg.send_timeout, forward(ws, chunk, &mut pending, cfg.downstream_max_body));
                match forwarded.await {
                    None => return CloseReason::SendTimeout,
                    Some(Err(r)) => return r,
                    Some(Ok((0, _))) => {}
                    Some(Ok((packets, bytes))) => {
                        ctx.metrics.downstream_packets(packets, bytes);
                        last_packet = Instant::now();
                    }
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= last_packet + cfg.idle_timeout {
                    return CloseReason::IdleTimeout;
                }
                match ping_sent {
                    Some(at) if now >= at + cfg.pong_timeout => return CloseReason::KeepaliveTimeout,
                    Some(_) => {}
                    None if now >= last_heard + cfg.ping_interval => {
                        if let Err(r) = send_msg(ws, Message::Ping(Bytes::new()), cfg.send_timeout).await {
                            return r;
                        }
                        ping_sent = Some(now);
                    }
                    None => {}
                }
                let keepalive = match ping_sent {
                    Some(at) => at + cfg.pong_timeout,
                    None => last_heard + cfg.ping_interval,
                };
                timer.as_mut().reset(keepalive.min(last_packet + cfg.idle_timeout));
            }
        }
    }
}

/// What one upstream read produced.
enum Read {
    /// End of stream.
    Eof,
    /// Bytes to cut into packets: starts at a packet boundary, may end inside a packet.
    Data(Bytes),
    /// More of a packet that is still incomplete (kept in `pending`).
    Partial,
}

/// One upstream read. Between packets it reads into a stack buffer (idle sessions hold no read
/// buffer) and copies out exactly what arrived; inside a large packet it reads into `pending`,
/// sized for the packet. Uses `poll_read`, which clears readiness after a short read, saving
/// the extra read that would only return `WouldBlock`.
fn poll_upstream(
    cx: &mut Context<'_>,
    upstream: &mut TcpStream,
    pending: &mut BytesMut,
    max_body: usize,
) -> Poll<io::Result<Read>> {
    if pending.is_empty() {
        let mut stack = [0u8; STACK_READ];
        let mut rb = ReadBuf::new(&mut stack);
        ready!(Pin::new(upstream).poll_read(cx, &mut rb))?;
        return Poll::Ready(Ok(match rb.filled() {
            [] => Read::Eof,
            data => Read::Data(Bytes::copy_from_slice(data)),
        }));
    }
    let want = match frame_len(pending, max_body) {
        Ok(Some(n)) if n > pending.len() => (n - pending.len()).clamp(READ_CHUNK, MAX_READ_CHUNK),
        _ => READ_CHUNK,
    };
    pending.reserve(want);
    let n = loop {
        ready!(upstream.poll_read_ready(cx))?;
        match upstream.try_read_buf(pending) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue, // readiness now cleared
            Err(e) => return Poll::Ready(Err(e)),
        }
    };
    if n == 0 {
        return Poll::Ready(Ok(Read::Eof));
    }
    Poll::Ready(Ok(match frame_len(pending, max_body) {
        Ok(Some(n)) if n > pending.len() => Read::Partial,
        // Complete, or a framing error for `forward` to report.
        _ => Read::Data(std::mem::take(pending).freeze()),
    }))
}

/// Feeds every complete packet of `chunk` to the WebSocket, then flushes once; an incomplete
/// tail goes to `pending`. Returns the packets and bytes sent.
async fn forward<S>(
    ws: &mut S,
    mut chunk: Bytes,
    pending: &mut BytesMut,
    max_body: usize,
) -> Result<(u64, u64), CloseReason>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let (mut packets, mut bytes) = (0u64, 0u64);
    loop {
        match frame_len(&chunk, max_body) {
            Err(_) => return Err(CloseReason::UpstreamFraming),
            Ok(Some(n)) if chunk.len() >= n => {
                let packet = if n == chunk.len() { std::mem::take(&mut chunk) } else { chunk.split_to(n) };
                ws.feed(Message::Binary(packet)).await.map_err(|_| CloseReason::ClientClosed)?;
                packets += 1;
                bytes += n as u64;
                if chunk.is_empty() {
                    break;
                }
            }
            Ok(_) => {
                pending.extend_from_slice(&chunk);
                break;
            }
        }
    }
    if packets > 0 {
        ws.flush().await.map_err(|_| CloseReason::ClientClosed)?;
    }
    Ok((packets, bytes))
}

/// Runs `fut` with a deadline of `limit`; the timer is only created if the first poll does
/// not complete it (the usual case needs none). `None` on timeout.
async fn with_deadline<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(v) = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Some(v);
    }
    timeout(limit, fut).await.ok()
}

/// Writes one packet to the upstream: one non-blocking write, and only if that is short, the
/// rest under the send deadline.
async fn write_upstream(upstream: &mut TcpStream, data: &[u8], limit: Duration) -> io::Result<()> {
    let done = match upstream.try_write(data) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let rest = data.get(done..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(());
    }
    match timeout(limit, upstream.write_all(rest)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

async fn send<S>(ws: &mut S, packet: Bytes, limit: Duration) -> Result<(), CloseReason>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    send_msg(ws, Message::Binary(packet), limit).await
}

async fn send_msg<S>(ws: &mut S, msg: Message, limit: Duration) -> Result<(), CloseReason>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    match with_deadline(limit, ws.send(msg)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(CloseReason::ClientClosed),
        None => Err(CloseReason::SendTimeout),
    }
}

/// Ends the WebSocket side: sends the close frame for `reason` (if any) and waits a moment for
/// the browser's reply, so the frame is delivered before the TCP connection goes.
pub(crate) async fn close<S>(ws: &mut S, reason: CloseReason)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let Some(code) = reason.code() else {
        let _ = timeout(CLOSE_GRACE, ws.close()).await; // flushes tungstenite's own close reply
        return;
    };
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.reason().into() };
    if !matches!(timeout(CLOSE_GRACE, ws.send(Message::Close(Some(frame)))).await, Ok(Ok(()))) {
        return;
    }
    let drained = timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = ws.next().await {} });
    let _ = drained.await;
    if reason == CloseReason::PacketTooLarge {
        // tungstenite stops reading after an over-limit message; unread bytes would turn our
        // TCP close into a reset that can overtake the close frame. Give the browser a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
