//! Limits on open TCP connections (checked at accept) and on WebSocket sessions (checked at
//! the upgrade): each total and per client IP (IPv6 grouped by /64).
//!
//! A connection that becomes a session holds one slot of each kind: the connection caps
//! default to the session caps plus headroom for plain HTTP and not yet upgraded connections
//! (and are never below them), so counting both never lowers session capacity.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;

/// Which limit refused a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitError {
    Total,
    PerIp,
}

/// What a [`Limiter`] counts; selects the gauge and counter it keeps in [`Metrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Accepted TCP connections, before TLS and HTTP.
    Connections,
    /// Upgraded WebSocket sessions.
    Sessions,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    counted: Counted,
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted session; releases its slots on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    key: IpAddr,
}

/// The address the per-IP limit counts: IPv4 as is (also when IPv4-mapped), IPv6 by /64,
/// since one client typically owns a whole /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (!0u128 << 64)).into()),
        },
    }
}

impl Limiter {
    pub fn new(counted: Counted, max_total: usize, max_per_ip: usize, metrics: Arc<Metrics>) -> Limiter {
        Limiter { counted, max_total, max_per_ip, state: Mutex::new(State::default()), metrics }
    }

    fn gauges(&self) -> (&std::sync::atomic::AtomicU64, &std::sync::atomic::AtomicU64) {
        match self.counted {
            Counted::Connections => (&self.metrics.open_connections, &self.metrics.open_connections_total),
            Counted::Sessions => (&self.metrics.sessions_current, &self.metrics.sessions_total),
        }
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, LimitError> {
        let key = key(ip);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.total >= self.max_total {
            return Err(LimitError::Total);
        }
        let n = st.per_ip.entry(key).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(LimitError::PerIp);
        }
        *n += 1;
        st.total += 1;
        let (current, total) = self.gauges();
        current.fetch_add(1, Relaxed);
        total.fetch_add(1, Relaxed);
        Ok(Permit { limiter: Arc::clone(self), key })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_ip.remove(&self.key);
            }
        }
        self.limiter.gauges().0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_ip_and_release_on_drop() {
        let l = Arc::new(Limiter::new(Counted::Sessions, 3, 2, Arc::new(Metrics::new(false))));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), LimitError::PerIp);
        let _p3 = l.try_acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(l.try_acquire("10.0.0.2".parse().unwrap()).unwrap_err(), LimitError::Total);
        drop(p1);
        let _p4 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire("10.0.0.9".parse().unwrap()).unwrap_err(), LimitError::Total);
    }

    #[test]
    fn ipv6_is_grouped_by_64() {
        assert_eq!(key("2001:db8:1:2:aaaa::1".parse().unwrap()), key("2001:db8:1:2:bbbb::9".parse().unwrap()));
        assert_ne!(key("2001:db8:1:2::1".parse().unwrap()), key("2001:db8:1:3::1".parse().unwrap()));
    }
}
