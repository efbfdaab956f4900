//! The client wire protocol as pure functions: parsing client frames (text JSON and binary room
//! frames) into [`ClientFrame`], names and error codes; the server frames are built in `frames`
//! and re-exported here. No I/O lives here, so every message type has a unit test;
//! `docs/protocol.md` is the reference for what these produce.

use bytes::Bytes;
use serde::Deserialize;

use crate::offset::Offset;

/// Longest client message id accepted (characters).
pub const MAX_CLIENT_ID_CHARS: usize = 128;

/// A parsed client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// Join a room, optionally resuming after `since`.
    Join { room: String, since: Option<Offset> },
    /// Leave a room.
    Leave { room: String },
    /// Send a text message to a joined room.
    Send {
        room: String,
        id: Option<String>,
        text: String,
    },
    /// Send a text message to every connection of a user.
    Direct {
        to: String,
        id: Option<String>,
        text: String,
    },
    /// Ask who is in a room.
    Presence { room: String },
    /// Application-level ping.
    Ping,
    /// A binary message to a joined room.
    Binary { room: String, payload: Bytes },
}

/// Stable error codes sent in `error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not JSON (or not a JSON object).
    BadJson,
    /// The `type` is missing or not one the server knows.
    UnknownType,
    /// A field is missing or invalid.
    BadRequest,
    /// Sending to a room the connection has not joined.
    NotJoined,
    /// Too many frames; slow down.
    RateLimited,
    /// Redis is unreachable: nothing was sent; retry later.
    Unavailable,
    /// The request reached Redis (or may have) but no answer came back in time: the message may
    /// or may not have been delivered. Resending blindly could deliver it twice.
    Unconfirmed,
    /// The connection is already in the maximum number of rooms.
    TooManyRooms,
}

impl ErrorCode {
    /// The code as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unconfirmed => "unconfirmed",
            ErrorCode::TooManyRooms => "too_many_rooms",
        }
    }
}

/// Why a client frame was refused; becomes an `error` event.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human text saying what was wrong.
    pub message: String,
    /// The client message id, when the frame had one.
    pub id: Option<String>,
    /// The room, when the frame named one.
    pub room: Option<String>,
}

impl FrameError {
    /// An error without id or room.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            id: None,
            room: None,
        }
    }
}

/// True for a valid room name: 1-128 chars of `[A-Za-z0-9_.:-]`.
pub fn valid_room(room: &str) -> bool {
    (1..=128).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// True for a valid anonymous name: 1-64 chars of `[A-Za-z0-9_.-]`.
pub fn valid_anonymous_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// True for a valid user id (JWT `sub` or anonymous name): 1-128 bytes, no control characters,
/// so it fits the binary framing and Redis field names.
pub fn valid_user(user: &str) -> bool {
    (1..=128).contains(&user.len()) && !user.chars().any(char::is_control)
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    room: Option<String>,
    since: Option<String>,
    id: Option<String>,
    text: Option<String>,
    to: Option<String>,
}

/// Parses a client text frame.
pub fn parse_text(frame: &str) -> Result<ClientFrame, FrameError> {
    let raw: RawFrame = match serde_json::from_str(frame) {
        Ok(raw) => raw,
        Err(err) => {
            return Err(
                if serde_json::from_str::<serde::de::IgnoredAny>(frame).is_ok() {
                    FrameError::new(ErrorCode::BadRequest, format!("invalid field: {err}"))
                } else {
                    FrameError::new(
                        ErrorCode::BadJson,
                        format!("frame is not a JSON object: {err}"),
                    )
                },
            );
        }
    };
    let fail = |code, message: &str| FrameError {
        code,
        message: message.to_owned(),
        id: raw.id.clone(),
        room: raw.room.clone(),
    };
    let room = || match &raw.room {
        Some(room) if valid_room(room) => Ok(room.clone()),
        Some(_) => Err(fail(
            ErrorCode::BadRequest,
            "room must be 1-128 chars of [A-Za-z0-9_.:-]",
        )),
        None => Err(fail(ErrorCode::BadRequest, "field `room` is required")),
    };
    let id = || match &raw.id {
        Some(id) if id.chars().count() > MAX_CLIENT_ID_CHARS => Err(fail(
            ErrorCode::BadRequest,
            "`id` is longer than 128 characters",
        )),
        other => Ok(other.clone()),
    };
    let text = || {
        raw.text
            .clone()
            .ok_or_else(|| fail(ErrorCode::BadRequest, "field `text` is required"))
    };
    match raw.kind.as_deref() {
        Some("join") => {
            let since = match &raw.since {
                None => None,
                Some(s) => Some(s.parse::<Offset>().map_err(|()| {
                    fail(
                        ErrorCode::BadRequest,
                        "`since` must be an offset like 1732550000000-0",
                    )
                })?),
            };
            Ok(ClientFrame::Join {
                room: room()?,
                since,
            })
        }
        Some("leave") => Ok(ClientFrame::Leave { room: room()? }),
        Some("send") => Ok(ClientFrame::Send {
            room: room()?,
            id: id()?,
            text: text()?,
        }),
        Some("direct") => {
            let to = match &raw.to {
                Some(to) if valid_user(to) => to.clone(),
                _ => return Err(fail(ErrorCode::BadRequest, "field `to` must name a user")),
            };
            Ok(ClientFrame::Direct {
                to,
                id: id()?,
                text: text()?,
            })
        }
        Some("presence") => Ok(ClientFrame::Presence { room: room()? }),
        Some("ping") => Ok(ClientFrame::Ping),
        Some(other) => Err(fail(
            ErrorCode::UnknownType,
            &format!("unknown type {other:?}"),
        )),
        None => Err(fail(ErrorCode::UnknownType, "field `type` is required")),
    }
}

/// Parses a client binary frame: `u8 room_len | room | payload`.
pub fn parse_binary(frame: &Bytes) -> Result<ClientFrame, FrameError> {
    let bad = |m: &str| FrameError::new(ErrorCode::BadRequest, m);
    let (&len, rest) = frame
        .split_first()
        .ok_or_else(|| bad("empty binary frame"))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(bad("binary frame shorter than its room length"));
    }
    let room = std::str::from_utf8(&rest[..len])
        .ok()
        .filter(|r| valid_room(r));
    let Some(room) = room else {
        return Err(bad(
            "binary frame room must be 1-128 chars of [A-Za-z0-9_.:-]",
        ));
    };
    Ok(ClientFrame::Binary {
        room: room.to_owned(),
        payload: frame.slice(1 + len..),
    })
}

pub use crate::frames::*;

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
