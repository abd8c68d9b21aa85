//! HAProxy's PROXY protocol header (v1 text and v2 binary), not part of MPUSH itself: a proxy
//! in front of an MPUSH server (`mpush-proxy`, HAProxy, nginx `proxy_protocol`, envoy)
//! prefixes each TCP connection with its client's address, so that the server can count the
//! client rather than the proxy.
//!
//! It lives here rather than in the gateway because two crates speak it, `mpush-proxy`
//! ([`ProxyHeader::encode_v2`]) and `mpush-gateway` ([`parse`]): one encoder and one decoder
//! that round-trip by construction, and, like every decoder of network input in this crate, a
//! fuzz target (`fuzz/fuzz_targets/proxy_header.rs`). Sans-IO, as the rest of the crate: bytes
//! in, a header or "need more" out. The browser package never uses it and builds without the
//! `proxy-header` feature.
//!
//! ```text
//! match proxy_header::parse(&buf)? {
//!     None => { /* read more, at most MAX_HEADER_LEN bytes in all */ }
//!     Some((header, len)) => { /* buf[len..] is the start of the proxied stream */ }
//! }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The v2 signature (12 bytes) that opens every binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's opening.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 header, CRLF included (the spec's bound).
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 address block accepted: the spec's bound for TCP (216 bytes: a UNIX address
/// pair); TLVs within it are ignored.
const V2_MAX_ADDR_LEN: usize = 216;
/// Longest header [`parse`] accepts, v1 or v2: a reader that buffers this many bytes without
/// a complete header has been sent garbage (in practice [`parse`] says so first).
pub const MAX_HEADER_LEN: usize = 16 + V2_MAX_ADDR_LEN;

// v2 byte 12 (version 2, command) and byte 13 (address family, transport).
const V2_LOCAL: u8 = 0x20;
const V2_PROXY: u8 = 0x21;
const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_TCP6: u8 = 0x21;

/// What a PROXY header says about the connection it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied TCP connection (v1 `TCP4`/`TCP6`, v2 PROXY over TCP/IPv4 or TCP/IPv6).
    Tcp {
        /// The client's address: the one to count and log.
        source: SocketAddr,
        /// The address the client connected to, on the proxy.
        destination: SocketAddr,
    },
    /// A v2 LOCAL header: the proxy's own connection (a health check); whatever addresses it
    /// carries are ignored, as the spec says.
    Local,
    /// A proxied connection whose addresses the header does not give (v1 `UNKNOWN`, v2
    /// `AF_UNSPEC` or `AF_UNIX`): the socket's peer address stands for the client.
    Unknown,
}

impl ProxyHeader {
    /// The client's address, if the header names one (`None`: use the socket's peer address).
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Tcp { source, .. } => Some(*source),
            ProxyHeader::Local | ProxyHeader::Unknown => None,
        }
    }

    /// Appends this header in the v2 (binary) form to `out`. IPv4-mapped addresses are sent
    /// as IPv4 when both are IPv4, and a mixed pair as IPv6 (IPv4 mapped): v2 has one family
    /// for both. [`ProxyHeader::Unknown`] is sent as PROXY with `AF_UNSPEC`.
    pub fn encode_v2(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(V2_SIGNATURE);
        let (source, destination) = match *self {
            ProxyHeader::Tcp { source, destination } => (source, destination),
            ProxyHeader::Local => return out.extend_from_slice(&[V2_LOCAL, FAM_UNSPEC, 0, 0]),
            ProxyHeader::Unknown => return out.extend_from_slice(&[V2_PROXY, FAM_UNSPEC, 0, 0]),
        };
        match (source.ip().to_canonical(), destination.ip().to_canonical()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                out.extend_from_slice(&[V2_PROXY, FAM_TCP4, 0, 12]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
            }
            (src, dst) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                out.extend_from_slice(&[V2_PROXY, FAM_TCP6, 0, 36]);
                out.extend_from_slice(&v6(src).octets());
                out.extend_from_slice(&v6(dst).octets());
            }
        }
        out.extend_from_slice(&source.port().to_be_bytes());
        out.extend_from_slice(&destination.port().to_be_bytes());
    }
}

/// Why a PROXY header was refused: the bytes are not a header this parser accepts. Each one
/// is final (more bytes would not help).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The bytes do not open with a v1 or v2 signature (no header at all, or garbage).
    #[error("no PROXY protocol signature")]
    NoSignature,
    /// A v2 header with a version other than 2 or a command other than LOCAL or PROXY.
    #[error("unsupported PROXY v2 version or command {0:#04x}")]
    BadVersionOrCommand(u8),
    /// A v2 PROXY header with an unknown address family or transport, or one that is not TCP.
    #[error("unsupported PROXY v2 family/transport {0:#04x}")]
    BadFamily(u8),
    /// A v2 address block longer than the bound, or too short for its family.
    #[error("bad PROXY v2 address length {0}")]
    BadLength(usize),
    /// A v1 line longer than 107 bytes, not ASCII, or not `PROXY TCP4|TCP6|UNKNOWN ...`.
    #[error("malformed PROXY v1 line")]
    BadV1,
}

/// Parses a PROXY header (v1 or v2) at the start of `buf`. `Ok(None)`: what is there is a
/// valid beginning, more bytes are needed (as tungstenite's frame parser). `Ok(Some((header,
/// len)))`: the header is the first `len` bytes; what follows belongs to the proxied stream.
/// Nothing longer than [`MAX_HEADER_LEN`] is ever asked for.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    match buf.first() {
        None => Ok(None),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(ProxyHeaderError::NoSignature),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig] != V2_SIGNATURE[..sig] {
        return Err(ProxyHeaderError::NoSignature);
    }
    let Some(head) = buf.get(..16) else { return Ok(None) };
    let ver_cmd = head[12];
    let local = match ver_cmd {
        V2_LOCAL => true,
        V2_PROXY => false,
        _ => return Err(ProxyHeaderError::BadVersionOrCommand(ver_cmd)),
    };
    let fam = head[13];
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX_ADDR_LEN {
        return Err(ProxyHeaderError::BadLength(len));
    }
    // Checked before the body arrives: a bad header is refused without waiting for it.
    let need = match fam {
        // AF_UNSPEC, or AF_UNIX over any transport: no IP to take, the peer's is used.
        FAM_UNSPEC | 0x30 | 0x31 | 0x32 => 0,
        FAM_TCP4 => 12,
        FAM_TCP6 => 36,
        _ if local => 0,
        _ => return Err(ProxyHeaderError::BadFamily(fam)),
    };
    if len < need {
        return Err(ProxyHeaderError::BadLength(len));
    }
    let Some(body) = buf.get(16..16 + len) else { return Ok(None) };
    let header = match fam {
        _ if local => ProxyHeader::Local,
        FAM_TCP4 => {
            let ip = |at: usize| IpAddr::from([body[at], body[at + 1], body[at + 2], body[at + 3]]);
            ProxyHeader::Tcp {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([body[8], body[9]])),
                destination: SocketAddr::new(ip(4), u16::from_be_bytes([body[10], body[11]])),
            }
        }
        FAM_TCP6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::from(octets)
            };
            ProxyHeader::Tcp {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([body[32], body[33]])),
                destination: SocketAddr::new(ip(16), u16::from_be_bytes([body[34], body[35]])),
            }
        }
        _ => ProxyHeader::Unknown,
    };
    Ok(Some((header, 16 + len)))
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let pre = buf.len().min(V1_PREFIX.len());
    if buf[..pre] != V1_PREFIX[..pre] {
        return Err(ProxyHeaderError::NoSignature);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN { Err(ProxyHeaderError::BadV1) } else { Ok(None) };
    };
    // The prefix matched in full here, so the CRLF is past it.
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| ProxyHeaderError::BadV1)?;
    let len = end + 2;
    let mut parts = line.split(' ');
    let header = match parts.next() {
        // UNKNOWN: the rest of the line is ignored, as the spec says.
        Some("UNKNOWN") => ProxyHeader::Unknown,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let fields: Vec<&str> = parts.collect();
            let [src, dst, sport, dport] = fields[..] else { return Err(ProxyHeaderError::BadV1) };
            let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
                let ip = if proto == "TCP4" {
                    Ipv4Addr::from_str(s).map(IpAddr::V4)
                } else {
                    Ipv6Addr::from_str(s).map(IpAddr::V6)
                };
                ip.map_err(|_| ProxyHeaderError::BadV1)
            };
            let port = |s: &str| -> Result<u16, ProxyHeaderError> {
                // Digits only: `u16::from_str` would take a leading `+`.
                if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ProxyHeaderError::BadV1);
                }
                s.parse().map_err(|_| ProxyHeaderError::BadV1)
            };
            ProxyHeader::Tcp {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(ProxyHeaderError::BadV1),
    };
    Ok(Some((header, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[cmd, fam]);
        b.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn v4_body() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&3000u16.to_be_bytes());
        b
    }

    fn tcp(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader::Tcp { source: source.parse().unwrap(), destination: destination.parse().unwrap() }
    }

    fn encoded(h: ProxyHeader) -> Vec<u8> {
        let mut out = Vec::new();
        h.encode_v2(&mut out);
        out
    }

    #[test]
    fn v2_tcp4_tcp6_local_unspec_and_tlvs() {
        let mut h = v2(0x21, 0x11, &v4_body());
        h.extend_from_slice(b"MPUSH");
        assert_eq!(parse(&h), Ok(Some((tcp("192.0.2.7:40000", "10.0.0.1:3000"), 28))));
        // Every strict prefix asks for more bytes.
        for n in 0..28 {
            assert_eq!(parse(&h[..n]), Ok(None), "prefix {n}");
        }
        let mut body6 = vec![0u8; 36];
        body6[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body6[16..32].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body6[32..34].copy_from_slice(&443u16.to_be_bytes());
        body6[34..36].copy_from_slice(&3000u16.to_be_bytes());
        // TLVs after the addresses are skipped.
        body6.extend_from_slice(&[0x04, 0x00, 0x01, 0xaa]);
        assert_eq!(parse(&v2(0x21, 0x21, &body6)), Ok(Some((tcp("[2001:db8::7]:443", "[::1]:3000"), 56))));
        assert_eq!(parse(&v2(0x20, 0x11, &v4_body())), Ok(Some((ProxyHeader::Local, 28))));
        assert_eq!(parse(&v2(0x20, 0x00, &[])), Ok(Some((ProxyHeader::Local, 16))));
        assert_eq!(parse(&v2(0x21, 0x00, &[])), Ok(Some((ProxyHeader::Unknown, 16))));
        assert_eq!(parse(&v2(0x21, 0x31, &[0; 216])), Ok(Some((ProxyHeader::Unknown, 232))));
    }

    #[test]
    fn v1_lines() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 3000\r\nrest";
        assert_eq!(parse(h), Ok(Some((tcp("192.0.2.7:40000", "10.0.0.1:3000"), h.len() - 4))));
        let h = b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n";
        assert_eq!(parse(h), Ok(Some((tcp("[2001:db8::7]:1", "[::1]:2"), h.len()))));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Some((ProxyHeader::Unknown, 15))));
        assert_eq!(parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"), Ok(Some((ProxyHeader::Unknown, 31))));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7"), Ok(None));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = v2(0x21, 0x11, &v4_body());
        let mut wrong_sig = good.clone();
        wrong_sig[5] = b'X';
        let long_v1 = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        let cases: Vec<(&str, Vec<u8>, ProxyHeaderError)> = vec![
            ("garbage", b"\x00\x00\x00\x08hello".to_vec(), ProxyHeaderError::NoSignature),
            ("wrong v2 signature", wrong_sig, ProxyHeaderError::NoSignature),
            ("wrong v1 signature", b"PROXX TCP4".to_vec(), ProxyHeaderError::NoSignature),
            ("CRLF inside the v1 prefix", b"PROX\r\n".to_vec(), ProxyHeaderError::NoSignature),
            ("version 1 in v2", v2(0x11, 0x11, &v4_body()), ProxyHeaderError::BadVersionOrCommand(0x11)),
            ("command 2", v2(0x22, 0x11, &v4_body()), ProxyHeaderError::BadVersionOrCommand(0x22)),
            ("udp", v2(0x21, 0x12, &v4_body()), ProxyHeaderError::BadFamily(0x12)),
            ("family 4", v2(0x21, 0x41, &v4_body()), ProxyHeaderError::BadFamily(0x41)),
            ("inet too short", v2(0x21, 0x11, &[1, 2, 3]), ProxyHeaderError::BadLength(3)),
            ("inet6 too short", v2(0x21, 0x21, &v4_body()), ProxyHeaderError::BadLength(12)),
            ("too long", v2(0x21, 0x11, &[0; 217]), ProxyHeaderError::BadLength(217)),
            ("v1 no CRLF in 107", long_v1.into_bytes(), ProxyHeaderError::BadV1),
            ("v1 bad proto", b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 v6 in TCP4", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 port too big", b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 plus port", b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 missing field", b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 extra field", b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 double space", b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 not utf-8", b"PROXY TCP4 \xff\r\n".to_vec(), ProxyHeaderError::BadV1),
            ("v1 empty", b"PROXY \r\n".to_vec(), ProxyHeaderError::BadV1),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(parse(&bytes), Err(want), "{name}");
        }
    }

    #[test]
    fn v2_encoding_is_byte_exact() {
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0x40, 0x0b, 0xb8]);
        assert_eq!(encoded(tcp("192.0.2.7:40000", "10.0.0.1:3000")), want);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(encoded(ProxyHeader::Local), local);
        let v6 = encoded(tcp("[2001:db8::7]:1", "10.0.0.1:3000"));
        assert_eq!((v6.len(), v6[12], v6[13], v6[15]), (16 + 36, 0x21, 0x21, 36));
        assert_eq!(&v6[16 + 16..16 + 32], &Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets());
    }

    #[test]
    fn encoder_and_parser_round_trip() {
        let same = [
            tcp("192.0.2.7:40000", "10.0.0.1:3000"),
            tcp("[2001:db8::7]:1", "[::1]:3000"),
            // A mixed pair travels as IPv6, the IPv4 side mapped.
            tcp("[2001:db8::7]:1", "[::ffff:10.0.0.1]:3000"),
            ProxyHeader::Local,
            ProxyHeader::Unknown,
        ];
        for h in same {
            let bytes = encoded(h);
            assert_eq!(parse(&bytes), Ok(Some((h, bytes.len()))), "{h:?}");
        }
        // A dual-stack socket's IPv4-mapped pair is sent, and read back, as plain IPv4.
        let mapped = encoded(tcp("[::ffff:192.0.2.7]:40000", "[::ffff:10.0.0.1]:3000"));
        assert_eq!(mapped[13], 0x11);
        assert_eq!(parse(&mapped), Ok(Some((tcp("192.0.2.7:40000", "10.0.0.1:3000"), 28))));
        let mixed = encoded(tcp("192.0.2.7:40000", "[2001:db8::1]:3000"));
        assert_eq!(parse(&mixed), Ok(Some((tcp("[::ffff:192.0.2.7]:40000", "[2001:db8::1]:3000"), 52))));
    }
}
