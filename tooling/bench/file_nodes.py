"""`emotion-monitor bench file-nodes`: `analyze --file --ray` on the local multi-node cluster
with 1, then 2 worker nodes, beside the same analysis in this process.

Each worker node offers 2 logical CPUs and the resource `classifier: 2`; the scoring actors
(one ONNX Runtime thread each, `classifier: 1`) run on workers only, two per worker. On a
machine with 2 cores every node shares the same cores: a second node adds actors, not
CPU, and the table shows what that costs or gains here; on real nodes each adds its own.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tooling.bench.file import write_texts


@dataclass(frozen=True)
class NodesPlan:
    model: Path
    posts: Path
    texts: int
    repeats: int
    max_length: int
    workdir: Path
    actors_per_worker: int = 2


def _timed(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    times, scored = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        scored = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), scored


def bench_file_nodes(plan: NodesPlan, log: Callable[[str], None] = lambda _: None) -> str:
    import ray

    from serve_app.flow.file_analysis import FileOptions, analyze_file
    from serve_app.flow.file_ray import RayScoring
    from serve_app.flow.text_files import TextFields
    from tooling.local_cluster import LocalCluster

    path = write_texts(plan.posts, plan.texts, plan.workdir / f"texts-{plan.texts}.jsonl")
    fields, opts = TextFields(("text",), "id"), FileOptions()

    def local() -> int:
        return analyze_file(path, fields, plan.model, opts, plan.max_length).scored or 0

    rows = []
    local_s, _ = _timed(local, plan.repeats)
    speed = plan.texts / local_s
    rows.append(f"| in-process (2 ORT threads, no Ray) | - | {local_s:.1f} | {speed:.0f} | 1.00x |")
    log(f"in-process: {local_s:.1f} s")
    cluster = LocalCluster(plan.workdir / "cluster")
    try:
        cluster.up(workers=1, head_cpus=1)
        for workers in (1, 2):
            if workers == 2:
                cluster.add_worker("worker2")
                cluster.wait_for_nodes(3, 180)
            scoring = RayScoring(
                cluster._need_state().address, actors=plan.actors_per_worker * workers,
                resources={"classifier": 1.0},
            )  # fmt: skip

            def on_ray(scoring: RayScoring = scoring) -> int:
                a = analyze_file(
                    path, fields, plan.model, opts, plan.max_length,
                    chunk_size=scoring.chunk_size, scorer=scoring,
                )  # fmt: skip
                return a.scored or 0

            took, scored = _timed(on_ray, plan.repeats)
            assert scored == plan.texts, scored
            rows.append(
                f"| --ray, {workers} worker node(s), {scoring.actors} actors | {workers} | {took:.1f} "
                f"| {plan.texts / took:.0f} | {took / local_s:.2f}x |"
            )
            log(f"{workers} workers: {took:.1f} s")
    finally:
        ray.shutdown()
        cluster.down()
    return "\n".join(
        [
            f"`analyze --file` of {plan.texts:,} real texts (max_length {plan.max_length}) on the local "
            f"cluster, median of {plan.repeats}; every node shares this machine's cores",
            "",
            "| run | worker nodes | seconds | texts/s | time vs in-process |",
            "|---|---:|---:|---:|---:|",
            *rows,
        ]
    )
