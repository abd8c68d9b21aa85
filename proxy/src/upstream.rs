//! The set of MPUSH connection servers: fed by the static list and/or the ZooKeeper registry,
//! weighted least-connections choice, failover within one browser attempt, readiness.
//!
//! A node that leaves the registry gets no new sessions; the sessions it has keep running (each
//! holds a [`Lease`] on the node) and the node is forgotten once the last one ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mpush_protocol::proxy_header::ProxyHeader;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::metrics::{Metrics, RegistryEvent};

/// A server that failed within this window is tried after the others.
const FAILURE_PENALTY: Duration = Duration::from_secs(10);
/// `/readyz` trusts a successful connect this recent without probing again.
const READY_FRESH: Duration = Duration::from_secs(5);
/// Weights are clamped to this range, so a bad registry entry cannot starve the others.
pub(crate) const MAX_WEIGHT: u32 = 10_000;

/// Where a node came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The `upstreams` list of the configuration.
    Static,
    /// The ZooKeeper registry (`--zk`).
    Registry,
}

impl Source {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Registry => "zk",
        }
    }
}

/// A connection server as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registered {
    /// `host:port` to dial.
    pub addr: String,
    /// Relative share of new sessions, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
}

#[derive(Debug)]
struct Node {
    addr: String,
    source: Source,
    weight: AtomicU32,
    /// Still listed by its source: only listed nodes get new sessions.
    listed: AtomicBool,
    /// Open upstream connections (and attempts in progress) from this proxy.
    active: AtomicUsize,
    sessions_total: AtomicU64,
    connect_failures: AtomicU64,
    /// Milliseconds since `Upstreams::epoch`, plus one (0 = never).
    last_failure: AtomicU64,
    last_success: AtomicU64,
}

impl Node {
    fn new(addr: String, source: Source, weight: u32) -> Node {
        Node {
            addr,
            source,
            weight: AtomicU32::new(weight.clamp(1, MAX_WEIGHT)),
            listed: AtomicBool::new(true),
            active: AtomicUsize::new(0),
            sessions_total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            last_success: AtomicU64::new(0),
        }
    }
}

/// One node's numbers for `/metrics`.
#[derive(Clone, Debug)]
pub(crate) struct NodeStats {
    pub addr: String,
    pub source: Source,
    pub listed: bool,
    pub weight: u32,
    pub active: u64,
    pub sessions_total: u64,
    pub connect_failures: u64,
}

/// What the registry connection is doing, for `/readyz` and the log.
#[derive(Clone, Debug)]
pub(crate) struct RegistryStatus {
    /// Whether a ZooKeeper session is up and the node list current.
    pub connected: bool,
    /// Whether the node list was ever read (the set is the last known one otherwise empty).
    pub listed_once: bool,
    /// When `connected` last changed.
    pub since: Instant,
    /// Why the registry is unreachable, when it is.
    pub error: Option<String>,
}

/// The upstream pool. Only addresses from the configuration or the registry are ever dialled.
#[derive(Debug)]
pub(crate) struct Upstreams {
    /// Listed nodes, and unlisted ones that still have sessions.
    nodes: RwLock<Vec<Arc<Node>>>,
    next: AtomicUsize,
    connect_timeout: Duration,
    /// `upstream_proxy_protocol`: open each connection with a PROXY v2 header.
    proxy_protocol: bool,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// `None` without `--zk`.
    registry: Option<Mutex<RegistryStatus>>,
}

/// An open upstream connection's place in the least-connections count; released on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    node: Arc<Node>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.node.active.fetch_sub(1, Relaxed);
    }
}

impl Lease {
    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.node.addr
    }
}

impl Upstreams {
    /// A pool of the static `addrs`; `registry` says whether a registry will feed it too.
    pub fn new(addrs: &[String], registry: bool, connect_timeout: Duration, metrics: Arc<Metrics>) -> Upstreams {
        let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(addrs.len());
        for a in addrs {
            if !nodes.iter().any(|n| n.addr == *a) {
                nodes.push(Arc::new(Node::new(a.clone(), Source::Static, 1)));
            }
        }
        Upstreams {
            nodes: RwLock::new(nodes),
            next: AtomicUsize::new(0),
            connect_timeout,
            proxy_protocol: false,
            metrics,
            epoch: Instant::now(),
            registry: registry.then(|| {
                Mutex::new(RegistryStatus { connected: false, listed_once: false, since: Instant::now(), error: None })
            }),
        }
    }

    /// Opens every upstream connection with a PROXY v2 header (`upstream_proxy_protocol`).
    pub fn with_proxy_protocol(mut self, on: bool) -> Upstreams {
        self.proxy_protocol = on;
        self
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn within(&self, stamp: u64, window: Duration) -> bool {
        stamp != 0 && self.stamp().saturating_sub(stamp) < u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
    }

    fn read_nodes(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Node>>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the registry's part of the set with `listed`. Nodes that left stop getting new
    /// sessions (open ones carry on); nodes that came back are listed again with their counts.
    /// Returns the addresses added and removed.
    pub fn set_registered(&self, listed: &[Registered]) -> (Vec<String>, Vec<String>) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        for n in nodes.iter().filter(|n| n.source == Source::Registry) {
            let now = listed.iter().find(|r| r.addr == n.addr);
            if let Some(r) = now {
                n.weight.store(r.weight.clamp(1, MAX_WEIGHT), Relaxed);
            }
            let was = n.listed.swap(now.is_some(), Relaxed);
            match (was, now.is_some()) {
                (true, false) => removed.push(n.addr.clone()),
                (false, true) => added.push(n.addr.clone()),
                _ => {}
            }
        }
        for r in listed {
            // A registered address that is also static is the same server: the static entry
            // already serves it.
            if !nodes.iter().any(|n| n.addr == r.addr) {
                nodes.push(Arc::new(Node::new(r.addr.clone(), Source::Registry, r.weight)));
                added.push(r.addr.clone());
            }
        }
        nodes.retain(|n| n.listed.load(Relaxed) || n.active.load(Relaxed) > 0);
        drop(nodes);
        self.metrics.registry_event(RegistryEvent::NodeAdded, added.len() as u64);
        self.metrics.registry_event(RegistryEvent::NodeRemoved, removed.len() as u64);
        (added, removed)
    }

    /// The addresses that get new sessions.
    pub fn listed(&self) -> Vec<String> {
        self.read_nodes().iter().filter(|n| n.listed.load(Relaxed)).map(|n| n.addr.clone()).collect()
    }

    /// Records the registry connection state (for `/readyz` and metrics).
    pub fn set_registry_status(&self, connected: bool, listed: bool, error: Option<String>) {
        let Some(r) = &self.registry else { return };
        let mut s = r.lock().unwrap_or_else(|e| e.into_inner());
        if s.connected != connected {
            s.since = Instant::now();
        }
        s.connected = connected;
        s.listed_once |= listed;
        s.error = error;
        self.metrics.set_registry_connected(connected);
    }

    /// The registry state, `None` without `--zk`.
    pub fn registry_status(&self) -> Option<RegistryStatus> {
        self.registry.as_ref().map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Per-node numbers; forgets unlisted nodes whose last session ended.
    pub fn stats(&self) -> Vec<NodeStats> {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|n| n.listed.load(Relaxed) || n.active.load(Relaxed) > 0);
        nodes
            .iter()
            .map(|n| NodeStats {
                addr: n.addr.clone(),
                source: n.source,
                listed: n.listed.load(Relaxed),
                weight: n.weight.load(Relaxed),
                active: n.active.load(Relaxed) as u64,
                sessions_total: n.sessions_total.load(Relaxed),
                connect_failures: n.connect_failures.load(Relaxed),
            })
            .collect()
    }

    /// Listed nodes in the order to try: not recently failed first, then the fewest open
    /// connections per unit of weight, ties rotated round-robin.
    fn order(&self) -> Vec<Arc<Node>> {
        let mut listed: Vec<Arc<Node>> = self.read_nodes().iter().filter(|n| n.listed.load(Relaxed)).cloned().collect();
        let n = listed.len();
        let start = if n == 0 { 0 } else { self.next.fetch_add(1, Relaxed) % n };
        let mut keyed: Vec<((bool, u64, usize), Arc<Node>)> = listed
            .drain(..)
            .enumerate()
            .map(|(i, node)| {
                let failed = self.within(node.last_failure.load(Relaxed), FAILURE_PENALTY);
                // active / weight, scaled so that weights up to MAX_WEIGHT compare exactly enough.
                let load = (node.active.load(Relaxed) as u64).saturating_mul(u64::from(MAX_WEIGHT))
                    / u64::from(node.weight.load(Relaxed).max(1));
                ((failed, load, (i + n - start) % n), node)
            })
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        keyed.into_iter().map(|(_, node)| node).collect()
    }

    /// `client`: the browser's address for the PROXY header; `None` (a readiness probe): a
    /// LOCAL header, the proxy speaking for itself.
    async fn dial(&self, node: &Node, client: Option<SocketAddr>) -> Option<TcpStream> {
        let attempt = async {
            let mut s = TcpStream::connect(node.addr.as_str()).await?;
            if self.proxy_protocol {
                // Alone and first on the connection: it must precede the first MPUSH packet,
                // which the relay writes only after this returns.
                let header = match client {
                    Some(source) => ProxyHeader::Tcp { source, destination: s.peer_addr()? },
                    None => ProxyHeader::Local,
                };
                let mut bytes = Vec::new();
                header.encode_v2(&mut bytes);
                s.write_all(&bytes).await?;
            }
            Ok::<_, std::io::Error>(s)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                node.last_success.store(self.stamp(), Relaxed);
                Some(s)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timeout".to_owned(),
                };
                tracing::warn!(upstream = %node.addr, error = %why, "upstream connect failed");
                node.last_failure.store(self.stamp(), Relaxed);
                node.connect_failures.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Connects to the best listed server, failing over to the next ones; `None` if none
    /// accepts. `client` is the browser's address, sent in a PROXY header when configured.
    pub async fn connect(&self, client: SocketAddr) -> Option<(TcpStream, Lease)> {
        for node in self.order() {
            // Count the attempt first, so concurrent sessions spread while connecting.
            node.active.fetch_add(1, Relaxed);
            let lease = Lease { node };
            if let Some(stream) = self.dial(&lease.node, Some(client)).await {
                lease.node.sessions_total.fetch_add(1, Relaxed);
                return Some((stream, lease));
            }
        }
        None
    }

    /// Whether some listed server accepted a TCP connection in the last few seconds, probing
    /// now (one server after the other) if none did.
    pub async fn ready(&self) -> bool {
        let order = self.order();
        if order.iter().any(|n| self.within(n.last_success.load(Relaxed), READY_FRESH)) {
            return true;
        }
        for node in order {
            if self.dial(&node, None).await.is_some() {
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

    const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)), 40000);

    fn pool(addrs: &[String], registry: bool) -> Upstreams {
        Upstreams::new(addrs, registry, Duration::from_secs(1), Arc::new(Metrics::new(registry)))
    }

    async fn closed_port() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        drop(l);
        a
    }

    fn reg(addr: &str, weight: u32) -> Registered {
        Registered { addr: addr.to_owned(), weight }
    }

    fn active(p: &Upstreams, addr: &str) -> u64 {
        p.stats().iter().find(|s| s.addr == addr).map_or(u64::MAX, |s| s.active)
    }

    #[tokio::test]
    async fn fails_over_and_prefers_fewest_connections() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed_port().await;
        let addrs = vec![dead.clone(), a.local_addr().unwrap().to_string(), b.local_addr().unwrap().to_string()];
        let p = pool(&addrs, false);
        let (_s1, l1) = p.connect(CLIENT).await.unwrap();
        assert_ne!(l1.addr(), dead);
        // The dead server is penalised now; the other live one has fewer connections.
        let (_s2, l2) = p.connect(CLIENT).await.unwrap();
        assert_ne!(l2.addr(), dead);
        assert_ne!(l2.addr(), l1.addr());
        assert!(p.stats().iter().all(|s| s.addr != dead || s.connect_failures == 1));
        assert!(p.ready().await);
        drop(l1);
        assert_eq!(p.stats().iter().map(|s| s.active).sum::<u64>(), 1);
    }

    #[tokio::test]
    async fn nothing_reachable() {
        let dead = closed_port().await;
        let p = pool(std::slice::from_ref(&dead), false);
        assert!(p.connect(CLIENT).await.is_none());
        assert!(!p.ready().await);
        assert_eq!(active(&p, &dead), 0);
        assert!(!pool(&[], false).ready().await);
    }

    #[tokio::test]
    async fn weights_share_new_sessions() {
        let heavy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let light = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (h, l) = (heavy.local_addr().unwrap().to_string(), light.local_addr().unwrap().to_string());
        let p = pool(&[], true);
        p.set_registered(&[reg(&h, 3), reg(&l, 1)]);
        let mut leases = Vec::new();
        for _ in 0..8 {
            leases.push(p.connect(CLIENT).await.unwrap());
        }
        assert_eq!((active(&p, &h), active(&p, &l)), (6, 2));
    }

    #[tokio::test]
    async fn a_node_that_leaves_keeps_its_sessions_and_gets_no_new_ones() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (a.local_addr().unwrap().to_string(), b.local_addr().unwrap().to_string());
        let p = pool(&[], true);
        assert!(!p.ready().await, "nothing registered yet");
        let (added, removed) = p.set_registered(&[reg(&a, 1), reg(&b, 1)]);
        assert_eq!((added.len(), removed.len()), (2, 0));
        let (_sa, la) = p.connect(CLIENT).await.unwrap();
        let (_sb, lb) = p.connect(CLIENT).await.unwrap();
        let on_a = if la.addr() == a { la } else { lb };
        let (added, removed) = p.set_registered(&[reg(&b, 1)]);
        assert_eq!((added, removed), (vec![], vec![a.clone()]));
        assert_eq!(p.listed(), [b.as_str()]);
        let mut on_b = Vec::new();
        for _ in 0..3 {
            let (s, l) = p.connect(CLIENT).await.unwrap();
            assert_eq!(l.addr(), b);
            on_b.push((s, l));
        }
        // Still counted (and shown in metrics) while its session is open.
        let st = p.stats();
        let gone = st.iter().find(|s| s.addr == a).unwrap();
        assert_eq!((gone.listed, gone.active), (false, 1));
        drop(on_a);
        assert!(p.stats().iter().all(|s| s.addr != a), "forgotten after its last session");
        // Back in the registry: new sessions again.
        let (added, _) = p.set_registered(&[reg(&a, 1), reg(&b, 1)]);
        assert_eq!(added, [a.as_str()]);
        let (_s, l) = p.connect(CLIENT).await.unwrap();
        assert_eq!(l.addr(), a, "fewest connections");
    }

    #[tokio::test]
    async fn static_and_registered_nodes_together() {
        let s = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = s.local_addr().unwrap().to_string();
        let p = pool(std::slice::from_ref(&s), true);
        p.set_registered(&[reg(&s, 5), reg("127.0.0.1:1", 1)]);
        assert_eq!(p.stats().len(), 2, "a registered copy of a static address is one node");
        p.set_registered(&[]);
        assert_eq!(p.listed(), [s.as_str()], "the static list stays");
        assert!(p.ready().await);
    }

    #[tokio::test]
    async fn readiness_ignores_nodes_that_left() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = a.local_addr().unwrap().to_string();
        let p = pool(&[], true);
        p.set_registered(&[reg(&a, 1)]);
        assert!(p.ready().await);
        p.set_registered(&[]);
        assert!(!p.ready().await, "a recent success on a node that left does not count");
    }
}
