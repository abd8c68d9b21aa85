//! The inbound byte stream cut into packets exactly as MPUSH's netty `PacketDecoder` cuts it,
//! which differs from [`crate::frame::FrameDecoder`] at the edges a client can observe:
//!
//! * the 13-byte header must be complete before the length is looked at;
//! * an oversized body fails only once the whole oversized frame has arrived (the server
//!   keeps reading until then); the bytes are counted and dropped, never buffered;
//! * a negative length is not an error: the frame is a header with an empty body, as netty
//!   reads it (`readableBytes < bodyLength + 13` is false and no body is read);
//! * `bodyLength + 13` is Java int arithmetic: a length that overflows it fails at once.

use crate::frame::{Command, Flags, Frame, FrameError, Packet, HEADER_LEN, HEARTBEAT_BYTE};

#[derive(Debug)]
pub(super) struct PacketDecoder {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
    /// An oversized frame is arriving: how many more bytes until MPUSH would fail, and the
    /// error it fails with.
    oversized: Option<(usize, FrameError)>,
    failed: Option<FrameError>,
}

impl PacketDecoder {
    pub(super) fn new(max_body: usize) -> PacketDecoder {
        PacketDecoder { buf: Vec::new(), start: 0, max_body, oversized: None, failed: None }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if let Some((left, e)) = &mut self.oversized {
            *left = left.saturating_sub(bytes.len());
            if *left == 0 {
                self.failed = Some(e.clone());
            }
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next packet or heartbeat, `Ok(None)` when more bytes are needed.
    pub(super) fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.oversized.is_some() {
            return Ok(None);
        }
        let rest = &self.buf[self.start..];
        if rest.first() == Some(&HEARTBEAT_BYTE) {
            self.start += 1;
            return Ok(Some(Frame::Heartbeat));
        }
        if rest.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let readable = rest.len() as i64;
        let needed = len.wrapping_add(HEADER_LEN as i32);
        if readable < i64::from(needed) {
            if len as usize > self.max_body {
                // MPUSH waits for the whole frame before failing; count, don't keep.
                let e = FrameError::BodyTooLarge { len: len as usize, max: self.max_body };
                self.oversized = Some(((needed as i64 - readable) as usize, e));
                self.buf.clear();
                self.start = 0;
            }
            return Ok(None);
        }
        if len > 0 && len as usize > self.max_body {
            let e = FrameError::BodyTooLarge { len: len as usize, max: self.max_body };
            self.failed = Some(e.clone());
            return Err(e);
        }
        let body_len = len.max(0) as usize;
        let packet = Packet {
            cmd: Command(rest[4]),
            flags: Flags(rest[7]),
            session_id: i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]),
            body: rest[HEADER_LEN..HEADER_LEN + body_len].to_vec(),
        };
        self.start += HEADER_LEN + body_len;
        Ok(Some(Frame::Packet(packet)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(d: &mut PacketDecoder) -> Result<Vec<Frame>, FrameError> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn splits_like_netty() {
        let mut bytes = vec![HEARTBEAT_BYTE, HEARTBEAT_BYTE];
        Packet { cmd: Command::PUSH, flags: Flags::AUTO_ACK, session_id: 7, body: b"abc".to_vec() }.encode(&mut bytes);
        bytes.push(HEARTBEAT_BYTE);
        let mut whole = PacketDecoder::new(100);
        whole.feed(&bytes);
        let want = frames(&mut whole).unwrap();
        assert_eq!(want.len(), 4);
        let mut one = PacketDecoder::new(100);
        let mut got = Vec::new();
        for b in &bytes {
            one.feed(std::slice::from_ref(b));
            got.extend(frames(&mut one).unwrap());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn negative_length_is_an_empty_body() {
        let mut d = PacketDecoder::new(100);
        d.feed(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 0, 0, 0, 5, 0, 0xAA]);
        let f = frames(&mut d).unwrap();
        assert_eq!(
            f,
            vec![Frame::Packet(Packet { cmd: Command::HEARTBEAT, flags: Flags::NONE, session_id: 5, body: vec![] })]
        );
        // The byte after the 13-byte header starts the next frame.
        d.feed(&[0; 12]);
        assert_eq!(frames(&mut d).unwrap().len(), 1);
    }

    #[test]
    fn oversized_fails_when_the_whole_frame_has_arrived() {
        let mut d = PacketDecoder::new(10);
        d.feed(&[0, 0, 0, 11, 15, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(d.next_frame(), Ok(None));
        d.feed(&[0; 10]);
        assert_eq!(d.next_frame(), Ok(None));
        d.feed(&[0]);
        assert_eq!(d.next_frame(), Err(FrameError::BodyTooLarge { len: 11, max: 10 }));
        // All at once fails at once; so does a length whose `len + 13` overflows a Java int.
        let mut d = PacketDecoder::new(10);
        let mut b = vec![0, 0, 0, 11, 15, 0, 0, 0, 0, 0, 0, 1, 0];
        b.extend([0; 11]);
        d.feed(&b);
        assert!(d.next_frame().is_err());
        let mut d = PacketDecoder::new(10);
        d.feed(&[0x7F, 0xFF, 0xFF, 0xFF, 15, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(d.next_frame().is_err());
        // A partial header waits, whatever its first bytes say.
        let mut d = PacketDecoder::new(10);
        d.feed(&[0x7F, 0xFF, 0xFF, 0xFF]);
        assert_eq!(d.next_frame(), Ok(None));
    }
}
