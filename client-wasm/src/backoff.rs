//! Reconnect delays: exponential backoff with full jitter, as centrifuge-js does it.
//!
//! Attempt `n` (from 0) waits `min + random * min(max, min * 2^n)`, capped at `max`. The
//! jitter spreads a crowd of clients that lost the same server; the floor keeps a client from
//! hammering a server that refuses it instantly.

/// Backoff state of one client.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    min: f64,
    max: f64,
    attempt: u32,
}

impl Backoff {
    /// Delays between `min` and `max` milliseconds (`min` > 0, `max` >= `min`).
    pub fn new(min: f64, max: f64) -> Backoff {
        Backoff { min, max, attempt: 0 }
    }

    /// The smallest delay.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The largest delay.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Attempts since the last [`Backoff::reset`].
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The largest delay the next attempt can get.
    pub fn ceiling(&self) -> f64 {
        let window = (self.min * 2f64.powi(self.attempt.min(31) as i32)).min(self.max);
        (self.min + window).min(self.max)
    }

    /// The delay before the next attempt; `random` is uniform in [0, 1) (e.g. `Math.random()`).
    pub fn next_delay(&mut self, random: f64) -> f64 {
        let window = (self.min * 2f64.powi(self.attempt.min(31) as i32)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.5 };
        (self.min + (r * window).floor()).min(self.max)
    }

    /// A connection succeeded: the next failure starts from the smallest window again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_growing_window() {
        let mut b = Backoff::new(500.0, 20_000.0);
        for attempt in 0..40u32 {
            let ceiling = b.ceiling();
            let expected = (500.0 + 500.0 * 2f64.powi(attempt.min(31) as i32)).min(20_000.0);
            assert_eq!(ceiling, expected, "attempt {attempt}");
            let mut probe = b.clone();
            assert_eq!(probe.next_delay(0.0), 500.0);
            let mut probe = b.clone();
            assert!(probe.next_delay(0.999_999) <= ceiling);
            let d = b.next_delay(0.5);
            assert!((500.0..=ceiling).contains(&d), "attempt {attempt}: {d}");
        }
        assert_eq!(b.ceiling(), 20_000.0);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), 1000.0);
    }

    #[test]
    fn bad_random_input_stays_in_bounds() {
        let mut b = Backoff::new(100.0, 1000.0);
        for r in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            let d = b.next_delay(r);
            assert!((100.0..=1000.0).contains(&d));
        }
    }
}
