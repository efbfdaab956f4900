//! Object-by-object tests of the desired state.

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::haproxy::{CONFIG_HASH_ANNOTATION, CONFIG_KEY};
use super::*;
use crate::crd::testing::TEST_UID;
use crate::crd::{SecretKeyRef, ServiceType};

fn desired(cc: &ChatCluster) -> Desired {
    desired_state(cc, &OperatorDefaults::default()).expect("valid spec")
}

fn metas(d: &Desired) -> Vec<ObjectMeta> {
    let mut out: Vec<ObjectMeta> = d
        .objects()
        .into_iter()
        .map(|o| match o {
            DesiredObject::StatefulSet(o) => o.metadata,
            DesiredObject::Deployment(o) => o.metadata,
            DesiredObject::Service(o) => o.metadata,
            DesiredObject::ConfigMap(o) => o.metadata,
            DesiredObject::PodDisruptionBudget(o) => o.metadata,
            DesiredObject::NetworkPolicy(o) => o.metadata,
        })
        .collect();
    out.extend(d.cookie_secret.clone().map(|s| s.metadata));
    out
}

fn chat_pod(d: &Desired) -> PodSpec {
    d.chat_node.spec.clone().unwrap().template.spec.unwrap()
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers.iter().find(|c| c.name == name).expect(name)
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref().unwrap().iter().find(|e| e.name == name)
}

fn env_value(c: &Container, name: &str) -> Option<String> {
    env(c, name).and_then(|e| e.value.clone())
}

fn haproxy_cfg(d: &Desired) -> String {
    d.haproxy_config.data.as_ref().unwrap()[CONFIG_KEY].clone()
}

fn pod_hash(d: &Desired) -> String {
    let template = d
        .haproxy
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap();
    template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION].clone()
}

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

#[test]
fn config_hash_follows_the_config_and_ignores_membership() {
    let base = desired(&ChatCluster::test());
    assert_eq!(pod_hash(&base), haproxy::config_hash(&base.haproxy_config));
    let scaled = desired(&ChatCluster::test().replicas(9));
    assert_eq!(
        pod_hash(&base),
        pod_hash(&scaled),
        "scaling chat nodes must not roll HAProxy"
    );
    let changed =
        desired(&ChatCluster::test().with_spec(|s| s.haproxy.timeouts.tunnel = "2h".into()));
    assert_ne!(pod_hash(&base), pod_hash(&changed));
    assert!(haproxy_cfg(&changed).contains("timeout tunnel 2h"));
}

#[test]
fn cookie_key_comes_from_a_secret_never_from_the_config_map() {
    let d = desired(&ChatCluster::test());
    let secret = d.cookie_secret.clone().expect("generated cookie Secret");
    assert!(
        secret.data.is_none(),
        "desired state carries no key; the caller fills it in"
    );
    let filled = secret::with_cookie_key(secret, "s3cr3t-key");
    assert_eq!(filled.data.unwrap()[secret::COOKIE_KEY].0, b"s3cr3t-key");
    assert!(haproxy_cfg(&d).contains("dynamic-cookie-key \"${CHATCLUSTER_COOKIE_KEY}\""));
    let pod = d.haproxy.spec.clone().unwrap().template.spec.unwrap();
    let key = env(&pod.containers[0], "CHATCLUSTER_COOKIE_KEY").unwrap();
    let sel = key
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (sel.name.as_str(), sel.key.as_str()),
        ("chat-haproxy-cookie", secret::COOKIE_KEY)
    );

    let own = ChatCluster::test().with_spec(|s| {
        s.haproxy.cookie_key_secret_ref = Some(SecretKeyRef {
            name: "mine".into(),
            key: "k".into(),
        })
    });
    let d = desired(&own);
    assert!(d.cookie_secret.is_none());
    let pod = d.haproxy.spec.clone().unwrap().template.spec.unwrap();
    let key = env(&pod.containers[0], "CHATCLUSTER_COOKIE_KEY").unwrap();
    assert_eq!(
        key.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "mine"
    );
    assert_ne!(secret::generate_cookie_key(), secret::generate_cookie_key());
}

#[test]
fn haproxy_deployment_service_and_pdb_follow_the_spec() {
    let cc = ChatCluster::test().with_spec(|s| {
        s.haproxy.replicas = 3;
        s.haproxy.service.type_ = ServiceType::LoadBalancer;
        s.haproxy.service.port = 443;
        s.haproxy
            .service
            .annotations
            .insert("lb.example/kind".into(), "nlb".into());
    });
    let d = desired(&cc);
    let spec = d.haproxy.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name,
        "chat-haproxy"
    );
    let svc = d.haproxy_service.spec.clone().unwrap();
    assert_eq!(svc.type_.as_deref(), Some("LoadBalancer"));
    let port = &svc.ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (443, Some(IntOrString::String("http".into())))
    );
    assert_eq!(
        d.haproxy_service.metadata.annotations.unwrap()["lb.example/kind"],
        "nlb"
    );
    assert_eq!(d.endpoint, "ws://chat-haproxy.default.svc:443/ws");
    let pdb = d.haproxy_pdb.spec.clone().unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector.unwrap().match_labels,
        spec.selector.match_labels
    );
}

#[test]
fn managed_redis_is_reachable_only_from_chat_nodes() {
    let d = desired(&ChatCluster::test());
    let redis = d.redis.clone().expect("managed Redis");
    let np = redis.network_policy.spec.unwrap();
    let redis_labels = redis
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone();
    assert_eq!(np.pod_selector.unwrap().match_labels, redis_labels);
    assert_eq!(
        np.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..])
    );
    let rule = &np.ingress.unwrap()[0];
    let from = rule.from.as_ref().unwrap()[0]
        .pod_selector
        .clone()
        .unwrap()
        .match_labels;
    assert_eq!(
        from,
        d.chat_node.spec.clone().unwrap().selector.match_labels
    );
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(6379))
    );
    let sts = redis.statefulset.spec.unwrap();
    assert!(
        sts.volume_claim_templates.is_none(),
        "no storage asked: in-memory"
    );
    let args = sts.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.windows(2).any(|w| w == ["--appendonly", "no"]));
}

#[test]
fn redis_storage_becomes_a_volume_claim_with_appendonly() {
    let cc = ChatCluster::test().with_spec(|s| {
        s.redis.storage = Some(Quantity("5Gi".into()));
        s.redis.storage_class_name = Some("fast".into());
    });
    let sts = desired(&cc).redis.unwrap().statefulset.spec.unwrap();
    let claim = sts.volume_claim_templates.unwrap()[0].spec.clone().unwrap();
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim.resources.unwrap().requests.unwrap()["storage"],
        Quantity("5Gi".into())
    );
    let pod = sts.template.spec.unwrap();
    assert!(pod.volumes.is_none());
    assert!(
        pod.containers[0]
            .args
            .as_ref()
            .unwrap()
            .windows(2)
            .any(|w| w == ["--appendonly", "yes"])
    );
}

#[test]
fn external_redis_creates_no_redis_objects() {
    let d = desired(&ChatCluster::test().external_redis("redis-url", "url"));
    assert!(d.redis.is_none());
    assert_eq!(d.objects().len(), 6);
    assert!(
        metas(&d)
            .iter()
            .all(|m| !m.name.as_deref().unwrap().contains("redis"))
    );
    let pod = chat_pod(&d);
    let url = env(container(&pod, "chat-node"), "CHAT_REDIS_URL").unwrap();
    let sel = url
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("redis-url", "url"));
}

#[test]
fn invalid_specs_are_refused_with_a_reason() {
    let cases: Vec<(ChatCluster, &str)> = vec![
        (ChatCluster::test().replicas(65), "TooManyReplicas"),
        (
            ChatCluster::test().with_spec(|s| s.haproxy.timeouts.tunnel = "20s".into()),
            "TunnelBelowPing",
        ),
        (
            ChatCluster::test().with_spec(|s| s.haproxy.timeouts.client = "30 s".into()),
            "BadDuration",
        ),
        (
            ChatCluster::test().with_spec(|s| s.rate_burst = 1),
            "BurstBelowRate",
        ),
        (
            ChatCluster::test().with_spec(|s| s.auth.anonymous = false),
            "AuthAmbiguous",
        ),
        (
            ChatCluster::test()
                .jwt_secret("j", "k")
                .with_spec(|s| s.auth.anonymous = true),
            "AuthAmbiguous",
        ),
        (
            ChatCluster::test()
                .external_redis("r", "u")
                .with_spec(|s| s.redis.storage = Some(Quantity("1Gi".into()))),
            "StorageWithExternalRedis",
        ),
        (ChatCluster::test().named(&"x".repeat(41)), "NameTooLong"),
        (
            ChatCluster::test().with_spec(|s| s.capacity = 0),
            "OutOfRange",
        ),
    ];
    for (cc, reason) in cases {
        let err = desired_state(&cc, &OperatorDefaults::default()).unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
        assert!(
            err.to_string().len() > 20,
            "the message explains the problem: {err}"
        );
    }
    let mut no_ns = ChatCluster::test();
    no_ns.metadata.namespace = None;
    assert_eq!(
        desired_state(&no_ns, &OperatorDefaults::default()).unwrap_err(),
        SpecError::MissingNamespace
    );
    assert!(
        desired_state(
            &ChatCluster::test().replicas(64),
            &OperatorDefaults::default()
        )
        .is_ok()
    );
}
