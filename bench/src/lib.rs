//! Benchmarks for chatcluster. They print figures; they are run by hand, never as tests.
//!
//! - [`idle`]: memory per idle WebSocket connection of a chat-node (`chatcluster-bench idle`).
//!   The controller starts (or attaches to) a node, spreads the connections over worker
//!   processes ([`worker`], re-executions of this binary) and reads the node's RSS.
//! - [`node`]: the chat-node under test: start one on loopback, or attach to a running one.
//! - [`measure`]: pure arithmetic and parsing (RSS and CPU time from `/proc`, per-connection
//!   figures, splitting a load over workers, medians).
//! - The load generator: [`adapter`] (chatcluster's and Socket.IO's protocols behind one
//!   trait, the message stamp), [`load`] (a load-worker process: clients, rooms, timestamped
//!   sequence-numbered messages, per-receiver measurement), [`tally`] (pure accounting: rooms,
//!   duplicates, loss, percentiles), [`run`] (the controller's fleet of load workers) and
//!   [`cluster`] (Redis, chat-nodes or Socket.IO peers, HAProxy, started and stopped by PID).
//! - [`scenario`]: broadcast and chat (slow consumers with `--slow-every`), both systems side
//!   by side; [`compare_idle`] holds idle connections on both systems; [`svg`] plots latency
//!   against load.

pub mod adapter;
mod client;
pub mod cluster;
pub mod compare_idle;
pub mod idle;
pub mod load;
pub mod measure;
pub mod node;
pub mod run;
pub mod scenario;
pub mod svg;
pub mod tally;
pub mod worker;

/// What can go wrong while running a benchmark. Every message says what failed and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, socket or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the benchmark was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A WebSocket handshake or frame failed.
    #[error("WebSocket to {url}: {source}")]
    WebSocket {
        /// The endpoint.
        url: String,
        /// The underlying error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// Something did not happen within its time bound.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node or a worker answered something unexpected.
    #[error("{0}")]
    Unexpected(String),
    /// The arguments cannot work (for example too many sockets per worker).
    #[error("invalid arguments: {0}")]
    Invalid(String),
}

impl Error {
    /// Wraps an I/O error with what the benchmark was doing.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
