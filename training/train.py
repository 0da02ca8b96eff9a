"""Fine-tuning: AdamW, linear warm-up/decay, class-weighted loss, length-grouped batches.

The checkpoint with the best mean validation macro-F1 (over every validation set in the
config) is kept; test splits are never looked at here.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from serve_app.predictor import load_tokenizer
from serve_app.preprocess import normalize_text
from training.config import TrainConfig
from training.data import Example, default_data_root, label_counts, load_hf_dataset, read_jsonl
from training.metrics import classification_report
from training.modeling import TextClassifier, build_model, resolve_base_model


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    history: list[dict[str, Any]]
    train_counts: dict[str, dict[str, int]]
    seconds: float


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_path(path: str, data_root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_root / p


def load_training_sets(
    cfg: TrainConfig, data_root: Path
) -> tuple[dict[str, list[Example]], dict[str, list[Example]]]:
    train: dict[str, list[Example]] = {}
    for src in cfg.train:
        path = data_path(src.path, data_root)
        if not path.exists() and cfg.hf_dataset:
            # Online users without a local copy: the documented hub loader.
            train[src.name] = load_hf_dataset(cfg.hf_dataset, "train", cfg.labels, src.limit)
        else:
            train[src.name] = read_jsonl(path, cfg.labels, src.name, src.limit)
    val = {name: read_jsonl(data_path(p, data_root), cfg.labels, name) for name, p in cfg.validation.items()}
    return train, val


T = TypeVar("T")


def mix_epoch(sources: dict[str, list[T]], repeats: dict[str, float], rng: random.Random) -> list[T]:
    """One epoch's examples: each source repeated (or subsampled) by its ratio."""
    out: list[T] = []
    for name, exs in sources.items():
        r = repeats.get(name, 1.0)
        whole, frac = int(r), r - int(r)
        out.extend(exs * whole)
        if frac > 0:
            out.extend(rng.sample(exs, round(frac * len(exs))))
    return out


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, group: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length within groups of `group` batches, then shuffle batches.

    Batches hold texts of similar length, so padding to the longest wastes little,
    while the order of batches stays random.
    """
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(input_ids),
    }


def class_weights(labels: Sequence[int], n: int, scheme: str) -> torch.Tensor | None:
    if scheme == "none":
        return None
    counts = np.bincount(np.asarray(labels), minlength=n).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    w = 1.0 / counts if scheme == "inverse" else 1.0 / np.sqrt(counts)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per example stays 1
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict_logits(model: TextClassifier, ids: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), model.head.out_features), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        sel = order[start : start + batch_size]
        out[sel] = model(**collate([ids[i] for i in sel])).numpy()
    return out


def train(cfg: TrainConfig, run_dir: Path, data_root: Path | None = None) -> TrainResult:
    """Fine-tune per `cfg`, writing the best checkpoint and a history to `run_dir`."""
    hp = cfg.hparams
    data_root = data_root or default_data_root()
    set_seed(hp.seed)
    torch.set_num_threads(hp.threads or max(1, os.cpu_count() or 1))
    run_dir.mkdir(parents=True, exist_ok=True)
    base_dir = resolve_base_model(cfg.base_model)
    tokenizer = load_tokenizer(base_dir / "tokenizer.json", hp.max_length)

    train_sets, val_sets = load_training_sets(cfg, data_root)

    def encode(exs: Sequence[Example]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch([normalize_text(x.text) for x in exs])]

    enc_train = {name: list(zip(encode(exs), exs, strict=True)) for name, exs in train_sets.items()}
    enc_val = {name: (encode(exs), [e.label for e in exs]) for name, exs in val_sets.items()}
    repeats = {s.name: s.repeat for s in cfg.train}
    rng = random.Random(hp.seed)

    # Class weights follow the label mix the model actually sees in an epoch.
    mixed_labels: list[int] = []
    for name, pairs in enc_train.items():
        mixed_labels.extend([ex.label for _, ex in pairs] * max(1, round(repeats.get(name, 1.0))))
    weights = class_weights(mixed_labels, len(cfg.labels), hp.class_weighting)

    model = build_model(base_dir, len(cfg.labels), hp.pooling, hp.dropout)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": hp.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(params, lr=hp.lr)
    per_epoch = sum(math.ceil(len(p) * repeats.get(n, 1.0)) for n, p in enc_train.items())
    steps_per_epoch = math.ceil(per_epoch / hp.batch_size)
    total_steps = steps_per_epoch * hp.epochs
    if hp.max_steps is not None:
        total_steps = min(total_steps, hp.max_steps)
    warmup = int(total_steps * hp.warmup_ratio)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=hp.label_smoothing)

    history: list[dict[str, Any]] = []
    best_score, best_epoch = -1.0, -1
    ckpt = run_dir / "best.pt"
    step = 0
    started = time.monotonic()
    for epoch in range(1, hp.epochs + 1):
        if step >= total_steps:
            break
        pairs = mix_epoch(enc_train, repeats, rng)
        batches = length_grouped_batches([len(ids) for ids, _ in pairs], hp.batch_size, rng)
        model.train()
        running = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}/{hp.epochs}", unit="batch", dynamic_ncols=True)
        for bi, batch in enumerate(bar, 1):
            feats = collate([pairs[i][0] for i in batch])
            target = torch.tensor([pairs[i][1].label for i in batch], dtype=torch.long)
            loss = loss_fn(model(**feats), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.item()
            step += 1
            if bi % 20 == 0:
                bar.set_postfix(loss=f"{running / bi:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step >= total_steps:
                break
        bar.close()
        record: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": running / max(1, bi)}
        scores = []
        for name, (ids, labels) in enc_val.items():
            logits = predict_logits(model, ids, hp.eval_batch_size)
            rep = classification_report(labels, logits.argmax(1).tolist(), cfg.labels)
            record[name] = {
                "accuracy": rep["accuracy"],
                "macro_f1": rep["macro_f1"],
                "macro_recall": rep["macro_recall"],
                "per_class_f1": {k: v["f1"] for k, v in rep["per_class"].items()},
            }
            scores.append(rep[hp.selection_metric])
        record["selection_score"] = float(np.mean(scores))
        record["elapsed_s"] = round(time.monotonic() - started, 1)
        history.append(record)
        print(json.dumps({k: v for k, v in record.items()}, default=float), flush=True)
        if record["selection_score"] > best_score:
            best_score, best_epoch = record["selection_score"], epoch
            torch.save(
                {
                    "state_dict": model.state_dict(),
                    "config": cfg.to_dict(),
                    "base_dir": str(base_dir),
                    "epoch": epoch,
                },
                ckpt,
            )
    (run_dir / "history.json").write_text(json.dumps(history, indent=2))
    counts = {n: label_counts(exs, cfg.labels) for n, exs in train_sets.items()}
    return TrainResult(ckpt, best_epoch, history, counts, time.monotonic() - started)


def load_checkpoint(path: Path) -> tuple[TextClassifier, dict[str, Any], Path]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = blob["config"]
    hp = cfg["hparams"]
    base_dir = Path(blob["base_dir"])
    if not base_dir.exists():
        base_dir = resolve_base_model(cfg["base_model"])
    model = build_model(base_dir, len(cfg["labels"]), hp["pooling"], hp["dropout"], pretrained=False)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, cfg, base_dir
