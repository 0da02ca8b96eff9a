"""Fine-tuning: AdamW, linear warm-up/decay, class-weighted loss, length-grouped batches.

One encoder with a head per task; a batch mixes sources, and each task's loss counts only
the examples labelled for it. The checkpoint with the best mean validation score (each
set's task metric, over every validation set in the config) is kept; test splits are never
looked at here.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from serve_app.counting.breakdown import breakdown_tvd
from serve_app.model.predictor import load_tokenizer
from serve_app.model.preprocess import normalize_text
from training.batches import collate, length_grouped_batches, mix_epoch
from training.config import SourceConfig, TrainConfig
from training.data import (
    NO_LABEL,
    Example,
    TrainExample,
    default_data_root,
    join_tasks,
    label_counts,
    load_hf_dataset,
    read_jsonl,
)
from training.metrics import classification_report
from training.modeling import TextClassifier, build_model, resolve_base_model


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    history: list[dict[str, Any]]
    train_counts: dict[str, dict[str, dict[str, int]]]  # source -> task -> label -> count
    seconds: float
    averaged_epochs: list[int] = field(default_factory=list)  # the kept weights' mean, if one


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_path(path: str, data_root: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_root / p


def read_source(cfg: TrainConfig, src: SourceConfig, data_root: Path) -> dict[str, list[Example]]:
    """A source's labelled rows per task (the hub's copy only where the file is absent)."""
    per_task: dict[str, list[Example]] = {}
    for task, rel in src.paths.items():
        path = data_path(rel, data_root)
        labels = cfg.tasks[task].labels
        if not path.exists() and task in src.hf_datasets:
            # Online users without a local copy: the documented hub loader.
            per_task[task] = load_hf_dataset(src.hf_datasets[task], "train", labels, src.limit)
        else:
            per_task[task] = read_jsonl(path, labels, src.name, src.limit)
    return per_task


def load_validation_sets(cfg: TrainConfig, data_root: Path) -> dict[str, tuple[str, list[Example]]]:
    """Validation set name -> (task, examples)."""
    return {
        name: (task, read_jsonl(data_path(p, data_root), cfg.tasks[task].labels, name))
        for name, (task, p) in cfg.validation_sets().items()
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
def predict_logits(
    model: TextClassifier, ids: Sequence[Sequence[int]], batch_size: int
) -> dict[str, np.ndarray]:
    """Every head's logits for `ids`, in input order."""
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = {t: np.zeros((len(ids), model.n_labels(t)), dtype=np.float32) for t in model.tasks}
    for start in range(0, len(order), batch_size):
        sel = order[start : start + batch_size]
        for task, logits in zip(model.tasks, model(**collate([ids[i] for i in sel])), strict=True):
            out[task][sel] = logits.numpy()
    return out


EpochHook = Callable[[dict[str, Any]], None]


def _optimizer(model: TextClassifier, weight_decay: float, lr: float) -> torch.optim.Optimizer:
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    return torch.optim.AdamW(params, lr=lr)


def _loss_fns(
    cfg: TrainConfig, examples: Sequence[TrainExample], repeats: dict[str, float]
) -> list[nn.CrossEntropyLoss]:
    """A loss per task; class weights follow the label mix the model sees in an epoch."""
    fns = []
    for col, (_, tc) in enumerate(cfg.tasks.items()):
        seen = [
            ex.targets[col]
            for ex in examples
            for _ in range(max(1, round(repeats.get(ex.source, 1.0))))
            if ex.targets[col] != NO_LABEL
        ]
        weights = class_weights(seen, len(tc.labels), tc.class_weighting) if seen else None
        fns.append(
            nn.CrossEntropyLoss(
                weight=weights, label_smoothing=cfg.hparams.label_smoothing, ignore_index=NO_LABEL
            )
        )
    return fns


def validate(
    cfg: TrainConfig, model: TextClassifier, enc_val: dict[str, tuple[str, list[list[int]], list[int]]]
) -> tuple[dict[str, Any], float]:
    """Per validation set: accuracy, macro-F1/recall, per-class F1, breakdown TVD; and the
    selection score (mean of each set's task metric)."""
    record: dict[str, Any] = {}
    scores = []
    for name, (task, ids, labels) in enc_val.items():
        tc = cfg.tasks[task]
        logits = predict_logits(model, ids, cfg.hparams.eval_batch_size)[task]
        pred = logits.argmax(1).tolist()
        rep = classification_report(labels, pred, tc.labels)
        record[name] = {
            "task": task,
            "accuracy": rep["accuracy"],
            "macro_f1": rep["macro_f1"],
            "macro_recall": rep["macro_recall"],
            "tvd": breakdown_tvd(labels, pred, len(tc.labels)),
            "per_class_f1": {k: v["f1"] for k, v in rep["per_class"].items()},
        }
        scores.append(rep[tc.selection_metric])
    return record, float(np.mean(scores))


def train(
    cfg: TrainConfig, run_dir: Path, data_root: Path | None = None, on_epoch: EpochHook | None = None
) -> TrainResult:
    """Fine-tune per `cfg`, writing the best checkpoint and a history to `run_dir`."""
    hp = cfg.hparams
    set_seed(hp.seed)
    torch.set_num_threads(hp.threads or max(1, os.cpu_count() or 1))
    run_dir.mkdir(parents=True, exist_ok=True)
    base_dir = resolve_base_model(cfg.base_model)
    data = _encoded_data(cfg, base_dir, data_root or default_data_root())
    rng = random.Random(hp.seed)
    model = build_model(base_dir, {t: len(tc.labels) for t, tc in cfg.tasks.items()}, hp.pooling, hp.dropout)
    optimizer = _optimizer(model, hp.weight_decay, hp.lr)
    per_epoch = sum(math.ceil(len(p) * data.repeats.get(n, 1.0)) for n, p in data.train.items())
    total_steps = math.ceil(per_epoch / hp.batch_size) * hp.epochs
    if hp.max_steps is not None:
        total_steps = min(total_steps, hp.max_steps)
    scheduler = _warmup_then_linear(optimizer, total_steps, int(total_steps * hp.warmup_ratio))
    step_fn = _Stepper(
        model, optimizer, scheduler, data.loss_fns, [tc.loss_weight for tc in cfg.tasks.values()]
    )

    history: list[dict[str, Any]] = []
    kept = _Kept(run_dir / "best.pt", {"config": cfg.to_dict(), "base_dir": str(base_dir)})
    epoch_states: list[dict[str, torch.Tensor]] = []
    started = time.monotonic()

    def judge(record: dict[str, Any]) -> None:
        """Validate the weights as they stand, log the record, keep the weights if best so far."""
        scores, record["selection_score"] = validate(cfg, model, data.validation)
        record.update(scores)
        record["elapsed_s"] = round(time.monotonic() - started, 1)
        history.append(record)
        print(json.dumps(record, default=float), flush=True)
        if on_epoch is not None:
            on_epoch(record)
        kept.offer(model, record)

    for epoch in range(1, hp.epochs + 1):
        if step_fn.step >= total_steps:
            break
        pairs = mix_epoch(data.train, data.repeats, rng)
        batches = length_grouped_batches([len(ids) for ids, _ in pairs], hp.batch_size, rng)
        train_loss = step_fn.epoch(pairs, batches, f"epoch {epoch}/{hp.epochs}", total_steps)
        judge({"epoch": epoch, "step": step_fn.step, "train_loss": train_loss})
        if hp.average_checkpoints:
            epoch_states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    # Weights averaged over the last epochs (checkpoint averaging) often generalise better
    # than any one of them; each mean is a candidate judged on validation like an epoch.
    for k in range(2, len(epoch_states) + 1):
        model.load_state_dict(average_states(epoch_states[-k:]))
        averaged = list(range(len(epoch_states) - k + 1, len(epoch_states) + 1))
        judge({"epoch": averaged[-1], "averaged_epochs": averaged, "step": step_fn.step})
    (run_dir / "history.json").write_text(json.dumps(history, indent=2))
    return TrainResult(
        kept.path, kept.epoch, history, data.label_counts, time.monotonic() - started, kept.averaged
    )


def average_states(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts (integer buffers, e.g. position ids, from the last)."""
    out = {}
    for key, last in states[-1].items():
        if torch.is_floating_point(last):
            out[key] = torch.stack([s[key].float() for s in states]).mean(0).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


class _Kept:
    """The best checkpoint so far (by validation selection score), written to `path`."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta
        self.score, self.epoch = -1.0, -1
        self.averaged: list[int] = []

    def offer(self, model: nn.Module, record: Mapping[str, Any]) -> None:
        if record["selection_score"] <= self.score:
            return
        self.score, self.epoch = record["selection_score"], int(record["epoch"])
        self.averaged = list(record.get("averaged_epochs", []))
        torch.save(
            {
                **self.meta,
                "state_dict": model.state_dict(),
                "epoch": self.epoch,
                "averaged_epochs": self.averaged,
                "selection_score": self.score,
            },
            self.path,
        )


Pair = tuple[list[int], TrainExample]  # token ids and the example they encode


@dataclass
class EncodedData:
    train: dict[str, list[Pair]]  # per training source
    validation: dict[str, tuple[str, list[list[int]], list[int]]]  # set -> (task, ids, labels)
    repeats: dict[str, float]  # share of each source drawn per epoch
    loss_fns: Sequence[nn.Module]  # per task, in the config's task order
    label_counts: dict[str, dict[str, dict[str, int]]]  # source -> task -> label -> examples


def _encoded_data(cfg: TrainConfig, base_dir: Path, data_root: Path) -> EncodedData:
    """Every training source and validation set, read and tokenized once."""
    tokenizer = load_tokenizer(base_dir / "tokenizer.json", cfg.hparams.max_length)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch([normalize_text(t) for t in texts])]

    raw = {src.name: read_source(cfg, src, data_root) for src in cfg.train}
    sources = {name: join_tasks(per_task, cfg.task_names, name) for name, per_task in raw.items()}
    repeats = {s.name: s.repeat for s in cfg.train}
    return EncodedData(
        train={
            name: list(zip(encode([e.text for e in exs]), exs, strict=True)) for name, exs in sources.items()
        },
        validation={
            name: (task, encode([e.text for e in exs]), [e.label for e in exs])
            for name, (task, exs) in load_validation_sets(cfg, data_root).items()
        },
        repeats=repeats,
        loss_fns=_loss_fns(cfg, [ex for exs in sources.values() for ex in exs], repeats),
        label_counts={
            src: {task: label_counts(exs, cfg.tasks[task].labels) for task, exs in per_task.items()}
            for src, per_task in raw.items()
        },
    )


def _warmup_then_linear(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


class _Stepper:
    """Optimizer steps over batches of mixed-task examples: each task's loss counts on the
    examples labelled for it."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
        loss_fns: Sequence[nn.Module],
        loss_weights: list[float],
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_fns, self.loss_weights = loss_fns, loss_weights
        self.step = 0

    def epoch(self, pairs: list[Pair], batches: list[list[int]], desc: str, total_steps: int) -> float:
        """One pass over `batches` (or up to `total_steps`); the mean training loss."""
        self.model.train()
        running, done = 0.0, 0
        bar = tqdm(batches, desc=desc, unit="batch", dynamic_ncols=True)
        for done, batch in enumerate(bar, 1):
            running += self._one(pairs, batch)
            if done % 20 == 0:
                bar.set_postfix(loss=f"{running / done:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if self.step >= total_steps:
                break
        bar.close()
        return running / max(1, done)

    def _one(self, pairs: list[Pair], batch: list[int]) -> float:
        feats = collate([pairs[i][0] for i in batch])
        targets = torch.tensor([pairs[i][1].targets for i in batch], dtype=torch.long)
        loss = torch.zeros(())
        for col, logits in enumerate(self.model(**feats)):
            if (targets[:, col] != NO_LABEL).any():
                loss = loss + self.loss_weights[col] * self.loss_fns[col](logits, targets[:, col])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.item())


def load_checkpoint(path: Path) -> tuple[TextClassifier, dict[str, Any], Path]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    cfg = blob["config"]
    hp = cfg["hparams"]
    base_dir = Path(blob["base_dir"])
    if not base_dir.exists():
        base_dir = resolve_base_model(cfg["base_model"])
    heads = {t: len(spec["labels"]) for t, spec in cfg["tasks"].items()}
    model = build_model(base_dir, heads, hp["pooling"], hp["dropout"], pretrained=False)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, cfg, base_dir
