//! Metadata of every object, the chat-node StatefulSet and its headless Service.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::*;
use super::*;
use crate::crd::testing::TEST_UID;

#[test]
fn every_object_is_labelled_namespaced_and_owned_by_the_chatcluster() {
    let d = desired(&ChatCluster::test().in_namespace("team-a"));
    let metas = metas(&d);
    assert_eq!(metas.len(), 10, "9 applied objects + the cookie Secret");
    for m in metas {
        let name = m.name.clone().unwrap();
        assert!(name.starts_with("chat-"), "{name}");
        assert_eq!(m.namespace.as_deref(), Some("team-a"), "{name}");
        let labels = m.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "chatcluster", "{name}");
        assert_eq!(labels["app.kubernetes.io/instance"], "chat", "{name}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "chatcluster-operator",
            "{name}"
        );
        assert!(labels.contains_key("app.kubernetes.io/component"), "{name}");
        let owners = m.owner_references.unwrap();
        assert_eq!(owners.len(), 1, "{name}");
        let owner = &owners[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ChatCluster", "chat")
        );
        assert_eq!(owner.api_version, "chatcluster.io/v1alpha1");
        assert_eq!(owner.uid, TEST_UID);
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
}

#[test]
fn without_a_uid_objects_are_not_owned() {
    let d = desired(&ChatCluster::test().without_uid());
    assert!(metas(&d).iter().all(|m| m.owner_references.is_none()));
}

#[test]
fn desired_state_is_deterministic() {
    let cc = ChatCluster::test().replicas(7);
    assert_eq!(desired(&cc), desired(&cc));
}

#[test]
fn chat_node_statefulset_runs_node_and_sidecar_in_parallel_pods() {
    let d = desired(&ChatCluster::test().replicas(5));
    let spec = d.chat_node.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(5));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(spec.service_name, d.chat_node_service.metadata.name);
    let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
    for (k, v) in spec.selector.match_labels.unwrap() {
        assert_eq!(pod_labels[&k], v, "selector must match the pod labels");
    }
    let names: Vec<_> = chat_pod(&d)
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["chat-node", "sidecar"]);
    assert_eq!(
        d.selector,
        "app.kubernetes.io/component=chat-node,app.kubernetes.io/instance=chat,app.kubernetes.io/name=chatcluster"
    );
}

#[test]
fn chat_node_gets_its_settings_and_pod_name_through_env() {
    let cc = ChatCluster::test().with_spec(|s| {
        s.capacity = 1234;
        s.max_message_bytes = 4096;
        s.rate_per_second = 5;
        s.rate_burst = 9;
        s.history_length = 50;
        s.drain_grace_seconds = 45;
        s.ping_interval_seconds = 15;
    });
    let pod = chat_pod(&desired(&cc));
    let node = container(&pod, "chat-node");
    for (name, value) in [
        ("CHAT_LISTEN", "0.0.0.0:8080"),
        ("CHAT_ADMIN_LISTEN", "0.0.0.0:8081"),
        ("CHAT_CLUSTER_NAMESPACE", "default"),
        ("CHAT_CLUSTER_NAME", "chat"),
        ("CHAT_CAPACITY", "1234"),
        ("CHAT_MAX_MESSAGE_BYTES", "4096"),
        ("CHAT_RATE_PER_SECOND", "5"),
        ("CHAT_RATE_BURST", "9"),
        ("CHAT_HISTORY_LENGTH", "50"),
        ("CHAT_DRAIN_GRACE_SECONDS", "45"),
        ("CHAT_PING_INTERVAL_SECONDS", "15"),
        ("CHAT_REDIS_URL", "redis://chat-redis.default.svc:6379/"),
    ] {
        assert_eq!(env_value(node, name).as_deref(), Some(value), "{name}");
    }
    let pod_name = env(node, "CHAT_NODE_NAME")
        .unwrap()
        .value_from
        .as_ref()
        .unwrap();
    assert_eq!(
        pod_name.field_ref.as_ref().unwrap().field_path,
        "metadata.name"
    );
    assert!(
        env(node, "CHAT_JWT_SECRET").is_none(),
        "anonymous mode sets no JWT secret"
    );
    let sidecar = container(&pod, "sidecar");
    assert_eq!(
        env_value(sidecar, "SIDECAR_STATS_URL").as_deref(),
        Some("http://127.0.0.1:8081/stats")
    );
    assert_eq!(
        env_value(sidecar, "SIDECAR_AGENT_LISTEN").as_deref(),
        Some("0.0.0.0:8082")
    );
    assert_eq!(
        env_value(sidecar, "SIDECAR_HTTP_LISTEN").as_deref(),
        Some("0.0.0.0:8083")
    );
    // drainGraceSeconds 45: the sidecar waits out the drain, then exits before the kill.
    assert_eq!(
        env_value(sidecar, "SIDECAR_SHUTDOWN_DEADLINE_MS").as_deref(),
        Some("55000")
    );
    assert!(55_000 < pod.termination_grace_period_seconds.unwrap() * 1000);
}

#[test]
fn jwt_secret_reaches_the_node_from_the_secret() {
    let pod = chat_pod(&desired(&ChatCluster::test().jwt_secret("jwt", "key")));
    let jwt = env(container(&pod, "chat-node"), "CHAT_JWT_SECRET").unwrap();
    assert_eq!(jwt.value, None, "the key never appears in the pod spec");
    let sel = jwt
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("jwt", "key"));
}

#[test]
fn probes_prestop_drain_and_grace_period() {
    let pod = chat_pod(&desired(
        &ChatCluster::test().with_spec(|s| s.drain_grace_seconds = 60),
    ));
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(60 + statefulset::TERMINATION_MARGIN_SECONDS)
    );
    let node = container(&pod, "chat-node");
    let ports: Vec<_> = node
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(ports, [("ws".to_owned(), 8080), ("admin".to_owned(), 8081)]);
    let ready = node
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(
        (ready.path.as_deref(), &ready.port),
        (Some("/readyz"), &IntOrString::String("admin".into()))
    );
    let live = node
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(
        (live.path.as_deref(), &live.port),
        (Some("/healthz"), &IntOrString::String("admin".into()))
    );
    let drain = node
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(
        (drain.path.as_deref(), &drain.port),
        (Some("/drain"), &IntOrString::Int(8081))
    );
    let sidecar = container(&pod, "sidecar");
    let ports: Vec<_> = sidecar
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [8082, 8083]);
    assert!(sidecar.liveness_probe.is_some());
}

#[test]
fn every_pod_is_non_root_read_only_without_capabilities() {
    let d = desired(&ChatCluster::test());
    let pods = [
        chat_pod(&d),
        d.haproxy.spec.clone().unwrap().template.spec.unwrap(),
        d.redis
            .clone()
            .unwrap()
            .statefulset
            .spec
            .unwrap()
            .template
            .spec
            .unwrap(),
    ];
    for pod in pods {
        let sec = pod.security_context.as_ref().unwrap();
        assert_eq!(sec.run_as_non_root, Some(true));
        assert!(sec.run_as_user.unwrap() > 0);
        assert_eq!(
            sec.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        for c in &pod.containers {
            let cs = c.security_context.as_ref().unwrap();
            assert_eq!(cs.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(cs.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(
                cs.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_owned()][..])
            );
            let res = c.resources.as_ref().unwrap();
            assert!(
                res.requests.is_some() && res.limits.is_some(),
                "{} has default resources",
                c.name
            );
        }
    }
}

#[test]
fn spec_resources_and_images_override_the_defaults() {
    let cc = ChatCluster::test().with_spec(|s| {
        s.images.chat_node = Some("registry.example/chat-node:9".into());
        s.resources.sidecar = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some([("cpu".to_owned(), Quantity("7m".into()))].into()),
            ..Default::default()
        });
    });
    let pod = chat_pod(&desired(&cc));
    assert_eq!(
        container(&pod, "chat-node").image.as_deref(),
        Some("registry.example/chat-node:9")
    );
    let defaults = OperatorDefaults::default();
    assert_eq!(
        container(&pod, "sidecar").image,
        Some(defaults.sidecar_image)
    );
    let res = container(&pod, "sidecar").resources.clone().unwrap();
    assert_eq!(res.requests.unwrap()["cpu"], Quantity("7m".into()));
    assert!(
        res.limits.is_none(),
        "a given ResourceRequirements is used as is"
    );
}

#[test]
fn chat_nodes_spread_over_hosts_and_zones() {
    let pod = chat_pod(&desired(&ChatCluster::test()));
    let keys: Vec<_> = pod
        .topology_spread_constraints
        .unwrap()
        .into_iter()
        .map(|t| t.topology_key)
        .collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
}

#[test]
fn headless_service_publishes_srv_records_of_ready_pods_only() {
    let d = desired(&ChatCluster::test());
    let spec = d.chat_node_service.spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(false));
    let ports: Vec<_> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    assert_eq!(
        ports[0],
        ("ws".to_owned(), 8080),
        "the ws port names the SRV record"
    );
    assert!(
        ports.contains(&("admin".to_owned(), 8081)) && ports.contains(&("agent".to_owned(), 8082))
    );
    assert!(haproxy_cfg(&d).contains("_ws._tcp.chat-node.default.svc.cluster.local"));
}
