"""`emotion-monitor bench shadow`: what shadow scoring costs /analyze, measured in one run.

The analyze app (jsonl source, cache on, PostgreSQL for the pairs) is deployed once; its
Classifier's user_config then alternates between no candidate and a candidate shadowing
`share` of the posts (a byte copy of the live model pushed to a throwaway registry: the same
cost as a same-size candidate). Each `serve.run` restarts the replicas (it gives the app a
new code version), both conditions alike. Each round times every keyword cold (its answer
and post scores deleted first) under both conditions, in alternating order. CPU is the
app's replica processes' own (the machine is shared), wall time is what a caller sees.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from tooling.bench.common import keyword_texts, local_serve, machine_line, table


def _deploy(model_dir: Path, jsonl: Path, redis_url: str, pg_url: str, registry: Path, share: float) -> None:
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings, SourcesSettings
    from serve_app.lifecycle.rollout import CandidateConfig
    from serve_app.model.predictor import read_artifact_info

    settings = Settings(
        stores={"redis_url": redis_url, "postgres_url": pg_url, "embedded": False},
        background=False,
        model={"registry_dir": registry},
    )
    args = AppArgs(
        model=ModelSettings(dir=model_dir, ort_threads=2),
        sources=SourcesSettings(default_source="jsonl", jsonl_path=jsonl),
        tasks=read_artifact_info(model_dir).tasks,
        classifier_max_replicas=1,
        candidate=CandidateConfig(version="bench-candidate", shadow_share=share)
        if share
        else CandidateConfig(),
    )
    serve.run(make_app(args, settings), name="emotion-monitor", route_prefix="/")


def _app_cpu() -> dict[int, float]:
    """CPU seconds so far of each of the app's replica processes (the machine is shared: other
    people's work does not count here)."""
    out = {}
    for p in psutil.Process().children(recursive=True):  # this bench's own Ray: its descendants
        with contextlib.suppress(psutil.Error):
            if any("ServeReplica:emotion-monitor" in part for part in p.cmdline()):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
    return out


def _cold(
    url: str, redis_url: str, versions: dict[str, str], keywords: Sequence[str]
) -> list[tuple[float, float]]:
    """(wall s, the app's CPU s) of a cold /analyze per keyword."""
    import httpx
    import redis

    from serve_app.stores.cache import analysis_key

    rc = redis.Redis.from_url(redis_url)
    out = []
    with httpx.Client(base_url=url, timeout=300) as http:
        for kw in keywords:
            rc.delete(
                analysis_key(kw, 250, "jsonl", versions, negative_threshold=0.8), *rc.scan_iter("em:score:*")
            )
            cpu0, t0 = _app_cpu(), time.perf_counter()
            r = http.post(
                "/analyze",
                json={"keyword": kw, "limit": 250, "tasks": list(versions), "negative_threshold": 0.8},
            )
            wall, cpu1 = time.perf_counter() - t0, _app_cpu()
            out.append((wall, sum(cpu1[pid] - c for pid, c in cpu0.items() if pid in cpu1)))
            assert r.status_code == 200 and r.json()["source"] == "inference", r.text
    return out


def bench_shadow(
    model_dir: Path,
    jsonl: Path,
    keywords: Sequence[str],
    rounds: int,
    share: float,
    redis_url: str,
    pg_url: str,
) -> str:
    from serve_app.model.predictor import read_artifact_info
    from serve_app.model.registry import LocalRegistry

    info = read_artifact_info(model_dir)
    versions = dict.fromkeys(info.tasks, info.version)
    kws = list(keyword_texts(jsonl, keywords))
    times: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    total = {"off": 0.0, "on": 0.0}  # app CPU per call over whole rounds, settling included
    with tempfile.TemporaryDirectory() as tmp, local_serve() as url:
        reg = LocalRegistry(Path(tmp))
        for task in info.tasks:
            reg.push(task, "bench-candidate", model_dir)
        for s in (0.0, share):  # warm both conditions once
            _deploy(model_dir, jsonl, redis_url, pg_url, Path(tmp), s)
            _cold(url, redis_url, versions, kws[:1])
        for r in range(rounds):
            order = (("off", 0.0), ("on", share)) if r % 2 == 0 else (("on", share), ("off", 0.0))
            for cond, s in order:
                _deploy(model_dir, jsonl, redis_url, pg_url, Path(tmp), s)
                before = _app_cpu()
                times[cond] += _cold(url, redis_url, versions, kws)
                time.sleep(SETTLE_S)  # shadow work left after the last answer counts too
                after = _app_cpu()
                total[cond] += sum(after[p] - c for p, c in before.items() if p in after) / len(kws)
    return _report(times, {c: v / rounds for c, v in total.items()}, share, len(kws), rounds)


SETTLE_S = 5.0


def _report(
    times: dict[str, list[tuple[float, float]]], total: dict[str, float], share: float, n_kw: int, rounds: int
) -> str:
    med = {c: statistics.median(w for w, _ in v) for c, v in times.items()}
    cpu = {c: statistics.median(x for _, x in v) for c, v in times.items()}
    rows = [
        [
            "shadow off" if c == "off" else f"shadow {share:.0%}",
            str(len(times[c])),
            f"{med[c]:.3f}",
            f"{med[c] / med['off']:.3f}",
            f"{cpu[c]:.2f}",
            f"{cpu[c] / cpu['off']:.3f}",
            f"{total[c]:.2f}",
            f"{total[c] / total['off']:.3f}",
        ]
        for c in ("off", "on")
    ]
    head = [
        "condition",
        "cold calls",
        "cold p50 s",
        "ratio to off",
        "app CPU s per call (p50)",
        "CPU ratio",
        f"app CPU s per call, whole rounds + {SETTLE_S:.0f} s settle (mean)",
        "CPU ratio",
    ]
    return "\n".join(
        [
            f"Machine: {machine_line()}",
            "",
            f"### /analyze cold, 250 posts, jsonl source, both tasks; {n_kw} keywords x {rounds} rounds per "
            "condition, conditions alternating (each redeploy restarts the replicas)",
            "",
            table(head, rows),
        ]
    )
