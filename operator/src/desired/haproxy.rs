//! The HAProxy tier: ConfigMap with the rendered `haproxy.cfg`, Deployment, Service and
//! PodDisruptionBudget.
//!
//! A config change rolls the pods (the config hash is a pod-template annotation) instead of
//! reloading in place; membership changes never touch the config at all (DNS fills the slots).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, Lifecycle, LifecycleHandler, PodSpec,
    PodTemplateSpec, Service, ServicePort, ServiceSpec, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::pod::{
    container, container_port, empty_dir, http_probe, mount, pod_security, resources,
};
use super::statefulset::{ADMIN_PORT, AGENT_PORT, env_secret};
use super::{Component, Ctx, secret, service};
use crate::haproxy_cfg::{COOKIE_KEY_ENV, Discovery, HaproxyParams, render_haproxy_cfg};

/// Pod-template annotation holding the SHA-256 of `haproxy.cfg`.
pub const CONFIG_HASH_ANNOTATION: &str = "chatcluster.io/config-hash";
/// Key of `haproxy.cfg` in the ConfigMap.
pub const CONFIG_KEY: &str = "haproxy.cfg";
/// Container port HAProxy accepts clients on (unprivileged, so it runs as non-root).
pub const HTTP_PORT: i32 = 8080;
/// Container port of the stats page, `/metrics` and `/healthz`.
pub const STATS_PORT: i32 = 8404;
/// uid/gid of the `haproxy` user in the official image.
pub const HAPROXY_UID: i64 = 99;
const CONFIG_DIR: &str = "/usr/local/etc/haproxy";
const RUN_DIR: &str = "/var/run/haproxy";

/// Name of every HAProxy object.
pub fn name(ctx: &Ctx) -> String {
    ctx.object_name("haproxy")
}

/// The in-cluster endpoint clients connect to.
pub fn endpoint(ctx: &Ctx) -> String {
    format!(
        "ws://{}.{}.svc:{}/ws",
        name(ctx),
        ctx.namespace,
        ctx.cc.spec.haproxy.service.port
    )
}

/// Renderer parameters for HAProxy in a pod.
pub fn params(ctx: &Ctx) -> HaproxyParams {
    HaproxyParams::from_spec(
        &format!("{}/{}", ctx.namespace, ctx.name),
        &ctx.cc.spec,
        &format!("*:{HTTP_PORT}"),
        &format!("*:{STATS_PORT}"),
        &format!("{RUN_DIR}/admin.sock"),
    )
}

/// The `haproxy.cfg` for this cluster (DNS discovery).
pub fn render(ctx: &Ctx) -> String {
    let spec = &ctx.cc.spec;
    let params = params(ctx);
    let discovery = Discovery::Dns {
        srv: service::srv_name(ctx),
        slots: spec.haproxy.server_slots.max(1) as u32,
        check_port: ADMIN_PORT as u16,
        agent_port: AGENT_PORT as u16,
    };
    render_haproxy_cfg(&params, &discovery)
}

/// The ConfigMap with `haproxy.cfg`.
pub fn config_map(ctx: &Ctx) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(name(ctx), Component::Haproxy),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), render(ctx))])),
        ..Default::default()
    }
}

/// Hex SHA-256 of the ConfigMap's `haproxy.cfg`.
pub fn config_hash(config: &ConfigMap) -> String {
    let text = config
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_KEY))
        .map_or("", String::as_str);
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn haproxy_container(ctx: &Ctx) -> Container {
    let spec = &ctx.cc.spec;
    let image = spec
        .images
        .haproxy
        .as_deref()
        .unwrap_or(&ctx.defaults.haproxy_image);
    Container {
        command: Some(vec!["haproxy".into()]),
        args: Some(vec![
            "-W".into(),
            "-db".into(),
            "-f".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(vec![env_secret(
            COOKIE_KEY_ENV,
            &secret::cookie_key_ref(ctx),
        )]),
        ports: Some(vec![
            container_port("http", HTTP_PORT),
            container_port("stats", STATS_PORT),
        ]),
        readiness_probe: Some(http_probe("/healthz", "stats", 2, 2)),
        liveness_probe: Some(http_probe("/healthz", "stats", 10, 3)),
        // Give endpoints a moment to drop this pod before it stops accepting.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 5 }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(resources(
            spec.resources.haproxy.as_ref(),
            "100m",
            "128Mi",
            "512Mi",
        )),
        volume_mounts: Some(vec![
            VolumeMount {
                read_only: Some(true),
                ..mount("config", CONFIG_DIR)
            },
            mount("run", RUN_DIR),
        ]),
        ..container("haproxy", image)
    }
}

/// The HAProxy Deployment.
pub fn deployment(ctx: &Ctx, config: &ConfigMap) -> Deployment {
    let spec = &ctx.cc.spec;
    let hard_stop = i64::from(params(ctx).hard_stop_after_secs);
    Deployment {
        metadata: ctx.meta(name(ctx), Component::Haproxy),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.haproxy.replicas),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels(Component::Haproxy)),
                ..Default::default()
            },
            // Surge first, so routing capacity never drops during a config roll.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels(Component::Haproxy)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash(config),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![haproxy_container(ctx)],
                    // preStop sleep + hard-stop-after + exit.
                    termination_grace_period_seconds: Some(5 + hard_stop + 10),
                    security_context: Some(pod_security(HAPROXY_UID)),
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    volumes: Some(vec![
                        Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: name(ctx),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        empty_dir("run"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The Service clients connect to.
pub fn service(ctx: &Ctx) -> Service {
    let svc = &ctx.cc.spec.haproxy.service;
    let mut metadata = ctx.meta(name(ctx), Component::Haproxy);
    if !svc.annotations.is_empty() {
        metadata.annotations = Some(svc.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(svc.type_.as_str().to_owned()),
            selector: Some(ctx.selector_labels(Component::Haproxy)),
            ports: Some(vec![ServicePort {
                port: svc.port,
                ..service::named_port("http", svc.port)
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// At most one HAProxy pod down at a time during voluntary disruptions (node drains).
pub fn pdb(ctx: &Ctx) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ctx.meta(name(ctx), Component::Haproxy),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(ctx.selector_labels(Component::Haproxy)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}
