//! The Redis layout of one cluster and the encoding of what travels through it. Every name starts
//! with `chatcluster:{namespace}/{name}` so clusters sharing a Redis never see each other.
//!
//! Room channel payloads (published by the Lua scripts in `store.rs`):
//! `T<offset>\n<text body>`, `B<offset>\n<binary body>`, `J<user>` (member joined),
//! `L<user>` (member left). User channels carry finished `direct` events.

use bytes::Bytes;

use crate::offset::Offset;

/// Key and channel names of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// What a channel name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel<'a> {
    /// A room channel.
    Room(&'a str),
    /// A user's direct-message channel.
    User(&'a str),
}

impl Keys {
    /// Keys under `prefix` (see [`crate::Config::redis_prefix`]).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The common prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pub/sub channel of a room.
    pub fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    /// Capped stream holding a room's history.
    pub fn history(&self, room: &str) -> String {
        format!("{}:history:{room}", self.prefix)
    }

    /// Pub/sub channel of a user's direct messages.
    pub fn user_channel(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    /// Hash `user -> connections` of a room, over all nodes.
    pub fn presence(&self, room: &str) -> String {
        format!("{}:presence:{room}", self.prefix)
    }

    /// Sorted set `node -> last heartbeat (ms)`.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Classifies a channel name of this cluster.
    pub fn parse_channel<'a>(&self, channel: &'a str) -> Option<Channel<'a>> {
        let rest = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(':')?;
        if let Some(room) = rest.strip_prefix("room:") {
            Some(Channel::Room(room))
        } else {
            rest.strip_prefix("user:").map(Channel::User)
        }
    }
}

/// Kind of a stored room message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JSON text message.
    Text,
    /// Binary message.
    Binary,
}

impl Kind {
    /// The tag stored in the stream (`k` field) and in front of published messages.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Text => "T",
            Kind::Binary => "B",
        }
    }

    /// The kind for a tag.
    pub fn from_tag(tag: &[u8]) -> Option<Kind> {
        match tag {
            b"T" => Some(Kind::Text),
            b"B" => Some(Kind::Binary),
            _ => None,
        }
    }
}

/// A decoded room-channel payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A stored room message.
    Message {
        kind: Kind,
        offset: Offset,
        body: Bytes,
    },
    /// A user's first connection joined the room.
    Joined(String),
    /// A user's last connection left the room.
    Left(String),
}

/// Decodes a room-channel payload; `None` for anything malformed.
pub fn decode_room_event(payload: Bytes) -> Option<RoomEvent> {
    let (&tag, rest) = payload.split_first()?;
    match tag {
        b'T' | b'B' => {
            let nl = rest.iter().position(|&b| b == b'\n')?;
            let offset = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
            let kind = if tag == b'T' {
                Kind::Text
            } else {
                Kind::Binary
            };
            if kind == Kind::Text && std::str::from_utf8(&rest[nl + 1..]).is_err() {
                return None;
            }
            Some(RoomEvent::Message {
                kind,
                offset,
                body: payload.slice(2 + nl..),
            })
        }
        b'J' => Some(RoomEvent::Joined(String::from_utf8(rest.to_vec()).ok()?)),
        b'L' => Some(RoomEvent::Left(String::from_utf8(rest.to_vec()).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_and_other_clusters_are_foreign() {
        let keys = Keys::new("chatcluster:ns/a");
        assert_eq!(keys.room_channel("lobby"), "chatcluster:ns/a:room:lobby");
        assert_eq!(
            keys.parse_channel("chatcluster:ns/a:room:lobby"),
            Some(Channel::Room("lobby"))
        );
        assert_eq!(
            keys.parse_channel("chatcluster:ns/a:user:bob"),
            Some(Channel::User("bob"))
        );
        assert_eq!(keys.parse_channel("chatcluster:ns/ab:room:lobby"), None);
        assert_eq!(keys.parse_channel("chatcluster:ns/a:other:x"), None);
    }

    #[test]
    fn decodes_room_events() {
        let msg = decode_room_event(Bytes::from_static(b"T17-3\n\"from\":\"a\"}")).unwrap();
        assert_eq!(
            msg,
            RoomEvent::Message {
                kind: Kind::Text,
                offset: Offset { ms: 17, seq: 3 },
                body: Bytes::from_static(b"\"from\":\"a\"}")
            }
        );
        let bin = decode_room_event(Bytes::from_static(b"B1-0\n\x01a\xff")).unwrap();
        assert!(matches!(
            bin,
            RoomEvent::Message {
                kind: Kind::Binary,
                ..
            }
        ));
        assert_eq!(
            decode_room_event(Bytes::from_static(b"Jcarol")),
            Some(RoomEvent::Joined("carol".into()))
        );
        assert_eq!(
            decode_room_event(Bytes::from_static(b"Lcarol")),
            Some(RoomEvent::Left("carol".into()))
        );
        for bad in [&b""[..], b"X1", b"T1-0", b"Tzz\nbody", b"T1-0\n\xff"] {
            assert_eq!(
                decode_room_event(Bytes::copy_from_slice(bad)),
                None,
                "{bad:?}"
            );
        }
    }
}
