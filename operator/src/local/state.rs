//! The state file local mode writes with `--state-file`: where everything listens and which
//! process ids the children have right now. Scripts and the end-to-end tests read it instead of
//! parsing log lines; it is rewritten (atomically, by rename) whenever a child restarts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::Error;

/// Environment variable set on every child (and inherited by its own children) to the run's id,
/// so a test can prove that no process of a run survives it.
pub const RUN_ENV: &str = "CHATCLUSTER_LOCAL_RUN";

/// The loopback ports of one chat-node + sidecar pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePorts {
    /// chat-node WebSocket and demo page (8080 in a pod).
    pub ws: u16,
    /// chat-node admin: `/healthz`, `/readyz`, `/stats`, `/drain` (8081 in a pod).
    pub admin: u16,
    /// sidecar agent-check (8082 in a pod).
    pub agent: u16,
    /// sidecar HTTP: `/metrics`, `/healthz`, `/state` (8083 in a pod).
    pub http: u16,
}

/// Every port local mode uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPorts {
    /// HAProxy's client-facing port (the endpoint).
    pub frontend: u16,
    /// HAProxy's stats / Prometheus port.
    pub stats: u16,
    /// The managed redis-server's port (unused with an external Redis).
    pub redis: u16,
    /// One entry per chat node, in ordinal order.
    pub nodes: Vec<NodePorts>,
}

/// One chat node as the state file shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node's name (what `welcome` and `/stats` report).
    pub name: String,
    /// Its ports.
    pub ports: NodePorts,
    /// The chat-node's current process id (`None` while it restarts).
    pub pid: Option<u32>,
    /// The sidecar's current process id.
    pub sidecar_pid: Option<u32>,
}

/// One supervised child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildState {
    /// The child's name (its log prefix).
    pub name: String,
    /// Current process id (`None` while it restarts).
    pub pid: Option<u32>,
    /// How many times it was started.
    pub starts: u32,
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// Process id of local mode itself (send it SIGINT or SIGTERM to stop everything).
    pub operator_pid: u32,
    /// The value of [`RUN_ENV`] on every child.
    pub run_id: String,
    /// Directory with the rendered haproxy.cfg, Redis data and sockets.
    pub run_dir: PathBuf,
    /// Where clients connect: `ws://127.0.0.1:<port>/ws`.
    pub endpoint: String,
    /// The demo page through HAProxy.
    pub demo_url: String,
    /// All ports.
    pub ports: LocalPorts,
    /// HAProxy's runtime API socket.
    pub haproxy_socket: PathBuf,
    /// The Redis URL the chat nodes use.
    pub redis_url: String,
    /// The chat nodes running now (`spec.replicas` of them; spare HAProxy slots not listed).
    pub nodes: Vec<NodeState>,
    /// Every child that should be running now (Redis, HAProxy, the nodes' pairs).
    pub children: Vec<ChildState>,
}

impl LocalState {
    /// Writes the state as pretty JSON to `path` through a temporary file and a rename, so a
    /// reader never sees half a file.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self).expect("state always serialises");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a state file written by [`LocalState::write`].
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let ports = NodePorts {
            ws: 1,
            admin: 2,
            agent: 3,
            http: 4,
        };
        let state = LocalState {
            operator_pid: 42,
            run_id: "run".into(),
            run_dir: dir.path().into(),
            endpoint: "ws://127.0.0.1:9/ws".into(),
            demo_url: "http://127.0.0.1:9/".into(),
            ports: LocalPorts {
                frontend: 9,
                stats: 10,
                redis: 11,
                nodes: vec![ports],
            },
            haproxy_socket: dir.path().join("admin.sock"),
            redis_url: "redis://127.0.0.1:11/".into(),
            nodes: vec![NodeState {
                name: "chat-0".into(),
                ports,
                pid: Some(7),
                sidecar_pid: None,
            }],
            children: vec![ChildState {
                name: "chat-0".into(),
                pid: Some(7),
                starts: 1,
            }],
        };
        let path = dir.path().join("state.json");
        state.write(&path).unwrap();
        assert_eq!(LocalState::read(&path).unwrap(), state);
        assert!(!path.with_extension("tmp").exists());
    }
}
