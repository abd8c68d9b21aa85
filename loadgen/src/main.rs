//! `mpush-loadgen`: opens N MPUSH client sessions through `mpush-proxy` (WebSocket) and, in
//! the same run, directly over TCP to the connection server, then measures what an operator
//! asks about: sessions held with heartbeats flowing, push throughput, push latency
//! percentiles at a fixed rate, and the proxy's memory per idle session.
//!
//! Each session is a `ClientSession` from `mpush-protocol` driven by a small task; pushes are
//! sent through the gateway's push API and carry their send time, so latency is measured end
//! to end (API -> gateway -> [proxy ->] client).
#![forbid(unsafe_code)]

mod api;
mod session;
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mpush_protocol::RsaPublicKey;

use crate::session::{Counters, Target};

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(name = "mpush-loadgen", about = "Load generator for mpush-proxy / MPUSH connection servers")]
pub struct Args {
    /// WebSocket URL of the proxy (e.g. ws://127.0.0.1:8080/mpush); several (repeat or
    /// comma-separate) spread the sessions round-robin over several proxy processes. Omit to
    /// skip the bridged run.
    #[arg(long, value_delimiter = ',')]
    ws: Vec<String>,
    /// Origin header sent on the WebSocket upgrade.
    #[arg(long, default_value = "http://127.0.0.1")]
    origin: String,
    /// Connection server address for the direct-TCP baseline (e.g. 127.0.0.1:3000); omit to skip it.
    #[arg(long)]
    tcp: Option<String>,
    /// Push API base URL of the gateway (e.g. http://127.0.0.1:3001).
    #[arg(long)]
    api: String,
    /// Bearer token for the push API.
    #[arg(long)]
    api_token: Option<String>,
    /// The server's RSA public key (base64 X.509).
    #[arg(long)]
    public_key: String,
    /// Sessions per run.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Handshakes in flight at once while opening sessions.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Client heartbeat bounds (ms); the server's bounds decide the result.
    #[arg(long, default_value_t = 10_000)]
    heartbeat: i32,
    /// Seconds to hold the idle sessions (heartbeats flowing) before measuring memory.
    #[arg(long, default_value_t = 15)]
    hold_seconds: u64,
    /// PIDs of the proxy processes (repeat or comma-separate), to measure their memory and CPU
    /// per session/push (Linux /proc); figures are summed over them.
    #[arg(long, value_delimiter = ',')]
    proxy_pid: Vec<u32>,
    /// PIDs of the connection server (mpush-gateway, or MPUSH's JVM) for the direct-TCP run: its
    /// memory per session and CPU per push, as --proxy-pid measures the proxy in the bridged run.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Pushes in the throughput burst.
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// Users per push API call.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Push API calls in flight at once during the throughput burst (a server whose push API
    /// answers after every push's result, like MPUSH's PushSender, needs several).
    #[arg(long, default_value_t = 1)]
    api_concurrency: usize,
    /// Paced rate for the latency run (pushes per second).
    #[arg(long, default_value_t = 1000)]
    rate: usize,
    /// Seconds of the paced latency run.
    #[arg(long, default_value_t = 5)]
    rate_seconds: u64,
    /// Name of the bridged run in the report (e.g. the bridge measured: mpush-proxy, websocat).
    #[arg(long, default_value = "bridged WebSocket")]
    label: String,
    /// WebSocket subprotocol offered on the upgrade ("" offers none; websockify wants "binary").
    #[arg(long, default_value = "mpush")]
    ws_protocol: String,
    /// The bridge relays a byte stream (websocat, websockify): its messages may split or merge
    /// packets, and the session reassembles them. Without it every message must be exactly one
    /// packet (mpush-proxy's framing contract); others are counted as framing violations.
    #[arg(long)]
    ws_stream: bool,
    /// Keep the sessions that opened when some fail (a bridge that cannot hold them all); the
    /// report says how many were held. Without it one failed session fails the run.
    #[arg(long)]
    keep_going: bool,
    /// Also print each run's figures as one JSON line (prefixed `RESULT `), for scripts.
    #[arg(long)]
    json: bool,
}

/// What one run (bridged or direct) measured.
#[derive(Debug, Default)]
pub struct RunReport {
    label: String,
    /// Sessions the run tried to open (`sessions` is how many were held).
    attempted: usize,
    /// Messages that were not exactly one packet (WebSocket runs without `--ws-stream`).
    framing_violations: u64,
    /// What the measured PIDs are: "proxy" (bridged run) or "server" (direct run).
    measured: &'static str,
    sessions: usize,
    open_secs: f64,
    dead_sessions: u64,
    heartbeats_sent: u64,
    rss_per_session_kb: Option<f64>,
    burst_pushes: u64,
    burst_secs: f64,
    /// Proxy CPU time (user + system, all threads) per push during the burst, in µs.
    proxy_cpu_per_push_us: Option<f64>,
    /// The same over the paced latency run: every push handled on its own (a bridge that falls
    /// behind in the burst batches several pushes per system call there), heartbeats included.
    cpu_per_push_at_rate_us: Option<f64>,
    /// Context switches (voluntary and not, all threads) per push in the burst: a count, so
    /// unlike CPU time it does not swell when other work shares the cores.
    switches_per_push: Option<f64>,
    /// The same over the paced run (heartbeats included).
    switches_per_push_at_rate: Option<f64>,
    latency: Option<stats::Percentiles>,
}

impl RunReport {
    fn print(&self) {
        println!("== {} ==", self.label);
        println!("sessions opened:        {} of {} in {:.1} s", self.sessions, self.attempted, self.open_secs);
        if self.framing_violations > 0 {
            println!("framing violations:     {} messages not exactly one packet", self.framing_violations);
        }
        println!("heartbeats sent:        {} (dead sessions: {})", self.heartbeats_sent, self.dead_sessions);
        if let Some(kb) = self.rss_per_session_kb {
            println!("{} memory / session: {kb:.1} KB", self.measured);
        }
        if self.burst_secs > 0.0 {
            println!(
                "push throughput:        {:.0} pushes/s ({} pushes in {:.2} s)",
                self.burst_pushes as f64 / self.burst_secs,
                self.burst_pushes,
                self.burst_secs
            );
        }
        if let Some(us) = self.cpu_per_push_at_rate_us {
            println!("{} CPU per push at the fixed rate: {us:.1} µs", self.measured);
        }
        if let Some(us) = self.proxy_cpu_per_push_us {
            println!("{} CPU per push:     {us:.1} µs", self.measured);
        }
        if let (Some(burst), Some(paced)) = (self.switches_per_push, self.switches_per_push_at_rate) {
            println!("{} context switches per push: {burst:.2} (burst), {paced:.2} (fixed rate)", self.measured);
        }
        if let Some(p) = &self.latency {
            println!(
                "latency at fixed rate:  p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
                p.p50, p.p90, p.p99, p.max, p.samples
            );
        }
    }
}

impl RunReport {
    /// The figures as one JSON object (pushes/s, µs, KB, ms; null when not measured).
    fn json(&self) -> String {
        let rate = (self.burst_secs > 0.0).then(|| self.burst_pushes as f64 / self.burst_secs);
        serde_json::json!({
            "label": self.label,
            "attempted": self.attempted,
            "sessions": self.sessions,
            "dead_sessions": self.dead_sessions,
            "framing_violations": self.framing_violations,
            "kb_per_session": self.rss_per_session_kb,
            "pushes_per_sec": rate,
            "burst_pushes": self.burst_pushes,
            "cpu_us_per_push": self.proxy_cpu_per_push_us,
            "cpu_us_per_push_at_rate": self.cpu_per_push_at_rate_us,
            "switches_per_push": self.switches_per_push,
            "switches_per_push_at_rate": self.switches_per_push_at_rate,
            "p50_ms": self.latency.as_ref().map(|p| p.p50),
            "p99_ms": self.latency.as_ref().map(|p| p.p99),
            "latency_samples": self.latency.as_ref().map(|p| p.samples),
        })
        .to_string()
    }
}

/// `pids` and all their descendants (a bridge that forks per connection, like websockify,
/// is measured with its children), from the parent field of `/proc/<pid>/stat`.
fn with_descendants(pids: &[u32]) -> Vec<u32> {
    let mut all = pids.to_vec();
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        all.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    all
}

/// CPU time (user + system) of all threads of `pid`, in ns: the sum of each thread's
/// `schedstat` run time (ns resolution), else `stat` utime + stime (clock ticks, 100 Hz).
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else { continue };
            if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
                total += ns;
                any = true;
            }
        }
    }
    if any {
        return Some(total);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

/// Context switches of all threads of `pid` (voluntary: it waited, e.g. in `epoll_wait` or a
/// futex; involuntary: it was preempted).
fn switches(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
        total += status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

/// `f` summed over `pids`; `None` without pids or when one cannot be read.
fn sum_over(pids: &[u32], f: fn(u32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let roots: u64 = pids.iter().map(|p| f(*p)).sum::<Option<u64>>()?;
    // A child may exit between listing and reading (a closed websockify connection): skip it.
    let children: u64 = with_descendants(pids).iter().skip(pids.len()).filter_map(|p| f(*p)).sum();
    Some(roots + children)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run(args: &Args, key: &RsaPublicKey, target: Target, label: &str) -> Result<RunReport, String> {
    let mut report = RunReport { label: label.to_owned(), attempted: args.sessions, ..RunReport::default() };
    let counters = Arc::new(Counters::default());
    let prefix = format!("lg-{}-{}", label.split_whitespace().next().unwrap_or("run"), std::process::id());
    let (pids, measured): (&[u32], _) = match &target {
        Target::Ws { .. } => (&args.proxy_pid, "proxy"),
        Target::Tcp { .. } => (&args.server_pid, "server"),
    };
    report.measured = measured;
    let rss_before = sum_over(pids, rss_kb);

    let start = Instant::now();
    let (sessions, users) = session::open_all(args, key, &target, &prefix, counters.clone()).await?;
    report.sessions = sessions.len();
    report.open_secs = start.elapsed().as_secs_f64();
    eprintln!(
        "[{label}] {} sessions open in {:.1} s; holding {} s",
        sessions.len(),
        report.open_secs,
        args.hold_seconds
    );

    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    report.dead_sessions = counters.dead.load(std::sync::atomic::Ordering::Relaxed);
    report.heartbeats_sent = counters.heartbeats.load(std::sync::atomic::Ordering::Relaxed);
    if let (Some(before), Some(after)) = (rss_before, sum_over(pids, rss_kb)) {
        report.rss_per_session_kb = Some(after.saturating_sub(before) as f64 / sessions.len().max(1) as f64);
    }

    let client = Arc::new(api::PushApi::new(&args.api, args.api_token.clone())?);
    if users.is_empty() {
        return Ok(report); // nothing held: nothing to push to
    }

    // Throughput: pushes to every user in batches, as fast as the API takes them.
    if args.burst > 0 {
        counters.reset_received();
        let cpu_before = sum_over(pids, cpu_ns);
        let switches_before = sum_over(pids, switches);
        let t = Instant::now();
        let mut sent = 0usize;
        let mut i = 0usize;
        let mut calls = tokio::task::JoinSet::new();
        while sent < args.burst {
            if calls.len() >= args.api_concurrency.max(1) {
                calls.join_next().await.ok_or("no push call")?.map_err(|e| e.to_string())??;
            }
            let n = args.batch.min(args.burst - sent).min(users.len());
            let batch: Vec<String> = (0..n).map(|k| users[(i + k) % users.len()].clone()).collect();
            i = (i + n) % users.len();
            let client = client.clone();
            calls.spawn(async move {
                let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
                client.push(&batch, &stats::now_micros().to_string()).await
            });
            sent += n;
        }
        while let Some(call) = calls.join_next().await {
            call.map_err(|e| e.to_string())??;
        }
        let got = counters.wait_received(sent as u64, Duration::from_secs(60)).await;
        report.burst_pushes = got;
        report.burst_secs = t.elapsed().as_secs_f64();
        if let (Some(before), Some(after)) = (cpu_before, sum_over(pids, cpu_ns)) {
            report.proxy_cpu_per_push_us = Some(after.saturating_sub(before) as f64 / 1000.0 / got.max(1) as f64);
        }
        if let (Some(before), Some(after)) = (switches_before, sum_over(pids, switches)) {
            report.switches_per_push = Some(after.saturating_sub(before) as f64 / got.max(1) as f64);
        }
    }

    // Latency at a fixed rate: a batch every 10 ms.
    if args.rate > 0 && args.rate_seconds > 0 {
        counters.reset_received();
        counters.latencies.lock().map_err(|_| "poisoned")?.clear();
        let per_tick = (args.rate / 100).max(1);
        let ticks = args.rate_seconds * 100;
        let cpu_before = sum_over(pids, cpu_ns);
        let switches_before = sum_over(pids, switches);
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        let mut i = 0usize;
        let mut sent = 0u64;
        for _ in 0..ticks {
            interval.tick().await;
            let batch: Vec<&str> = (0..per_tick).map(|k| users[(i + k) % users.len()].as_str()).collect();
            i = (i + per_tick) % users.len();
            client.push(&batch, &stats::now_micros().to_string()).await?;
            sent += per_tick as u64;
        }
        let got = counters.wait_received(sent, Duration::from_secs(30)).await;
        if let (Some(before), Some(after)) = (cpu_before, sum_over(pids, cpu_ns)) {
            report.cpu_per_push_at_rate_us = Some(after.saturating_sub(before) as f64 / 1000.0 / got.max(1) as f64);
        }
        if let (Some(before), Some(after)) = (switches_before, sum_over(pids, switches)) {
            report.switches_per_push_at_rate = Some(after.saturating_sub(before) as f64 / got.max(1) as f64);
        }
        let lat = counters.latencies.lock().map_err(|_| "poisoned")?.clone();
        report.latency = stats::Percentiles::of(lat);
    }

    report.framing_violations = counters.framing_violations.load(std::sync::atomic::Ordering::Relaxed);
    drop(sessions);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(report)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let key = match RsaPublicKey::from_base64(&args.public_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("mpush-loadgen: --public-key: {e}");
            std::process::exit(2);
        }
    };
    let mut reports = Vec::new();
    if let Some(addr) = &args.tcp {
        match run(&args, &key, Target::Tcp { addr: addr.clone() }, "direct TCP").await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("mpush-loadgen: direct run failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if !args.ws.is_empty() {
        let target = Target::Ws {
            urls: Arc::new(args.ws.clone()),
            origin: args.origin.clone(),
            protocol: args.ws_protocol.clone(),
            stream: args.ws_stream,
        };
        match run(&args, &key, target, &args.label).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("mpush-loadgen: bridged run failed: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("mpush-loadgen: {} sessions per run", args.sessions);
    for r in &reports {
        r.print();
        if args.json {
            println!("RESULT {}", r.json());
        }
    }
    if let [direct, bridged] = reports.as_slice() {
        if direct.burst_secs > 0.0 && bridged.burst_secs > 0.0 {
            let d = direct.burst_pushes as f64 / direct.burst_secs;
            let b = bridged.burst_pushes as f64 / bridged.burst_secs;
            println!("bridged / direct throughput: {:.2}", b / d);
        }
        if let (Some(d), Some(b)) = (&direct.latency, &bridged.latency) {
            println!("added latency by the proxy: p50 {:+.3} ms, p99 {:+.3} ms", b.p50 - d.p50, b.p99 - d.p99);
        }
    }
}
