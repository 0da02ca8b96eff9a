"""Counting under a shifted label mix (issue 29): `emotion-monitor model counting` re-fits an
artifact's counting, `emotion-monitor evaluate --shift` runs the protocol on any labelled file
(`shift_tables`), `emotion-monitor bench counting` times counting and intervals."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from tooling.cli.main import DataRoot, bench_app, model_app
from training.counting_choice import Figures

ConfigOption = Annotated[Path, typer.Option(help="The training config that names the data sets.")]


@model_app.command("counting")
def model_counting(
    model_dir: Annotated[Path, typer.Argument(help="Artifact directory (its labels.json is rewritten).")],
    config: ConfigOption = Path("configs/multitask.yaml"),
    data_root: DataRoot = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds, mixes and resamples.")] = 0,
    track: Annotated[bool, typer.Option(help="Log the figures to MLflow as a run of their own.")] = True,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads.")] = 2,
) -> None:
    """Choose and fit each head's counting method under shifted label mixes, on the artifact's
    own predictions for the product's domain (Reddit validation, cross-fitted), without
    retraining; write it to labels.json and the model card; report CARER / TweetEval and the
    test splits with the served fit (never used to choose)."""
    from serve_app.config.settings import get_settings
    from training.config import load_config
    from training.counting_artifact import log_counting_run, refit_counting
    from training.data import default_data_root

    cfg = load_config(config)
    _, reports = refit_counting(model_dir, cfg, data_root or default_data_root(), seed, threads)
    for task, rep in reports.items():
        typer.echo(f"{task}: {rep['method']} (margin {rep['interval_margin']}), fitted on {rep['fitted_on']}")
        for name, sr in rep["sets"].items():
            typer.echo("\n".join(shift_lines(f"{task} {name} ({sr['fit']})", sr["protocol"])))
    if track:
        s = get_settings()
        run_id = log_counting_run(reports, cfg.version, s.tracking.uri, s.tracking.experiment)
        typer.echo(f"MLflow run {run_id}")


@model_app.command("counting-precision")
def model_counting_precision(
    model_dir: Annotated[Path, typer.Argument(help="Artifact directory (its model card is rewritten).")],
    config: ConfigOption = Path("configs/multitask.yaml"),
    data_root: DataRoot = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Seeds (repeat).")] = None,
    draws: Annotated[int, typer.Option(help="Samples per protocol and seed.")] = 1000,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads.")] = 2,
) -> None:
    """Re-measure each head's served counting at n = 250 on its domain's validation set with
    more draws and other seeds than the choice used (fits nothing, chooses nothing); the
    figures go into the model card beside the choice's."""
    from training.config import load_config
    from training.counting_artifact import precision_check
    from training.data import default_data_root

    cfg, root = load_config(config), data_root or default_data_root()
    rows = precision_check(model_dir, cfg, root, seeds or [1, 2, 3, 4], draws, threads)
    for task, by_seed in rows.items():
        for r in by_seed:
            typer.echo(
                f"{task} seed {int(r['seed'])}: uniform TVD {r['uniform_mean_tvd']:.4f} "
                f"(coverage {r['uniform_coverage']:.3f}), near-natural TVD {r['natural_mean_tvd']:.4f} "
                f"(coverage {r['natural_coverage']:.3f})"
            )


def shift_lines(title: str, table: Mapping[str, Mapping[str, Mapping[str, Figures]]]) -> list[str]:
    """{n: {protocol: {method: figures}}} as text, one row per method."""
    lines = [title]
    for n, by_proto in table.items():
        protos = list(by_proto)
        lines.append(
            f"  n={n:<5} method | "
            + " | ".join(f"{p}: mean TVD, p90 TVD, coverage, width (draws)" for p in protos)
        )
        for m in next(iter(by_proto.values())):
            cells = []
            for p in protos:
                f = by_proto[p][m]
                cells.append(
                    f"{f['mean_tvd']:.4f} {f['p90_tvd']:.4f} {f['coverage']:.3f} "
                    f"{f['mean_width']:.3f} ({int(f['draws'])})"
                )
            lines.append(f"          {m:<6} | " + " | ".join(cells))
    return lines


def shift_tables(
    model: Path,
    files: Sequence[tuple[str, Path]],
    sizes: Sequence[int],
    draws: int,
    seed: int,
    threads: int,
) -> dict[str, dict[str, object]]:
    """`evaluate --shift`: per file, every candidate cross-fitted on the file itself, and
    the artifact's served fit ("served") on every text of it."""
    from serve_app.counting.quantify import METHODS, Counting
    from serve_app.model.predictor import OnnxPredictor
    from training.counting_choice import _table
    from training.data import read_jsonl
    from training.shift import shift_protocol, whole_set_tvd

    predictor = OnnxPredictor(model, threads=threads)
    out: dict[str, dict[str, object]] = {}
    for task, path in files:
        view = predictor.for_task(task)
        exs = read_jsonl(path, list(view.labels))
        probs = np.round(view.probabilities([e.text for e in exs]).astype(np.float64), 6)
        y = np.asarray([e.label for e in exs])
        served = view.head.counting
        cache: dict[tuple[str, int], Counting] = {}
        runs = {}
        for n in sizes:
            cross = shift_protocol(probs, y, METHODS, n, draws, seed=seed, fits=cache)
            own = shift_protocol(
                probs, y, [served.method], n, draws, seed=seed, served={served.method: served}
            )
            runs[n] = {p: {**cross[p], "served": own[p][served.method]} for p in cross}
        out[str(path)] = {
            "task": task,
            "served_method": served.method,
            "protocol": _table(runs, {"served": served.interval_margin}),
            "natural_tvd_cross_fitted": whole_set_tvd(probs, y, METHODS),
            "draws_per_protocol": draws,
            "seed": seed,
            "note": f"{served.method} is served (its artifact fit); the candidates are cross-fitted on "
            "this file (5 folds)",
        }
    return out


def bench_counting(posts: int, repeats: int, model: Path, data: Path) -> str:
    """Counting + intervals for `posts` posts, today's cc bootstrap beside each method as
    served (serve_app.counting.quantify), medians over `repeats` samples of real validation posts."""
    from serve_app.counting.breakdown import breakdown
    from serve_app.counting.quantify import quantify
    from serve_app.model.predictor import OnnxPredictor
    from training.counting import fit_counting
    from training.data import read_jsonl

    predictor = OnnxPredictor(model)
    view = predictor.for_task("emotion")
    exs = read_jsonl(data, list(view.labels))
    probs = np.round(view.probabilities([e.text for e in exs]).astype(np.float64), 6)
    y = np.asarray([e.label for e in exs])
    rest = list(view.labels).index("neutral")
    rng = np.random.default_rng(0)
    samples = [probs[rng.choice(len(probs), posts)] for _ in range(repeats)]
    fits = {m: fit_counting(probs, y, m) for m in ("pcc", "acc", "pacc", "emq")}
    fits[view.head.counting.method + " (served)"] = view.head.counting

    def median_ms(fn: object) -> float:
        times = []
        for x in samples:
            t = time.perf_counter()
            fn(x)  # type: ignore[operator]
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)

    old = median_ms(lambda x: breakdown(x, "cc", rest=rest))
    rows = [f"| old: cc, bootstrap over posts (1000 draws) | {old:.2f} | 1.00 |"]
    for name, fit in fits.items():
        ms = median_ms(lambda x, f=fit: quantify(x, f, rest=rest))
        rows.append(f"| new: {name}, posts x fits ({fit.resamples or 1} fits) | {ms:.2f} | {ms / old:.2f} |")
    return "\n".join(
        [
            f"Counting + 95 % intervals (with the shares among emotional posts) for {posts} posts, "
            f"median of {repeats} samples of {data.name}:",
            "",
            "| counting | p50 ms | ratio to old |",
            "|---|---:|---:|",
            *rows,
        ]
    )


@bench_app.command("counting")
def bench_counting_cmd(
    posts: Annotated[int, typer.Option(help="Posts per breakdown.")] = 250,
    repeats: Annotated[int, typer.Option(help="Samples timed (median reported).")] = 50,
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    data: Annotated[Path, typer.Option(help="Labelled posts to sample from.")] = Path(
        "../shared/data/reddit_emotion7/validation.jsonl"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON lines.")] = False,
) -> None:
    """Counting and intervals for 250 posts: the served method against today's cc bootstrap."""
    report = bench_counting(posts, repeats, model, data)
    typer.echo(json.dumps({"report": report}) if as_json else report)
