//! Small pieces shared by the chatcluster binaries: the chat-node's `/stats` JSON (read by the
//! sidecar and by local mode), the shutdown signal every server waits on, and log setup.
//!
//! Only wire types and process plumbing live here; anything with behaviour belongs to the crate
//! that owns it.

use serde::{Deserialize, Serialize};

/// The JSON document a chat-node serves on its admin port at `/stats`.
///
/// The sidecar turns it into a HAProxy agent-check reply; local mode and tests use it to see
/// where clients landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's name (the pod name in Kubernetes).
    pub node: String,
    /// Open WebSocket connections right now.
    pub connections: u64,
    /// Maximum WebSocket connections the node accepts; 0 means the node takes none.
    pub capacity: u64,
    /// True once the node has started draining: it accepts no new connections.
    pub draining: bool,
    /// True while the node can reach Redis (it cannot deliver room traffic otherwise).
    #[serde(default = "default_true")]
    pub redis_connected: bool,
}

fn default_true() -> bool {
    true
}

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM, the signal Kubernetes sends
/// before it kills a pod.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = term => tracing::info!("received SIGTERM"),
    }
}

/// Log format chosen with `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}; use `text` or `json`"
            )),
        }
    }
}

/// Installs the global `tracing` subscriber. The filter comes from `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a pod's log, a file or local mode's pipe gets plain text that
    // grep and log shippers can read.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_and_default_redis_flag() {
        let json = r#"{"node":"n0","connections":3,"capacity":10,"draining":false}"#;
        let stats: NodeStats = serde_json::from_str(json).unwrap();
        assert!(
            stats.redis_connected,
            "old nodes without the field count as connected"
        );
        let back: NodeStats =
            serde_json::from_str(&serde_json::to_string(&stats).unwrap()).unwrap();
        assert_eq!(stats, back);
    }

    #[test]
    fn log_format_parses_known_names_only() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("text"));
    }
}
