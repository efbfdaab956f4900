//! The `ChatCluster` status, computed purely from what the controller observed: the chat-node
//! StatefulSet's and HAProxy Deployment's status, the HAProxy Service (for the endpoint) and the
//! outcome of the reconcile. Conditions keep their `lastTransitionTime` unless their status flips,
//! so an unchanged cluster produces an identical status and no write. [`transitions`] names the
//! changes worth an Event.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{ChatClusterStatus, condition};

/// What the controller saw of the objects it owns.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    /// `metadata.generation` of the ChatCluster being reconciled.
    pub generation: i64,
    /// `spec.replicas`.
    pub desired_replicas: i32,
    /// `spec.haproxy.replicas`.
    pub desired_haproxy_replicas: i32,
    /// The chat-node StatefulSet as last seen (apply answer or watch cache).
    pub chat_nodes: Option<&'a StatefulSet>,
    /// The HAProxy Deployment as last seen.
    pub haproxy: Option<&'a Deployment>,
    /// The HAProxy Service as last seen.
    pub haproxy_service: Option<&'a Service>,
    /// Label selector of the chat-node pods.
    pub selector: Option<String>,
    /// The in-cluster endpoint from the desired state (`ws://<svc>.<ns>.svc:<port>/ws`), used
    /// unless the Service has an external address.
    pub cluster_endpoint: Option<String>,
}

/// How the reconcile ended, as far as status is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every object was applied (or already up to date).
    Applied,
    /// The spec was refused before anything was applied.
    InvalidSpec {
        /// Stable CamelCase reason (`SpecError::reason()`).
        reason: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Applying an object failed; the reconcile is retried with backoff.
    ApplyFailed {
        /// The error, as the user should read it.
        message: String,
    },
}

/// A change worth an Event on the ChatCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notable {
    /// `true` for a Warning event.
    pub warning: bool,
    /// Event reason (CamelCase).
    pub reason: String,
    /// Event note.
    pub message: String,
}

/// The external client endpoint of the HAProxy Service: the LoadBalancer's ingress when
/// assigned, or the node port (reachable on any node's address). `None` means clients use the
/// in-cluster DNS name.
pub fn external_endpoint(service: &Service) -> Option<String> {
    let spec = service.spec.as_ref()?;
    let port = spec.ports.as_ref()?.first()?;
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.hostname.clone().or_else(|| i.ip.clone()));
    match (spec.type_.as_deref(), ingress, port.node_port) {
        (Some("LoadBalancer"), Some(host), _) => Some(format!("ws://{host}:{}/ws", port.port)),
        (Some("NodePort"), _, Some(node_port)) => {
            Some(format!("ws://<node-address>:{node_port}/ws"))
        }
        _ => None,
    }
}

/// The next status (pure). `previous` supplies transition times and, for an invalid spec, the
/// figures that cannot be recomputed.
pub fn next_status(
    previous: Option<&ChatClusterStatus>,
    observed: &Observed<'_>,
    outcome: &Outcome,
    now: &Time,
) -> ChatClusterStatus {
    let sts_status = observed.chat_nodes.and_then(|s| s.status.as_ref());
    let replicas = sts_status.map(|s| s.replicas).unwrap_or(0);
    let ready_replicas = sts_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let sts_current = observed.chat_nodes.is_some_and(|s| {
        let status = s.status.as_ref();
        status.and_then(|st| st.observed_generation) >= s.metadata.generation
            && status.and_then(|st| st.updated_replicas).unwrap_or(0) == observed.desired_replicas
            && status.map(|st| st.replicas) == Some(observed.desired_replicas)
    });
    let deploy_status = observed.haproxy.and_then(|d| d.status.as_ref());
    let haproxy_available = deploy_status
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let haproxy_current = observed.haproxy.is_some_and(|d| {
        let status = d.status.as_ref();
        status.and_then(|st| st.observed_generation) >= d.metadata.generation
            && status.and_then(|st| st.updated_replicas).unwrap_or(0)
                >= observed.desired_haproxy_replicas
    });
    let all_ready = sts_current
        && ready_replicas == observed.desired_replicas
        && haproxy_current
        && haproxy_available >= observed.desired_haproxy_replicas;
    let progress = format!(
        "{ready_replicas}/{} chat nodes ready, {haproxy_available}/{} HAProxy replicas available",
        observed.desired_replicas, observed.desired_haproxy_replicas
    );

    let (ready, progressing, degraded) = match outcome {
        Outcome::InvalidSpec { reason, message } => (
            (
                "False",
                "InvalidSpec",
                format!("the spec is invalid: {message}"),
            ),
            (
                "False",
                "InvalidSpec",
                "nothing is applied until the spec is fixed".to_string(),
            ),
            ("True", reason.as_str(), message.clone()),
        ),
        other => {
            let ready = if all_ready {
                ("True", "AllReplicasReady", progress.clone())
            } else {
                ("False", "ReplicasNotReady", progress.clone())
            };
            let progressing = if all_ready {
                (
                    "False",
                    "Stable",
                    "every object matches the spec".to_string(),
                )
            } else {
                ("True", "RollingOut", progress.clone())
            };
            let degraded = match other {
                Outcome::ApplyFailed { message } => ("True", "ApplyFailed", message.clone()),
                _ => ("False", "AsExpected", "all objects applied".to_string()),
            };
            (ready, progressing, degraded)
        }
    };
    let old = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let conditions = [
        (condition::READY, ready),
        (condition::PROGRESSING, progressing),
        (condition::DEGRADED, degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let last_transition_time = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: Some(observed.generation),
            last_transition_time,
        }
    })
    .collect();

    let invalid = matches!(outcome, Outcome::InvalidSpec { .. });
    let keep = |f: fn(&ChatClusterStatus) -> Option<String>| previous.and_then(f);
    ChatClusterStatus {
        conditions,
        observed_generation: Some(observed.generation),
        replicas,
        ready_replicas,
        ready: Some(ChatClusterStatus::ready_column(
            ready_replicas,
            observed.desired_replicas,
        )),
        selector: if invalid {
            keep(|p| p.selector.clone())
        } else {
            observed.selector.clone()
        },
        endpoint: observed
            .haproxy_service
            .and_then(external_endpoint)
            .or_else(|| observed.cluster_endpoint.clone())
            .or_else(|| keep(|p| p.endpoint.clone())),
    }
}

fn find<'a>(status: Option<&'a ChatClusterStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// The changes between two statuses that deserve an Event (pure).
pub fn transitions(previous: Option<&ChatClusterStatus>, next: &ChatClusterStatus) -> Vec<Notable> {
    let mut out = Vec::new();
    let was = |t| find(previous, t).map(|c| (c.status.clone(), c.reason.clone()));
    if let Some(ready) = find(Some(next), condition::READY)
        && ready.status == "True"
        && was(condition::READY).map(|(s, _)| s) != Some("True".into())
    {
        out.push(Notable {
            warning: false,
            reason: "Ready".into(),
            message: ready.message.clone(),
        });
    }
    if let Some(degraded) = find(Some(next), condition::DEGRADED) {
        let before = was(condition::DEGRADED);
        if degraded.status == "True" && before != Some(("True".into(), degraded.reason.clone())) {
            out.push(Notable {
                warning: true,
                reason: degraded.reason.clone(),
                message: degraded.message.clone(),
            });
        } else if degraded.status == "False" && before.is_some_and(|(s, _)| s == "True") {
            out.push(Notable {
                warning: false,
                reason: "Recovered".into(),
                message: "the cluster is no longer degraded".into(),
            });
        }
    }
    out
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
