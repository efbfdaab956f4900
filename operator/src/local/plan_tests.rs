//! Plan tests: the children local mode runs for a ChatCluster, compared with what the desired
//! state gives the pods, and the HAProxy config checked by `haproxy -c`.

use std::path::PathBuf;

use super::*;
use crate::crd::ChatCluster;
use crate::desired::desired_state;

fn ports(n: u16) -> LocalPorts {
    LocalPorts {
        frontend: 18000,
        stats: 18001,
        redis: 18002,
        nodes: (0..n)
            .map(|i| NodePorts {
                ws: 20000 + i * 10,
                admin: 20001 + i * 10,
                agent: 20002 + i * 10,
                http: 20003 + i * 10,
            })
            .collect(),
    }
}

fn ctx() -> PlanContext {
    PlanContext {
        bin_dir: "/opt/chat/bin".into(),
        haproxy_bin: "haproxy".into(),
        redis_server_bin: "redis-server".into(),
        run_dir: "/tmp/run".into(),
        run_id: "run-1".into(),
        external_redis_url: None,
        jwt_secret: None,
        cookie_key: "k".into(),
    }
}

fn env<'a>(child: &'a ChildSpec, key: &str) -> Option<&'a str> {
    child
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn child<'a>(plan: &'a Plan, name: &str) -> &'a ChildSpec {
    plan.children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no child {name}"))
}

#[test]
fn three_replicas_give_redis_three_pairs_and_haproxy_in_stage_order() {
    let cc = ChatCluster::test().replicas(3);
    let plan = plan(&cc, &ports(3), &ctx()).unwrap();
    let names: Vec<(&str, u8)> = plan
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.stage))
        .collect();
    assert_eq!(
        names,
        [
            ("redis", STAGE_REDIS),
            ("chat-node-0", STAGE_NODES),
            ("chat-node-0-sidecar", STAGE_NODES),
            ("chat-node-1", STAGE_NODES),
            ("chat-node-1-sidecar", STAGE_NODES),
            ("chat-node-2", STAGE_NODES),
            ("chat-node-2-sidecar", STAGE_NODES),
            ("haproxy", STAGE_PROXY),
        ]
    );
    assert_eq!(plan.endpoint, "ws://127.0.0.1:18000/ws");
    assert_eq!(plan.demo_url, "http://127.0.0.1:18000/");
    assert_eq!(plan.redis_url, "redis://127.0.0.1:18002/");
    assert!(
        plan.children
            .iter()
            .all(|c| env(c, RUN_ENV) == Some("run-1"))
    );
}

#[test]
fn chat_nodes_get_the_statefulset_environment_with_local_addresses() {
    let cc = ChatCluster::test().replicas(2).with_spec(|s| {
        s.capacity = 123;
        s.drain_grace_seconds = 7;
        s.history_length = 55;
    });
    let plan = plan(&cc, &ports(2), &ctx()).unwrap();
    let node = child(&plan, "chat-node-1");
    assert_eq!(node.program, PathBuf::from("/opt/chat/bin/chat-node"));
    assert_eq!(env(node, "CHAT_LISTEN"), Some("127.0.0.1:20010"));
    assert_eq!(env(node, "CHAT_ADMIN_LISTEN"), Some("127.0.0.1:20011"));
    assert_eq!(env(node, "CHAT_NODE_NAME"), Some("chat-node-1"));
    assert_eq!(
        env(node, "CHAT_REDIS_URL"),
        Some("redis://127.0.0.1:18002/")
    );
    assert_eq!(env(node, "CHAT_CAPACITY"), Some("123"));
    assert_eq!(env(node, "CHAT_HISTORY_LENGTH"), Some("55"));
    assert_eq!(
        node.stop,
        StopPolicy::Drain {
            grace: Duration::from_secs(7)
        }
    );
    assert_eq!(
        node.probe,
        Probe::Http {
            addr: loopback(20011),
            path: "/readyz".into()
        }
    );

    // Every variable the pod's container gets, local mode sets too; literal values are equal
    // unless they are addresses, the log format, or resolved from the pod or a Secret.
    let desired = desired_state(&cc, &OperatorDefaults::default()).unwrap();
    let pod = desired.chat_node.spec.unwrap().template.spec.unwrap();
    let local_only = [
        "CHAT_LISTEN",
        "CHAT_ADMIN_LISTEN",
        "CHAT_REDIS_URL",
        "CHAT_LOG_FORMAT",
    ];
    for var in pod.containers[0].env.as_ref().unwrap() {
        let local = env(node, &var.name).unwrap_or_else(|| panic!("{} missing", var.name));
        if let (Some(v), false) = (&var.value, local_only.contains(&var.name.as_str())) {
            assert_eq!(local, v, "{}", var.name);
        }
    }
}

#[test]
fn sidecars_poll_their_own_node_and_serve_on_its_ports() {
    let plan = plan(&ChatCluster::test().replicas(2), &ports(2), &ctx()).unwrap();
    let sidecar = child(&plan, "chat-node-1-sidecar");
    assert_eq!(
        sidecar.program,
        PathBuf::from("/opt/chat/bin/chatcluster-sidecar")
    );
    assert_eq!(
        env(sidecar, "SIDECAR_STATS_URL"),
        Some("http://127.0.0.1:20011/stats")
    );
    assert_eq!(
        env(sidecar, "SIDECAR_AGENT_LISTEN"),
        Some("127.0.0.1:20012")
    );
    assert_eq!(env(sidecar, "SIDECAR_HTTP_LISTEN"), Some("127.0.0.1:20013"));
    assert_eq!(sidecar.stop, StopPolicy::Terminate);
}

#[test]
fn haproxy_gets_the_shared_renderer_config_with_one_static_server_per_node() {
    let plan = plan(&ChatCluster::test().replicas(3), &ports(3), &ctx()).unwrap();
    let (path, cfg) = &plan.files[0];
    assert_eq!(path, &PathBuf::from("/tmp/run/haproxy.cfg"));
    assert!(cfg.contains("bind 127.0.0.1:18000"), "{cfg}");
    assert!(cfg.contains("balance leastconn"));
    assert!(!cfg.contains("server-template"), "no DNS discovery locally");
    for i in 0..3u16 {
        let line = format!(
            "server chat{} 127.0.0.1:{} check port {} agent-check agent-port {}",
            i + 1,
            20000 + i * 10,
            20001 + i * 10,
            20002 + i * 10
        );
        assert!(cfg.contains(&line), "missing {line:?} in\n{cfg}");
    }
    let haproxy = child(&plan, "haproxy");
    assert_eq!(haproxy.args, ["-db", "-f", "/tmp/run/haproxy.cfg"]);
    assert_eq!(env(haproxy, COOKIE_KEY_ENV), Some("k"));
    assert_eq!(
        haproxy.probe,
        Probe::Http {
            addr: loopback(18001),
            path: "/healthz".into()
        }
    );
}

#[test]
fn the_local_haproxy_config_passes_haproxy_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ctx();
    c.run_dir = dir.path().into();
    let plan = plan(&ChatCluster::test().replicas(2), &ports(2), &c).unwrap();
    let (path, cfg) = &plan.files[0];
    std::fs::write(path, cfg).unwrap();
    // SAFETY of the check: the key is read from the environment when HAProxy parses the file.
    let out = std::process::Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(path)
        .env(COOKIE_KEY_ENV, "k")
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn managed_redis_is_in_memory_unless_storage_is_asked_for() {
    let plan_for = |cc: ChatCluster| plan(&cc, &ports(1), &ctx()).unwrap();
    let memory = plan_for(ChatCluster::test().replicas(1));
    let redis = child(&memory, "redis");
    assert_eq!(redis.program, PathBuf::from("redis-server"));
    assert!(redis.args.windows(2).any(|w| w == ["--appendonly", "no"]));
    assert!(redis.args.windows(2).any(|w| w == ["--bind", "127.0.0.1"]));
    assert_eq!(redis.probe, Probe::RedisPing(loopback(18002)));
    let durable = plan_for(ChatCluster::test().replicas(1).with_spec(|s| {
        s.redis.storage = Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
            "1Gi".into(),
        ));
    }));
    assert!(
        child(&durable, "redis")
            .args
            .windows(2)
            .any(|w| w == ["--appendonly", "yes"])
    );
    assert_eq!(memory.dirs, [PathBuf::from("/tmp/run/redis")]);
}

#[test]
fn external_redis_and_jwt_need_local_values_for_their_secrets() {
    let cc = ChatCluster::test()
        .replicas(1)
        .external_redis("redis", "url");
    let err = plan(&cc, &ports(1), &ctx()).unwrap_err();
    assert!(err.to_string().contains("--external-redis-url"), "{err}");
    let mut c = ctx();
    c.external_redis_url = Some("redis://10.0.0.1:6379/".into());
    let plan_ext = plan(&cc, &ports(1), &c).unwrap();
    assert!(plan_ext.children.iter().all(|c| c.name != "redis"));
    assert_eq!(
        env(child(&plan_ext, "chat-node-0"), "CHAT_REDIS_URL"),
        Some("redis://10.0.0.1:6379/")
    );

    let cc = ChatCluster::test().replicas(1).jwt_secret("jwt", "key");
    let err = plan(&cc, &ports(1), &ctx()).unwrap_err();
    assert!(err.to_string().contains("--jwt-secret"), "{err}");
    let mut c = ctx();
    c.jwt_secret = Some("s3cret".into());
    let plan_jwt = plan(&cc, &ports(1), &c).unwrap();
    assert_eq!(
        env(child(&plan_jwt, "chat-node-0"), "CHAT_JWT_SECRET"),
        Some("s3cret")
    );
}

#[test]
fn zero_replicas_still_run_redis_and_haproxy_and_port_sets_must_match() {
    let plan0 = plan(&ChatCluster::test().replicas(0), &ports(0), &ctx()).unwrap();
    let names: Vec<&str> = plan0.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["redis", "haproxy"]);
    assert!(plan(&ChatCluster::test().replicas(2), &ports(1), &ctx()).is_err());
}

#[test]
fn spare_server_slots_are_rendered_but_not_started() {
    let plan = plan(&ChatCluster::test().replicas(1), &ports(3), &ctx()).unwrap();
    let names: Vec<&str> = plan.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["redis", "chat-node-0", "chat-node-0-sidecar", "haproxy"]
    );
    assert_eq!(plan.slot_children.len(), 3);
    assert_eq!(plan.slot_children[2][0].name, "chat-node-2");
    assert_eq!(plan.slot_children[2][1].name, "chat-node-2-sidecar");
    assert_eq!(plan.nodes.len(), 3);
    let cfg = &plan.files[0].1;
    assert!(cfg.contains("server chat3 127.0.0.1:20020 "), "{cfg}");
}
