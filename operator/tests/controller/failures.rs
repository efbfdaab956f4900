//! Failure scenarios: an invalid spec, API errors on apply (requeue with backoff through the
//! error policy), and the startup CRD check. Each `pub async fn` returns the request log for
//! the RBAC test.

use std::sync::Arc;

use chatcluster_operator::controller::{Context, OwnedStores, check_crd, error_policy};
use chatcluster_operator::crd::validate;
use chatcluster_operator::error::Error;
use kube::CustomResourceExt;
use kube::runtime::controller::Action;

use super::scenarios::{chat_node_path, lines, secret_of};
use super::*;

pub async fn invalid_spec() -> Vec<Recorded> {
    let cc = ChatCluster::test().with_spec(|s| {
        s.replicas = 10;
        s.haproxy.server_slots = 4;
    });
    let reason = validate(&cc)
        .expect_err("more replicas than server slots")
        .reason();
    let run = start(&cc, &[], |_| {});
    let writes = run.wait_status_writes(1).await;
    assert_eq!(
        lines(&writes),
        vec![format!("PATCH {STATUS}"), format!("POST {EVENTS}")],
        "nothing applied"
    );
    let status = &writes[0].body.as_ref().unwrap()["status"];
    let degraded = condition(status, "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some(reason))
    );
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("serverSlots"),
        "{degraded}"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    let event = writes[1].body.as_ref().unwrap();
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some(reason))
    );
    assert_eq!(event["regarding"]["name"], "chat");
    assert_eq!(event["reportingController"], "chatcluster-operator");
    assert!(
        run.metrics
            .encode()
            .contains(r#"reconcile_errors_total{reason="invalid_spec"} 1"#)
    );
    run.stop().await
}

#[tokio::test]
async fn invalid_spec_writes_degraded_and_applies_nothing() {
    invalid_spec().await;
}

pub async fn api_error(code: u16, label: &str) -> Vec<Recorded> {
    let cc = ChatCluster::test();
    let planned = objects(&cc);
    let sts_path = chat_node_path(&planned);
    let run = start(&cc, &[], |fake| fake.fail("PATCH", &sts_path, code, 1));
    let writes = run.wait_status_writes(2).await;
    let failed_at = writes.iter().position(|w| w.path == sts_path).unwrap();
    let after_failure = &writes[failed_at + 1..];
    assert_eq!(
        after_failure[0].line(),
        format!("PATCH {STATUS}"),
        "the failure is recorded in status"
    );
    let degraded = condition(
        &after_failure[0].body.as_ref().unwrap()["status"],
        "Degraded",
    )
    .clone();
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("ApplyFailed"))
    );
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains(&format!("injected failure {code}")),
        "{degraded}"
    );
    assert_eq!(
        after_failure[1].line(),
        format!("POST {EVENTS}"),
        "a Warning event"
    );
    // error_policy requeued: the retry comes after the backoff, without any watch event.
    let retry = &after_failure[2];
    assert!(
        retry.at - writes[failed_at].at >= settings().backoff_base,
        "retry waited for the backoff"
    );
    assert!(
        after_failure.iter().any(|w| w.path == sts_path),
        "the retry applies the StatefulSet again: {:?}",
        lines(after_failure)
    );
    let secret = secret_of(&planned);
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.method == "POST" && w.path.ends_with("/secrets"))
            .count(),
        1,
        "the key is created once"
    );
    assert!(
        after_failure
            .iter()
            .any(|w| w.line() == format!("GET {}", path_of(secret))),
        "the retry finds the Secret"
    );
    // The retry knows what it wrote although the ChatCluster cache has not seen it yet: it
    // clears Degraded and says so once.
    let tail: Vec<String> = lines(&writes[writes.len() - 2..]);
    assert_eq!(
        tail,
        vec![format!("PATCH {STATUS}"), format!("POST {EVENTS}")]
    );
    let recovered = &writes[writes.len() - 2].body.as_ref().unwrap()["status"];
    assert_eq!(condition(recovered, "Degraded")["status"], "False");
    assert_eq!(
        writes.last().unwrap().body.as_ref().unwrap()["reason"],
        "Recovered"
    );
    assert!(
        run.metrics
            .encode()
            .contains(&format!(r#"reconcile_errors_total{{reason="{label}"}} 1"#))
    );
    run.stop().await
}

#[tokio::test]
async fn a_server_error_on_apply_requeues_with_backoff() {
    api_error(500, "kube_server_error").await;
}

#[tokio::test]
async fn a_conflict_on_apply_requeues_with_backoff() {
    api_error(409, "kube_conflict").await;
}

#[tokio::test]
async fn error_policy_backs_off_exponentially_per_cluster() {
    let (client, _fake) = FakeApi::start();
    let controller = kube::runtime::Controller::new(
        kube::Api::<ChatCluster>::all(client.clone()),
        kube::runtime::watcher::Config::default(),
    );
    let (_controller, stores) = OwnedStores::attach(controller, &client);
    let ctx = Arc::new(Context::new(client, settings(), stores, Metrics::new()));
    let conflict = || {
        Error::kube(
            "apply",
            kube::Error::Api(
                kube::core::Status::failure("busy", "Conflict")
                    .with_code(409)
                    .boxed(),
            ),
        )
    };
    let (a, b) = (
        Arc::new(ChatCluster::test()),
        Arc::new(ChatCluster::test().named("other")),
    );
    let ms = Duration::from_millis;
    assert_eq!(
        error_policy(a.clone(), &conflict(), ctx.clone()),
        Action::requeue(ms(100))
    );
    assert_eq!(
        error_policy(a.clone(), &conflict(), ctx.clone()),
        Action::requeue(ms(200))
    );
    assert_eq!(
        error_policy(b, &conflict(), ctx.clone()),
        Action::requeue(ms(100)),
        "per cluster"
    );
    for _ in 0..5 {
        error_policy(a.clone(), &conflict(), ctx.clone());
    }
    assert_eq!(
        error_policy(a, &conflict(), ctx.clone()),
        Action::requeue(ms(800)),
        "capped"
    );
    assert!(
        ctx.metrics
            .encode()
            .contains(r#"reconcile_errors_total{reason="kube_conflict"} 9"#)
    );
}

pub async fn crd_check() -> Vec<Recorded> {
    let (client, fake) = FakeApi::start();
    let err = check_crd(&client).await.expect_err("no CRD installed");
    assert!(matches!(err, Error::CrdMissing { .. }));
    assert!(
        err.to_string()
            .contains("kubectl apply -f crds/chatcluster.yaml"),
        "{err}"
    );
    let path =
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/chatclusters.chatcluster.io";
    fake.put_object(path, serde_json::to_value(ChatCluster::crd()).unwrap());
    check_crd(&client).await.expect("the CRD is installed");
    fake.log()
}

#[tokio::test]
async fn the_crd_check_explains_how_to_install_a_missing_crd() {
    crd_check().await;
}
