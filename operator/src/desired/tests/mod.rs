//! Object-by-object tests of the desired state, with the helpers they share.

mod chat_node;
mod haproxy_redis;

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::haproxy::{CONFIG_HASH_ANNOTATION, CONFIG_KEY};
use super::*;

pub(super) fn desired(cc: &ChatCluster) -> Desired {
    desired_state(cc, &OperatorDefaults::default()).expect("valid spec")
}

pub(super) fn metas(d: &Desired) -> Vec<ObjectMeta> {
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

pub(super) fn chat_pod(d: &Desired) -> PodSpec {
    d.chat_node.spec.clone().unwrap().template.spec.unwrap()
}

pub(super) fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers.iter().find(|c| c.name == name).expect(name)
}

pub(super) fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.as_ref().unwrap().iter().find(|e| e.name == name)
}

pub(super) fn env_value(c: &Container, name: &str) -> Option<String> {
    env(c, name).and_then(|e| e.value.clone())
}

pub(super) fn haproxy_cfg(d: &Desired) -> String {
    d.haproxy_config.data.as_ref().unwrap()[CONFIG_KEY].clone()
}

pub(super) fn pod_hash(d: &Desired) -> String {
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
