"""The whole model build: train, export, quantize, select, calibrate, evaluate, document."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.counting.breakdown import METHODS, estimate_shares, fit_adjustment, label_shares, tvd
from serve_app.model.predictor import OnnxPredictor, softmax
from training.card import write_model_card
from training.card_model import model_card
from training.config import TrainConfig
from training.counting_choice import LabelledSet, choose_counting_under_shift
from training.data import default_data_root, label_counts, read_jsonl
from training.evaluate import compare_models, plot_confusion
from training.export import (
    ExportError,
    export_onnx,
    max_abs_diff,
    optimize_fp32,
    quantize_int8,
    scheme_name,
    write_artifact_files,
)
from training.metrics import agreement, classification_report, expected_calibration_error, fit_temperature
from training.train import TrainResult, data_path, load_checkpoint, train

# FP32 ONNX must reproduce torch; 1e-4 on logits is far below any decision boundary.
ONNX_TOLERANCE = 1e-4


@dataclass
class ValidationData:
    """A validation set's texts, labels and task, with the FP32 model's logits."""

    task: str
    texts: list[str]
    labels: list[int]
    fp32_logits: np.ndarray


def check_onnx_matches_torch(model: Any, predictor: OnnxPredictor, texts: list[str]) -> float:
    """Largest |logit| difference between torch and the FP32 ONNX graph, over every head."""
    import torch

    from training.batches import collate

    ids = predictor.encode(texts)
    worst = 0.0
    for i in range(0, len(ids), 16):
        with torch.no_grad():
            torch_out = [t.numpy() for t in model(**collate(ids[i : i + 16]))]
        onnx_out = predictor.run_ids(ids[i : i + 16])
        for task, ref in zip(model.tasks, torch_out, strict=True):
            worst = max(worst, max_abs_diff(ref, onnx_out[task]))
    if worst > ONNX_TOLERANCE:
        raise ExportError(f"FP32 ONNX differs from torch by {worst:.2e} > {ONNX_TOLERANCE}")
    return worst


def choose_int8(
    cfg: TrainConfig,
    fp32: Path,
    work: Path,
    stage: Callable[[str, Path], Path],
    val: dict[str, ValidationData],
    threads: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every INT8 scheme, judged on validation only: agreement with FP32 first, then F1."""
    candidates: list[dict[str, Any]] = []
    for scheme in cfg.export.quantization:
        name = scheme_name(scheme)
        q_path = quantize_int8(fp32, work / f"int8_{name}.onnx", **scheme)
        pred = OnnxPredictor(stage(f"int8_{name}", q_path), threads=threads)
        row: dict[str, Any] = {"scheme": name, **scheme, "size_mb": round(q_path.stat().st_size / 2**20, 1)}
        logits_by_set = {}
        for n, v in val.items():
            lg = pred.for_task(v.task).logits(v.texts)
            logits_by_set[n] = lg
            row[f"{n}_agreement"] = agreement(lg.argmax(1), v.fp32_logits.argmax(1))
            labels = cfg.tasks[v.task].labels
            row[f"{n}_macro_f1"] = classification_report(v.labels, lg.argmax(1).tolist(), labels)["macro_f1"]
        row["mean_agreement"] = float(np.mean([row[f"{n}_agreement"] for n in val]))
        row["mean_macro_f1"] = float(np.mean([row[f"{n}_macro_f1"] for n in val]))
        row["_path"] = q_path
        row["_logits"] = logits_by_set
        candidates.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), flush=True)
    best = max(candidates, key=lambda r: (round(r["mean_agreement"], 3), r["mean_macro_f1"]))
    return best, candidates


def calibrate(
    cfg: TrainConfig, logits: dict[str, np.ndarray], val: dict[str, ValidationData]
) -> tuple[dict[str, float], dict[str, Any]]:
    """A softmax temperature per head, on its validation logits. Each set weighs the same,
    however many texts it has: the served text is Reddit, which has the smaller sets."""
    temps: dict[str, float] = {}
    report: dict[str, Any] = {}
    for task in cfg.tasks:
        names = [n for n, v in val.items() if v.task == task]
        temps[task] = 1.0
        if cfg.export.calibrate_temperature:
            all_logits = np.concatenate([logits[n] for n in names])
            all_y = [y for n in names for y in val[n].labels]
            weights = np.concatenate([np.full(len(val[n].labels), 1.0 / len(val[n].labels)) for n in names])
            temps[task] = fit_temperature(all_logits, all_y, weights)
        for n in names:
            report[n] = {
                "task": task,
                "temperature": temps[task],
                "ece_before": expected_calibration_error(softmax(logits[n]), val[n].labels),
                "ece_after": expected_calibration_error(softmax(logits[n], temps[task]), val[n].labels),
            }
    return temps, report


def choose_counting(
    cfg: TrainConfig, probs: dict[str, np.ndarray], val: dict[str, ValidationData]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per head, the counting method whose worst validation breakdown TVD over the task's
    `breakdown_sets` (default: all its validation sets) is lowest.

    Worst case, not the mean: the served text (Reddit posts) matches neither validation
    domain exactly, so a method must hold on every one. PACC's matrix is fitted per set and
    cross-fitted (fitted on one half, measured on the other, both ways) so it is not judged
    on the data it was fitted on; it is then also measured with the matrix of the first
    set applied to the others, as it would be served (one matrix for every domain)."""
    chosen: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    rng = np.random.default_rng(cfg.hparams.seed)
    for task, tc in cfg.tasks.items():
        names = tc.breakdown_sets or list(tc.validation)
        # The matrix pacc would serve: fitted on the first set (the product's domain first).
        served_adjustment = fit_adjustment(probs[names[0]], val[names[0]].labels)
        scores: dict[str, list[float]] = {m: [] for m in METHODS}
        for i, n in enumerate(names):
            p, y = probs[n], np.asarray(val[n].labels)
            true = label_shares(y, p.shape[1])
            scores["cc"].append(tvd(estimate_shares(p, "cc"), true))
            scores["pcc"].append(tvd(estimate_shares(p, "pcc"), true))
            if i == 0:
                half = rng.permutation(len(y)) < len(y) // 2
                cross = [
                    tvd(
                        estimate_shares(p[~fit], "pacc", fit_adjustment(p[fit], y[fit])),
                        label_shares(y[~fit], p.shape[1]),
                    )
                    for fit in (half, ~half)
                ]
                scores["pacc"].append(float(np.mean(cross)))
            else:
                scores["pacc"].append(tvd(estimate_shares(p, "pacc", served_adjustment), true))
        worst = {m: float(np.max(v)) for m, v in scores.items()}
        method = min(worst, key=lambda m: worst[m])
        spec: dict[str, Any] = {
            "method": method,
            "validation_tvd": worst,
            "selected_by": "lowest worst-case TVD over the sets",
            "measured_on": names,
        }
        if method == "pacc":
            spec["adjustment"] = served_adjustment
        chosen[task] = spec
        report[task] = {
            "per_set": {n: {m: scores[m][i] for m in METHODS} for i, n in enumerate(names)},
            **spec,
        }
    return chosen, report


def shift_sets(
    cfg: TrainConfig, probs: dict[str, np.ndarray], val: dict[str, ValidationData]
) -> dict[str, list[LabelledSet]]:
    """Per task, its validation sets for the shift protocol, the product's domain first."""
    out: dict[str, list[LabelledSet]] = {}
    for task, tc in cfg.tasks.items():
        names = tc.breakdown_sets or list(tc.validation)
        order = [*names, *(n for n in tc.validation if n not in names)]
        # Rounded as served scores are (PredictionRow).
        out[task] = [LabelledSet(n, np.round(probs[n], 6), np.asarray(val[n].labels)) for n in order]
    return out


def build_artifact(
    cfg: TrainConfig,
    checkpoint: Path,
    out_dir: Path,
    run_dir: Path,
    data_root: Path | None = None,
    train_result: TrainResult | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Export `checkpoint` and write the INT8 artifact with its card to `out_dir`."""
    data_root = data_root or default_data_root()
    model, _, base_dir = load_checkpoint(checkpoint)
    if train_result is None:
        train_result = result_from_run(checkpoint, cfg, data_root)
    work = run_dir / "export"
    work.mkdir(parents=True, exist_ok=True)
    raw = export_onnx(model, work / "model_raw.onnx", cfg.export.opset)
    fp32 = optimize_fp32(raw, work / "model_fp32.onnx")
    tok = base_dir / "tokenizer.json"
    heads: dict[str, dict[str, Any]] = {t: {"labels": tc.labels} for t, tc in cfg.tasks.items()}

    # A scratch artifact for each precision so the predictor (the serving code) runs them.
    def stage(name: str, onnx_path: Path, final: dict[str, dict[str, Any]] = heads) -> Path:
        d = work / name
        write_artifact_files(d, onnx_path, tok, final, cfg.hparams.max_length, cfg.languages)
        return d

    probe_pred = OnnxPredictor(stage("fp32", fp32), threads=threads)
    val = _validation_data(cfg, data_root, probe_pred)
    torch_onnx_diff = check_onnx_matches_torch(model, probe_pred, next(iter(val.values())).texts[:64])

    best, candidates = choose_int8(cfg, fp32, work, stage, val, threads)
    temps, calibration = calibrate(cfg, best["_logits"], val)
    probs = {n: softmax(best["_logits"][n], temps[v.task]) for n, v in val.items()}
    counting, counting_report = choose_counting(cfg, probs, val)
    # Served: the method chosen under shifted label mixes (training/counting_choice.py).
    shift_specs, shift_reports = choose_counting_under_shift(shift_sets(cfg, probs, val))
    counting = {t: {"validation_tvd": counting[t]["validation_tvd"], **shift_specs[t]} for t in cfg.tasks}
    final = {t: {**heads[t], "temperature": temps[t], "breakdown": counting[t]} for t in cfg.tasks}

    if out_dir.exists():
        shutil.rmtree(out_dir)
    write_artifact_files(out_dir, best["_path"], tok, final, cfg.hparams.max_length, cfg.languages)
    fp32_final = stage("fp32_calibrated", fp32, final)

    results, figures = _final_report(cfg, data_root, fp32_final, out_dir, threads)
    card = model_card(cfg, data_root, train_result, results, figures)
    card["export"] = _export_section(cfg, fp32, out_dir, best, candidates, torch_onnx_diff)
    card["calibration"] = {"fitted_on": "validation sets, each set weighted equally", "sets": calibration}
    card["breakdown"] = counting_report
    card["counting_shift"] = shift_reports
    for t, rep in shift_reports.items():
        card["breakdown"][t]["method"] = rep["method"]
    card["reference_profile"] = _reference_profile(cfg, data_root, out_dir)
    write_model_card(out_dir, card)
    return card


def _export_section(
    cfg: TrainConfig,
    fp32: Path,
    out_dir: Path,
    best: dict[str, Any],
    candidates: list[dict[str, Any]],
    torch_onnx_diff: float,
) -> dict[str, Any]:
    """The card's `export` section: ONNX opset and sizes, and how the INT8 scheme was chosen."""
    return {
        "opset": cfg.export.opset,
        "torch_vs_onnx_max_abs_diff": torch_onnx_diff,
        "fp32_size_mb": round(fp32.stat().st_size / 2**20, 1),
        "quantization": {
            "method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
            "chosen": best["scheme"],
            "per_channel": best.get("per_channel", False),
            "preprocess": best.get("preprocess", False),
            "selected_by": "mean FP32 agreement on validation sets, then validation macro-F1",
            "candidates": [{k: v for k, v in c.items() if not k.startswith("_")} for c in candidates],
        },
        "int8_size_mb": round((out_dir / "model.onnx").stat().st_size / 2**20, 1),
    }


def _reference_profile(cfg: TrainConfig, data_root: Path, out_dir: Path) -> list[str]:
    """The drift watch's reference (training/profile.py): the graph's embedding output, each
    head's Reddit validation set (else its first), and the local corpus's posts when present."""
    from training.profile import ProfileData, write_profile

    validation: dict[str, Path] = {}
    sets = sorted(cfg.validation_sets().items(), key=lambda kv: not kv[0].startswith("reddit"))
    for _, (task, rel) in sets:
        validation.setdefault(task, data_path(rel, data_root))
    corpus = data_root / "reddit_sample" / "posts.jsonl"
    data = ProfileData(validation, corpus if corpus.is_file() else None)
    return [p.name for p in write_profile(out_dir, data)]


def _validation_data(cfg: TrainConfig, data_root: Path, fp32: OnnxPredictor) -> dict[str, ValidationData]:
    """Every validation set with the FP32 graph's logits (quantization and calibration read them)."""
    val: dict[str, ValidationData] = {}
    for n, (task, rel) in cfg.validation_sets().items():
        exs = read_jsonl(data_path(rel, data_root), cfg.tasks[task].labels)
        texts = [e.text for e in exs]
        val[n] = ValidationData(task, texts, [e.label for e in exs], fp32.for_task(task).logits(texts))
    return val


def _final_report(
    cfg: TrainConfig, data_root: Path, fp32_dir: Path, out_dir: Path, threads: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validation and test figures, FP32 beside INT8, and the INT8 confusion matrices (PNG
    files in `out_dir`). Nothing before this looks at a test split."""
    eval_sets = {
        f"{n}_validation": (t, data_path(p, data_root)) for n, (t, p) in cfg.validation_sets().items()
    }
    for n, (t, rel) in cfg.test_sets().items():
        if data_path(rel, data_root).is_file():
            eval_sets[f"{n}_test"] = (t, data_path(rel, data_root))
    results = compare_models(
        {"fp32": OnnxPredictor(fp32_dir, threads=threads), "int8": OnnxPredictor(out_dir, threads=threads)},
        eval_sets,
    )
    figures = {}
    for dname, res in results.items():
        labels = cfg.tasks[res["task"]].labels
        title = f"{cfg.version} INT8 {res['task']} on {dname}"
        png = plot_confusion(
            res["int8"]["confusion_matrix"], labels, title, out_dir / f"confusion_{dname}.png"
        )
        figures[dname] = png.name
    return results, figures


def result_from_run(checkpoint: Path, cfg: TrainConfig, data_root: Path) -> TrainResult | None:
    """Rebuild what `train` reported from its run directory (for a separate `export`)."""
    history_file = checkpoint.parent / "history.json"
    if not history_file.is_file():
        return None
    import torch

    history = json.loads(history_file.read_text())
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    counts = {}
    for s in cfg.train:
        counts[s.name] = {
            task: label_counts(
                read_jsonl(data_path(p, data_root), cfg.tasks[task].labels, s.name, s.limit),
                cfg.tasks[task].labels,
            )
            for task, p in s.paths.items()
            if data_path(p, data_root).is_file()
        }
    seconds = float(history[-1].get("elapsed_s", 0.0)) if history else 0.0
    averaged = list(blob.get("averaged_epochs", []))
    return TrainResult(checkpoint, int(blob.get("epoch", -1)), history, counts, seconds, averaged)


def run_pipeline(
    cfg: TrainConfig, out_dir: Path, run_dir: Path, data_root: Path | None = None
) -> dict[str, Any]:
    result = train(cfg, run_dir, data_root)
    return build_artifact(cfg, result.checkpoint, out_dir, run_dir, data_root, result)
