//! The HAProxy tier, the cookie Secret, Redis, and refused specs.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::*;
use super::*;
use crate::crd::{SecretKeyRef, ServiceType};

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
