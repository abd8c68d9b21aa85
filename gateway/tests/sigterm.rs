//! The real binary on SIGTERM (what `docker stop` and systemd send): it stops cleanly, closing
//! its connections, and exits 0 instead of being killed at the end of the stop timeout.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_closes_connections_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("mpush-gateway-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpush-gateway"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(dir.join("key.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // "mpush-gateway: MPUSH on 127.0.0.1:PORT, push API on http://..." (log lines come first);
    // the rest of stdout is drained so the gateway never blocks on a full pipe.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("MPUSH on ").nth(1).and_then(|r| r.split(',').next()).map(|a| a.trim().to_owned()))
        .expect("banner");
    std::thread::spawn(move || lines.for_each(drop));

    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A heartbeat is echoed: the connection is being served.
    std::io::Write::write_all(&mut conn, &[0xDF]).unwrap();
    let mut b = [0u8; 1];
    conn.read_exact(&mut b).unwrap();
    assert_eq!(b[0], 0xDF);

    assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "mpush-gateway still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    // The open connection was closed, not left to the kernel's reset of a killed process.
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "unexpected bytes after shutdown: {rest:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
