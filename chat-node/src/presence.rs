//! Presence across nodes. Redis holds, per room, a hash `user -> connections` over all nodes,
//! and per node a hash of that node's share. One task per node serialises every change with the
//! node's own authoritative counts, so whenever Redis was unreachable (or lost its data) the node
//! rewrites its share in one script (`sync`). A heartbeat sorted set lets live nodes remove the
//! share of a node that crashed (silent for [`DEAD_AFTER`]); a restarted node replaces the share
//! of its previous incarnation at start. Both publish `member_left` where it applies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Interval of the node heartbeat (and of retrying a failed sync).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node silent for this long is dead: its presence share is removed.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);

/// Requests to the presence task.
#[derive(Debug)]
pub enum PresenceCmd {
    /// Move the count of (room, user) on this node by `delta`; replies with the room's members
    /// (`Err` when Redis is unreachable; the local count changes anyway and is synced later).
    Adjust {
        room: Arc<str>,
        user: Arc<str>,
        delta: i64,
        reply: Option<oneshot::Sender<Result<Vec<String>, ()>>>,
    },
    /// Rewrite this node's share in Redis (after the subscriber reconnected).
    Resync,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the presence task until `stop` is cancelled.
pub async fn run(
    node: Arc<Node>,
    mut rx: mpsc::UnboundedReceiver<PresenceCmd>,
    stop: CancellationToken,
) {
    let mut counts: HashMap<(Arc<str>, Arc<str>), u32> = HashMap::new();
    let mut dirty = true;
    let mut tick = tokio::time::interval(HEARTBEAT);
    let name = node.config.node_name.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            cmd = rx.recv() => match cmd {
                None => break,
                Some(PresenceCmd::Adjust { room, user, delta, reply }) => {
                    let key = (room.clone(), user.clone());
                    let count = counts.entry(key.clone()).or_default();
                    *count = count.saturating_add_signed(delta as i32);
                    if *count == 0 {
                        counts.remove(&key);
                    }
                    if !node.redis_connected() {
                        // Do not queue a Redis timeout per change during an outage; the resync
                        // after the reconnect writes the whole share at once.
                        dirty = true;
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(()));
                        }
                        continue;
                    }
                    let result = node.store.presence_adjust(&name, &room, &user, delta).await.map_err(|err| {
                        tracing::warn!(%err, room = %room, "presence update failed; will resync");
                        dirty = true;
                    });
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Some(PresenceCmd::Resync) => {
                    dirty = !sync(&node, &name, &counts).await;
                }
            },
            _ = tick.tick() => {
                if dirty {
                    dirty = !sync(&node, &name, &counts).await;
                }
                let now = now_ms();
                match node.store.heartbeat(&name, now, now.saturating_sub(DEAD_AFTER.as_millis() as u64)).await {
                    Ok(dead) => {
                        for dead in dead {
                            match node.store.reap(&dead).await {
                                Ok(()) => tracing::info!(node = %dead, "removed presence of a silent node"),
                                Err(err) => tracing::warn!(%err, node = %dead, "cannot remove presence of a silent node"),
                            }
                        }
                    }
                    Err(err) => tracing::debug!(%err, "heartbeat failed"),
                }
            }
        }
    }
}

async fn sync(node: &Node, name: &str, counts: &HashMap<(Arc<str>, Arc<str>), u32>) -> bool {
    let triples: Vec<(String, String, u32)> = counts
        .iter()
        .map(|((room, user), n)| (room.to_string(), user.to_string(), *n))
        .collect();
    match node.store.presence_sync(name, &triples).await {
        Ok(()) => {
            tracing::debug!(entries = triples.len(), "presence synced");
            true
        }
        Err(err) => {
            tracing::debug!(%err, "presence sync failed; retrying later");
            false
        }
    }
}
