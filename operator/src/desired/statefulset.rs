//! The chat-node StatefulSet: per pod a chat-node and its routing sidecar.
//!
//! A StatefulSet (not a Deployment) gives stable pod names, which the nodes use as their
//! identity in presence and metrics. `Parallel` pod management lets a scale-up start every new
//! node at once; HAProxy picks them up from DNS without a reload.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, SecretKeySelector, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{
    container, container_port, empty_dir, http_probe, mount, pod_security, resources,
};
use super::{Component, Ctx, redis};
use crate::crd::SecretKeyRef;

/// Seconds a pod gets beyond the drain grace period before it is killed: time for the preStop
/// call, the last close frames and process exit.
pub const TERMINATION_MARGIN_SECONDS: i64 = 15;
/// Seconds the sidecar stays after SIGTERM beyond the drain grace period (below
/// [`TERMINATION_MARGIN_SECONDS`], so it exits on its own).
pub const SIDECAR_DEADLINE_MARGIN_SECONDS: i64 = 10;
/// chat-node WebSocket port.
pub const WS_PORT: i32 = 8080;
/// chat-node admin port.
pub const ADMIN_PORT: i32 = 8081;
/// Sidecar agent-check port.
pub const AGENT_PORT: i32 = 8082;
/// Sidecar HTTP port (`/metrics`, `/healthz`, `/state`).
pub const SIDECAR_HTTP_PORT: i32 = 8083;
/// uid/gid the chat-node pods run as.
pub const CHAT_NODE_UID: i64 = 65532;

/// Name of the chat-node StatefulSet and of its headless Service.
pub fn name(ctx: &Ctx) -> String {
    ctx.object_name("node")
}

fn env(name: &str, value: impl ToString) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// An environment variable read from a Secret key.
pub fn env_secret(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

fn chat_node_container(ctx: &Ctx) -> Container {
    let s = &ctx.cc.spec;
    let image = s
        .images
        .chat_node
        .as_deref()
        .unwrap_or(&ctx.defaults.chat_node_image);
    let mut vars = vec![
        env("CHAT_LISTEN", format!("0.0.0.0:{WS_PORT}")),
        env("CHAT_ADMIN_LISTEN", format!("0.0.0.0:{ADMIN_PORT}")),
        env_field("CHAT_NODE_NAME", "metadata.name"),
        env("CHAT_CLUSTER_NAMESPACE", ctx.namespace),
        env("CHAT_CLUSTER_NAME", ctx.name),
        env("CHAT_CAPACITY", s.capacity),
        env("CHAT_MAX_MESSAGE_BYTES", s.max_message_bytes),
        env("CHAT_RATE_PER_SECOND", s.rate_per_second),
        env("CHAT_RATE_BURST", s.rate_burst),
        env("CHAT_OUTBOUND_QUEUE", s.outbound_queue),
        env("CHAT_HISTORY_LENGTH", s.history_length),
        env("CHAT_DRAIN_GRACE_SECONDS", s.drain_grace_seconds),
        env("CHAT_PING_INTERVAL_SECONDS", s.ping_interval_seconds),
        env("CHAT_LOG_FORMAT", "json"),
    ];
    vars.push(match &s.redis.external {
        Some(ext) => env_secret("CHAT_REDIS_URL", &ext.url_secret_ref),
        None => env("CHAT_REDIS_URL", redis::url(ctx)),
    });
    if let Some(jwt) = &s.auth.jwt_secret_ref {
        vars.push(env_secret("CHAT_JWT_SECRET", jwt));
    }
    Container {
        env: Some(vars),
        ports: Some(vec![
            container_port("ws", WS_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        readiness_probe: Some(http_probe("/readyz", "admin", 2, 2)),
        liveness_probe: Some(http_probe("/healthz", "admin", 10, 3)),
        // preStop runs before SIGTERM: it starts the drain while the pod is still an endpoint,
        // so the node reports `draining` to HAProxy (via the sidecar) before anything stops.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    path: Some("/drain".into()),
                    port: IntOrString::Int(ADMIN_PORT),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(resources(
            s.resources.chat_node.as_ref(),
            "250m",
            "256Mi",
            "1Gi",
        )),
        volume_mounts: Some(vec![mount("tmp", "/tmp")]),
        ..container("chat-node", image)
    }
}

fn sidecar_container(ctx: &Ctx) -> Container {
    let s = &ctx.cc.spec;
    let image = s
        .images
        .sidecar
        .as_deref()
        .unwrap_or(&ctx.defaults.sidecar_image);
    Container {
        env: Some(vec![
            env(
                "SIDECAR_STATS_URL",
                format!("http://127.0.0.1:{ADMIN_PORT}/stats"),
            ),
            env("SIDECAR_AGENT_LISTEN", format!("0.0.0.0:{AGENT_PORT}")),
            env(
                "SIDECAR_HTTP_LISTEN",
                format!("0.0.0.0:{SIDECAR_HTTP_PORT}"),
            ),
            env("SIDECAR_LOG_FORMAT", "json"),
            // The sidecar must outlive the node's drain (it reports `drain`, then `down`), yet
            // exit before the kubelet's SIGKILL.
            env(
                "SIDECAR_SHUTDOWN_DEADLINE_MS",
                (i64::from(s.drain_grace_seconds) + SIDECAR_DEADLINE_MARGIN_SECONDS) * 1000,
            ),
        ]),
        ports: Some(vec![
            container_port("agent", AGENT_PORT),
            container_port("sidecar-http", SIDECAR_HTTP_PORT),
        ]),
        readiness_probe: Some(http_probe("/healthz", "sidecar-http", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", "sidecar-http", 10, 3)),
        resources: Some(resources(
            s.resources.sidecar.as_ref(),
            "20m",
            "16Mi",
            "64Mi",
        )),
        ..container("sidecar", image)
    }
}

fn spread(ctx: &Ctx, key: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_owned(),
        // Spread when possible, but never leave a node unscheduled for it.
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(ctx.selector_labels(Component::ChatNode)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The chat-node StatefulSet.
pub fn chat_node(ctx: &Ctx) -> StatefulSet {
    let s = &ctx.cc.spec;
    StatefulSet {
        metadata: ctx.meta(name(ctx), Component::ChatNode),
        spec: Some(StatefulSetSpec {
            replicas: Some(s.replicas),
            service_name: Some(name(ctx)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels(Component::ChatNode)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels(Component::ChatNode)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![chat_node_container(ctx), sidecar_container(ctx)],
                    termination_grace_period_seconds: Some(
                        i64::from(s.drain_grace_seconds) + TERMINATION_MARGIN_SECONDS,
                    ),
                    security_context: Some(pod_security(CHAT_NODE_UID)),
                    topology_spread_constraints: Some(vec![
                        spread(ctx, "kubernetes.io/hostname"),
                        spread(ctx, "topology.kubernetes.io/zone"),
                    ]),
                    // Service links would inject variables such as CHAT_REDIS_PORT for a
                    // Service named chat-redis, next to the node's own CHAT_* settings.
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    volumes: Some(vec![empty_dir("tmp")]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}
