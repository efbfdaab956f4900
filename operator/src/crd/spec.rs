//! `ChatClusterSpec` and its parts. Field docs become the CRD's `description`s, so they are
//! written for the person running `kubectl explain chat.spec`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ChatClusterStatus;

/// A horizontally scaled WebSocket chat service: chat-node pods (each with a routing sidecar),
/// Redis for pub/sub and history, and HAProxy in front with sticky sessions.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chatcluster.io",
    version = "v1alpha1",
    kind = "ChatCluster",
    namespaced,
    shortname = "chat",
    category = "chatcluster",
    status = "ChatClusterStatus",
    derive = "PartialEq",
    doc = "A horizontally scaled WebSocket chat service managed by the chatcluster operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready", description = "Ready chat nodes / chat nodes"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas", description = "Desired chat nodes"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint", description = "Where clients connect"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters: object names such as <name>-haproxy and pod names must fit Kubernetes' 63-character limit")
)]
#[x_kube(validation = Rule::new("self.replicas <= self.haproxy.serverSlots").message("spec.replicas must not exceed spec.haproxy.serverSlots: every chat node needs an HAProxy server slot; raise serverSlots (HAProxy pods restart) or lower replicas"))]
#[x_kube(validation = Rule::new("self.rateBurst >= self.ratePerSecond").message("spec.rateBurst must be at least spec.ratePerSecond"))]
#[x_kube(validation = Rule::new("duration(self.haproxy.timeouts.tunnel) > duration(string(self.pingIntervalSeconds) + 's')").message("spec.haproxy.timeouts.tunnel must exceed spec.pingIntervalSeconds, or HAProxy closes idle WebSockets between pings"))]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterSpec {
    /// Number of chat-node pods (also settable with `kubectl scale chat/<name>`).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Container images; each one left out comes from the operator's flags.
    #[serde(default)]
    pub images: Images,
    /// Maximum WebSocket connections per chat node.
    #[serde(default = "default_capacity")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub capacity: i32,
    /// Largest accepted client message, in bytes.
    #[serde(default = "default_max_message_bytes")]
    #[schemars(range(min = 256, max = 16_777_216))]
    pub max_message_bytes: i32,
    /// Messages per second one connection may send (token bucket refill rate).
    #[serde(default = "default_rate_per_second")]
    #[schemars(range(min = 1, max = 100_000))]
    pub rate_per_second: i32,
    /// Burst size of the per-connection token bucket.
    #[serde(default = "default_rate_burst")]
    #[schemars(range(min = 1, max = 100_000))]
    pub rate_burst: i32,
    /// Frames queued for one slow client before it is disconnected.
    #[serde(default = "default_outbound_queue")]
    #[schemars(range(min = 1, max = 65_536))]
    pub outbound_queue: i32,
    /// Seconds a stopping chat node spends closing its connections (spread over this time).
    #[serde(default = "default_drain_grace_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub drain_grace_seconds: i32,
    /// Seconds between server pings on idle WebSockets; must be below the HAProxy tunnel timeout.
    #[serde(default = "default_ping_interval_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub ping_interval_seconds: i32,
    /// Messages kept per room for history and resume.
    #[serde(default = "default_history_length")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub history_length: i32,
    /// How clients prove who they are.
    #[serde(default)]
    pub auth: AuthSpec,
    /// The Redis used for pub/sub and history: managed by the operator unless `external` is set.
    #[serde(default)]
    pub redis: RedisSpec,
    /// The HAProxy tier in front of the chat nodes.
    #[serde(default)]
    pub haproxy: HaproxySpec,
    /// CPU and memory for each container; left out means the operator's modest defaults.
    #[serde(default)]
    pub resources: Resources,
}

/// Container images. Left out, the operator's `--*-image` flags decide.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// The chat-node image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_node: Option<String>,
    /// The routing sidecar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
    /// The HAProxy image (2.6 or later, with the Prometheus exporter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<String>,
    /// The Redis image for a managed Redis (7.0 or later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

/// A key in a Secret in the ChatCluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Either HS256 JWTs signed with a key from a Secret, or anonymous users.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.anonymous != has(self.jwtSecretRef)").message("set exactly one of auth.jwtSecretRef and auth.anonymous: true"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Allow clients without a token (they pick a display name).
    #[serde(default)]
    pub anonymous: bool,
    /// The HS256 key clients' JWTs are signed with (`sub` is the user name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,
}

impl Default for AuthSpec {
    /// Anonymous, like a chat-node started without `--jwt-secret`.
    fn default() -> Self {
        Self {
            anonymous: true,
            jwt_secret_ref: None,
        }
    }
}

/// Redis: managed (a single-replica StatefulSet owned by this ChatCluster) or external.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.external) || (!has(self.storage) && !has(self.storageClassName))").message("redis.storage and redis.storageClassName only apply to a managed Redis; remove them or remove redis.external"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Use this Redis instead of a managed one; nothing Redis-related is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
    /// Persistent volume size for a managed Redis (append-only file). Left out: in-memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// StorageClass of the managed Redis volume (cluster default when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// An externally run Redis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// A Secret key holding the URL, e.g. `redis://:password@redis.example:6379/0`.
    pub url_secret_ref: SecretKeyRef,
}

/// The HAProxy tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HaproxySpec {
    /// HAProxy pods; they share the cookie key, so any replica routes a sticky client home.
    #[serde(default = "default_haproxy_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// The Service clients connect to.
    #[serde(default)]
    pub service: HaproxyService,
    /// How new clients are spread: `leastconn` (fewest connections, with sidecar weights) or
    /// `roundrobin`.
    #[serde(default)]
    pub balance: Balance,
    /// Name of the sticky-session cookie HAProxy inserts.
    #[serde(default = "default_cookie_name")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub cookie_name: String,
    /// Use this Secret key as the dynamic-cookie key instead of one the operator generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_key_secret_ref: Option<SecretKeyRef>,
    /// HAProxy timeouts (HAProxy duration syntax: a number with ms, s, m or h).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Server slots in the backend, filled from DNS; the most chat nodes one HAProxy can route
    /// to without a restart.
    #[serde(default = "default_server_slots")]
    #[schemars(range(min = 1, max = 1000))]
    pub server_slots: i32,
    /// Connections one HAProxy process accepts (`maxconn`).
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_connections: i32,
}

impl Default for HaproxySpec {
    fn default() -> Self {
        Self {
            replicas: default_haproxy_replicas(),
            service: HaproxyService::default(),
            balance: Balance::default(),
            cookie_name: default_cookie_name(),
            cookie_key_secret_ref: None,
            timeouts: Timeouts::default(),
            server_slots: default_server_slots(),
            max_connections: default_max_connections(),
        }
    }
}

/// The HAProxy Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HaproxyService {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port clients connect to.
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotations for the Service (for example cloud load-balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for HaproxyService {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Kubernetes Service types the HAProxy Service may have.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// HAProxy balance algorithms the operator supports.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Fewest connections, corrected by the sidecars' agent weights.
    #[default]
    Leastconn,
    /// Rotate through the servers (by weight).
    Roundrobin,
}

/// HAProxy timeouts, with the seed configuration's values as defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// `timeout connect`: establishing a connection to a chat node.
    #[serde(default = "default_connect")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub connect: String,
    /// `timeout client`: client inactivity before the WebSocket upgrade.
    #[serde(default = "default_30s")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub client: String,
    /// `timeout client-fin`: a half-closed client connection.
    #[serde(default = "default_30s")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub client_fin: String,
    /// `timeout server`: server inactivity before the WebSocket upgrade.
    #[serde(default = "default_30s")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub server: String,
    /// `timeout tunnel`: an idle upgraded WebSocket; must exceed the ping interval.
    #[serde(default = "default_tunnel")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub tunnel: String,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            client: default_30s(),
            client_fin: default_30s(),
            server: default_30s(),
            tunnel: default_tunnel(),
        }
    }
}

/// Resource requests and limits per container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// The chat-node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_node: Option<ResourceRequirements>,
    /// The sidecar container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<ResourceRequirements>,
    /// Each HAProxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<ResourceRequirements>,
    /// The managed Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ResourceRequirements>,
}

impl Default for ChatClusterSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            images: Images::default(),
            capacity: default_capacity(),
            max_message_bytes: default_max_message_bytes(),
            rate_per_second: default_rate_per_second(),
            rate_burst: default_rate_burst(),
            outbound_queue: default_outbound_queue(),
            drain_grace_seconds: default_drain_grace_seconds(),
            ping_interval_seconds: default_ping_interval_seconds(),
            history_length: default_history_length(),
            auth: AuthSpec::default(),
            redis: RedisSpec::default(),
            haproxy: HaproxySpec::default(),
            resources: Resources::default(),
        }
    }
}

fn default_replicas() -> i32 {
    3
}
fn default_capacity() -> i32 {
    10_000
}
fn default_max_message_bytes() -> i32 {
    65_536
}
fn default_rate_per_second() -> i32 {
    20
}
fn default_rate_burst() -> i32 {
    40
}
fn default_outbound_queue() -> i32 {
    256
}
fn default_drain_grace_seconds() -> i32 {
    30
}
fn default_ping_interval_seconds() -> i32 {
    20
}
fn default_history_length() -> i32 {
    1000
}
fn default_haproxy_replicas() -> i32 {
    2
}
fn default_cookie_name() -> String {
    "CHATNODE".into()
}
fn default_server_slots() -> i32 {
    64
}
fn default_max_connections() -> i32 {
    8000
}
fn default_service_port() -> i32 {
    80
}
fn default_connect() -> String {
    "5s".into()
}
fn default_30s() -> String {
    "30s".into()
}
fn default_tunnel() -> String {
    "1h".into()
}
