//! Pure accounting of a load step: who is in which room, which messages a receiver has seen
//! (to count duplicates), what each worker reports, and how the controller turns the merged
//! reports into figures (latency percentiles, deliveries per second, lost and duplicated
//! messages compared with what was sent to each room).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in µs, up to 10 minutes, with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Which room each connection joins and which connections are slow consumers. Connection `i`
/// (a global index over all workers) is in room `i / room_size`, so the members of a room are
/// consecutive indices; behind a `leastconn` balancer consecutive connections land on different
/// nodes, so every room spans the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLayout {
    /// Connections over all workers.
    pub total: usize,
    /// Members per room; 0 puts every connection in one room (the broadcast scenario).
    pub room_size: usize,
    /// Every `slow_every`-th connection (index % slow_every == slow_every - 1) stops reading;
    /// 0 = none.
    pub slow_every: usize,
}

impl RoomLayout {
    /// Room number of connection `index`.
    pub fn room_of(&self, index: usize) -> usize {
        index.checked_div(self.room_size).unwrap_or(0)
    }

    /// Room name of connection `index`.
    pub fn room_name(&self, index: usize) -> String {
        format!("bench-{}", self.room_of(index))
    }

    /// Whether connection `index` stops reading after joining.
    pub fn is_slow(&self, index: usize) -> bool {
        self.slow_every > 0 && index % self.slow_every == self.slow_every - 1
    }

    /// Members of `room` that keep reading (the receivers whose deliveries are counted).
    pub fn reading_members(&self, room: usize) -> usize {
        let (start, end) = if self.room_size == 0 {
            (0, self.total)
        } else {
            let start = room * self.room_size;
            (
                start.min(self.total),
                (start + self.room_size).min(self.total),
            )
        };
        (start..end).filter(|i| !self.is_slow(*i)).count()
    }

    /// Deliveries owed to reading receivers for `sent` messages per sender index.
    pub fn expected_deliveries(&self, sent: &[(u32, u32)]) -> u64 {
        sent.iter()
            .map(|&(sender, n)| {
                n as u64 * self.reading_members(self.room_of(sender as usize)) as u64
            })
            .sum()
    }
}

/// The sequence numbers one receiver has seen from one sender (a growable bitset).
#[derive(Debug, Clone, Default)]
pub struct SeqSet(Vec<u64>);

impl SeqSet {
    /// Marks `seq` as seen; false when it had been seen before (a duplicate).
    pub fn insert(&mut self, seq: u32) -> bool {
        let (word, bit) = (seq as usize / 64, seq % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        fresh
    }
}

/// What one worker measured during one step (a line of JSON on its stdout).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Messages written per sender index (only senders that sent).
    pub sent: Vec<(u32, u32)>,
    /// Sends skipped because a connection's write queue was full (client-side backlog).
    pub skipped: u64,
    /// Room messages received by reading connections, duplicates included.
    pub received: u64,
    /// Received messages a receiver had already seen.
    pub duplicates: u64,
    /// Latency histogram as (µs, count) pairs.
    pub latency_us: Vec<(u64, u64)>,
    /// Error events received.
    pub errors: u64,
    /// Reading connections the server closed (cumulative).
    pub dropped: u64,
    /// Slow connections the server closed (cumulative).
    pub slow_closed: u64,
    /// Slow connections closed with 1008 (slow consumer) (cumulative).
    pub slow_evicted: u64,
}

/// Histogram contents as (value, count) pairs, for a report line.
pub fn histogram_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Merged reports of every worker for one step, and the figures derived from them.
#[derive(Debug, Clone)]
pub struct StepTotals {
    /// Messages sent (all senders).
    pub sent: u64,
    /// Deliveries owed to reading receivers.
    pub expected: u64,
    /// Deliveries received, duplicates included.
    pub received: u64,
    /// Duplicated deliveries.
    pub duplicates: u64,
    /// Sends skipped for a full client write queue.
    pub skipped: u64,
    /// Error events.
    pub errors: u64,
    /// Reading connections closed by the server.
    pub dropped: u64,
    /// Slow connections closed by the server / with 1008.
    pub slow_closed: u64,
    /// Slow connections closed with 1008.
    pub slow_evicted: u64,
    /// Latencies (µs).
    pub latency: Histogram<u64>,
}

impl StepTotals {
    /// Merges the reports of all workers for one step.
    pub fn merge(layout: &RoomLayout, reports: &[StepReport]) -> Self {
        let mut latency = new_histogram();
        let mut sent_pairs = Vec::new();
        let mut t = Self {
            sent: 0,
            expected: 0,
            received: 0,
            duplicates: 0,
            skipped: 0,
            errors: 0,
            dropped: 0,
            slow_closed: 0,
            slow_evicted: 0,
            latency: new_histogram(),
        };
        for r in reports {
            sent_pairs.extend_from_slice(&r.sent);
            t.received += r.received;
            t.duplicates += r.duplicates;
            t.skipped += r.skipped;
            t.errors += r.errors;
            t.dropped += r.dropped;
            t.slow_closed += r.slow_closed;
            t.slow_evicted += r.slow_evicted;
            for &(v, n) in &r.latency_us {
                latency.saturating_record_n(v, n);
            }
        }
        t.sent = sent_pairs.iter().map(|p| p.1 as u64).sum();
        t.expected = layout.expected_deliveries(&sent_pairs);
        t.latency = latency;
        t
    }

    /// Owed deliveries that never arrived (negative would mean deliveries nobody was owed).
    pub fn lost(&self) -> i64 {
        self.expected as i64 - (self.received - self.duplicates) as i64
    }

    /// Latency percentile in ms (0 when nothing was received).
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// Largest latency in ms.
    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_consecutive_and_slow_members_are_not_owed_anything() {
        let layout = RoomLayout {
            total: 25,
            room_size: 10,
            slow_every: 0,
        };
        assert_eq!(layout.room_of(9), 0);
        assert_eq!(layout.room_of(10), 1);
        assert_eq!(layout.room_name(24), "bench-2");
        assert_eq!(layout.reading_members(2), 5, "the last room is partial");
        let slow = RoomLayout {
            slow_every: 5,
            ..layout
        };
        assert!(slow.is_slow(4) && slow.is_slow(9) && !slow.is_slow(5));
        assert_eq!(slow.reading_members(0), 8);
        let one_room = RoomLayout {
            total: 1000,
            room_size: 0,
            slow_every: 0,
        };
        assert_eq!(one_room.room_of(999), 0);
        assert_eq!(one_room.reading_members(0), 1000);
    }

    #[test]
    fn expected_deliveries_follow_room_sizes() {
        let layout = RoomLayout {
            total: 25,
            room_size: 10,
            slow_every: 0,
        };
        // 3 messages to room 0 (10 members) and 2 to room 2 (5 members).
        assert_eq!(layout.expected_deliveries(&[(1, 2), (7, 1), (20, 2)]), 40);
    }

    #[test]
    fn seq_sets_spot_duplicates() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(200));
        assert!(!s.insert(200));
        assert!(s.insert(63) && s.insert(64));
        assert!(!s.insert(0));
    }

    #[test]
    fn merged_reports_give_loss_duplicates_and_percentiles() {
        let layout = RoomLayout {
            total: 20,
            room_size: 10,
            slow_every: 0,
        };
        let mut h = new_histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let a = StepReport {
            sent: vec![(0, 5)],
            received: 52,
            duplicates: 2,
            latency_us: histogram_pairs(&h),
            ..StepReport::default()
        };
        let b = StepReport {
            sent: vec![(15, 1)],
            received: 8,
            dropped: 1,
            ..StepReport::default()
        };
        let t = StepTotals::merge(&layout, &[a, b]);
        assert_eq!((t.sent, t.expected), (6, 60));
        assert_eq!(t.lost(), 60 - 58);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.dropped, 1);
        assert!((t.percentile_ms(0.5) - 50.0).abs() < 0.1);
        assert!((t.percentile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((t.max_ms() - 100.0).abs() < 0.1);
    }
}
