//! The sidecar against a fake chat-node `/stats`: agent replies follow the node's numbers, a hung
//! or failing node is reported down without ever delaying the agent port, `/metrics`, `/healthz`
//! and `/state` show what was reported, and shutdown waits for the node to be gone.

mod support;

use std::time::{Duration, Instant};

use support::{Behavior, FakeNode, Sidecar, fast_config, stats};

const WITHIN: Duration = Duration::from_secs(3);

#[tokio::test]
async fn replies_follow_the_node_through_every_state() {
    let node = FakeNode::start(Behavior::Serve(stats(0, 10))).await;
    let sidecar = Sidecar::start(fast_config(&node.url())).await;

    sidecar.wait_for_line("up ready 100%", WITHIN).await;
    node.set(Behavior::Serve(stats(4, 10)));
    sidecar.wait_for_line("up ready 60%", WITHIN).await;
    node.set(Behavior::Serve(stats(10, 10)));
    sidecar.wait_for_line("down #full", WITHIN).await;
    // Inside the hysteresis band (95%) a full node stays closed.
    node.set(Behavior::Serve(stats(19, 20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sidecar.agent_line().await, "down #full");
    node.set(Behavior::Serve(stats(18, 20)));
    sidecar.wait_for_line("up ready 10%", WITHIN).await;

    let mut draining = stats(3, 20);
    draining.draining = true;
    node.set(Behavior::Serve(draining));
    sidecar.wait_for_line("down #draining", WITHIN).await;

    node.set(Behavior::Status(500));
    sidecar.wait_for_line("down #unreachable", WITHIN).await;
    node.set(Behavior::Serve(stats(0, 0)));
    sidecar.wait_for_line("down #no-capacity", WITHIN).await;
}

#[tokio::test]
async fn a_hung_node_never_delays_the_agent_port() {
    let node = FakeNode::start(Behavior::Serve(stats(1, 4))).await;
    let sidecar = Sidecar::start(fast_config(&node.url())).await;
    sidecar.wait_for_line("up ready 75%", WITHIN).await;

    node.set(Behavior::Hang);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut saw_down = None;
    // 2 s of agent checks while every poll hangs until its 100 ms timeout.
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        let line = sidecar.agent_line().await;
        slowest = slowest.max(t.elapsed());
        if line == "down #unreachable" && saw_down.is_none() {
            saw_down = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        slowest < Duration::from_millis(50),
        "an agent check took {slowest:?}"
    );
    let saw_down = saw_down.expect("a hung node is reported down");
    // One poll interval (50 ms) plus one poll timeout (100 ms), with slack for a busy machine.
    assert!(
        saw_down < Duration::from_millis(600),
        "reported down after {saw_down:?}"
    );

    let (_, metrics) = sidecar.get("/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with(r#"sidecar_poll_failures_total{reason="timeout"}"#))
        .unwrap_or_else(|| panic!("no timeout failures counted:\n{metrics}"));
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 5, "{line}");

    node.set(Behavior::Serve(stats(2, 4)));
    sidecar.wait_for_line("up ready 50%", WITHIN).await;
}

#[tokio::test]
async fn a_stopped_node_is_reported_down_within_two_poll_intervals() {
    let mut node = FakeNode::start(Behavior::Serve(stats(0, 4))).await;
    let sidecar = Sidecar::start(fast_config(&node.url())).await;
    sidecar.wait_for_line("up ready 100%", WITHIN).await;
    node.stop().await;
    let took = sidecar.wait_for_line("down #unreachable", WITHIN).await;
    // Two poll intervals (2 x 50 ms) plus slack for a busy 2-core machine.
    assert!(
        took <= Duration::from_millis(180),
        "took {took:?} with a 50 ms interval"
    );
}

#[tokio::test]
async fn metrics_state_and_healthz_show_what_was_reported() {
    let node = FakeNode::start(Behavior::Serve(stats(3, 4))).await;
    let sidecar = Sidecar::start(fast_config(&node.url())).await;
    sidecar.wait_for_line("up ready 25%", WITHIN).await;
    for _ in 0..3 {
        sidecar.agent_line().await;
    }

    let (status, body) = sidecar.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let (status, body) = sidecar.get("/state").await;
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["reply"], "up ready 25%");
    assert_eq!(state["state"], "up");
    assert_eq!(state["weight_percent"], 25);
    assert_eq!(state["stats"]["connections"], 3);
    assert_eq!(state["stats"]["capacity"], 4);
    assert_eq!(state["terminating"], false);
    assert!(state["stats_age_ms"].as_u64().unwrap() < 500);

    let (status, metrics) = sidecar.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sidecar_reported_weight_percent 25"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sidecar_state{state="up"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sidecar_state{state="full"} 0"#),
        "{metrics}"
    );
    assert!(metrics.contains("sidecar_node_connections 3"), "{metrics}");
    let checks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sidecar_agent_checks_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(checks >= 4, "{checks}");

    assert_eq!(sidecar.get("/nope").await.0, 404);
}

#[tokio::test]
async fn shutdown_keeps_answering_until_the_node_is_gone() {
    let mut node = FakeNode::start(Behavior::Serve(stats(2, 4))).await;
    let mut sidecar = Sidecar::start(fast_config(&node.url())).await;
    sidecar.wait_for_line("up ready 50%", WITHIN).await;

    // SIGTERM reaches the sidecar and the node together; the node starts draining.
    sidecar.terminate();
    let mut draining = stats(2, 4);
    draining.draining = true;
    node.set(Behavior::Serve(draining));
    sidecar.wait_for_line("down #draining", WITHIN).await;
    let (_, state) = sidecar.get("/state").await;
    assert!(state.contains(r#""terminating":true"#), "{state}");
    // Still serving a while later: the node has not gone yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sidecar.agent_line().await, "down #draining");
    assert!(!sidecar.task.is_finished());

    let gone_at = Instant::now();
    node.stop().await;
    sidecar.wait_for_line("down #unreachable", WITHIN).await;
    let result = tokio::time::timeout(WITHIN, &mut sidecar.task)
        .await
        .expect("sidecar exits");
    result.unwrap().unwrap();
    // linger is 300 ms after the first failed poll.
    assert!(
        gone_at.elapsed() >= Duration::from_millis(300),
        "{:?}",
        gone_at.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(sidecar.agent).await.is_err(),
        "agent port closed"
    );
}

#[tokio::test]
async fn shutdown_gives_up_at_the_deadline_when_the_node_stays() {
    let node = FakeNode::start(Behavior::Serve(stats(0, 4))).await;
    let mut config = fast_config(&node.url());
    config.shutdown_deadline_ms = 400;
    let mut sidecar = Sidecar::start(config).await;
    sidecar.wait_for_line("up ready 100%", WITHIN).await;
    let start = Instant::now();
    sidecar.terminate();
    let result = tokio::time::timeout(WITHIN, &mut sidecar.task)
        .await
        .expect("sidecar exits");
    result.unwrap().unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_invalid_stats_url_fails_at_start_with_a_hint() {
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = sidecar::Config::for_stats_url("https://example.invalid/stats");
    let err = sidecar::run(config, agent, http, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
}

#[tokio::test]
async fn agent_answers_when_haproxy_sends_an_agent_send_string_and_in_parallel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = FakeNode::start(Behavior::Serve(stats(1, 2))).await;
    let sidecar = Sidecar::start(fast_config(&node.url())).await;
    sidecar.wait_for_line("up ready 50%", WITHIN).await;

    // `agent-send "hello\n"`: HAProxy writes first, then reads the reply.
    let mut stream = tokio::net::TcpStream::connect(sidecar.agent).await.unwrap();
    stream.write_all(b"hello\n").await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "up ready 50%\n");

    // Fifty HAProxy processes asking at once all get the same answer.
    let checks = (0..50).map(|_| support::agent_line(sidecar.agent));
    let lines = futures_util::future::join_all(checks).await;
    assert!(lines.iter().all(|l| l == "up ready 50%"), "{lines:?}");
}
