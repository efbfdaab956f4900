//! The RBAC rules the operator needs: the single source of truth. `chatcluster-operator rbac`
//! prints them as a ClusterRole for the Helm chart to compare against, and the controller tests
//! map every request the controller makes against the mock API server to a (group, resource,
//! verb) triple with [`permission_for`] and check it against [`RULES`], so the list cannot drift
//! from the code.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One RBAC rule with the reason the operator needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for the core group).
    pub api_group: &'static str,
    /// Resources, with subresources as `resource/sub`.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Why the operator needs this rule.
    pub why: &'static str,
}

/// Every rule the operator needs. Server-side apply of an object that does not exist yet is
/// authorized as `create` as well as `patch`, so applied kinds carry both.
pub const RULES: &[Rule] = &[
    Rule {
        api_group: "chatcluster.io",
        resources: &["chatclusters"],
        verbs: &["list", "watch"],
        why: "watch ChatClusters (the controller's primary resource)",
    },
    Rule {
        api_group: "chatcluster.io",
        resources: &["chatclusters/status"],
        verbs: &["patch"],
        why: "write status (conditions, replicas, endpoint) through the status subresource",
    },
    Rule {
        api_group: "apps",
        resources: &["statefulsets", "deployments"],
        verbs: &["list", "watch", "create", "patch"],
        why: "chat-node and Redis StatefulSets, HAProxy Deployment: watched as owned objects, server-side applied",
    },
    Rule {
        api_group: "",
        resources: &["services", "configmaps"],
        verbs: &["list", "watch", "create", "patch"],
        why: "headless/HAProxy/Redis Services and the haproxy.cfg ConfigMap: watched, server-side applied",
    },
    Rule {
        api_group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch", "create"],
        why: "generated Secrets (HAProxy cookie key): created once when absent, never rewritten",
    },
    Rule {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["list", "watch", "create", "patch"],
        why: "HAProxy PodDisruptionBudget: watched, server-side applied",
    },
    Rule {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: &["list", "watch", "create", "patch"],
        why: "NetworkPolicy that lets only chat nodes reach Redis: watched, server-side applied",
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        why: "Events on ChatClusters; patch is used when the same event repeats (event series)",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        why: "leader election Lease (only with --leader-election)",
    },
    Rule {
        api_group: "apiextensions.k8s.io",
        resources: &["customresourcedefinitions"],
        verbs: &["get"],
        why: "startup check that the ChatCluster CRD is installed",
    },
];

/// Permissions that the mock scenarios cannot exercise, with the reason they stay in [`RULES`].
pub const UNEXERCISED: &[(&str, &str, &str, &str)] = &[(
    "events.k8s.io",
    "events",
    "patch",
    "kube's event Recorder patches an Event instead of creating a new one when the same event repeats within minutes",
)];

/// Whether [`RULES`] grant `verb` on `group`/`resource`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    RULES
        .iter()
        .any(|r| r.api_group == group && r.resources.contains(&resource) && r.verbs.contains(&verb))
}

/// A permission a request needs: (API group, resource incl. subresource, verb).
pub type Permission = (String, String, String);

/// The permissions an API request needs, from its method, path and query (`watch=true` makes a
/// GET on a collection a `watch`). Server-side apply (`PATCH` with `fieldManager` and an apply
/// content type) of an object needs `create` too, in case the object does not exist yet.
pub fn permission_for(method: &str, path: &str, query: &str, apply: bool) -> Vec<Permission> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return Vec::new(),
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named, subresource) = match rest {
        [res] => (res.to_string(), false, false),
        [res, _name] => (res.to_string(), true, false),
        [res, _name, sub] => (format!("{res}/{sub}"), true, true),
        _ => return Vec::new(),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verbs: &[&str] = match (method, named) {
        ("GET", _) if watch => &["watch"],
        ("GET", true) => &["get"],
        ("GET", false) => &["list"],
        ("POST", _) => &["create"],
        ("PUT", _) => &["update"],
        // Applying a subresource (status) never creates the object.
        ("PATCH", _) if apply && !subresource => &["patch", "create"],
        ("PATCH", _) => &["patch"],
        ("DELETE", true) => &["delete"],
        ("DELETE", false) => &["deletecollection"],
        _ => &[],
    };
    verbs
        .iter()
        .map(|v| (group.to_string(), resource.clone(), v.to_string()))
        .collect()
}

/// The rules as a ClusterRole named `chatcluster-operator`.
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some("chatcluster-operator".into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "chatcluster-operator".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        rules: Some(
            RULES
                .iter()
                .map(|r| PolicyRule {
                    api_groups: Some(vec![r.api_group.to_string()]),
                    resources: Some(r.resources.iter().map(|s| s.to_string()).collect()),
                    verbs: r.verbs.iter().map(|s| s.to_string()).collect(),
                    ..PolicyRule::default()
                })
                .collect(),
        ),
        aggregation_rule: None,
    }
}

/// The ClusterRole as YAML, with a comment line per rule saying why it is needed.
pub fn cluster_role_yaml() -> String {
    let mut out = String::from(
        "# RBAC rules of chatcluster-operator (generated by `chatcluster-operator rbac`).\n",
    );
    for r in RULES {
        let group = if r.api_group.is_empty() {
            "core"
        } else {
            r.api_group
        };
        out.push_str(&format!("# {group} {}: {}\n", r.resources.join(","), r.why));
    }
    out.push_str(&serde_saphyr::to_string(&cluster_role()).expect("a ClusterRole serializes"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(g: &str, r: &str, v: &str) -> Permission {
        (g.into(), r.into(), v.into())
    }

    #[test]
    fn maps_paths_to_group_resource_and_verb() {
        assert_eq!(
            permission_for(
                "GET",
                "/apis/chatcluster.io/v1alpha1/chatclusters",
                "watch=true&timeoutSeconds=290",
                false
            ),
            vec![perm("chatcluster.io", "chatclusters", "watch")]
        );
        assert_eq!(
            permission_for(
                "GET",
                "/api/v1/namespaces/ns/secrets/chat-cookie",
                "",
                false
            ),
            vec![perm("", "secrets", "get")]
        );
        assert_eq!(
            permission_for(
                "PATCH",
                "/apis/apps/v1/namespaces/ns/statefulsets/chat",
                "fieldManager=x&force=true",
                true
            ),
            vec![
                perm("apps", "statefulsets", "patch"),
                perm("apps", "statefulsets", "create")
            ]
        );
        assert_eq!(
            permission_for(
                "PATCH",
                "/apis/chatcluster.io/v1alpha1/namespaces/ns/chatclusters/c/status",
                "",
                false
            ),
            vec![perm("chatcluster.io", "chatclusters/status", "patch")]
        );
        assert_eq!(
            permission_for("GET", "/api/v1/services", "", false),
            vec![perm("", "services", "list")]
        );
    }

    #[test]
    fn unexercised_permissions_are_granted() {
        for (g, r, v, _) in UNEXERCISED {
            assert!(allows(g, r, v));
        }
    }

    #[test]
    fn yaml_is_a_cluster_role_with_every_rule() {
        let yaml = cluster_role_yaml();
        let back: ClusterRole = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, cluster_role());
        assert_eq!(back.rules.unwrap().len(), RULES.len());
        assert!(yaml.contains("kind: ClusterRole"), "{yaml}");
    }
}
