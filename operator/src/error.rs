//! The operator's error type. Every failure that makes a reconcile retry is one variant here,
//! with a short stable `metric_label()` so the failure counter on `/metrics` can be grouped by
//! reason without leaking object names into label values.

/// Errors from reconciling, leader election and startup checks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the Kubernetes API failed; `action` says what the operator was doing.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator tried, for example `apply StatefulSet default/chat`.
        action: String,
        /// The client error (HTTP status and reason from the API server when it answered).
        #[source]
        source: kube::Error,
    },
    /// The `ChatCluster` CRD is not installed in the cluster, so nothing can be watched.
    #[error(
        "the CustomResourceDefinition {name} is not installed: run `kubectl apply -f crds/chatcluster.yaml` or install the Helm chart (charts/chatcluster-operator), then restart the operator"
    )]
    CrdMissing {
        /// The CRD's name, `chatclusters.chatcluster.io`.
        name: String,
    },
    /// The CRD is installed but does not serve the version this operator speaks.
    #[error(
        "the CustomResourceDefinition {name} does not serve version {version}: upgrade it with `kubectl apply -f crds/chatcluster.yaml`"
    )]
    CrdVersionMissing {
        /// The CRD's name.
        name: String,
        /// The version this operator reads and writes.
        version: String,
    },
    /// An object could not be turned into JSON (a bug in the desired state, never user input).
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        /// Which object.
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The `ChatCluster` has no namespace or name (the API server never sends such an object).
    #[error("ChatCluster object without {0}")]
    MissingMetadata(&'static str),
    /// The admin HTTP server could not run.
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
}

/// `Result` with this crate's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, stable reason for the `errors` metric and logs (`kube_conflict`, `crd_missing` …).
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) => match status.code {
                    409 => "kube_conflict".into(),
                    404 => "kube_not_found".into(),
                    403 => "kube_forbidden".into(),
                    422 => "kube_invalid".into(),
                    429 => "kube_throttled".into(),
                    code if code >= 500 => "kube_server_error".into(),
                    _ => "kube_api".into(),
                },
                _ => "kube_transport".into(),
            },
            Error::CrdMissing { .. } => "crd_missing".into(),
            Error::CrdVersionMissing { .. } => "crd_version_missing".into(),
            Error::Serialize { .. } => "serialize".into(),
            Error::MissingMetadata(_) => "missing_metadata".into(),
            Error::Admin(_) => "admin".into(),
        }
    }

    /// Wraps a client error with what the operator was doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// The HTTP status code when the API server answered with an error status.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        }
    }
}
