#![no_main]
//! Arbitrary bytes: the PROXY header parser returns a header, "need more" or a typed error,
//! never panics and never claims more bytes than it was given; every header it returns reads
//! the same from every longer input, and a TCP header re-encoded as v2 parses back to the
//! same addresses (IPv4-mapped ones as IPv4: v2 has one family for both).
use libfuzzer_sys::fuzz_target;
use mpush_protocol::proxy_header::{parse, ProxyHeader, MAX_HEADER_LEN};
use std::net::SocketAddr;

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, len))) = parse(data) else {
        // "Need more" is only ever said below the bound a reader buffers.
        if let Ok(None) = parse(data) {
            assert!(data.len() < MAX_HEADER_LEN);
        }
        return;
    };
    assert!(len <= data.len() && len <= MAX_HEADER_LEN);
    // The header is its first `len` bytes: they alone parse to it.
    assert_eq!(parse(&data[..len]), Ok(Some((header, len))));
    let mut again = Vec::new();
    header.encode_v2(&mut again);
    let (back, n) = parse(&again).expect("re-encoded header parses").expect("whole");
    assert_eq!(n, again.len());
    match (header, back) {
        (ProxyHeader::Tcp { source, destination }, ProxyHeader::Tcp { source: s, destination: d }) => {
            assert_eq!((canonical(source), canonical(destination)), (canonical(s), canonical(d)));
        }
        (h, b) => assert_eq!(h, b),
    }
});
