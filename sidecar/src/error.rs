//! The sidecar's error type. Poll failures are errors too: they are counted by `metric_label()`
//! and turned into `down #unreachable` replies rather than ending the process.

use std::time::Duration;

/// Everything that can go wrong in the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--stats-url` is not an `http://` URL hyper can request.
    #[error("invalid --stats-url {url:?}: {reason}; use a URL like http://127.0.0.1:8081/stats")]
    InvalidStatsUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP/HTTP request to the chat-node failed (connection refused, reset...).
    #[error("cannot reach the chat-node stats endpoint: {0}")]
    StatsUnreachable(#[source] hyper_util::client::legacy::Error),
    /// The chat-node did not answer within `--poll-timeout-ms`.
    #[error("the chat-node stats endpoint did not answer within {0:?}")]
    StatsTimeout(Duration),
    /// The chat-node answered with a non-200 status.
    #[error("the chat-node stats endpoint answered HTTP {0}")]
    StatsStatus(http::StatusCode),
    /// Reading the response body failed.
    #[error("reading the chat-node stats body failed: {0}")]
    StatsBody(#[source] hyper::Error),
    /// The body was not the `NodeStats` JSON.
    #[error("the chat-node stats body is not NodeStats JSON: {0}")]
    StatsDecode(#[source] serde_json::Error),
    /// A socket operation failed (accept, serve).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, stable label for the `reason` of `sidecar_poll_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidStatsUrl { .. } => "invalid_url",
            Self::StatsUnreachable(_) => "connect",
            Self::StatsTimeout(_) => "timeout",
            Self::StatsStatus(_) => "status",
            Self::StatsBody(_) => "body",
            Self::StatsDecode(_) => "decode",
            Self::Io(_) => "io",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
