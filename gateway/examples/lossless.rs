//! Pushes acked vs pushes delivered across a gateway SIGTERM and restart (a bench, not a
//! test: it prints figures; `scripts/bench-lossless.sh` builds it and the gateway in release
//! mode and runs it). Target: no push acked and lost, on either path.
//!
//! * It runs a webhook (recording every upstream push it stores) and starts the gateway
//!   binary on fixed 127.0.0.1 ports with a key file, so the restarted gateway has the same
//!   address and key.
//! * `--clients` native clients connect, bind `user-<i>`, take pushes (auto-acked by the
//!   session) and send upstream pushes with an auto ack at `--rate` per second in total; an
//!   upstream push that fails (ack timeout, connection lost) is sent again after reconnecting,
//!   as an application would. A client whose connection closes reconnects every 100 ms.
//! * The push API gets `--rate` pushes per second in total, half `ack: auto`, half
//!   `ack: none`, round-robin over the users; refused calls (the gateway is down) are counted,
//!   not retried. The webhook answers `--webhook-delay` ms after storing a push; the gateway
//!   posts `--webhook-concurrency` at once.
//! * At `--restart-at` seconds the gateway gets SIGTERM; once it has exited it is started
//!   again. Pushing stops after `--duration` seconds; then the clients get up to 10 s to have
//!   their upstream pushes acked.
//!
//! Lost = acked (API result `success`, client got its Ack) but never delivered (no client
//! received it, the webhook never stored it).
//!
//! ```sh
//! cargo run --release -p mpush-gateway --example lossless -- --gateway target/release/mpush-gateway
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use mpush_gateway::http_proxy::{send_plain_http, PlainRequest};
use mpush_native_client::{NativeClient, Options};
use mpush_protocol::{AckMode, ClientConfig, ClientEvent, RequestId, RsaPublicKey};
use tokio::net::TcpListener;

/// Command-line settings (`--name value`).
struct Args {
    gateway: String,
    clients: usize,
    rate: u64,
    duration: u64,
    restart_at: u64,
    drain_timeout: u64,
    webhook_delay: u64,
    webhook_concurrency: u64,
}

fn args() -> Args {
    let mut a = Args {
        gateway: "target/release/mpush-gateway".into(),
        clients: 50,
        rate: 400,
        duration: 10,
        restart_at: 4,
        drain_timeout: 5000,
        webhook_delay: 50,
        webhook_concurrency: 64,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair.get(1).map(String::as_str).unwrap_or_default());
        let num = || v.parse::<u64>().unwrap_or_else(|_| panic!("{k}: not a number: {v:?}"));
        match k {
            "--gateway" => a.gateway = v.to_owned(),
            "--clients" => a.clients = num() as usize,
            "--rate" => a.rate = num(),
            "--duration" => a.duration = num(),
            "--restart-at" => a.restart_at = num(),
            "--drain-timeout" => a.drain_timeout = num(),
            "--webhook-delay" => a.webhook_delay = num(),
            "--webhook-concurrency" => a.webhook_concurrency = num(),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// What every task records.
#[derive(Default)]
struct Tally {
    /// Upstream push ids the webhook stored, and how often (a retry may repeat one).
    webhook: HashMap<String, u32>,
    /// Upstream push ids whose Ack a client received.
    upstream_acked: BTreeSet<String>,
    /// Upstream push ids sent (each once, however often it was retried).
    upstream_sent: BTreeSet<String>,
    /// Upstream pushes sent again after a failure.
    upstream_resent: u64,
    /// API push ids answered `success`, by ack mode.
    api_acked: BTreeSet<String>,
    api_acked_none: u64,
    /// API pushes sent, and how the others ended.
    api_sent: u64,
    api_other: HashMap<String, u64>,
    /// API push ids some client received.
    delivered: BTreeSet<String>,
    /// Connections that ended and were made again.
    reconnects: u64,
}

type Shared = Arc<Mutex<Tally>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A webhook that stores every upstream push and answers 204 `delay` later (a remote
/// service's latency: there are always posts in flight when the gateway gets SIGTERM).
async fn webhook(tally: Shared, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind webhook");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tally = tally.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tally = tally.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let content = json["contentBase64"]
                            .as_str()
                            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                            .map(|c| String::from_utf8_lossy(&c).into_owned())
                            .unwrap_or_default();
                        *lock(&tally).webhook.entry(content).or_default() += 1;
                        tokio::time::sleep(delay).await;
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

struct Gateway {
    bin: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mpush: SocketAddr,
}

impl Gateway {
    /// Starts the binary and waits until it accepts connections.
    async fn start(&self) -> Child {
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        while tokio::net::TcpStream::connect(self.mpush).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child
    }
}

fn public_key(key_file: &std::path::Path) -> RsaPublicKey {
    let text = std::fs::read_to_string(key_file).expect("key file");
    let v: toml::Value = toml::from_str(&text).expect("key file toml");
    RsaPublicKey::from_base64(v["public-key"].as_str().expect("public-key")).expect("public key")
}

/// One client: connects (again and again), binds, receives, sends upstream pushes until
/// `stop_at`, then until each of its pushes is acked or `give_up_at`.
async fn client(
    i: usize,
    addr: SocketAddr,
    key: RsaPublicKey,
    per_sec: f64,
    stop_at: Instant,
    give_up_at: Instant,
    tally: Shared,
) {
    let user = format!("user-{i}");
    let mut queue: Vec<String> = Vec::new();
    let mut next_seq = 0u64;
    let period = Duration::from_secs_f64(1.0 / per_sec.max(0.001));
    let mut first = true;
    'connect: loop {
        if Instant::now() > give_up_at || (Instant::now() > stop_at && queue.is_empty()) {
            return;
        }
        let mut config = ClientConfig::new(key.clone(), format!("dev-{i}"));
        config.request_timeout = 3000;
        let options = Options { wait_timeout: Duration::from_secs(5), ..Options::default() };
        let Ok(mut c) = NativeClient::connect(addr, config, options).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !first {
            lock(&tally).reconnects += 1;
        }
        first = false;
        if c.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await.is_err()
            || c.bind(&user, None, None).await.is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut inflight: HashMap<RequestId, String> = HashMap::new();
        // Clients spread over the period, so that pushes (and webhook posts) are under way
        // at any instant, the SIGTERM's included.
        let phase = period.mul_f64(i as f64 / 64.0 % 1.0);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now > give_up_at || (now > stop_at && queue.is_empty() && inflight.is_empty()) {
                        return;
                    }
                    let id = if let Some(id) = queue.pop() {
                        lock(&tally).upstream_resent += 1;
                        id
                    } else if now <= stop_at {
                        next_seq += 1;
                        let id = format!("up-{i}-{next_seq}");
                        lock(&tally).upstream_sent.insert(id.clone());
                        id
                    } else {
                        continue;
                    };
                    match c.push(id.clone().into_bytes(), AckMode::Auto).await {
                        Ok(Some(req)) => { inflight.insert(req, id); }
                        _ => { queue.push(id); }
                    }
                }
                e = c.next_event() => match e {
                    Some(ClientEvent::Push(m)) => {
                        lock(&tally).delivered.insert(String::from_utf8_lossy(&m.content).into_owned());
                    }
                    Some(ClientEvent::PushAcked { request }) => {
                        if let Some(id) = inflight.remove(&request) {
                            lock(&tally).upstream_acked.insert(id);
                        }
                    }
                    Some(ClientEvent::RequestFailed { request, .. }) => {
                        if let Some(id) = inflight.remove(&request) {
                            queue.push(id);
                        }
                    }
                    Some(_) => {}
                    None => {
                        // Closed: whatever was not acked is sent again on the next connection.
                        queue.extend(inflight.into_values());
                        continue 'connect;
                    }
                },
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let tally: Shared = Arc::default();
    let hook = webhook(tally.clone(), Duration::from_millis(a.webhook_delay)).await;
    let dir = std::env::temp_dir().join(format!("mpush-bench-lossless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key_file = dir.join("key.toml");
    let (mpush_port, api_port) = (free_port(), free_port());
    let mpush: SocketAddr = ([127, 0, 0, 1], mpush_port).into();
    let api: SocketAddr = ([127, 0, 0, 1], api_port).into();
    let gw = Gateway {
        bin: a.gateway.clone(),
        args: vec![
            "--listen".into(),
            mpush.to_string(),
            "--api-listen".into(),
            api.to_string(),
            "--key-file".into(),
            key_file.display().to_string(),
            "--webhook".into(),
            format!("http://{hook}/upstream"),
            "--drain-timeout".into(),
            a.drain_timeout.to_string(),
        ],
        // POSTs at once: with 50 ms per answer, 64 take 1280 pushes/s (the default 8: 160).
        env: vec![("MPUSH_GATEWAY_WEBHOOK_CONCURRENCY".into(), a.webhook_concurrency.to_string())],
        mpush,
    };
    let mut child = gw.start().await;
    let key = public_key(&key_file);

    let started = Instant::now();
    let stop_at = started + Duration::from_secs(a.duration);
    let give_up_at = stop_at + Duration::from_secs(10);
    let per_client = a.rate as f64 / a.clients as f64;
    let clients: Vec<_> = (0..a.clients)
        .map(|i| tokio::spawn(client(i, mpush, key.clone(), per_client, stop_at, give_up_at, tally.clone())))
        .collect();
    // Let every client bind before the first push.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The push API stream.
    let pusher = {
        let tally = tally.clone();
        let clients = a.clients;
        let rate = a.rate;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let mut calls = tokio::task::JoinSet::new();
            let mut seq = 0u64;
            while Instant::now() < stop_at {
                tick.tick().await;
                seq += 1;
                let id = format!("api-{seq}");
                let ack = if seq % 2 == 0 { "auto" } else { "none" };
                let body = serde_json::json!({
                    "userId": format!("user-{}", seq as usize % clients),
                    "content": id,
                    "ack": ack,
                    "timeoutMs": 3000,
                });
                let tally = tally.clone();
                lock(&tally).api_sent += 1;
                calls.spawn(async move {
                    let req = PlainRequest {
                        method: http::Method::POST,
                        uri: format!("http://{api}/push"),
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: body.to_string().into_bytes(),
                    };
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(10), send_plain_http(req, None, 1 << 16)).await;
                    let result = match outcome {
                        Ok(Ok(r)) => serde_json::from_slice::<serde_json::Value>(&r.body)
                            .ok()
                            .and_then(|v| v["results"][0]["result"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("http {}", r.status)),
                        Ok(Err(_)) => "refused (gateway down)".into(),
                        Err(_) => "no answer".into(),
                    };
                    let mut t = lock(&tally);
                    if result == "success" {
                        t.api_acked.insert(id);
                        if ack == "none" {
                            t.api_acked_none += 1;
                        }
                    } else {
                        *t.api_other.entry(result).or_default() += 1;
                    }
                });
            }
            while calls.join_next().await.is_some() {}
        })
    };

    // SIGTERM, wait for the exit, start again.
    let restart_at = started + Duration::from_secs(a.restart_at);
    tokio::time::sleep_until(restart_at.into()).await;
    let term_at = Instant::now();
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let exited_after = term_at.elapsed();
    child = gw.start().await;
    let down_for = term_at.elapsed();

    let _ = pusher.await;
    for c in clients {
        let _ = c.await;
    }
    // Deliveries of the last pushes are in by now; the webhook's last posts too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let t = lock(&tally);
    let api_lost = t.api_acked.iter().filter(|id| !t.delivered.contains(*id)).count();
    let up_lost = t.upstream_acked.iter().filter(|id| !t.webhook.contains_key(*id)).count();
    let stored = t.upstream_sent.iter().filter(|id| t.webhook.contains_key(*id)).count();
    let dupes: u32 = t.webhook.values().map(|n| n.saturating_sub(1)).sum();
    let api_delivered = t.delivered.iter().filter(|id| id.starts_with("api-")).count();
    println!(
        "gateway: {} clients, {} pushes/s each way, SIGTERM at {} s: exited ({status}) {} ms later, \
         accepting again {} ms after the SIGTERM; {} reconnects",
        a.clients,
        a.rate,
        a.restart_at,
        exited_after.as_millis(),
        down_for.as_millis(),
        t.reconnects
    );
    let mut other: Vec<_> = t.api_other.iter().map(|(k, v)| format!("{k} {v}")).collect();
    other.sort();
    println!(
        "push API -> clients: sent {}, acked (success) {} ({} of them ack none), delivered {}, \
         acked and lost {api_lost}; not acked: {}",
        t.api_sent,
        t.api_acked.len(),
        t.api_acked_none,
        api_delivered,
        other.join(", ")
    );
    println!(
        "clients -> webhook: sent {}, acked {}, stored {stored} ({} resends, {dupes} stored twice), \
         acked and lost {up_lost}, never acked {}",
        t.upstream_sent.len(),
        t.upstream_acked.len(),
        t.upstream_resent,
        t.upstream_sent.len() - t.upstream_acked.len()
    );
    if api_lost + up_lost > 0 {
        std::process::exit(1);
    }
}
