//! Clock and percentiles.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (pushes carry their send time in this unit; the sessions'
/// own clock is `mpush_protocol::host::now_ms`, through the shared driver).
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

impl Percentiles {
    /// Percentiles of latencies given in microseconds; `None` without samples.
    pub fn of(mut micros: Vec<u64>) -> Option<Percentiles> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
        Some(Percentiles { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0), samples: micros.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_ranks() {
        let p = Percentiles::of((1..=100).map(|x| x * 1000).collect()).unwrap();
        assert_eq!((p.p50, p.p99, p.max, p.samples), (51.0, 99.0, 100.0, 100));
        assert!(Percentiles::of(vec![]).is_none());
    }
}
