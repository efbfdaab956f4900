//! Fixture builders for tests (this crate's and the controller's integration tests):
//! `ChatCluster::test().replicas(5).external_redis("redis", "url")`.
//!
//! Plain `pub` (no cargo feature): the builders are tiny and only construct values.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{ChatCluster, ChatClusterSpec, ChatClusterStatus, ExternalRedis, SecretKeyRef};

/// The uid every fixture carries, so owner references are predictable.
pub const TEST_UID: &str = "6f1c0a6e-0000-4000-8000-000000000001";

impl ChatCluster {
    /// `default/chat`, generation 1, uid [`TEST_UID`], default spec (3 replicas, anonymous,
    /// managed Redis), no status.
    pub fn test() -> Self {
        let mut cc = ChatCluster::new("chat", ChatClusterSpec::default());
        cc.metadata = ObjectMeta {
            name: Some("chat".into()),
            namespace: Some("default".into()),
            uid: Some(TEST_UID.into()),
            generation: Some(1),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        };
        cc
    }

    /// Sets `metadata.name`.
    pub fn named(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.into());
        self
    }

    /// Sets `metadata.namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }

    /// Removes the uid (as in a file given to `render`).
    pub fn without_uid(mut self) -> Self {
        self.metadata.uid = None;
        self
    }

    /// Sets `metadata.generation`.
    pub fn generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    /// Sets `spec.replicas`.
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.spec.replicas = replicas;
        self
    }

    /// Uses JWT auth with the key in Secret `name`, key `key`.
    pub fn jwt_secret(mut self, name: &str, key: &str) -> Self {
        self.spec.auth.anonymous = false;
        self.spec.auth.jwt_secret_ref = Some(SecretKeyRef {
            name: name.into(),
            key: key.into(),
        });
        self
    }

    /// Uses an external Redis whose URL is in Secret `name`, key `key`.
    pub fn external_redis(mut self, name: &str, key: &str) -> Self {
        self.spec.redis.external = Some(ExternalRedis {
            url_secret_ref: SecretKeyRef {
                name: name.into(),
                key: key.into(),
            },
        });
        self
    }

    /// Changes the spec in place with a closure, for fields without a dedicated builder.
    pub fn with_spec(mut self, change: impl FnOnce(&mut ChatClusterSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: ChatClusterStatus) -> Self {
        self.status = Some(status);
        self
    }
}
