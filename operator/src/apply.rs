//! The thin apply layer: turns the typed objects of the desired state into server-side apply
//! requests with ONE field manager (`chatcluster-operator`, forced), and decides cheaply which of
//! them need sending at all.
//!
//! Change detection: every applied object carries the annotation [`HASH_ANNOTATION`], a SHA-256
//! of the object as the operator rendered it. An object is skipped when the live copy in the
//! controller's watch cache has the same hash and no other field manager has taken over any of
//! its non-metadata fields (a `kubectl edit` or `kubectl scale` of an owned object shows up as a
//! foreign entry in `managedFields`; re-applying with force takes the fields back). This needs no
//! memory in the operator, so it gives the same answer after a restart.
//!
//! Generated Secrets (the HAProxy cookie key) are different: they are created once when absent
//! and never applied again, so their random content never rotates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The one field manager the operator applies with (defined next to the desired state).
pub use crate::desired::FIELD_MANAGER;

/// Annotation holding the hash of what the operator last applied to an object.
pub const HASH_ANNOTATION: &str = "chatcluster.io/applied-hash";

/// How an object reaches the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Server-side apply whenever the rendered object changed.
    Apply,
    /// Create once if absent; never touch an existing object (generated Secrets).
    CreateIfAbsent,
}

/// One object of the desired state, type-erased for applying.
#[derive(Debug, Clone)]
pub struct Object {
    /// Kind, group, version and plural.
    pub resource: ApiResource,
    /// Namespace (every owned object is namespaced).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The full object as JSON, including [`HASH_ANNOTATION`] for [`Mode::Apply`].
    pub body: Value,
    /// The hash stored in [`HASH_ANNOTATION`].
    pub hash: String,
    /// How to send it.
    pub mode: Mode,
}

impl Object {
    /// Erases a typed object, stamping the hash annotation on it.
    pub fn new<K>(obj: &K, mode: Mode) -> Result<Self>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let meta: &ObjectMeta = obj.meta();
        let name = meta
            .name
            .clone()
            .ok_or(Error::MissingMetadata("name on a desired object"))?;
        let namespace = meta
            .namespace
            .clone()
            .ok_or(Error::MissingMetadata("namespace on a desired object"))?;
        let what = || format!("{} {namespace}/{name}", resource.kind);
        let mut body = serde_json::to_value(obj).map_err(|source| Error::Serialize {
            what: what(),
            source,
        })?;
        // typed k8s-openapi objects serialize without apiVersion/kind only in odd cases; be explicit.
        body["apiVersion"] = Value::String(resource.api_version.clone());
        body["kind"] = Value::String(resource.kind.clone());
        let hash = hash_of(&body);
        if mode == Mode::Apply {
            let annotations = body["metadata"]
                .as_object_mut()
                .expect("metadata is an object")
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            annotations[HASH_ANNOTATION] = Value::String(hash.clone());
        }
        Ok(Self {
            resource,
            namespace,
            name,
            body,
            hash,
            mode,
        })
    }

    /// `Kind namespace/name`, for logs and error messages.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.resource.kind, self.namespace, self.name)
    }

    fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.resource)
    }
}

/// SHA-256 (hex, first 16 bytes) of an object's JSON. serde_json writes struct fields in
/// declaration order and maps sorted, so equal objects hash equally.
pub fn hash_of(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    hex::encode(&digest[..16])
}

/// Why an object is (or is not) sent; the pure part of the change detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The live object matches what we would apply.
    Unchanged,
    /// Not in the watch cache (new, deleted, or the cache has not seen it yet).
    Missing,
    /// The rendered object differs from what was last applied.
    Changed,
    /// Another field manager owns some of its fields.
    TakenOver {
        /// The foreign manager's name.
        manager: String,
    },
}

/// Compares the desired object with the live one from the watch cache (pure).
pub fn verdict(desired: &Object, live: Option<&ObjectMeta>) -> Verdict {
    let Some(live) = live else {
        return Verdict::Missing;
    };
    if live
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH_ANNOTATION))
        != Some(&desired.hash)
    {
        return Verdict::Changed;
    }
    for entry in live.managed_fields.iter().flatten() {
        let manager = entry.manager.as_deref().unwrap_or("");
        if manager == FIELD_MANAGER || entry.subresource.as_deref() == Some("status") {
            continue;
        }
        let owns_content = entry
            .fields_v1
            .as_ref()
            .and_then(|f| f.0.as_object())
            .is_some_and(|fields| fields.keys().any(|k| k != "f:metadata" && k != "f:status"));
        if owns_content {
            return Verdict::TakenOver {
                manager: manager.to_string(),
            };
        }
    }
    Verdict::Unchanged
}

/// Server-side applies `obj` (forced, field manager [`FIELD_MANAGER`]) and returns the object
/// the API server answered with.
pub async fn apply(client: &kube::Client, obj: &Object) -> Result<DynamicObject> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    obj.api(client)
        .patch(&obj.name, &params, &Patch::Apply(&obj.body))
        .await
        .map_err(|e| Error::kube(format!("apply {}", obj.describe()), e))
}

/// Creates `obj` unless it exists. `known_present` short-cuts the GET when the watch cache
/// already holds it. Returns whether it was created.
pub async fn create_if_absent(
    client: &kube::Client,
    obj: &Object,
    known_present: bool,
) -> Result<bool> {
    if known_present {
        return Ok(false);
    }
    let api = obj.api(client);
    // The cache may not have seen a Secret created moments ago: ask the API server before creating.
    let existing = api
        .get_opt(&obj.name)
        .await
        .map_err(|e| Error::kube(format!("get {}", obj.describe()), e))?;
    if existing.is_some() {
        return Ok(false);
    }
    let body: DynamicObject =
        serde_json::from_value(obj.body.clone()).map_err(|source| Error::Serialize {
            what: obj.describe(),
            source,
        })?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.create(&params, &body).await {
        Ok(created) => {
            tracing::info!(object = %obj.describe(), uid = ?created.uid(), "created generated object");
            Ok(true)
        }
        // Lost a race with another writer: the object exists, which is all we wanted.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(Error::kube(format!("create {}", obj.describe()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use std::collections::BTreeMap;

    fn cm(value: &str) -> Object {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("cfg".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("k".to_string(), value.to_string())])),
            ..ConfigMap::default()
        };
        Object::new(&cm, Mode::Apply).unwrap()
    }

    fn live(hash: &str, managers: &[(&str, Option<&str>, Value)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(BTreeMap::from([(
                HASH_ANNOTATION.to_string(),
                hash.to_string(),
            )])),
            managed_fields: Some(
                managers
                    .iter()
                    .map(|(m, sub, fields)| ManagedFieldsEntry {
                        manager: Some(m.to_string()),
                        subresource: sub.map(str::to_string),
                        fields_v1: Some(FieldsV1(fields.clone())),
                        ..ManagedFieldsEntry::default()
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn object_carries_kind_and_hash_annotation() {
        let o = cm("a");
        assert_eq!(o.body["kind"], "ConfigMap");
        assert_eq!(o.body["apiVersion"], "v1");
        assert_eq!(
            o.body["metadata"]["annotations"][HASH_ANNOTATION],
            o.hash.as_str()
        );
        assert_ne!(o.hash, cm("b").hash, "content changes change the hash");
        assert_eq!(o.hash, cm("a").hash, "the hash is stable");
    }

    #[test]
    fn verdicts() {
        let o = cm("a");
        assert_eq!(verdict(&o, None), Verdict::Missing);
        assert_eq!(verdict(&o, Some(&live("old", &[]))), Verdict::Changed);
        let ours = (FIELD_MANAGER, None, serde_json::json!({"f:data": {}}));
        let status = (
            "kube-controller-manager",
            Some("status"),
            serde_json::json!({"f:status": {}}),
        );
        let labels = (
            "argocd",
            None,
            serde_json::json!({"f:metadata": {"f:labels": {}}}),
        );
        assert_eq!(
            verdict(&o, Some(&live(&o.hash, &[ours.clone(), status, labels]))),
            Verdict::Unchanged
        );
        let edit = (
            "kubectl-edit",
            None,
            serde_json::json!({"f:data": {"f:k": {}}}),
        );
        assert_eq!(
            verdict(&o, Some(&live(&o.hash, &[ours, edit]))),
            Verdict::TakenOver {
                manager: "kubectl-edit".into()
            }
        );
    }
}
