//! The drain schedule: when each open connection is closed so that clients reconnect elsewhere
//! spread over the grace period instead of all at once (a reconnect storm on the other nodes).

use std::time::Duration;

/// Close times, relative to the drain start, for `n` connections over `grace`: evenly spaced,
/// the first at 0 and the last at 90 % of the grace (leaving time for close handshakes).
pub fn schedule(n: usize, grace: Duration) -> Vec<Duration> {
    if n == 0 {
        return Vec::new();
    }
    let window = grace.mul_f64(0.9);
    if n == 1 {
        return vec![Duration::ZERO];
    }
    (0..n)
        .map(|i| window.mul_f64(i as f64 / (n - 1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly_inside_the_grace() {
        assert!(schedule(0, Duration::from_secs(10)).is_empty());
        assert_eq!(schedule(1, Duration::from_secs(10)), vec![Duration::ZERO]);
        let s = schedule(4, Duration::from_secs(10));
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], Duration::ZERO);
        assert!((s[3].as_secs_f64() - 9.0).abs() < 1e-9);
        assert!((s[1].as_secs_f64() - 3.0).abs() < 1e-9);
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        assert!(schedule(3, Duration::ZERO).iter().all(|d| d.is_zero()));
    }
}
