//! The node's local registry: which connections are in which room, which connections belong to
//! which user, and every open connection (for the drain). Room traffic from Redis fans out here:
//! a frame is built once and its cheap clone (`Bytes`) is queued to each member.
//!
//! Subscribe/unsubscribe commands are sent to the subscriber while the registry lock is held, so
//! they reach Redis in the same order as the membership changes that caused them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::offset::Offset;
use crate::subscriber::{SubCommand, Target};

/// Identifies one connection on this node.
pub type ConnId = u64;

/// What the reader side (and the fan-out) hands to a connection's writer. Kept small (32
/// bytes of payload) because tokio allocates the first 32 queue slots of every connection up
/// front; room traffic is one shared allocation per message for all recipients.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame written as is (replies, direct messages).
    Text(Utf8Bytes),
    /// A live room message; held back while the room's join is in progress.
    Room(Arc<RoomFrame>),
    /// A room event (member joined/left); held back while the room's join is in progress.
    RoomEvent(Arc<RoomEventFrame>),
    /// A join of the room started: hold its live traffic until `JoinEnd`.
    JoinStart(Arc<str>),
    /// A join finished: write `frame` (joined or error), the replay, then the held traffic newer
    /// than the replay.
    JoinEnd(Box<JoinEnd>),
    /// The connection left the room: write `left` and forget the room.
    Left(Arc<str>),
}

/// A room message as queued to every local member.
#[derive(Debug)]
pub struct RoomFrame {
    /// The room.
    pub room: Arc<str>,
    /// The message's offset.
    pub offset: Offset,
    /// The finished frame (text or binary).
    pub frame: Message,
}

/// A member event as queued to every local member.
#[derive(Debug)]
pub struct RoomEventFrame {
    /// The room.
    pub room: Arc<str>,
    /// The finished `member_joined`/`member_left` frame.
    pub frame: Utf8Bytes,
}

/// The end of a join (see [`Outbound::JoinEnd`]).
#[derive(Debug)]
pub struct JoinEnd {
    /// The room.
    pub room: Arc<str>,
    /// `joined` on success, an `error` event otherwise.
    pub frame: Utf8Bytes,
    /// True when the join succeeded (live traffic continues); false drops held traffic.
    pub ok: bool,
    /// Replayed messages, oldest first.
    pub replay: Vec<(Offset, Message)>,
}

/// The shared handle of one connection: its outbound queue and its kill switch.
#[derive(Debug)]
pub struct Conn {
    /// The connection's id.
    pub id: ConnId,
    /// The connection's user.
    pub user: Arc<str>,
    tx: mpsc::Sender<Outbound>,
    close_code: AtomicU16,
    closed: Notify,
}

impl Conn {
    /// Creates a connection handle and the receiving end of its queue.
    pub fn new(id: ConnId, user: Arc<str>, queue: usize) -> (Arc<Conn>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            Arc::new(Conn {
                id,
                user,
                tx,
                close_code: AtomicU16::new(0),
                closed: Notify::new(),
            }),
            rx,
        )
    }

    /// Queues a frame without waiting. A full queue means the client stopped reading: the
    /// connection is closed with 1008 (slow consumer). Returns false when nothing was queued.
    pub fn push(&self, item: Outbound) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(1008);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection to close with `code` (the first code asked for wins).
    pub fn close(&self, code: u16) {
        if self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.closed.notify_waiters();
            self.closed.notify_one();
        }
    }

    /// The close code asked for, if any.
    pub fn close_requested(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// Resolves once a close has been asked for.
    pub async fn closing(&self) -> u16 {
        loop {
            let notified = self.closed.notified();
            if let Some(code) = self.close_requested() {
                return code;
            }
            notified.await;
        }
    }
}

struct Room {
    name: Arc<str>,
    members: HashMap<ConnId, Arc<Conn>>,
    /// Newest offset delivered to this room's members (dedup after resubscribe/gap fill).
    last: Option<Offset>,
    /// The stream's end when the node subscribed: where a gap fill starts while nothing was
    /// delivered yet. Never used for dedup (the subscriber may still have older messages queued).
    subscribed_at: Option<Offset>,
}

/// The local connections of one user.
type ConnSet = HashMap<ConnId, Arc<Conn>>;

/// The registry (see the module docs).
pub struct Hub {
    rooms: Mutex<HashMap<Arc<str>, Room>>,
    users: Mutex<HashMap<Arc<str>, ConnSet>>,
    conns: Mutex<HashMap<ConnId, Arc<Conn>>>,
    subs: mpsc::UnboundedSender<SubCommand>,
}

impl Hub {
    /// A registry that sends its subscription changes to `subs`.
    pub fn new(subs: mpsc::UnboundedSender<SubCommand>) -> Self {
        Self {
            rooms: Mutex::default(),
            users: Mutex::default(),
            conns: Mutex::default(),
            subs,
        }
    }

    fn subscribe(&self, target: Target) -> oneshot::Receiver<bool> {
        let (reply, rx) = oneshot::channel();
        let _ = self.subs.send(SubCommand::Subscribe {
            target,
            reply: Some(reply),
        });
        rx
    }

    /// Registers an open connection of `user`; resolves when the user's channel is subscribed.
    pub fn add_conn(&self, user: &Arc<str>, conn: &Arc<Conn>) -> oneshot::Receiver<bool> {
        self.conns.lock().unwrap().insert(conn.id, conn.clone());
        let mut users = self.users.lock().unwrap();
        users
            .entry(user.clone())
            .or_default()
            .insert(conn.id, conn.clone());
        self.subscribe(Target::User(user.clone()))
    }

    /// Forgets a closed connection of `user` (call after it left its rooms).
    pub fn remove_conn(&self, user: &Arc<str>, id: ConnId) {
        self.conns.lock().unwrap().remove(&id);
        let mut users = self.users.lock().unwrap();
        if let Some(conns) = users.get_mut(user) {
            conns.remove(&id);
            if conns.is_empty() {
                users.remove(user);
                let _ = self
                    .subs
                    .send(SubCommand::Unsubscribe(Target::User(user.clone())));
            }
        }
    }

    /// Adds a member to a room; resolves when the room's channel is subscribed (false: Redis
    /// is unreachable).
    pub fn join_room(&self, room: &Arc<str>, conn: &Arc<Conn>) -> oneshot::Receiver<bool> {
        let mut rooms = self.rooms.lock().unwrap();
        rooms
            .entry(room.clone())
            .or_insert_with(|| Room {
                name: room.clone(),
                members: HashMap::new(),
                last: None,
                subscribed_at: None,
            })
            .members
            .insert(conn.id, conn.clone());
        self.subscribe(Target::Room(room.clone()))
    }

    /// Removes a member; the last one out unsubscribes the node from the room.
    pub fn leave_room(&self, room: &Arc<str>, id: ConnId) {
        let mut rooms = self.rooms.lock().unwrap();
        if let Some(state) = rooms.get_mut(room) {
            state.members.remove(&id);
            if state.members.is_empty() {
                rooms.remove(room);
                let _ = self
                    .subs
                    .send(SubCommand::Unsubscribe(Target::Room(room.clone())));
            }
        }
    }

    /// Delivers a room message to local members unless an equal or newer offset was already
    /// delivered. `build` makes the frame, called at most once.
    pub fn deliver_room(
        &self,
        room: &str,
        offset: Offset,
        build: impl FnOnce() -> Message,
    ) -> usize {
        let mut rooms = self.rooms.lock().unwrap();
        let Some(state) = rooms.get_mut(room) else {
            return 0;
        };
        if state.last.is_some_and(|last| offset <= last) {
            return 0;
        }
        state.last = Some(offset);
        let shared = Arc::new(RoomFrame {
            room: state.name.clone(),
            offset,
            frame: build(),
        });
        for conn in state.members.values() {
            conn.push(Outbound::Room(shared.clone()));
        }
        state.members.len()
    }

    /// Delivers a member event about `user` to the other users' local connections in a room
    /// (a user's own connections already learn it from `joined`/`left`).
    pub fn deliver_room_event(&self, room: &str, user: &str, frame: Utf8Bytes) -> usize {
        let mut rooms = self.rooms.lock().unwrap();
        let Some(state) = rooms.get_mut(room) else {
            return 0;
        };
        let shared = Arc::new(RoomEventFrame {
            room: state.name.clone(),
            frame,
        });
        let mut delivered = 0;
        for conn in state.members.values().filter(|c| &*c.user != user) {
            conn.push(Outbound::RoomEvent(shared.clone()));
            delivered += 1;
        }
        delivered
    }

    /// Delivers a finished text frame to every local connection of `user`.
    pub fn deliver_user(&self, user: &str, frame: Utf8Bytes) -> usize {
        let users = self.users.lock().unwrap();
        let Some(conns) = users.get(user) else {
            return 0;
        };
        for conn in conns.values() {
            conn.push(Outbound::Text(frame.clone()));
        }
        conns.len()
    }

    /// Asks every local member of a room to close with `code`; returns how many.
    pub fn close_room_members(&self, room: &str, code: u16) -> usize {
        let rooms = self.rooms.lock().unwrap();
        let Some(state) = rooms.get(room) else {
            return 0;
        };
        for conn in state.members.values() {
            conn.close(code);
        }
        state.members.len()
    }

    /// Records where a room's stream ended when the node subscribed to it.
    pub fn note_subscribed_at(&self, room: &str, offset: Offset) {
        if let Some(state) = self.rooms.lock().unwrap().get_mut(room) {
            state.subscribed_at.get_or_insert(offset);
        }
    }

    /// Rooms with local members and the offset a gap fill starts after: the last delivered one,
    /// or the stream's end at subscription when nothing was delivered yet.
    pub fn rooms(&self) -> Vec<(Arc<str>, Option<Offset>)> {
        self.rooms
            .lock()
            .unwrap()
            .iter()
            .map(|(name, s)| (name.clone(), s.last.or(s.subscribed_at)))
            .collect()
    }

    /// Number of rooms with local members.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().unwrap().len()
    }

    /// Every open connection (for the drain).
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.conns.lock().unwrap().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_items_stay_small() {
        // tokio allocates 32 slots of the outbound queue per connection up front.
        assert!(
            std::mem::size_of::<Outbound>() <= 40,
            "{}",
            std::mem::size_of::<Outbound>()
        );
    }

    #[test]
    fn a_full_queue_closes_the_connection_with_1008() {
        let (conn, _rx) = Conn::new(1, "u".into(), 2);
        assert!(conn.push(Outbound::Text("a".into())));
        assert!(conn.push(Outbound::Text("b".into())));
        assert_eq!(conn.close_requested(), None);
        assert!(!conn.push(Outbound::Text("c".into())));
        assert_eq!(conn.close_requested(), Some(1008));
        conn.close(1001);
        assert_eq!(conn.close_requested(), Some(1008), "the first reason wins");
    }

    #[test]
    fn fan_out_delivers_each_offset_once_and_subscribes_in_membership_order() {
        let (subs, mut cmds) = mpsc::unbounded_channel();
        let hub = Hub::new(subs);
        let room: Arc<str> = "lobby".into();
        let (a, mut a_rx) = Conn::new(1, "a".into(), 8);
        let (b, mut b_rx) = Conn::new(2, "b".into(), 8);
        drop(hub.join_room(&room, &a));
        drop(hub.join_room(&room, &b));
        let offset = |ms| Offset { ms, seq: 0 };
        assert_eq!(
            hub.deliver_room("lobby", offset(5), || Message::Text("m5".into())),
            2
        );
        assert_eq!(
            hub.deliver_room("lobby", offset(5), || unreachable!()),
            0,
            "duplicate dropped"
        );
        assert_eq!(
            hub.deliver_room("lobby", offset(4), || unreachable!()),
            0,
            "older dropped"
        );
        assert_eq!(hub.deliver_room_event("lobby", "a", "ev".into()), 1);
        assert!(matches!(a_rx.try_recv(), Ok(Outbound::Room(m)) if m.offset == offset(5)));
        assert!(a_rx.try_recv().is_err(), "a gets no event about itself");
        assert!(matches!(b_rx.try_recv(), Ok(Outbound::Room(_))));
        assert!(matches!(b_rx.try_recv(), Ok(Outbound::RoomEvent(_))));
        hub.leave_room(&room, 1);
        hub.leave_room(&room, 2);
        let kinds: Vec<&str> = std::iter::from_fn(|| cmds.try_recv().ok())
            .map(|c| match c {
                SubCommand::Subscribe { .. } => "sub",
                SubCommand::Unsubscribe(_) => "unsub",
                SubCommand::StreamEnded(_) => "end",
            })
            .collect();
        assert_eq!(
            kinds,
            ["sub", "sub", "unsub"],
            "unsubscribed only when the last member left"
        );
        assert_eq!(hub.room_count(), 0);
    }
}
