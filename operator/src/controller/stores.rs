//! Watch caches (reflector stores) of the object kinds the controller owns. Their watch streams
//! also trigger reconciles of the owning ChatCluster; the caches let a reconcile see what is live
//! without extra GETs (change detection, StatefulSet readiness, the Service's address).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::crd::ChatCluster;

/// Label every owned object carries; the owned watches select on it so the operator never
/// caches other teams' Secrets or ConfigMaps.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=chatcluster-operator";

/// One store per owned kind.
#[derive(Clone)]
pub struct OwnedStores {
    /// chat-node and Redis StatefulSets.
    pub statefulsets: Store<StatefulSet>,
    /// HAProxy Deployment.
    pub deployments: Store<Deployment>,
    /// Services.
    pub services: Store<Service>,
    /// ConfigMaps.
    pub configmaps: Store<ConfigMap>,
    /// Generated Secrets.
    pub secrets: Store<Secret>,
    /// PodDisruptionBudgets.
    pub pdbs: Store<PodDisruptionBudget>,
    /// NetworkPolicies.
    pub networkpolicies: Store<NetworkPolicy>,
}

fn owned<K>(
    controller: Controller<ChatCluster>,
    client: &Client,
) -> (Controller<ChatCluster>, Store<K>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default()
        .labels(MANAGED_BY_SELECTOR)
        .any_semantic();
    // touched_objects: a deleted owned object also triggers a reconcile, which re-creates it.
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client.clone()), config))
        .default_backoff()
        .touched_objects();
    (controller.owns_stream(stream), reader)
}

impl OwnedStores {
    /// Adds a reflector-backed `owns` stream per kind to `controller` and returns the stores.
    pub fn attach(
        controller: Controller<ChatCluster>,
        client: &Client,
    ) -> (Controller<ChatCluster>, Self) {
        let (c, statefulsets) = owned(controller, client);
        let (c, deployments) = owned(c, client);
        let (c, services) = owned(c, client);
        let (c, configmaps) = owned(c, client);
        let (c, secrets) = owned(c, client);
        let (c, pdbs) = owned(c, client);
        let (c, networkpolicies) = owned(c, client);
        (
            c,
            Self {
                statefulsets,
                deployments,
                services,
                configmaps,
                secrets,
                pdbs,
                networkpolicies,
            },
        )
    }

    /// Waits until every store has finished its first list, so "absent from the cache" means
    /// absent. Returns false on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let all = async {
            let _ = self.statefulsets.wait_until_ready().await;
            let _ = self.deployments.wait_until_ready().await;
            let _ = self.services.wait_until_ready().await;
            let _ = self.configmaps.wait_until_ready().await;
            let _ = self.secrets.wait_until_ready().await;
            let _ = self.pdbs.wait_until_ready().await;
            let _ = self.networkpolicies.wait_until_ready().await;
        };
        tokio::time::timeout(timeout, all).await.is_ok()
    }

    /// Metadata of a cached object of `kind` (as in `ApiResource::kind`).
    pub fn meta(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjectMeta> {
        fn get<K: Resource<DynamicType = ()> + Clone>(
            s: &Store<K>,
            ns: &str,
            name: &str,
        ) -> Option<ObjectMeta> {
            s.get(&ObjectRef::new(name).within(ns))
                .map(|o| o.meta().clone())
        }
        match kind {
            "StatefulSet" => get(&self.statefulsets, namespace, name),
            "Deployment" => get(&self.deployments, namespace, name),
            "Service" => get(&self.services, namespace, name),
            "ConfigMap" => get(&self.configmaps, namespace, name),
            "Secret" => get(&self.secrets, namespace, name),
            "PodDisruptionBudget" => get(&self.pdbs, namespace, name),
            "NetworkPolicy" => get(&self.networkpolicies, namespace, name),
            _ => None,
        }
    }
}
