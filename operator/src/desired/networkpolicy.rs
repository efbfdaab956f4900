//! The NetworkPolicy that lets only this cluster's chat-node pods reach its managed Redis
//! (Redis runs without a password inside the namespace).

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::redis::{REDIS_PORT, name};
use super::{Component, Ctx};

/// Ingress to the Redis pods: from chat-node pods of this cluster, on the Redis port, only.
pub fn redis(ctx: &Ctx) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ctx.meta(name(ctx), Component::Redis),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(ctx.selector_labels(Component::Redis)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(ctx.selector_labels(Component::ChatNode)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(REDIS_PORT)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}
