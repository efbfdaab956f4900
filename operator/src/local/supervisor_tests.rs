//! Supervisor tests with tiny real processes (`sh`, `sleep`): ordered start, restart of a dying
//! child, startup failures that leave nothing behind, drain-first shutdown, and the kill switch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::child::{Backoff, ChildSpec, StopPolicy};
use super::error::Error;
use super::probe::Probe;
use super::supervisor::{Supervisor, SupervisorOptions};

const MARK: &str = "CHATCLUSTER_SUPERVISOR_TEST";

/// A unique marker per test so parallel tests do not see each other's processes.
fn marker() -> String {
    format!("{}-{}", std::process::id(), rand::random::<u64>())
}

fn sh(name: &str, stage: u8, script: &str, mark: &str) -> ChildSpec {
    ChildSpec {
        name: name.into(),
        program: PathBuf::from("sh"),
        args: vec!["-c".into(), script.into()],
        env: vec![(MARK.into(), mark.into())],
        probe: Probe::Started,
        stop: StopPolicy::Terminate,
        stage,
    }
}

fn fast() -> SupervisorOptions {
    SupervisorOptions {
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            reset_after: Duration::from_secs(10),
        },
        ready_timeout: Duration::from_secs(5),
        max_start_failures: 3,
    }
}

fn live(mark: &str) -> Vec<u32> {
    testkit::processes_with_env(MARK, mark)
}

/// A port nothing listens on, for a probe that never passes.
fn dead_port_probe() -> Probe {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Probe::Tcp(addr)
}

#[tokio::test]
async fn starts_every_child_and_stops_them_all() {
    let mark = marker();
    let specs = vec![
        sh("redis", 0, "exec sleep 100", &mark),
        sh("node-0", 1, "sleep 100 & wait", &mark),
        sh("node-1", 1, "exec sleep 100", &mark),
    ];
    let mut sup = Supervisor::launch(specs, fast()).await.unwrap();
    let pids = sup.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|(_, pid)| pid.is_some()), "{pids:?}");
    // node-0's shell and its `sleep` grandchild both carry the marker.
    assert_eq!(live(&mark).len(), 4, "{:?}", live(&mark));
    sup.shutdown().await;
    assert!(live(&mark).is_empty(), "left behind: {:?}", live(&mark));
}

#[tokio::test]
async fn a_child_that_dies_is_restarted() {
    let mark = marker();
    let specs = vec![sh("flaky", 0, "sleep 0.2; exit 1", &mark)];
    let mut sup = Supervisor::launch(specs, fast()).await.unwrap();
    let first = sup.pids()[0].1.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while sup.status("flaky").unwrap().starts < 3 {
            sup.changed().await;
        }
    })
    .await
    .expect("flaky was not restarted twice within 5s");
    let status = sup.status("flaky").unwrap();
    assert!(status.unexpected_exits >= 2, "{status:?}");
    assert_eq!(status.last_exit.as_deref(), Some("exit status: 1"));
    sup.shutdown().await;
    assert!(live(&mark).is_empty());
    assert!(first > 0);
}

#[tokio::test]
async fn crash_at_start_fails_startup_and_leaves_nothing_behind() {
    let mark = marker();
    let mut crasher = sh("crasher", 1, "echo cannot bind >&2; exit 3", &mark);
    crasher.probe = dead_port_probe();
    let specs = vec![sh("redis", 0, "exec sleep 100", &mark), crasher];
    let err = match Supervisor::launch(specs, fast()).await {
        Ok(_) => panic!("startup succeeded with a crashing child"),
        Err(err) => err,
    };
    match &err {
        Error::ChildCrashed {
            child,
            exits,
            last_exit,
        } => {
            assert_eq!(child, "crasher");
            assert_eq!(*exits, 3);
            assert_eq!(last_exit, "exit status: 3");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(live(&mark).is_empty(), "left behind: {:?}", live(&mark));
}

#[tokio::test]
async fn a_missing_binary_is_reported_and_earlier_children_stopped() {
    let mark = marker();
    let mut missing = sh("haproxy", 1, "", &mark);
    missing.program = PathBuf::from("/nonexistent/haproxy");
    let specs = vec![sh("redis", 0, "exec sleep 100", &mark), missing];
    let err = Supervisor::launch(specs, fast())
        .await
        .err()
        .expect("startup must fail");
    assert!(
        matches!(&err, Error::ChildCannotStart { child, .. } if child == "haproxy"),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/haproxy"), "{err}");
    assert!(live(&mark).is_empty());
}

#[tokio::test]
async fn a_child_that_never_gets_ready_times_out_by_name() {
    let mark = marker();
    let mut slow = sh("chat-node-0", 0, "exec sleep 100", &mark);
    slow.probe = dead_port_probe();
    let mut options = fast();
    options.ready_timeout = Duration::from_millis(500);
    let err = Supervisor::launch(vec![slow], options)
        .await
        .err()
        .expect("must time out");
    assert!(
        matches!(&err, Error::NotReady { waiting, .. } if waiting == &["chat-node-0"]),
        "{err}"
    );
    assert!(live(&mark).is_empty());
}

fn log_trap(name: &str, stage: u8, log: &Path, on_term: &str, mark: &str) -> ChildSpec {
    let log = log.display();
    let script = format!(
        "trap 'echo {name}-term >> {log}; {on_term} echo {name}-exit >> {log}; exit 0' TERM; \
         while :; do sleep 0.05; done"
    );
    sh(name, stage, &script, mark)
}

#[tokio::test]
async fn shutdown_drains_nodes_before_stopping_the_proxy_and_redis() {
    let mark = marker();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let mut node = log_trap("node", 1, &log, "sleep 0.4;", &mark);
    node.stop = StopPolicy::Drain {
        grace: Duration::from_secs(2),
    };
    let specs = vec![
        log_trap("redis", 0, &log, "", &mark),
        node,
        log_trap("proxy", 2, &log, "", &mark),
    ];
    let mut sup = Supervisor::launch(specs, fast()).await.unwrap();
    sup.shutdown().await;
    let order = std::fs::read_to_string(&log).unwrap();
    let order: Vec<&str> = order.lines().collect();
    assert_eq!(
        order,
        [
            "node-term",
            "node-exit",
            "proxy-term",
            "proxy-exit",
            "redis-term",
            "redis-exit"
        ]
    );
    assert!(live(&mark).is_empty());
}

#[tokio::test]
async fn the_kill_switch_cuts_a_long_drain_short() {
    let mark = marker();
    // Ignores SIGTERM and has a grandchild: only a group SIGKILL ends both.
    let mut stubborn = sh(
        "stubborn",
        0,
        "trap '' TERM; sleep 100 & wait; sleep 100",
        &mark,
    );
    stubborn.stop = StopPolicy::Drain {
        grace: Duration::from_secs(60),
    };
    let mut sup = Supervisor::launch(vec![stubborn], fast()).await.unwrap();
    let kill = sup.kill_switch();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        kill.cancel();
    });
    tokio::time::timeout(Duration::from_secs(5), sup.shutdown())
        .await
        .expect("the kill switch did not end the drain");
    assert!(live(&mark).is_empty(), "left behind: {:?}", live(&mark));
}

#[tokio::test]
async fn children_can_be_added_and_retired_while_others_keep_running() {
    let mark = marker();
    let mut sup = Supervisor::launch(vec![sh("redis", 0, "exec sleep 100", &mark)], fast())
        .await
        .unwrap();
    let mut node = sh("node-1", 1, "exec sleep 100", &mark);
    node.stop = StopPolicy::Drain {
        grace: Duration::from_secs(1),
    };
    sup.add(vec![node, sh("node-1-sidecar", 1, "exec sleep 100", &mark)]);
    tokio::time::timeout(Duration::from_secs(5), async {
        while live(&mark).len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("added children did not start");
    sup.retire(&["node-1".to_owned(), "node-1-sidecar".to_owned()]);
    tokio::time::timeout(Duration::from_secs(5), async {
        while live(&mark).len() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("retired children did not stop");
    assert!(
        sup.status("redis").unwrap().pid.is_some(),
        "the others keep running"
    );
    assert!(sup.status("node-1").is_none());
    sup.shutdown().await;
    assert!(live(&mark).is_empty());
}
