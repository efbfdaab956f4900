//! The drain schedule: when each open connection is closed so that clients reconnect elsewhere
//! spread over the grace period instead of all at once (a reconnect storm on the other nodes).

use std::time::Duration;

/// How long the first close waits at most. HAProxy learns of the drain from the sidecar's agent
/// reply (one agent interval, 1 s, plus a stats poll); a client closed before that reconnects
/// straight back to this node and is refused once more.
const MAX_HEAD_START: Duration = Duration::from_secs(2);

/// Close times, relative to the drain start, for `n` connections over `grace`: evenly spaced
/// from a head start (a quarter of the grace, at most 2 s, so the balancer already routes around
/// this node) to 90 % of the grace (leaving time for close handshakes).
pub fn schedule(n: usize, grace: Duration) -> Vec<Duration> {
    if n == 0 {
        return Vec::new();
    }
    let head = grace.mul_f64(0.25).min(MAX_HEAD_START);
    let end = grace.mul_f64(0.9);
    if n == 1 {
        return vec![head];
    }
    (0..n)
        .map(|i| head + (end - head).mul_f64(i as f64 / (n - 1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly_from_the_head_start_to_ninety_percent_of_the_grace() {
        assert!(schedule(0, Duration::from_secs(10)).is_empty());
        assert_eq!(
            schedule(1, Duration::from_secs(10)),
            vec![Duration::from_millis(2500).min(MAX_HEAD_START)]
        );
        let s = schedule(4, Duration::from_secs(10));
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0],
            Duration::from_secs(2),
            "a quarter of 10 s, capped at 2 s"
        );
        assert!((s[3].as_secs_f64() - 9.0).abs() < 1e-9);
        assert!((s[1].as_secs_f64() - 4.333_333).abs() < 1e-3);
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        let short = schedule(3, Duration::from_secs(2));
        assert_eq!(
            short[0],
            Duration::from_millis(500),
            "a quarter of a short grace"
        );
        assert!(schedule(3, Duration::ZERO).iter().all(|d| d.is_zero()));
    }
}
