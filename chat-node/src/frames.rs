//! Builders of every server frame (JSON text and binary room frames), pure and unit-tested in
//! `protocol_tests.rs`. Room message bodies are stored once in Redis and turned into frames by
//! concatenation, so a room message is serialised once per node, not once per recipient.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::offset::Offset;
use crate::protocol::FrameError;

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("server frames always serialise")
}

/// `{"type":"welcome",...}`
pub fn welcome(user: &str, node: &str, anonymous: bool) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        user: &'a str,
        node: &'a str,
        anonymous: bool,
    }
    to_json(&F {
        r#type: "welcome",
        user,
        node,
        anonymous,
    })
}

/// `{"type":"joined",...}`
pub fn joined(room: &str, members: &[String], replay: usize, truncated: bool) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        room: &'a str,
        members: &'a [String],
        replay: usize,
        truncated: bool,
    }
    to_json(&F {
        r#type: "joined",
        room,
        members,
        replay,
        truncated,
    })
}

/// `{"type":"left","room":...}`
pub fn left(room: &str) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        room: &'a str,
    }
    to_json(&F {
        r#type: "left",
        room,
    })
}

/// `{"type":"ack",...}`; `room`/`offset` only for room messages.
pub fn ack(id: Option<&str>, room: Option<&str>, offset: Option<Offset>) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<String>,
    }
    to_json(&F {
        r#type: "ack",
        id,
        room,
        offset: offset.map(|o| o.to_string()),
    })
}

/// `{"type":"presence","room":...,"members":[...]}`
pub fn presence(room: &str, members: &[String]) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        room: &'a str,
        members: &'a [String],
    }
    to_json(&F {
        r#type: "presence",
        room,
        members,
    })
}

/// `{"type":"member_joined"|"member_left","room":...,"user":...}`
pub fn member_event(joined: bool, room: &str, user: &str) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        room: &'a str,
        user: &'a str,
    }
    let kind = if joined {
        "member_joined"
    } else {
        "member_left"
    };
    to_json(&F {
        r#type: kind,
        room,
        user,
    })
}

/// `{"type":"pong"}`
pub fn pong() -> &'static str {
    r#"{"type":"pong"}"#
}

/// `{"type":"error",...}`
pub fn error(err: &FrameError) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
    }
    to_json(&F {
        r#type: "error",
        code: err.code.as_str(),
        message: &err.message,
        id: err.id.as_deref(),
        room: err.room.as_deref(),
    })
}

/// `{"type":"direct",...}`, built once by the sending node and forwarded verbatim.
pub fn direct(from: &str, to: &str, id: Option<&str>, text: &str, ts: u64) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        r#type: &'static str,
        from: &'a str,
        to: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        text: &'a str,
        ts: u64,
    }
    to_json(&F {
        r#type: "direct",
        from,
        to,
        id,
        text,
        ts,
    })
}

/// The stored body of a text room message: the tail of its `message` event after the offset,
/// `"from":..,"id":..,"text":..,"ts":..}`. Stored in the stream and published as is, so every
/// node builds the event by concatenation instead of re-serialising.
pub fn text_body(from: &str, id: Option<&str>, text: &str, ts: u64) -> String {
    #[derive(Serialize)]
    struct F<'a> {
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        text: &'a str,
        ts: u64,
    }
    let mut json = to_json(&F { from, id, text, ts });
    json.remove(0);
    json
}

/// The text `message` event for a stored body (see [`text_body`]).
pub fn text_message(room: &str, offset: Offset, body: &str) -> String {
    format!(r#"{{"type":"message","room":"{room}","offset":"{offset}",{body}"#)
}

/// The stored body of a binary room message: `u8 from_len | from | payload`.
pub fn binary_body(from: &str, payload: &[u8]) -> Bytes {
    let from = truncate_to_u8_len(from);
    let mut buf = BytesMut::with_capacity(1 + from.len() + payload.len());
    buf.put_u8(from.len() as u8);
    buf.put_slice(from.as_bytes());
    buf.put_slice(payload);
    buf.freeze()
}

/// The server binary frame for a stored body:
/// `u8 room_len | room | u8 offset_len | offset | u8 from_len | from | payload`.
pub fn binary_message(room: &str, offset: Offset, body: &[u8]) -> Bytes {
    let offset = offset.to_string();
    let mut buf = BytesMut::with_capacity(2 + room.len() + offset.len() + body.len());
    buf.put_u8(room.len() as u8);
    buf.put_slice(room.as_bytes());
    buf.put_u8(offset.len() as u8);
    buf.put_slice(offset.as_bytes());
    buf.put_slice(body);
    buf.freeze()
}

fn truncate_to_u8_len(s: &str) -> &str {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
