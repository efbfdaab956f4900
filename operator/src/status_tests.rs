//! Unit tests of the pure status computation.

use super::*;
use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn sts(ready: i32, replicas: i32, updated: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            generation: Some(2),
            ..ObjectMeta::default()
        },
        status: Some(StatefulSetStatus {
            replicas,
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            observed_generation: Some(2),
            ..StatefulSetStatus::default()
        }),
        ..StatefulSet::default()
    }
}

fn deploy(available: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(1),
            ..ObjectMeta::default()
        },
        status: Some(DeploymentStatus {
            available_replicas: Some(available),
            updated_replicas: Some(2),
            observed_generation: Some(1),
            ..DeploymentStatus::default()
        }),
        ..Deployment::default()
    }
}

fn service(type_: &str, ingress: Option<&str>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("chat-haproxy".into()),
            namespace: Some("team".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            ports: Some(vec![ServicePort {
                port: 80,
                node_port: Some(30080),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: ingress.map(|ip| ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        }),
    }
}

fn cond<'a>(s: &'a ChatClusterStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn endpoint_prefers_load_balancer_then_node_port_then_cluster_dns() {
    let lb = service("LoadBalancer", Some("203.0.113.7"));
    assert_eq!(external_endpoint(&lb).unwrap(), "ws://203.0.113.7:80/ws");
    assert_eq!(external_endpoint(&service("LoadBalancer", None)), None);
    let node_port = external_endpoint(&service("NodePort", None));
    assert_eq!(node_port.unwrap(), "ws://<node-address>:30080/ws");
    assert_eq!(external_endpoint(&service("ClusterIP", None)), None);
    let pending = service("LoadBalancer", None);
    let cluster = Some("ws://chat-haproxy.team.svc:80/ws".to_string());
    let observed = Observed {
        haproxy_service: Some(&pending),
        cluster_endpoint: cluster.clone(),
        ..Observed::default()
    };
    let status = next_status(None, &observed, &Outcome::Applied, &time(1));
    assert_eq!(
        status.endpoint, cluster,
        "no ingress yet: the in-cluster name"
    );
}

#[test]
fn all_ready_gives_ready_true_and_stable() {
    let (s, d, svc) = (sts(3, 3, 3), deploy(2), service("ClusterIP", None));
    let observed = Observed {
        generation: 4,
        desired_replicas: 3,
        desired_haproxy_replicas: 2,
        chat_nodes: Some(&s),
        haproxy: Some(&d),
        haproxy_service: Some(&svc),
        selector: Some("app=chat".into()),
        cluster_endpoint: Some("ws://chat-haproxy.team.svc:80/ws".into()),
    };
    let status = next_status(None, &observed, &Outcome::Applied, &time(100));
    assert_eq!(cond(&status, "Ready").status, "True");
    assert_eq!(cond(&status, "Progressing").status, "False");
    assert_eq!(cond(&status, "Degraded").status, "False");
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!((status.replicas, status.ready_replicas), (3, 3));
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.selector.as_deref(), Some("app=chat"));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("ws://chat-haproxy.team.svc:80/ws")
    );
}

#[test]
fn transition_time_changes_only_when_the_status_flips() {
    let (partial, full, d) = (sts(1, 3, 3), sts(3, 3, 3), deploy(2));
    let mut observed = Observed {
        generation: 1,
        desired_replicas: 3,
        desired_haproxy_replicas: 2,
        chat_nodes: Some(&partial),
        haproxy: Some(&d),
        ..Observed::default()
    };
    let first = next_status(None, &observed, &Outcome::Applied, &time(100));
    assert_eq!(cond(&first, "Ready").status, "False");
    assert_eq!(cond(&first, "Progressing").reason, "RollingOut");
    let same = next_status(Some(&first), &observed, &Outcome::Applied, &time(200));
    assert_eq!(
        same, first,
        "nothing changed: identical status, so no write"
    );
    observed.chat_nodes = Some(&full);
    let ready = next_status(Some(&first), &observed, &Outcome::Applied, &time(300));
    assert_eq!(cond(&ready, "Ready").last_transition_time, time(300));
    assert_eq!(
        cond(&ready, "Degraded").last_transition_time,
        time(100),
        "Degraded stayed False"
    );
    let events = transitions(Some(&first), &ready);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].warning, events[0].reason.as_str()),
        (false, "Ready")
    );
    assert!(transitions(Some(&ready), &ready).is_empty());
}

#[test]
fn an_unfinished_rollout_is_not_ready_even_with_enough_ready_pods() {
    let (s, d) = (sts(3, 3, 1), deploy(2));
    let observed = Observed {
        generation: 1,
        desired_replicas: 3,
        desired_haproxy_replicas: 2,
        chat_nodes: Some(&s),
        haproxy: Some(&d),
        ..Observed::default()
    };
    let status = next_status(None, &observed, &Outcome::Applied, &time(1));
    assert_eq!(cond(&status, "Ready").status, "False");
    assert_eq!(cond(&status, "Progressing").status, "True");
}

#[test]
fn invalid_spec_degrades_keeps_known_figures_and_warns_once() {
    let previous = ChatClusterStatus {
        selector: Some("app=chat".into()),
        endpoint: Some("ws://old/ws".into()),
        ..ChatClusterStatus::default()
    };
    let outcome = Outcome::InvalidSpec {
        reason: "TooManyReplicas".into(),
        message: "raise serverSlots".into(),
    };
    let observed = Observed {
        generation: 5,
        desired_replicas: 40,
        ..Observed::default()
    };
    let status = next_status(Some(&previous), &observed, &outcome, &time(1));
    let degraded = cond(&status, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "TooManyReplicas")
    );
    assert_eq!(degraded.message, "raise serverSlots");
    assert_eq!(cond(&status, "Ready").status, "False");
    assert_eq!(status.selector.as_deref(), Some("app=chat"));
    assert_eq!(status.endpoint.as_deref(), Some("ws://old/ws"));
    let events = transitions(Some(&previous), &status);
    assert_eq!(
        events,
        vec![Notable {
            warning: true,
            reason: "TooManyReplicas".into(),
            message: "raise serverSlots".into()
        }]
    );
    assert!(
        transitions(Some(&status), &status).is_empty(),
        "same reason again: no second warning"
    );
    let fixed = next_status(Some(&status), &observed, &Outcome::Applied, &time(2));
    assert!(
        transitions(Some(&status), &fixed)
            .iter()
            .any(|n| n.reason == "Recovered")
    );
}
