//! Test 8, clean shutdown: after Ctrl-C (SIGINT) or SIGTERM, local mode drains and exits and no
//! process it started remains; a child that crashes at start fails local mode without leaving
//! anything behind either.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{LocalCluster, Signal, cluster_yaml};
use crate::{SERIAL, client};

async fn stops_everything_on(signal: Signal, test: &str) {
    let _serial = SERIAL.lock().await;
    let mut cluster = LocalCluster::start(test, &cluster_yaml("chat", 3, 2)).unwrap();
    let state = cluster.current();
    let pids: Vec<u32> = state.children.iter().filter_map(|c| c.pid).collect();
    assert_eq!(
        pids.len(),
        8,
        "redis, 3 x (chat-node + sidecar), haproxy: {:?}",
        state.children
    );
    // HAProxy in master-worker mode has a worker too: more processes than children.
    let live = cluster.live_processes();
    assert!(
        live.len() >= 9,
        "expected every child and the haproxy worker, got {live:?}"
    );
    // Open connections, so the drain has something to close.
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(
            client::connect(cluster.endpoint(), &format!("u{i}"), None)
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let status =
        tokio::task::block_in_place(|| cluster.stop_with(signal, Duration::from_secs(20))).unwrap();
    println!(
        "{test}: local mode exited with {status} after {:?}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "local mode exited with {status}; see {}",
        cluster.log.display()
    );
    let left = cluster.live_processes();
    assert!(
        left.is_empty(),
        "processes left behind after {signal:?}: {left:?}"
    );
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_and_leaves_no_process_behind() {
    stops_everything_on(Signal::Int, "shutdown_sigint").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_leaves_no_process_behind() {
    stops_everything_on(Signal::Term, "shutdown_sigterm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_crashing_at_start_fails_local_mode_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("chatcluster.yaml");
    std::fs::write(&manifest, cluster_yaml("chat", 2, 2)).unwrap();
    let operator = testkit::workspace_bin("chatcluster-operator").unwrap();
    let run_id = format!("crash-at-start-{}", std::process::id());
    // `false` stands in for an HAProxy that cannot start (a port in use, a bad config): it
    // exits at once, after Redis and the nodes are already up.
    let out = tokio::task::block_in_place(|| {
        Command::new(&operator)
            .arg("local")
            .arg("-f")
            .arg(&manifest)
            .args(["--port", "0", "--haproxy-bin", "false", "--run-id", &run_id])
            .arg("--bin-dir")
            .arg(operator.parent().unwrap())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "local mode succeeded with a crashing haproxy"
    );
    assert!(
        stderr.contains("haproxy exited 3 times before it became ready"),
        "the error must name the child: {stderr}"
    );
    let left = testkit::processes_with_env("CHATCLUSTER_LOCAL_RUN", &run_id);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
