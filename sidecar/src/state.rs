//! The state shared by the poller (writer), the agent server and the HTTP server (readers): the
//! latest stats with their timestamp, the latest poll failure, the full/not-full latch and the
//! last reply. Every access holds a plain mutex for a few instructions and never awaits, so an
//! agent check never waits on the chat-node.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chatcluster_common::NodeStats;

use crate::metrics::Metrics;
use crate::reply::{Hysteresis, Observation, Reply, agent_reply};

/// Shared sidecar state; one per process, behind an `Arc`.
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Inner>,
    stale_after: Duration,
    /// The process's metrics.
    pub metrics: Metrics,
}

#[derive(Debug)]
struct Inner {
    /// Latest successful poll and when it finished.
    last_ok: Option<(NodeStats, Instant)>,
    /// Latest failed poll (cleared by the next success) and when the current run of failures
    /// began.
    failure: Option<(String, Instant)>,
    hysteresis: Hysteresis,
    last_reply: Option<Reply>,
    terminating: bool,
}

/// What `/state` shows: the reply HAProxy would get now, and what it is based on.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The reply an agent check would get right now.
    pub reply: Reply,
    /// The latest successful stats, if any.
    pub stats: Option<NodeStats>,
    /// Age of those stats.
    pub stats_age: Option<Duration>,
    /// The latest poll failure, if the latest poll failed.
    pub last_error: Option<String>,
    /// True once shutdown started (the sidecar keeps answering until the node is gone).
    pub terminating: bool,
}

impl Shared {
    /// Fresh state: nothing polled yet (agent checks answer `down #starting`).
    pub fn new(stale_after: Duration, full_release_percent: u8) -> Self {
        Self {
            inner: Mutex::new(Inner {
                last_ok: None,
                failure: None,
                hysteresis: Hysteresis::new(full_release_percent),
                last_reply: None,
                terminating: false,
            }),
            stale_after,
            metrics: Metrics::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the data half-written (plain assignments),
        // so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a successful poll.
    pub fn record_success(&self, stats: NodeStats) {
        self.metrics
            .poll_succeeded(stats.connections, stats.capacity);
        let mut inner = self.lock();
        inner.last_ok = Some((stats, Instant::now()));
        inner.failure = None;
    }

    /// Records a failed poll; `reason` is the metric label, `error` the message.
    pub fn record_failure(&self, reason: &str, error: String) {
        self.metrics.poll_failed(reason);
        let mut inner = self.lock();
        let since = inner
            .failure
            .as_ref()
            .map_or_else(Instant::now, |(_, since)| *since);
        inner.failure = Some((error, since));
    }

    /// Marks the start of shutdown (shown in `/state`).
    pub fn set_terminating(&self) {
        self.lock().terminating = true;
    }

    /// How long polls have been failing without a success in between, if the latest failed.
    pub fn unreachable_for(&self) -> Option<Duration> {
        self.lock()
            .failure
            .as_ref()
            .map(|(_, since)| since.elapsed())
    }

    fn observation(&self, inner: &Inner, now: Instant) -> Observation {
        if let Some((error, _)) = &inner.failure {
            return Observation::Unreachable {
                error: error.clone(),
            };
        }
        match &inner.last_ok {
            None => Observation::NotPolledYet,
            Some((stats, at)) => {
                let age = now.saturating_duration_since(*at);
                if age > self.stale_after {
                    Observation::Stale { age }
                } else {
                    Observation::Fresh(stats.clone())
                }
            }
        }
    }

    /// Decides the reply for an agent check happening now, remembers it and updates metrics.
    pub fn reply_now(&self) -> Reply {
        let mut inner = self.lock();
        let observation = self.observation(&inner, Instant::now());
        let reply = agent_reply(&observation, &mut inner.hysteresis);
        if inner.last_reply != Some(reply) {
            tracing::info!(
                previous = inner.last_reply.map(|r| r.to_string()),
                reply = %reply,
                ?observation,
                "agent reply changed"
            );
        }
        inner.last_reply = Some(reply);
        drop(inner);
        self.metrics.observe_reply(&reply);
        reply
    }

    /// The reply an agent check would get now and the data behind it, for `/state`. Deciding is
    /// idempotent, so this may run between agent checks without changing what HAProxy sees.
    pub fn snapshot(&self) -> Snapshot {
        let reply = self.reply_now();
        let inner = self.lock();
        Snapshot {
            reply,
            stats: inner.last_ok.as_ref().map(|(s, _)| s.clone()),
            stats_age: inner.last_ok.as_ref().map(|(_, at)| at.elapsed()),
            last_error: inner.failure.as_ref().map(|(e, _)| e.clone()),
            terminating: inner.terminating,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(connections: u64) -> NodeStats {
        NodeStats {
            node: "n".into(),
            connections,
            capacity: 10,
            draining: false,
            redis_connected: true,
        }
    }

    #[test]
    fn starts_down_then_follows_polls() {
        let shared = Shared::new(Duration::from_secs(1), 95);
        assert_eq!(shared.reply_now().to_string(), "down #starting");
        shared.record_success(stats(5));
        assert_eq!(shared.reply_now().to_string(), "up ready 50%");
        shared.record_failure("connect", "refused".into());
        assert_eq!(shared.reply_now().to_string(), "down #unreachable");
        assert!(shared.unreachable_for().is_some());
        shared.record_success(stats(0));
        assert_eq!(shared.reply_now().to_string(), "up ready 100%");
        assert!(shared.unreachable_for().is_none());
    }

    #[test]
    fn old_stats_are_stale() {
        let shared = Shared::new(Duration::from_millis(30), 95);
        shared.record_success(stats(1));
        assert_eq!(shared.reply_now().to_string(), "up ready 90%");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(shared.reply_now().to_string(), "down #stale");
        let snap = shared.snapshot();
        assert_eq!(
            snap.stats.unwrap().connections,
            1,
            "stale stats are still shown"
        );
        assert!(snap.stats_age.unwrap() >= Duration::from_millis(60));
    }

    #[test]
    fn failure_run_keeps_its_start_time() {
        let shared = Shared::new(Duration::from_secs(1), 95);
        shared.record_failure("connect", "refused".into());
        std::thread::sleep(Duration::from_millis(30));
        shared.record_failure("timeout", "slow".into());
        assert!(shared.unreachable_for().unwrap() >= Duration::from_millis(30));
        assert_eq!(shared.snapshot().last_error.as_deref(), Some("slow"));
    }
}
