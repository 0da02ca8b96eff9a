"""Model cards: `model_card.json` (machine-readable) and `MODEL_CARD.md` (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def metrics_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| data | precision | n | accuracy % | macro-F1 | weighted F1 | macro recall | ECE "
        "| FP32/INT8 agreement % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dname, res in metrics.items():
        agree = res.get("agreement_fp32_int8")
        for prec in ("fp32", "int8"):
            r = res[prec]
            lines.append(
                f"| {dname} | {prec.upper()} | {r['n']} | {_pct(r['accuracy'])} | {r['macro_f1']:.4f} "
                f"| {r['weighted_f1']:.4f} | {r['macro_recall']:.4f} | {r.get('ece', 0):.3f} "
                f"| {_pct(agree) if prec == 'int8' and agree is not None else ''} |"
            )
    return lines


def per_class_table(metrics: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    head = "| data | precision | " + " | ".join(labels) + " |"
    lines = [head, "|---|---|" + "---:|" * len(labels)]
    for dname, res in metrics.items():
        for prec in ("fp32", "int8"):
            pc = res[prec]["per_class"]
            lines.append(
                f"| {dname} | {prec.upper()} | " + " | ".join(f"{pc[lab]['f1']:.3f}" for lab in labels) + " |"
            )
    return lines


def write_model_card(out_dir: Path, card: dict[str, Any]) -> None:
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    q = card["export"]["quantization"]
    lines = [
        f"# {card['version']}",
        "",
        f"Task: **{card['task']}** ({', '.join(card['labels'])}). Base model: `{card['base_model']}`, "
        f"fine-tuned, exported to ONNX (opset {card['export']['opset']}) and quantized to INT8 "
        f"({q['chosen']}, {card['export']['int8_size_mb']} MB; FP32 {card['export']['fp32_size_mb']} MB). "
        f"Created {card['created']}.",
        "",
        "## Metrics (F1 per class below; test splits were used for this report only)",
        "",
        *metrics_table(card["metrics"]),
        "",
        "Per-class F1:",
        "",
        *per_class_table(card["metrics"], card["labels"]),
        "",
        "## Training",
        "",
        "Data (sampling ratio per epoch): "
        + ", ".join(f"{s['name']} `{s['path']}` x{s['repeat']}" for s in card["data"]["train"]),
        "",
        "Hyperparameters: "
        + ", ".join(f"{k}={v}" for k, v in card["hyperparameters"].items() if v is not None),
        "",
    ]
    hist = card["training"].get("history") or []
    if hist:
        val_names = [k for k in hist[0] if isinstance(hist[0][k], dict)]
        lines += [
            "Validation by epoch (checkpoint kept: epoch "
            f"{card['training']['best_epoch']}, by mean validation macro-F1):",
            "",
            "| epoch | train loss | " + " | ".join(f"{n} acc / macro-F1" for n in val_names) + " |",
            "|---:|---:|" + "---:|" * len(val_names),
        ]
        for h in hist:
            lines.append(
                f"| {h['epoch']} | {h['train_loss']:.4f} | "
                + " | ".join(f"{_pct(h[n]['accuracy'])} / {h[n]['macro_f1']:.4f}" for n in val_names)
                + " |"
            )
        lines.append("")
    lines += [
        "## INT8 scheme (chosen on validation)",
        "",
        "| scheme | size MB | "
        + " | ".join(k for k in q["candidates"][0] if k.endswith(("_agreement", "_macro_f1")))
        + " |",
        "|---|---:|"
        + "---:|" * len([k for k in q["candidates"][0] if k.endswith(("_agreement", "_macro_f1"))]),
    ]
    for c in q["candidates"]:
        vals = [f"{c[k]:.4f}" for k in c if k.endswith(("_agreement", "_macro_f1"))]
        lines.append(f"| {c['scheme']} | {c['size_mb']} | " + " | ".join(vals) + " |")
    cal = card["calibration"]
    lines += [
        "",
        f"Calibration: softmax temperature {cal['temperature']:.3f}, fitted on validation logits; "
        + "; ".join(
            f"{n} ECE {v['ece_before']:.3f} -> {v['ece_after']:.3f}"
            for n, v in cal.items()
            if isinstance(v, dict)
        ),
        "",
        f"torch vs ONNX FP32 max |logit diff|: {card['export']['torch_vs_onnx_max_abs_diff']:.1e}.",
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in card["libraries"].items()),
        "",
    ]
    if card.get("notes"):
        lines += ["## What was tried", "", *[f"- {n}" for n in card["notes"]], ""]
    if card.get("figures"):
        lines += ["## Confusion matrices (INT8)", ""]
        lines += [f"![{d}]({f})" for d, f in card["figures"].items()]
        lines.append("")
    (out_dir / "MODEL_CARD.md").write_text("\n".join(lines))
