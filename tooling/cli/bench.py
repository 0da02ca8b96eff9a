"""`emotion-monitor bench analyze | predict | all | hold | sync` (tooling/bench/ does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tooling.cli.main import (
    _emit_report,
    _offline,
    bench_app,
)


@bench_app.command("analyze")
def bench_analyze_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    jsonl: Annotated[Path, typer.Option(help="Post corpus.")] = Path(
        "../shared/data/reddit_sample/posts.jsonl"
    ),
    keywords: Annotated[str, typer.Option(help="Comma-separated keywords with >= 250 posts.")] = (
        "game,python,money,dog,work,music,school,food"
    ),
    repeats: Annotated[int, typer.Option(help="Cold calls per keyword.")] = 3,
    max_length: Annotated[int, typer.Option(help="Tokens per post for the served app.")] = 128,
    lengths: Annotated[str, typer.Option(help="Truncation lengths to compare.")] = "64,128,256,512",
    redis_url: Annotated[str, typer.Option(help="Redis for the cache (a DB the bench may write).")] = (
        "redis://127.0.0.1:6379/14"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) here.")] = None,
) -> None:
    """/analyze cold vs cache hit beside model-only time, and the truncation trade-off."""
    _offline()
    from tooling.bench.analyze import bench_analyze

    report = bench_analyze(
        model,
        jsonl,
        [k.strip() for k in keywords.split(",") if k.strip()],
        repeats,
        max_length,
        redis_url or None,
        [int(x) for x in lengths.split(",")],
    )
    _emit_report(report, out)


@bench_app.command("predict")
def bench_predict_cmd(
    model: Annotated[Path, typer.Option(help="INT8 artifact directory.")] = Path("models/multitask"),
    fp32: Annotated[
        Path | None, typer.Option(help="FP32 ONNX (from `train`) for the model-only row.")
    ] = Path("runs/emotion/export/model_fp32.onnx"),
    checkpoint: Annotated[Path | None, typer.Option(help="best.pt for the torch eager row.")] = Path(
        "runs/emotion/best.pt"
    ),
    texts: Annotated[Path, typer.Option(help="JSONL with a text field.")] = Path(
        "../shared/data/reddit_emotion/validation.jsonl"
    ),
    users: Annotated[str, typer.Option(help="Concurrent users, comma-separated.")] = "1,8,32,64",
    seconds: Annotated[int, typer.Option(help="Seconds per load row.")] = 20,
    batch_users: Annotated[int, typer.Option(help="Users sending 64-text batches.")] = 4,
    replicas: Annotated[str, typer.Option(help="Classifier replica counts to compare.")] = "1,2",
    threads: Annotated[int, typer.Option(help="ORT threads in total (the cores).")] = 2,
    out: Annotated[Path | None, typer.Option(help="Also write the tables here.")] = None,
) -> None:
    """Model only (torch/FP32/INT8), Serve vs single-process baseline on /predict, 64-text batches."""
    _offline()
    from tooling.bench.predict import bench_predict

    report = bench_predict(
        model,
        fp32,
        checkpoint,
        texts,
        [int(u) for u in users.split(",")],
        seconds,
        batch_users,
        [int(r) for r in replicas.split(",")],
        threads,
    )
    _emit_report(report, out)


@bench_app.command("all")
def bench_all_cmd(
    fp32: Annotated[
        Path | None, typer.Option(help="FP32 ONNX (from `train`) for the model-only row.")
    ] = Path("runs/emotion/export/model_fp32.onnx"),
    checkpoint: Annotated[Path | None, typer.Option(help="best.pt for the torch eager row.")] = Path(
        "runs/emotion/best.pt"
    ),
    seconds: Annotated[int, typer.Option(help="Seconds per /predict load row.")] = 15,
    keywords: Annotated[
        str, typer.Option(help="Keywords for the /analyze rows.")
    ] = "game,python,money,music",
    redis_url: Annotated[str, typer.Option(help="Redis for the cache (a DB the bench may write).")] = (
        "redis://127.0.0.1:6379/14"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) here.")] = None,
) -> None:
    """Every row of issue 5's table in one run: model only, /predict vs the baseline, 64-text
    batches, then /analyze cold and cache hit (both tasks, one encoder)."""
    _offline()
    from tooling.bench.analyze import bench_analyze
    from tooling.bench.predict import bench_predict

    parts = [
        bench_predict(
            Path("models/multitask"),
            fp32,
            checkpoint,
            Path("../shared/data/reddit_emotion/validation.jsonl"),
            [1, 8, 32, 64],
            seconds,
            4,
            [1, 2],
            2,
        ),
        bench_analyze(
            Path("models/multitask"),
            Path("../shared/data/reddit_sample/posts.jsonl"),
            [k.strip() for k in keywords.split(",") if k.strip()],
            3,
            128,
            redis_url or None,
            [64, 128, 256],
        ),
    ]
    report = "\n\n".join(parts)
    _emit_report(report, out)


@bench_app.command("hold")
def bench_hold_cmd(
    redis_url: Annotated[
        str, typer.Option(help="A Redis the bench may write to.")
    ] = "redis://127.0.0.1:6379/11",
    records: Annotated[int, typer.Option(help="Analyses handed over.")] = 100,
    posts: Annotated[int, typer.Option(help="Posts per analysis.")] = 250,
    journal_dir: Annotated[Path, typer.Option(help="Where the journal is written.")] = Path(
        ".emotion-monitor/journal-bench"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the table here.")] = None,
) -> None:
    """What one analysis's history record costs to hand over: Redis vs the fsynced journal."""
    from tooling.bench.history import bench_hold

    _emit_report(bench_hold(redis_url, records, posts, journal_dir), out)


@bench_app.command("sync")
def bench_sync_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    redis_url: Annotated[
        str, typer.Option(help="A Redis DB the bench may flush.")
    ] = "redis://127.0.0.1:6379/11",
    postgres_url: Annotated[str, typer.Option(help="A database the bench may truncate.")] = (
        "postgresql://postgres@127.0.0.1:5432/test"
    ),
    records: Annotated[int, typer.Option(help="Analyses in the backlog.")] = 200,
    posts: Annotated[int, typer.Option(help="Posts per analysis.")] = 250,
    users: Annotated[int, typer.Option(help="Concurrent /predict users.")] = 16,
    seconds: Annotated[float, typer.Option(help="Load duration per run.")] = 20.0,
    texts: Annotated[Path, typer.Option(help="JSONL with a text field.")] = Path(
        "../shared/data/reddit_emotion/validation.jsonl"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables here.")] = None,
) -> None:
    """History sync throughput, and /predict p99 under load with the sync on vs off."""
    _offline()
    from tooling.bench.history import bench_sync

    report = bench_sync(model, redis_url, postgres_url, records, posts, users, seconds, texts)
    _emit_report(report, out)
