//! Hostile-handshake figures for a running gateway (a bench, not a test: it asserts nothing and
//! prints a table). `scripts/bench-hostile.sh` builds it in release mode and runs it against a
//! release gateway on 127.0.0.1.
//!
//! 1. CPU per refused oversized handshake: `--refused` connections each send a handshake whose
//!    RSA body is one block over `max-handshake-body`; the gateway answers Error 100 and closes
//!    without decrypting. The gateway's CPU time (utime + stime of `/proc/<pid>/stat`, all
//!    threads) before and after, divided by the attempts. The same for `--legit` complete
//!    handshakes, for scale.
//! 2. A legitimate client's handshake latency (connect to HandshakeOk, p50/p99/max) and an
//!    established connection's heartbeat echo time while `--flood` connections send, in a
//!    loop, oversized handshakes (refused before RSA), then handshakes of exactly
//!    `max-handshake-body` bytes whose every RSA block decrypts (random plaintext under the
//!    gateway's public key): the most RSA work one packet may cost, each ending in Error 100
//!    (the plaintext is no handshake) and a close.
//!
//!    The flood comes from `--flood-from` (127.0.0.1); the legitimate client from each
//!    address of `--legit-from` in turn (default 127.0.0.2, then 127.0.0.1): another address
//!    is the realistic attack (the gateway's RSA workers take turns by peer), the flood's own
//!    address is a client behind the same NAT or proxy as the attacker. On Linux all of
//!    127.0.0.0/8 is loopback, so both stay on this machine. The legitimate client runs on
//!    its own thread and runtime (an attacker is another machine), sharing only the cores.
//!
//! ```sh
//! cargo run --release -p mpush-gateway --example handshake_flood -- \
//!   --gateway 127.0.0.1:3000 --pid "$(pidof mpush-gateway)" --public-key MIGf...
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpush_native_client::{NativeClient, Options};
use mpush_protocol::{ClientConfig, ClientEvent, Command, Flags, Packet, RsaPublicKey};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Command-line settings (`--name value`).
struct Args {
    gateway: SocketAddr,
    pid: u32,
    public_key: String,
    refused: usize,
    legit: usize,
    flood: usize,
    samples: usize,
    max_handshake_body: usize,
    clk_tck: u64,
    flood_from: IpAddr,
    legit_from: Vec<IpAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        gateway: SocketAddr::from(([127, 0, 0, 1], 3000)),
        pid: 0,
        public_key: String::new(),
        refused: 20_000,
        legit: 500,
        flood: 200,
        samples: 200,
        max_handshake_body: 512,
        clk_tck: 100,
        flood_from: IpAddr::from([127, 0, 0, 1]),
        legit_from: vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 1])],
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("{k}: not a number: {v}"));
        match k.as_str() {
            "--gateway" => a.gateway = v.parse().map_err(|_| format!("--gateway: not an address: {v}"))?,
            "--pid" => a.pid = v.parse().map_err(|_| format!("--pid: not a pid: {v}"))?,
            "--public-key" => a.public_key = v,
            "--refused" => a.refused = num(&v)?,
            "--legit" => a.legit = num(&v)?,
            "--flood" => a.flood = num(&v)?,
            "--samples" => a.samples = num(&v)?,
            "--max-handshake-body" => a.max_handshake_body = num(&v)?,
            "--clk-tck" => a.clk_tck = num(&v)? as u64,
            "--flood-from" => a.flood_from = v.parse().map_err(|_| format!("--flood-from: not an IP: {v}"))?,
            "--legit-from" => {
                a.legit_from = v
                    .split(',')
                    .map(|ip| ip.trim().parse().map_err(|_| format!("--legit-from: not an IP: {ip}")))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.pid == 0 || a.public_key.is_empty() {
        return Err("--pid and --public-key are required".into());
    }
    Ok(a)
}

/// The process's CPU time so far (user + system, every thread), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32, clk_tck: u64) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid ... utime is field 14 of the line, index 11 here; stime 12.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or("unexpected /proc stat format");
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_micros(ticks * 1_000_000 / clk_tck.max(1)))
}

/// A handshake packet with an RSA body of `len` bytes: random bytes, or (`decryptable`)
/// random plaintext encrypted with the gateway's public key in whole 128-byte blocks, so that
/// every block costs the gateway a private-key operation before the handshake fails to decode.
fn handshake_packet(key: &RsaPublicKey, len: usize, decryptable: bool) -> Result<Vec<u8>, String> {
    let body = if decryptable {
        // PKCS#1 v1.5 with a 1024-bit key: 117 plaintext bytes per 128-byte block.
        let mut plain = vec![0u8; len / 128 * 117];
        rand::thread_rng().fill_bytes(&mut plain);
        key.encrypt(&mut rand::thread_rng(), &plain).map_err(|e| e.to_string())?
    } else {
        let mut b = vec![0u8; len];
        rand::thread_rng().fill_bytes(&mut b);
        b
    };
    Ok(Packet { cmd: Command::HANDSHAKE, flags: Flags::CRYPTO, session_id: 1, body }.to_bytes())
}

/// A connection to `addr` from the address `from` (any free port).
async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if from.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(from, 0))?;
    let s = socket.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends one handshake packet and reads until the gateway closes.
async fn hostile_handshake(from: IpAddr, addr: SocketAddr, packet: &[u8]) -> std::io::Result<()> {
    let mut s = connect_from(from, addr).await?;
    s.write_all(packet).await?;
    let mut sink = [0u8; 256];
    // Error 100 then EOF; a reset counts as closed too.
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

/// A complete handshake with the native client from the address `from`; returns how long it
/// took (connect included).
async fn legit_handshake(from: IpAddr, addr: SocketAddr, key: &RsaPublicKey, device: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let config = ClientConfig::new(key.clone(), device);
    let stream = connect_from(from, addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut c = NativeClient::start(stream, config, Options::default()).map_err(|e| e.to_string())?;
    c.wait_for(|e| matches!(e, ClientEvent::HandshakeOk { .. })).await.map_err(|e| e.to_string())?;
    let took = start.elapsed();
    c.close().await;
    Ok(took)
}

/// Runs `n` jobs, `parallel` at a time; returns how many failed.
async fn run_many<F, Fut>(n: usize, parallel: usize, job: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (job, next, failed) = (job.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                if !job(i).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    failed.load(Ordering::Relaxed) as usize
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Heartbeat echo times on one connection until `stop`.
async fn heartbeat_probe(from: IpAddr, addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<Vec<Duration>> {
    let mut s = connect_from(from, addr).await?;
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(&[mpush_protocol::HEARTBEAT_BYTE]).await?;
        s.read_exact(&mut b).await?;
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = parse_args()?;
    let key = RsaPublicKey::from_base64(a.public_key.trim()).map_err(|e| format!("--public-key: {e}"))?;
    let addr = a.gateway;
    let oversized = a.max_handshake_body + 128;
    let oversized_packet: Arc<[u8]> = handshake_packet(&key, oversized, false)?.into();
    let flood_packet: Arc<[u8]> = handshake_packet(&key, a.max_handshake_body, true)?.into();

    // 1. CPU per refused oversized handshake, and per complete handshake for scale.
    let before = cpu_time(a.pid, a.clk_tck)?;
    let wall = Instant::now();
    let p = oversized_packet.clone();
    let flood_from = a.flood_from;
    let failed = run_many(a.refused, 32, move |_| {
        let p = p.clone();
        async move { hostile_handshake(flood_from, addr, &p).await.is_ok() }
    })
    .await;
    let refused_wall = wall.elapsed();
    let refused_cpu = cpu_time(a.pid, a.clk_tck)?.saturating_sub(before);

    let before = cpu_time(a.pid, a.clk_tck)?;
    let k = key.clone();
    let legit_failed = run_many(a.legit, 8, move |i| {
        let k = k.clone();
        async move { legit_handshake(flood_from, addr, &k, &format!("bench-legit-{i}")).await.is_ok() }
    })
    .await;
    let legit_cpu = cpu_time(a.pid, a.clk_tck)?.saturating_sub(before);

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| refused oversized handshake ({oversized} B body), gateway CPU per attempt | {} ({} attempts, {} failed, {:.0}/s) |",
        us(refused_cpu / a.refused.max(1) as u32),
        a.refused,
        failed,
        a.refused as f64 / refused_wall.as_secs_f64()
    );
    println!(
        "| complete handshake, gateway CPU per handshake | {} ({} handshakes, {} failed) |",
        us(legit_cpu / a.legit.max(1) as u32),
        a.legit,
        legit_failed
    );

    // 2. Latency under a flood: first of oversized handshakes (refused before any RSA work),
    // then of maximum-size handshakes whose every block decrypts (the most one packet costs);
    // the legitimate client from each of its addresses.
    for (packet, what) in [
        (oversized_packet.clone(), format!("{oversized} B handshakes (refused before RSA)")),
        (flood_packet.clone(), format!("{} B handshakes (every block decrypts)", a.max_handshake_body)),
    ] {
        for &from in &a.legit_from {
            flood(addr, &key, &a, packet.clone(), &what, from).await?;
        }
    }
    Ok(())
}

/// Runs `a.flood` connections from `a.flood_from` sending `packet` in a loop while timing
/// `a.samples` legitimate handshakes and an open connection's heartbeat echo, both from
/// `legit_from`; prints two table rows.
async fn flood(
    addr: SocketAddr,
    key: &RsaPublicKey,
    a: &Args,
    packet: Arc<[u8]>,
    what: &str,
    legit_from: IpAddr,
) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flood_done = Arc::new(AtomicU64::new(0));
    let mut flooders = Vec::new();
    for _ in 0..a.flood {
        let (stop, done, packet, from) = (stop.clone(), flood_done.clone(), packet.clone(), a.flood_from);
        flooders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if hostile_handshake(from, addr, &packet).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    // Let the flood fill the gateway's queues before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flood_start = Instant::now();
    let done_at_start = flood_done.load(Ordering::Relaxed);
    // The legitimate client and the probe run on a thread and runtime of their own: an
    // attacker is another machine, so they must not wait in line behind the flood's tasks
    // inside this process (they still share the cores).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (key, stop2, n) = (key.clone(), stop.clone(), a.samples);
    std::thread::spawn(move || {
        let measured = tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| {
            rt.block_on(async move {
                let probe = tokio::spawn(heartbeat_probe(legit_from, addr, stop2.clone()));
                let mut samples = Vec::with_capacity(n);
                let mut errors: Vec<String> = Vec::new();
                for i in 0..n {
                    match legit_handshake(legit_from, addr, &key, &format!("bench-probe-{i}")).await {
                        Ok(d) => samples.push(d),
                        Err(e) => errors.push(e),
                    }
                }
                stop2.store(true, Ordering::Relaxed);
                let beats = probe.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
                (samples, errors, beats)
            })
        });
        let _ = done_tx.send(measured);
    });
    let measured = done_rx.await.map_err(|_| "the legitimate client's thread panicked".to_owned());
    let flood_rate = (flood_done.load(Ordering::Relaxed) - done_at_start) as f64 / flood_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    let (mut samples, mut errors, beats) = measured?.map_err(|e| format!("runtime: {e}"))?;
    let mut beats = beats.map_err(|e| format!("heartbeat probe: {e}"))?;
    samples.sort();
    beats.sort();
    let source = if legit_from == a.flood_from {
        format!("client on the flood's own address {legit_from}")
    } else {
        format!("client from {legit_from}, flood from {}", a.flood_from)
    };
    errors.sort();
    errors.dedup();
    let why = if errors.is_empty() { String::new() } else { format!(": {}", errors.join("; ")) };
    println!(
        "| legit handshake ({source}) during a {}-connection flood of {what}, p50 / p99 / max | {} / {} / {} ({} samples, {} failed{why}; flood {:.0} handshakes/s) |",
        a.flood,
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(samples.last().copied().unwrap_or_default()),
        samples.len(),
        a.samples - samples.len(),
        flood_rate
    );
    println!(
        "| heartbeat echo on an open connection during that flood, p50 / p99 / max | {} / {} / {} ({} samples) |",
        ms(percentile(&beats, 0.5)),
        ms(percentile(&beats, 0.99)),
        ms(beats.last().copied().unwrap_or_default()),
        beats.len()
    );
    Ok(())
}
