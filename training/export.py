"""ONNX export, INT8 dynamic quantization and the self-describing model artifact.

`torch.onnx.export` (TorchScript exporter, opset 17) with dynamic batch and sequence
axes, an ORT-optimised FP32 graph, then every INT8 scheme in the config (per-tensor or
per-channel, with or without ORT's quantization pre-processing). The scheme that agrees
best with FP32 on the validation sets (all domains) is kept, and a softmax temperature
is fitted on validation logits so confidences are calibrated.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serve_app.model.preprocess import PREPROCESS_VERSION
from training.modeling import TextClassifier

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]


class ExportError(RuntimeError):
    """Export or quantization produced a model that does not match its source."""


def output_name(task: str) -> str:
    return f"logits_{task}"


def export_onnx(model: TextClassifier, path: Path, opset: int = 17) -> Path:
    model.eval()
    vocab = int(getattr(getattr(model.encoder, "config", None), "vocab_size", 30522))
    dummy = {
        # Any in-vocabulary ids trace the same graph (the modulo keeps small vocabularies valid).
        "input_ids": torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]]) % vocab,
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "token_type_ids": torch.zeros((2, 4), dtype=torch.long),
    }
    outputs = [output_name(t) for t in model.tasks]
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes.update({name: {0: "batch"} for name in outputs})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
        str(path),
        input_names=INPUT_NAMES,
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    return path


def optimize_fp32(src: Path, dst: Path) -> Path:
    """Let ONNX Runtime fold and fuse the FP32 graph once, offline, and save it."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


def ffn_output_matmuls(model_path: Path) -> list[str]:
    """The feed-forward output projections of a BERT graph exported by torch.onnx (one per layer)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and n.name.endswith("/output/dense/MatMul") and "/attention/" not in n.name
    ]


def quantize_int8(
    src: Path, dst: Path, per_channel: bool, preprocess: bool, fp32_ffn_output: bool = False
) -> Path:
    """Dynamic INT8 (QInt8 weights). `fp32_ffn_output` keeps each layer's feed-forward output
    projection in FP32: its input (after GELU) has outlier activations that a per-tensor
    activation scale quantizes coarsely (Bondarenko et al., 2021)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # quant_pre_process drops temp files in the working directory: run it in a temp dir,
    # with absolute paths since the working directory changes.
    src, dst = src.resolve(), dst.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        source = src
        if preprocess:
            source = Path(tmp) / "pre.onnx"
            cwd = os.getcwd()
            try:
                os.chdir(tmp)
                quant_pre_process(str(src), str(source), skip_symbolic_shape=True)
            finally:
                os.chdir(cwd)
        exclude = ffn_output_matmuls(source) if fp32_ffn_output else []
        if fp32_ffn_output and not exclude:
            raise ExportError(f"{src}: no feed-forward output MatMul to keep in FP32 (not a BERT graph?)")
        quantize_dynamic(
            str(source),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=exclude,
        )
    return dst


def scheme_name(scheme: dict[str, bool]) -> str:
    return (
        ("per-channel" if scheme.get("per_channel") else "per-tensor")
        + ("+preprocess" if scheme.get("preprocess") else "")
        + ("+ffn-out-fp32" if scheme.get("fp32_ffn_output") else "")
    )


def write_artifact_files(
    out_dir: Path,
    onnx_path: Path,
    tokenizer_path: Path,
    heads: dict[str, dict[str, Any]],
    max_length: int,
    languages: Sequence[str] = ("en",),
) -> None:
    """The artifact: model.onnx, tokenizer.json and labels.json. `heads` maps each task to
    its `labels` and, once fitted, `temperature` and `breakdown` (counting method)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, out_dir / "model.onnx")
    # Ship the tokenizer without the base model's built-in padding and truncation:
    # the predictor sets its own, so nothing is silently cut at a fixed length.
    tok = json.loads(tokenizer_path.read_text())
    tok["padding"] = None
    tok["truncation"] = None
    (out_dir / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    meta_heads = {
        task: {
            "labels": list(h["labels"]),
            "output": output_name(task),
            "id2label": {str(i): lab for i, lab in enumerate(h["labels"])},
            "temperature": float(h.get("temperature", 1.0)),
            "breakdown": h.get("breakdown", {"method": "cc"}),
        }
        for task, h in heads.items()
    }
    (out_dir / "labels.json").write_text(
        json.dumps(
            {
                "tasks": list(heads),
                "heads": meta_heads,
                "max_length": max_length,
                "preprocess_version": PREPROCESS_VERSION,
                "inputs": INPUT_NAMES,
                # The service scores only posts detected in these languages (ISO 639-1).
                "languages": list(languages),
            },
            indent=2,
        )
    )


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) if a.size else 0.0


def library_versions() -> dict[str, Any]:
    import onnx
    import onnxruntime
    import tokenizers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
    }
