//! Cross-node behaviour: two nodes in this process sharing one real Redis, real WebSocket
//! clients. Order, resume on the other node, truncation, direct messages, presence, cluster
//! isolation and binary messages.

mod common;

use std::collections::HashSet;

use anyhow::Result;
use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_senders_on_two_nodes_reach_everyone_in_one_order() -> Result<()> {
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    const TOTAL: usize = 1000;
    let urls = [
        a.url("name=a1"),
        b.url("name=b1"),
        a.url("name=a2"),
        b.url("name=b2"),
    ];
    let mut clients = Vec::new();
    for url in &urls {
        let mut c = connect(url).await?;
        c.join("lobby", None).await?;
        clients.push(c);
    }
    // Three senders (two on A, one on B) send without waiting; every client (senders included)
    // collects the room's messages.
    let senders = [(0usize, 334usize), (1, 333), (2, 333)];
    let mut receivers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let count = senders
            .iter()
            .find(|(s, _)| *s == i)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let Client { mut tx, rx, .. } = client;
        let sender = tokio::spawn(async move {
            for n in 0..count {
                let frame = json!({"type": "send", "room": "lobby", "id": format!("s{i}-{n}"), "text": format!("{n}")});
                tx.send(Message::Text(frame.to_string().into())).await?;
            }
            anyhow::Ok(tx)
        });
        receivers.push(tokio::spawn(async move {
            let mut c = Client {
                tx: sender.await??,
                rx,
                welcome: Value::Null,
            };
            let mut seen = Vec::with_capacity(TOTAL);
            while seen.len() < TOTAL {
                let v = c.recv().await?;
                if v["type"] == "message" {
                    seen.push((
                        v["offset"].as_str().unwrap().to_owned(),
                        v["id"].as_str().unwrap().to_owned(),
                    ));
                } else if v["type"] == "error" {
                    anyhow::bail!("error during load: {v}");
                }
            }
            anyhow::Ok(seen)
        }));
    }
    let mut sequences = Vec::new();
    for r in receivers {
        sequences.push(r.await??);
    }
    let first = &sequences[0];
    assert_eq!(
        first.iter().map(|(_, id)| id).collect::<HashSet<_>>().len(),
        TOTAL,
        "all distinct"
    );
    for (i, seq) in sequences.iter().enumerate() {
        assert_eq!(seq, first, "client {i} saw another order");
    }
    let offsets: Vec<chat_node::Offset> = first.iter().map(|(o, _)| o.parse().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    for s in 0..3 {
        let mine: Vec<usize> = first
            .iter()
            .filter_map(|(_, id)| {
                id.strip_prefix(&format!("s{s}-"))
                    .map(|n| n.parse().unwrap())
            })
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "sender {s}'s own order kept"
        );
    }
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_to_the_other_node_resumes_without_gap_or_duplicate() -> Result<()> {
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut observer = connect(&b.url("name=observer")).await?;
    observer.join("lobby", None).await?;
    let mut reader = connect(&a.url("name=reader")).await?;
    reader.join("lobby", None).await?;
    let mut writer = connect(&a.url("name=writer")).await?;
    writer.join("lobby", None).await?;
    for n in 0..10 {
        writer.say("lobby", &format!("m{n}"), "x").await?;
    }
    let mut last = String::new();
    for n in 0..10 {
        let v = reader.recv_type("message").await?;
        assert_eq!(v["id"], format!("m{n}"));
        last = v["offset"].as_str().unwrap().to_owned();
    }
    drop(reader);
    for n in 10..20 {
        writer.say("lobby", &format!("m{n}"), "x").await?;
    }
    // Keep sending while the reader resumes on node B, so replay and live traffic overlap.
    let Client { tx, rx, .. } = writer;
    let mut writer = Client {
        tx,
        rx,
        welcome: Value::Null,
    };
    let background = tokio::spawn(async move {
        for n in 20..120 {
            writer.say("lobby", &format!("m{n}"), "x").await?;
        }
        anyhow::Ok(())
    });
    let mut resumed = connect(&b.url("name=reader")).await?;
    let joined = resumed.join("lobby", Some(&last)).await?;
    assert_eq!(joined["truncated"], false);
    let replay = joined["replay"].as_u64().unwrap();
    assert!(
        replay >= 10,
        "at least the 10 missed messages are replayed, got {replay}"
    );
    let mut ids = Vec::new();
    while ids.len() < 110 {
        let v = resumed.recv_type("message").await?;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    background.await??;
    let expected: Vec<String> = (10..120).map(|n| format!("m{n}")).collect();
    assert_eq!(
        ids, expected,
        "exactly the missed messages, then live ones, once each"
    );
    // The always-connected observer on B saw the same 120 in the same order.
    let mut all = Vec::new();
    while all.len() < 120 {
        all.push(
            observer.recv_type("message").await?["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(all[10..], expected[..]);
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_older_than_the_retained_history_is_flagged_truncated() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.history_length = 10;
    let a = TestNode::start(cfg).await?;
    let mut writer = connect(&a.url("name=w")).await?;
    writer.join("old", None).await?;
    let mut offsets = Vec::new();
    for n in 0..300 {
        offsets.push(writer.say("old", &format!("m{n}"), "x").await?);
    }
    let mut late = connect(&a.url("name=late")).await?;
    let joined = late.join("old", Some(&offsets[0])).await?;
    assert_eq!(joined["truncated"], true, "{joined}");
    let replay = joined["replay"].as_u64().unwrap() as usize;
    assert!(
        (10..299).contains(&replay),
        "the retained tail is replayed, got {replay}"
    );
    let mut got = Vec::new();
    for _ in 0..replay {
        got.push(
            late.recv_type("message").await?["offset"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        got,
        offsets[300 - replay..],
        "the newest retained messages, oldest first"
    );
    let mut recent = connect(&a.url("name=recent")).await?;
    let joined = recent.join("old", Some(&offsets[295])).await?;
    assert_eq!(
        (joined["truncated"].clone(), joined["replay"].clone()),
        (json!(false), json!(4))
    );
    a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_reach_every_connection_of_the_user_on_every_node() -> Result<()> {
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut bobs = vec![
        connect(&a.url("name=bob")).await?,
        connect(&a.url("name=bob")).await?,
        connect(&b.url("name=bob")).await?,
    ];
    let mut alice = connect(&b.url("name=alice")).await?;
    alice
        .send(json!({"type": "direct", "to": "bob", "id": "d-1", "text": "psst"}))
        .await?;
    assert_eq!(alice.recv().await?, json!({"type": "ack", "id": "d-1"}));
    for bob in &mut bobs {
        let v = bob.recv().await?;
        assert_eq!(
            (&v["type"], &v["from"], &v["to"], &v["id"], &v["text"]),
            (
                &json!("direct"),
                &json!("alice"),
                &json!("bob"),
                &json!("d-1"),
                &json!("psst")
            )
        );
        assert!(v["ts"].as_u64().unwrap() > 0);
    }
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_users_across_nodes() -> Result<()> {
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut alice = connect(&a.url("name=alice")).await?;
    assert_eq!(
        alice.join("lobby", None).await?["members"],
        json!(["alice"])
    );
    let mut bob1 = connect(&b.url("name=bob")).await?;
    assert_eq!(
        bob1.join("lobby", None).await?["members"],
        json!(["alice", "bob"])
    );
    let ev = alice.recv().await?;
    assert_eq!(
        ev,
        json!({"type": "member_joined", "room": "lobby", "user": "bob"})
    );
    let mut bob2 = connect(&a.url("name=bob")).await?;
    bob2.join("lobby", None).await?;
    alice
        .send(json!({"type": "presence", "room": "lobby"}))
        .await?;
    assert_eq!(
        alice.recv().await?,
        json!({"type": "presence", "room": "lobby", "members": ["alice", "bob"]})
    );
    // bob leaves on one connection: still present through the other, so no member_left.
    bob1.send(json!({"type": "leave", "room": "lobby"})).await?;
    assert_eq!(
        bob1.recv_skip_presence().await?,
        json!({"type": "left", "room": "lobby"})
    );
    bob2.say("lobby", "after-leave", "still here").await?;
    let v = alice.recv().await?;
    assert_eq!(
        (&v["type"], &v["id"]),
        (&json!("message"), &json!("after-leave")),
        "no member_left before: {v}"
    );
    // bob's last connection goes away (on the other node): member_left reaches alice.
    drop(bob2);
    assert_eq!(
        alice.recv().await?,
        json!({"type": "member_left", "room": "lobby", "user": "bob"})
    );
    alice
        .send(json!({"type": "presence", "room": "lobby"}))
        .await?;
    assert_eq!(alice.recv().await?["members"], json!(["alice"]));
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_redis_do_not_see_each_other() -> Result<()> {
    let redis = RedisServer::start()?;
    let a = TestNode::start(config(&redis, "node-a")).await?;
    let mut other = config(&redis, "node-a");
    other.cluster_name = "other".into();
    let b = TestNode::start(other).await?;
    let mut in_a = connect(&a.url("name=alice")).await?;
    in_a.join("lobby", None).await?;
    let mut in_b = connect(&b.url("name=bob")).await?;
    assert_eq!(in_b.join("lobby", None).await?["members"], json!(["bob"]));
    in_a.send(json!({"type": "direct", "to": "bob", "id": "d", "text": "hi"}))
        .await?;
    assert_eq!(in_a.recv().await?, json!({"type": "ack", "id": "d"}));
    in_a.say("lobby", "a-1", "cluster a only").await?;
    in_b.send(json!({"type": "send", "room": "lobby", "id": "b-1", "text": "cluster b only"}))
        .await?;
    // Bob sees his own ack and message and nothing from cluster A (its message came first).
    loop {
        let v = in_b.recv().await?;
        assert_eq!(v["id"], "b-1", "only cluster B traffic reaches bob: {v}");
        if v["type"] == "message" {
            break;
        }
    }
    let a_resume = connect(&a.url("name=carol"))
        .await?
        .join("lobby", Some("0-0"))
        .await?;
    let b_resume = connect(&b.url("name=dave"))
        .await?
        .join("lobby", Some("0-0"))
        .await?;
    assert_eq!(
        (a_resume["replay"].clone(), b_resume["replay"].clone()),
        (json!(1), json!(1)),
        "separate histories"
    );
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_room_messages_round_trip_across_nodes_and_history() -> Result<()> {
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut sender = connect(&a.url("name=alice")).await?;
    sender.join("bin", None).await?;
    let mut receiver = connect(&b.url("name=bob")).await?;
    receiver.join("bin", None).await?;
    let payload = [0u8, 1, 2, 255, 254];
    let mut frame = vec![3u8];
    frame.extend_from_slice(b"bin");
    frame.extend_from_slice(&payload);
    sender.tx.send(Message::Binary(frame.into())).await?;
    let ack = sender.recv_type("ack").await?;
    let offset = ack["offset"].as_str().unwrap().to_owned();
    assert_eq!(ack["room"], "bin");
    let expected = {
        let mut e = vec![3u8];
        e.extend_from_slice(b"bin");
        e.push(offset.len() as u8);
        e.extend_from_slice(offset.as_bytes());
        e.push(5);
        e.extend_from_slice(b"alice");
        e.extend_from_slice(&payload);
        e
    };
    let got = receiver.recv_skip_presence().await?;
    assert_eq!(got["binary"], json!(expected));
    // Replayed from history as the same frame.
    let mut late = connect(&b.url("name=carol")).await?;
    let joined = late.join("bin", Some("0-0")).await?;
    assert_eq!(joined["replay"], 1);
    assert_eq!(late.recv_skip_presence().await?["binary"], json!(expected));
    // A binary frame to a room not joined is refused with an error event.
    let mut not_joined = vec![5u8];
    not_joined.extend_from_slice(b"other\x01");
    sender.tx.send(Message::Binary(not_joined.into())).await?;
    let err = sender.recv_type("error").await?;
    assert_eq!(
        (err["code"].clone(), err["room"].clone()),
        (json!("not_joined"), json!("other"))
    );
    a.stop().await?;
    b.stop().await
}
