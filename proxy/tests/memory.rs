//! Memory per idle session, measured on the real binary (Linux only, run on demand):
//! `cargo test -p mpush-proxy --release --test memory -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; needs ~4 fds per session"]
async fn idle_session_memory() {
    const N: usize = 2000;
    let mut up = FakeUpstream::start().await;
    let port = dead_addr().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mpush-proxy"))
        .args(["--listen", &port, "--upstream", &up.addr, "--log-level", "warn"])
        .args(["--max-connections-per-ip", "100000"])
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = port.parse().unwrap();
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm up allocator and runtime with a few sessions.
    let mut keep = Vec::new();
    for i in 0..20u8 {
        let mut ws = connect(addr).await;
        let mut conn = up.accept().await;
        roundtrip(&mut ws, &mut conn, i).await;
        keep.push((ws, conn));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(child.id());
    for i in 0..N {
        let mut ws = connect(addr).await;
        let mut conn = up.accept().await;
        roundtrip(&mut ws, &mut conn, i as u8).await;
        keep.push((ws, conn));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(child.id());
    let per = (after - before) as f64 * 1024.0 / N as f64;
    println!("proxy RSS {before} KiB -> {after} KiB for {N} idle sessions: {per:.0} bytes per session");
    child.kill().unwrap();
    let _ = child.wait();
    // About 2.6 KB measured (heap_per_session.rs says where it goes); a per-session buffer
    // kept while idle, as tungstenite's were, would show up as 2 KiB or more on top.
    assert!(per < 4.0 * 1024.0, "{per} bytes of RSS per idle session (budget 4 KB)");
}
