"""The cluster files stay honest: the KubeRay RayService embeds serve_config.yaml's app with
args that validate, the launcher deploys that file, the compose file wires monitoring."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deployments.app import AppArgs, derive_serve_config
from serve_app.model.batching import parse_user_config
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_rayservice_embeds_the_serve_config_app() -> None:
    rs = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayservice.yaml").read_text())
    assert rs["kind"] == "RayService" and rs["apiVersion"] == "ray.io/v1"
    serve_cfg = yaml.safe_load(rs["spec"]["serveConfigV2"])
    local = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,), (local_app,) = serve_cfg["applications"], local["applications"]
    assert app["import_path"] == local_app["import_path"] and app["name"] == local_app["name"]
    args = AppArgs.model_validate(app["args"])
    assert args.classifier_max_replicas > args.classifier_min_replicas >= 1  # autoscaling bounds
    assert set(app["args"]) - {
        "classifier_min_replicas",
        "classifier_max_replicas",
        "classifier_num_cpus",
    } <= set(local_app["args"])
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert head["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    for spec in [head] + [g["template"]["spec"] for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]]:
        assert "model pull" in " ".join(spec["initContainers"][0]["command"])
        assert spec["containers"][0]["resources"]["requests"]["cpu"]


def test_classifier_user_configs_are_valid() -> None:
    rs = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayservice.yaml").read_text())
    for cfg in (
        yaml.safe_load(rs["spec"]["serveConfigV2"]),
        yaml.safe_load((ROOT / "serve_config.yaml").read_text()),
    ):
        (dep,) = [d for d in cfg["applications"][0]["deployments"] if d["name"] == "Classifier"]
        max_batch, _, versions = parse_user_config(dep["user_config"])
        assert max_batch >= 1 and versions == {}  # the committed models until an operator rolls one


def test_launcher_deploys_the_serve_config() -> None:
    cfg = yaml.safe_load((ROOT / "cluster" / "launcher" / "aws.yaml").read_text())
    cmds = cfg["head_start_ray_commands"]
    assert any("serve deploy serve_config.cluster.yaml" in c for c in cmds)
    # The deployed config is serve_config.yaml with the launcher's --set args: derive it the
    # same way here, and it must validate and fit the worker nodes.
    (derive,) = [c for c in cmds if "cluster config" in c]
    sets = dict(
        (k, yaml.safe_load(v))
        for k, _, v in (a.strip("'").partition("=") for a in shlex.split(derive)[1:] if "=" in a)
        if k.split(".")[0] in AppArgs.model_fields
    )
    assert sets["predict_in_ingress"] is False and sets["model.ort_threads"] == 2
    derived = derive_serve_config(yaml.safe_load((ROOT / "serve_config.yaml").read_text()), sets)
    args = AppArgs.model_validate(derived["applications"][0]["args"])
    assert args.model is not None and args.model.dir.name == "multitask"  # a dotted --set keeps the rest
    node = cfg["available_node_types"]["classifier"]
    per_node = node["resources"]["classifier"] // args.classifier_resources["classifier"]
    assert args.classifier_max_replicas <= per_node * node["max_workers"]
    assert args.classifier_num_cpus * per_node <= node["resources"]["CPU"]


def test_derived_config_is_validated() -> None:
    base = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    assert (
        derive_serve_config(base, {"classifier_max_replicas": 8})["applications"][0]["args"][
            "classifier_max_replicas"
        ]
        == 8
    )
    assert base["applications"][0]["args"]["classifier_max_replicas"] != 8  # the source is untouched
    with pytest.raises(ValueError, match="classifier_min_replicas"):
        derive_serve_config(base, {"classifier_min_replicas": 9, "classifier_max_replicas": 2})
    with pytest.raises(ValueError, match="no_such_arg"):
        derive_serve_config(base, {"no_such_arg": 1})


def test_compose_wires_prometheus_and_grafana_to_the_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svcs = compose["services"]
    assert {"prometheus", "grafana"} <= set(svcs)
    assert svcs["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    prom = yaml.safe_load((ROOT / "cluster" / "prometheus" / "prometheus.yml").read_text())
    target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target.split(":")[0] in svcs and "--metrics-export-port 8080" in (ROOT / "Dockerfile").read_text()
    assert (ROOT / "cluster" / "grafana" / "dashboards" / "emotion-monitor.json").is_file()


def test_docker_compose_config_if_the_client_is_present() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker client with the compose plugin here (and no Docker engine either)")
    env = {"POSTGRES_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "x", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [docker, "compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_container_serves_a_derived_config_on_all_interfaces(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tooling.cli import app

    docker_cmd = (ROOT / "Dockerfile").read_text().split("CMD", 1)[1]
    assert "cluster config --out /tmp/serve_config.yaml --http-host 0.0.0.0" in docker_cmd
    # emotion-monitor run: serve run with a graceful stop on the SIGTERM `docker stop` sends
    assert "exec emotion-monitor run /tmp/serve_config.yaml" in docker_cmd
    out = tmp_path / "serve.yaml"
    src = ROOT / "serve_config.yaml"
    res = CliRunner().invoke(
        app, ["cluster", "config", "--src", str(src), "--out", str(out), "--http-host", "0.0.0.0"]
    )
    assert res.exit_code == 0, res.output
    derived, base = yaml.safe_load(out.read_text()), yaml.safe_load(src.read_text())
    assert derived["http_options"]["host"] == "0.0.0.0" and base["http_options"]["host"] == "127.0.0.1"
    assert derived["applications"] == base["applications"]
    bad = CliRunner().invoke(app, ["cluster", "config", "--out", str(out), "--set", "model.max_length=4"])
    assert bad.exit_code == 2 and "max_length" in bad.output


def test_dashboard_label_colours_follow_the_task_registry() -> None:
    from serve_app.domain.tasks import TASKS

    panels = json.loads((ROOT / "cluster" / "grafana" / "dashboards" / "emotion-monitor.json").read_text())[
        "panels"
    ]
    seen = {}
    for panel in panels:
        for o in panel["fieldConfig"].get("overrides", []):
            colour = next(p["value"]["fixedColor"] for p in o["properties"] if p["id"] == "color")
            seen[(panel["targets"][0]["expr"], o["matcher"]["options"])] = colour
    for task, spec in TASKS.items():
        expr = next(p["targets"][0]["expr"] for p in panels if f'task="{task}"' in p["targets"][0]["expr"])
        assert {lab: seen[(expr, lab)] for lab in spec.labels} == {
            lab: spec.colour(lab) for lab in spec.labels
        }
    neutral_share = [p for p in panels if 'label="neutral"' in p["targets"][0]["expr"]]
    assert len(neutral_share) == 1 and neutral_share[0]["fieldConfig"]["defaults"]["unit"] == "percentunit"
