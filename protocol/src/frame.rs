//! Packet framing: the 13-byte MPUSH header, the one-byte heartbeat, and a streaming decoder.
//!
//! A transport read may hold several packets, heartbeat bytes between them, or only part of
//! one; [`FrameDecoder`] accepts bytes in any split. [`frame_len`] answers "how long is the
//! packet at the start of this buffer" without copying, which is all the proxy needs.

use std::fmt;

/// The single byte that is a whole heartbeat packet, in either direction.
pub const HEARTBEAT_BYTE: u8 = 0xDF;
/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 13;
/// MPUSH's default `mp.core.max-packet-size`: the largest inbound body a server accepts.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024;

/// An MPUSH command byte. Unknown values are kept, not rejected, so that a server can answer
/// them with Error 101 as MPUSH does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Command(pub u8);

macro_rules! commands {
    ($($name:ident = $v:literal),* $(,)?) => {
        impl Command {
            $(#[doc = concat!("Command ", stringify!($v), ".")] pub const $name: Command = Command($v);)*
            /// MPUSH's name for the command, or `None` for a value MPUSH does not define.
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(stringify!($name)),)* _ => None }
            }
        }
    };
}

commands! {
    HEARTBEAT = 1, HANDSHAKE = 2, LOGIN = 3, LOGOUT = 4, BIND = 5, UNBIND = 6, FAST_CONNECT = 7,
    PAUSE = 8, RESUME = 9, ERROR = 10, OK = 11, HTTP_PROXY = 12, KICK = 13, GATEWAY_KICK = 14,
    PUSH = 15, GATEWAY_PUSH = 16, NOTIFICATION = 17, GATEWAY_NOTIFICATION = 18, CHAT = 19,
    GATEWAY_CHAT = 20, GROUP = 21, GATEWAY_GROUP = 22, ACK = 23, NACK = 24,
}

impl Command {
    /// Whether MPUSH defines this command at all (1..=24).
    pub fn is_known(self) -> bool {
        self.name().is_some()
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Command({})", self.0),
        }
    }
}

/// The flags byte of a frame header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// The body is AES (or, for a handshake, RSA) encrypted.
    pub const CRYPTO: Flags = Flags(0x01);
    /// The body is a zlib stream, compressed before encryption.
    pub const COMPRESS: Flags = Flags(0x02);
    /// The receiving application acknowledges the push explicitly.
    pub const BIZ_ACK: Flags = Flags(0x04);
    /// The receiving client acknowledges the push as soon as it is delivered.
    pub const AUTO_ACK: Flags = Flags(0x08);
    /// JSON body: MPUSH's own WebSocket mode only, never on the binary protocol.
    pub const JSON: Flags = Flags(0x10);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::CRYPTO, "CRYPTO"),
            (Flags::COMPRESS, "COMPRESS"),
            (Flags::BIZ_ACK, "BIZ_ACK"),
            (Flags::AUTO_ACK, "AUTO_ACK"),
            (Flags::JSON, "JSON"),
        ];
        let set: Vec<&str> = names.iter().filter(|(b, _)| self.contains(*b)).map(|(_, n)| *n).collect();
        write!(f, "Flags({:#04x}{}{})", self.0, if set.is_empty() { "" } else { " " }, set.join("|"))
    }
}

/// One MPUSH frame: header fields and the body as carried on the wire (still compressed and
/// encrypted if its flags say so). `cc` and `lrc` are not kept: MPUSH writes them as 0 and
/// never checks them, so neither do we.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Packet {
    /// The command.
    pub cmd: Command,
    /// The flags.
    pub flags: Flags,
    /// The header session id: a request id, echoed in the reply (not the resumable session id).
    pub session_id: i32,
    /// The body bytes as on the wire.
    pub body: Vec<u8>,
}

impl Packet {
    /// A packet with no flags and an empty body.
    pub fn new(cmd: Command, session_id: i32) -> Packet {
        Packet { cmd, flags: Flags::NONE, session_id, body: Vec::new() }
    }

    /// Appends the encoded frame (header with `cc` and `lrc` as 0, then the body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + self.body.len());
        // Bodies are bounded by the session's limits long before i32::MAX.
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.push(self.cmd.0);
        out.extend_from_slice(&[0, 0]);
        out.push(self.flags.0);
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&self.body);
    }

    /// The encoded frame as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.body.len());
        self.encode(&mut v);
        v
    }
}

/// A unit of the MPUSH byte stream.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Frame {
    /// The one-byte heartbeat `0xDF`.
    Heartbeat,
    /// A framed packet.
    Packet(Packet),
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Heartbeat => out.push(HEARTBEAT_BYTE),
            Frame::Packet(p) => p.encode(out),
        }
    }
}

/// A framing error: the stream cannot be cut into packets any more.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header announces a body larger than the configured maximum.
    #[error("packet body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Announced body length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The header's body length is negative.
    #[error("negative packet body length {0}")]
    NegativeLength(i32),
}

/// Length of the packet at the start of `buf`: `Ok(Some(1))` for a heartbeat,
/// `Ok(Some(13 + n))` for a frame, `Ok(None)` when more bytes are needed to know.
/// Fails as soon as the header shows a bad or too large body length.
pub fn frame_len(buf: &[u8], max_body: usize) -> Result<Option<usize>, FrameError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first == HEARTBEAT_BYTE {
        return Ok(Some(1));
    }
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let len = len as usize;
    if len > max_body {
        return Err(FrameError::BodyTooLarge { len, max: max_body });
    }
    Ok(Some(HEADER_LEN + len))
}

/// Parses the packet at the start of `buf`, returning it and the number of bytes it used,
/// or `Ok(None)` if `buf` does not yet hold a whole packet.
pub fn parse_frame(buf: &[u8], max_body: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(n) = frame_len(buf, max_body)? else { return Ok(None) };
    if buf.len() < n {
        return Ok(None);
    }
    if n == 1 {
        return Ok(Some((Frame::Heartbeat, 1)));
    }
    let h = &buf[..HEADER_LEN];
    let packet = Packet {
        cmd: Command(h[4]),
        flags: Flags(h[7]),
        session_id: i32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        body: buf[HEADER_LEN..n].to_vec(),
    };
    Ok(Some((Frame::Packet(packet), n)))
}

/// A streaming frame decoder: feed it bytes as they arrive, take out whole frames.
///
/// After a [`FrameError`] the stream has lost its framing; the decoder keeps returning the
/// error and the connection should be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that rejects bodies longer than `max_body` bytes.
    pub fn new(max_body: usize) -> FrameDecoder {
        FrameDecoder { buf: Vec::new(), start: 0, max_body, failed: None }
    }

    /// The configured body limit.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            // Drop the consumed prefix once it dominates, so a long-lived stream stays small.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match parse_frame(&self.buf[self.start..], self.max_body) {
            Ok(Some((frame, n))) => {
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = vec![HEARTBEAT_BYTE];
        Packet { cmd: Command::PUSH, flags: Flags::CRYPTO | Flags::AUTO_ACK, session_id: 7, body: b"abc".to_vec() }
            .encode(&mut v);
        v.push(HEARTBEAT_BYTE);
        Packet::new(Command::ACK, -3).encode(&mut v);
        v.push(HEARTBEAT_BYTE);
        v
    }

    fn decode_all(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut d = FrameDecoder::new(100);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(d.buffered(), 0);
        out
    }

    #[test]
    fn any_split_gives_the_same_frames() {
        let bytes = sample();
        let whole = decode_all(&[&bytes]);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[0], Frame::Heartbeat);
        match &whole[1] {
            Frame::Packet(p) => {
                assert_eq!((p.cmd, p.session_id, p.body.as_slice()), (Command::PUSH, 7, &b"abc"[..]));
                assert!(p.flags.contains(Flags::AUTO_ACK));
            }
            f => panic!("{f:?}"),
        }
        for i in 0..bytes.len() {
            for j in i..bytes.len() {
                assert_eq!(decode_all(&[&bytes[..i], &bytes[i..j], &bytes[j..]]), whole);
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_all(&singles), whole);
    }

    #[test]
    fn oversized_and_negative_lengths_are_typed_errors() {
        let mut d = FrameDecoder::new(10);
        d.feed(&[0, 0, 0, 11, 15]);
        assert_eq!(d.next_frame(), Err(FrameError::BodyTooLarge { len: 11, max: 10 }));
        assert!(d.next_frame().is_err());
        assert_eq!(frame_len(&[0xff, 0xff, 0xff, 0xfe], 10), Err(FrameError::NegativeLength(-2)));
        assert_eq!(frame_len(&[0, 0], 10), Ok(None));
        assert_eq!(frame_len(&[0, 0, 0, 10], 10), Ok(Some(23)));
    }

    #[test]
    fn encoder_writes_cc_and_lrc_as_zero() {
        let p = Packet { cmd: Command::BIND, flags: Flags::CRYPTO, session_id: 2, body: vec![9; 3] };
        assert_eq!(p.to_bytes(), [0, 0, 0, 3, 5, 0, 0, 1, 0, 0, 0, 2, 0, 9, 9, 9]);
        // A peer's non-zero cc/lrc is accepted as-is.
        let mut raw = p.to_bytes();
        raw[5] = 0x12;
        raw[12] = 0x34;
        assert_eq!(parse_frame(&raw, 10).unwrap().unwrap().0, Frame::Packet(p));
    }

    #[test]
    fn command_names() {
        assert_eq!(format!("{:?}", Command::FAST_CONNECT), "FAST_CONNECT");
        assert_eq!(format!("{:?}", Command(99)), "Command(99)");
        assert!(!Command(0).is_known() && Command::NACK.is_known());
    }
}
