//! The managed Redis: one replica, reachable only from the chat nodes (see [`super::networkpolicy`]).
//!
//! Without `spec.redis.storage` it keeps everything in memory (pub/sub needs no persistence,
//! and history is a bounded window); with it, an append-only file on a PersistentVolume keeps
//! history across restarts.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, Service,
    ServiceSpec, TCPSocketAction, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::pod::{container, container_port, empty_dir, mount, pod_security, resources};
use super::service::named_port;
use super::{Component, Ctx};

/// Redis port.
pub const REDIS_PORT: i32 = 6379;
/// uid/gid of the `redis` user in the official image.
pub const REDIS_UID: i64 = 999;

/// Name of the Redis StatefulSet, Service and NetworkPolicy.
pub fn name(ctx: &Ctx) -> String {
    ctx.object_name("redis")
}

/// The URL chat nodes use for a managed Redis.
pub fn url(ctx: &Ctx) -> String {
    format!("redis://{}.{}.svc:{REDIS_PORT}/", name(ctx), ctx.namespace)
}

fn tcp_probe(period: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".into()),
            host: None,
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// The Redis StatefulSet.
pub fn statefulset(ctx: &Ctx) -> StatefulSet {
    let spec = &ctx.cc.spec;
    let image = spec
        .images
        .redis
        .as_deref()
        .unwrap_or(&ctx.defaults.redis_image);
    let persistent = spec.redis.storage.is_some();
    let args = [
        "redis-server",
        "--port",
        "6379",
        "--dir",
        "/data",
        "--save",
        "",
        "--appendonly",
        if persistent { "yes" } else { "no" },
        // Reachable only through the NetworkPolicy; protected mode would refuse remote clients.
        "--protected-mode",
        "no",
    ];
    let redis = k8s_openapi::api::core::v1::Container {
        command: Some(vec!["redis-server".into()]),
        args: Some(args[1..].iter().map(|s| (*s).to_owned()).collect()),
        ports: Some(vec![container_port("redis", REDIS_PORT)]),
        readiness_probe: Some(tcp_probe(5)),
        liveness_probe: Some(tcp_probe(10)),
        resources: Some(resources(
            spec.resources.redis.as_ref(),
            "100m",
            "128Mi",
            "1Gi",
        )),
        volume_mounts: Some(vec![mount("data", "/data")]),
        ..container("redis", image)
    };
    let claim = spec
        .redis
        .storage
        .as_ref()
        .map(|size| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: spec.redis.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), size.clone())])),
                    limits: None,
                }),
                ..Default::default()
            }),
            status: None,
        });
    StatefulSet {
        metadata: ctx.meta(name(ctx), Component::Redis),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name(ctx)),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels(Component::Redis)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels(Component::Redis)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![redis],
                    security_context: Some(pod_security(REDIS_UID)),
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    volumes: (!persistent).then(|| vec![empty_dir("data")]),
                    ..Default::default()
                }),
            },
            volume_claim_templates: claim.map(|c| vec![c]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Redis Service.
pub fn service(ctx: &Ctx) -> Service {
    Service {
        metadata: ctx.meta(name(ctx), Component::Redis),
        spec: Some(ServiceSpec {
            selector: Some(ctx.selector_labels(Component::Redis)),
            ports: Some(vec![named_port("redis", REDIS_PORT)]),
            ..Default::default()
        }),
        status: None,
    }
}
