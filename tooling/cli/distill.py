"""`emotion-monitor distill CONFIG`: a faster student trained on the served model's soft
labels (training/distill.py), exported like `train`'s artifact and optionally pushed to the
registry as a candidate; `emotion-monitor bench student`: the student beside its teacher
(tooling/bench/student.py) (issue 30, item 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tooling.cli.main import DataRoot, _offline, app, bench_app
from tooling.cli.model import _summary


@app.command("distill")
def distill_cmd(
    config: Annotated[Path, typer.Argument(help="Student config (YAML with a `distill:` section).")],
    out: Annotated[Path, typer.Option(help="Where to write the student's INT8 artifact.")] = Path(
        ".emotion-monitor/student"
    ),
    run_dir: Annotated[Path, typer.Option(help="Checkpoints, ONNX intermediates.")] = Path("runs/student"),
    data_root: DataRoot = None,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (smoke runs).")] = None,
    push_to: Annotated[
        Path | None,
        typer.Option(help="Push the artifact to this local registry directory, under each task's name."),
    ] = None,
) -> None:
    """Distil the teacher artifact named in CONFIG into a student with fewer layers, export it
    (INT8, calibration, counting, card: the pipeline's own code) and print its figures."""
    _offline()
    from serve_app.model.registry import LocalRegistry
    from training.data import default_data_root
    from training.distill import load_student_config, run_distill

    cfg, dcfg = load_student_config(config, {"epochs": epochs, "max_steps": max_steps})
    card = run_distill(cfg, dcfg, out, run_dir, data_root or default_data_root())
    typer.echo(json.dumps(_summary(card), indent=2))
    if push_to is not None:
        registry = LocalRegistry(push_to)
        for task in cfg.tasks:  # the Classifier looks a task's version up under the task's name
            typer.echo(f"pushed {task}/{registry.push(task, cfg.version, out)} to {push_to}")


@bench_app.command("student")
def bench_student(
    student: Annotated[Path, typer.Option(help="The student's artifact.")] = Path(".emotion-monitor/student"),
    teacher: Annotated[Path, typer.Option(help="The teacher's artifact.")] = Path("models/multitask"),
    config: Annotated[Path, typer.Option(help="The config naming the validation sets.")] = Path(
        "configs/multitask.yaml"
    ),
    data_root: DataRoot = None,
    posts: Annotated[int, typer.Option(help="Posts timed (cut to 128 tokens).")] = 512,
    repeats: Annotated[int, typer.Option(help="Timed passes per model (interleaved).")] = 7,
    corpus_posts: Annotated[int, typer.Option(help="Held-out corpus posts for agreement.")] = 2000,
    draws: Annotated[int, typer.Option(help="Samples per shift protocol (250 texts each).")] = 200,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads per model.")] = 2,
    speed_only: Annotated[bool, typer.Option(help="Only the posts/s table.")] = False,
    limit: Annotated[int | None, typer.Option(help="Texts per validation set (quick checks).")] = None,
) -> None:
    """Student and teacher side by side, one run: model-only posts/s at 128 tokens (batch 32),
    then per validation set macro-F1, breakdown TVD (natural mix and shifted mixes, each
    model's served counting) and agreement, and agreement on held-out corpus posts."""
    from serve_app.model.predictor import OnnxPredictor
    from tooling.bench import student as bs
    from training.config import load_config
    from training.data import default_data_root
    from training.train import data_path

    root = data_root or default_data_root()
    t, s = OnnxPredictor(teacher, threads=threads), OnnxPredictor(student, threads=threads)
    held_out = bs.held_out_posts(root / "reddit_sample/posts.jsonl", max(corpus_posts, 4 * posts))
    ids = bs.full_length_ids(t, held_out, posts)
    # The teacher twice: how far two runs of one model differ on this machine now (A/A).
    control = OnnxPredictor(teacher, threads=threads)
    rows = bs.speed({"teacher": t, "teacher A/A": control, "student": s}, ids, repeats)
    typer.echo("\n".join(bs.speed_lines(rows, len(ids), repeats)))
    if speed_only:
        return
    cfg = load_config(config)
    sets = {n: (task, data_path(p, root)) for n, (task, p) in cfg.validation_sets().items()}
    quality = bs.quality(t, s, sets, draws, limit=limit)
    corpus = bs.corpus_agreement(t, s, held_out[:corpus_posts])
    typer.echo("\n".join(bs.quality_lines(quality, corpus, min(corpus_posts, len(held_out)))))
