"""`emotion-monitor train | export | evaluate` and the registry's `model push | pull | list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tooling.cli.main import (
    DataRoot,
    TrackOption,
    _offline,
    app,
    model_app,
)


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="Training config (YAML).")] = Path("configs/multitask.yaml"),
    out: Annotated[Path, typer.Option(help="Where to write the INT8 artifact.")] = Path("models/multitask"),
    run_dir: Annotated[Path, typer.Option(help="Checkpoints, ONNX intermediates, logs.")] = Path(
        "runs/multitask"
    ),
    data_root: DataRoot = None,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (smoke runs).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many examples per source.")] = None,
    export: Annotated[bool, typer.Option(help="Export, quantize and evaluate after training.")] = True,
    track: TrackOption = True,
) -> None:
    """Fine-tune the base model, then export, quantize, evaluate and write the model card."""
    _offline()
    from training.config import load_config
    from training.data import default_data_root
    from training.pipeline import build_artifact
    from training.tracking import maybe_tracked_run
    from training.train import train as run_train

    cfg = load_config(config, {"epochs": epochs, "max_steps": max_steps})
    if limit is not None:
        for src in cfg.train:
            src.limit = limit
    root = data_root or default_data_root()
    with maybe_tracked_run(cfg, config, root, track) as tracker:
        result = run_train(cfg, run_dir, root, on_epoch=tracker.on_epoch if tracker else None)
        typer.echo(f"best epoch {result.best_epoch}; checkpoint {result.checkpoint}")
        if export:
            card = build_artifact(cfg, result.checkpoint, out, run_dir, root, result)
            if tracker:
                tracker.finish(card, out)
            typer.echo(json.dumps(_summary(card), indent=2))


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Option(help="best.pt written by `train`.")] = Path(
        "runs/multitask/best.pt"
    ),
    config: Annotated[Path, typer.Option(help="The training config used.")] = Path("configs/multitask.yaml"),
    out: Annotated[Path, typer.Option(help="Where to write the INT8 artifact.")] = Path("models/multitask"),
    data_root: DataRoot = None,
    track: TrackOption = True,
) -> None:
    """Export a checkpoint to ONNX, pick an INT8 scheme and counting method on validation,
    write the artifact; logs the run (its training history included) to MLflow."""
    _offline()
    from training.config import load_config
    from training.data import default_data_root
    from training.pipeline import build_artifact
    from training.tracking import maybe_tracked_run

    cfg = load_config(config)
    root = data_root or default_data_root()
    with maybe_tracked_run(cfg, config, root, track) as tracker:
        card = build_artifact(cfg, checkpoint, out, checkpoint.parent, root)
        if tracker:
            for record in card["training"].get("history") or []:
                tracker.on_epoch(record)
            tracker.finish(card, out)
    typer.echo(json.dumps(_summary(card), indent=2))


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    return {
        d: {
            p: {
                "accuracy": round(r[p]["accuracy"], 4),
                "macro_f1": round(r[p]["macro_f1"], 4),
                "breakdown_tvd": None
                if r[p]["breakdown"]["tvd"] is None
                else round(r[p]["breakdown"]["tvd"], 4),
            }
            for p in ("fp32", "int8")
        }
        for d, r in card["metrics"].items()
    }


def _card_sets(model: Path) -> list[tuple[str, Path]]:
    """(task, file) of every data set the artifact's model card reports on."""
    card_file = model / "model_card.json"
    if not card_file.is_file():
        raise typer.BadParameter(
            f"{model} has no model_card.json: name the data with --data", param_hint="--data"
        )
    card = json.loads(card_file.read_text())
    return [(res["task"], Path(res["int8"]["data"])) for res in card["metrics"].values()]


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="Labelled JSONL file; repeat for several (default: every set the model card reports)."
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="The head to evaluate --data with (default: the first).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    confusion_png: Annotated[Path | None, typer.Option(help="Write the confusion matrix PNG here.")] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads.")] = 2,
    shift: Annotated[
        bool,
        typer.Option(
            "--shift",
            help="Instead: the shifted-mix protocol (uniform and near-natural label mixes; every counting "
            "method's mean / p90 TVD and interval coverage).",
        ),
    ] = False,
    sizes: Annotated[str, typer.Option(help="--shift: sample sizes, comma-separated.")] = "250,50,1000",
    draws: Annotated[int, typer.Option(help="--shift: samples per protocol and size.")] = 500,
    seed: Annotated[int, typer.Option(help="--shift: seed of folds, mixes and samples.")] = 0,
) -> None:
    """Per data set: accuracy, macro-F1, per-class figures, the confusion matrix, the breakdown
    error (TVD between predicted and true label shares, for each counting method) and the
    share of neutral texts given another label. Accuracy, macro-F1, macro-recall and the argmax
    TVD carry 95 % bootstrap intervals over texts (`intervals`): what another sample of the
    same size could give.

    A data set may use a subset of the model's labels (CARER has no neutral): a prediction
    outside them counts as wrong. Prints one JSON object per file with --json.
    """
    from serve_app.model.predictor import OnnxPredictor

    predictor = OnnxPredictor(model, threads=threads)
    head = task or predictor.task
    sets = [(head, f) for f in data] if data else _card_sets(model)
    if shift:  # tooling/cli/counting.py
        from tooling.cli.counting import shift_lines, shift_tables

        ns = [int(x) for x in sizes.split(",") if x.strip()]
        tables = shift_tables(model, sets, ns, draws, seed, threads)
        for name, t_ in tables.items():
            typer.echo(json.dumps(t_) if as_json else "\n".join(shift_lines(name, t_["protocol"])))  # type: ignore[arg-type]
        return
    reports = _reports(predictor, sets, confusion_png)
    if as_json:
        typer.echo(json.dumps(reports, indent=2))
        return
    for name, r in reports.items():
        typer.echo("\n".join(format_evaluation(name, r)))


def _reports(predictor: Any, sets: list[tuple[str, Path]], confusion_png: Path | None) -> dict[str, Any]:
    """Each (task, file)'s evaluation report, by file; the confusion PNGs written on the way."""
    from training.evaluate import evaluate_predictor, plot_confusion

    reports: dict[str, Any] = {}
    for t, f in sets:
        view = predictor.for_task(t)
        report, _ = evaluate_predictor(view, f)
        report["model_version"] = predictor.version
        reports[str(f)] = report
        if confusion_png is not None:
            target = (
                confusion_png
                if len(sets) == 1
                else confusion_png.with_name(
                    f"{confusion_png.stem}_{f.parent.name}_{f.stem}{confusion_png.suffix}"
                )
            )
            plot_confusion(report["confusion_matrix"], view.labels, f"{predictor.version} {t} on {f}", target)
    return reports


def format_evaluation(name: str, r: dict[str, Any]) -> list[str]:
    """One evaluation report as text: the headline figures, then one line per class."""
    bd = r["breakdown"]
    ngo = r.get("neutral_given_other")
    ci = r.get("intervals", {})

    def fig(key: str) -> str:
        low_high = ci.get(key)
        return f"{r[key]:.4f}" + ("" if low_high is None else " [{:.4f}, {:.4f}]".format(*low_high))

    lines = [
        f"{name} ({r['task']}): n={r['n']} accuracy={fig('accuracy')} macro_f1={fig('macro_f1')} "
        f"macro_recall={fig('macro_recall')} breakdown TVD={bd['tvd']:.4f} "
        f"(served: {bd['served_method']}; "
        + ", ".join(f"{m} {v['tvd']:.4f}" for m, v in bd["methods"].items())
        + ")"
        + ("" if ngo is None else f" neutral_given_other={ngo:.3f}")
    ]
    shares = bd["methods"][bd["served_method"]]["shares"]
    for lab, m in r["per_class"].items():
        lines.append(
            f"  {lab:<9} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} n={m['support']}"
            f"  true {100 * bd['true'][lab]:.1f}% estimated {100 * shares[lab]:.1f}%"
        )
    return lines


def _registry() -> Any:
    from serve_app.config.settings import get_settings
    from serve_app.model.registry import registry_spec

    return registry_spec(get_settings()).open()


@model_app.command("push")
def model_push(
    src: Annotated[Path, typer.Argument(help="Artifact directory.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "emotion",
    version: Annotated[str | None, typer.Option(help="Version (default: the card's).")] = None,
) -> None:
    """Upload an artifact directory as a registry version."""
    from serve_app.model.predictor import read_artifact_info

    v = version or read_artifact_info(src).version
    typer.echo(f"pushed {name}/{_registry().push(name, v, src)}")


@model_app.command("pull")
def model_pull(
    dest: Annotated[Path, typer.Argument(help="Where to put the artifact.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "emotion",
    version: Annotated[str, typer.Option(help="Version or 'latest'.")] = "latest",
) -> None:
    """Download a registry version into a directory."""
    typer.echo(str(_registry().pull(name, version, dest)))


@model_app.command("list")
def model_list(name: Annotated[str, typer.Option(help="Model name.")] = "emotion") -> None:
    """List the versions of a model in the registry."""
    for v in _registry().versions(name):
        typer.echo(v)
