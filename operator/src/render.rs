//! The `render` subcommand: every object the operator would apply for a ChatCluster file, as
//! multi-document YAML, for GitOps review and for the manifest tests.

use crate::crd::{ChatCluster, SpecError};
use crate::defaults::OperatorDefaults;
use crate::desired::{DesiredObject, desired_state, secret};

/// Why a file could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The file is not a ChatCluster.
    #[error("not a valid chatcluster.io/v1alpha1 ChatCluster: {0}")]
    Parse(String),
    /// The ChatCluster is valid YAML but its spec cannot be realized.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An object failed to serialize (a bug, never user input).
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

/// Parses one ChatCluster document; a missing namespace becomes `namespace`.
pub fn parse_chatcluster(text: &str, namespace: &str) -> Result<ChatCluster, RenderError> {
    let types: kube::core::TypeMeta =
        serde_saphyr::from_str(text).map_err(|e| RenderError::Parse(e.to_string()))?;
    if types.api_version != "chatcluster.io/v1alpha1" || types.kind != "ChatCluster" {
        return Err(RenderError::Parse(format!(
            "apiVersion {:?} and kind {:?}; expected chatcluster.io/v1alpha1 and ChatCluster",
            types.api_version, types.kind
        )));
    }
    let mut cc: ChatCluster =
        serde_saphyr::from_str(text).map_err(|e| RenderError::Parse(e.to_string()))?;
    cc.metadata
        .namespace
        .get_or_insert_with(|| namespace.to_owned());
    Ok(cc)
}

fn push_doc<T: serde::Serialize>(out: &mut String, object: &T) -> Result<(), RenderError> {
    out.push_str("---\n");
    out.push_str(&serde_saphyr::to_string(object).map_err(|e| RenderError::Yaml(e.to_string()))?);
    Ok(())
}

/// All objects as YAML documents: the cookie Secret (filled with `cookie_key`) first, then the
/// objects in apply order.
pub fn render_yaml(
    cc: &ChatCluster,
    defaults: &OperatorDefaults,
    cookie_key: &str,
) -> Result<String, RenderError> {
    let desired = desired_state(cc, defaults)?;
    let mut out = String::new();
    if let Some(s) = desired.cookie_secret.clone() {
        push_doc(&mut out, &secret::with_cookie_key(s, cookie_key))?;
    }
    for object in desired.objects() {
        match &object {
            DesiredObject::StatefulSet(o) => push_doc(&mut out, o),
            DesiredObject::Deployment(o) => push_doc(&mut out, o),
            DesiredObject::Service(o) => push_doc(&mut out, o),
            DesiredObject::ConfigMap(o) => push_doc(&mut out, o),
            DesiredObject::PodDisruptionBudget(o) => push_doc(&mut out, o),
            DesiredObject::NetworkPolicy(o) => push_doc(&mut out, o),
        }?;
    }
    Ok(out)
}
