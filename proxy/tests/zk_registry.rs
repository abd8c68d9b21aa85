//! The proxy against a real ZooKeeper 3.4.8 (the jar MPUSH 0.8.0 ships with) holding connection
//! servers the way MPUSH registers them: ephemeral JSON nodes under `/mpush/cluster/cs`, behind
//! a creator-only digest ACL. Covers what the browser cluster test (tests/real-mpush/cluster.mjs)
//! cannot stage with real MPUSH servers: weights, entries that are not servers, a wrong digest,
//! a node that leaves while a session to it is open, ZooKeeper restarting.
//!
//! Needs Java and the jars tests/real-mpush/build.sh puts in tests/real-mpush/target/lib-server,
//! so it is ignored by a plain `cargo test`; tests/real-mpush/run.sh runs it after the build:
//! `cargo test -p mpush-proxy --test zk_registry -- --ignored`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mpush_protocol::frame::Command as Cmd;
use mpush_proxy::Config;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use zookeeper_client as zk;

/// Upper bound for anything the proxy must notice (ZooKeeper watches fire in milliseconds).
const WAIT: Duration = Duration::from_secs(30);
const CS: &str = "/mpush/cluster/cs";

fn lib_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/real-mpush/target/lib-server")
}

/// ZooKeeperServerMain on 127.0.0.1 with its data in `dir`; killed on drop.
struct ZooKeeper {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl ZooKeeper {
    async fn start(dir: &Path, port: u16) -> ZooKeeper {
        let lib = lib_dir();
        let jars: Vec<String> = ["zookeeper-3.4.8.jar", "slf4j-api-1.7.25.jar", "log4j-1.2.16.jar"]
            .iter()
            .map(|j| {
                let p = lib.join(j);
                assert!(p.exists(), "{} is missing: run tests/real-mpush/build.sh", p.display());
                p.to_string_lossy().into_owned()
            })
            .collect();
        let cfg = dir.join("zk.cfg");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "tickTime=250\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .args(["-Xmx48m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Dzookeeper.jmx.log4j.disable=true"])
            .arg("-cp")
            .arg(jars.join(":"))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java");
        let zk = ZooKeeper { port, dir: dir.to_owned(), child };
        eventually("ZooKeeper to accept connections", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        zk
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn restart(&mut self) {
        self.stop().await;
        let again = ZooKeeper::start(&self.dir.clone(), self.port).await;
        *self = again;
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port (bound and released).
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Polls `check` until it holds; panics with `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client registering connection servers as MPUSH does (Curator with MPUSH's digest and a
/// creator-only ACL on every node it creates).
async fn mpush_like_writer(zk_addr: &str) -> zk::Client {
    let client = zk::Client::connector()
        .with_auth("digest", b"mpush")
        .with_server_version(3, 4, 8)
        .with_session_timeout(Duration::from_secs(5))
        .connect(zk_addr)
        .await
        .unwrap();
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    for p in ["/mpush", "/mpush/cluster", CS] {
        match client.create(p, b"", &persistent).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("create {p}: {e}"),
        }
    }
    client
}

async fn register(writer: &zk::Client, name: &str, json: &str) {
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::creator_all());
    writer.create(&format!("{CS}/{name}"), json.as_bytes(), &ephemeral).await.unwrap();
}

fn server_json(addr: &str, weight: u32) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    format!(r#"{{"attrs":{{"weight":{weight}}},"host":"{host}","port":{port}}}"#)
}

fn zk_config(zk_addr: &str) -> Config {
    let mut c = config(&[]);
    c.zk = vec![zk_addr.to_owned()];
    c.zk_reconnect_max = Duration::from_secs(1);
    c
}

/// A new WebSocket session through the proxy and the upstream connection it got, found by a
/// packet sent through it (`/readyz` probes also reach the upstreams: they close at once).
/// Returns whether it landed on `a`.
async fn session(proxy: SocketAddr, a: &mut FakeUpstream, b: &mut FakeUpstream, tag: u8) -> (Ws, TcpStream, bool) {
    let mut ws = connect(proxy).await;
    let p = frame(Cmd::PUSH, i32::from(tag), &[tag; 5]);
    send(&mut ws, &p).await;
    loop {
        let (mut up, on_a) = tokio::select! {
            up = a.accept() => (up, true),
            up = b.accept() => (up, false),
        };
        let mut got = vec![0; p.len()];
        if let Ok(Ok(_)) = tokio::time::timeout(T, up.read_exact(&mut got)).await {
            assert_eq!(got, p);
            return (ws, up, on_a);
        }
    }
}

async fn readyz(addr: SocketAddr) -> (u16, String) {
    let (status, _, body) = http_get(addr, "/readyz").await;
    (status, String::from_utf8(body).unwrap())
}

async fn metrics(addr: SocketAddr) -> String {
    String::from_utf8(http_get(addr, "/metrics").await.2).unwrap()
}

#[tokio::test]
#[ignore = "needs Java and tests/real-mpush/build.sh; run by tests/real-mpush/run.sh"]
async fn follows_what_mpush_registers_and_survives_zookeeper_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut zookeeper = ZooKeeper::start(dir.path(), free_port().await).await;
    let zk_addr = zookeeper.addr();
    let writer = mpush_like_writer(&zk_addr).await;
    let mut a = FakeUpstream::start().await;
    let mut b = FakeUpstream::start().await;
    register(&writer, "a-uuid", &server_json(&a.addr, 1)).await;
    register(&writer, "b-uuid", &server_json(&b.addr, 3)).await;
    register(&writer, "garbage", "{not json").await;
    register(&writer, "no-port", r#"{"attrs":{},"host":"127.0.0.1","port":0}"#).await;

    // --zk only: the registered servers are the upstream set, read with MPUSH's digest.
    let proxy = start(zk_config(&zk_addr)).await;
    eventually("both servers listed", || async {
        let (status, body) = readyz(proxy.addr).await;
        status == 200 && body.contains(&a.addr) && body.contains(&b.addr) && body.contains("registry: connected")
    })
    .await;
    let m = metrics(proxy.addr).await;
    assert!(m.contains("mpush_proxy_registry_connected 1\n"), "{m}");
    assert!(m.contains("mpush_proxy_registry_events_total{event=\"bad_node\"} 2\n"), "{m}");
    assert!(m.contains(&format!("mpush_proxy_upstream_weight{{upstream=\"{}\"}} 3\n", b.addr)), "{m}");
    assert!(m.contains(&format!("mpush_proxy_upstream_listed{{upstream=\"{}\",source=\"zk\"}} 1\n", a.addr)), "{m}");

    // Weighted least connections: of four sessions, b (weight 3) takes three, a one.
    let mut sessions = Vec::new();
    let mut on_a = Vec::new();
    for tag in 0..4 {
        let (ws, up, is_a) = session(proxy.addr, &mut a, &mut b, tag).await;
        if is_a {
            on_a.push((ws, up))
        } else {
            sessions.push((ws, up))
        }
    }
    assert_eq!((on_a.len(), sessions.len()), (1, 3));
    let (mut ws_a, mut up_a) = on_a.pop().unwrap();
    roundtrip(&mut ws_a, &mut up_a, 1).await;

    // a leaves the registry: its open session carries on, new sessions go to b.
    writer.delete(&format!("{CS}/a-uuid"), None).await.unwrap();
    eventually("a unlisted", || async { !readyz(proxy.addr).await.1.contains(&a.addr) }).await;
    roundtrip(&mut ws_a, &mut up_a, 2).await;
    let m = metrics(proxy.addr).await;
    assert!(m.contains(&format!("mpush_proxy_upstream_listed{{upstream=\"{}\",source=\"zk\"}} 0\n", a.addr)), "{m}");
    assert!(m.contains(&format!("mpush_proxy_upstream_connections{{upstream=\"{}\"}} 1\n", a.addr)), "{m}");
    let (ws, up, is_a) = session(proxy.addr, &mut a, &mut b, 10).await;
    assert!(!is_a, "a new session went to a node that left");
    sessions.push((ws, up));

    // ZooKeeper goes away: the last known set keeps serving, and the proxy says so.
    zookeeper.stop().await;
    eventually("the registry reported unreachable", || async {
        let (status, body) = readyz(proxy.addr).await;
        status == 200 && body.contains("registry: unreachable") && body.contains(&b.addr)
    })
    .await;
    assert!(metrics(proxy.addr).await.contains("mpush_proxy_registry_connected 0\n"));
    let (ws, up, is_a) = session(proxy.addr, &mut a, &mut b, 11).await;
    assert!(!is_a);
    sessions.push((ws, up));
    roundtrip(&mut ws_a, &mut up_a, 3).await;

    // Back (same data dir): the writer's session and nodes are restored; a change made now
    // reaches the proxy.
    zookeeper.restart().await;
    eventually("the registry reconnected", || async {
        metrics(proxy.addr).await.contains("mpush_proxy_registry_connected 1\n")
    })
    .await;
    register(&writer, "a-again", &server_json(&a.addr, 1)).await;
    eventually("a listed again", || async { readyz(proxy.addr).await.1.contains(&a.addr) }).await;
    // a (1 open session, weight 1) is below b (6, weight 3): the next session goes there.
    let (mut ws_new, mut up_new, is_a) = session(proxy.addr, &mut a, &mut b, 12).await;
    assert!(is_a, "a is back but got no new session");
    roundtrip(&mut ws_new, &mut up_new, 4).await;
    for (ws, up) in sessions.iter_mut() {
        roundtrip(ws, up, 5).await;
    }
    drop(writer);
}

#[tokio::test]
#[ignore = "needs Java and tests/real-mpush/build.sh; run by tests/real-mpush/run.sh"]
async fn a_wrong_digest_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let zookeeper = ZooKeeper::start(dir.path(), free_port().await).await;
    let writer = mpush_like_writer(&zookeeper.addr()).await;
    let up = FakeUpstream::start().await;
    register(&writer, "a-uuid", &server_json(&up.addr, 1)).await;

    let mut c = zk_config(&zookeeper.addr());
    c.zk_digest = "someone-else".into();
    let proxy = start(c).await;
    eventually("the refusal reported", || async {
        let (status, body) = readyz(proxy.addr).await;
        status == 503 && body.contains("registry: not read yet (not allowed to read /mpush/cluster/cs")
    })
    .await;
    let m = metrics(proxy.addr).await;
    assert!(m.contains("mpush_proxy_registry_connected 0\n"), "{m}");
    assert!(!m.contains("mpush_proxy_registry_events_total{event=\"error\"} 0\n"), "{m}");
    // Nothing to relay to: the session is refused with 1013.
    let mut ws = connect(proxy.addr).await;
    assert_eq!(expect_close(&mut ws).await.0, 1013);
}
