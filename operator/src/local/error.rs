//! Errors of local mode, each worded for the person who ran `chatcluster-operator local`.

use std::path::PathBuf;
use std::time::Duration;

/// Why local mode could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ChatCluster file could not be read or parsed.
    #[error("cannot read ChatCluster from {path}: {reason}")]
    Manifest {
        /// The file given with `-f`.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The ChatCluster asks for something local mode cannot do.
    #[error("local mode cannot run this ChatCluster: {0}")]
    Unsupported(String),
    /// A program could not be started at all.
    #[error(
        "cannot start {child} ({reason}); install it (bash scripts/install-deps.sh) or pass its path with --bin-dir / --haproxy-bin / --redis-server-bin"
    )]
    ChildCannotStart {
        /// The child's name.
        child: String,
        /// The spawn error, with the program path.
        reason: String,
    },
    /// A child kept exiting before it ever became ready.
    #[error(
        "{child} exited {exits} times before it became ready (last: {last_exit}); its log lines above say why"
    )]
    ChildCrashed {
        /// The child's name.
        child: String,
        /// How often it exited.
        exits: u32,
        /// The last exit status.
        last_exit: String,
    },
    /// Some children were still not ready at the deadline.
    #[error("not ready after {timeout:?}: {}; their log lines above say why", waiting.join(", "))]
    NotReady {
        /// Names of the children that were not ready.
        waiting: Vec<String>,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// Local files (run directory, config, state file) could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
