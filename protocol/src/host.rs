//! The two inputs a native driver feeds every session: the time and a seed. The sessions take
//! both as arguments and never read a clock or an RNG themselves (that keeps them
//! deterministic and testable); this module is where the native drivers (`mpush-gateway`,
//! `mpush-native-client`, `mpush-loadgen`) get them, so there is one definition of each. Behind
//! the `host` feature: the browser package has its own clock and RNG and does not build it.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};

/// Milliseconds since the Unix epoch, from a monotonic clock: the `now` every session call
/// takes. Sessions use it both for their timers (heartbeat checks, ack timeouts) and for the
/// one wall-clock value MPUSH puts on the wire (a handshake's `expireTime`), so it is the wall
/// clock read once at the first call plus the monotonic time since: a clock step (NTP, a VM
/// resumed) can neither fire every idle check at once nor hold them back.
pub fn now_ms() -> u64 {
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    let (at, wall) = START.get_or_init(|| {
        (Instant::now(), SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
    });
    wall.saturating_add(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// 32 bytes from the operating system's CSPRNG: the seed a session (client or server) needs.
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_wall_clock_time_and_never_goes_back() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let (a, b) = (now_ms(), now_ms());
        assert!(a.abs_diff(wall) < 60_000, "{a} vs wall clock {wall}");
        assert!(b >= a);
        assert_ne!(os_seed(), os_seed());
    }
}
