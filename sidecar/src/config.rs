//! Command-line and environment configuration of the sidecar. Every flag has a long name, an
//! environment variable and a default, so the container runs with no arguments.

use std::net::SocketAddr;
use std::time::Duration;

use chatcluster_common::LogFormat;

/// The sidecar's settings (`chatcluster-sidecar --help`).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chatcluster-sidecar", version, about)]
pub struct Config {
    /// URL of the chat-node's `/stats` JSON on its admin port.
    #[arg(
        long,
        env = "SIDECAR_STATS_URL",
        default_value = "http://127.0.0.1:8081/stats"
    )]
    pub stats_url: String,

    /// Address of the HAProxy agent-check server (one reply line per TCP connection).
    #[arg(long, env = "SIDECAR_AGENT_LISTEN", default_value = "0.0.0.0:8082")]
    pub agent_listen: SocketAddr,

    /// Address of the HTTP server with `/metrics`, `/healthz` and `/state`.
    #[arg(long, env = "SIDECAR_HTTP_LISTEN", default_value = "0.0.0.0:8083")]
    pub http_listen: SocketAddr,

    /// How often to poll `/stats`, in milliseconds.
    #[arg(long, env = "SIDECAR_POLL_INTERVAL_MS", default_value_t = 250)]
    pub poll_interval_ms: u64,

    /// Timeout of one `/stats` request, in milliseconds; a poll that takes longer counts as failed.
    #[arg(long, env = "SIDECAR_POLL_TIMEOUT_MS", default_value_t = 200)]
    pub poll_timeout_ms: u64,

    /// Stats older than this (milliseconds since the last successful poll) are reported `down
    /// #stale`.
    #[arg(long, env = "SIDECAR_STALE_AFTER_MS", default_value_t = 1000)]
    pub stale_after_ms: u64,

    /// A full node (connections reached capacity) takes clients again only once its connections
    /// fall below this percentage of its capacity, so a node at the edge does not flap.
    #[arg(long, env = "SIDECAR_FULL_RELEASE_PERCENT", default_value_t = 95)]
    pub full_release_percent: u8,

    /// After SIGTERM, keep answering agent checks until the chat-node has been unreachable for
    /// this long (milliseconds), so every HAProxy has read the final `down` before the port
    /// closes (HAProxy keeps a server's last state when it cannot reach the agent).
    #[arg(long, env = "SIDECAR_SHUTDOWN_LINGER_MS", default_value_t = 2000)]
    pub shutdown_linger_ms: u64,

    /// After SIGTERM, exit after this many milliseconds even if the chat-node is still running.
    /// Set it above the chat-node's drain grace period.
    #[arg(long, env = "SIDECAR_SHUTDOWN_DEADLINE_MS", default_value_t = 40_000)]
    pub shutdown_deadline_ms: u64,

    /// Log format: `text` or `json`.
    #[arg(long, env = "SIDECAR_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// A configuration with every default, pointing at `stats_url`; for tests and embedding.
    pub fn for_stats_url(stats_url: impl Into<String>) -> Self {
        use clap::Parser;
        let mut config = Self::parse_from(["chatcluster-sidecar"]);
        config.stats_url = stats_url.into();
        config
    }

    /// `--poll-interval-ms` as a duration (at least 1 ms).
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }

    /// `--poll-timeout-ms` as a duration.
    pub fn poll_timeout(&self) -> Duration {
        Duration::from_millis(self.poll_timeout_ms.max(1))
    }

    /// `--stale-after-ms` as a duration.
    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms)
    }

    /// `--shutdown-linger-ms` as a duration.
    pub fn shutdown_linger(&self) -> Duration {
        Duration::from_millis(self.shutdown_linger_ms)
    }

    /// `--shutdown-deadline-ms` as a duration.
    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_millis(self.shutdown_deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::parse_from(["chatcluster-sidecar"]);
        assert_eq!(c.stats_url, "http://127.0.0.1:8081/stats");
        assert_eq!(c.agent_listen, "0.0.0.0:8082".parse().unwrap());
        assert_eq!(c.http_listen, "0.0.0.0:8083".parse().unwrap());
        assert_eq!(c.poll_interval(), Duration::from_millis(250));
        assert_eq!(c.poll_timeout(), Duration::from_millis(200));
        assert_eq!(c.stale_after(), Duration::from_millis(1000));
        assert_eq!(c.full_release_percent, 95);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_override_defaults() {
        let c = Config::parse_from([
            "chatcluster-sidecar",
            "--stats-url",
            "http://127.0.0.1:9/stats",
            "--poll-interval-ms",
            "100",
            "--log-format",
            "json",
        ]);
        assert_eq!(c.stats_url, "http://127.0.0.1:9/stats");
        assert_eq!(c.poll_interval(), Duration::from_millis(100));
        assert_eq!(c.log_format, LogFormat::Json);
    }
}
