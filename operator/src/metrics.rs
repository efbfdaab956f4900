//! Prometheus metrics for the controller, in one `prometheus-client` registry per process:
//! reconcile count, failures by reason (`Error::metric_label`), reconcile duration, how many
//! objects were applied or skipped as unchanged, and whether this replica leads.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `Error::metric_label()`, or `invalid_spec` for a spec the operator refuses.
    pub reason: String,
}

/// Label set of the applied/skipped object counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Object kind, for example `StatefulSet`.
    pub kind: String,
}

/// The controller's metrics; cheap to clone (all handles are shared).
#[derive(Clone)]
pub struct Metrics {
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that failed, by reason.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile wall time in seconds.
    pub duration: Histogram,
    /// Objects sent with server-side apply, by kind.
    pub applied: Family<KindLabels, Counter>,
    /// Objects not sent because nothing changed since the operator last applied them, by kind.
    pub unchanged: Family<KindLabels, Counter>,
    /// 1 while this replica holds the leader Lease (or leader election is off), else 0.
    pub leader: Gauge<i64, AtomicI64>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `chatcluster_operator` prefix.
    pub fn new() -> Self {
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        // 1 ms .. ~16 s: a reconcile is a handful of API round trips.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 15,
        ));
        let applied = Family::<KindLabels, Counter>::default();
        let unchanged = Family::<KindLabels, Counter>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        let mut registry = Registry::with_prefix("chatcluster_operator");
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "objects_applied",
            "Objects sent with server-side apply",
            applied.clone(),
        );
        registry.register(
            "objects_unchanged",
            "Objects skipped because they had not changed since the last apply",
            unchanged.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        Self {
            reconciles,
            failures,
            duration,
            applied,
            unchanged,
            leader,
            registry: Arc::new(registry),
        }
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Counts a failure with its reason label.
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Renders the registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records the reconcile duration on drop, so early returns are measured too.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_histogram_and_reason_labels() {
        let m = Metrics::new();
        drop(m.reconcile_started());
        m.failure("kube_conflict");
        m.leader.set(1);
        let text = m.encode();
        assert!(
            text.contains("chatcluster_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "chatcluster_operator_reconcile_errors_total{reason=\"kube_conflict\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("chatcluster_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("chatcluster_operator_leader 1"), "{text}");
    }
}
