//! The real binary on SIGTERM: refuses new connections, closes open sessions with 1001 after
//! the drain timeout and exits 0.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::child::spawn_until_line;
use common::*;

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_and_exits_0() {
    let mut up = FakeUpstream::start().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpush-proxy"));
    cmd.args(["--listen", "127.0.0.1:0", "--upstream", &up.addr, "--drain-timeout", "1s"]);
    cmd.args(["--log-format", "json", "--log-level", "info"]);
    // The bound address comes from the "listening" log line.
    let listening = |line: &str| {
        let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
        v["fields"]["local_addr"].as_str()?.parse::<SocketAddr>().ok()
    };
    let (mut child, addr) = spawn_until_line(&mut cmd, listening, T).await;

    let mut ws = connect(addr).await;
    let mut conn = up.accept().await;
    roundtrip(&mut ws, &mut conn, 1).await;

    let killed = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: the session still relays, the listener is gone.
    roundtrip(&mut ws, &mut conn, 2).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still open after SIGTERM");

    let t = Instant::now();
    assert_eq!(expect_close(&mut ws).await, (1001, "going away".into()));
    assert!(t.elapsed() >= Duration::from_millis(400), "closed before the drain timeout");
    expect_upstream_closed(&mut conn).await;
    drop(ws);

    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mpush-proxy did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
