//! The real binary on SIGTERM: refuses new connections, closes open sessions with 1001 after
//! the drain timeout and exits 0.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_and_exits_0() {
    let mut up = FakeUpstream::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpush-proxy"))
        .args(["--listen", "127.0.0.1:0", "--upstream", &up.addr, "--drain-timeout", "1s"])
        .args(["--log-format", "json", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The bound address comes from the "listening" log line; keep draining stdout after it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if let Some(addr) = v["fields"]["local_addr"].as_str().and_then(|a| a.parse().ok()) {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(T)).await.unwrap().expect("no listening line");

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
