//! The ChatCluster controller: a `kube::runtime::Controller` on `ChatCluster` that owns every
//! object kind the desired state contains. A reconcile computes the plan (pure), sends only the
//! objects that changed ([`crate::apply`]), creates generated Secrets once, then writes status
//! through the status subresource and publishes Events for notable transitions. An invalid spec
//! writes `Degraded` and applies nothing. Errors requeue with exponential backoff.
//!
//! [`run`] holds the process wiring (flags, CRD check, admin server, leader election).

mod plan;
mod report;
mod run;
mod stores;

pub use plan::{Plan, plan};
pub use run::{RunArgs, check_crd, run, run_controller, run_with_leader_election, serve};
pub use stores::{MANAGED_BY_SELECTOR, OwnedStores};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tracing::Instrument;

use crate::apply::{self, FIELD_MANAGER, Mode, Verdict};
use crate::crd::ChatCluster;
use crate::defaults::OperatorDefaults;
use crate::error::{Error, Result};
use crate::metrics::{KindLabels, Metrics};
use crate::status::{Observed, Outcome};
use report::{fail, write_status};

/// Tunables of the controller (flags in `run`, short values in tests).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image defaults for the desired state.
    pub defaults: OperatorDefaults,
    /// First retry delay after a failed reconcile; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Reconcile again after this long even without a change (catches missed events).
    pub resync: Duration,
    /// How long a reconcile waits for the owned-object caches' first list.
    pub cache_timeout: Duration,
    /// `reportingInstance` of Events (the pod name).
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            defaults: OperatorDefaults::default(),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            resync: Duration::from_secs(300),
            cache_timeout: Duration::from_secs(30),
            instance: None,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Tunables.
    pub settings: Settings,
    /// Watch caches of owned objects.
    pub stores: OwnedStores,
    /// Process metrics.
    pub metrics: Metrics,
    recorder: Recorder,
    failures: Mutex<HashMap<ObjectRef<ChatCluster>, u32>>,
    written: report::Written,
}

impl Context {
    /// A context; `stores` come from [`OwnedStores::attach`].
    pub fn new(client: Client, settings: Settings, stores: OwnedStores, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: settings.instance.clone(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            settings,
            stores,
            metrics,
            recorder,
            failures: Mutex::default(),
            written: report::Written::default(),
        }
    }
}

/// Retry delay after the `attempt`-th consecutive failure (1-based): base, 2·base, 4·base … max.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

/// The controller's error policy: count the failure by reason and retry with exponential
/// backoff per ChatCluster.
pub fn error_policy(cc: Arc<ChatCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let reason = error.metric_label();
    ctx.metrics.failure(&reason);
    let attempt = {
        let mut failures = ctx.failures.lock().expect("failure map lock");
        let n = failures
            .entry(ObjectRef::from_obj(cc.as_ref()))
            .or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff_delay(attempt, ctx.settings.backoff_base, ctx.settings.backoff_max);
    tracing::warn!(
        namespace = cc.namespace().as_deref().unwrap_or(""),
        name = %cc.name_any(),
        %error,
        reason,
        attempt,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Reconciles one ChatCluster.
pub async fn reconcile(cc: Arc<ChatCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cc.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = cc
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let span =
        tracing::info_span!("reconcile", %namespace, %name, generation = cc.metadata.generation);
    async move {
        let _timer = ctx.metrics.reconcile_started();
        let action = reconcile_inner(&cc, &ctx, &namespace, &name).await?;
        ctx.failures
            .lock()
            .expect("failure map lock")
            .remove(&ObjectRef::from_obj(cc.as_ref()));
        Ok(action)
    }
    .instrument(span)
    .await
}

async fn reconcile_inner(
    cc: &ChatCluster,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Action> {
    let plan = match plan(
        cc,
        &ctx.settings.defaults,
        &crate::desired::secret::generate_cookie_key(),
    )? {
        Ok(plan) => plan,
        Err(spec_error) => {
            tracing::warn!(error = %spec_error, "invalid spec: applying nothing");
            ctx.metrics.failure("invalid_spec");
            let observed = Observed {
                generation: cc.metadata.generation.unwrap_or(0),
                desired_replicas: cc.spec.replicas,
                desired_haproxy_replicas: cc.spec.haproxy.replicas,
                ..Observed::default()
            };
            let outcome = Outcome::InvalidSpec {
                reason: spec_error.reason().to_string(),
                message: spec_error.to_string(),
            };
            write_status(cc, ctx, namespace, name, &observed, &outcome).await?;
            // Only a spec change can fix this; the watch brings it.
            return Ok(Action::await_change());
        }
    };
    if !ctx.stores.wait_ready(ctx.settings.cache_timeout).await {
        tracing::warn!("owned-object caches not ready: applying every object");
    }

    let mut live_sts: Option<StatefulSet> = None;
    let mut live_deploy: Option<Deployment> = None;
    let mut live_svc: Option<Service> = None;
    for obj in &plan.objects {
        let kind = KindLabels {
            kind: obj.resource.kind.clone(),
        };
        let cached = ctx.stores.meta(&obj.resource.kind, namespace, &obj.name);
        let answer: Option<DynamicObject> = match obj.mode {
            Mode::CreateIfAbsent => {
                match apply::create_if_absent(&ctx.client, obj, cached.is_some()).await {
                    Ok(_) => None,
                    Err(e) => return Err(fail(cc, ctx, namespace, name, &plan, e).await),
                }
            }
            Mode::Apply => match apply::verdict(obj, cached.as_ref()) {
                Verdict::Unchanged => {
                    ctx.metrics.unchanged.get_or_create(&kind).inc();
                    None
                }
                verdict => {
                    tracing::debug!(object = %obj.describe(), ?verdict, "applying");
                    match apply::apply(&ctx.client, obj).await {
                        Ok(answer) => {
                            ctx.metrics.applied.get_or_create(&kind).inc();
                            Some(answer)
                        }
                        Err(e) => return Err(fail(cc, ctx, namespace, name, &plan, e).await),
                    }
                }
            },
        };
        // Keep the API server's answer for status: it is fresher than the cache.
        if let Some(answer) = answer {
            match obj.resource.kind.as_str() {
                "StatefulSet" if obj.name == plan.chat_node => live_sts = typed(answer),
                "Deployment" if obj.name == plan.haproxy => live_deploy = typed(answer),
                "Service" if obj.name == plan.haproxy_service => live_svc = typed(answer),
                _ => {}
            }
        }
    }
    fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectRef<K> {
        ObjectRef::new(name).within(namespace)
    }
    let live_sts = live_sts.or_else(|| {
        ctx.stores
            .statefulsets
            .get(&key(namespace, &plan.chat_node))
            .map(|o| (*o).clone())
    });
    let live_deploy = live_deploy.or_else(|| {
        ctx.stores
            .deployments
            .get(&key(namespace, &plan.haproxy))
            .map(|o| (*o).clone())
    });
    let live_svc = live_svc.or_else(|| {
        ctx.stores
            .services
            .get(&key(namespace, &plan.haproxy_service))
            .map(|o| (*o).clone())
    });
    let observed = Observed {
        generation: cc.metadata.generation.unwrap_or(0),
        desired_replicas: plan.replicas,
        desired_haproxy_replicas: plan.haproxy_replicas,
        chat_nodes: live_sts.as_ref(),
        haproxy: live_deploy.as_ref(),
        haproxy_service: live_svc.as_ref(),
        selector: Some(plan.selector.clone()),
        cluster_endpoint: Some(plan.endpoint.clone()),
    };
    write_status(cc, ctx, namespace, name, &observed, &Outcome::Applied).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

fn typed<K: serde::de::DeserializeOwned>(obj: DynamicObject) -> Option<K> {
    serde_json::to_value(obj)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_up_to_max() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(5));
        let delays: Vec<_> = (1..=6)
            .map(|n| backoff_delay(n, base, max).as_millis())
            .collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff_delay(u32::MAX, base, max), max, "no overflow");
    }
}
