"""The whole model build: train, export, quantize, select, calibrate, evaluate, document."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.predictor import OnnxPredictor, softmax
from training.card import write_model_card
from training.config import TrainConfig
from training.data import default_data_root, file_sha256, label_counts, read_jsonl
from training.evaluate import compare_models, plot_confusion
from training.export import (
    ExportError,
    export_onnx,
    library_versions,
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
    hp = cfg.hparams

    # A scratch artifact for each precision so the predictor (the serving code) runs them.
    def stage(name: str, onnx_path: Path, temperature: float = 1.0) -> Path:
        d = work / name
        write_artifact_files(
            d, onnx_path, tok, cfg.labels, hp.max_length, temperature, cfg.task, cfg.languages
        )
        return d

    fp32_dir = stage("fp32", fp32)
    val_sets = {n: data_path(p, data_root) for n, p in cfg.validation.items()}

    # torch vs ONNX on real validation text.
    import torch

    from training.train import collate

    probe_pred = OnnxPredictor(fp32_dir, threads=threads)
    probe = [e.text for e in read_jsonl(next(iter(val_sets.values())), cfg.labels, limit=64)]
    ids = probe_pred.encode(probe)
    with torch.no_grad():
        torch_logits = np.concatenate(
            [model(**collate(ids[i : i + 16])).numpy() for i in range(0, len(ids), 16)]
        )
    onnx_logits = np.concatenate([probe_pred._run(ids[i : i + 16]) for i in range(0, len(ids), 16)])
    torch_onnx_diff = max_abs_diff(torch_logits, onnx_logits)
    if torch_onnx_diff > ONNX_TOLERANCE:
        raise ExportError(f"FP32 ONNX differs from torch by {torch_onnx_diff:.2e} > {ONNX_TOLERANCE}")

    # Every INT8 scheme, judged on validation only: agreement with FP32 first, then F1.
    fp32_val: dict[str, np.ndarray] = {}
    val_labels: dict[str, list[int]] = {}
    val_texts: dict[str, list[str]] = {}
    for n, p in val_sets.items():
        exs = read_jsonl(p, cfg.labels)
        val_labels[n] = [e.label for e in exs]
        val_texts[n] = [e.text for e in exs]
        fp32_val[n] = probe_pred.logits(val_texts[n])
    candidates: list[dict[str, Any]] = []
    for scheme in cfg.export.quantization:
        name = scheme_name(scheme)
        q_path = quantize_int8(fp32, work / f"int8_{name}.onnx", **scheme)
        pred = OnnxPredictor(stage(f"int8_{name}", q_path), threads=threads)
        row: dict[str, Any] = {"scheme": name, **scheme, "size_mb": round(q_path.stat().st_size / 2**20, 1)}
        logits_by_set = {}
        for n in val_sets:
            lg = pred.logits(val_texts[n])
            logits_by_set[n] = lg
            row[f"{n}_agreement"] = agreement(lg.argmax(1), fp32_val[n].argmax(1))
            row[f"{n}_macro_f1"] = classification_report(val_labels[n], lg.argmax(1).tolist(), cfg.labels)[
                "macro_f1"
            ]
        row["mean_agreement"] = float(np.mean([row[f"{n}_agreement"] for n in val_sets]))
        row["mean_macro_f1"] = float(np.mean([row[f"{n}_macro_f1"] for n in val_sets]))
        row["_path"] = q_path
        row["_logits"] = logits_by_set
        candidates.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), flush=True)
    best = max(candidates, key=lambda r: (round(r["mean_agreement"], 3), r["mean_macro_f1"]))

    # Temperature on the chosen INT8 model's validation logits (all domains pooled).
    temperature = 1.0
    calibration: dict[str, Any] = {}
    if cfg.export.calibrate_temperature:
        # Each domain weighs the same, however many texts its validation set has: the
        # served text is Reddit, which has the smaller set.
        all_logits = np.concatenate([best["_logits"][n] for n in val_sets])
        all_y = [y for n in val_sets for y in val_labels[n]]
        weights = np.concatenate([np.full(len(val_labels[n]), 1.0 / len(val_labels[n])) for n in val_sets])
        temperature = fit_temperature(all_logits, all_y, weights)
        for n in val_sets:
            calibration[n] = {
                "ece_before": expected_calibration_error(softmax(best["_logits"][n]), val_labels[n]),
                "ece_after": expected_calibration_error(
                    softmax(best["_logits"][n], temperature), val_labels[n]
                ),
            }

    if out_dir.exists():
        shutil.rmtree(out_dir)
    write_artifact_files(
        out_dir, best["_path"], tok, cfg.labels, hp.max_length, temperature, cfg.task, cfg.languages
    )
    fp32_final = stage("fp32_calibrated", fp32, temperature)

    # Final report: validation and test, FP32 beside INT8. Nothing above looked at test.
    eval_sets = {f"{n}_validation": p for n, p in val_sets.items()}
    for n, rel in cfg.test.items():
        if data_path(rel, data_root).is_file():
            eval_sets[f"{n}_test"] = data_path(rel, data_root)
    results = compare_models(
        {"fp32": OnnxPredictor(fp32_final, threads=threads), "int8": OnnxPredictor(out_dir, threads=threads)},
        eval_sets,
    )
    figures = {}
    for dname, res in results.items():
        png = plot_confusion(
            res["int8"]["confusion_matrix"],
            cfg.labels,
            f"{cfg.version} INT8 on {dname}",
            out_dir / f"confusion_{dname}.png",
        )
        figures[dname] = png.name

    card: dict[str, Any] = {
        "name": cfg.name,
        "task": cfg.task,
        "version": cfg.version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model": cfg.base_model,
        "labels": cfg.labels,
        "preprocessing": "serve_app.preprocess.normalize_text",
        "data": {
            "train": [
                {
                    "name": s.name,
                    "path": s.path,
                    "repeat": s.repeat,
                    "sha256": file_sha256(data_path(s.path, data_root))
                    if data_path(s.path, data_root).is_file()
                    else None,
                    "label_counts": (train_result.train_counts.get(s.name) if train_result else None),
                }
                for s in cfg.train
            ],
            "validation": {
                n: {"path": str(cfg.validation[n]), "sha256": file_sha256(p)} for n, p in val_sets.items()
            },
        },
        "hyperparameters": cfg.to_dict()["hparams"],
        "training": {
            "best_epoch": train_result.best_epoch if train_result else None,
            "seconds": round(train_result.seconds, 1) if train_result else None,
            "history": train_result.history if train_result else None,
        },
        "export": {
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
        },
        "calibration": {
            "temperature": temperature,
            "fitted_on": "validation sets, each domain weighted equally",
            **calibration,
        },
        "metrics": results,
        "figures": figures,
        "libraries": library_versions(),
        "notes": cfg.notes,
    }
    write_model_card(out_dir, card)
    return card


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
        path = data_path(s.path, data_root)
        if path.is_file():
            counts[s.name] = label_counts(read_jsonl(path, cfg.labels, s.name, s.limit), cfg.labels)
    seconds = float(history[-1].get("elapsed_s", 0.0)) if history else 0.0
    return TrainResult(checkpoint, int(blob.get("epoch", -1)), history, counts, seconds)


def run_pipeline(
    cfg: TrainConfig, out_dir: Path, run_dir: Path, data_root: Path | None = None
) -> dict[str, Any]:
    result = train(cfg, run_dir, data_root)
    return build_artifact(cfg, result.checkpoint, out_dir, run_dir, data_root, result)
