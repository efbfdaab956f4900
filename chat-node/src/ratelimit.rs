//! A per-connection token bucket: `burst` frames at once, refilled at `rate` per second. Pure
//! (time is passed in) so its arithmetic is unit-tested.

use std::time::Instant;

/// Token bucket state (16 bytes of tokens + timestamp per connection).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, rate: f64, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, t0);
        assert!((0..3).all(|_| b.try_take(2.0, 3, t0)));
        assert!(!b.try_take(2.0, 3, t0), "burst exhausted");
        assert!(
            b.try_take(2.0, 3, t0 + Duration::from_millis(500)),
            "one token after 0.5 s at 2/s"
        );
        assert!(!b.try_take(2.0, 3, t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_secs(100);
        assert!((0..3).all(|_| b.try_take(2.0, 3, later)));
        assert!(!b.try_take(2.0, 3, later), "refill is capped at the burst");
    }
}
