//! Refusals and limits: identity (401/400), capacity (503), frame size (1009), malformed and
//! unknown frames, rate limiting, room limits, and slow consumers (1008).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn token(secret: &str, sub: &str, exp_in_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": sub, "exp": now + exp_in_secs});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_refuses_bad_and_expired_tokens_before_the_upgrade() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.jwt_secret = Some("s3cret".into());
    let node = TestNode::start(cfg).await?;
    assert_eq!(
        refused_status(&node.url(&format!("token={}", token("wrong", "alice", 600)))).await?,
        401
    );
    assert_eq!(
        refused_status(&node.url(&format!("token={}", token("s3cret", "alice", -3600)))).await?,
        401
    );
    assert_eq!(refused_status(&node.url("token=not.a.jwt")).await?, 401);
    assert_eq!(
        refused_status(&node.url("name=alice")).await?,
        401,
        "no anonymous names with a secret"
    );
    let client = connect(&node.url(&format!("token={}", token("s3cret", "alice", 600)))).await?;
    assert_eq!(
        client.welcome,
        json!({"type": "welcome", "user": "alice", "node": "node-a", "anonymous": false})
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_mode_names() -> Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start(config(&redis, "node-a")).await?;
    let named = connect(&node.url("name=carol")).await?;
    assert_eq!(
        named.welcome,
        json!({"type": "welcome", "user": "carol", "node": "node-a", "anonymous": true})
    );
    let generated = connect(&format!("ws://{}/ws", node.ws)).await?;
    assert!(
        generated.welcome["user"]
            .as_str()
            .unwrap()
            .starts_with("anon-")
    );
    assert_eq!(refused_status(&node.url("name=bad%20name")).await?, 400);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_upgrades_with_503() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.capacity = 2;
    let node = TestNode::start(cfg).await?;
    let first = connect(&node.url("name=a")).await?;
    let _second = connect(&node.url("name=b")).await?;
    assert_eq!(refused_status(&node.url("name=c")).await?, 503);
    assert_eq!(node.stats().await?["connections"], 2);
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.stats().await?["connections"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "slot not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    connect(&node.url("name=c")).await?;
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_closes_with_1009() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.max_message_bytes = 1024;
    let node = TestNode::start(cfg).await?;
    let mut ok = connect(&node.url("name=a")).await?;
    ok.join("r", None).await?;
    ok.say("r", "fits", &"x".repeat(900)).await?;
    let mut big = connect(&node.url("name=b")).await?;
    big.send_raw(&format!(
        r#"{{"type":"send","room":"r","text":"{}"}}"#,
        "x".repeat(2000)
    ))
    .await?;
    assert_eq!(big.closed_with().await?, Some(1009));
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_frames_get_error_events_and_the_connection_stays_usable()
-> Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start(config(&redis, "node-a")).await?;
    let mut c = connect(&node.url("name=a")).await?;
    c.send_raw("{this is not json").await?;
    let e = c.recv().await?;
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("bad_json"))
    );
    c.send(json!({"type": "teleport", "id": "x-1"})).await?;
    let e = c.recv().await?;
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("unknown_type"), &json!("x-1"))
    );
    c.send(json!({"type": "join", "room": "no spaces allowed"}))
        .await?;
    assert_eq!(c.recv().await?["code"], "bad_request");
    c.send(json!({"type": "send", "room": "lobby", "id": "s-1", "text": "hi"}))
        .await?;
    let e = c.recv().await?;
    assert_eq!(
        (&e["code"], &e["id"], &e["room"]),
        (&json!("not_joined"), &json!("s-1"), &json!("lobby"))
    );
    c.send(json!({"type": "leave", "room": "lobby"})).await?;
    assert_eq!(c.recv().await?["code"], "not_joined");
    c.send(json!({"type": "ping"})).await?;
    assert_eq!(c.recv().await?, json!({"type": "pong"}));
    c.join("lobby", None).await?;
    c.say("lobby", "s-2", "still works").await?;
    let (_, metrics) = node.get("/metrics").await?;
    assert!(
        metrics.contains(r#"chat_client_errors_total{code="bad_json"} 1"#),
        "{metrics}"
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_rooms() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.max_rooms_per_connection = 2;
    let node = TestNode::start(cfg).await?;
    let mut c = connect(&node.url("name=a")).await?;
    c.join("r1", None).await?;
    c.join("r2", None).await?;
    c.send(json!({"type": "join", "room": "r3"})).await?;
    let e = c.recv().await?;
    assert_eq!(
        (&e["code"], &e["room"]),
        (&json!("too_many_rooms"), &json!("r3"))
    );
    c.send(json!({"type": "leave", "room": "r1"})).await?;
    assert_eq!(c.recv().await?, json!({"type": "left", "room": "r1"}));
    c.join("r3", None).await?;
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_frames_get_rate_limited_and_nothing_else_breaks() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.rate_per_second = 1.0;
    cfg.rate_burst = 5;
    let node = TestNode::start(cfg).await?;
    let mut c = connect(&node.url("name=a")).await?;
    for _ in 0..8 {
        c.send(json!({"type": "ping"})).await?;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..8 {
        let v = c.recv().await?;
        match v["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if v["code"] == "rate_limited" => limited += 1,
            _ => panic!("unexpected {v}"),
        }
    }
    // 5 from the burst, maybe one more refilled while the 8 frames were handled.
    assert!(
        (5..=6).contains(&pongs) && pongs + limited == 8,
        "pongs {pongs} limited {limited}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.send(json!({"type": "ping"})).await?;
    assert_eq!(c.recv().await?, json!({"type": "pong"}), "tokens refill");
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_the_node_stays_bounded() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.outbound_queue = 16;
    let node = TestNode::start(cfg).await?;
    let mut stuck = connect(&node.url("name=stuck")).await?;
    stuck.join("flood", None).await?;
    let mut healthy = connect(&node.url("name=healthy")).await?;
    healthy.join("flood", None).await?;
    let mut sender = connect(&node.url("name=sender")).await?;
    sender.join("flood", None).await?;
    // `stuck` never reads again; the others keep up. 60 KiB x 400 = 24 MiB towards it, far more
    // than the kernel buffers hold, so its queue fills and the node drops it.
    let text = "x".repeat(60 * 1024);
    let reading = tokio::spawn(async move {
        let mut received = 0;
        while received < 400 {
            if healthy.recv().await?["type"] == "message" {
                received += 1;
            }
        }
        anyhow::Ok(healthy)
    });
    for n in 0..400 {
        sender.say("flood", &format!("f{n}"), &text).await?;
    }
    let mut healthy = reading.await??;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = node.get("/metrics").await?;
        if metrics.contains(r#"chat_server_closes_total{code="1008"} 1"#)
            && node.stats().await?["connections"] == 2
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow consumer never dropped: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stuck client finds its connection gone once it reads again.
    let mut frames = 0;
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut stuck.rx)).await? {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1008));
                break;
            }
            Some(Ok(_)) => frames += 1,
            Some(Err(_)) | None => break,
        }
    }
    assert!(
        frames < 400,
        "the stuck client cannot have received everything ({frames})"
    );
    // The node still serves.
    healthy.say("flood", "after", "ok").await?;
    node.stop().await
}

#[tokio::test]
async fn an_empty_jwt_secret_is_refused_at_start() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.jwt_secret = Some(String::new());
    let node = TestNode::start_unready(cfg).await?;
    let err = tokio::time::timeout(WAIT, node.handle).await??.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    Ok(())
}
