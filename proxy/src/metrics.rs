//! Counters and gauges, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::close::CloseReason;
use crate::upstream::NodeStats;

/// Why an HTTP request to the WebSocket path was refused before the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Not a valid WebSocket upgrade request (400, 405 or 426).
    BadHandshake,
    /// Origin not allowed (403).
    Origin,
    /// Per-IP session limit (429).
    PerIpLimit,
    /// Total session limit (503).
    TotalLimit,
    /// Shutting down (503).
    Draining,
}

impl Rejection {
    const ALL: [Rejection; 5] =
        [Rejection::BadHandshake, Rejection::Origin, Rejection::PerIpLimit, Rejection::TotalLimit, Rejection::Draining];

    fn label(self) -> &'static str {
        match self {
            Rejection::BadHandshake => "bad_handshake",
            Rejection::Origin => "origin",
            Rejection::PerIpLimit => "per_ip_limit",
            Rejection::TotalLimit => "total_limit",
            Rejection::Draining => "draining",
        }
    }
}

/// Something that happened to the ZooKeeper registry connection or its node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegistryEvent {
    /// A ZooKeeper session was established (or re-established after a disconnect).
    Connected,
    /// The connection to ZooKeeper was lost; the last known nodes keep serving.
    Disconnected,
    /// The ZooKeeper session expired or failed; a new one is being set up.
    SessionLost,
    /// Connecting or reading the registry failed.
    Error,
    /// A connection server appeared in the registry.
    NodeAdded,
    /// A connection server left the registry.
    NodeRemoved,
    /// A registry entry that is not a usable connection server (bad JSON, host or port).
    BadNode,
}

impl RegistryEvent {
    const ALL: [RegistryEvent; 7] = [
        RegistryEvent::Connected,
        RegistryEvent::Disconnected,
        RegistryEvent::SessionLost,
        RegistryEvent::Error,
        RegistryEvent::NodeAdded,
        RegistryEvent::NodeRemoved,
        RegistryEvent::BadNode,
    ];

    fn label(self) -> &'static str {
        match self {
            RegistryEvent::Connected => "connected",
            RegistryEvent::Disconnected => "disconnected",
            RegistryEvent::SessionLost => "session_lost",
            RegistryEvent::Error => "error",
            RegistryEvent::NodeAdded => "node_added",
            RegistryEvent::NodeRemoved => "node_removed",
            RegistryEvent::BadNode => "bad_node",
        }
    }
}

/// All proxy metrics. Lock-free: plain relaxed atomics.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub sessions_current: AtomicU64,
    pub sessions_total: AtomicU64,
    pub packets_up: AtomicU64,
    pub packets_down: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub http_proxy_denied: AtomicU64,
    /// Open TCP connections (HTTP, pending upgrades and sessions).
    pub open_connections: AtomicU64,
    /// TCP connections accepted (under the connection caps).
    pub open_connections_total: AtomicU64,
    /// TCP connections closed at accept: over the total cap, over the per-IP cap.
    pub refused_total_cap: AtomicU64,
    pub refused_per_ip_cap: AtomicU64,
    /// Whether `--zk` is configured (the registry families are rendered only then).
    registry: bool,
    registry_connected: AtomicU64,
    registry_events: Vec<AtomicU64>,
    closes: Vec<AtomicU64>,
    rejections: Vec<AtomicU64>,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    /// `registry`: whether the ZooKeeper registry is configured.
    pub fn new(registry: bool) -> Metrics {
        Metrics {
            sessions_current: AtomicU64::new(0),
            sessions_total: AtomicU64::new(0),
            packets_up: AtomicU64::new(0),
            packets_down: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            http_proxy_denied: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            open_connections_total: AtomicU64::new(0),
            refused_total_cap: AtomicU64::new(0),
            refused_per_ip_cap: AtomicU64::new(0),
            registry,
            registry_connected: AtomicU64::new(0),
            registry_events: counters(RegistryEvent::ALL.len()),
            closes: counters(CloseReason::ALL.len()),
            rejections: counters(Rejection::ALL.len()),
        }
    }

    pub fn upstream_packet(&self, len: usize) {
        self.packets_up.fetch_add(1, Relaxed);
        self.bytes_up.fetch_add(len as u64, Relaxed);
    }

    pub fn downstream_packet(&self, len: usize) {
        self.packets_down.fetch_add(1, Relaxed);
        self.bytes_down.fetch_add(len as u64, Relaxed);
    }

    /// `packets` packets of `bytes` bytes in all sent to the browser.
    pub fn downstream_packets(&self, packets: u64, bytes: u64) {
        self.packets_down.fetch_add(packets, Relaxed);
        self.bytes_down.fetch_add(bytes, Relaxed);
    }

    /// Counts `n` registry events of kind `e`.
    pub fn registry_event(&self, e: RegistryEvent, n: u64) {
        let i = RegistryEvent::ALL.iter().position(|x| *x == e).unwrap_or(0);
        self.registry_events[i].fetch_add(n, Relaxed);
    }

    pub fn set_registry_connected(&self, connected: bool) {
        self.registry_connected.store(u64::from(connected), Relaxed);
    }

    pub fn closed(&self, reason: CloseReason) {
        self.closes[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, r: Rejection) {
        let i = Rejection::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.rejections[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4), with the upstream nodes' numbers.
    pub fn render(&self, nodes: &[NodeStats]) -> String {
        let mut o = String::with_capacity(4096);
        let g = |a: &AtomicU64| a.load(Relaxed);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut o, "mpush_proxy_connections", "gauge", "Open WebSocket sessions.");
        let _ = writeln!(o, "mpush_proxy_connections {}", g(&self.sessions_current));
        head(&mut o, "mpush_proxy_connections_total", "counter", "WebSocket sessions accepted.");
        let _ = writeln!(o, "mpush_proxy_connections_total {}", g(&self.sessions_total));
        head(&mut o, "mpush_proxy_tcp_connections", "gauge", "Open TCP connections (HTTP, upgrading, sessions).");
        let _ = writeln!(o, "mpush_proxy_tcp_connections {}", g(&self.open_connections));
        head(&mut o, "mpush_proxy_tcp_connections_total", "counter", "TCP connections accepted under the caps.");
        let _ = writeln!(o, "mpush_proxy_tcp_connections_total {}", g(&self.open_connections_total));
        head(&mut o, "mpush_proxy_tcp_refused_total", "counter", "TCP connections closed at accept, by cap.");
        let _ = writeln!(o, "mpush_proxy_tcp_refused_total{{reason=\"total_limit\"}} {}", g(&self.refused_total_cap));
        let _ = writeln!(o, "mpush_proxy_tcp_refused_total{{reason=\"per_ip_limit\"}} {}", g(&self.refused_per_ip_cap));
        head(&mut o, "mpush_proxy_packets_total", "counter", "MPUSH packets relayed, by direction.");
        let _ = writeln!(o, "mpush_proxy_packets_total{{direction=\"upstream\"}} {}", g(&self.packets_up));
        let _ = writeln!(o, "mpush_proxy_packets_total{{direction=\"downstream\"}} {}", g(&self.packets_down));
        head(&mut o, "mpush_proxy_bytes_total", "counter", "MPUSH packet bytes relayed, by direction.");
        let _ = writeln!(o, "mpush_proxy_bytes_total{{direction=\"upstream\"}} {}", g(&self.bytes_up));
        let _ = writeln!(o, "mpush_proxy_bytes_total{{direction=\"downstream\"}} {}", g(&self.bytes_down));
        head(&mut o, "mpush_proxy_upstream_connect_failures_total", "counter", "Failed upstream connect attempts.");
        for n in nodes {
            let _ = writeln!(
                o,
                "mpush_proxy_upstream_connect_failures_total{{upstream=\"{}\"}} {}",
                esc(&n.addr),
                n.connect_failures
            );
        }
        head(&mut o, "mpush_proxy_upstream_connections", "gauge", "Open upstream connections (sessions) per server.");
        for n in nodes {
            let _ = writeln!(o, "mpush_proxy_upstream_connections{{upstream=\"{}\"}} {}", esc(&n.addr), n.active);
        }
        head(&mut o, "mpush_proxy_upstream_sessions_total", "counter", "Sessions relayed to each server.");
        for n in nodes {
            let _ = writeln!(
                o,
                "mpush_proxy_upstream_sessions_total{{upstream=\"{}\"}} {}",
                esc(&n.addr),
                n.sessions_total
            );
        }
        head(
            &mut o,
            "mpush_proxy_upstream_listed",
            "gauge",
            "1 while a server gets new sessions; 0 once it left the registry and only its open sessions remain.",
        );
        for n in nodes {
            let (a, src) = (esc(&n.addr), n.source.label());
            let _ =
                writeln!(o, "mpush_proxy_upstream_listed{{upstream=\"{a}\",source=\"{src}\"}} {}", u8::from(n.listed));
        }
        head(&mut o, "mpush_proxy_upstream_weight", "gauge", "Weight of each server in the least-connections choice.");
        for n in nodes {
            let _ = writeln!(o, "mpush_proxy_upstream_weight{{upstream=\"{}\"}} {}", esc(&n.addr), n.weight);
        }
        if self.registry {
            head(
                &mut o,
                "mpush_proxy_registry_connected",
                "gauge",
                "1 while the ZooKeeper registry is connected and read.",
            );
            let _ = writeln!(o, "mpush_proxy_registry_connected {}", g(&self.registry_connected));
            head(&mut o, "mpush_proxy_registry_events_total", "counter", "ZooKeeper registry events, by kind.");
            for (e, c) in RegistryEvent::ALL.iter().zip(&self.registry_events) {
                let _ = writeln!(o, "mpush_proxy_registry_events_total{{event=\"{}\"}} {}", e.label(), g(c));
            }
        }
        head(&mut o, "mpush_proxy_closes_total", "counter", "WebSocket sessions ended, by reason.");
        for (r, c) in CloseReason::ALL.iter().zip(&self.closes) {
            let code = r.code().map_or_else(|| "none".to_owned(), |c| c.to_string());
            let _ = writeln!(o, "mpush_proxy_closes_total{{reason=\"{}\",code=\"{code}\"}} {}", r.label(), g(c));
        }
        head(&mut o, "mpush_proxy_handshake_rejections_total", "counter", "Upgrade requests refused, by reason.");
        for (r, c) in Rejection::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(o, "mpush_proxy_handshake_rejections_total{{reason=\"{}\"}} {}", r.label(), g(c));
        }
        head(&mut o, "mpush_proxy_http_proxy_denied_total", "counter", "HTTP-proxy packets answered with 403.");
        let _ = writeln!(o, "mpush_proxy_http_proxy_denied_total {}", g(&self.http_proxy_denied));
        o
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::new(true);
        m.upstream_packet(10);
        m.downstream_packet(3);
        m.closed(CloseReason::TextFrame);
        m.rejected(Rejection::PerIpLimit);
        m.registry_event(RegistryEvent::NodeRemoved, 2);
        m.set_registry_connected(true);
        let node = NodeStats {
            addr: "a:1".into(),
            source: crate::upstream::Source::Registry,
            listed: false,
            weight: 2,
            active: 4,
            sessions_total: 9,
            connect_failures: 1,
        };
        let t = m.render(&[node]);
        assert!(t.contains("mpush_proxy_packets_total{direction=\"upstream\"} 1\n"));
        assert!(t.contains("mpush_proxy_bytes_total{direction=\"downstream\"} 3\n"));
        assert!(t.contains("mpush_proxy_upstream_connect_failures_total{upstream=\"a:1\"} 1\n"));
        assert!(t.contains("mpush_proxy_upstream_connections{upstream=\"a:1\"} 4\n"));
        assert!(t.contains("mpush_proxy_upstream_sessions_total{upstream=\"a:1\"} 9\n"));
        assert!(t.contains("mpush_proxy_upstream_listed{upstream=\"a:1\",source=\"zk\"} 0\n"));
        assert!(t.contains("mpush_proxy_upstream_weight{upstream=\"a:1\"} 2\n"));
        assert!(t.contains("mpush_proxy_registry_connected 1\n"));
        assert!(t.contains("mpush_proxy_registry_events_total{event=\"node_removed\"} 2\n"));
        assert!(t.contains("mpush_proxy_closes_total{reason=\"text_frame\",code=\"1003\"} 1\n"));
        assert!(t.contains("mpush_proxy_handshake_rejections_total{reason=\"per_ip_limit\"} 1\n"));
        assert!(t.contains("# TYPE mpush_proxy_connections gauge\n"));
        assert!(
            !Metrics::new(false).render(&[]).contains("mpush_proxy_registry_"),
            "no registry families without --zk"
        );
    }
}
