//! Protocol adapters: how the load generator speaks to each system under test, so both get the
//! same load from the same code. An adapter is pure: it builds the text frames a client sends
//! and classifies the text frames it receives; the socket handling lives in [`crate::load`].
//!
//! - [`ChatProtocol`]: chatcluster's JSON protocol (`docs/protocol.md`) on `/ws`.
//! - [`SocketIoProtocol`]: Socket.IO v4 over Engine.IO v4 on a plain WebSocket
//!   (`/socket.io/?EIO=4&transport=websocket`): open packet `0{...}`, namespace connect `40`,
//!   events `42[...]`, Engine.IO ping `2` answered with pong `3`. The peer server
//!   (`bench/socketio/server.js`) joins a room on a `join` event, answers `joined`, and relays a
//!   `send` event to the room with `io.to(room).emit("message", ...)`.

use serde_json::{Value, json};

/// What a received text frame means to the load generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The session is ready for `join` (chatcluster `welcome`, Socket.IO namespace connect).
    Ready,
    /// The server confirmed membership of a room.
    Joined(String),
    /// A room message with its text (the load generator's [`Stamp`]).
    Message { room: String, text: String },
    /// The client must answer with this frame (Engine.IO open → connect, ping → pong).
    Reply(String),
    /// The server reported an error.
    Error(String),
    /// Anything else (acks, presence events, pongs).
    Other,
}

/// One system's wire protocol, as seen by a load-generating client.
pub trait Protocol: Send + Sync {
    /// Short name used in tables (`chatcluster`, `socketio`).
    fn name(&self) -> &'static str;
    /// Path and query of the WebSocket upgrade for a client called `user`.
    fn path(&self, user: &str) -> String;
    /// The frame that joins `room`.
    fn join(&self, room: &str) -> String;
    /// The frame that sends `text` to `room`; `id` is a client message id.
    fn send(&self, room: &str, id: u64, text: &str) -> String;
    /// Classifies a received text frame.
    fn classify(&self, frame: &str) -> Inbound;
}

/// chatcluster's JSON protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatProtocol;

impl Protocol for ChatProtocol {
    fn name(&self) -> &'static str {
        "chatcluster"
    }

    fn path(&self, user: &str) -> String {
        format!("/ws?name={user}")
    }

    fn join(&self, room: &str) -> String {
        json!({"type": "join", "room": room}).to_string()
    }

    fn send(&self, room: &str, id: u64, text: &str) -> String {
        json!({"type": "send", "room": room, "id": format!("b{id}"), "text": text}).to_string()
    }

    fn classify(&self, frame: &str) -> Inbound {
        let Ok(value) = serde_json::from_str::<Value>(frame) else {
            return Inbound::Error(format!("not JSON: {frame}"));
        };
        let text_of = |key: &str| value[key].as_str().unwrap_or_default().to_string();
        match value["type"].as_str() {
            Some("welcome") => Inbound::Ready,
            Some("joined") => Inbound::Joined(text_of("room")),
            Some("message") => Inbound::Message {
                room: text_of("room"),
                text: text_of("text"),
            },
            Some("error") => Inbound::Error(frame.to_string()),
            _ => Inbound::Other,
        }
    }
}

/// Socket.IO v4 (Engine.IO v4 framing, WebSocket transport only, default namespace).
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketIoProtocol;

impl Protocol for SocketIoProtocol {
    fn name(&self) -> &'static str {
        "socketio"
    }

    fn path(&self, user: &str) -> String {
        format!("/socket.io/?EIO=4&transport=websocket&name={user}")
    }

    fn join(&self, room: &str) -> String {
        format!("42{}", json!(["join", room]))
    }

    fn send(&self, room: &str, id: u64, text: &str) -> String {
        format!(
            "42{}",
            json!(["send", {"room": room, "id": format!("b{id}"), "text": text}])
        )
    }

    fn classify(&self, frame: &str) -> Inbound {
        // Engine.IO packet type is the first character; Socket.IO's packet type follows it.
        match frame.as_bytes().first() {
            Some(b'0') => return Inbound::Reply("40".into()),
            Some(b'2') => return Inbound::Reply("3".into()),
            Some(b'1') => return Inbound::Error("Engine.IO close packet".into()),
            Some(b'4') => {}
            _ => return Inbound::Other,
        }
        let packet = &frame[1..];
        if packet.starts_with('0') {
            return Inbound::Ready;
        }
        if packet.starts_with('4') {
            return Inbound::Error(format!("Socket.IO connect error: {packet}"));
        }
        let Some(body) = packet.strip_prefix('2') else {
            return Inbound::Other;
        };
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(body) else {
            return Inbound::Error(format!("bad Socket.IO event: {frame}"));
        };
        match (items.first().and_then(Value::as_str), items.get(1)) {
            (Some("joined"), Some(room)) => Inbound::Joined(room.as_str().unwrap_or("").into()),
            (Some("message"), Some(msg)) => Inbound::Message {
                room: msg["room"].as_str().unwrap_or_default().into(),
                text: msg["text"].as_str().unwrap_or_default().into(),
            },
            (Some("failure"), _) => Inbound::Error(frame.to_string()),
            _ => Inbound::Other,
        }
    }
}

/// The systems the benchmark can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// chatcluster's chat-node.
    Chatcluster,
    /// Socket.IO 4 with the Redis adapter (`bench/socketio/server.js`).
    Socketio,
}

impl System {
    /// The adapter for this system.
    pub fn protocol(self) -> &'static dyn Protocol {
        match self {
            Self::Chatcluster => &ChatProtocol,
            Self::Socketio => &SocketIoProtocol,
        }
    }

    /// Name used in tables and flags.
    pub fn name(self) -> &'static str {
        self.protocol().name()
    }
}

/// What each benchmark message carries: who sent it, its sequence number from that sender, and
/// the wall-clock send time (µs since the Unix epoch; every process runs on the same machine,
/// so receivers compare it with their own clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Global index of the sending connection.
    pub sender: u32,
    /// Sequence number of this message from this sender (0, 1, 2, ...).
    pub seq: u32,
    /// Send time, µs since the Unix epoch.
    pub sent_us: u64,
}

impl Stamp {
    /// The message text: `s<sender>.<seq>.<sent_us>` padded with `pad` filler bytes so that
    /// message size is a benchmark parameter.
    pub fn encode(&self, pad: usize) -> String {
        let mut s = format!("s{}.{}.{}", self.sender, self.seq, self.sent_us);
        if pad > 0 {
            s.push('.');
            s.extend(std::iter::repeat_n('x', pad));
        }
        s
    }

    /// Parses [`Stamp::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix('s')?.split('.');
        Some(Self {
            sender: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            sent_us: parts.next()?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_with_and_without_padding() {
        let stamp = Stamp {
            sender: 4321,
            seq: 7,
            sent_us: 1_764_000_000_123_456,
        };
        assert_eq!(Stamp::decode(&stamp.encode(0)), Some(stamp));
        let padded = stamp.encode(100);
        assert_eq!(padded.len(), stamp.encode(0).len() + 101);
        assert_eq!(Stamp::decode(&padded), Some(stamp));
        assert_eq!(Stamp::decode("hello"), None);
        assert_eq!(Stamp::decode("s1.x.3"), None);
    }

    #[test]
    fn chat_frames_follow_the_protocol() {
        let p = ChatProtocol;
        let join: Value = serde_json::from_str(&p.join("r-1")).unwrap();
        assert_eq!(join, json!({"type": "join", "room": "r-1"}));
        let send: Value = serde_json::from_str(&p.send("r-1", 9, "s1.2.3")).unwrap();
        assert_eq!(
            send,
            json!({"type": "send", "room": "r-1", "id": "b9", "text": "s1.2.3"})
        );
        assert_eq!(p.path("c-5"), "/ws?name=c-5");
        assert_eq!(
            p.classify(r#"{"type":"welcome","user":"a","node":"n","anonymous":true}"#),
            Inbound::Ready
        );
        assert_eq!(
            p.classify(r#"{"type":"joined","room":"r-1","members":[],"replay":0}"#),
            Inbound::Joined("r-1".into())
        );
        assert_eq!(
            p.classify(r#"{"type":"message","room":"r-1","offset":"1-0","from":"a","id":"b1","text":"t","ts":1}"#),
            Inbound::Message {
                room: "r-1".into(),
                text: "t".into()
            }
        );
        assert_eq!(p.classify(r#"{"type":"ack","id":"b1"}"#), Inbound::Other);
        assert!(matches!(
            p.classify(r#"{"type":"error","code":"rate_limited"}"#),
            Inbound::Error(_)
        ));
        assert!(matches!(p.classify("{"), Inbound::Error(_)));
    }

    #[test]
    fn socketio_handshake_ping_and_events() {
        let p = SocketIoProtocol;
        assert_eq!(
            p.path("c-1"),
            "/socket.io/?EIO=4&transport=websocket&name=c-1"
        );
        assert_eq!(
            p.classify(r#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#),
            Inbound::Reply("40".into())
        );
        assert_eq!(p.classify(r#"40{"sid":"y"}"#), Inbound::Ready);
        assert_eq!(p.classify("2"), Inbound::Reply("3".into()));
        assert_eq!(p.join("r-1"), r#"42["join","r-1"]"#);
        assert_eq!(
            p.classify(r#"42["joined","r-1"]"#),
            Inbound::Joined("r-1".into())
        );
        let send = p.send("r-1", 3, "s1.2.3");
        let body: Value = serde_json::from_str(send.strip_prefix("42").unwrap()).unwrap();
        assert_eq!(
            body,
            json!(["send", {"room": "r-1", "id": "b3", "text": "s1.2.3"}])
        );
        assert_eq!(
            p.classify(r#"42["message",{"room":"r-1","id":"b3","text":"s1.2.3"}]"#),
            Inbound::Message {
                room: "r-1".into(),
                text: "s1.2.3".into()
            }
        );
        assert!(matches!(
            p.classify(r#"44{"message":"no"}"#),
            Inbound::Error(_)
        ));
        assert!(matches!(p.classify("42nope"), Inbound::Error(_)));
        assert_eq!(p.classify("3"), Inbound::Other);
    }
}
