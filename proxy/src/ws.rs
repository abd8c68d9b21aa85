//! The server side of WebSocket framing (RFC 6455), just what the bridge needs: parse the
//! browser's masked frames in place, write unmasked binary, ping, pong and close frames.
//!
//! Sans-IO and allocation-free: the bridge reads into a per-thread scratch buffer, parses the
//! frames there, and only copies a partly received frame into the session. This replaces a
//! general WebSocket library whose per-connection read and write buffers stayed allocated
//! while a session sat idle. No extensions are negotiated, so the reserved bits must be zero.

/// Frame opcodes (RFC 6455 section 5.2).
pub(crate) mod opcode {
    /// The continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text frame (refused by the bridge).
    pub const TEXT: u8 = 0x1;
    /// A binary frame: MPUSH packets.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Largest control frame payload (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// How the browser broke the framing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameViolation {
    /// A reserved bit is set though no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// A client frame without a mask.
    Unmasked,
    /// A control frame that is fragmented or longer than 125 bytes.
    BadControlFrame,
    /// A 64-bit length with the top bit set.
    BadLength,
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Final fragment of a message.
    pub fin: bool,
    /// See [`opcode`].
    pub opcode: u8,
    /// The masking key (client frames always have one).
    pub mask: [u8; 4],
    /// Bytes of the header, mask included.
    pub header_len: usize,
    /// Payload length as announced (may exceed what a `usize` or the buffer can hold).
    pub payload_len: u64,
}

impl Header {
    /// Whether this is a control frame (close, ping, pong).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a client frame header at the start of `buf`: `Ok(None)` means more bytes are needed.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameViolation> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(FrameViolation::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0F;
    if !matches!(op, opcode::CONTINUATION | opcode::TEXT | opcode::BINARY | opcode::CLOSE | opcode::PING | opcode::PONG)
    {
        return Err(FrameViolation::UnknownOpcode(op));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameViolation::Unmasked);
    }
    let (payload_len, len_bytes) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 8),
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if payload_len >> 63 != 0 {
        return Err(FrameViolation::BadLength);
    }
    let header = Header { fin, opcode: op, mask: [0; 4], header_len: 2 + len_bytes + 4, payload_len };
    if header.is_control() && (!fin || payload_len > MAX_CONTROL_PAYLOAD) {
        return Err(FrameViolation::BadControlFrame);
    }
    let Some(mask) = buf.get(2 + len_bytes..header.header_len).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
        return Ok(None);
    };
    Ok(Some(Header { mask, ..header }))
}

/// Unmasks `data` in place (masking is its own inverse). Eight bytes at a time: a browser's
/// 10 KB packet would otherwise cost a loop iteration per byte.
pub(crate) fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends a final, unmasked server frame header for a payload of `len` bytes.
pub(crate) fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    let b0 = 0x80 | opcode;
    if len < 126 {
        out.extend_from_slice(&[b0, len as u8]);
    } else if let Ok(l) = u16::try_from(len) {
        let l = l.to_be_bytes();
        out.extend_from_slice(&[b0, 126, l[0], l[1]]);
    } else {
        out.push(b0);
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a whole server frame.
pub(crate) fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    put_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (the reason is cut to fit 125 bytes).
pub(crate) fn put_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD as usize - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    put_header(out, opcode::CLOSE, 2 + cut);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
}

/// Checks the payload of a close frame from the browser: empty, or a code a peer may send
/// followed by UTF-8. Returns the code to echo (`None` for an empty payload).
pub(crate) fn check_close_payload(payload: &[u8]) -> Result<Option<u16>, ()> {
    match payload {
        [] => Ok(None),
        [_] => Err(()),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // RFC 6455 7.4: 1004-1006 and 1015 are never sent on the wire; 1012-1014 are
            // registered since; 3000-4999 are for applications.
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid || std::str::from_utf8(reason).is_err() {
                return Err(());
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, 0, payload.len());
        out[0] = b0;
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn parses_every_length_form_and_needs_more_bytes_until_the_mask() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 200_000] {
            let payload = vec![0x5A; len];
            let f = client_frame(0x82, &payload, [1, 2, 3, 4]);
            let h = parse_header(&f).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.payload_len, h.mask), (true, opcode::BINARY, len as u64, [1, 2, 3, 4]));
            assert_eq!(h.header_len + len, f.len());
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&f[..cut]), Ok(None), "len {len} cut {cut}");
            }
            let mut body = f[h.header_len..].to_vec();
            unmask(&mut body, h.mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn rejects_what_rfc_6455_forbids() {
        let m = [9, 9, 9, 9];
        assert_eq!(parse_header(&client_frame(0xC2, b"x", m)), Err(FrameViolation::ReservedBits));
        assert_eq!(parse_header(&client_frame(0x83, b"x", m)), Err(FrameViolation::UnknownOpcode(3)));
        assert_eq!(parse_header(&client_frame(0x09, b"", m)), Err(FrameViolation::BadControlFrame));
        assert_eq!(parse_header(&client_frame(0x89, &[0; 126], m)), Err(FrameViolation::BadControlFrame));
        assert_eq!(parse_header(&[0x82, 0x01, 0x00]), Err(FrameViolation::Unmasked));
        let huge = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(parse_header(&huge), Err(FrameViolation::BadLength));
    }

    #[test]
    fn unmask_matches_the_bytewise_definition() {
        let data: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 7, 8, 9, 31, 256] {
            let mut fast = data[..len].to_vec();
            unmask(&mut fast, [0xA1, 0x02, 0xF3, 0x44]);
            let slow: Vec<u8> =
                data[..len].iter().enumerate().map(|(i, b)| b ^ [0xA1, 0x02, 0xF3, 0x44][i % 4]).collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn server_frames_and_close_payloads() {
        let mut out = Vec::new();
        put_frame(&mut out, opcode::BINARY, &[1, 2, 3]);
        assert_eq!(out, [0x82, 3, 1, 2, 3]);
        out.clear();
        put_header(&mut out, opcode::BINARY, 300);
        assert_eq!(out, [0x82, 126, 1, 44]);
        out.clear();
        put_header(&mut out, opcode::BINARY, 1 << 20);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0]);
        out.clear();
        put_close(&mut out, 1011, "upstream closed");
        assert_eq!(&out[..4], &[0x88, 17, 0x03, 0xF3]);
        out.clear();
        put_close(&mut out, 1000, &"é".repeat(100));
        assert_eq!(out.len(), 2 + 2 + 122, "cut to 123 bytes at a char boundary");
        assert_eq!(check_close_payload(&[]), Ok(None));
        assert_eq!(check_close_payload(&[0x03, 0xE8, b'o', b'k']), Ok(Some(1000)));
        assert_eq!(check_close_payload(&[0x03]), Err(()));
        assert_eq!(check_close_payload(&[0x03, 0xED]), Err(()), "1005 is never sent");
        assert_eq!(check_close_payload(&[0x03, 0xE8, 0xFF]), Err(()), "reason must be UTF-8");
    }
}
