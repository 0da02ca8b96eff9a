"""The deploy files against the real schemas in ../shared/schemas: KubeRay's RayService and
RayJob CRDs (the served version's openAPIV3Schema, what `kubectl apply` validates against) and
the Compose Specification. Two checks each: no schema error, and no field the schema does not
name (strict: KubeRay's schemas rarely say additionalProperties: false, yet the API server
prunes or, under strict validation, rejects any field they do not name)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

SCHEMAS = ROOT.parent / "shared" / "schemas"
Schema = dict[str, Any]

# The API server validates a resource's metadata itself (ObjectMeta), not through the CRD,
# whose schema says only `type: object`: the ObjectMeta fields a manifest may set.
OBJECT_META: Schema = {
    "type": "object",
    "properties": {
        **{k: {"type": "string"} for k in ("name", "generateName", "namespace")},
        **{
            k: {"type": "object", "additionalProperties": {"type": "string"}}
            for k in ("labels", "annotations")
        },
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def _need_schemas() -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"no {SCHEMAS} (a fresh clone has no ../shared)")


@cache
def crd(file: str) -> Schema:
    # The C loader: the CRD files are 1-1.4 MB of YAML (many seconds with the pure-Python one).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded: Schema = yaml.load((SCHEMAS / file).read_text(), Loader=loader)
    return loaded


@cache
def crd_schema(file: str) -> Schema:
    """The openAPIV3Schema of the CRD's served storage version, as JSON Schema: OpenAPI's
    `nullable` and Kubernetes' int-or-string spelled out, ObjectMeta for the root metadata."""
    (version,) = [v for v in crd(file)["spec"]["versions"] if v.get("served") and v.get("storage")]
    schema = _to_json_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = OBJECT_META
    return schema


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out and "type" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@cache
def compose_schema() -> Schema:
    loaded: Schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return loaded


def schema_errors(doc: Any, schema: Schema) -> list[str]:
    # OpenAPI 3.0 schemas are JSON Schema draft 4/5 (boolean exclusiveMinimum); compose names its own.
    cls = (
        jsonschema.Draft4Validator if "$schema" not in schema else jsonschema.validators.validator_for(schema)
    )
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in cls(schema).iter_errors(doc)]


def _resolve(node: Schema, root: Schema) -> Schema:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        for part in node["$ref"][2:].split("/"):
            root = root[part]
        node = root
    return node


def _object_branches(node: Schema, root: Schema) -> list[Schema]:
    """The alternatives of `node` (itself, oneOf/anyOf/allOf branches) that describe objects."""
    node = _resolve(node, root)
    out = []
    if {"properties", "patternProperties", "additionalProperties"} & set(node) or node.get(
        "type"
    ) == "object":
        out.append(node)
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(key, []):
            out += _object_branches(branch, root)
    return out


def _child(key: str, branch: Schema, root: Schema) -> Schema | None:
    """The schema a key's value answers to in an object schema; None if the key is not allowed.
    Strict: a key the properties do not name is allowed only by patternProperties or an
    explicit additionalProperties (true or a schema); absent is not, as Kubernetes prunes it."""
    import re

    if branch.get("x-kubernetes-preserve-unknown-fields"):
        return {}
    if key in branch.get("properties", {}):
        return _resolve(branch["properties"][key], root)
    for pattern, sub in branch.get("patternProperties", {}).items():
        if re.search(pattern, key):
            return _resolve(sub, root)
    extra = branch.get("additionalProperties")
    if extra is True:
        return {}
    if isinstance(extra, dict):
        return _resolve(extra, root)
    return None


def unknown_fields(doc: Any, node: Schema, root: Schema, path: str = "") -> Iterator[str]:
    """Every key path in `doc` that no branch of the schema names."""
    node = _resolve(node, root)
    if isinstance(doc, dict):
        branches = _object_branches(node, root)
        if not branches:
            return  # `{}` or a scalar-only schema: nothing to say about keys here
        for key, value in doc.items():
            children = [c for c in (_child(str(key), b, root) for b in branches) if c is not None]
            if not children:
                yield f"{path}.{key}"
                continue
            # Unknown only if unknown under every branch that names the key.
            found = [list(unknown_fields(value, c, root, f"{path}.{key}")) for c in children]
            yield from min(found, key=len)
    elif isinstance(doc, list):
        items = [
            _resolve(b, root).get("items") for b in [node, *node.get("oneOf", []), *node.get("anyOf", [])]
        ]
        for item in (i for i in items if isinstance(i, dict)):
            for i, value in enumerate(doc):
                yield from unknown_fields(value, item, root, f"{path}[{i}]")
            return


def _load(rel: str) -> Any:
    return yaml.safe_load((ROOT / rel).read_text())


CASES = [
    ("cluster/kuberay/rayservice.yaml", "ray.io_rayservices.yaml"),
    ("cluster/kuberay/rayjob-retrain.yaml", "ray.io_rayjobs.yaml"),
]


@pytest.mark.parametrize(("manifest", "crd_file"), CASES)
def test_kuberay_manifest_is_valid_and_names_only_schema_fields(manifest: str, crd_file: str) -> None:
    _need_schemas()
    doc, schema = _load(manifest), crd_schema(crd_file)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == crd(crd_file)["spec"]["names"]["kind"]
    assert schema_errors(doc, schema) == []
    assert list(unknown_fields(doc, schema, schema)) == []


def test_compose_file_is_valid_and_names_only_schema_fields() -> None:
    _need_schemas()
    doc, schema = _load("docker-compose.yml"), compose_schema()
    assert schema_errors(doc, schema) == []
    assert list(unknown_fields(doc, schema, schema)) == []


def test_a_misspelled_field_is_caught_where_the_schema_is_open() -> None:
    _need_schemas()
    rayjob = _load("cluster/kuberay/rayjob-retrain.yaml")
    schema = crd_schema("ray.io_rayjobs.yaml")
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["resources"]["request"] = head["resources"].pop("requests")  # a plural lost
    rayjob["spec"]["shutdownAfterJobFinish"] = rayjob["spec"].pop("shutdownAfterJobFinishes")
    rayjob["metadata"]["label"] = {"a": "b"}
    # jsonschema alone passes the CRD's part: it never says additionalProperties: false.
    assert [e for e in schema_errors(rayjob, schema) if not e.startswith("metadata")] == []
    assert sorted(unknown_fields(rayjob, schema, schema)) == [
        ".metadata.label",
        ".spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].resources.request",
        ".spec.shutdownAfterJobFinish",
    ]


def test_schema_errors_and_compose_typos_are_reported() -> None:
    _need_schemas()
    rs = _load("cluster/kuberay/rayservice.yaml")
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    schema = crd_schema("ray.io_rayservices.yaml")
    assert any("workerGroupSpecs.0.replicas" in e for e in schema_errors(rs, schema))
    # int-or-string: a CPU request as a number is as valid as "4".
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = 2
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"][
        "requests"
    ]["cpu"] = 4
    assert schema_errors(rs, schema) == []
    compose = _load("docker-compose.yml")
    compose["services"]["redis"]["healthchek"] = compose["services"]["redis"].pop("healthcheck")
    compose["services"]["grafana"]["depends_on"]["prometheus"]["conditon"] = "service_healthy"
    assert sorted(unknown_fields(compose, compose_schema(), compose_schema())) == [
        ".services.grafana.depends_on.prometheus.conditon",
        ".services.redis.healthchek",
    ]
    assert schema_errors(compose, compose_schema())  # the spec closes these objects itself
