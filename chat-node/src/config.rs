//! The node's configuration: one clap `Args` struct, every flag also an environment variable, so
//! the same struct documents `--help`, the container's env and the library entry point.

use std::net::SocketAddr;
use std::time::Duration;

use chatcluster_common::LogFormat;

/// Configuration of one chat node.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the WebSocket endpoint (`/ws`) and the demo page (`/`).
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin endpoints (`/healthz`, `/readyz`, `/metrics`, `/stats`, `/drain`).
    #[arg(long, env = "CHAT_ADMIN_LISTEN", default_value = "0.0.0.0:8081")]
    pub admin_listen: SocketAddr,
    /// Redis used for pub/sub, history and presence.
    #[arg(
        long,
        env = "CHAT_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,
    /// This node's name (the pod name in Kubernetes); shown in the welcome and in `/stats`.
    #[arg(long, env = "CHAT_NODE_NAME", default_value = "chat-node")]
    pub node_name: String,
    /// Namespace of the ChatCluster; part of every Redis key and channel name.
    #[arg(long, env = "CHAT_CLUSTER_NAMESPACE", default_value = "default")]
    pub cluster_namespace: String,
    /// Name of the ChatCluster; part of every Redis key and channel name.
    #[arg(long, env = "CHAT_CLUSTER_NAME", default_value = "chat")]
    pub cluster_name: String,
    /// Maximum open WebSocket connections; further upgrades get HTTP 503.
    #[arg(long, env = "CHAT_CAPACITY", default_value_t = 10_000)]
    pub capacity: u64,
    /// Largest accepted client frame/message in bytes; larger closes the connection with 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,
    /// Sustained client frames per second per connection (token bucket refill rate).
    #[arg(long, env = "CHAT_RATE_PER_SECOND", default_value_t = 20.0)]
    pub rate_per_second: f64,
    /// Burst of client frames per connection (token bucket size).
    #[arg(long, env = "CHAT_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,
    /// Frames queued towards one client before it counts as a slow consumer (closed with 1008).
    #[arg(long, env = "CHAT_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,
    /// Messages kept per room for resume (Redis Stream `MAXLEN ~`).
    #[arg(long, env = "CHAT_HISTORY_LENGTH", default_value_t = 1000)]
    pub history_length: u64,
    /// HS256 secret for client JWTs; unset means anonymous mode (`?name=`).
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Seconds over which a drain spreads the closing of open connections.
    #[arg(long, env = "CHAT_DRAIN_GRACE_SECONDS", default_value_t = 30.0)]
    pub drain_grace_seconds: f64,
    /// Seconds between WebSocket pings to each client (a silent client is dropped after 3).
    #[arg(long, env = "CHAT_PING_INTERVAL_SECONDS", default_value_t = 20.0)]
    pub ping_interval_seconds: f64,
    /// Rooms one connection may be in at the same time (`too_many_rooms` beyond).
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_CONNECTION", default_value_t = 64)]
    pub max_rooms_per_connection: usize,
    /// Log format: `text` or `json`.
    #[arg(long, env = "CHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// A configuration with every default (plus any `CHAT_*` environment variables, as for the
    /// binary) and the given Redis URL, for tests and embedders. The `listen` addresses are
    /// unused by `run`, which takes bound listeners.
    pub fn for_redis(redis_url: impl Into<String>) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Wrapper::parse_from(["chat-node"]).config;
        config.redis_url = redis_url.into();
        config
    }

    /// Prefix of every Redis key and channel of this cluster: `chatcluster:{namespace}/{name}`.
    pub fn redis_prefix(&self) -> String {
        format!(
            "chatcluster:{}/{}",
            self.cluster_namespace, self.cluster_name
        )
    }

    /// The drain grace period.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs_f64(self.drain_grace_seconds.max(0.0))
    }

    /// The interval between server pings.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs_f64(self.ping_interval_seconds.max(0.05))
    }
}
