//! Where HAProxy puts clients. Test 1, sticky sessions: a client presenting the cookie HAProxy
//! set lands on the same node twenty times in a row, even when that node is the busiest. Test 2,
//! least-loaded placement: with one of three nodes loaded, new clients go to the others, as the
//! sidecars' reported weights say.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{LocalCluster, cluster_yaml};
use crate::{SERIAL, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_cookie_returns_to_its_node_twenty_times() {
    let _serial = SERIAL.lock().await;
    let cluster = LocalCluster::start("sticky", &cluster_yaml("chat", 3, 2)).unwrap();
    let first = client::connect(cluster.endpoint(), "sticky", None)
        .await
        .unwrap();
    let home = first.node.clone();
    let cookie = first
        .cookie
        .clone()
        .expect("HAProxy set no cookie on the first connection");
    println!("sticky: first connection on {home}, cookie {cookie}");
    // Keep every sticky connection open: the home node becomes the busiest, so leastconn alone
    // would send a new connection elsewhere, and only the cookie brings it home.
    let mut open = vec![first];
    for round in 1..=20 {
        let c = client::connect(cluster.endpoint(), "sticky", Some(&cookie))
            .await
            .unwrap();
        assert_eq!(
            c.node, home,
            "reconnect {round} with the cookie landed elsewhere"
        );
        open.push(c);
    }
    let fresh = client::connect(cluster.endpoint(), "fresh", None)
        .await
        .unwrap();
    assert_ne!(
        fresh.node, home,
        "without a cookie leastconn must avoid the node with 21 connections"
    );
    for c in open {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_clients_avoid_the_loaded_node_as_the_sidecar_weights_say() {
    let _serial = SERIAL.lock().await;
    // Capacity 40: 30 connections leave the loaded node 25% free, the others 100%.
    let yaml = format!("{}  capacity: 40\n", cluster_yaml("chat", 3, 2));
    let cluster = LocalCluster::start("placement", &yaml).unwrap();
    let first = client::connect(cluster.endpoint(), "load-0", None)
        .await
        .unwrap();
    let loaded = first.node.clone();
    let cookie = first.cookie.clone().expect("cookie");
    let mut load = vec![first];
    for i in 1..30 {
        let c = client::connect(cluster.endpoint(), &format!("load-{i}"), Some(&cookie)).await;
        load.push(c.unwrap());
    }
    assert!(load.iter().all(|c| c.node == loaded));
    let loaded_index = cluster
        .state
        .nodes
        .iter()
        .position(|n| n.name == loaded)
        .unwrap();
    let loaded_server = format!("chat{}", loaded_index + 1);

    // Wait until HAProxy applied the loaded node's sidecar weight (poll 250 ms, agent 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let weights = loop {
        let rows = cluster.backend_servers().unwrap();
        // The three running nodes' slots; the spare slots are in maintenance.
        let weights: BTreeMap<String, u32> = rows
            .iter()
            .filter(|r| ["chat1", "chat2", "chat3"].contains(&r["svname"].as_str()))
            .map(|r| (r["svname"].clone(), r["weight"].parse().unwrap_or(0)))
            .collect();
        if weights.get(&loaded_server).is_some_and(|w| *w < 100) {
            break weights;
        }
        assert!(
            Instant::now() < deadline,
            "HAProxy weights never followed the load: {weights:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut reported = BTreeMap::new();
    for i in 0..3 {
        let state = cluster.sidecar_state(i).await.unwrap();
        reported.insert(
            format!("chat{}", i + 1),
            state["weight_percent"].as_u64().unwrap_or(0),
        );
    }
    println!("placement: sidecar weights {reported:?}, HAProxy weights {weights:?}");
    assert_eq!(
        reported[&loaded_server], 25,
        "30 of 40 connections leave 25% free"
    );
    for (server, weight) in &weights {
        assert_eq!(
            u64::from(*weight),
            reported[server],
            "HAProxy weight of {server}"
        );
    }

    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    let mut fresh = Vec::new();
    for i in 0..20 {
        let c = client::connect(cluster.endpoint(), &format!("new-{i}"), None)
            .await
            .unwrap();
        *placed.entry(c.node.clone()).or_default() += 1;
        fresh.push(c);
    }
    println!("placement: 20 new clients went to {placed:?} (loaded node {loaded})");
    assert_eq!(
        placed.get(&loaded),
        None,
        "a new client went to the loaded node"
    );
    assert_eq!(
        placed.len(),
        2,
        "both idle nodes take new clients: {placed:?}"
    );
    assert!(
        placed.values().all(|n| *n >= 8),
        "uneven split between equal nodes: {placed:?}"
    );
}
