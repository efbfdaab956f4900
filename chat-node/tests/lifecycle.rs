//! Node lifecycle: the drain (readiness, refusals, 1001 closes spread over the grace period), a
//! Redis outage in the middle of traffic (unavailable errors, readiness, recovery by itself) and
//! a Redis too slow to answer a send (unconfirmed).

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_flips_readiness_refuses_upgrades_and_spreads_1001_closes() -> Result<()> {
    let redis = RedisServer::start()?;
    let mut cfg = config(&redis, "node-a");
    cfg.drain_grace_seconds = 2.0;
    let node = TestNode::start(cfg).await?;
    assert_eq!(node.get("/readyz").await?.0, 200);
    let mut clients = Vec::new();
    for n in 0..4 {
        let mut c = connect(&node.url(&format!("name=u{n}"))).await?;
        c.join("lobby", None).await?;
        clients.push(c);
    }
    let start = Instant::now();
    assert_eq!(http(node.admin, "POST", "/drain").await?.0, 202);
    assert_eq!(node.get("/readyz").await?.0, 503);
    assert_eq!(node.stats().await?["draining"], true);
    assert_eq!(refused_status(&node.url("name=late")).await?, 503);
    let mut waits = Vec::new();
    for mut c in clients {
        waits.push(tokio::spawn(async move {
            let code = c.closed_with().await?;
            anyhow::Ok((code, start.elapsed()))
        }));
    }
    let mut closes = Vec::new();
    for w in waits {
        closes.push(w.await??);
    }
    closes.sort_by_key(|(_, at)| *at);
    assert!(
        closes.iter().all(|(code, _)| *code == Some(1001)),
        "{closes:?}"
    );
    let (first, last) = (closes[0].1, closes[3].1);
    assert!(
        first >= Duration::from_millis(400) && first < Duration::from_millis(1000),
        "first close after the balancer had time to notice the drain: {closes:?}"
    );
    assert!(
        last >= Duration::from_millis(1500),
        "last close near the end of the grace: {closes:?}"
    );
    assert!(
        closes[1].1 >= Duration::from_millis(800) && closes[2].1 >= Duration::from_millis(1200),
        "spread out: {closes:?}"
    );
    // `run` returns once the connections are gone (well before grace + margin).
    tokio::time::timeout(Duration::from_secs(3), node.handle).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_future_drains_an_idle_node_at_once() -> Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start(config(&redis, "node-a")).await?;
    let start = Instant::now();
    node.stop().await?;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no connections: nothing to wait for"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_unavailable_then_traffic_recovers_without_restart() -> Result<()> {
    let mut redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut alice = member(&a, "alice", "lobby").await?;
    let mut bob = member(&b, "bob", "lobby").await?;
    alice.say("lobby", "before", "x").await?;
    assert_eq!(bob.recv_type("message").await?["id"], "before");

    redis.stop();
    a.wait_ready(false).await?;
    b.wait_ready(false).await?;
    assert_eq!(a.stats().await?["redis_connected"], false);
    assert_eq!(a.get("/healthz").await?.0, 200, "the node itself stays up");
    alice
        .send(json!({"type": "send", "room": "lobby", "id": "during", "text": "x"}))
        .await?;
    let e = alice.recv_type("error").await?;
    assert_eq!(
        (&e["code"], &e["id"], &e["room"]),
        (&json!("unavailable"), &json!("during"), &json!("lobby"))
    );
    alice
        .send(json!({"type": "direct", "to": "bob", "id": "dm", "text": "x"}))
        .await?;
    assert_eq!(alice.recv_type("error").await?["code"], "unavailable");
    alice.send(json!({"type": "join", "room": "other"})).await?;
    let e = alice.recv_type("error").await?;
    assert_eq!(
        (&e["code"], &e["room"]),
        (&json!("unavailable"), &json!("other"))
    );
    alice.send(json!({"type": "ping"})).await?;
    assert_eq!(
        alice.recv_type("pong").await?,
        json!({"type": "pong"}),
        "connections stay open"
    );

    redis.start_again()?;
    a.wait_ready(true).await?;
    b.wait_ready(true).await?;
    // Both nodes re-subscribed by themselves: room traffic flows again in both directions.
    alice.say("lobby", "after-a", "x").await?;
    assert_eq!(bob.recv_type("message").await?["id"], "after-a");
    bob.say("lobby", "after-b", "x").await?;
    loop {
        let v = alice.recv_type("message").await?;
        if v["id"] == "after-b" {
            break;
        }
    }
    // Presence was rebuilt from the nodes' own state (Redis lost everything).
    alice
        .send(json!({"type": "presence", "room": "lobby"}))
        .await?;
    assert_eq!(
        alice.recv_type("presence").await?["members"],
        json!(["alice", "bob"])
    );
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_redis_answers_too_late_is_unconfirmed_not_unavailable() -> Result<()> {
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut alice = member(&a, "alice", "lobby").await?;
    let mut bob = member(&b, "bob", "lobby").await?;
    // One send first, so Redis has the send script cached (a cold EVALSHA answers NOSCRIPT and
    // would be retried with the script's text, after the node gave up).
    alice.say("lobby", "warm", "x").await?;
    assert_eq!(bob.recv_type("message").await?["id"], "warm");
    // A script on another connection keeps Redis busy for 4 s, well past the node's 2 s response
    // timeout. The node gives up on its send script, but the script is already in Redis's socket
    // buffer and runs when Redis is free: the message is published after the node stopped
    // waiting (as when the node itself is too overloaded to read the answer in time).
    let client = redis::Client::open(redis.url())?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await?;
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg(
                "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
                 repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > 4000000 \
                 return 1",
            )
            .arg(0)
            .query_async::<i64>(&mut conn)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice
        .send(json!({"type": "send", "room": "lobby", "id": "late", "text": "x"}))
        .await?;
    // Alice gets the error when the node stops waiting (2 s), then her own message once Redis
    // runs the script (4 s); earlier frames (her own "warm") are skipped.
    let mut error = None;
    let mut delivered_to_alice = false;
    while error.is_none() || !delivered_to_alice {
        let v = alice.recv().await?;
        match v["type"].as_str() {
            Some("error") => error = Some(v),
            Some("message") if v["id"] == "late" => delivered_to_alice = true,
            _ => {}
        }
    }
    let e = error.unwrap_or_default();
    assert_eq!(
        (&e["code"], &e["id"], &e["room"]),
        (&json!("unconfirmed"), &json!("late"), &json!("lobby")),
        "a timed-out send must not claim that nothing was sent: {e}"
    );
    // ... because it was: every member receives it once Redis runs the held script.
    assert_eq!(bob.recv_type("message").await?["id"], "late");
    assert_eq!(busy.await??, 1);
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscriber_connection_is_restored_and_its_gap_filled_from_the_stream() -> Result<()>
{
    let redis = RedisServer::start()?;
    let (a, b) = two_nodes(&redis).await?;
    let mut reader = member(&a, "reader", "lobby").await?;
    let mut writer = member(&b, "writer", "lobby").await?;
    writer.say("lobby", "m0", "x").await?;
    assert_eq!(reader.recv_type("message").await?["id"], "m0");
    // Redis drops every pub/sub connection (as on a network blip) while the writer keeps sending
    // through its command connection; messages published before the nodes re-subscribe are only
    // in the stream.
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await?;
    assert!(
        killed >= 2,
        "both nodes' subscribers were connected ({killed})"
    );
    for n in 1..50 {
        writer.say("lobby", &format!("m{n}"), "x").await?;
    }
    let mut ids = Vec::new();
    while ids.len() < 49 {
        ids.push(
            reader.recv_type("message").await?["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let expected: Vec<String> = (1..50).map(|n| format!("m{n}")).collect();
    assert_eq!(
        ids, expected,
        "every message once, in order, across the reconnect"
    );
    let (_, metrics) = a.get("/metrics").await?;
    assert!(
        metrics.contains("chat_redis_reconnects_total 2"),
        "{metrics}"
    );
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_left_behind_by_crashed_nodes_is_removed() -> Result<()> {
    let redis = RedisServer::start()?;
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let p = "chatcluster:test/chat";
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // A node that crashed a minute ago, and the previous incarnation of node-a (same pod name,
    // restarted), each left a user "in" the lobby.
    redis::pipe()
        .hset(format!("{p}:presence:lobby"), "ghost", 1)
        .hset(format!("{p}:node:dead-node:presence"), "lobby ghost", 1)
        .zadd(format!("{p}:nodes"), "dead-node", now_ms - 60_000)
        .hset(format!("{p}:presence:lobby"), "stale", 1)
        .hset(format!("{p}:node:node-a:presence"), "lobby stale", 1)
        .exec_async(&mut conn)
        .await?;
    let a = TestNode::start(config(&redis, "node-a")).await?;
    let mut alice = connect(&a.url("name=alice")).await?;
    alice.join("lobby", None).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        alice
            .send(json!({"type": "presence", "room": "lobby"}))
            .await?;
        let members = alice.recv_type("presence").await?["members"].clone();
        if members == json!(["alice"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stale members never removed: {members}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{p}:nodes"))
        .arg("dead-node")
        .query_async(&mut conn)
        .await?;
    assert_eq!(dead, None, "the dead node's heartbeat entry is gone");
    // A clean shutdown removes the node's own share too.
    a.stop().await?;
    let left: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{p}:presence:lobby"))
        .query_async(&mut conn)
        .await?;
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_on_both_ports() -> Result<()> {
    let redis = RedisServer::start()?;
    let node = TestNode::start(config(&redis, "node-a")).await?;
    let (status, page) = http(node.ws, "GET", "/").await?;
    assert_eq!(status, 200);
    assert!(
        page.to_lowercase().contains("<html"),
        "the demo page is served at /"
    );
    assert_eq!(
        http(node.ws, "GET", "/ws").await?.0,
        400,
        "plain GET on /ws is not an upgrade"
    );
    assert_eq!(http(node.ws, "GET", "/nope").await?.0, 404);
    assert_eq!(node.get("/healthz").await?.0, 200);
    let _c = connect(&node.url("name=a")).await?;
    let (_, metrics) = node.get("/metrics").await?;
    assert!(metrics.contains("chat_connections 1"), "{metrics}");
    let stats = node.stats().await?;
    assert_eq!(
        stats,
        json!({"node": "node-a", "connections": 1, "capacity": 10000, "draining": false, "redis_connected": true})
    );
    assert_eq!(http(node.admin, "PUT", "/drain").await?.0, 405);
    assert_eq!(node.get("/nope").await?.0, 404);
    assert_eq!(
        node.stats().await?["draining"],
        false,
        "a refused /drain does not drain"
    );
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscriber_keeps_its_redis_connection_across_keepalive_pings() -> Result<()> {
    let redis = RedisServer::start()?;
    let a = TestNode::start(config(&redis, "node-a")).await?;
    let mut member = connect(&a.url("name=idle")).await?;
    member.join("lobby", None).await?;
    // The subscriber pings Redis every 3 s; two pings must not look like a lost connection.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let (_, metrics) = a.get("/metrics").await?;
    assert!(
        metrics.contains("chat_redis_reconnects_total 1\n"),
        "the subscriber reconnected while idle:\n{metrics}"
    );
    a.stop().await
}
