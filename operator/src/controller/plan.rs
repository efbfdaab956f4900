//! Turns the typed desired state into the apply plan: type-erased objects in apply order, plus
//! what the status needs to find among them (the chat-node StatefulSet, HAProxy Deployment and
//! Service, the pod selector).

use crate::apply::{Mode, Object};
use crate::crd::{ChatCluster, SpecError};
use crate::defaults::OperatorDefaults;
use crate::desired::{Desired, DesiredObject, desired_state};
use crate::error::Result;

/// Everything one reconcile applies, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Objects to send: server-side applied ones in dependency order, generated Secrets
    /// ([`Mode::CreateIfAbsent`]) first so pods that mount them can start.
    pub objects: Vec<Object>,
    /// Name of the chat-node StatefulSet.
    pub chat_node: String,
    /// Name of the HAProxy Deployment.
    pub haproxy: String,
    /// Name of the HAProxy Service.
    pub haproxy_service: String,
    /// Label selector of the chat-node pods.
    pub selector: String,
    /// In-cluster client endpoint.
    pub endpoint: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.haproxy.replicas`.
    pub haproxy_replicas: i32,
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Builds the plan for `cc`; `Ok(Err(_))` is a spec the operator refuses (nothing to apply).
/// `cookie_key` fills a generated cookie Secret; it is only used if the Secret is absent.
pub fn plan(
    cc: &ChatCluster,
    defaults: &OperatorDefaults,
    cookie_key: &str,
) -> Result<std::result::Result<Plan, SpecError>> {
    let desired: Desired = match desired_state(cc, defaults) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let mut objects = Vec::new();
    if let Some(secret) = &desired.cookie_secret {
        let filled = crate::desired::secret::with_cookie_key(secret.clone(), cookie_key);
        objects.push(Object::new(&filled, Mode::CreateIfAbsent)?);
    }
    for obj in desired.objects() {
        objects.push(match &obj {
            DesiredObject::StatefulSet(o) => Object::new(o, Mode::Apply)?,
            DesiredObject::Deployment(o) => Object::new(o, Mode::Apply)?,
            DesiredObject::Service(o) => Object::new(o, Mode::Apply)?,
            DesiredObject::ConfigMap(o) => Object::new(o, Mode::Apply)?,
            DesiredObject::PodDisruptionBudget(o) => Object::new(o, Mode::Apply)?,
            DesiredObject::NetworkPolicy(o) => Object::new(o, Mode::Apply)?,
        });
    }
    Ok(Ok(Plan {
        objects,
        chat_node: name_of(&desired.chat_node.metadata),
        haproxy: name_of(&desired.haproxy.metadata),
        haproxy_service: name_of(&desired.haproxy_service.metadata),
        selector: desired.selector.clone(),
        endpoint: desired.endpoint.clone(),
        replicas: cc.spec.replicas,
        haproxy_replicas: cc.spec.haproxy.replicas,
    }))
}
