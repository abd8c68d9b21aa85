//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary) on the MPUSH listener: a
//! trusted proxy (`mpush-proxy`, HAProxy, nginx `proxy_protocol`, envoy) prefixes each
//! connection with its client's address, so that the per-IP caps, the RSA queue's turns and
//! the logs count the client rather than the proxy. Only connections from `[limits]
//! trusted-proxies` are read for a header, and from those one is required.
//!
//! [`parse`] is sans-IO (`Ok(None)`: need more bytes, as tungstenite's frame parser);
//! [`read_header`] drives it on a socket with a size bound and a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

/// The v2 signature (12 bytes) that opens every binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's opening.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 header, CRLF included (the spec's bound).
pub(crate) const V1_MAX: usize = 107;
/// Longest v2 address block accepted: the spec's bound for TCP (216 bytes: a UNIX address
/// pair); TLVs within it are ignored.
const V2_MAX_ADDR_LEN: usize = 216;
/// Longest v2 header accepted.
pub(crate) const V2_MAX: usize = 16 + V2_MAX_ADDR_LEN;

/// Why a PROXY protocol header was refused. Every variant closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The connection did not open with a v1 or v2 signature (no header at all, or garbage).
    #[error("no PROXY protocol signature")]
    NoSignature,
    /// A v2 header with a version other than 2 or a command other than LOCAL or PROXY.
    #[error("unsupported PROXY v2 version or command {0:#04x}")]
    BadVersionOrCommand(u8),
    /// A v2 header with an unknown address family or transport, or one that is not TCP.
    #[error("unsupported PROXY v2 family/transport {0:#04x}")]
    BadFamily(u8),
    /// A v2 address block longer than the bound, or too short for its family.
    #[error("bad PROXY v2 address length {0}")]
    BadLength(usize),
    /// A v1 line longer than 107 bytes, not ASCII, or not `PROXY TCP4|TCP6|UNKNOWN ...`.
    #[error("malformed PROXY v1 line")]
    BadV1,
    /// The peer closed the connection before the header was complete.
    #[error("connection closed before the PROXY header was complete")]
    Truncated,
    /// The header was not complete within the timeout.
    #[error("PROXY header not received in time")]
    Timeout,
    /// Reading the socket failed.
    #[error("read failed: {0}")]
    Io(String),
}

/// Parses a PROXY header at the start of `buf`. `Ok(None)`: what is there is a valid
/// beginning, more bytes are needed. `Ok(Some((source, len)))`: the header is `len` bytes;
/// `source` is the client's address, `None` for LOCAL, UNKNOWN and unspecified families
/// (the socket's peer address is then the client's).
pub fn parse(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyHeaderError> {
    match buf.first() {
        None => Ok(None),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(ProxyHeaderError::NoSignature),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyHeaderError> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig] != V2_SIGNATURE[..sig] {
        return Err(ProxyHeaderError::NoSignature);
    }
    let Some(head) = buf.get(..16) else { return Ok(None) };
    let ver_cmd = head[12];
    let local = match ver_cmd {
        0x20 => true,
        0x21 => false,
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
        0x00 | 0x30 | 0x31 | 0x32 => 0,
        0x11 => 12,
        0x21 => 36,
        _ if local => 0,
        _ => return Err(ProxyHeaderError::BadFamily(fam)),
    };
    if len < need {
        return Err(ProxyHeaderError::BadLength(len));
    }
    let Some(body) = buf.get(16..16 + len) else { return Ok(None) };
    if local {
        // LOCAL: the proxy's own connection (health checks); addresses are ignored.
        return Ok(Some((None, 16 + len)));
    }
    let source = match fam {
        0x11 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([body[8], body[9]])))
        }
        0x21 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), u16::from_be_bytes([body[32], body[33]])))
        }
        _ => None,
    };
    Ok(Some((source, 16 + len)))
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyHeaderError> {
    let pre = buf.len().min(V1_PREFIX.len());
    if buf[..pre] != V1_PREFIX[..pre] {
        return Err(ProxyHeaderError::NoSignature);
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX { Err(ProxyHeaderError::BadV1) } else { Ok(None) };
    };
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| ProxyHeaderError::BadV1)?;
    let len = end + 2;
    let mut parts = line.split(' ');
    let source = match parts.next() {
        // UNKNOWN: the rest of the line is ignored, as the spec says.
        Some("UNKNOWN") => None,
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
            let (src, _dst, sport, _dport) = (ip(src)?, ip(dst)?, port(sport)?, port(dport)?);
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(ProxyHeaderError::BadV1),
    };
    Ok(Some((source, len)))
}

/// Reads a PROXY header from `stream`, at most [`V2_MAX`] bytes and within `timeout`.
/// Returns the client's address (`None`: use the socket's peer address) and the bytes read
/// past the header, which are the start of the MPUSH stream.
pub(crate) async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyHeaderError> {
    let read = async {
        let mut buf = [0u8; V2_MAX];
        let mut filled = 0;
        loop {
            match stream.read(&mut buf[filled..]).await {
                Ok(0) => return Err(ProxyHeaderError::Truncated),
                Ok(n) => filled += n,
                Err(e) => return Err(ProxyHeaderError::Io(e.to_string())),
            }
            if let Some((source, len)) = parse(&buf[..filled])? {
                return Ok((source, buf[len..filled].to_vec()));
            }
            // Unreachable in practice (parse refuses anything longer than V2_MAX), but a full
            // buffer must never mean a zero-length read taken for end of stream.
            if filled == buf.len() {
                return Err(ProxyHeaderError::BadLength(filled));
            }
        }
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Err(ProxyHeaderError::Timeout))
}

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is one host),
/// as `[limits] trusted-proxies` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("not an address range: {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("bad prefix length: {s:?}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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

    #[test]
    fn v2_tcp4_tcp6_local_unspec_and_tlvs() {
        let mut h = v2(0x21, 0x11, &v4_body());
        h.extend_from_slice(b"MPUSH");
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        assert_eq!(parse(&h), Ok(Some((Some(src), 28))));
        // Every strict prefix asks for more bytes.
        for n in 0..28 {
            assert_eq!(parse(&h[..n]), Ok(None), "prefix {n}");
        }
        let mut body6 = vec![0u8; 36];
        body6[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body6[32..34].copy_from_slice(&443u16.to_be_bytes());
        // TLVs after the addresses are skipped.
        body6.extend_from_slice(&[0x04, 0x00, 0x01, 0xaa]);
        assert_eq!(parse(&v2(0x21, 0x21, &body6)), Ok(Some((Some("[2001:db8::7]:443".parse().unwrap()), 56))));
        assert_eq!(parse(&v2(0x20, 0x11, &v4_body())), Ok(Some((None, 28))));
        assert_eq!(parse(&v2(0x20, 0x00, &[])), Ok(Some((None, 16))));
        assert_eq!(parse(&v2(0x21, 0x00, &[])), Ok(Some((None, 16))));
    }

    #[test]
    fn v1_lines() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 3000\r\nrest";
        assert_eq!(parse(h), Ok(Some((Some("192.0.2.7:40000".parse().unwrap()), h.len() - 4))));
        let h = b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n";
        assert_eq!(parse(h), Ok(Some((Some("[2001:db8::7]:1".parse().unwrap()), h.len()))));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Some((None, 15))));
        assert_eq!(parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"), Ok(Some((None, 31))));
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

    #[tokio::test]
    async fn read_header_keeps_what_follows_and_refuses_truncation() {
        let mut h = v2(0x21, 0x11, &v4_body());
        h.extend_from_slice(b"first MPUSH bytes");
        let (src, rest) = read_header(&mut &h[..], Duration::from_secs(1)).await.unwrap();
        assert_eq!(src, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(rest, b"first MPUSH bytes");
        let e = read_header(&mut &h[..20], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(e, ProxyHeaderError::Truncated);
        let (mut a, _b) = tokio::io::duplex(64);
        let e = read_header(&mut a, Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e, ProxyHeaderError::Timeout);
    }

    #[test]
    fn cidr_ranges() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()) && !host.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()) && !all.contains("::1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
