//! Where the heap of an idle session goes, by allocation site (run on demand, Linux):
//! `cargo test -p mpush-proxy --release --test heap_per_session -- --ignored --nocapture`
//!
//! The proxy runs in this process on its own two-thread runtime with dhat as the global
//! allocator; the browsers and the fake MPUSH server are blocking std sockets that allocate
//! nothing per session, so every live byte added while the sessions open is the proxy's. Each
//! session relays one packet each way first (so buffers that exist only while bytes are in
//! flight have come and gone), then sits idle. `tests/memory.rs` measures the same on the real
//! binary as RSS, which adds allocator overhead and the kernel's view on top.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use mpush_protocol::frame::{Command, Flags, Packet};
use mpush_proxy::{Config, Proxy};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A packet as a masked client WebSocket frame.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x82, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A browser: upgrade, then one packet each way through the proxy. Returns both sockets.
fn open_session(proxy: &str, upstream: &TcpListener, tag: u8) -> (TcpStream, TcpStream) {
    let mut ws = TcpStream::connect(proxy).unwrap();
    let req = format!(
        "GET /mpush HTTP/1.1\r\nHost: {proxy}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mpush\r\n\r\n"
    );
    ws.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let (mut up, _) = upstream.accept().unwrap();
    let packet = Packet { cmd: Command::PUSH, flags: Flags::CRYPTO, session_id: i32::from(tag), body: vec![tag; 5] };
    let packet = packet.to_bytes();
    ws.write_all(&client_frame(&packet)).unwrap();
    let mut got = vec![0; packet.len()];
    up.read_exact(&mut got).unwrap();
    assert_eq!(got, packet);
    up.write_all(&packet).unwrap();
    let mut msg = vec![0; 2 + packet.len()];
    ws.read_exact(&mut msg).unwrap();
    assert_eq!(&msg[2..], &packet[..]);
    (ws, up)
}

/// The first frames of a dhat call stack outside the allocator and the standard library.
fn site(frames: &[&str]) -> String {
    let skip = ["alloc::", "<alloc::", "dhat::", "<dhat::", "core::", "<core::", "std::", "__rust", "[root]"];
    let names: Vec<String> = frames
        .iter()
        .map(|f| f.split_once(": ").map_or(*f, |(_, rest)| rest))
        .filter(|f| !skip.iter().any(|s| f.starts_with(s)))
        .take(2)
        .map(|f| f.split(" (").next().unwrap_or(f).chars().take(110).collect())
        .collect();
    names.join(" <- ")
}

#[test]
#[ignore = "measurement; opens 2,000 sockets"]
fn heap_per_idle_session() {
    const N: usize = 1000;
    let file = std::env::temp_dir().join(format!("mpush-proxy-dhat-{}.json", std::process::id()));
    let profiler = dhat::Profiler::builder().file_name(&file).build();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.upstreams = vec![upstream.local_addr().unwrap().to_string()];
    config.max_connections = 10 * N;
    config.max_connections_per_ip = 10 * N;
    let proxy = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Proxy::from_listener(config, listener).unwrap()
    });
    let addr = proxy.local_addr().to_string();
    rt.spawn(proxy.run(std::future::pending()));

    let mut keep = Vec::with_capacity(N + 20);
    for i in 0..20u8 {
        keep.push(open_session(&addr, &upstream, i)); // warm-up: runtime, slabs, thread-locals
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = dhat::HeapStats::get();
    for i in 0..N {
        keep.push(open_session(&addr, &upstream, i as u8));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = dhat::HeapStats::get();
    let bytes = (after.curr_bytes as f64 - before.curr_bytes as f64) / N as f64;
    let blocks = (after.curr_blocks as f64 - before.curr_blocks as f64) / N as f64;
    println!("live heap per idle session: {bytes:.0} bytes in {blocks:.1} blocks ({N} sessions)");
    drop(profiler); // writes the per-site profile while the sessions are still open

    // Sites that hold at least one byte per session (what was live at the end, over N).
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let _ = std::fs::remove_file(&file);
    let ftbl: Vec<&str> = json["ftbl"].as_array().unwrap().iter().map(|f| f.as_str().unwrap_or("")).collect();
    let mut by_site: HashMap<String, (u64, u64)> = HashMap::new();
    for pp in json["pps"].as_array().unwrap() {
        let (eb, ebk) = (pp["eb"].as_u64().unwrap_or(0), pp["ebk"].as_u64().unwrap_or(0));
        if eb == 0 {
            continue;
        }
        let frames: Vec<&str> =
            pp["fs"].as_array().unwrap().iter().filter_map(|i| ftbl.get(i.as_u64()? as usize).copied()).collect();
        let e = by_site.entry(site(&frames)).or_default();
        e.0 += eb;
        e.1 += ebk;
    }
    let mut sites: Vec<_> = by_site.into_iter().filter(|(_, (eb, _))| *eb >= N as u64).collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.1 .0));
    println!("{:>8} {:>7}  site (live at the end / {N}; includes the 20 warm-up sessions)", "B/sess", "blocks");
    for (site, (eb, ebk)) in sites.iter().take(15) {
        println!("{:>8.0} {:>7.2}  {site}", *eb as f64 / N as f64, *ebk as f64 / N as f64);
    }
    drop(keep);
    rt.shutdown_timeout(Duration::from_secs(1));
    // Issue 12's budget: 100,000 idle browsers in well under half a gigabyte of proxy memory.
    assert!(bytes < 4096.0, "{bytes:.0} bytes of live heap per idle session (budget 4 KB)");
}
