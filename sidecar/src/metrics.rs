//! The sidecar's Prometheus metrics, in one registry per process: the last reported weight and
//! state, poll failures by reason, and the number of agent checks served.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reply::Reply;

/// Label of `sidecar_state`: one of `Reply::STATES`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `up`, `full`, `draining`, `unreachable`, ...
    pub state: String,
}

/// Label of `sidecar_poll_failures_total`: `Error::metric_label()`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `connect`, `timeout`, `status`, `body`, `decode`.
    pub reason: String,
}

/// Handles to every metric, plus the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    weight: Gauge,
    state: Family<StateLabel, Gauge>,
    poll_failures: Family<ReasonLabel, Counter>,
    polls: Counter,
    agent_checks: Counter,
    node_connections: Gauge,
    node_capacity: Gauge,
}

impl Metrics {
    /// Creates and registers every metric under the `sidecar_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidecar");
        let m = Self {
            registry: Registry::default(),
            weight: Gauge::default(),
            state: Family::default(),
            poll_failures: Family::default(),
            polls: Counter::default(),
            agent_checks: Counter::default(),
            node_connections: Gauge::default(),
            node_capacity: Gauge::default(),
        };
        registry.register(
            "reported_weight_percent",
            "Weight (percent of the configured weight) in the last agent reply; 0 when down",
            m.weight.clone(),
        );
        registry.register(
            "state",
            "1 for the state of the last agent reply (up, full, draining, unreachable, ...)",
            m.state.clone(),
        );
        registry.register(
            "poll_failures",
            "Polls of the chat-node /stats that failed, by reason",
            m.poll_failures.clone(),
        );
        registry.register(
            "polls",
            "Polls of the chat-node /stats that succeeded",
            m.polls.clone(),
        );
        registry.register(
            "agent_checks",
            "HAProxy agent checks answered",
            m.agent_checks.clone(),
        );
        registry.register(
            "node_connections",
            "Open WebSocket connections on the chat-node at the last successful poll",
            m.node_connections.clone(),
        );
        registry.register(
            "node_capacity",
            "Capacity of the chat-node at the last successful poll",
            m.node_capacity.clone(),
        );
        for state in Reply::STATES {
            m.state
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(0);
        }
        Self { registry, ..m }
    }

    /// Records the reply just decided (weight gauge and the one-hot state family).
    pub fn observe_reply(&self, reply: &Reply) {
        self.weight.set(i64::from(reply.weight_percent()));
        for state in Reply::STATES {
            let value = i64::from(state == reply.state());
            self.state
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(value);
        }
    }

    /// Counts one agent check served.
    pub fn agent_check_served(&self) {
        self.agent_checks.inc();
    }

    /// Counts one successful poll and records the node's numbers.
    pub fn poll_succeeded(&self, connections: u64, capacity: u64) {
        self.polls.inc();
        self.node_connections
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
        self.node_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    }

    /// Counts one failed poll under `reason`.
    pub fn poll_failed(&self, reason: &str) {
        self.poll_failures
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::DownReason;

    #[test]
    fn exposition_has_weight_state_failures_and_checks() {
        let m = Metrics::new();
        m.observe_reply(&Reply::Up { weight_percent: 57 });
        m.poll_failed("timeout");
        m.agent_check_served();
        m.agent_check_served();
        let text = m.encode();
        assert!(
            text.contains("sidecar_reported_weight_percent 57"),
            "{text}"
        );
        assert!(text.contains(r#"sidecar_state{state="up"} 1"#), "{text}");
        assert!(
            text.contains(r#"sidecar_state{state="draining"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sidecar_poll_failures_total{reason="timeout"} 1"#),
            "{text}"
        );
        assert!(text.contains("sidecar_agent_checks_total 2"), "{text}");

        m.observe_reply(&Reply::Down(DownReason::Draining));
        let text = m.encode();
        assert!(text.contains("sidecar_reported_weight_percent 0"), "{text}");
        assert!(text.contains(r#"sidecar_state{state="up"} 0"#), "{text}");
        assert!(
            text.contains(r#"sidecar_state{state="draining"} 1"#),
            "{text}"
        );
    }
}
