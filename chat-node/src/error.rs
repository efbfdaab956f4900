//! The crate's error type: what can stop the node (as opposed to per-connection problems, which
//! become `error` events or close codes and never reach `run`'s caller).

/// Errors returned by [`crate::run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be used.
    #[error("listener error: {0}")]
    Listener(#[source] std::io::Error),
    /// The Redis URL cannot be parsed.
    #[error("invalid --redis-url {url:?}: {source}; expected redis://host:port/")]
    RedisUrl {
        /// The URL given.
        url: String,
        /// What redis-rs said about it.
        #[source]
        source: redis::RedisError,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Listener(_) => "listener",
            Error::RedisUrl { .. } => "redis_url",
            Error::Config(_) => "config",
        }
    }
}
