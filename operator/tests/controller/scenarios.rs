//! Named reconcile scenarios. Each `pub async fn` returns the full request log so the RBAC test
//! can replay them all; the `#[tokio::test]` wrappers run them one by one.

use super::*;

pub fn lines(writes: &[Recorded]) -> Vec<String> {
    writes.iter().map(Recorded::line).collect()
}

pub fn secret_of(planned: &[Object]) -> &Object {
    planned
        .iter()
        .find(|o| o.mode == Mode::CreateIfAbsent)
        .expect("a generated cookie Secret")
}

pub fn applied_of(planned: &[Object]) -> Vec<&Object> {
    planned.iter().filter(|o| o.mode == Mode::Apply).collect()
}

pub fn chat_node_path(planned: &[Object]) -> String {
    let sts = planned
        .iter()
        .find(|o| {
            o.resource.kind == "StatefulSet"
                && o.body["metadata"]["labels"]["app.kubernetes.io/component"] == "chat-node"
        })
        .expect("chat-node StatefulSet");
    path_of(sts)
}

pub async fn first_reconcile() -> Vec<Recorded> {
    let cc = ChatCluster::test();
    let planned = objects(&cc);
    let secret = secret_of(&planned);
    let run = start(&cc, &[], |_| {});
    let writes = run.wait_status_writes(1).await;

    let mut expected = vec![
        format!("GET {}", path_of(secret)),
        format!("POST {}", path_of(secret).rsplit_once('/').unwrap().0),
    ];
    expected.extend(
        applied_of(&planned)
            .iter()
            .map(|o| format!("PATCH {}", path_of(o))),
    );
    expected.push(format!("PATCH {STATUS}"));
    assert_eq!(
        lines(&writes),
        expected,
        "secret first, every object applied once in order, then status"
    );

    let created = writes[1].body.as_ref().unwrap();
    assert_eq!(created["metadata"]["ownerReferences"][0]["uid"], TEST_UID);
    let key = created["data"]["cookie-key"]
        .as_str()
        .expect("cookie key data");
    assert_eq!(key.len(), 88, "base64 of a 64-character hex key: {key}");
    for (request, object) in writes[2..writes.len() - 1].iter().zip(applied_of(&planned)) {
        assert_ssa(request);
        assert_eq!(
            request.body.as_ref().unwrap(),
            &object.body,
            "{}",
            request.line()
        );
        let owner = &object.body["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["uid"].as_str(), owner["controller"].as_bool()),
            (Some(TEST_UID), Some(true))
        );
    }

    let status_write = writes.last().unwrap();
    assert_ssa(status_write);
    let body = status_write.body.as_ref().unwrap();
    assert_eq!(
        (body["apiVersion"].as_str(), body["kind"].as_str()),
        (Some("chatcluster.io/v1alpha1"), Some("ChatCluster"))
    );
    let status = &body["status"];
    let desired =
        chatcluster_operator::desired::desired_state(&cc, &OperatorDefaults::default()).unwrap();
    assert_eq!(status["selector"], desired.selector.as_str());
    assert_eq!(status["endpoint"], desired.endpoint.as_str());
    assert_eq!(
        condition(status, "Ready")["status"],
        "False",
        "no pod is ready yet"
    );
    assert_eq!(condition(status, "Progressing")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");
    assert!(
        run.metrics
            .encode()
            .contains(r#"chatcluster_operator_objects_applied_total{kind="StatefulSet"} 2"#)
    );
    run.stop().await
}

#[tokio::test]
async fn first_reconcile_applies_every_object_and_writes_status() {
    first_reconcile().await;
}

pub async fn replica_change() -> Vec<Recorded> {
    let old = ChatCluster::test();
    let new = ChatCluster::test().replicas(5).generation(2);
    let (before, after) = (objects(&old), objects(&new));
    let owned: Vec<Value> = before.iter().map(live).collect();
    let changed: Vec<String> = applied_of(&after)
        .into_iter()
        .filter(|o| {
            before
                .iter()
                .find(|b| path_of(b) == path_of(o))
                .is_none_or(|b| b.hash != o.hash)
        })
        .map(path_of)
        .collect();
    assert!(
        changed.contains(&chat_node_path(&after)),
        "the chat-node StatefulSet carries the replicas"
    );
    assert!(
        changed.len() < applied_of(&after).len(),
        "a replica change must leave some objects alone: {changed:?}"
    );

    let run = start(&new, &owned, |_| {});
    let writes = run.wait_status_writes(1).await;
    let mut expected: Vec<String> = changed.iter().map(|p| format!("PATCH {p}")).collect();
    expected.push(format!("PATCH {STATUS}"));
    assert_eq!(
        lines(&writes),
        expected,
        "only what changed is patched; the cached Secret is not even read"
    );
    for w in &writes {
        assert_ssa(w);
    }
    let sts = &writes[changed
        .iter()
        .position(|p| *p == chat_node_path(&after))
        .unwrap()];
    assert_eq!(sts.body.as_ref().unwrap()["spec"]["replicas"], 5);
    let unchanged = applied_of(&after).len() - changed.len();
    let metrics = run.metrics.encode();
    let skipped: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("chatcluster_operator_objects_unchanged_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(skipped as usize, unchanged, "{metrics}");
    run.stop().await
}

#[tokio::test]
async fn replica_change_patches_only_what_changed() {
    replica_change().await;
}

#[tokio::test]
async fn an_owned_object_edited_by_someone_else_is_taken_back() {
    let cc = ChatCluster::test();
    let planned = objects(&cc);
    let sts_path = chat_node_path(&planned);
    let owned: Vec<Value> =
        planned
            .iter()
            .map(|o| {
                let mut v = live(o);
                if path_of(o) == sts_path {
                    v["spec"]["replicas"] = json!(9);
                    v["metadata"]["managedFields"].as_array_mut().unwrap().push(json!({
                    "manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
                }));
                }
                v
            })
            .collect();
    let run = start(&cc, &owned, |_| {});
    let writes = run.wait_status_writes(1).await;
    assert_eq!(
        lines(&writes),
        vec![format!("PATCH {sts_path}"), format!("PATCH {STATUS}")]
    );
    assert_eq!(
        writes[0].body.as_ref().unwrap()["spec"]["replicas"],
        3,
        "forced apply restores the spec"
    );
    run.stop().await;
}

pub async fn observed_generation() -> Vec<Recorded> {
    let cc = ChatCluster::test().generation(7);
    let run = start(&cc, &[], |_| {});
    let writes = run.wait_status_writes(1).await;
    let status = &writes.last().unwrap().body.as_ref().unwrap()["status"];
    assert_eq!(status["observedGeneration"], 7);
    for c in status["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], 7, "{c}");
        assert!(
            c["lastTransitionTime"].is_string()
                && c["reason"].is_string()
                && c["message"].is_string(),
            "{c}"
        );
    }
    run.stop().await
}

#[tokio::test]
async fn status_carries_observed_generation() {
    observed_generation().await;
}

pub async fn existing_secret() -> Vec<Recorded> {
    let cc = ChatCluster::test();
    let planned = objects(&cc);
    let secret = secret_of(&planned);
    // The Secret exists in the API but the cache has not seen it (created moments ago).
    let existing = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret.name, "namespace": "default", "resourceVersion": "3"}, "data": {"cookie-key": "b2xkLWtleQ=="}});
    let run = start(&cc, &[], |fake| {
        fake.put_object(&path_of(secret), existing.clone())
    });
    let writes = run.wait_status_writes(1).await;
    assert_eq!(writes[0].line(), format!("GET {}", path_of(secret)));
    assert!(
        writes
            .iter()
            .all(|w| !w.path.contains("/secrets") || w.method == "GET"),
        "{:?}",
        lines(&writes)
    );
    assert_eq!(
        run.fake.object(&path_of(secret)).unwrap(),
        existing,
        "the key is untouched"
    );
    run.stop().await
}

#[tokio::test]
async fn the_existing_cookie_secret_is_not_regenerated() {
    existing_secret().await;
}

pub async fn becomes_ready() -> Vec<Recorded> {
    use chatcluster_operator::crd::ServiceType;
    let cc = ChatCluster::test().with_spec(|s| s.haproxy.service.type_ = ServiceType::LoadBalancer);
    let planned = objects(&cc);
    let sts_path = chat_node_path(&planned);
    let (replicas, haproxy_replicas, port) = (
        cc.spec.replicas,
        cc.spec.haproxy.replicas,
        cc.spec.haproxy.service.port,
    );
    // Everything applied earlier and now running: the pods are ready, the load balancer has an address.
    let owned: Vec<Value> = planned
        .iter()
        .map(|o| {
            let mut v = live(o);
            if path_of(o) == sts_path {
                v["status"] = json!({"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas, "observedGeneration": 1});
            } else if o.resource.kind == "Deployment" {
                v["status"] = json!({"availableReplicas": haproxy_replicas, "updatedReplicas": haproxy_replicas, "observedGeneration": 1});
            } else if o.resource.kind == "Service" && o.name.ends_with("haproxy") {
                v["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}});
            }
            v
        })
        .collect();
    let run = start(&cc, &owned, |_| {});
    let writes = run.wait_status_writes(1).await;
    assert_eq!(
        lines(&writes),
        vec![format!("PATCH {STATUS}"), format!("POST {EVENTS}")],
        "nothing to apply"
    );
    let status = &writes[0].body.as_ref().unwrap()["status"];
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");
    assert_eq!(condition(status, "Progressing")["status"], "False");
    assert_eq!(
        (
            status["replicas"].as_i64(),
            status["readyReplicas"].as_i64()
        ),
        (Some(replicas.into()), Some(replicas.into()))
    );
    assert_eq!(status["ready"], format!("{replicas}/{replicas}"));
    assert_eq!(status["endpoint"], format!("ws://203.0.113.9:{port}/ws"));
    let event = writes[1].body.as_ref().unwrap();
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("Ready"))
    );
    run.stop().await
}

#[tokio::test]
async fn a_running_cluster_becomes_ready_with_an_event_and_its_load_balancer_endpoint() {
    becomes_ready().await;
}
