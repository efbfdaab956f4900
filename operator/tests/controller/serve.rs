//! `controller::serve`, the body of `chatcluster-operator run`: admin endpoints, the CRD check
//! gating readiness, the controller, and a clean stop on the shutdown future.

use chatcluster_operator::controller::{RunArgs, serve};
use chatcluster_operator::error::Error;
use clap::Parser;
use kube::CustomResourceExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const CRD: &str =
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/chatclusters.chatcluster.io";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: RunArgs,
}

fn args() -> RunArgs {
    Cli::parse_from([
        "chatcluster-operator",
        "--identity",
        "test-pod",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .args
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let code = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn run_reports_ready_after_the_crd_check_and_stops_on_shutdown() {
    let (client, fake) = FakeApi::start();
    fake.put_object(CRD, serde_json::to_value(ChatCluster::crd()).unwrap());
    fake.set_list(CC_LIST, vec![cc_json(&ChatCluster::test())]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(args(), client, listener, async {
        let _ = stopped.await;
    }));
    fake.wait_for("a status write", WAIT, |log| {
        log.iter().any(|r| r.path == STATUS)
    })
    .await;
    assert_eq!(
        fake.log()[0].line(),
        format!("GET {CRD}"),
        "the CRD is checked before anything else"
    );
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (code, metrics) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("chatcluster_operator_reconciles_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chatcluster_operator_leader 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chatcluster_operator_reconcile_duration_seconds_count 1"),
        "{metrics}"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the admin port is closed"
    );
}

#[tokio::test]
async fn run_refuses_to_start_without_the_crd() {
    let (client, fake) = FakeApi::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        WAIT,
        serve(args(), client, listener, std::future::pending()),
    )
    .await;
    let err = result.expect("returns promptly").expect_err("no CRD");
    assert!(matches!(err, Error::CrdMissing { .. }), "{err}");
    assert!(err.to_string().contains("install the Helm chart"), "{err}");
    assert!(
        fake.log()
            .iter()
            .all(|r| !r.path.starts_with("/apis/chatcluster.io")),
        "no watch without the CRD"
    );
}
