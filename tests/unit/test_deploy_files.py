"""serve_config.yaml, docker-compose.yml and .env.example stay honest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deployments.app import AppArgs

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_args_validate_and_bind_loopback() -> None:
    cfg = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    assert cfg["http_options"]["host"] == "127.0.0.1"
    app = cfg["applications"][0]
    assert app["import_path"] == "deployments.app:build_app"
    AppArgs.model_validate(app["args"])  # raises on a typo or a bad value
    with pytest.raises(ValueError):
        AppArgs.model_validate({**app["args"], "classifier_min_replicas": 3, "classifier_max_replicas": 1})


def test_compose_publishes_on_loopback_only_and_has_no_literal_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    assert {"redis", "postgres", "ray-head"} <= set(compose["services"])
    for svc in compose["services"].values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
    assert compose["services"]["ray-head"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert re.search(r"POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD", text)


def test_env_example_has_placeholders_only() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if re.match(r"^EMOTION_MONITOR_\w*(SECRET|PASSWORD|KEY)\w*=", line):
            value = line.split("=", 1)[1]
            assert value == "" or value.startswith("<"), line


def test_builder_takes_exactly_the_validated_args() -> None:
    """`serve run`/`serve deploy` call the import_path builder with one argument only."""
    import inspect
    import typing

    from deployments.app import build_app

    params = list(inspect.signature(build_app).parameters.values())
    assert len(params) == 1
    assert typing.get_type_hints(build_app)[params[0].name] is AppArgs
