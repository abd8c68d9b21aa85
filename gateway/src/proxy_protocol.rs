//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary) on the MPUSH listener: a
//! trusted proxy (`mpush-proxy`, HAProxy, nginx `proxy_protocol`, envoy) prefixes each
//! connection with its client's address, so that the per-IP caps, the RSA queue's turns and
//! the logs count the client rather than the proxy. Only connections from `[limits]
//! trusted-proxies` are read for a header, and from those one is required.
//!
//! The header itself is parsed by [`mpush_protocol::proxy_header`] (sans-IO, shared with
//! `mpush-proxy`'s encoder and fuzzed); `read_header` drives it on a socket with a size bound
//! and a timeout, and this module keeps the socket side: the timeout, the trusted ranges
//! ([`Cidr`]) and the bytes read past the header.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use mpush_protocol::proxy_header::{self, ProxyHeaderError, MAX_HEADER_LEN};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

/// Why a connection from a trusted proxy was refused before its PROXY header was read.
/// Every variant closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadHeaderError {
    /// The bytes are not a PROXY header this gateway accepts.
    #[error(transparent)]
    Malformed(#[from] ProxyHeaderError),
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

/// Reads a PROXY header from `stream`, at most [`MAX_HEADER_LEN`] bytes and within `timeout`.
/// Returns the client's address (`None`: use the socket's peer address) and the bytes read
/// past the header, which are the start of the MPUSH stream.
pub(crate) async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Vec<u8>), ReadHeaderError> {
    let read = async {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let mut filled = 0;
        loop {
            match stream.read(&mut buf[filled..]).await {
                Ok(0) => return Err(ReadHeaderError::Truncated),
                Ok(n) => filled += n,
                Err(e) => return Err(ReadHeaderError::Io(e.to_string())),
            }
            if let Some((header, len)) = proxy_header::parse(&buf[..filled])? {
                return Ok((header.source(), buf[len..filled].to_vec()));
            }
            // Unreachable in practice (parse refuses anything longer than MAX_HEADER_LEN), but
            // a full buffer must never mean a zero-length read taken for end of stream.
            if filled == buf.len() {
                return Err(ProxyHeaderError::BadLength(filled).into());
            }
        }
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Err(ReadHeaderError::Timeout))
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

    /// A v2 PROXY header from 192.0.2.7:40000 to 10.0.0.1:3000.
    fn v2_header() -> Vec<u8> {
        let mut h = Vec::new();
        proxy_header::ProxyHeader::Tcp {
            source: "192.0.2.7:40000".parse().unwrap(),
            destination: "10.0.0.1:3000".parse().unwrap(),
        }
        .encode_v2(&mut h);
        h
    }

    #[tokio::test]
    async fn read_header_keeps_what_follows_and_refuses_truncation() {
        let mut h = v2_header();
        h.extend_from_slice(b"first MPUSH bytes");
        let (src, rest) = read_header(&mut &h[..], Duration::from_secs(1)).await.unwrap();
        assert_eq!(src, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(rest, b"first MPUSH bytes");
        let e = read_header(&mut &h[..20], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(e, ReadHeaderError::Truncated);
        let e = read_header(&mut &b"\x00\x00\x00\x08hello"[..], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(e, ReadHeaderError::Malformed(ProxyHeaderError::NoSignature));
        let (mut a, _b) = tokio::io::duplex(64);
        let e = read_header(&mut a, Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e, ReadHeaderError::Timeout);
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
