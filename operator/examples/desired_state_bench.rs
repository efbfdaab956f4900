//! Micro-benchmark of the pure desired state (not a test): nanoseconds per ChatCluster for
//! `desired_state`, for the `haproxy.cfg` renderer alone, and for `render`'s YAML output.
//!
//! `cargo run --release -p chatcluster-operator --example desired_state_bench [iterations]`

use std::hint::black_box;
use std::time::Instant;

use chatcluster_operator::crd::ChatCluster;
use chatcluster_operator::defaults::OperatorDefaults;
use chatcluster_operator::desired::{desired_state, haproxy};
use chatcluster_operator::haproxy_cfg::{Discovery, render_haproxy_cfg};
use chatcluster_operator::render::render_yaml;

fn measure(label: &str, iterations: u32, mut f: impl FnMut(u32)) {
    for i in 0..iterations / 10 {
        f(i); // warm-up
    }
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    let per = start.elapsed().as_nanos() / u128::from(iterations);
    println!("{label:<48} {per:>9} ns/op  ({iterations} iterations)");
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let defaults = OperatorDefaults::default();
    let clusters = [
        ("default spec (managed Redis)", ChatCluster::test()),
        (
            "jwt + external Redis",
            ChatCluster::test()
                .jwt_secret("jwt", "key")
                .external_redis("redis", "url"),
        ),
        (
            "20 replicas, 2h tunnel",
            ChatCluster::test()
                .replicas(20)
                .with_spec(|s| s.haproxy.timeouts.tunnel = "2h".into()),
        ),
    ];
    println!("chatcluster-operator desired-state micro-benchmark");
    for (name, cc) in &clusters {
        measure(&format!("desired_state: {name}"), iterations, |i| {
            // Vary the replica count so nothing can be hoisted out of the loop.
            let cc = cc.clone().replicas((i % 60) as i32);
            black_box(desired_state(black_box(&cc), &defaults).expect("valid"));
        });
    }
    let cc = ChatCluster::test();
    measure("ChatCluster clone alone (baseline)", iterations, |_| {
        black_box(black_box(&cc).clone());
    });
    let params = haproxy::params(&desired_ctx_params(&cc, &defaults));
    let discovery = Discovery::Dns {
        srv: "_ws._tcp.chat-node.default.svc.cluster.local".into(),
        slots: 64,
        check_port: 8081,
        agent_port: 8082,
    };
    measure("render_haproxy_cfg (DNS, 64 slots)", iterations, |_| {
        black_box(render_haproxy_cfg(black_box(&params), &discovery));
    });
    measure("render_yaml (all objects as YAML)", iterations / 10, |_| {
        black_box(render_yaml(black_box(&cc), &defaults, "key").expect("valid"));
    });
}

fn desired_ctx_params<'a>(
    cc: &'a ChatCluster,
    defaults: &'a OperatorDefaults,
) -> chatcluster_operator::desired::Ctx<'a> {
    chatcluster_operator::desired::Ctx {
        cc,
        name: cc.metadata.name.as_deref().unwrap(),
        namespace: cc.metadata.namespace.as_deref().unwrap(),
        defaults,
    }
}
