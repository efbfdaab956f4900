//! The `render` subcommand's library side: parsing a ChatCluster file and printing every object
//! as multi-document YAML.

use chatcluster_operator::defaults::OperatorDefaults;
use chatcluster_operator::render::{RenderError, parse_chatcluster, render_yaml};

const MINIMAL: &str = "apiVersion: chatcluster.io/v1alpha1\nkind: ChatCluster\nmetadata:\n  name: lobby\nspec:\n  replicas: 2\n";

fn kinds(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn renders_every_object_in_apply_order_with_the_cookie_secret_first() {
    let cc = parse_chatcluster(MINIMAL, "team-a").unwrap();
    assert_eq!(
        cc.metadata.namespace.as_deref(),
        Some("team-a"),
        "--namespace fills the gap"
    );
    let yaml = render_yaml(&cc, &OperatorDefaults::default(), "fixed-key").unwrap();
    assert_eq!(yaml.matches("---\n").count(), 10);
    assert_eq!(
        kinds(&yaml),
        [
            "Secret",
            "Service",
            "StatefulSet",
            "NetworkPolicy",
            "Service",
            "StatefulSet",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget"
        ]
    );
    assert!(yaml.contains("namespace: team-a"));
    assert!(yaml.contains("replicas: 2"));
    // base64("fixed-key")
    assert!(yaml.contains("cookie-key: Zml4ZWQta2V5"), "{yaml}");
    assert!(
        !yaml.contains("ownerReferences"),
        "a file has no uid to own objects with"
    );
}

#[test]
fn an_explicit_namespace_wins_over_the_flag() {
    let text = MINIMAL.replace("  name: lobby\n", "  name: lobby\n  namespace: prod\n");
    let cc = parse_chatcluster(&text, "default").unwrap();
    assert_eq!(cc.metadata.namespace.as_deref(), Some("prod"));
}

#[test]
fn refuses_other_kinds_bad_yaml_and_invalid_specs() {
    let other = MINIMAL.replace("kind: ChatCluster", "kind: Deployment");
    let err = parse_chatcluster(&other, "default").unwrap_err();
    assert!(
        matches!(err, RenderError::Parse(_)) && err.to_string().contains("Deployment"),
        "{err}"
    );
    let bad = parse_chatcluster(
        "apiVersion: chatcluster.io/v1alpha1\nkind: ChatCluster\nspec: [",
        "d",
    );
    assert!(matches!(bad, Err(RenderError::Parse(_))));
    let wrong_type = MINIMAL.replace("replicas: 2", "replicas: many");
    assert!(matches!(
        parse_chatcluster(&wrong_type, "d"),
        Err(RenderError::Parse(_))
    ));
    let cc = parse_chatcluster(&MINIMAL.replace("replicas: 2", "replicas: 100"), "d").unwrap();
    let err = render_yaml(&cc, &OperatorDefaults::default(), "k").unwrap_err();
    assert!(err.to_string().contains("serverSlots"), "{err}");
}

#[test]
fn refuses_misspelt_fields_like_kubectl_does() {
    let typo = MINIMAL.replace(
        "  replicas: 2\n",
        "  replica: 2\n  haproxy:\n    servicee: {}\n",
    );
    let err = parse_chatcluster(&typo, "d").unwrap_err();
    assert!(
        matches!(&err, RenderError::UnknownFields(f) if f == &["spec.haproxy.servicee", "spec.replica"]),
        "{err}"
    );
    assert!(err.to_string().contains("spec.replica"), "{err}");
    // Explicit nulls and every field of the examples are fine.
    let nulls = MINIMAL.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  images:\n    chatNode: null\n",
    );
    assert!(parse_chatcluster(&nulls, "d").is_ok());
    for example in [
        "chatcluster.yaml",
        "chatcluster-production.yaml",
        "chatcluster-external-redis-jwt.yaml",
    ] {
        let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        parse_chatcluster(&text, "d").unwrap_or_else(|e| panic!("{example}: {e}"));
    }
}
