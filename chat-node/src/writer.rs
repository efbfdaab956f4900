//! The writing half of a connection: drains the bounded outbound queue into the socket, holds a
//! room's live traffic back while that room's join (and replay) is in progress, pings the client,
//! and closes the socket with the code the node asked for. Every write has a timeout, so a client
//! whose socket stopped draining cannot pin the task or its memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::hub::{Conn, Outbound, RoomEventFrame, RoomFrame};
use crate::offset::Offset;
use crate::protocol;

/// Longest time one batch of writes may take before the client counts as stuck.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time spent sending the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames written before one flush.
const BATCH: usize = 64;

enum Held {
    Msg(Arc<RoomFrame>),
    Event(Arc<RoomEventFrame>),
}

enum Gate {
    /// A join is in progress: traffic is held.
    Pending(Vec<Held>),
    /// Joined: traffic flows; offsets at or below the floor were already written.
    Live(Option<Offset>),
}

/// Per-connection writer state: the room gates (a handful of rooms, so a Vec).
#[derive(Default)]
pub struct Gates {
    rooms: Vec<(Arc<str>, Gate)>,
}

impl Gates {
    fn get(&mut self, room: &str) -> Option<&mut Gate> {
        self.rooms
            .iter_mut()
            .find(|(r, _)| &**r == room)
            .map(|(_, g)| g)
    }

    fn remove(&mut self, room: &str) {
        self.rooms.retain(|(r, _)| &**r != room);
    }

    /// Turns one queue item into frames to write, in order. Returns false when held traffic
    /// overflowed `limit` (the client is too slow to take its replay).
    pub fn process(&mut self, item: Outbound, limit: usize, out: &mut Vec<Message>) -> bool {
        match item {
            Outbound::Text(frame) => out.push(Message::Text(frame)),
            Outbound::Room(msg) => match self.get(&msg.room) {
                Some(Gate::Pending(held)) => {
                    held.push(Held::Msg(msg));
                    return held.len() <= limit;
                }
                Some(Gate::Live(floor)) if floor.is_none_or(|f| msg.offset > f) => {
                    *floor = Some(msg.offset);
                    out.push(msg.frame.clone());
                }
                Some(Gate::Live(_)) | None => {}
            },
            Outbound::RoomEvent(event) => match self.get(&event.room) {
                Some(Gate::Pending(held)) => {
                    held.push(Held::Event(event));
                    return held.len() <= limit;
                }
                Some(Gate::Live(_)) => out.push(Message::Text(event.frame.clone())),
                None => {}
            },
            Outbound::JoinStart(room) => {
                self.remove(&room);
                self.rooms.push((room, Gate::Pending(Vec::new())));
            }
            Outbound::JoinEnd(end) => {
                let held = match self.get(&end.room) {
                    Some(Gate::Pending(held)) => std::mem::take(held),
                    _ => Vec::new(),
                };
                out.push(Message::Text(end.frame));
                if !end.ok {
                    self.remove(&end.room);
                    return true;
                }
                let mut floor = None;
                for (offset, frame) in end.replay {
                    floor = Some(offset);
                    out.push(frame);
                }
                for item in held {
                    match item {
                        Held::Msg(msg) if floor.is_none_or(|f| msg.offset > f) => {
                            floor = Some(msg.offset);
                            out.push(msg.frame.clone());
                        }
                        Held::Msg(_) => {}
                        Held::Event(event) => out.push(Message::Text(event.frame.clone())),
                    }
                }
                if let Some(gate) = self.get(&end.room) {
                    *gate = Gate::Live(floor);
                }
            }
            Outbound::Left(room) => {
                self.remove(&room);
                out.push(Message::Text(protocol::left(&room).into()));
            }
        }
        true
    }
}

/// Runs the writer until the connection is asked to close (or the socket fails).
pub async fn run<S>(
    conn: Arc<Conn>,
    mut sink: SplitSink<S, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    ping_interval: Duration,
    held_limit: usize,
    start: Instant,
    last_seen_ms: Arc<AtomicU64>,
) where
    SplitSink<S, Message>: Sink<Message> + Unpin,
{
    let mut gates = Gates::default();
    let mut out: Vec<Message> = Vec::new();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let code = loop {
        tokio::select! {
            biased;
            code = conn.closing() => break Some(code),
            item = rx.recv() => {
                let Some(item) = item else { break None };
                let mut ok = gates.process(item, held_limit, &mut out);
                while ok && out.len() < BATCH {
                    match rx.try_recv() {
                        Ok(item) => ok = gates.process(item, held_limit, &mut out),
                        Err(_) => break,
                    }
                }
                if !ok {
                    conn.close(1008);
                    continue;
                }
                match write_all(&conn, &mut sink, &mut out).await {
                    Written::Ok => {}
                    Written::Broken => break None,
                    Written::Stuck => {
                        // The socket stopped draining (or a close was asked for meanwhile).
                        conn.close(1008);
                        break conn.close_requested();
                    }
                }
                if out.capacity() > 4 * BATCH {
                    out = Vec::new();
                }
            }
            _ = ping.tick() => {
                let silent_ms = (start.elapsed().as_millis() as u64).saturating_sub(last_seen_ms.load(Ordering::Relaxed));
                if Duration::from_millis(silent_ms) > ping_interval * 3 {
                    tracing::debug!(silent_ms, "client silent for three ping intervals; closing");
                    conn.close(1001);
                    continue;
                }
                out.push(Message::Ping(Default::default()));
                match write_all(&conn, &mut sink, &mut out).await {
                    Written::Ok => {}
                    Written::Broken => break None,
                    Written::Stuck => break conn.close_requested(),
                }
            }
        }
    };
    // However the writer ends, the reading half stops too (a no-op when a close was asked for).
    conn.close(1000);
    if let Some(code) = code {
        let reason = match code {
            1001 => "node draining or going away; reconnect and resume",
            1008 => "slow consumer: outbound queue full",
            1009 => "message too big",
            _ => "",
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
}

enum Written {
    Ok,
    /// The socket failed (peer gone).
    Broken,
    /// The write timed out or a close was asked for while writing.
    Stuck,
}

async fn write_all<S>(conn: &Conn, sink: &mut S, out: &mut Vec<Message>) -> Written
where
    S: Sink<Message> + Unpin,
{
    let batch = async {
        for frame in out.drain(..) {
            sink.feed(frame).await.map_err(|_| ())?;
        }
        sink.flush().await.map_err(|_| ())
    };
    let result = tokio::select! {
        res = tokio::time::timeout(WRITE_TIMEOUT, batch) => match res {
            Ok(Ok(())) => Written::Ok,
            Ok(Err(())) => Written::Broken,
            Err(_) => Written::Stuck,
        },
        _ = conn.closing() => Written::Stuck,
    };
    out.clear();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::JoinEnd;

    fn room_msg(room: &Arc<str>, ms: u64) -> Outbound {
        let frame = Message::Text(format!("m{ms}").into());
        Outbound::Room(Arc::new(RoomFrame {
            room: room.clone(),
            offset: Offset { ms, seq: 0 },
            frame,
        }))
    }

    fn texts(out: &mut Vec<Message>) -> Vec<String> {
        out.drain(..)
            .map(|m| m.into_text().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_join_holds_live_traffic_then_writes_replay_and_only_newer_held_messages() {
        let room: Arc<str> = "lobby".into();
        let mut gates = Gates::default();
        let mut out = Vec::new();
        assert!(
            gates.process(room_msg(&room, 1), 10, &mut out),
            "not joined: dropped"
        );
        assert!(out.is_empty());
        gates.process(Outbound::JoinStart(room.clone()), 10, &mut out);
        for ms in [3, 4, 5] {
            gates.process(room_msg(&room, ms), 10, &mut out);
        }
        let event = Arc::new(RoomEventFrame {
            room: room.clone(),
            frame: "ev".into(),
        });
        gates.process(Outbound::RoomEvent(event), 10, &mut out);
        assert!(out.is_empty(), "held while joining");
        let replay = (2..=4)
            .map(|ms| {
                (
                    Offset { ms, seq: 0 },
                    Message::Text(format!("r{ms}").into()),
                )
            })
            .collect();
        let end = JoinEnd {
            room: room.clone(),
            frame: "joined".into(),
            ok: true,
            replay,
        };
        gates.process(Outbound::JoinEnd(Box::new(end)), 10, &mut out);
        assert_eq!(texts(&mut out), ["joined", "r2", "r3", "r4", "m5", "ev"]);
        gates.process(room_msg(&room, 5), 10, &mut out);
        gates.process(room_msg(&room, 6), 10, &mut out);
        assert_eq!(texts(&mut out), ["m6"], "no duplicate after the join");
        gates.process(Outbound::Left(room.clone()), 10, &mut out);
        gates.process(room_msg(&room, 7), 10, &mut out);
        assert_eq!(texts(&mut out), [r#"{"type":"left","room":"lobby"}"#]);
    }

    #[test]
    fn a_failed_join_drops_held_traffic_and_too_much_held_traffic_overflows() {
        let room: Arc<str> = "r".into();
        let mut gates = Gates::default();
        let mut out = Vec::new();
        gates.process(Outbound::JoinStart(room.clone()), 2, &mut out);
        assert!(gates.process(room_msg(&room, 1), 2, &mut out));
        assert!(gates.process(room_msg(&room, 2), 2, &mut out));
        assert!(
            !gates.process(room_msg(&room, 3), 2, &mut out),
            "third held frame overflows"
        );
        let end = JoinEnd {
            room: room.clone(),
            frame: "error".into(),
            ok: false,
            replay: Vec::new(),
        };
        gates.process(Outbound::JoinEnd(Box::new(end)), 2, &mut out);
        gates.process(room_msg(&room, 4), 2, &mut out);
        assert_eq!(texts(&mut out), ["error"]);
    }
}
