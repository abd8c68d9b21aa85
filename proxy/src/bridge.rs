//! One WebSocket session relayed to one upstream TCP connection, in one task.
//!
//! The loop waits on the browser, the upstream socket, the shutdown signal and one timer, and
//! handles one event at a time: while a packet is being written to one side, the other side is
//! not read. That is the backpressure: a slow browser slows reading from the upstream (and the
//! reverse), and at most one packet plus one read chunk is buffered per direction. Idle
//! sessions hold no read buffer at all (the upstream is read only once it is readable).

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use mpush_protocol::frame::{frame_len, Command, Flags, FrameError, Packet};
use mpush_protocol::message::{HttpResponse, Message as _};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::close::CloseReason;
use crate::config::{Config, HttpProxyMode};
use crate::metrics::Metrics;

/// Smallest upstream read; also the only buffer a session holds between packets.
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
pub(crate) async fn relay<S>(ws: &mut S, upstream: &mut TcpStream, ctx: &Ctx<'_>) -> CloseReason
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let cfg = ctx.config;
    let mut buf = BytesMut::new();
    let mut last_packet = Instant::now();
    let mut last_heard = last_packet;
    let mut ping_sent: Option<Instant> = None;
    let timer = sleep_until(last_packet + cfg.idle_timeout);
    tokio::pin!(timer);
    loop {
        let keepalive = match ping_sent {
            Some(at) => at + cfg.pong_timeout,
            None => last_heard + cfg.ping_interval,
        };
        timer.as_mut().reset(keepalive.min(last_packet + cfg.idle_timeout));
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return CloseReason::GoingAway,
            msg = ws.next() => {
                last_heard = Instant::now();
                ping_sent = None;
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
                        match timeout(cfg.send_timeout, tokio::io::AsyncWriteExt::write_all(upstream, &data)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) | Err(_) => return CloseReason::UpstreamError,
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
                last_packet = Instant::now();
            }
            ready = upstream.readable() => {
                if ready.is_err() {
                    return CloseReason::UpstreamError;
                }
                match read_some(upstream, &mut buf, cfg.downstream_max_body) {
                    Ok(0) => return CloseReason::UpstreamClosed,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return CloseReason::UpstreamError,
                }
                loop {
                    match frame_len(&buf, cfg.downstream_max_body) {
                        Err(_) => return CloseReason::UpstreamFraming,
                        Ok(Some(n)) if buf.len() >= n => {
                            let packet = buf.split_to(n).freeze();
                            if let Err(r) = send(ws, packet, cfg.send_timeout).await {
                                return r;
                            }
                            ctx.metrics.downstream_packet(n);
                            last_packet = Instant::now();
                        }
                        Ok(_) => break,
                    }
                }
                if buf.is_empty() {
                    buf = BytesMut::new(); // give the memory back between packets
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
            }
        }
    }
}

/// One non-blocking read, sized for the packet being received. `Ok(0)` is end of stream.
fn read_some(upstream: &TcpStream, buf: &mut BytesMut, max_body: usize) -> io::Result<usize> {
    let want = match frame_len(buf, max_body) {
        Ok(Some(n)) if n > buf.len() => (n - buf.len()).clamp(READ_CHUNK, MAX_READ_CHUNK),
        _ => READ_CHUNK,
    };
    buf.reserve(want);
    upstream.try_read_buf(buf)
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
    match timeout(limit, ws.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseReason::ClientClosed),
        Err(_) => Err(CloseReason::SendTimeout),
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
