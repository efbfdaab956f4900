"""The Helm chart in charts/chatcluster-operator, checked with Helm's own code (helm-python-sdk).

What a platform engineer relies on when they `helm install` it:
- Helm's linter is clean and the chart renders with the defaults and with other value sets;
- values.schema.json rejects a wrong value before anything reaches the cluster;
- every rendered manifest is a valid Kubernetes object (kubernetes-validate, strict) for 1.33
  and 1.37;
- the ClusterRole grants exactly what the operator uses (`chatcluster-operator rbac`, generated
  from operator/src/rbac.rs), with no wildcard;
- the chart ships the same CRD as crds/chatcluster.yaml.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "chatcluster-operator"
TOP_CRD = ROOT / "crds" / "chatcluster.yaml"
CHART_CRD = CHART / "crds" / "chatcluster.yaml"
OPERATOR_BIN = Path(
    os.environ.get("CHATCLUSTER_OPERATOR_BIN", ROOT / "target" / "debug" / "chatcluster-operator")
)
KUBE_VERSIONS = ["1.33", "1.37"]
RELEASE = "chat"
NAMESPACE = "chat-system"

# Kinds that are not built into Kubernetes, so kubernetes-validate has no schema for them.
# They are checked by hand in the tests that turn them on.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    # Two operator replicas as a platform team would run them: leader election, a budget,
    # Prometheus scraping through the prometheus-operator.
    "ha": {
        "replicaCount": 2,
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "chatcluster-operator"}},
            }
        ],
    },
    # A locked-down install: pinned digest, private registry, existing ServiceAccount, text logs,
    # leader election forced on with one replica, percentage budget, scheduling constraints.
    "custom": {
        "image": {
            "repository": "registry.example.com/chat/operator",
            "digest": "sha256:" + "ab" * 32,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "defaultImages": {
            "chatNode": {"repository": "registry.example.com/chat/chat-node", "tag": "1.2.3"},
            "sidecar": {"repository": "registry.example.com/chat/sidecar", "tag": "1.2.3"},
            "haproxy": {"repository": "registry.example.com/haproxy", "tag": "3.0"},
            "redis": {"repository": "registry.example.com/redis", "tag": "7.2"},
        },
        "serviceAccount": {"create": False, "name": "chat-operator"},
        "leaderElection": {"enabled": True},
        "logFormat": "text",
        "logLevel": "info,chatcluster_operator=debug",
        "adminPort": 9090,
        "metricsService": {"type": "ClusterIP", "port": 9090, "annotations": {"a": "b"}},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "platform"},
    },
}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values: dict) -> list[dict]:
    """Renders the chart like `helm template`; returns every non-empty manifest document."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def notes(chart, values: dict) -> str:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict]) -> set[str]:
    return {d["kind"] for d in docs}


def container(docs: list[dict]) -> dict:
    (only,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def args(docs: list[dict]) -> list[str]:
    return container(docs)["args"]


def flag(docs: list[dict], name: str) -> str | None:
    """The value of `--name=value` in the operator's args, or None."""
    prefix = f"--{name}="
    values = [a[len(prefix):] for a in args(docs) if a.startswith(prefix)]
    assert len(values) <= 1, f"--{name} given twice"
    return values[0] if values else None


# --- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict_is_clean(value_set, kube_version):
    # kube_version drives the linter's deprecated-API check.
    report = helm.lint(
        CHART, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}.0"
    )
    # Severity: 1 info (only "icon is recommended"), 2 warning, 3 error.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


# --- rendering: defaults and the other value sets -----------------------------------------


def test_defaults_render_a_single_operator_without_leader_election(chart):
    docs = render(chart, {})
    assert kinds(docs) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"}
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert "--leader-election" not in args(docs)
    # Without a Lease two operators must never overlap, not even during an upgrade.
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert container(docs)["image"] == "ghcr.io/chatcluster/chatcluster-operator:0.1.0"
    assert "leader election off" in notes(chart, {})


def test_default_images_follow_the_app_version_and_reach_the_operator(chart):
    docs = render(chart, {})
    assert flag(docs, "chat-node-image") == "ghcr.io/chatcluster/chat-node:0.1.0"
    assert flag(docs, "sidecar-image") == "ghcr.io/chatcluster/sidecar:0.1.0"
    assert flag(docs, "haproxy-image") == "docker.io/library/haproxy:2.6"
    assert flag(docs, "redis-image") == "docker.io/library/redis:7.0"


def test_operator_pod_is_locked_down_and_probed(chart):
    docs = render(chart, {})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["ports"] == [{"name": "admin", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert flag(docs, "admin-listen") == "0.0.0.0:8080"
    assert flag(docs, "cluster-domain") == "cluster.local"
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    assert env["POD_NAME"] == "metadata.name"
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]


def test_metrics_service_reaches_the_admin_port(chart):
    docs = render(chart, {})
    service = one(docs, "Service")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "admin" and port["name"] == "metrics"
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_two_replicas_turn_on_leader_election_monitor_and_budget(chart):
    docs = render(chart, VALUE_SETS["ha"])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-election" in args(docs)
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    # ServiceMonitor is a prometheus-operator CRD kind, so kubernetes-validate cannot check it:
    # check here that it selects the metrics Service and scrapes its named port.
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    assert "leader election on" in notes(chart, VALUE_SETS["ha"])


def test_custom_values_reach_the_objects(chart):
    values = VALUE_SETS["custom"]
    docs = render(chart, values)
    assert "ServiceAccount" not in kinds(docs), "serviceAccount.create=false must not create one"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "chat-operator"
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chat-operator", "namespace": NAMESPACE}]
    assert container(docs)["image"] == "registry.example.com/chat/operator@sha256:" + "ab" * 32
    assert container(docs)["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert "--leader-election" in args(docs), "leaderElection.enabled forces it on with one replica"
    assert flag(docs, "log-format") == "text"
    assert flag(docs, "admin-listen") == "0.0.0.0:9090"
    assert flag(docs, "chat-node-image") == "registry.example.com/chat/chat-node:1.2.3"
    assert flag(docs, "haproxy-image") == "registry.example.com/haproxy:3.0"
    assert container(docs)["ports"][0]["containerPort"] == 9090
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": "50%",
        "selector": one(docs, "PodDisruptionBudget")["spec"]["selector"],
    }
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert container(docs)["resources"]["limits"] == {"memory": "512Mi"}


def test_existing_service_account_needs_a_name(chart):
    with pytest.raises(helm.HelmError, match="serviceAccount.name is required"):
        render(chart, {"serviceAccount": {"create": False}})



@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_operator_accepts_the_rendered_args(chart, value_set, tmp_path):
    """The chart's args are flags `chatcluster-operator` really has: run it with them and no
    cluster; it must get past flag parsing (clap exits 2 on an unknown flag or a bad value) and
    fail only when it tries to reach the API server."""
    docs = render(chart, VALUE_SETS[value_set])
    # Same flags, but the admin server binds loopback only (tests never bind 0.0.0.0).
    run_args = [
        "--admin-listen=127.0.0.1:0" if a.startswith("--admin-listen=") else a for a in args(docs)
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        "POD_NAME": "operator-0",
        "POD_NAMESPACE": NAMESPACE,
    }
    assert OPERATOR_BIN.is_file(), f"{OPERATOR_BIN} missing: run `cargo build -p chatcluster-operator`"
    out = subprocess.run([OPERATOR_BIN, *run_args], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode not in (0, 2), out.stderr
    assert "unexpected argument" not in out.stderr and "invalid value" not in out.stderr, out.stderr


# --- values.schema.json ---------------------------------------------------------------------

BAD_VALUES = {
    "zero replicas": {"replicaCount": 0},
    "replicas as a string": {"replicaCount": "2"},
    "unknown top-level key": {"replicas": 2},
    "unknown nested key (typo)": {"serviceMonitor": {"enabeld": True}},
    "pull policy not in the enum": {"image": {"pullPolicy": "Sometimes"}},
    "log format not in the enum": {"logFormat": "yaml"},
    "privileged admin port": {"adminPort": 80},
    "budget with both minAvailable and maxUnavailable": {
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}
    },
    "malformed digest": {"image": {"digest": "latest"}},
    "scrape interval without unit": {"serviceMonitor": {"interval": "30"}},
    "empty default image repository": {"defaultImages": {"redis": {"repository": ""}}},
    "empty HAProxy tag (appVersion is not an HAProxy version)": {"defaultImages": {"haproxy": {"tag": ""}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(chart, case):
    with pytest.raises(helm.HelmValuesError):
        chart.render(BAD_VALUES[case], name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_every_value_set(chart):
    for values in VALUE_SETS.values():
        chart.validate_schema(values)


# --- kubernetes-validate --strict -------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rendered_manifests_pass_strict_kubernetes_schemas(chart, value_set, kube_version):
    docs = render(chart, VALUE_SETS[value_set])
    validated = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue  # no Kubernetes schema; checked in test_two_replicas_turn_on_...
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {path}: {err.message}")
        validated += 1
    assert validated >= 5


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_chart_crd_passes_strict_kubernetes_schema(chart, kube_version):
    crds = chart.crds
    assert [c["filename"] for c in crds] == ["chatcluster-operator/crds/chatcluster.yaml"]
    (crd,) = [d for d in yaml.safe_load_all(crds[0]["data"]) if d]
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "chatclusters.chatcluster.io"
    kubernetes_validate.validate(crd, kube_version, strict=True)


def test_chart_crd_is_the_generated_crd():
    assert TOP_CRD.is_file(), "crds/chatcluster.yaml is missing: run `chatcluster-operator crd`"
    assert CHART_CRD.read_bytes() == TOP_CRD.read_bytes(), (
        "charts/chatcluster-operator/crds/chatcluster.yaml differs from crds/chatcluster.yaml: "
        "cp crds/chatcluster.yaml charts/chatcluster-operator/crds/chatcluster.yaml"
    )


# --- RBAC: exactly the operator's own list ----------------------------------------------------


def grants(rules: list[dict]) -> set[tuple]:
    """Every (apiGroup, resource, verb, resourceName) a list of PolicyRules allows."""
    out = set()
    for rule in rules:
        assert not rule.get("nonResourceURLs"), "the operator calls no non-resource URLs"
        names = rule.get("resourceNames") or [None]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


def operator_rules() -> list[dict]:
    assert OPERATOR_BIN.is_file(), (
        f"{OPERATOR_BIN} is missing: build it with `cargo build -p chatcluster-operator` "
        "(scripts/test.sh does) or point CHATCLUSTER_OPERATOR_BIN at it"
    )
    out = subprocess.run([OPERATOR_BIN, "rbac"], capture_output=True, text=True, timeout=30, check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(docs) == 1, "`chatcluster-operator rbac` should print one document"
    doc = docs[0]
    return doc["rules"] if isinstance(doc, dict) else doc


LEASE = ("coordination.k8s.io", "leases")


def chart_rules(chart, values: dict) -> tuple[list[dict], list[dict]]:
    """(ClusterRole rules, namespaced Role rules) the chart renders for `values`."""
    docs = render(chart, values)
    cluster = one(docs, "ClusterRole")["rules"]
    roles = [d for d in docs if d["kind"] == "Role"]
    for role in roles:
        assert role["metadata"]["namespace"] == NAMESPACE
    return cluster, [rule for role in roles for rule in role["rules"]]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_grants_no_wildcard(chart, value_set):
    cluster, namespaced = chart_rules(chart, VALUE_SETS[value_set])
    for rule in cluster + namespaced:
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_grants_exactly_what_the_operator_uses(chart, value_set):
    wanted = grants(operator_rules())
    cluster, namespaced = chart_rules(chart, VALUE_SETS[value_set])
    cluster, namespaced = grants(cluster), grants(namespaced)
    lease = {g for g in wanted if g[:2] == LEASE}
    assert lease, "the operator's list has no Lease rule; leader election needs one"
    # The Lease is only touched in the operator's own namespace, and only with leader election.
    assert {g for g in cluster if g[:2] == LEASE} == set(), "Lease access must not be cluster-wide"
    assert namespaced == (lease if "--leader-election" in args(render(chart, VALUE_SETS[value_set])) else set())
    granted = cluster | namespaced
    expected = wanted if namespaced else wanted - lease
    assert granted - expected == set(), "the chart grants more than the operator uses"
    assert expected - granted == set(), "the chart misses permissions the operator uses"


def test_rbac_can_be_left_to_the_platform_team(chart):
    docs = render(chart, {"rbac": {"create": False}, "replicaCount": 2})
    assert not kinds(docs) & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_bindings_name_the_operator_service_account(chart):
    docs = render(chart, VALUE_SETS["ha"])
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    for binding in (one(docs, "ClusterRoleBinding"), one(docs, "RoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    assert one(docs, "RoleBinding")["roleRef"]["name"] == one(docs, "Role")["metadata"]["name"]
    assert one(docs, "ClusterRoleBinding")["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]

