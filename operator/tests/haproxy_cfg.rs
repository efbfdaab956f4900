//! Rendered `haproxy.cfg` variants: byte-for-byte golden files, the contract's server line, and
//! `haproxy -c` on every variant (which proves the `resolvers` section needs no live DNS).
//!
//! Regenerate the golden files after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p chatcluster-operator --test haproxy_cfg` and review the diff.

use std::net::SocketAddr;
use std::path::PathBuf;

use chatcluster_operator::crd::{Balance, ChatCluster};
use chatcluster_operator::defaults::OperatorDefaults;
use chatcluster_operator::desired::{desired_state, haproxy::CONFIG_KEY};
use chatcluster_operator::haproxy_cfg::{
    COOKIE_KEY_ENV, Discovery, HaproxyParams, StaticServer, render_haproxy_cfg,
};

fn from_cluster(cc: &ChatCluster) -> String {
    let d = desired_state(cc, &OperatorDefaults::default()).expect("valid spec");
    d.haproxy_config.data.unwrap()[CONFIG_KEY].clone()
}

fn static_local() -> String {
    let spec = ChatCluster::test().spec;
    let params = HaproxyParams::from_spec(
        "local/chat",
        &spec,
        "127.0.0.1:18080",
        "127.0.0.1:18404",
        "/tmp/chatcluster/haproxy.sock",
    );
    let servers = (0..3u16)
        .map(|i| StaticServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 19000 + i * 10)),
            check_port: 19001 + i * 10,
            agent_port: 19002 + i * 10,
        })
        .collect();
    render_haproxy_cfg(&params, &Discovery::Static(servers))
}

/// (golden file name, rendered config)
fn variants() -> Vec<(&'static str, String)> {
    vec![
        ("default.cfg", from_cluster(&ChatCluster::test())),
        (
            "roundrobin-custom.cfg",
            from_cluster(
                &ChatCluster::test()
                    .named("lobby")
                    .in_namespace("chat-prod")
                    .with_spec(|s| {
                        s.haproxy.balance = Balance::Roundrobin;
                        s.haproxy.cookie_name = "LOBBY".into();
                        s.haproxy.server_slots = 8;
                        s.haproxy.max_connections = 50_000;
                        s.haproxy.timeouts.connect = "500ms".into();
                        s.haproxy.timeouts.tunnel = "15m".into();
                        s.drain_grace_seconds = 120;
                    }),
            ),
        ),
        ("static-local.cfg", static_local()),
    ]
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn rendered_configs_match_golden_files() {
    for (name, cfg) in variants() {
        let path = golden_path(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &cfg).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            golden == cfg,
            "{name} differs from {}; if the change is intended run \
             UPDATE_GOLDEN=1 cargo test -p chatcluster-operator --test haproxy_cfg\n--- rendered:\n{cfg}",
            path.display()
        );
    }
}

#[test]
fn every_variant_passes_haproxy_check() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in variants() {
        let path = dir.path().join(name);
        std::fs::write(&path, cfg).unwrap();
        testkit::haproxy_check_with_env(&path, &[(COOKIE_KEY_ENV, "0123456789abcdef")])
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn without_the_cookie_key_haproxy_refuses_to_start() {
    // A pod whose Secret is missing must fail loudly, not run with an empty key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.cfg");
    std::fs::write(&path, from_cluster(&ChatCluster::test())).unwrap();
    let err = testkit::haproxy_check_with_env(&path, &[(COOKIE_KEY_ENV, "")]).unwrap_err();
    assert!(format!("{err:#}").contains("dynamic-cookie-key"), "{err:#}");
}

#[test]
fn dns_backend_has_the_contract_server_line() {
    let cfg = from_cluster(&ChatCluster::test());
    for line in [
        "    balance leastconn\n",
        "    option redispatch\n",
        "    cookie CHATNODE insert indirect nocache dynamic\n",
        "    dynamic-cookie-key \"${CHATCLUSTER_COOKIE_KEY}\"\n",
        "    option httpchk GET /healthz\n",
        "    server-template chat 1-64 _ws._tcp.chat-node.default.svc.cluster.local resolvers kube resolve-opts allow-dup-ip,ignore-weight init-addr none check port 8081 agent-check agent-port 8082 agent-inter 1s weight 100\n",
        "    parse-resolv-conf\n",
        "    timeout tunnel 1h\n",
        "    timeout client-fin 30s\n",
        "    master-worker\n",
        "    hard-stop-after 35s\n",
        "    http-request use-service prometheus-exporter if { path /metrics }\n",
    ] {
        assert!(cfg.contains(line), "missing {line:?} in\n{cfg}");
    }
    assert!(
        !cfg.contains("shutdown-sessions"),
        "open WebSockets must survive a drain"
    );
}

#[test]
fn static_discovery_differs_only_in_how_servers_are_found() {
    let cfg = static_local();
    assert!(!cfg.contains("resolvers"), "local mode needs no DNS");
    assert!(cfg.contains(
        "    server chat2 127.0.0.1:19010 check port 19011 agent-check agent-port 19012 agent-inter 1s weight 100\n"
    ));
    assert!(cfg.contains("    bind 127.0.0.1:18080\n"));
    let dns = from_cluster(&ChatCluster::test());
    // Drop the resolvers section, then the lines that name listeners, sockets and servers.
    let strip = |c: &str| {
        c.split("\n\n")
            .filter(|block| !block.starts_with("resolvers "))
            .flat_map(|block| block.lines())
            .filter(|l| !l.starts_with('#'))
            .filter(|l| !l.contains("bind ") && !l.contains("stats socket"))
            .filter(|l| !l.starts_with("    server-template ") && !l.starts_with("    server chat"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&cfg), strip(&dns));
}
