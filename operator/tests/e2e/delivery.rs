//! Message delivery across the cluster. Test 3, cross-node chat: receivers on every node get
//! every message in the same order. Test 4, node crash: `kill -9` one chat-node while messages
//! flow; its clients come back through HAProxy and resume, nothing lost or duplicated. Test 5,
//! graceful drain: SIGTERM one node; it takes no new connections (not even cookie holders), its
//! clients are closed over the grace period and resume elsewhere. Test 6, Redis restart: sends
//! during the outage get explicit errors, traffic resumes, nothing is dropped silently.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::chat::{self, Receiver, ReceiverLog, SenderLog, check_delivery};
use crate::harness::{LocalCluster, Signal, cluster_yaml, send_signal};
use crate::{SERIAL, client};

/// A cluster whose rate limit does not slow the test's senders down.
fn yaml(replicas: u32, grace: u32) -> String {
    format!(
        "{}  ratePerSecond: 1000\n  rateBurst: 1000\n",
        cluster_yaml("chat", replicas, grace)
    )
}

const ROOM: &str = "e2e";

struct Workload {
    receivers: Vec<Receiver>,
    senders: Vec<tokio::task::JoinHandle<anyhow::Result<SenderLog>>>,
    done: watch::Sender<Option<usize>>,
}

/// `receivers` receivers (spread by leastconn), then `senders` senders of `count` messages.
async fn workload(
    cluster: &LocalCluster,
    receivers: usize,
    senders: usize,
    count: usize,
    interval: Duration,
) -> Workload {
    let (done, done_rx) = watch::channel(None);
    let mut rs = Vec::new();
    for i in 0..receivers {
        let name = format!("r{i}");
        let r = chat::receiver(
            cluster.endpoint(),
            &name,
            ROOM,
            done_rx.clone(),
            Duration::from_secs(60),
        );
        rs.push(r.await.unwrap());
    }
    let nodes: BTreeSet<&str> = rs.iter().map(|r| r.first_node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        cluster.state.nodes.len(),
        "receivers not on every node: {nodes:?}"
    );
    let mut ss = Vec::new();
    for i in 0..senders {
        let name = format!("s{i}");
        let s = chat::sender(cluster.endpoint(), &name, ROOM, count, interval).await;
        ss.push(s.unwrap());
    }
    Workload {
        receivers: rs,
        senders: ss,
        done,
    }
}

async fn finish(w: Workload) -> (Vec<SenderLog>, Vec<ReceiverLog>) {
    let mut senders = Vec::new();
    for s in w.senders {
        senders.push(s.await.unwrap().unwrap());
    }
    let acked: usize = senders.iter().map(|s| s.acked.len()).sum();
    w.done.send(Some(acked)).unwrap();
    let mut receivers = Vec::new();
    for r in w.receivers {
        receivers.push(r.finish().await.unwrap());
    }
    (senders, receivers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_on_every_node_gets_every_message_in_the_same_order() {
    let _serial = SERIAL.lock().await;
    let cluster = LocalCluster::start("cross_node", &yaml(3, 2)).unwrap();
    let w = workload(&cluster, 9, 3, 100, Duration::from_millis(5)).await;
    let (senders, receivers) = finish(w).await;
    for s in &senders {
        assert_eq!(s.acked.len(), 100, "{s:?}");
    }
    let total = check_delivery(&senders, &receivers).unwrap();
    let nodes: BTreeSet<&str> = senders.iter().map(|s| s.node.as_str()).collect();
    println!(
        "cross-node: {total} messages from {} senders on {nodes:?} reached all {} receivers in one order",
        senders.len(),
        receivers.len()
    );
    assert_eq!(total, 300);
}

/// The node hosting receivers but no sender (senders are placed after the receivers).
async fn quiet_node(cluster: &LocalCluster) -> usize {
    let mut best = None;
    for i in 0..cluster.state.nodes.len() {
        let stats = cluster.node_stats(i).await.unwrap();
        let conns = stats["connections"].as_u64().unwrap_or(0);
        // Receivers were spread evenly; the senders add one connection to two of the nodes.
        if best.is_none_or(|(_, c)| conns < c) {
            best = Some((i, conns));
        }
    }
    best.unwrap().0
}

fn summarize(label: &str, victim: &str, t0: Instant, receivers: &[ReceiverLog]) -> Vec<f64> {
    let mut times = Vec::new();
    for r in receivers {
        for rc in &r.reconnects {
            let took = rc.rejoined_at.duration_since(t0).as_secs_f64();
            let closed = rc.closed_at.duration_since(t0).as_secs_f64();
            println!(
                "{label}: {} closed at +{closed:.3}s (code {:?}) on {}, back in the room on {} at +{took:.3}s, {} replayed, cookie {}",
                r.name, rc.code, rc.from, rc.to, rc.replayed, rc.with_cookie
            );
            assert_eq!(
                rc.from, victim,
                "{} was disconnected from a healthy node",
                r.name
            );
            times.push(took);
        }
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_clients_resume_elsewhere_without_loss_or_duplicates() {
    let _serial = SERIAL.lock().await;
    // The killed node stays down for the whole test (a restart delay longer than the test), as
    // a node whose machine died would: its clients can only come back through other nodes.
    let cluster =
        LocalCluster::start_with("node_crash", &yaml(3, 2), &["--restart-delay-ms", "60000"])
            .unwrap();
    let w = workload(&cluster, 9, 2, 150, Duration::from_millis(20)).await;
    let victim = quiet_node(&cluster).await;
    let victim_name = cluster.state.nodes[victim].name.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = cluster.current().nodes[victim].pid.expect("victim pid");
    let t0 = Instant::now();
    send_signal(pid, Signal::Kill);
    let (senders, receivers) = finish(w).await;
    let total = check_delivery(&senders, &receivers).unwrap();
    let times = summarize("node crash", &victim_name, t0, &receivers);
    let moved = receivers
        .iter()
        .filter(|r| !r.reconnects.is_empty())
        .count();
    let worst = times.iter().copied().fold(0.0, f64::max);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    println!(
        "node crash: killed {victim_name}; {moved} clients reconnected, mean {mean:.3}s, worst {worst:.3}s after the kill; \
         {total} messages acked, each of {} receivers got all {total} once, in order (0 lost, 0 duplicated)",
        receivers.len()
    );
    for s in &senders {
        assert!(
            s.refused.is_empty() && s.unknown.is_empty(),
            "sender disturbed: {s:?}"
        );
        assert_ne!(s.node, victim_name);
    }
    assert!(
        moved >= 3,
        "the killed node's 3 receivers must reconnect, {moved} did"
    );
    assert!(worst < 5.0, "a client needed {worst:.3}s to come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_takes_no_new_clients_and_its_clients_resume_over_the_grace_period() {
    let _serial = SERIAL.lock().await;
    let grace = 6;
    let cluster = LocalCluster::start("drain", &yaml(3, grace)).unwrap();
    let w = workload(&cluster, 12, 2, 200, Duration::from_millis(30)).await;
    let victim = quiet_node(&cluster).await;
    let victim_name = cluster.state.nodes[victim].name.clone();
    let server = format!("chat{}", victim + 1);
    // A cookie for the victim, to show that even cookie holders are turned away.
    let mut cookie = None;
    for i in 0..10 {
        let c = client::connect(cluster.endpoint(), &format!("probe{i}"), None)
            .await
            .unwrap();
        if c.node == victim_name {
            cookie = c.cookie.clone();
        }
        c.close().await;
        if cookie.is_some() {
            break;
        }
    }
    let pid = cluster.current().nodes[victim].pid.expect("victim pid");
    let t0 = Instant::now();
    send_signal(pid, Signal::Term);
    // HAProxy learns about the drain from the sidecar's agent check.
    loop {
        let rows = cluster.backend_servers().unwrap();
        let row = rows.iter().find(|r| r["svname"] == server).unwrap();
        if !row["status"].starts_with("UP") {
            println!(
                "drain: HAProxy marked {server} {} after {:?}",
                row["status"],
                t0.elapsed()
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "HAProxy never stopped routing to the draining node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..6 {
        let c = client::connect(cluster.endpoint(), &format!("late{i}"), cookie.as_deref()).await;
        let c = c.unwrap();
        assert_ne!(
            c.node, victim_name,
            "a new connection reached the draining node"
        );
        c.close().await;
    }
    let (senders, receivers) = finish(w).await;
    let total = check_delivery(&senders, &receivers).unwrap();
    let times = summarize("drain", &victim_name, t0, &receivers);
    let closes: Vec<f64> = receivers
        .iter()
        .flat_map(|r| &r.reconnects)
        .map(|rc| rc.closed_at.duration_since(t0).as_secs_f64())
        .collect();
    let (first, last) = closes
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), t| (a.min(*t), b.max(*t)));
    println!(
        "drain: {} clients of {victim_name} closed between +{first:.3}s and +{last:.3}s (spread {:.3}s of a {grace}s grace); \
         each back in the room within {:.3}s; {total} messages acked, every receiver got all of them once, in order",
        closes.len(),
        last - first,
        times
            .iter()
            .zip(&closes)
            .map(|(t, c)| t - c)
            .fold(0.0, f64::max),
    );
    for rc in receivers.iter().flat_map(|r| &r.reconnects) {
        assert_eq!(rc.code, Some(1001), "drain closes with 1001 (going away)");
        assert_ne!(
            rc.to, victim_name,
            "a cookie holder went back to the draining node"
        );
        assert!(rc.with_cookie);
    }
    assert!(
        closes.len() >= 4,
        "the victim's receivers were not all closed: {closes:?}"
    );
    assert!(
        last - first >= f64::from(grace) / 3.0,
        "closes came in a spike: {first:.3}s..{last:.3}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gives_explicit_errors_then_traffic_resumes() {
    let _serial = SERIAL.lock().await;
    let cluster = LocalCluster::start("redis_restart", &yaml(2, 2)).unwrap();
    let count = 200;
    let w = workload(&cluster, 4, 2, count, Duration::from_millis(25)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let redis = cluster
        .current()
        .children
        .iter()
        .find(|c| c.name == "redis")
        .unwrap()
        .pid;
    let t0 = Instant::now();
    send_signal(redis.expect("redis pid"), Signal::Kill);
    let (senders, receivers) = finish(w).await;
    let total = check_delivery(&senders, &receivers).unwrap();
    let refused: usize = senders.iter().map(|s| s.refused.len()).sum();
    let restarts = cluster
        .current()
        .children
        .iter()
        .find(|c| c.name == "redis")
        .unwrap()
        .starts;
    println!(
        "redis restart: killed redis at +0; it was restarted ({restarts} starts); {total} sends acked, \
         {refused} refused with an error, 0 unanswered; every receiver got exactly the acked ones, in order; {:?}",
        t0.elapsed()
    );
    for s in &senders {
        assert!(
            s.unknown.is_empty(),
            "sends without an answer: {:?}",
            s.unknown
        );
        assert_eq!(s.acked.len() + s.refused.len(), count);
        assert!(
            s.refused.iter().all(|(_, code)| code == "unavailable"),
            "{:?}",
            s.refused
        );
        // Traffic resumed: the last message went through.
        let last = format!("-{}", count - 1);
        assert!(
            s.acked.iter().any(|(_, id)| id.ends_with(&last)),
            "the last send failed: {s:?}"
        );
    }
    assert!(refused > 0, "no send was refused while Redis was down");
    assert!(restarts >= 2, "local mode did not restart redis");
}
