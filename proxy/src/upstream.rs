//! The fixed set of MPUSH connection servers: least-connections choice, failover, readiness.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// A server that failed within this window is tried after the others.
const FAILURE_PENALTY: Duration = Duration::from_secs(10);
/// `/readyz` trusts a successful connect this recent without probing again.
const READY_FRESH: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Server {
    addr: String,
    active: AtomicUsize,
    /// Milliseconds since `Upstreams::epoch` of the last failure, plus one (0 = never).
    last_failure: AtomicU64,
}

/// The upstream pool. Only addresses from the configuration are ever dialled.
#[derive(Debug)]
pub(crate) struct Upstreams {
    servers: Vec<Server>,
    next: AtomicUsize,
    connect_timeout: Duration,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// Like `Server::last_failure`, for the last successful connect to any server.
    last_success: AtomicU64,
}

/// An open upstream connection's place in the least-connections count; released on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    pool: Arc<Upstreams>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.servers[self.index].active.fetch_sub(1, Relaxed);
        self.pool.metrics.upstream_active[self.index].fetch_sub(1, Relaxed);
    }
}

impl Lease {
    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.pool.servers[self.index].addr
    }
}

impl Upstreams {
    pub fn new(addrs: &[String], connect_timeout: Duration, metrics: Arc<Metrics>) -> Upstreams {
        let servers = addrs
            .iter()
            .map(|a| Server { addr: a.clone(), active: AtomicUsize::new(0), last_failure: AtomicU64::new(0) })
            .collect();
        Upstreams {
            servers,
            next: AtomicUsize::new(0),
            connect_timeout,
            metrics,
            epoch: Instant::now(),
            last_success: AtomicU64::new(0),
        }
    }

    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn within(&self, stamp: u64, window: Duration) -> bool {
        stamp != 0 && self.stamp().saturating_sub(stamp) < window.as_millis() as u64
    }

    /// Server indices in the order to try: not recently failed first, then fewest open
    /// connections, ties rotated round-robin.
    fn order(&self) -> Vec<usize> {
        let n = self.servers.len();
        let start = if n == 0 { 0 } else { self.next.fetch_add(1, Relaxed) % n };
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by_key(|&i| {
            let s = &self.servers[i];
            (self.within(s.last_failure.load(Relaxed), FAILURE_PENALTY), s.active.load(Relaxed), (i + n - start) % n)
        });
        idx
    }

    async fn dial(&self, index: usize) -> Option<TcpStream> {
        let server = &self.servers[index];
        match tokio::time::timeout(self.connect_timeout, TcpStream::connect(server.addr.as_str())).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                self.last_success.store(self.stamp(), Relaxed);
                Some(s)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timeout".to_owned(),
                };
                tracing::warn!(upstream = %server.addr, error = %why, "upstream connect failed");
                server.last_failure.store(self.stamp(), Relaxed);
                self.metrics.connect_failure(index);
                None
            }
        }
    }

    /// Connects to the best server, failing over to the next ones; `None` if none accepts.
    pub async fn connect(self: &Arc<Self>) -> Option<(TcpStream, Lease)> {
        for index in self.order() {
            // Count the attempt first, so concurrent sessions spread while connecting.
            self.servers[index].active.fetch_add(1, Relaxed);
            self.metrics.upstream_active[index].fetch_add(1, Relaxed);
            let lease = Lease { pool: Arc::clone(self), index };
            if let Some(stream) = self.dial(index).await {
                return Some((stream, lease));
            }
        }
        None
    }

    /// Whether some server accepted a TCP connection in the last few seconds, probing now
    /// (one server after the other) if none did.
    pub async fn ready(&self) -> bool {
        if self.within(self.last_success.load(Relaxed), READY_FRESH) {
            return true;
        }
        for index in self.order() {
            if self.dial(index).await.is_some() {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn pool(addrs: &[String]) -> Arc<Upstreams> {
        let m = Arc::new(Metrics::new(addrs));
        Arc::new(Upstreams::new(addrs, Duration::from_secs(1), m))
    }

    async fn closed_port() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        drop(l);
        a
    }

    #[tokio::test]
    async fn fails_over_and_prefers_fewest_connections() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed_port().await;
        let addrs = vec![dead.clone(), a.local_addr().unwrap().to_string(), b.local_addr().unwrap().to_string()];
        let p = pool(&addrs);
        let (_s1, l1) = p.connect().await.unwrap();
        assert_ne!(l1.addr(), dead);
        // The dead server is penalised now; the other live one has fewer connections.
        let (_s2, l2) = p.connect().await.unwrap();
        assert_ne!(l2.addr(), dead);
        assert_ne!(l2.addr(), l1.addr());
        assert_eq!(p.metrics.render().matches("_failures_total{upstream=").count(), 3);
        assert!(p.ready().await);
        drop(l1);
        assert_eq!(p.servers.iter().map(|s| s.active.load(Relaxed)).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn nothing_reachable() {
        let p = pool(&[closed_port().await]);
        assert!(p.connect().await.is_none());
        assert!(!p.ready().await);
        assert_eq!(p.servers[0].active.load(Relaxed), 0);
        assert!(!pool(&[]).ready().await);
    }
}
