//! The node's Redis subscriber: one pub/sub connection carrying the channels of every room with
//! local members and every user with a local connection. It owns the wanted channel set, so after
//! Redis comes back it reconnects by itself, re-subscribes everything, fills each room's gap
//! from its stream (from the last offset the node delivered) and only then resumes live traffic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Timeout of one Redis operation on the subscriber connection.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle subscriber connection is checked with PING.
const PING_EVERY: Duration = Duration::from_secs(3);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A channel the node wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A room's channel.
    Room(Arc<str>),
    /// A user's direct-message channel.
    User(Arc<str>),
}

/// Requests to the subscriber.
#[derive(Debug)]
pub enum SubCommand {
    /// Want a channel; `reply` gets true once it is subscribed, false if Redis is unreachable
    /// (the channel stays wanted and is subscribed on reconnect).
    Subscribe {
        target: Target,
        reply: Option<oneshot::Sender<bool>>,
    },
    /// No longer want a channel.
    Unsubscribe(Target),
    /// The message stream of connection `generation` ended.
    StreamEnded(u64),
}

struct Active {
    sink: PubSubSink,
    generation: u64,
    subscribed: HashSet<String>,
    reader: JoinHandle<()>,
}

/// Runs the subscriber until `stop` is cancelled.
pub async fn run(
    node: Arc<Node>,
    tx: mpsc::UnboundedSender<SubCommand>,
    mut rx: mpsc::UnboundedReceiver<SubCommand>,
    stop: CancellationToken,
) {
    let mut wanted: HashMap<String, Target> = HashMap::new();
    let mut active: Option<Active> = None;
    let mut generation = 0u64;
    let mut backoff = Duration::ZERO;
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                handle(&node, cmd, &mut wanted, &mut active).await;
            }
            () = tokio::time::sleep(backoff), if active.is_none() => {
                generation += 1;
                match connect(&node, &tx, &wanted, generation).await {
                    Ok(a) => {
                        active = Some(a);
                        backoff = Duration::ZERO;
                        node.set_redis_connected(true);
                        node.metrics.redis_reconnects.inc();
                        tracing::info!(generation, channels = wanted.len(), "redis subscriber connected");
                        node.presence_resync();
                    }
                    Err(err) => {
                        backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                        tracing::warn!(%err, retry_in = ?backoff, "redis subscriber cannot connect");
                    }
                }
            }
            _ = ping.tick(), if active.is_some() => {
                // In subscribe mode a RESP2 server answers PING with `["pong", ""]`, not `PONG`:
                // accept any reply, only a timeout or an I/O error means the connection is gone.
                let a = active.as_mut().expect("checked");
                let ok = matches!(tokio::time::timeout(OP_TIMEOUT, a.sink.ping::<redis::Value>()).await, Ok(Ok(_)));
                if !ok {
                    disconnect(&node, &mut active, "ping failed");
                }
            }
        }
    }
    if let Some(a) = active.take() {
        a.reader.abort();
    }
}

async fn handle(
    node: &Arc<Node>,
    cmd: SubCommand,
    wanted: &mut HashMap<String, Target>,
    active: &mut Option<Active>,
) {
    match cmd {
        SubCommand::Subscribe { target, reply } => {
            let channel = channel_of(node, &target);
            wanted.insert(channel.clone(), target.clone());
            let ok = match active.as_mut() {
                None => false,
                Some(a) if a.subscribed.contains(&channel) => true,
                Some(a) => {
                    let res = tokio::time::timeout(OP_TIMEOUT, a.sink.subscribe(&channel)).await;
                    if matches!(res, Ok(Ok(()))) {
                        a.subscribed.insert(channel);
                        if let Target::Room(room) = &target {
                            // Where the room's stream ends now: a later gap fill starts there.
                            if let Ok(Some(last)) = node.store.last_offset(room).await {
                                node.hub.note_subscribed_at(room, last);
                            }
                        }
                        true
                    } else {
                        disconnect(node, active, "subscribe failed");
                        false
                    }
                }
            };
            if let Some(reply) = reply {
                let _ = reply.send(ok);
            }
            node.metrics.rooms.set(node.hub.room_count() as i64);
        }
        SubCommand::Unsubscribe(target) => {
            let channel = channel_of(node, &target);
            wanted.remove(&channel);
            if let Some(a) = active.as_mut()
                && a.subscribed.remove(&channel)
            {
                let res = tokio::time::timeout(OP_TIMEOUT, a.sink.unsubscribe(&channel)).await;
                if !matches!(res, Ok(Ok(()))) {
                    disconnect(node, active, "unsubscribe failed");
                }
            }
            node.metrics.rooms.set(node.hub.room_count() as i64);
        }
        SubCommand::StreamEnded(generation) => {
            if active.as_ref().is_some_and(|a| a.generation == generation) {
                disconnect(node, active, "connection lost");
            }
        }
    }
}

fn channel_of(node: &Node, target: &Target) -> String {
    match target {
        Target::Room(room) => node.store.keys().room_channel(room),
        Target::User(user) => node.store.keys().user_channel(user),
    }
}

fn disconnect(node: &Node, active: &mut Option<Active>, why: &str) {
    if let Some(a) = active.take() {
        a.reader.abort();
        tracing::warn!(
            generation = a.generation,
            why,
            "redis subscriber disconnected"
        );
    }
    node.set_redis_connected(false);
}

/// Connects, subscribes every wanted channel, fills room gaps, then starts the reader.
async fn connect(
    node: &Arc<Node>,
    tx: &mpsc::UnboundedSender<SubCommand>,
    wanted: &HashMap<String, Target>,
    generation: u64,
) -> redis::RedisResult<Active> {
    let timeout_err = || redis::RedisError::from((redis::ErrorKind::Io, "timed out"));
    let pubsub = tokio::time::timeout(OP_TIMEOUT, node.redis.get_async_pubsub())
        .await
        .map_err(|_| timeout_err())??;
    let (mut sink, mut stream) = pubsub.split();
    let channels: Vec<&String> = wanted.keys().collect();
    for chunk in channels.chunks(512) {
        tokio::time::timeout(OP_TIMEOUT, sink.subscribe(chunk))
            .await
            .map_err(|_| timeout_err())??;
    }
    // Live messages queue up in `stream` meanwhile; the node-level offset check drops the overlap.
    for (room, last) in node.hub.rooms() {
        let Some(last) = last else { continue };
        let history = node.store.history_after(&room, last).await?;
        if !history.messages.is_empty() {
            tracing::info!(room = %room, filled = history.messages.len(), "filled room gap after reconnect");
        }
        if history.messages.len() > node.config.outbound_queue / 2 {
            // More than the members' queues can take at once: ask them to reconnect and resume
            // (a `join` with `since` replays any amount) instead of dropping them as slow.
            let closed = node.hub.close_room_members(&room, 1001);
            tracing::warn!(room = %room, gap = history.messages.len(), closed, "gap too large to fill live; members asked to resume");
            continue;
        }
        node.metrics
            .gap_filled
            .inc_by(history.messages.len() as u64);
        for msg in history.messages {
            node.deliver_stored(&room, msg);
        }
    }
    let node2 = node.clone();
    let tx = tx.clone();
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            node2.dispatch(
                msg.get_channel_name(),
                Bytes::copy_from_slice(msg.get_payload_bytes()),
            );
        }
        let _ = tx.send(SubCommand::StreamEnded(generation));
    });
    Ok(Active {
        sink,
        generation,
        subscribed: wanted.keys().cloned().collect(),
        reader,
    })
}
