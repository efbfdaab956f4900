//! Leader election against the fake API server: acquiring and renewing the Lease, staying
//! standby (no reconciles at all) while another replica renews it, taking over when it stops,
//! stepping down when the Lease is taken, and releasing it on shutdown.

use chatcluster_operator::controller::run_with_leader_election;
use chatcluster_operator::leader::{LeaderElector, LeaseConfig};

use super::*;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/chatcluster-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "chatcluster-operator".into(),
        namespace: "ops".into(),
        identity: identity.into(),
        lease_duration: Duration::from_millis(1000),
        renew_interval: Duration::from_millis(100),
        retry_interval: Duration::from_millis(100),
    }
}

fn lease_of(holder: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "chatcluster-operator", "namespace": "ops", "resourceVersion": rv.to_string()},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 1, "leaseTransitions": 0}
    })
}

pub async fn acquire_and_renew() -> Vec<Recorded> {
    let (client, fake) = FakeApi::start();
    let mut elector = LeaderElector::new(client, config("me"));
    assert!(
        elector.try_acquire_or_renew().await.unwrap(),
        "a missing Lease is created"
    );
    let created = fake.object(LEASE).expect("Lease created");
    assert_eq!(created["spec"]["holderIdentity"], "me");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 1);
    assert!(
        elector.try_acquire_or_renew().await.unwrap(),
        "our Lease is renewed"
    );
    let writes = fake.writes();
    assert_eq!(
        writes.iter().map(Recorded::line).collect::<Vec<_>>(),
        vec![
            format!("GET {LEASE}"),
            format!("POST {LEASES}"),
            format!("GET {LEASE}"),
            format!("PUT {LEASE}")
        ]
    );
    let renewal = writes[3].body.as_ref().unwrap();
    assert_eq!(
        renewal["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "optimistic concurrency"
    );
    assert_ne!(
        renewal["spec"]["renewTime"], created["spec"]["renewTime"],
        "renewTime moves"
    );
    // Someone else took the Lease: we see a fresh record held by another and stand by.
    fake.put_object(LEASE, lease_of("other", 500));
    assert!(
        !elector.try_acquire_or_renew().await.unwrap(),
        "another holder's fresh Lease is respected"
    );
    assert_eq!(
        fake.writes().last().unwrap().line(),
        format!("GET {LEASE}"),
        "no write while standby"
    );
    fake.log()
}

#[tokio::test]
async fn acquires_a_missing_lease_then_renews_it() {
    acquire_and_renew().await;
}

pub async fn standby_then_takeover() -> Vec<Recorded> {
    let (client, fake) = FakeApi::start();
    let cc = ChatCluster::test();
    fake.set_list(CC_LIST, vec![cc_json(&cc)]);
    fake.put_object(LEASE, lease_of("other", 1));
    // The other replica renews every 200 ms until told to stop.
    let renewer_stop = CancellationToken::new();
    let renewer = {
        let (fake, stop) = (fake.clone(), renewer_stop.clone());
        tokio::spawn(async move {
            let mut rv = 1;
            while !stop.is_cancelled() {
                rv += 1;
                fake.put_object(LEASE, lease_of("other", rv));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let elector = LeaderElector::new(client.clone(), config("me"));
    let task = tokio::spawn(run_with_leader_election(
        client,
        settings(),
        metrics.clone(),
        elector,
        shutdown.clone(),
    ));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = fake.log();
    assert!(
        log.iter()
            .filter(|r| r.path == LEASE && r.method == "GET")
            .count()
            >= 5,
        "standby keeps checking"
    );
    assert!(
        log.iter()
            .all(|r| !r.path.starts_with("/apis/chatcluster.io")),
        "a standby must not touch ChatClusters"
    );
    assert!(
        log.iter().all(|r| r.method == "GET"),
        "a standby writes nothing: {:?}",
        log.iter().map(Recorded::line).collect::<Vec<_>>()
    );
    assert!(metrics.encode().contains("chatcluster_operator_leader 0"));

    renewer_stop.cancel();
    renewer.await.unwrap();
    let takeover = fake
        .wait_for("take-over of the expired Lease", WAIT, |log| {
            log.iter().any(|r| {
                r.method == "PUT"
                    && r.body
                        .as_ref()
                        .is_some_and(|b| b["spec"]["holderIdentity"] == "me")
            })
        })
        .await;
    let put = takeover.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.body.as_ref().unwrap()["spec"]["leaseTransitions"], 1);
    fake.wait_for("the leader's first status write", WAIT, |log| {
        log.iter().any(|r| r.path == STATUS)
    })
    .await;
    assert!(metrics.encode().contains("chatcluster_operator_leader 1"));

    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops on shutdown")
        .unwrap();
    let released = fake.object(LEASE).unwrap();
    assert!(
        released["spec"]["holderIdentity"].is_null(),
        "released on shutdown: {released}"
    );
    fake.log()
}

#[tokio::test]
async fn a_standby_does_not_reconcile_until_the_lease_expires() {
    standby_then_takeover().await;
}

#[tokio::test]
async fn the_leader_steps_down_when_another_replica_takes_the_lease() {
    let (client, fake) = FakeApi::start();
    let cc = ChatCluster::test();
    fake.set_list(CC_LIST, vec![cc_json(&cc)]);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let elector = LeaderElector::new(client.clone(), config("me"));
    let task = tokio::spawn(run_with_leader_election(
        client,
        settings(),
        metrics.clone(),
        elector,
        shutdown.clone(),
    ));
    fake.wait_for("the leader's first status write", WAIT, |log| {
        log.iter().any(|r| r.path == STATUS)
    })
    .await;
    assert!(metrics.encode().contains("chatcluster_operator_leader 1"));

    // Another replica overwrites the Lease (as after a network partition).
    fake.put_object(LEASE, lease_of("other", 9000));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !metrics.encode().contains("chatcluster_operator_leader 0") {
        assert!(tokio::time::Instant::now() < deadline, "did not step down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stepped down: the controller is stopped, so a requeue or change would not be reconciled.
    let writes_after = fake.writes().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new: Vec<String> = fake.writes()[writes_after..]
        .iter()
        .map(Recorded::line)
        .collect();
    assert!(
        new.iter().all(|l| l == &format!("GET {LEASE}")),
        "a standby only reads the Lease: {new:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops on shutdown")
        .unwrap();
    assert_eq!(
        fake.object(LEASE).unwrap()["spec"]["holderIdentity"],
        "other",
        "never release someone else's Lease"
    );
}

#[tokio::test]
async fn the_leader_steps_down_when_it_cannot_renew_in_time() {
    let (client, fake) = FakeApi::start();
    fake.set_list(CC_LIST, vec![cc_json(&ChatCluster::test())]);
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let elector = LeaderElector::new(client.clone(), config("me"));
    let task = tokio::spawn(run_with_leader_election(
        client,
        settings(),
        metrics.clone(),
        elector,
        shutdown.clone(),
    ));
    fake.wait_for("the leader's first status write", WAIT, |log| {
        log.iter().any(|r| r.path == STATUS)
    })
    .await;
    // The API server stops answering Lease requests (for example a partition).
    fake.fail("GET", LEASE, 500, 1_000);
    let failing_since = tokio::time::Instant::now();
    let deadline = failing_since + WAIT;
    while !metrics.encode().contains("chatcluster_operator_leader 0") {
        assert!(tokio::time::Instant::now() < deadline, "did not step down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Before the 1 s Lease could expire for the others.
    assert!(
        failing_since.elapsed() < config("me").lease_duration,
        "stepped down after {:?}",
        failing_since.elapsed()
    );
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
