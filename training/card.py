"""Model cards: `model_card.json` (machine-readable) and `MODEL_CARD.md` (for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.card_counting import counting_shift_section


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def metrics_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| data | task | precision | n | accuracy % | macro-F1 | macro recall | breakdown TVD (served) "
        "| TVD argmax | neutral given another label % | ECE | FP32/INT8 agreement % |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dname, res in metrics.items():
        agree = res.get("agreement_fp32_int8")
        for prec in ("fp32", "int8"):
            r = res[prec]
            served = r["breakdown"]["tvd"]
            ngo = r.get("neutral_given_other")
            lines.append(
                f"| {dname} | {res['task']} | {prec.upper()} | {r['n']} | {_pct(r['accuracy'])} "
                f"| {r['macro_f1']:.4f} | {r['macro_recall']:.4f} "
                f"| {'' if served is None else f'{served:.4f}'} | {r['breakdown_tvd']:.4f} "
                f"| {'' if ngo is None else _pct(ngo)} | {r.get('ece', 0):.3f} "
                f"| {_pct(agree) if prec == 'int8' and agree is not None else ''} |"
            )
    return lines


def per_class_table(metrics: dict[str, dict[str, Any]], task: str, labels: list[str]) -> list[str]:
    head = "| data | precision | " + " | ".join(labels) + " |"
    lines = [head, "|---|---|" + "---:|" * len(labels)]
    for dname, res in metrics.items():
        if res["task"] != task:
            continue
        for prec in ("fp32", "int8"):
            pc = res[prec]["per_class"]
            lines.append(
                f"| {dname} | {prec.upper()} | " + " | ".join(f"{pc[lab]['f1']:.3f}" for lab in labels) + " |"
            )
    return lines


def _span(epochs: list[int]) -> str:
    return f"{epochs[0]}-{epochs[-1]}"


def _kept(training: dict[str, Any]) -> str:
    averaged = training.get("averaged_epochs")
    return f"the mean weights of epochs {_span(averaged)}" if averaged else f"epoch {training['best_epoch']}"


def _row_name(h: dict[str, Any]) -> str:
    averaged = h.get("averaged_epochs")
    return f"mean of {_span(averaged)}" if averaged else str(h["epoch"])


def history_table(card: dict[str, Any]) -> list[str]:
    hist = card["training"].get("history") or []
    if not hist:
        return []
    val_names = [k for k in hist[0] if isinstance(hist[0][k], dict)]
    lines = [
        f"Validation by epoch (checkpoint kept: {_kept(card['training'])}, "
        "by the mean of each set's selection metric):",
        "",
        "| epoch | train loss | " + " | ".join(f"{n} acc / macro-F1 / TVD" for n in val_names) + " |",
        "|---:|---:|" + "---:|" * len(val_names),
    ]
    for h in hist:
        loss = f"{h['train_loss']:.4f}" if h.get("train_loss") is not None else "—"
        lines.append(
            f"| {_row_name(h)} | {loss} | "
            + " | ".join(
                f"{_pct(h[n]['accuracy'])} / {h[n]['macro_f1']:.4f} / {h[n].get('tvd', 0):.3f}"
                for n in val_names
            )
            + " |"
        )
    return [*lines, ""]


def breakdown_table(card: dict[str, Any]) -> list[str]:
    lines = [
        "## Counting method (breakdown), chosen on validation",
        "",
        "TVD between the predicted and the true label shares; `pacc` cross-fitted on halves.",
        "",
        "| task | set | cc (argmax) | pcc (mean probability) | pacc (adjusted) | served |",
        "|---|---|---:|---:|---:|---|",
    ]
    for task, rep in card["breakdown"].items():
        for n, tvds in rep["per_set"].items():
            cells = " | ".join(f"{tvds[m]:.4f}" for m in ("cc", "pcc", "pacc"))
            lines.append(f"| {task} | {n} | {cells} | {rep['method']} |")
    return [*lines, ""]


def write_model_card(out_dir: Path, card: dict[str, Any]) -> None:
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    q = card["export"]["quantization"]
    tasks = card["tasks"]
    lines = [
        f"# {card['version']}",
        "",
        "One encoder, one head per task: "
        + "; ".join(f"**{t}** ({', '.join(spec['labels'])})" for t, spec in tasks.items())
        + f". Base model: `{card['base_model']}`, fine-tuned, exported to ONNX "
        f"(opset {card['export']['opset']}) and quantized to INT8 "
        f"({q['chosen']}, {card['export']['int8_size_mb']} MB; FP32 {card['export']['fp32_size_mb']} MB). "
        f"Created {card['created']}.",
        "",
        "## Metrics (test splits were used for this report only)",
        "",
        *metrics_table(card["metrics"]),
        "",
    ]
    for t, spec in tasks.items():
        lines += [f"Per-class F1, {t}:", "", *per_class_table(card["metrics"], t, spec["labels"]), ""]
    lines += breakdown_table(card)
    lines += counting_shift_section(card)
    lines += _training_section(card)
    lines += _export_section(card)
    if card.get("notes"):
        lines += ["## What was tried", "", *[f"- {n}" for n in card["notes"]], ""]
    if card.get("figures"):
        lines += ["## Confusion matrices (INT8)", ""]
        lines += [f"![{d}]({f})" for d, f in card["figures"].items()]
        lines.append("")
    (out_dir / "MODEL_CARD.md").write_text("\n".join(lines))


def _training_section(card: dict[str, Any]) -> list[str]:
    return [
        "## Training",
        "",
        "Data (sampling ratio per epoch): "
        + ", ".join(
            f"{s['name']} ({', '.join(f'{t}: `{p}`' for t, p in s['paths'].items())}) x{s['repeat']}"
            for s in card["data"]["train"]
        ),
        "",
        "Hyperparameters: "
        + ", ".join(f"{k}={v}" for k, v in card["hyperparameters"].items() if v is not None),
        "",
        "Per task: "
        + "; ".join(
            f"{t}: " + ", ".join(f"{k}={v}" for k, v in spec.items() if v)
            for t, spec in card["task_settings"].items()
        ),
        "",
        *history_table(card),
    ]


def _export_section(card: dict[str, Any]) -> list[str]:
    q = card["export"]["quantization"]
    cand_keys = [k for k in q["candidates"][0] if k.endswith(("_agreement", "_macro_f1"))]
    lines = [
        "## INT8 scheme (chosen on validation)",
        "",
        "| scheme | size MB | " + " | ".join(cand_keys) + " |",
        "|---|---:|" + "---:|" * len(cand_keys),
    ]
    for c in q["candidates"]:
        lines.append(
            f"| {c['scheme']} | {c['size_mb']} | " + " | ".join(f"{c[k]:.4f}" for k in cand_keys) + " |"
        )
    cal = card["calibration"]["sets"]
    lines += [
        "",
        "Calibration: a softmax temperature per head, fitted on validation logits; "
        + "; ".join(
            f"{n} T={v['temperature']:.3f}, ECE {v['ece_before']:.3f} -> {v['ece_after']:.3f}"
            for n, v in cal.items()
        ),
        "",
        f"torch vs ONNX FP32 max |logit diff|: {card['export']['torch_vs_onnx_max_abs_diff']:.1e}.",
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in card["libraries"].items()),
        "",
    ]
    return lines
