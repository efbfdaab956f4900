"""What `chatcluster-operator render` and `crd` print, checked the way a cluster would.

- every object rendered for examples/*.yaml and for a table of spec variants passes the
  Kubernetes schemas in strict mode (kubernetes-validate) for 1.33 and 1.37;
- the CRD passes as apiextensions.k8s.io/v1 and is exactly crds/chatcluster.yaml;
- every ChatCluster (examples and variants) passes the generated CRD's openAPIV3Schema
  (jsonschema, with unknown fields rejected like `kubectl apply --validate=strict`), and, after
  the schema's defaults are applied as the API server does, every CEL rule of the CRD
  (cel-python); specs a CEL rule forbids fail that rule with its message, and `render` (which
  mirrors the rules in Rust) refuses them too;
- every rendered haproxy.cfg passes `haproxy -c`.

Needs `cargo build -p chatcluster-operator` first (or CHATCLUSTER_OPERATOR_BIN).
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_BIN = Path(
    os.environ.get("CHATCLUSTER_OPERATOR_BIN", ROOT / "target" / "debug" / "chatcluster-operator")
)
CRD_FILE = ROOT / "crds" / "chatcluster.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBE_VERSIONS = ["1.33", "1.37"]

# Spec variants a platform engineer is likely to write (name -> spec).
VARIANTS: dict[str, dict] = {
    "empty-spec": {},
    "zero-replicas": {"replicas": 0},
    "jwt-external-redis": {
        "auth": {"anonymous": False, "jwtSecretRef": {"name": "jwt", "key": "key"}},
        "redis": {"external": {"urlSecretRef": {"name": "redis", "key": "url"}}},
    },
    "nodeport-roundrobin": {
        "replicas": 10,
        "haproxy": {
            "replicas": 1,
            "balance": "roundrobin",
            "cookieName": "SRV",
            "serverSlots": 10,
            "service": {"type": "NodePort", "port": 8080},
            "timeouts": {"connect": "500ms", "tunnel": "30m"},
        },
    },
    "loadbalancer-own-cookie-key": {
        "haproxy": {
            "service": {
                "type": "LoadBalancer",
                "port": 443,
                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
            },
            "cookieKeySecretRef": {"name": "cookie", "key": "k"},
        },
    },
    "persistent-redis-custom-images-resources": {
        "images": {
            "chatNode": "registry.example/chat-node@sha256:" + "a" * 64,
            "sidecar": "registry.example/sidecar:1",
            "haproxy": "haproxy:2.8",
            "redis": "redis:7.2",
        },
        "redis": {"storage": "20Gi", "storageClassName": "fast-ssd"},
        "resources": {
            "chatNode": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
            "redis": {"limits": {"cpu": "1", "memory": "1Gi"}},
        },
        "drainGraceSeconds": 300,
        "pingIntervalSeconds": 60,
    },
}

# Specs the schema accepts but a CEL rule refuses; `render` must refuse them too.
CEL_REFUSED: dict[str, tuple[dict, str]] = {
    "replicas-over-slots": ({"replicas": 65}, "serverSlots"),
    "tunnel-below-ping": ({"haproxy": {"timeouts": {"tunnel": "10s"}}}, "tunnel"),
    "burst-below-rate": ({"ratePerSecond": 50, "rateBurst": 10}, "rateBurst"),
    "both-auth-modes": (
        {"auth": {"anonymous": True, "jwtSecretRef": {"name": "j", "key": "k"}}},
        "exactly one",
    ),
    "storage-with-external-redis": (
        {"redis": {"storage": "1Gi", "external": {"urlSecretRef": {"name": "r", "key": "u"}}}},
        "managed Redis",
    ),
}

# Specs the schema itself refuses (ranges, enums, patterns, unknown fields).
SCHEMA_REFUSED: dict[str, dict] = {
    "negative-replicas": {"replicas": -1},
    "unknown-balance": {"haproxy": {"balance": "random"}},
    "days-duration": {"haproxy": {"timeouts": {"tunnel": "1d"}}},
    "bad-service-type": {"haproxy": {"service": {"type": "ExternalName"}}},
    "typo-field": {"replica": 3},
    "cookie-name-with-space": {"haproxy": {"cookieName": "my cookie"}},
}


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    assert OPERATOR_BIN.is_file(), f"{OPERATOR_BIN} missing: run `cargo build -p chatcluster-operator`"
    return subprocess.run(
        [str(OPERATOR_BIN), *args], capture_output=True, text=True, check=check, timeout=60
    )


def chatcluster(name: str, spec: dict) -> dict:
    return {
        "apiVersion": "chatcluster.io/v1alpha1",
        "kind": "ChatCluster",
        "metadata": {"name": name, "namespace": "chat-test"},
        "spec": spec,
    }


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def render(path: Path) -> list[dict]:
    out = run("render", "-f", str(path), "--cookie-key", "test-key").stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD_FILE.read_text())


def strict_spec_schema(crd: dict) -> dict:
    """The spec schema with unknown fields rejected, as the API server's strict field validation
    does (structural schemas otherwise prune them silently)."""
    schema = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])

    def close(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def validate_chatcluster(crd: dict, doc: dict) -> None:
    jsonschema.validate(doc["spec"], strict_spec_schema(crd))
    assert len(doc["metadata"]["name"]) <= 40


def apply_defaults(schema: dict, value):
    """Structural defaulting: fill missing properties from `default`, top-down."""
    if isinstance(value, dict) and "properties" in schema:
        for prop, sub in schema["properties"].items():
            if prop not in value and "default" in sub:
                value[prop] = copy.deepcopy(sub["default"])
            if prop in value:
                apply_defaults(sub, value[prop])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def cel_rules(schema: dict, value, path: str = "") -> list[tuple[str, dict, object]]:
    """(path, rule, the value the rule sees as `self`) for every rule whose value is present."""
    found = [(path or "<root>", r, value) for r in schema.get("x-kubernetes-validations", [])]
    if isinstance(value, dict):
        for prop, sub in schema.get("properties", {}).items():
            if prop in value:
                found += cel_rules(sub, value[prop], f"{path}.{prop}")
    return found


def failed_cel_rules(crd: dict, doc: dict) -> list[str]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = apply_defaults(schema, copy.deepcopy(doc))
    env = celpy.Environment()
    failed = []
    for path, rule, value in cel_rules(schema, obj):
        program = env.program(env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            failed.append(f"{path}: {rule.get('message', rule['rule'])}")
    return failed


def test_every_cel_rule_compiles(crd):
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = []

    def walk(node):
        if isinstance(node, dict):
            rules.extend(r["rule"] for r in node.get("x-kubernetes-validations", []))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert len(rules) >= 6
    env = celpy.Environment()
    for rule in rules:
        env.compile(rule)  # raises CELParseError on a typo the API server would reject


def cases() -> list[tuple[str, Path | dict]]:
    return [(p.name, p) for p in EXAMPLES] + [(n, chatcluster(n, s)) for n, s in VARIANTS.items()]


def load_case(case: Path | dict) -> dict:
    return yaml.safe_load(case.read_text()) if isinstance(case, Path) else case


def test_there_is_a_minimal_example():
    assert (ROOT / "examples" / "chatcluster.yaml") in EXAMPLES


@pytest.mark.parametrize("name,case", cases(), ids=[n for n, _ in cases()])
def test_rendered_objects_pass_strict_kubernetes_schemas(tmp_path, crd, name, case):
    doc = load_case(case)
    validate_chatcluster(crd, doc)
    assert failed_cel_rules(crd, doc) == []
    objects = render(case if isinstance(case, Path) else write(tmp_path, doc))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds.count("StatefulSet") >= 1 and "Deployment" in kinds and "ConfigMap" in kinds
    external = "external" in doc["spec"].get("redis", {})
    assert ("NetworkPolicy" in kinds) != external, "NetworkPolicy exactly when Redis is managed"
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == doc["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "chatcluster-operator"
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(p) for p in err.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({version}) at {where}: {err.message}")


@pytest.mark.parametrize("name,case", cases(), ids=[n for n, _ in cases()])
def test_rendered_haproxy_cfg_passes_haproxy_check(tmp_path, name, case):
    doc = load_case(case)
    objects = render(case if isinstance(case, Path) else write(tmp_path, doc))
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config["data"]["haproxy.cfg"])
    env = {**os.environ, "CHATCLUSTER_COOKIE_KEY": "test-key"}
    out = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_crd_passes_strict_kubernetes_schema(crd, kube_version):
    kubernetes_validate.validate(crd, kube_version, strict=True)


def test_crd_command_prints_the_checked_in_crd():
    assert run("crd").stdout == CRD_FILE.read_text(), (
        "crds/chatcluster.yaml is stale: cargo run -p chatcluster-operator -- crd > crds/chatcluster.yaml"
    )


@pytest.mark.parametrize("name", sorted(SCHEMA_REFUSED))
def test_schema_refuses_invalid_values(crd, name):
    with pytest.raises(jsonschema.ValidationError):
        validate_chatcluster(crd, chatcluster(name, SCHEMA_REFUSED[name]))


@pytest.mark.parametrize("name", sorted(CEL_REFUSED))
def test_render_refuses_what_the_cel_rules_refuse(tmp_path, crd, name):
    spec, needle = CEL_REFUSED[name]
    doc = chatcluster(name, spec)
    validate_chatcluster(crd, doc)  # the schema alone lets it through ...
    failed = failed_cel_rules(crd, doc)  # ... exactly one CEL rule does not ...
    assert len(failed) == 1 and needle in failed[0], failed
    out = run("render", "-f", str(write(tmp_path, doc)), check=False)
    assert out.returncode != 0  # ... and render, which mirrors the rules, refuses it as well
    assert needle in out.stderr, out.stderr


def test_cel_rule_refuses_a_long_name(crd):
    assert failed_cel_rules(crd, chatcluster("x" * 41, {})) != []
    assert failed_cel_rules(crd, chatcluster("x" * 40, {})) == []


def test_render_refuses_a_misspelt_field(tmp_path):
    doc = chatcluster("typo", {"replica": 3})
    out = run("render", "-f", str(write(tmp_path, doc)), check=False)
    assert out.returncode != 0
    assert "spec.replica" in out.stderr, out.stderr
