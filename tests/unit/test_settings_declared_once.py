"""Each setting is declared once (issue 31): a field of one settings group, with one env name
`EMOTION_MONITOR_<GROUP>__<FIELD>`; every such name the repository mentions names a field;
setting it changes that field and no other; and no component config re-declares a field."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from serve_app.config.settings import OTHER_KNOBS, Group, Settings, env_names, stale_env_names

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "EMOTION_MONITOR_"
NOT_SETTINGS = OTHER_KNOBS
SKIP_DIRS = {".git", ".venv", "build", "node_modules", ".emotion-monitor", "__pycache__", ".mypy_cache",
             ".ruff_cache", ".pytest_cache", "runs", "models", "registry", "dist"}  # fmt: skip
TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".example", ".cfg", ".ini", ".txt", ".env", ""}
# Resolved at run time (from the settings, or the embedded servers' sockets): a component
# config may carry them beside its settings group.
RUNTIME = {"redis_url", "postgres_url"}


def leaves() -> dict[str, tuple[str | None, str, FieldInfo]]:
    """Env name -> (group or None, field, its FieldInfo) for every leaf of Settings."""
    out: dict[str, tuple[str | None, str, FieldInfo]] = {}
    for name, info in Settings.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and issubclass(group, Group):
            for leaf, linfo in group.model_fields.items():
                env = f"{PREFIX}{name}__{leaf}".upper()
                assert env not in out, env
                out[env] = (name, leaf, linfo)
        else:
            env = f"{PREFIX}{name}".upper()
            assert env not in out, env
            out[env] = (None, name, info)
    return out


def mentioned() -> dict[str, set[str]]:
    """Every EMOTION_MONITOR_* name in the repository's text files -> the files naming it."""
    found: dict[str, set[str]] = {}
    pattern = re.compile(rf"{PREFIX}[A-Z0-9_]*")
    stack = [ROOT]
    while stack:
        for path in stack.pop().iterdir():
            if path.is_dir():
                if path.name not in SKIP_DIRS and not path.name.endswith(".egg-info"):
                    stack.append(path)
            elif path.suffix in TEXT and path.stat().st_size < 2_000_000:
                for name in pattern.findall(path.read_text(errors="replace")):
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_leaf_has_exactly_one_env_name() -> None:
    envs = leaves()
    assert len(envs) > 60  # the walk found the groups
    for env, (_, _, info) in envs.items():
        # An alias would be a second name for the same field.
        assert info.alias is None and info.validation_alias is None, env
    top = [n for n, i in Settings.model_fields.items() if not (isinstance(i.annotation, type)
           and issubclass(i.annotation, Group))]  # fmt: skip
    assert top == ["background"]  # everything else lives in a group


def test_every_env_name_in_the_repository_names_one_setting() -> None:
    envs = leaves()
    knobs = {PREFIX + k for k in NOT_SETTINGS}
    assert not knobs & set(envs)
    wrong = {}
    for name, files in mentioned().items():
        if name.endswith("_"):  # a prefix, e.g. EMOTION_MONITOR_S3__*: it must start a real name
            ok = any(e.startswith(name) for e in envs) or name == PREFIX
        else:
            ok = name in envs or name in knobs
        if not ok:
            wrong[name] = sorted(files)
    assert not wrong, f"EMOTION_MONITOR_* names that name no setting: {wrong}"


def _candidates(info: FieldInfo) -> list[Any]:
    d = info.get_default(call_default_factory=True)
    if isinstance(d, bool):
        return [not d]
    if isinstance(d, int | float):
        return [d + 1, d - 1, d * 0.5, d + 0.01]
    return [3, "/u/some-one-else", "https://other.example/x", "another/path", "jsonl", {"emotion": "m/e"}]


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _changed(group: type[BaseModel], leaf: str, info: FieldInfo) -> Any:
    """A valid value of the field other than its default."""
    default = info.get_default(call_default_factory=True)
    for value in _candidates(info):
        try:
            got = getattr(group.model_validate({leaf: value}), leaf)
        except ValidationError:
            continue
        if got != default:
            return value
    raise AssertionError(f"no test value for {group.__name__}.{leaf}")


def _flat(s: Settings) -> dict[str, Any]:
    out = {}
    for env, (group, leaf, _) in leaves().items():
        v = getattr(getattr(s, group), leaf) if group else getattr(s, leaf)
        out[env] = v.get_secret_value() if isinstance(v, SecretStr) else v
    return out


def test_each_env_name_changes_exactly_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith(PREFIX):
            monkeypatch.delenv(k)
    base = _flat(Settings(_env_file=None))  # type: ignore[call-arg]
    for env, (group, leaf, info) in leaves().items():
        model: type[BaseModel] = type(getattr(Settings(), group)) if group else Settings
        value = _changed(model, leaf, info) if group else not info.default
        with monkeypatch.context() as mp:
            mp.setenv(env, _env_text(value))
            got = _flat(Settings(_env_file=None))  # type: ignore[call-arg]
        diff = {k for k in base if got[k] != base[k]}
        assert diff == {env}, (env, diff)


def test_a_misspelled_nested_name_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREFIX + "SYNC__CPU_THRESHLD", "5")  # sic: a typo in a group is refused
    with pytest.raises(ValidationError, match="cpu_threshld"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def config_classes() -> dict[str, dict[str, bool]]:
    """`module.Class` -> {field: has a default} for every *Config class in the core and shells."""
    out: dict[str, dict[str, bool]] = {}
    for pkg in ("serve_app", "deployments"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                    fields = {
                        s.target.id: s.value is not None
                        for s in node.body
                        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                    }
                    out[f"{path.relative_to(ROOT).with_suffix('')}.{node.name}"] = fields
    return out


def test_no_component_config_re_declares_a_setting() -> None:
    """A component takes its settings group as it is: a field of a *Config class with a
    setting's name and a default of its own would be a second declaration of that setting."""
    names = {leaf for _, leaf, _ in leaves().values()}
    classes = config_classes()
    assert {"FetcherConfig", "SyncConfig", "MonitorConfig", "IngressConfig", "DriftConfig"} <= {
        c.rsplit(".", 1)[1] for c in classes
    }
    copies = sorted(
        f"{cls}.{field}"
        for cls, fields in classes.items()
        for field, has_default in fields.items()
        if field in names and field not in RUNTIME and has_default
    )
    assert not copies, copies


def test_the_leaf_map_is_the_one_the_service_checks_the_environment_against() -> None:
    assert set(env_names()) == set(leaves())


def test_a_stale_or_misspelled_name_is_reported_with_what_it_may_mean() -> None:
    P = PREFIX  # spelled out, these names would fail the repository scan above
    env = {
        f"{P}SYNC_CPU_THRESHOLD": "10",  # the flat name from before the groups
        f"{P}REDIS_URL": "redis://x",
        f"{P}SYNC__CPU_THRESHOLD": "10",  # right
        f"{P}THROUGHPUT": "0",  # scripts/run.sh's own knob
        f"{P}NO_SUCH_THING": "1",
        "PATH": "/bin",
    }
    assert stale_env_names(env) == {
        f"{P}SYNC_CPU_THRESHOLD": [f"{P}SYNC__CPU_THRESHOLD"],
        f"{P}REDIS_URL": [f"{P}STORES__REDIS_URL"],
        f"{P}NO_SUCH_THING": [],
    }
