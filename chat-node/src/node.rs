//! The state shared by every task of one node: configuration, the local registry, the Redis
//! clients, counters and the drain flag, plus the fan-out of what arrives from Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use chatcluster_common::NodeStats;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::hub::Hub;
use crate::keys::{Channel, Kind, RoomEvent, decode_room_event};
use crate::metrics::Metrics;
use crate::presence::PresenceCmd;
use crate::protocol;
use crate::store::{Store, Stored};

/// One node's shared state.
pub struct Node {
    /// The configuration it runs with.
    pub config: Config,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Local rooms, users and connections.
    pub hub: Hub,
    /// Redis commands.
    pub store: Store,
    /// Redis client (the subscriber opens its connection from it).
    pub redis: redis::Client,
    /// Presence task.
    pub presence: mpsc::UnboundedSender<PresenceCmd>,
    /// Cancelled when the drain starts.
    pub drain: CancellationToken,
    /// JWT verifier; `None` in anonymous mode.
    pub verifier: Option<crate::auth::Verifier>,
    connections: AtomicU64,
    redis_up: AtomicBool,
    next_id: AtomicU64,
}

/// Holds one of the node's connection slots; releases it when dropped.
pub struct Slot(Arc<Node>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.connections.dec();
    }
}

impl Node {
    /// Assembles a node (tasks are started by `run`).
    pub fn new(
        config: Config,
        redis: redis::Client,
        store: Store,
        hub: Hub,
        presence: mpsc::UnboundedSender<PresenceCmd>,
        verifier: Option<crate::auth::Verifier>,
    ) -> Self {
        Self {
            config,
            metrics: Metrics::new(),
            hub,
            store,
            redis,
            presence,
            drain: CancellationToken::new(),
            verifier,
            connections: AtomicU64::new(0),
            redis_up: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    /// What `/stats` reports.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            node: self.config.node_name.clone(),
            connections: self.connections.load(Ordering::Acquire),
            capacity: self.config.capacity,
            draining: self.is_draining(),
            redis_connected: self.redis_connected(),
        }
    }

    /// Open connections.
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Takes a connection slot unless the node is full.
    pub fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        if before >= self.config.capacity {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.metrics.connections.inc();
        self.metrics.connections_accepted.inc();
        Some(Slot(self.clone()))
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// True once the drain started.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Starts the drain (idempotent).
    pub fn start_drain(&self, why: &str) {
        if !self.drain.is_cancelled() {
            tracing::info!(why, connections = self.connection_count(), "drain started");
            self.metrics.draining.set(1);
            self.drain.cancel();
        }
    }

    /// True while the subscriber holds a live Redis connection.
    pub fn redis_connected(&self) -> bool {
        self.redis_up.load(Ordering::Acquire)
    }

    /// Set by the subscriber.
    pub fn set_redis_connected(&self, up: bool) {
        self.redis_up.store(up, Ordering::Release);
        self.metrics.redis_connected.set(i64::from(up));
    }

    /// Asks the presence task to rewrite this node's share (after a reconnect).
    pub fn presence_resync(&self) {
        let _ = self.presence.send(PresenceCmd::Resync);
    }

    /// Fans out one pub/sub message.
    pub fn dispatch(&self, channel: &str, payload: Bytes) {
        let delivered = match self.store.keys().parse_channel(channel) {
            Some(Channel::Room(room)) => match decode_room_event(payload) {
                Some(RoomEvent::Message { kind, offset, body }) => {
                    self.deliver_stored(room, Stored { offset, kind, body })
                }
                Some(RoomEvent::Joined(user)) => self.hub.deliver_room_event(
                    room,
                    &user,
                    protocol::member_event(true, room, &user).into(),
                ),
                Some(RoomEvent::Left(user)) => self.hub.deliver_room_event(
                    room,
                    &user,
                    protocol::member_event(false, room, &user).into(),
                ),
                None => {
                    tracing::warn!(channel, "malformed room payload dropped");
                    0
                }
            },
            Some(Channel::User(user)) => match Utf8Bytes::try_from(payload) {
                Ok(text) => self.hub.deliver_user(user, text),
                Err(_) => 0,
            },
            None => 0,
        };
        self.metrics.frames_delivered.inc_by(delivered as u64);
    }

    /// Delivers a stored room message to local members (once per offset).
    pub fn deliver_stored(&self, room: &str, msg: Stored) -> usize {
        self.hub
            .deliver_room(room, msg.offset, || stored_frame(room, &msg))
    }
}

/// The client frame of a stored room message.
pub fn stored_frame(room: &str, msg: &Stored) -> Message {
    match msg.kind {
        Kind::Text => {
            let body = std::str::from_utf8(&msg.body).unwrap_or("");
            Message::Text(protocol::text_message(room, msg.offset, body).into())
        }
        Kind::Binary => Message::Binary(protocol::binary_message(room, msg.offset, &msg.body)),
    }
}
