//! Operator-wide defaults that a `ChatCluster` may leave out (container images, cluster DNS
//! domain), set by the
//! operator's flags and shared by the `run`, `render` and `local` subcommands.

/// Image defaults; each flag also reads an environment variable (the Helm chart sets them).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct OperatorDefaults {
    /// chat-node image used when a ChatCluster leaves `spec.images.chatNode` out.
    #[arg(long, env = "CHATCLUSTER_CHAT_NODE_IMAGE", default_value = concat!("ghcr.io/chatcluster/chat-node:", env!("CARGO_PKG_VERSION")))]
    pub chat_node_image: String,
    /// Sidecar image used when a ChatCluster leaves `spec.images.sidecar` out.
    #[arg(long, env = "CHATCLUSTER_SIDECAR_IMAGE", default_value = concat!("ghcr.io/chatcluster/sidecar:", env!("CARGO_PKG_VERSION")))]
    pub sidecar_image: String,
    /// HAProxy image used when a ChatCluster leaves `spec.images.haproxy` out.
    #[arg(
        long,
        env = "CHATCLUSTER_HAPROXY_IMAGE",
        default_value = "docker.io/library/haproxy:2.6"
    )]
    pub haproxy_image: String,
    /// Redis image used for a managed Redis when a ChatCluster leaves `spec.images.redis` out.
    #[arg(
        long,
        env = "CHATCLUSTER_REDIS_IMAGE",
        default_value = "docker.io/library/redis:7.0"
    )]
    pub redis_image: String,
    /// DNS domain of the cluster, for the SRV name HAProxy resolves.
    #[arg(
        long,
        env = "CHATCLUSTER_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
}

impl Default for OperatorDefaults {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            chat_node_image: concat!("ghcr.io/chatcluster/chat-node:", env!("CARGO_PKG_VERSION"))
                .into(),
            sidecar_image: concat!("ghcr.io/chatcluster/sidecar:", env!("CARGO_PKG_VERSION"))
                .into(),
            haproxy_image: "docker.io/library/haproxy:2.6".into(),
            redis_image: "docker.io/library/redis:7.0".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}
