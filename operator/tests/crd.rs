//! The checked-in CRD is exactly what the types generate, and the CRD carries the pieces
//! `kubectl` users rely on (short name, subresources, printer columns, CEL rules).

use chatcluster_operator::crd::{ChatCluster, crd_yaml};
use kube::CustomResourceExt;

#[test]
fn checked_in_crds_match_the_types() {
    // The Helm chart ships its own copy (Helm installs CRDs only from the chart's crds/).
    for rel in [
        "crds/chatcluster.yaml",
        "charts/chatcluster-operator/crds/chatcluster.yaml",
    ] {
        let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml(),
            "{rel} is stale; regenerate both copies with:\n  \
             cargo run -p chatcluster-operator -- crd | tee crds/chatcluster.yaml \
             > charts/chatcluster-operator/crds/chatcluster.yaml"
        );
    }
}

#[test]
fn crd_has_scale_status_short_name_and_columns() {
    let crd = ChatCluster::crd();
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["chat".to_string()][..])
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Replicas", "Endpoint", "Age"]);
}

#[test]
fn crd_carries_cross_field_cel_rules() {
    let yaml = crd_yaml();
    for rule in [
        "self.replicas <= self.haproxy.serverSlots",
        "self.rateBurst >= self.ratePerSecond",
        "self.anonymous != has(self.jwtSecretRef)",
        "self.metadata.name.size() <= 40",
    ] {
        assert!(
            yaml.contains(rule),
            "CEL rule {rule:?} missing from the CRD"
        );
    }
    assert!(yaml.contains("duration(self.haproxy.timeouts.tunnel)"));
}
