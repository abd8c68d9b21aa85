//! Connection caps checked at accept, before a connection costs anything: in total, per client
//! IP address, and per IP for connections that have not completed a handshake or fast connect.
//! Each admitted connection holds an [`Admission`] that gives its slots back when dropped.
//! "Per IP" means per [`peer_key`]: an IPv6 client counts by its /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::LimitsConfig;

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max-connections` reached.
    Total,
    /// `max-connections-per-ip` reached for this address.
    PerIp,
    /// `max-unauthenticated-per-ip` reached for this address.
    UnauthenticatedPerIp,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Total => "max-connections reached",
            Refusal::PerIp => "max-connections-per-ip reached",
            Refusal::UnauthenticatedPerIp => "max-unauthenticated-per-ip reached",
        })
    }
}

#[derive(Debug, Default)]
struct PerIp {
    open: usize,
    unauthenticated: usize,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, PerIp>,
}

/// The caps and what is counted against them; `0` is no cap.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    max_unauthenticated_per_ip: usize,
    state: Mutex<State>,
    /// Connections refused at accept since start (`refusedConnections` in `/health`).
    pub(crate) refused: AtomicU64,
}

/// The address a peer is counted by (per-IP caps, turns for the RSA workers): IPv4 as is
/// (also when IPv4-mapped), IPv6 by its /64, since one client typically owns a whole /64 and
/// could otherwise take a fresh quota per address (as `mpush-proxy` counts).
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (!0u128 << 64)).into()),
        },
    }
}

fn over(count: usize, cap: usize) -> bool {
    cap != 0 && count >= cap
}

impl ConnLimits {
    pub(crate) fn new(c: &LimitsConfig) -> ConnLimits {
        ConnLimits {
            max_total: c.max_connections,
            max_per_ip: c.max_connections_per_ip,
            max_unauthenticated_per_ip: c.max_unauthenticated_per_ip,
            state: Mutex::new(State::default()),
            refused: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new, unauthenticated connection from `ip`, or says which cap it would break.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let ip = peer_key(ip);
        let mut s = self.lock();
        let refusal = if over(s.total, self.max_total) {
            Some(Refusal::Total)
        } else {
            let p = s.per_ip.get(&ip);
            if over(p.map_or(0, |p| p.open), self.max_per_ip) {
                Some(Refusal::PerIp)
            } else if over(p.map_or(0, |p| p.unauthenticated), self.max_unauthenticated_per_ip) {
                Some(Refusal::UnauthenticatedPerIp)
            } else {
                None
            }
        };
        if let Some(r) = refusal {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        s.total += 1;
        let p = s.per_ip.entry(ip).or_default();
        p.open += 1;
        p.unauthenticated += 1;
        Ok(Admission { limits: self.clone(), ip, unauthenticated: true })
    }
}

/// One admitted connection's slots; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    unauthenticated: bool,
}

impl Admission {
    /// The connection completed a handshake or fast connect: it no longer counts against
    /// `max-unauthenticated-per-ip`.
    pub(crate) fn authenticated(&mut self) {
        if std::mem::take(&mut self.unauthenticated) {
            if let Some(p) = self.limits.lock().per_ip.get_mut(&self.ip) {
                p.unauthenticated = p.unauthenticated.saturating_sub(1);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut s = self.limits.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(p) = s.per_ip.get_mut(&self.ip) {
            p.open = p.open.saturating_sub(1);
            if self.unauthenticated {
                p.unauthenticated = p.unauthenticated.saturating_sub(1);
            }
            if p.open == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, unauth: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits::new(&LimitsConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            max_unauthenticated_per_ip: unauth,
            ..LimitsConfig::default()
        }))
    }

    #[test]
    fn caps_count_and_release() {
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let l = limits(3, 2, 1);
        let mut first = l.admit(a).expect("first");
        assert_eq!(l.admit(a).err(), Some(Refusal::UnauthenticatedPerIp));
        first.authenticated();
        let _second = l.admit(a).expect("second once the first handshook");
        assert_eq!(l.admit(a).err(), Some(Refusal::PerIp));
        let third = l.admit(b).expect("another address");
        assert_eq!(l.admit([10, 0, 0, 3].into()).err(), Some(Refusal::Total));
        drop(third);
        drop(first);
        let _again = l.admit(b).expect("slots given back");
        assert_eq!(l.refused.load(Ordering::Relaxed), 3);
        // 0 disables a cap.
        let l = limits(0, 0, 0);
        let all: Vec<_> = (0..100).map(|_| l.admit(a).expect("no cap")).collect();
        drop(all);
        assert!(l.lock().per_ip.is_empty() && l.lock().total == 0);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = limits(0, 0, 1);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _first = l.admit(ip("2001:db8:1:2::1")).expect("first");
        // Another address in the same /64 is the same peer; the next /64 is another.
        assert_eq!(l.admit(ip("2001:db8:1:2:ffff::9")).err(), Some(Refusal::UnauthenticatedPerIp));
        let _other = l.admit(ip("2001:db8:1:3::1")).expect("another /64");
        let _v4 = l.admit(ip("192.0.2.7")).expect("v4");
        assert_eq!(l.admit(ip("::ffff:192.0.2.7")).err(), Some(Refusal::UnauthenticatedPerIp));
        assert_eq!(peer_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }
}
