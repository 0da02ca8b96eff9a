"""Re-fit an artifact's counting on its validation predictions, without retraining: what
`emotion-monitor model counting` runs. The ONNX graph and the temperatures stay; labels.json
gets each head's new `breakdown`, the model card its "Counting under shift" figures, and
MLflow a run of its own (torch-free)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from serve_app.model.predictor import OnnxPredictor
from training.card import write_model_card
from training.config import TrainConfig
from training.counting import CountingSpec
from training.counting_choice import CHOICE_N, HeadReport, LabelledSet, choose_counting_under_shift
from training.data import read_jsonl
from training.shift import shift_protocol


def _path(rel: str, data_root: Path) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else data_root / p


def _labelled(predictor: OnnxPredictor, task: str, name: str, path: Path, split: str) -> LabelledSet:
    view = predictor.for_task(task)
    examples = read_jsonl(path, list(view.labels))
    probs = view.probabilities([e.text for e in examples]).astype(np.float64)
    # Served scores are rounded to 6 decimals (PredictionRow); fit on what serving sees.
    return LabelledSet(name, np.round(probs, 6), np.asarray([e.label for e in examples]), split)


def labelled_sets(
    predictor: OnnxPredictor, cfg: TrainConfig, data_root: Path, with_tests: bool = True
) -> dict[str, list[LabelledSet]]:
    """Per task: the domain set (first of `breakdown_sets`) first, then the task's other
    validation sets, then its test splits (measured only after the choice)."""
    out: dict[str, list[LabelledSet]] = {}
    for task, tc in cfg.tasks.items():
        names = tc.breakdown_sets or list(tc.validation)
        order = [*names, *(n for n in tc.validation if n not in names)]
        sets = [
            _labelled(predictor, task, n, _path(tc.validation[n], data_root), "validation") for n in order
        ]
        if with_tests:
            sets += [
                _labelled(predictor, task, n, _path(p, data_root), "test")
                for n, p in tc.test.items()
                if _path(p, data_root).is_file()
            ]
        out[task] = sets
    return out


def write_counting(
    model_dir: Path, specs: Mapping[str, CountingSpec], reports: Mapping[str, HeadReport]
) -> None:
    """labels.json: each head's breakdown; model_card.json / MODEL_CARD.md: the figures."""
    labels_path = model_dir / "labels.json"
    meta = json.loads(labels_path.read_text())
    for task, spec in specs.items():
        meta["heads"][task]["breakdown"] = dict(spec)
    labels_path.write_text(json.dumps(meta, indent=2) + "\n")
    card_path = model_dir / "model_card.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        card["counting_shift"] = dict(reports)
        for task, rep in reports.items():  # the natural-mix table names the method now served
            if task in card.get("breakdown", {}):
                card["breakdown"][task]["method"] = rep["method"]
        write_model_card(model_dir, card)


def log_counting_run(reports: Mapping[str, HeadReport], version: str, uri: str, experiment: str) -> str:
    """An MLflow run of its own with every protocol figure; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{version} counting") as run:
        mlflow.set_tags({"kind": "counting", "model_version": version})
        metrics: dict[str, float] = {}
        for task, rep in reports.items():
            mlflow.log_params({f"{task}.method": rep["method"], f"{task}.margin": rep["interval_margin"]})
            for set_name, sr in rep["sets"].items():
                for n, by_proto in sr["protocol"].items():
                    for proto, by_method in by_proto.items():
                        for m, fig in by_method.items():
                            key = f"{task}.{set_name}.n{n}.{proto}.{m}"
                            metrics[f"{key}.mean_tvd"] = fig["mean_tvd"]
                            metrics[f"{key}.p90_tvd"] = fig["p90_tvd"]
                            metrics[f"{key}.coverage"] = fig["coverage"]
                            metrics[f"{key}.width"] = fig["mean_width"]
                for m, v in sr["natural_tvd"].items():
                    metrics[f"{task}.{set_name}.natural.{m}.tvd"] = v
        mlflow.log_metrics(metrics)
        return str(run.info.run_id)


def refit_counting(
    model_dir: Path, cfg: TrainConfig, data_root: Path, seed: int = 0, threads: int = 2
) -> tuple[dict[str, CountingSpec], dict[str, HeadReport]]:
    """Choose and fit every head's counting on the artifact's own predictions, write it."""
    predictor = OnnxPredictor(model_dir, threads=threads)
    sets = labelled_sets(predictor, cfg, data_root)
    specs, reports = choose_counting_under_shift(sets, seed=seed)
    write_counting(model_dir, specs, reports)
    return specs, reports


def precision_check(
    model_dir: Path,
    cfg: TrainConfig,
    data_root: Path,
    seeds: Sequence[int] = (1, 2, 3, 4),
    draws: int = 1000,
    threads: int = 2,
) -> dict[str, list[dict[str, float]]]:
    """Re-measure each served method at n = CHOICE_N on the domain set with more draws and
    other seeds than the choice used (nothing is fitted or chosen here), and store it in the
    model card: a mean TVD of a few hundred draws is ±0.002 noise, as large as some margins
    to the targets. Coverage is of the served interval (bootstrap plus the served margin)."""
    predictor = OnnxPredictor(model_dir, threads=threads)
    card = json.loads((model_dir / "model_card.json").read_text())
    out: dict[str, list[dict[str, float]]] = {}
    for task, tc in cfg.tasks.items():
        rep = card["counting_shift"][task]
        domain = (tc.breakdown_sets or list(tc.validation))[0]
        data = _labelled(predictor, task, domain, _path(tc.validation[domain], data_root), "validation")
        rows = []
        for seed in seeds:
            res = shift_protocol(data.probs, data.y, [rep["method"]], CHOICE_N, draws, seed=seed)
            row: dict[str, float] = {"seed": seed, "draws": draws}
            for proto, by_method in res.items():
                s = by_method[rep["method"]]
                # Cross-fitted draws carry no margin: read the coverage at the served one.
                cover = s.coverage_by_margin.get(float(rep["interval_margin"]), s.coverage)
                row[f"{proto}_mean_tvd"], row[f"{proto}_coverage"] = s.mean_tvd, cover
            rows.append(row)
        rep["precision"] = rows
        out[task] = rows
    write_model_card(model_dir, card)
    return out
