//! Smoke run of the load generator (the only benchmark code CI runs): a few hundred clients in
//! rooms of 10, spread over two real chat-nodes behind a real HAProxy with a real Redis, send
//! timestamped, sequence-numbered messages for a couple of seconds; every reading client must
//! receive every message of its room exactly once. Needs `cargo build --workspace --bins`.

use std::time::Duration;

use chatcluster_bench::adapter::System;
use chatcluster_bench::cluster::{Cluster, ClusterSpec};
use chatcluster_bench::run::{Fleet, LoadSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let spec = ClusterSpec {
        system: System::Chatcluster,
        nodes: 2,
        proxies: 1,
        node_bin: testkit::workspace_bin("chat-node")?,
        socketio_dir: "socketio".into(),
        node_args: Vec::new(),
        capacity: 1000,
    };
    let cluster = Cluster::start(&spec).await?;
    let mut fleet = Fleet::new(LoadSpec {
        system: System::Chatcluster,
        urls: cluster.client_urls.clone(),
        room_size: 10,
        slow_every: 0,
        pad_bytes: 32,
        no_join: false,
        source_addrs: vec!["127.0.0.2".parse()?, "127.0.0.3".parse()?],
        concurrency: 32,
        max_seconds: 60,
        exe: testkit::workspace_bin("chatcluster-bench")?,
        cpus: None,
    });
    let outcome = async {
        fleet.add(300, 2, 300).await?;
        fleet.step(200.0, Duration::from_secs(2), false).await
    };
    let totals = tokio::time::timeout(Duration::from_secs(25), outcome).await;
    fleet.close().await;
    cluster.stop().await;
    let totals = totals??;

    println!(
        "smoke: sent {} expected {} received {} dup {} lost {} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        totals.sent,
        totals.expected,
        totals.received,
        totals.duplicates,
        totals.lost(),
        totals.percentile_ms(0.5),
        totals.percentile_ms(0.99),
        totals.max_ms()
    );
    assert!(
        totals.sent >= 300,
        "the load generator sent too little: {}",
        totals.sent
    );
    assert_eq!(
        totals.expected,
        totals.sent * 10,
        "rooms of 10, every member reads"
    );
    assert_eq!(totals.lost(), 0, "every member receives every room message");
    assert_eq!(totals.duplicates, 0, "no message arrives twice");
    assert_eq!(totals.errors, 0, "no error events");
    assert_eq!(totals.dropped, 0, "no client was disconnected");
    Ok(())
}
