"""`emotion-monitor bench drift`: what the drift watch costs. A check's CPU time at the default
window, as a share of one core at the default schedule; and the Classifier's batch with the
drift tap against the same batch without it (the baseline), in the same run."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Annotated

import typer

from tooling.cli.main import DataRoot, bench_app


@bench_app.command("drift")
def bench_drift(
    model_dir: Annotated[Path, typer.Option(help="Artifact with a reference profile.")] = Path(
        "models/multitask"
    ),
    data_root: DataRoot = None,
    window: Annotated[int, typer.Option(help="Posts per window (the setting drift_window).")] = 500,
    sources: Annotated[int, typer.Option(help="Sources checked per round.")] = 3,
    interval_s: Annotated[float, typer.Option(help="Seconds between rounds (drift_interval_s).")] = 300.0,
    redis_url: Annotated[str, typer.Option(help="Redis for the tap's writes.")] = "redis://127.0.0.1:6379/9",
    repeats: Annotated[int, typer.Option(help="Timed repeats of each measurement.")] = 20,
) -> None:
    """Print the drift watch's CPU cost and the tap's overhead on a serving batch."""
    from serve_app.config.settings import DriftSettings
    from serve_app.model.batching import run_batch
    from serve_app.model.drift_profile import load_profile
    from serve_app.model.predictor import OnnxPredictor
    from serve_app.monitoring.drift import DriftThresholds, check_window
    from serve_app.stores.drift_store import DriftTap, TapConfig
    from training.data import default_data_root
    from training.profile import reference_posts

    pred = OnnxPredictor(model_dir, threads=1)
    profile = load_profile(model_dir)
    texts = reference_posts((data_root or default_data_root()) / "reddit_sample" / "posts.jsonl", window, 11)
    probs, emb = pred.probabilities_and_embeddings(texts)
    cpu, wall = [], []
    for _ in range(max(3, repeats // 4)):
        c0, w0 = time.process_time(), time.perf_counter()
        for task in pred.info.heads:
            check_window("bench", task, "v", probs[task], emb, profile, DriftThresholds())
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    per_source, per_wall = statistics.median(cpu), statistics.median(wall)
    per_round = per_source * sources
    tasks = len(pred.info.heads)
    typer.echo(f"drift check, {window} posts, {tasks} tasks, {sources} sources every {interval_s:.0f} s")
    typer.echo(f"  CPU per source {per_source * 1000:.0f} ms (wall {per_wall * 1000:.0f} ms)")
    share = 100 * per_round / interval_s
    typer.echo(f"  CPU per round {per_round * 1000:.0f} ms = {share:.3f} % of one core")

    batch = [t[:200] for t in texts[:32]]  # a serving batch of short texts
    predictors = {t: pred.for_task(t) for t in pred.info.heads}
    calls = [(tuple(predictors), batch, "bench")]
    tap = DriftTap(TapConfig(redis_url, DriftSettings(window=window)))
    base: list[float] = []
    tapped: list[float] = []
    for _ in range(repeats):  # interleaved, so load from others hits both alike
        for out, t in ((base, None), (tapped, tap)):
            c0 = time.process_time()
            run_batch(predictors, calls, t)
            out.append(time.process_time() - c0)
    b, d = statistics.median(base) * 1000, statistics.median(tapped) * 1000
    typer.echo("serving batch of 32 texts, CPU ms (median)")
    typer.echo(f"  {'without tap (baseline)':<24} {b:8.2f}")
    typer.echo(f"  {'with drift tap':<24} {d:8.2f}   ratio {d / b:.3f}")
    typer.echo(f"  tap rows written to Redis: {tap.flush() + tap.written}")
