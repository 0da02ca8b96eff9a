"""Distillation: a smaller student trained on the served model's soft labels (issue 30, item 7).

The student is all-MiniLM-L6-v2 with only some of its layers kept (`distill.layers`), trained
on the teacher artifact's probabilities at a distillation temperature (the teacher answers
through `serve_app.model.predictor`, exactly as it is served) over a subsample of the training sets
plus unlabelled corpus posts, mixed with gold-label cross-entropy where gold exists. The
kept checkpoint goes through the pipeline's own export (`training.pipeline.build_artifact`:
INT8, calibration, counting, card), so serving loads the student unchanged.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from serve_app.model.predictor import OnnxPredictor, load_tokenizer
from serve_app.model.preprocess import normalize_text, post_text
from training.batches import collate, length_grouped_batches
from training.card import write_model_card
from training.config import ConfigError, TrainConfig, load_config
from training.data import NO_LABEL, TrainExample, default_data_root, join_tasks
from training.modeling import TextClassifier, build_model, resolve_base_model
from training.train import (
    TrainResult,
    _Kept,
    _optimizer,
    _warmup_then_linear,
    data_path,
    load_validation_sets,
    read_source,
    set_seed,
    validate,
)

UNLABELLED = "unlabelled"  # the source name of corpus posts (no gold label for any task)
HOLDOUT_EVERY = 10  # corpus posts kept out of training, for evaluation


@dataclass
class DistillConfig:
    """The `distill:` section of a student config."""

    teacher: str  # the teacher artifact directory (relative to the working directory)
    layers: list[int]  # the base encoder's layers the student keeps, in order
    temperature: float = 2.0  # softens both distributions in the distillation loss
    gold_weight: float = 0.3  # share of the loss from gold labels, where an example has one
    unlabelled: str | None = None  # a JSONL of posts (title, body), relative to the data root
    unlabelled_count: int = 0  # posts drawn from it
    teacher_threads: int = 2


@dataclass
class DistillData:
    """The student's training texts, their token ids, gold targets and teacher logits."""

    examples: list[TrainExample]
    ids: list[list[int]]
    teacher: dict[str, np.ndarray] = field(default_factory=dict)  # task -> (n, labels) logits


def load_student_config(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> tuple[TrainConfig, DistillConfig]:
    """A training config (read by `load_config`, the one parser) plus its `distill:` section."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("distill"), dict):
        raise ConfigError(f"{path}: a student config needs a `distill:` mapping (teacher, layers)")
    try:
        dcfg = DistillConfig(**raw.pop("distill"))
    except TypeError as exc:
        raise ConfigError(f"{path}: distill: {exc}") from exc
    if not dcfg.layers or sorted(set(dcfg.layers)) != dcfg.layers:
        raise ConfigError(f"{path}: distill.layers must be increasing layer indices, not {dcfg.layers}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        yaml.safe_dump(raw, tmp)
    try:
        cfg = load_config(tmp.name, overrides)
    finally:
        Path(tmp.name).unlink()
    return cfg, dcfg


def make_student_base(base_dir: Path, layers: Sequence[int], dest: Path) -> Path:
    """A checkpoint directory of the base encoder with only `layers` kept (their pretrained
    weights; embeddings as they are), loadable by `build_model` and `load_checkpoint`."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base_dir, add_pooling_layer=False)
    n = encoder.config.num_hidden_layers
    if max(layers) >= n or min(layers) < 0:
        raise ConfigError(f"distill.layers {list(layers)} out of range: the base model has {n} layers")
    encoder.encoder.layer = nn.ModuleList([encoder.encoder.layer[i] for i in layers])
    encoder.config.num_hidden_layers = len(layers)
    dest.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(dest)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (base_dir / name).is_file():
            (dest / name).write_bytes((base_dir / name).read_bytes())
    return dest


def read_posts(path: Path, count: int, rng: random.Random, held_out: bool = False) -> list[str]:
    """`count` posts drawn at random from a corpus JSONL, as the service classifies them.

    Every `HOLDOUT_EVERY`-th post is never trained on: `held_out=True` draws from those
    (the student's agreement with the teacher on posts it has not seen)."""
    texts = []
    with path.open() as f:
        for i, line in enumerate(f):
            if (i % HOLDOUT_EVERY == 0) != held_out:
                continue
            row = json.loads(line)
            text = post_text(str(row.get("title") or ""), str(row.get("body") or ""))
            if text:
                texts.append(text)
    return rng.sample(texts, min(count, len(texts)))


def gather_examples(
    cfg: TrainConfig, dcfg: DistillConfig, data_root: Path, rng: random.Random
) -> list[TrainExample]:
    """Each training source subsampled once by its `repeat` (the budget), plus corpus posts."""
    out: list[TrainExample] = []
    for src in cfg.train:
        exs = join_tasks(read_source(cfg, src, data_root), cfg.task_names, src.name)
        out.extend(rng.sample(exs, min(len(exs), round(src.repeat * len(exs)))))
    if dcfg.unlabelled and dcfg.unlabelled_count > 0:
        none = tuple([NO_LABEL] * len(cfg.tasks))
        posts = read_posts(data_path(dcfg.unlabelled, data_root), dcfg.unlabelled_count, rng)
        out.extend(TrainExample(t, none, UNLABELLED) for t in posts)
    return out


def teacher_logits(
    teacher: Path, texts: Sequence[str], threads: int, max_length: int
) -> dict[str, np.ndarray]:
    """The served teacher's raw logits per head (its calibration temperature not applied)."""
    pred = OnnxPredictor(teacher, threads=threads, max_length=max_length)
    return pred.logits_all(list(texts))


def distill_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    gold: torch.Tensor,
    temperature: float,
    gold_weight: float,
) -> torch.Tensor:
    """Per head: KL(teacher || student) at `temperature` (times T^2, so its gradients keep
    their scale), mixed with cross-entropy on the gold labels where they exist."""
    loss = torch.zeros(())
    t = temperature
    for col, (s, te) in enumerate(zip(student, teacher, strict=True)):
        kd = F.kl_div(
            F.log_softmax(s / t, -1), F.log_softmax(te / t, -1), log_target=True, reduction="batchmean"
        )
        head = (1.0 - gold_weight) * kd * t * t
        has_gold = gold[:, col] != NO_LABEL
        if gold_weight > 0 and bool(has_gold.any()):
            head = head + gold_weight * F.cross_entropy(s, gold[:, col], ignore_index=NO_LABEL)
        loss = loss + head
    return loss


def encode_all(tokenizer_path: Path, texts: Sequence[str], max_length: int) -> list[list[int]]:
    tok = load_tokenizer(tokenizer_path, max_length)
    return [e.ids for e in tok.encode_batch([normalize_text(t) for t in texts])]


def prepare(
    cfg: TrainConfig, dcfg: DistillConfig, data_root: Path, student_base: Path, rng: random.Random
) -> DistillData:
    """The training texts, tokenized for the student, with the teacher's logits."""
    examples = gather_examples(cfg, dcfg, data_root, rng)
    texts = [e.text for e in examples]
    started = time.monotonic()
    logits = teacher_logits(Path(dcfg.teacher), texts, dcfg.teacher_threads, cfg.hparams.max_length)
    print(f"teacher: {len(texts)} texts in {time.monotonic() - started:.0f} s", flush=True)
    missing = [t for t in cfg.tasks if t not in logits]
    if missing:
        raise ConfigError(f"teacher {dcfg.teacher} has no head for {missing}")
    ids = encode_all(student_base / "tokenizer.json", texts, cfg.hparams.max_length)
    return DistillData(examples, ids, {t: logits[t] for t in cfg.tasks})


def _step(
    model: TextClassifier,
    data: DistillData,
    batch: list[int],
    dcfg: DistillConfig,
    optim: tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR],
) -> float:
    optimizer, scheduler = optim
    feats = collate([data.ids[i] for i in batch])
    gold = torch.tensor([data.examples[i].targets for i in batch], dtype=torch.long)
    teacher = [torch.from_numpy(data.teacher[t][batch]) for t in model.tasks]
    loss = distill_loss(model(**feats), teacher, gold, dcfg.temperature, dcfg.gold_weight)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.item())


def _encoded_validation(
    cfg: TrainConfig, data_root: Path, tokenizer: Path
) -> dict[str, tuple[str, list[list[int]], list[int]]]:
    return {
        name: (
            task,
            encode_all(tokenizer, [e.text for e in exs], cfg.hparams.max_length),
            [e.label for e in exs],
        )
        for name, (task, exs) in load_validation_sets(cfg, data_root).items()
    }


def distill(
    cfg: TrainConfig, dcfg: DistillConfig, run_dir: Path, data_root: Path | None = None
) -> TrainResult:
    """Train the student; the best epoch (mean validation score, as `train`) is kept in `run_dir`."""
    hp = cfg.hparams
    data_root = data_root or default_data_root()
    set_seed(hp.seed)
    torch.set_num_threads(hp.threads or 2)
    run_dir.mkdir(parents=True, exist_ok=True)
    student_base = make_student_base(
        resolve_base_model(cfg.base_model), dcfg.layers, run_dir / "student_base"
    )
    rng = random.Random(hp.seed)
    data = prepare(cfg, dcfg, data_root, student_base, rng)
    val = _encoded_validation(cfg, data_root, student_base / "tokenizer.json")
    model = build_model(
        student_base, {t: len(tc.labels) for t, tc in cfg.tasks.items()}, hp.pooling, hp.dropout
    )
    optimizer = _optimizer(model, hp.weight_decay, hp.lr)
    total = math.ceil(len(data.ids) / hp.batch_size) * hp.epochs
    total = min(total, hp.max_steps) if hp.max_steps is not None else total
    scheduler = _warmup_then_linear(optimizer, total, int(total * hp.warmup_ratio))
    kept = _Kept(run_dir / "best.pt", {"config": cfg.to_dict(), "base_dir": str(student_base)})
    history: list[dict[str, Any]] = []
    started, step = time.monotonic(), 0
    for epoch in range(1, hp.epochs + 1):
        model.train()
        batches = length_grouped_batches([len(x) for x in data.ids], hp.batch_size, rng)
        losses = []
        for batch in batches:
            if step >= total:
                break
            losses.append(_step(model, data, batch, dcfg, (optimizer, scheduler)))
            step += 1
            if step % 50 == 0:
                rate = (time.monotonic() - started) / step
                print(f"step {step}/{total} loss {np.mean(losses[-50:]):.4f} {rate:.2f} s/step", flush=True)
        record: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses or [0.0]))}
        scores, record["selection_score"] = validate(cfg, model, val)
        record.update(scores)
        record["elapsed_s"] = round(time.monotonic() - started, 1)
        history.append(record)
        print(json.dumps(record, default=float), flush=True)
        kept.offer(model, record)
    (run_dir / "history.json").write_text(json.dumps(history, indent=2))
    return TrainResult(
        kept.path, kept.epoch, history, _counts(cfg, data.examples), time.monotonic() - started
    )


def _counts(cfg: TrainConfig, examples: Sequence[TrainExample]) -> dict[str, dict[str, dict[str, int]]]:
    """Source -> task -> gold label -> examples trained on (for the card)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for ex in examples:
        for col, (task, tc) in enumerate(cfg.tasks.items()):
            if ex.targets[col] != NO_LABEL:
                per = out.setdefault(ex.source, {}).setdefault(task, dict.fromkeys(tc.labels, 0))
                per[tc.labels[ex.targets[col]]] += 1
    return out


def run_distill(
    cfg: TrainConfig,
    dcfg: DistillConfig,
    out_dir: Path,
    run_dir: Path,
    data_root: Path | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Distil, then export through the pipeline's own artifact code; the card says how."""
    from training.pipeline import build_artifact

    result = distill(cfg, dcfg, run_dir, data_root)
    card = build_artifact(cfg, result.checkpoint, out_dir, run_dir, data_root, result, threads)
    card["distillation"] = {**asdict(dcfg), "teacher_version": _version(Path(dcfg.teacher))}
    write_model_card(out_dir, card)
    return card


def _version(artifact: Path) -> str:
    card = artifact / "model_card.json"
    return str(json.loads(card.read_text()).get("version", "unknown")) if card.is_file() else "unknown"
