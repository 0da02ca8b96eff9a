"""Promotion and rollback of a candidate version (`emotion-monitor model promote/rollback`).

Promote: gate (serve_app/lifecycle/gate.py) -> set `model_versions` and clear `candidate` in
serve_config.yaml (comments kept) -> `serve deploy` (Classifier.reconfigure swaps the model
in place, no downtime) -> a row in `model_promotions`. Rollback: the latest row's previous
versions, the same way.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serve_app.config.settings import ModelSettings, Settings, merged
from serve_app.lifecycle.agreement import HeadComparison, compare_pairs
from serve_app.lifecycle.gate import GateResult, PromotionRefused, evaluate_gate, read_card
from serve_app.lifecycle.rollout import CandidateConfig, read_rollout, rewrite_serve_config
from serve_app.model.registry import RegistryError, registry_spec, resolve_version
from serve_app.stores.shadow_store import PromotionRecord, load_pairs, promotions, record_promotion


class RollbackError(RuntimeError):
    """Nothing to roll back to."""


class DeployError(RuntimeError):
    """`serve deploy` failed; serve_config.yaml already holds the new versions (recorded with
    deployed = false): deploy it when the cluster is up."""


@dataclass(frozen=True)
class Outcome:
    action: str
    from_versions: dict[str, str]
    to_versions: dict[str, str]
    deployed: bool
    gate: GateResult | None = None


def actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def app_args(config: Path) -> dict[str, Any]:
    apps = (yaml.safe_load(config.read_text()) or {}).get("applications") or [{}]
    return dict(apps[0].get("args") or {})


def live_dirs(config: Path, s: Settings) -> dict[str, tuple[str, Path]]:
    """Task -> (live version name, artifact dir) as the Serve config sets them."""
    args = app_args(config)
    versions, _ = read_rollout(config)
    tasks = args.get("tasks") or ["emotion", "sentiment"]
    # The app args' model group over the environment's, as the app builder merges them.
    m = merged(s.model, ModelSettings.model_validate(args["model"]) if args.get("model") else None)
    shared, own = m.dir, dict(m.task_dirs)
    registry = registry_spec(s).open()
    out: dict[str, tuple[str, Path]] = {}
    for task in tasks:
        if task in versions:
            out[task] = resolve_version(registry, task, versions[task], s.stores.data_dir / "models")
        else:
            path = own.get(task, shared)
            out[task] = (str(read_card(path).get("version", "unknown")), path)
    return out


def candidate_dirs(version: str, tasks: list[str], s: Settings) -> dict[str, Path]:
    registry = registry_spec(s).open()
    out = {}
    for task in tasks:
        try:
            out[task] = resolve_version(registry, task, version, s.stores.data_dir / "models")[1]
        except RegistryError:
            continue
    if not out:
        raise RegistryError(f"version {version!r} is not in the registry for any of {tasks}")
    return out


def compare(dsn: str, version: str | None = None, task: str | None = None) -> list[HeadComparison]:
    return compare_pairs(load_pairs(dsn, task, None, version))


def check_gate(config: Path, version: str, dsn: str, s: Settings) -> GateResult:
    live = live_dirs(config, s)
    cand = candidate_dirs(version, list(live), s)
    comparisons = [c for task in cand for c in compare_pairs(load_pairs(dsn, task, live[task][0], version))]
    return evaluate_gate(
        version,
        {t: read_card(live[t][1]) for t in cand},
        {t: read_card(p) for t, p in cand.items()},
        comparisons,
        s.gate.metric_tolerance,
        s.gate.min_pairs,
        s.gate.share_bound,
    )


def deploy(config: Path, address: str | None) -> None:
    """`serve deploy`: Serve calls Classifier.reconfigure with the new user_config."""
    exe = shutil.which("serve", path=str(Path(sys.executable).parent)) or "serve"
    cmd = [exe, "deploy", str(config)] + (["--address", address] if address else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DeployError(
            f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout).strip()[-500:]}\n{config} holds the "
            f"new versions (recorded as not deployed): `serve deploy {config}` once the cluster is up"
        )


def _roll(config: Path, to: dict[str, str], config_only: bool, address: str | None) -> DeployError | None:
    """Edit the config, then deploy it; a failed deploy is returned (the edit is recorded
    either way, so a later `serve deploy` or rollback knows where it stands)."""
    rewrite_serve_config(config, model_versions=to, candidate=CandidateConfig())
    if config_only:
        return None
    try:
        deploy(config, address)
    except DeployError as exc:
        return exc
    return None


def promote(
    config: Path,
    version: str,
    dsn: str,
    s: Settings,
    *,
    config_only: bool = False,
    address: str | None = None,
    who: str | None = None,
) -> Outcome:
    """Promote `version` if the gate holds (else PromotionRefused), and record it."""
    result = check_gate(config, version, dsn, s)
    if not result.passed:
        raise PromotionRefused(result)
    before, _ = read_rollout(config)
    after = {**before, **{t: version for t in result.tasks}}
    failed = _roll(config, after, config_only, address)
    deployed = not config_only and failed is None
    gate = result.model_dump(mode="json")
    record_promotion(dsn, PromotionRecord(who or actor(), "promote", before, after, gate, deployed))
    if failed is not None:
        raise failed
    return Outcome("promote", before, after, deployed, result)


def rollback(
    config: Path, dsn: str, *, config_only: bool = False, address: str | None = None, who: str | None = None
) -> Outcome:
    """Back to the versions before the latest promotion or rollback, and record it."""
    last = promotions(dsn, 1)
    if not last:
        raise RollbackError("no promotion recorded in model_promotions: nothing to roll back to")
    before, _ = read_rollout(config)
    after = dict(last[0].from_versions)
    failed = _roll(config, after, config_only, address)
    deployed = not config_only and failed is None
    gate: dict[str, object] = {"rolled_back": last[0].id}
    record_promotion(dsn, PromotionRecord(who or actor(), "rollback", before, after, gate, deployed))
    if failed is not None:
        raise failed
    return Outcome("rollback", before, after, deployed)
