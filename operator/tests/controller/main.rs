//! The real `kube::runtime::Controller` against a fake API server (`tower_test::mock::pair`),
//! in named scenarios that check the exact requests the reconciler sends, plus leader election
//! and the RBAC rules derived from that traffic. Every wait has a timeout, so a missing request
//! fails with the request log instead of hanging.

mod failures;
mod fake_api;

use std::time::Duration;

use chatcluster_operator::apply::{Mode, Object};
use chatcluster_operator::controller::{Settings, plan, run_controller};
use chatcluster_operator::crd::ChatCluster;
use chatcluster_operator::crd::testing::TEST_UID;
use chatcluster_operator::defaults::OperatorDefaults;
use chatcluster_operator::metrics::Metrics;
use fake_api::{FakeApi, Recorded};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
/// After the awaited request, how long to watch for requests that must not come.
const SETTLE: Duration = Duration::from_millis(300);
const CC_LIST: &str = "/apis/chatcluster.io/v1alpha1/chatclusters";
const STATUS: &str = "/apis/chatcluster.io/v1alpha1/namespaces/default/chatclusters/chat/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const OWNED_LISTS: [&str; 7] = [
    "/apis/apps/v1/statefulsets",
    "/apis/apps/v1/deployments",
    "/api/v1/services",
    "/api/v1/configmaps",
    "/api/v1/secrets",
    "/apis/policy/v1/poddisruptionbudgets",
    "/apis/networking.k8s.io/v1/networkpolicies",
];

/// The API path of a planned object.
fn path_of(o: &Object) -> String {
    let r = &o.resource;
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    format!(
        "{prefix}/namespaces/{}/{}/{}",
        o.namespace, r.plural, o.name
    )
}

fn objects(cc: &ChatCluster) -> Vec<Object> {
    plan(cc, &OperatorDefaults::default(), "test-key")
        .unwrap()
        .unwrap()
        .objects
}

fn cc_json(cc: &ChatCluster) -> Value {
    serde_json::to_value(cc).unwrap()
}

/// The object as the API server would hold it after an earlier apply by the operator.
fn live(o: &Object) -> Value {
    let mut v = o.body.clone();
    v["metadata"]["uid"] = json!(format!("uid-{}", o.name));
    v["metadata"]["resourceVersion"] = json!("10");
    v["metadata"]["generation"] = json!(1);
    v["metadata"]["managedFields"] = json!([{
        "manager": "chatcluster-operator", "operation": "Apply", "apiVersion": o.resource.api_version,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}
    }]);
    v
}

struct Running {
    fake: FakeApi,
    metrics: Metrics,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn settings() -> Settings {
    Settings {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(800),
        resync: Duration::from_secs(3600),
        cache_timeout: Duration::from_secs(5),
        instance: Some("test-pod".into()),
        ..Settings::default()
    }
}

/// Starts the real controller against a fake whose lists hold `cc` and `owned` objects.
fn start(cc: &ChatCluster, owned: &[Value], setup: impl FnOnce(&FakeApi)) -> Running {
    let (client, fake) = FakeApi::start();
    fake.set_list(CC_LIST, vec![cc_json(cc)]);
    for list in OWNED_LISTS {
        let kind_plural = list.rsplit('/').next().unwrap();
        let items: Vec<Value> = owned
            .iter()
            .filter(|o| {
                let kind = o["kind"].as_str().unwrap().to_lowercase();
                kind_plural == format!("{kind}s")
                    || (kind == "networkpolicy" && kind_plural == "networkpolicies")
            })
            .cloned()
            .collect();
        fake.set_list(list, items);
    }
    setup(&fake);
    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_controller(
        client,
        settings(),
        metrics.clone(),
        stop.clone().cancelled_owned(),
    ));
    Running {
        fake,
        metrics,
        stop,
        task,
    }
}

impl Running {
    async fn wait_status_writes(&self, n: usize) -> Vec<Recorded> {
        self.fake
            .wait_for(&format!("{n} status write(s)"), WAIT, |log| {
                log.iter().filter(|r| r.path == STATUS).count() >= n
            })
            .await;
        tokio::time::sleep(SETTLE).await;
        self.fake.writes()
    }

    /// Stops the controller and checks it shuts down promptly (graceful_shutdown_on).
    async fn stop(self) -> Vec<Recorded> {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("controller stops on shutdown")
            .unwrap();
        self.fake.log()
    }
}

fn assert_ssa(r: &Recorded) {
    assert!(
        r.is_apply(),
        "{} must be a server-side apply, content type {}",
        r.line(),
        r.content_type
    );
    assert_eq!(
        r.query.get("fieldManager").map(String::as_str),
        Some("chatcluster-operator"),
        "{}",
        r.line()
    );
    assert_eq!(
        r.query.get("force").map(String::as_str),
        Some("true"),
        "{}",
        r.line()
    );
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

mod leader;
mod rbac;
mod scenarios;
mod serve;
