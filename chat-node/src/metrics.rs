//! Prometheus metrics of one node, in one registry rendered at the admin port's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set with a single `code` label (error codes, close codes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code.
    pub code: String,
}

/// Every metric the node exports.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Upgrades accepted since start.
    pub connections_accepted: Counter,
    /// Upgrades refused, by HTTP status.
    pub upgrades_refused: Family<CodeLabel, Counter>,
    /// Room messages stored and published by this node.
    pub messages_published: Counter,
    /// Frames handed to local connections (room messages, directs, events).
    pub frames_delivered: Counter,
    /// Error events sent to clients, by code.
    pub client_errors: Family<CodeLabel, Counter>,
    /// Connections closed by the server, by close code.
    pub server_closes: Family<CodeLabel, Counter>,
    /// 1 while Redis is reachable.
    pub redis_connected: Gauge,
    /// Redis (re)connections of the subscriber.
    pub redis_reconnects: Counter,
    /// Room messages recovered from streams after a subscriber reconnect.
    pub gap_filled: Counter,
    /// Rooms this node is subscribed to.
    pub rooms: Gauge,
    /// 1 while draining.
    pub draining: Gauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut m = Metrics::default();
        let r = &mut m.registry;
        r.register(
            "chat_connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "chat_connections_accepted",
            "WebSocket upgrades accepted",
            m.connections_accepted.clone(),
        );
        r.register(
            "chat_upgrades_refused",
            "Upgrades refused, by HTTP status",
            m.upgrades_refused.clone(),
        );
        r.register(
            "chat_messages_published",
            "Room messages stored and published",
            m.messages_published.clone(),
        );
        r.register(
            "chat_frames_delivered",
            "Frames queued to local connections",
            m.frames_delivered.clone(),
        );
        r.register(
            "chat_client_errors",
            "Error events sent to clients, by code",
            m.client_errors.clone(),
        );
        r.register(
            "chat_server_closes",
            "Connections closed by the server, by close code",
            m.server_closes.clone(),
        );
        r.register(
            "chat_redis_connected",
            "1 while Redis is reachable",
            m.redis_connected.clone(),
        );
        r.register(
            "chat_redis_reconnects",
            "Redis subscriber (re)connections",
            m.redis_reconnects.clone(),
        );
        r.register(
            "chat_gap_filled_messages",
            "Room messages recovered from history after a subscriber reconnect",
            m.gap_filled.clone(),
        );
        r.register(
            "chat_rooms",
            "Rooms this node is subscribed to",
            m.rooms.clone(),
        );
        r.register(
            "chat_draining",
            "1 while the node drains",
            m.draining.clone(),
        );
        m
    }

    /// Counts an error event by code.
    pub fn client_error(&self, code: &str) {
        self.client_errors
            .get_or_create(&CodeLabel {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts a server-initiated close by code.
    pub fn server_close(&self, code: u16) {
        self.server_closes
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a refused upgrade by HTTP status.
    pub fn refused(&self, status: u16) {
        self.upgrades_refused
            .get_or_create(&CodeLabel {
                code: status.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
