//! One test per client message type and per server frame builder.

use super::*;
use serde_json::{Value, json};

fn v(s: &str) -> Value {
    serde_json::from_str(s).expect("server frames are JSON")
}

#[test]
fn join_with_and_without_since() {
    assert_eq!(
        parse_text(r#"{"type":"join","room":"lobby"}"#),
        Ok(ClientFrame::Join {
            room: "lobby".into(),
            since: None
        })
    );
    assert_eq!(
        parse_text(r#"{"type":"join","room":"a:b.c-d_e","since":"17-2"}"#),
        Ok(ClientFrame::Join {
            room: "a:b.c-d_e".into(),
            since: Some(Offset { ms: 17, seq: 2 })
        })
    );
    let err = parse_text(r#"{"type":"join","room":"lobby","since":"yesterday"}"#).unwrap_err();
    assert_eq!(
        (err.code, err.room.as_deref()),
        (ErrorCode::BadRequest, Some("lobby"))
    );
    for bad in [
        r#"{"type":"join"}"#,
        r#"{"type":"join","room":""}"#,
        r#"{"type":"join","room":"a b"}"#,
    ] {
        assert_eq!(
            parse_text(bad).unwrap_err().code,
            ErrorCode::BadRequest,
            "{bad}"
        );
    }
    let long = format!(r#"{{"type":"join","room":"{}"}}"#, "r".repeat(129));
    assert_eq!(parse_text(&long).unwrap_err().code, ErrorCode::BadRequest);
}

#[test]
fn leave_request() {
    assert_eq!(
        parse_text(r#"{"type":"leave","room":"lobby"}"#),
        Ok(ClientFrame::Leave {
            room: "lobby".into()
        })
    );
}

#[test]
fn send_keeps_id_and_text() {
    assert_eq!(
        parse_text(r#"{"type":"send","room":"lobby","id":"c-1","text":"hé \"x\""}"#),
        Ok(ClientFrame::Send {
            room: "lobby".into(),
            id: Some("c-1".into()),
            text: "hé \"x\"".into()
        })
    );
    let err = parse_text(r#"{"type":"send","room":"lobby","id":"c-2"}"#).unwrap_err();
    assert_eq!(
        (err.code, err.id.as_deref()),
        (ErrorCode::BadRequest, Some("c-2"))
    );
    let long_id = format!(
        r#"{{"type":"send","room":"r","id":"{}","text":"x"}}"#,
        "i".repeat(129)
    );
    assert_eq!(
        parse_text(&long_id).unwrap_err().code,
        ErrorCode::BadRequest
    );
}

#[test]
fn direct_request() {
    assert_eq!(
        parse_text(r#"{"type":"direct","to":"bob","id":"c-2","text":"hi"}"#),
        Ok(ClientFrame::Direct {
            to: "bob".into(),
            id: Some("c-2".into()),
            text: "hi".into()
        })
    );
    assert_eq!(
        parse_text(r#"{"type":"direct","text":"hi"}"#)
            .unwrap_err()
            .code,
        ErrorCode::BadRequest
    );
}

#[test]
fn presence_and_ping() {
    assert_eq!(
        parse_text(r#"{"type":"presence","room":"lobby"}"#),
        Ok(ClientFrame::Presence {
            room: "lobby".into()
        })
    );
    assert_eq!(parse_text(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
    assert_eq!(v(pong()), json!({"type": "pong"}));
}

#[test]
fn malformed_and_unknown_frames() {
    assert_eq!(parse_text("{nope").unwrap_err().code, ErrorCode::BadJson);
    assert_eq!(parse_text("[1,2]").unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(
        parse_text(r#"{"type":7}"#).unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        parse_text(r#"{"room":"x"}"#).unwrap_err().code,
        ErrorCode::UnknownType
    );
    let err = parse_text(r#"{"type":"dance","id":"c-9"}"#).unwrap_err();
    assert_eq!(
        (err.code, err.id.as_deref()),
        (ErrorCode::UnknownType, Some("c-9"))
    );
}

#[test]
fn binary_room_frames_round_trip() {
    let frame = Bytes::from_static(b"\x05lobby\x00\x01\xff");
    assert_eq!(
        parse_binary(&frame),
        Ok(ClientFrame::Binary {
            room: "lobby".into(),
            payload: Bytes::from_static(b"\x00\x01\xff")
        })
    );
    for bad in [&b""[..], b"\x00abc", b"\x09lobby", b"\x02a b"] {
        assert!(
            parse_binary(&Bytes::copy_from_slice(bad)).is_err(),
            "{bad:?}"
        );
    }
    let out = binary_message(
        "lobby",
        Offset { ms: 5, seq: 1 },
        &binary_body("alice", b"\x00\x01"),
    );
    assert_eq!(&out[..], b"\x05lobby\x035-1\x05alice\x00\x01");
}

#[test]
fn server_frames() {
    assert_eq!(
        v(&welcome("alice", "chat-0", true)),
        json!({"type":"welcome","user":"alice","node":"chat-0","anonymous":true})
    );
    assert_eq!(
        v(&joined("lobby", &["alice".into(), "bob".into()], 2, true)),
        json!({"type":"joined","room":"lobby","members":["alice","bob"],"replay":2,"truncated":true})
    );
    assert_eq!(v(&left("lobby")), json!({"type":"left","room":"lobby"}));
    assert_eq!(
        v(&ack(
            Some("c-1"),
            Some("lobby"),
            Some(Offset { ms: 9, seq: 0 })
        )),
        json!({"type":"ack","id":"c-1","room":"lobby","offset":"9-0"})
    );
    assert_eq!(
        v(&ack(Some("c-2"), None, None)),
        json!({"type":"ack","id":"c-2"})
    );
    assert_eq!(
        v(&presence("lobby", &["bob".into()])),
        json!({"type":"presence","room":"lobby","members":["bob"]})
    );
    assert_eq!(
        v(&member_event(true, "lobby", "carol")),
        json!({"type":"member_joined","room":"lobby","user":"carol"})
    );
    assert_eq!(
        v(&member_event(false, "lobby", "carol")),
        json!({"type":"member_left","room":"lobby","user":"carol"})
    );
    let mut e = FrameError::new(ErrorCode::NotJoined, "join first");
    e.room = Some("lobby".into());
    assert_eq!(
        v(&error(&e)),
        json!({"type":"error","code":"not_joined","message":"join first","room":"lobby"})
    );
    assert_eq!(
        v(&direct("alice", "bob", Some("c-2"), "hi", 7)),
        json!({"type":"direct","from":"alice","to":"bob","id":"c-2","text":"hi","ts":7})
    );
}

#[test]
fn text_message_is_built_from_the_stored_body() {
    let body = text_body("alice", Some("c-1"), "say \"hi\"\n", 1732550000000);
    let frame = text_message(
        "lobby",
        Offset {
            ms: 1732550000000,
            seq: 0,
        },
        &body,
    );
    assert_eq!(
        v(&frame),
        json!({"type":"message","room":"lobby","offset":"1732550000000-0","from":"alice","id":"c-1","text":"say \"hi\"\n","ts":1732550000000u64})
    );
}

#[test]
fn error_codes_are_stable() {
    let all = [
        (ErrorCode::BadJson, "bad_json"),
        (ErrorCode::UnknownType, "unknown_type"),
        (ErrorCode::BadRequest, "bad_request"),
        (ErrorCode::NotJoined, "not_joined"),
        (ErrorCode::RateLimited, "rate_limited"),
        (ErrorCode::Unavailable, "unavailable"),
        (ErrorCode::Unconfirmed, "unconfirmed"),
        (ErrorCode::TooManyRooms, "too_many_rooms"),
    ];
    for (code, s) in all {
        assert_eq!(code.as_str(), s);
    }
}

#[test]
fn names() {
    assert!(valid_room("lobby") && valid_room("a:b.c-d_E9"));
    assert!(!valid_room("") && !valid_room("a/b") && !valid_room("é"));
    assert!(valid_anonymous_name("bob.smith-2") && !valid_anonymous_name("bob:x"));
    assert!(valid_user("Jane Doe") && !valid_user("a\nb") && !valid_user(""));
}
