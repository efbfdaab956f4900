//! Desired state: one pure function from a `ChatCluster` (plus operator defaults) to every
//! Kubernetes object the operator applies. No I/O, no clock, no randomness: the same input
//! gives the same objects, so server-side apply is a no-op when nothing changed.
//!
//! One file per object kind: [`statefulset`] (chat nodes), [`service`] (their headless Service),
//! [`haproxy`] (ConfigMap, Deployment, Service, PodDisruptionBudget), [`redis`] (managed Redis),
//! [`secret`] (the generated cookie key) and [`networkpolicy`]; [`pod`] holds what the pod specs
//! share (security context, resources).

pub mod haproxy;
pub mod networkpolicy;
pub mod pod;
pub mod redis;
pub mod secret;
pub mod service;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::crd::{ChatCluster, SpecError, validate};
use crate::defaults::OperatorDefaults;

/// Name of the field manager, owner of every field the operator applies.
pub const FIELD_MANAGER: &str = "chatcluster-operator";
/// `app.kubernetes.io/name` of every object.
pub const APP_NAME: &str = "chatcluster";

/// Which part of a ChatCluster an object belongs to (`app.kubernetes.io/component`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// chat-node pods and their headless Service.
    ChatNode,
    /// The HAProxy tier.
    Haproxy,
    /// The managed Redis.
    Redis,
}

impl Component {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatNode => "chat-node",
            Self::Haproxy => "haproxy",
            Self::Redis => "redis",
        }
    }
}

/// Every object for one ChatCluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The chat-node StatefulSet (chat-node + sidecar per pod).
    pub chat_node: StatefulSet,
    /// Headless Service of the chat nodes; its `ws` port gives the SRV records HAProxy reads.
    pub chat_node_service: Service,
    /// ConfigMap holding `haproxy.cfg`.
    pub haproxy_config: ConfigMap,
    /// HAProxy Deployment (config hash on the pod template).
    pub haproxy: Deployment,
    /// The Service clients connect to.
    pub haproxy_service: Service,
    /// Keeps HAProxy replicas available during voluntary disruptions.
    pub haproxy_pdb: PodDisruptionBudget,
    /// Redis objects, `None` when the spec names an external Redis.
    pub redis: Option<ManagedRedis>,
    /// The dynamic-cookie key Secret to create if absent (`None` when the spec references its own).
    /// It has no data: fill it with [`secret::with_cookie_key`] and create it only when it does
    /// not exist yet, never server-side apply it (that would rotate the key and break every
    /// sticky cookie).
    pub cookie_secret: Option<Secret>,
    /// Label selector of the chat-node pods, for `status.selector` (scale subresource).
    pub selector: String,
    /// In-cluster endpoint for `status.endpoint`.
    pub endpoint: String,
}

/// The managed Redis.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedRedis {
    /// Single-replica Redis StatefulSet.
    pub statefulset: StatefulSet,
    /// Its ClusterIP Service.
    pub service: Service,
    /// Lets only chat-node pods reach it.
    pub network_policy: NetworkPolicy,
}

/// One object to server-side apply, for callers that treat them uniformly.
#[derive(Clone, Debug, PartialEq)]
pub enum DesiredObject {
    /// apps/v1 StatefulSet.
    StatefulSet(StatefulSet),
    /// apps/v1 Deployment.
    Deployment(Deployment),
    /// v1 Service.
    Service(Service),
    /// v1 ConfigMap.
    ConfigMap(ConfigMap),
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
}

impl Desired {
    /// The objects to server-side apply, in a dependency-friendly order (Redis before the chat
    /// nodes that use it, the ConfigMap before the HAProxy Deployment that mounts it). The
    /// cookie Secret is not included: see [`Desired::cookie_secret`].
    pub fn objects(&self) -> Vec<DesiredObject> {
        let mut out = Vec::with_capacity(9);
        if let Some(r) = &self.redis {
            out.push(DesiredObject::Service(r.service.clone()));
            out.push(DesiredObject::StatefulSet(r.statefulset.clone()));
            out.push(DesiredObject::NetworkPolicy(r.network_policy.clone()));
        }
        out.push(DesiredObject::Service(self.chat_node_service.clone()));
        out.push(DesiredObject::StatefulSet(self.chat_node.clone()));
        out.push(DesiredObject::ConfigMap(self.haproxy_config.clone()));
        out.push(DesiredObject::Deployment(self.haproxy.clone()));
        out.push(DesiredObject::Service(self.haproxy_service.clone()));
        out.push(DesiredObject::PodDisruptionBudget(self.haproxy_pdb.clone()));
        out
    }
}

/// What every builder needs: the cluster, its identity and the resolved defaults.
pub struct Ctx<'a> {
    /// The ChatCluster.
    pub cc: &'a ChatCluster,
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.namespace`.
    pub namespace: &'a str,
    /// Operator defaults (images, cluster domain).
    pub defaults: &'a OperatorDefaults,
}

impl Ctx<'_> {
    /// `<cluster>-<suffix>`, the name of a derived object.
    pub fn object_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Labels that select one component's pods.
    pub fn selector_labels(&self, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
            (
                "app.kubernetes.io/instance".to_owned(),
                self.name.to_owned(),
            ),
            (
                "app.kubernetes.io/component".to_owned(),
                component.as_str().to_owned(),
            ),
        ])
    }

    /// Selector labels plus `app.kubernetes.io/managed-by`.
    pub fn labels(&self, component: Component) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(component);
        labels.insert(
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        );
        labels
    }

    /// Metadata of a derived object: name, namespace, labels and the owner reference.
    pub fn meta(&self, name: String, component: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels(component)),
            owner_references: self.owner_reference().map(|r| vec![r]),
            ..ObjectMeta::default()
        }
    }

    /// Controller owner reference, so deleting the ChatCluster garbage-collects everything.
    /// `None` without a uid (a file given to `render`): objects applied from such output are
    /// then simply not owned, rather than owned by a uid that does not exist (which would make
    /// the garbage collector delete them).
    fn owner_reference(&self) -> Option<OwnerReference> {
        let uid = self.cc.metadata.uid.clone()?;
        Some(OwnerReference {
            api_version: "chatcluster.io/v1alpha1".to_owned(),
            kind: "ChatCluster".to_owned(),
            name: self.name.to_owned(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }
}

/// Every object the operator applies for `cc`, or why the spec cannot be realized.
pub fn desired_state(cc: &ChatCluster, defaults: &OperatorDefaults) -> Result<Desired, SpecError> {
    validate(cc)?;
    let ctx = Ctx {
        cc,
        name: cc.metadata.name.as_deref().ok_or(SpecError::MissingName)?,
        namespace: cc
            .metadata
            .namespace
            .as_deref()
            .ok_or(SpecError::MissingNamespace)?,
        defaults,
    };
    let selector = ctx
        .selector_labels(Component::ChatNode)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let haproxy_config = haproxy::config_map(&ctx);
    Ok(Desired {
        chat_node: statefulset::chat_node(&ctx),
        chat_node_service: service::headless(&ctx),
        haproxy: haproxy::deployment(&ctx, &haproxy_config),
        haproxy_config,
        haproxy_service: haproxy::service(&ctx),
        haproxy_pdb: haproxy::pdb(&ctx),
        redis: cc.spec.redis.external.is_none().then(|| ManagedRedis {
            statefulset: redis::statefulset(&ctx),
            service: redis::service(&ctx),
            network_policy: networkpolicy::redis(&ctx),
        }),
        cookie_secret: secret::cookie_secret(&ctx),
        selector,
        endpoint: haproxy::endpoint(&ctx),
    })
}

#[cfg(test)]
mod tests;
