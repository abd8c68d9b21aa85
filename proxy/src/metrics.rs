//! Counters and gauges, rendered in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::close::CloseReason;

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
    upstream_names: Vec<String>,
    upstream_connect_failures: Vec<AtomicU64>,
    pub upstream_active: Vec<AtomicU64>,
    closes: Vec<AtomicU64>,
    rejections: Vec<AtomicU64>,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    pub fn new(upstreams: &[String]) -> Metrics {
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
            upstream_names: upstreams.to_vec(),
            upstream_connect_failures: counters(upstreams.len()),
            upstream_active: counters(upstreams.len()),
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

    pub fn connect_failure(&self, upstream: usize) {
        if let Some(c) = self.upstream_connect_failures.get(upstream) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        self.closes[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, r: Rejection) {
        let i = Rejection::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.rejections[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
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
        for (name, c) in self.upstream_names.iter().zip(&self.upstream_connect_failures) {
            let _ = writeln!(o, "mpush_proxy_upstream_connect_failures_total{{upstream=\"{}\"}} {}", esc(name), g(c));
        }
        head(&mut o, "mpush_proxy_upstream_connections", "gauge", "Open upstream connections per server.");
        for (name, c) in self.upstream_names.iter().zip(&self.upstream_active) {
            let _ = writeln!(o, "mpush_proxy_upstream_connections{{upstream=\"{}\"}} {}", esc(name), g(c));
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
        let m = Metrics::new(&["a:1".into()]);
        m.upstream_packet(10);
        m.downstream_packet(3);
        m.connect_failure(0);
        m.closed(CloseReason::TextFrame);
        m.rejected(Rejection::PerIpLimit);
        let t = m.render();
        assert!(t.contains("mpush_proxy_packets_total{direction=\"upstream\"} 1\n"));
        assert!(t.contains("mpush_proxy_bytes_total{direction=\"downstream\"} 3\n"));
        assert!(t.contains("mpush_proxy_upstream_connect_failures_total{upstream=\"a:1\"} 1\n"));
        assert!(t.contains("mpush_proxy_closes_total{reason=\"text_frame\",code=\"1003\"} 1\n"));
        assert!(t.contains("mpush_proxy_handshake_rejections_total{reason=\"per_ip_limit\"} 1\n"));
        assert!(t.contains("# TYPE mpush_proxy_connections gauge\n"));
    }
}
