//! The real binary drains on SIGTERM: it stops accepting, lets connections finish what they
//! have under way (a push waiting for its ack, an upstream push being posted to the webhook)
//! but takes no new upstream push, while idle connections are closed at once, and exits 0
//! once all of it is done. Also: the
//! production config's drain fits in the systemd unit's stop timeout.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{api, bind, WAIT};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use mpush_gateway::GatewayConfig;
use mpush_native_client::{Closed, NativeClient, Options};
use mpush_protocol::{AckMode, ClientConfig, ClientEvent, RsaPublicKey};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A gateway process and what its banner said.
struct Running {
    child: Child,
    mpush: SocketAddr,
    api: SocketAddr,
    public_key: RsaPublicKey,
    dir: std::path::PathBuf,
}

impl Running {
    fn start(name: &str, extra: &[&str]) -> Running {
        let dir = std::env::temp_dir().join(format!("mpush-gateway-drain-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mpush-gateway"))
            .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
            .arg("--key-file")
            .arg(dir.join("key.toml"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // "mpush-gateway: MPUSH on A, push API on http://B" then "public key (...): KEY"; the
        // rest of stdout is drained so the gateway never blocks on a full pipe.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = None;
        let mut key = None;
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.split("MPUSH on ").nth(1) {
                let (m, a) = rest.split_once(", push API on http://").unwrap();
                addrs = Some((m.trim().parse().unwrap(), a.trim().parse().unwrap()));
            } else if let Some(k) = line.strip_prefix("public key (mp.security.public-key): ") {
                key = Some(RsaPublicKey::from_base64(k.trim()).unwrap());
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let (mpush, api) = addrs.expect("banner");
        Running { child, mpush, api, public_key: key.expect("public key line"), dir }
    }

    async fn client(&self, device: &str) -> NativeClient {
        let config = ClientConfig::new(self.public_key.clone(), device);
        let mut c = NativeClient::connect(self.mpush, config, Options::default()).await.unwrap();
        c.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await.unwrap();
        c
    }

    fn sigterm(&self) {
        assert!(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap().success());
    }

    /// Waits until the listener is closed: the drain has begun.
    async fn draining(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(self.mpush).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit (it must, within WAIT) and returns whether it exited 0.
    async fn exited_ok(mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(tokio::time::Instant::now() < deadline, "mpush-gateway still running after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        status.success()
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave the gateway behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook that reports each POST and answers it when the test says so.
async fn held_webhook() -> (SocketAddr, mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        let (go, wait) = oneshot::channel();
                        let _ = tx.send(go);
                        let _ = wait.await;
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn sigterm_lets_a_webhook_post_in_flight_finish_and_acks_it_before_exit() {
    let (hook, mut posts) = held_webhook().await;
    let url = format!("http://{hook}/hook");
    let mut gw = Running::start("webhook", &["--webhook", &url, "--drain-timeout", "20000"]);
    let mut c = gw.client("dev-late-post").await;
    let id = c.push(b"in flight".to_vec(), AckMode::Auto).await.unwrap().unwrap();
    let answer = tokio::time::timeout(WAIT, posts.recv()).await.unwrap().unwrap();

    // SIGTERM while the webhook holds the POST: the gateway stops accepting but waits.
    gw.sigterm();
    gw.draining().await;
    assert!(gw.running(), "exited with a post in flight");
    // A push sent now is not taken (no ack: the client sends it to the next gateway).
    let late = c.push(b"too late".to_vec(), AckMode::Auto).await.unwrap().unwrap();
    answer.send(()).unwrap();
    // The first push is stored, so it is acked: the connection was still open for it.
    let mut acked = Vec::new();
    while let Some(e) = tokio::time::timeout(WAIT, c.next_event()).await.unwrap() {
        if let ClientEvent::PushAcked { request } = e {
            acked.push(request);
        }
    }
    assert_eq!(acked, [id], "only the push taken before the SIGTERM is acked (late one: {late:?})");
    assert_eq!(c.closed().await, Closed::ByPeer);
    assert!(gw.exited_ok().await, "exit status 0");
    assert!(posts.try_recv().is_err(), "the late push never reached the webhook");
}

#[tokio::test]
async fn sigterm_closes_idle_connections_at_once_and_busy_ones_when_done() {
    let gw = Running::start("clients", &["--drain-timeout", "20000"]);
    let mut busy = gw.client("dev-busy").await;
    bind(&mut busy, "busy", None).await;
    let mut idle = gw.client("dev-idle").await;
    bind(&mut idle, "idle", None).await;

    // A push the application acks itself (biz ack): under way until the client acks it.
    let api_addr = gw.api;
    let pushed = tokio::spawn(async move {
        api(
            api_addr,
            "POST",
            "/push",
            Some(serde_json::json!({"userId": "busy", "content": "wait for me", "ack": "biz", "timeoutMs": 25000})),
            None,
        )
        .await
    });
    let push = busy.wait_for(|e| matches!(e, ClientEvent::Push(_))).await.unwrap();
    let ClientEvent::Push(push) = push else { unreachable!() };

    gw.sigterm();
    gw.draining().await;
    // The idle connection is closed at once, while the busy one waits for its ack...
    assert_eq!(idle.closed().await, Closed::ByPeer);
    busy.ack(push.session_id).await.unwrap();
    // ...which reaches the gateway: the push API call in flight answers success.
    let (status, body) = tokio::time::timeout(WAIT, pushed).await.unwrap().unwrap();
    assert_eq!((status, &body["results"][0]["result"]), (200, &serde_json::json!("success")), "{body}");
    assert_eq!(busy.closed().await, Closed::ByPeer);
    assert!(gw.exited_ok().await, "exit status 0");
}

#[test]
fn the_production_drain_fits_in_the_units_stop_timeout() {
    let c = GatewayConfig::from_toml(include_str!("../../deploy/mpush-gateway.toml")).unwrap();
    assert!(c.http.deny_private_addresses, "production refuses private addresses");
    let unit = include_str!("../../deploy/mpush-gateway.service");
    let stop = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().trim_end_matches('s').parse::<u64>().ok())
        .expect("TimeoutStopSec in seconds");
    // The drain plus the last close (5 s at most) before systemd's SIGKILL.
    assert!(c.drain_timeout + 5_000 <= stop * 1000, "drain-timeout {} ms vs TimeoutStopSec={stop}s", c.drain_timeout);
}
