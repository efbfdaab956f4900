//! Reporting a reconcile's outcome: the status (through the status subresource, server-side
//! applied with the operator's field manager) and Events for notable transitions.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;

use super::{Context, Plan};
use crate::apply::FIELD_MANAGER;
use crate::crd::{ChatCluster, ChatClusterStatus};
use crate::error::{Error, Result};
use crate::status::{self, Observed, Outcome};

/// The last status written per ChatCluster, with the `resourceVersion` the ChatCluster had
/// when it was reconciled.
/// A written status and the ChatCluster `resourceVersion` it was computed from.
type Entry = (Option<String>, ChatClusterStatus);

#[derive(Default)]
pub(super) struct Written(Mutex<HashMap<ObjectRef<ChatCluster>, Entry>>);

impl Written {
    /// Our last written status, if the ChatCluster has not changed since (same version).
    fn previous(
        &self,
        key: &ObjectRef<ChatCluster>,
        version: Option<&str>,
    ) -> Option<ChatClusterStatus> {
        let map = self.0.lock().expect("written-status lock");
        map.get(key)
            .filter(|(v, _)| v.as_deref() == version)
            .map(|(_, s)| s.clone())
    }

    fn remember(
        &self,
        key: ObjectRef<ChatCluster>,
        version: Option<String>,
        status: ChatClusterStatus,
    ) {
        self.0
            .lock()
            .expect("written-status lock")
            .insert(key, (version, status));
    }
}

/// Records an apply failure as `Degraded` (best effort: the API may be down) and returns the error.
pub(super) async fn fail(
    cc: &ChatCluster,
    ctx: &Context,
    namespace: &str,
    name: &str,
    plan: &Plan,
    error: Error,
) -> Error {
    let observed = Observed {
        generation: cc.metadata.generation.unwrap_or(0),
        desired_replicas: plan.replicas,
        desired_haproxy_replicas: plan.haproxy_replicas,
        selector: Some(plan.selector.clone()),
        cluster_endpoint: Some(plan.endpoint.clone()),
        ..Observed::default()
    };
    let outcome = Outcome::ApplyFailed {
        message: error.to_string(),
    };
    if let Err(status_error) = write_status(cc, ctx, namespace, name, &observed, &outcome).await {
        tracing::warn!(error = %status_error, "cannot record the failure in status");
    }
    error
}

/// Writes the next status if it differs from the current one, and publishes Events for
/// notable transitions.
pub(super) async fn write_status(
    cc: &ChatCluster,
    ctx: &Context,
    namespace: &str,
    name: &str,
    observed: &Observed<'_>,
    outcome: &Outcome,
) -> Result<()> {
    let key = ObjectRef::from_obj(cc);
    // The cache may not have seen our last status write yet: if the ChatCluster is unchanged
    // since that write, what we wrote is the real previous status (no duplicate writes or Events).
    let remembered = ctx
        .written
        .previous(&key, cc.metadata.resource_version.as_deref());
    let previous = remembered.as_ref().or(cc.status.as_ref());
    let mut next = status::next_status(previous, observed, outcome, &Time(Timestamp::now()));
    if matches!(outcome, Outcome::ApplyFailed { .. }) {
        // Without fresh observations keep the figures we had instead of reporting zeros.
        if let Some(p) = previous {
            next.replicas = p.replicas;
            next.ready_replicas = p.ready_replicas;
            next.ready = p.ready.clone();
            next.endpoint = p.endpoint.clone();
        }
    }
    if previous == Some(&next) {
        return Ok(());
    }
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": ChatCluster::api_version(&()),
        "kind": ChatCluster::kind(&()),
        "status": next,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube(format!("write status of ChatCluster {namespace}/{name}"), e))?;
    ctx.written
        .remember(key, cc.metadata.resource_version.clone(), next.clone());
    let reference = cc.object_ref(&());
    for notable in status::transitions(previous, &next) {
        let event = Event {
            type_: if notable.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notable.reason.clone(),
            note: Some(notable.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        // Events are informational: a failure to publish one must not fail the reconcile.
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%err, reason = notable.reason, "cannot publish event");
        }
    }
    Ok(())
}
