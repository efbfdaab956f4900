//! Scaling while local mode runs (the nice-to-have): editing `replicas` in the file
//! starts nodes in spare HAProxy slots or drains the last ones, without restarting HAProxy.

use std::time::{Duration, Instant};

use crate::harness::{LocalCluster, cluster_yaml};
use crate::{SERIAL, client};

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < end,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_replicas_adds_and_drains_nodes_without_restarting_haproxy() {
    let _serial = SERIAL.lock().await;
    let cluster = LocalCluster::start("scaling", &cluster_yaml("chat", 2, 2)).unwrap();
    let haproxy_pid = |c: &LocalCluster| {
        c.current()
            .children
            .iter()
            .find(|c| c.name == "haproxy")
            .and_then(|c| c.pid)
    };
    let before = haproxy_pid(&cluster);
    let slot3_up = || {
        cluster.backend_servers().is_ok_and(|rows| {
            rows.iter()
                .any(|r| r["svname"] == "chat3" && r["status"].starts_with("UP"))
        })
    };
    assert!(!slot3_up(), "the spare slot must not be up before scaling");

    std::fs::write(cluster.manifest(), cluster_yaml("chat", 3, 2)).unwrap();
    let t0 = Instant::now();
    wait_for("scale up to 3", Duration::from_secs(15), || {
        cluster.current().nodes.len() == 3 && slot3_up()
    })
    .await;
    println!(
        "scaling: chat-node-2 serving through HAProxy {:?} after the edit",
        t0.elapsed()
    );
    // An empty new node is the least loaded: fresh clients go there.
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(
            client::connect(cluster.endpoint(), &format!("c{i}"), None)
                .await
                .unwrap(),
        );
    }
    assert!(
        clients.iter().any(|c| c.node == "chat-node-2"),
        "no client on the new node"
    );

    std::fs::write(cluster.manifest(), cluster_yaml("chat", 1, 2)).unwrap();
    wait_for("scale down to 1", Duration::from_secs(20), || {
        let state = cluster.current();
        state.nodes.len() == 1
            && !state
                .children
                .iter()
                .any(|c| c.name.starts_with("chat-node-1"))
    })
    .await;
    wait_for("drained nodes gone", Duration::from_secs(10), || {
        let live = cluster.live_processes().len();
        // redis + haproxy master and worker + one chat-node and its sidecar
        live == 5
    })
    .await;
    let c = client::connect(cluster.endpoint(), "after", None)
        .await
        .unwrap();
    assert_eq!(c.node, "chat-node-0");
    assert_eq!(haproxy_pid(&cluster), before, "HAProxy was restarted");
}
