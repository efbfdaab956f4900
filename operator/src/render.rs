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
    /// Fields the ChatCluster type does not have (typos), which `kubectl apply` refuses too.
    #[error("unknown field(s) {}: check the spelling with `kubectl explain chatcluster.spec`", .0.join(", "))]
    UnknownFields(Vec<String>),
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
    let input: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| RenderError::Parse(e.to_string()))?;
    let mut cc: ChatCluster =
        serde_json::from_value(input.clone()).map_err(|e| RenderError::Parse(e.to_string()))?;
    // serde skips unknown keys; a key that does not survive the round trip is a typo.
    let known = serde_json::to_value(&cc).map_err(|e| RenderError::Parse(e.to_string()))?;
    let mut unknown = Vec::new();
    unknown_fields(&input, &known, "", &mut unknown);
    if !unknown.is_empty() {
        return Err(RenderError::UnknownFields(unknown));
    }
    cc.metadata
        .namespace
        .get_or_insert_with(|| namespace.to_owned());
    Ok(cc)
}

/// Paths of `input` (ignoring nulls) that `known` lacks.
fn unknown_fields(
    input: &serde_json::Value,
    known: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => {
            for (key, value) in input.iter().filter(|(_, v)| !v.is_null()) {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key) {
                    Some(k) => unknown_fields(value, k, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(input), Value::Array(known)) => {
            for (n, (i, k)) in input.iter().zip(known).enumerate() {
                unknown_fields(i, k, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
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
