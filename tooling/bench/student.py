"""A student against its teacher, side by side in one run (issue 30, item 7): model-only
posts/s at 128 tokens, and per validation set macro-F1, breakdown TVD (natural mix and the
shifted-mix protocol, served counting), and agreement with the teacher; plus agreement on
held-out corpus posts. `emotion-monitor bench student` prints it."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve_app.model.predictor import OnnxPredictor

FULL = 128  # the speed is measured on posts at least this long, cut to it


@dataclass(frozen=True)
class SpeedRow:
    model: str
    version: str
    posts_per_s: float  # median over repeats, wall clock
    cpu_ms_per_post: float  # median over repeats, process CPU time
    ratio: float  # posts/s against the first model's
    cpu_ratio: float  # the first model's CPU time per post over this one's


@dataclass(frozen=True)
class QualityRow:
    dataset: str
    task: str
    n: int
    teacher_f1: float
    student_f1: float
    teacher_tvd: float  # the served counting method's TVD on the whole set (its natural mix)
    student_tvd: float
    teacher_shift_tvd: dict[str, float]  # protocol -> mean TVD over draws (served method, n=250)
    student_shift_tvd: dict[str, float]
    agreement: float  # share of texts given the same label by both


def full_length_ids(predictor: OnnxPredictor, texts: Sequence[str], count: int) -> list[list[int]]:
    """Token ids of `count` texts that fill all FULL tokens (cut there)."""
    ids = [x[:FULL] for x in predictor.encode(texts) if len(x) >= FULL]
    if len(ids) < count:
        raise ValueError(f"only {len(ids)} of the texts reach {FULL} tokens; {count} wanted")
    return ids[:count]


def speed(
    models: dict[str, OnnxPredictor], ids: list[list[int]], repeats: int, batch: int = 32
) -> list[SpeedRow]:
    """Each model over the same batches, the models interleaved batch by batch (order
    alternating) so a change in load on the shared machine hits both alike; the first model
    is the baseline. Wall clock and process CPU time are both kept: under contention the CPU
    time per post is the steadier figure."""
    names = list(models)
    wall: dict[str, list[float]] = {m: [] for m in names}
    cpu: dict[str, list[float]] = {m: [] for m in names}
    for pred in models.values():  # one warm-up batch each
        pred.run_ids(ids[:batch])
    for r in range(repeats):
        spent = {m: [0.0, 0.0] for m in names}
        for j, i in enumerate(range(0, len(ids), batch)):
            for name in names if (r + j) % 2 == 0 else names[::-1]:
                t0, c0 = time.perf_counter(), time.process_time()
                models[name].run_ids(ids[i : i + batch])
                spent[name][0] += time.perf_counter() - t0
                spent[name][1] += time.process_time() - c0
        for name in names:
            wall[name].append(len(ids) / spent[name][0])
            cpu[name].append(1000 * spent[name][1] / len(ids))
    base, base_cpu = statistics.median(wall[names[0]]), statistics.median(cpu[names[0]])
    return [
        SpeedRow(
            name,
            models[name].version,
            statistics.median(wall[name]),
            statistics.median(cpu[name]),
            statistics.median(wall[name]) / base,
            base_cpu / statistics.median(cpu[name]),
        )
        for name in names
    ]


def _served_figures(
    pred: OnnxPredictor, probs: np.ndarray, y: np.ndarray, draws: int, seed: int
) -> tuple[float, dict[str, float]]:
    """The served counting's TVD on the whole set, and its mean TVD under each shift protocol."""
    from serve_app.counting.breakdown import label_shares, tvd
    from serve_app.counting.quantify import estimate
    from training.shift import shift_protocol

    counting = pred.head.counting
    natural = tvd(estimate(probs, counting), label_shares(y, probs.shape[1]))
    rounded = np.round(probs.astype(np.float64), 6)  # as served scores are
    runs = shift_protocol(
        rounded, y, [counting.method], 250, draws, seed=seed, served={counting.method: counting}
    )
    return float(natural), {p: float(res[counting.method].mean_tvd) for p, res in runs.items()}


def quality(
    teacher: OnnxPredictor,
    student: OnnxPredictor,
    sets: dict[str, tuple[str, Path]],
    draws: int,
    seed: int = 0,
    limit: int | None = None,
) -> list[QualityRow]:
    """Per validation set (name -> (task, file)), the two models' figures side by side."""
    from training.data import read_jsonl
    from training.metrics import agreement, classification_report

    rows = []
    for name, (task, path) in sets.items():
        t, s = teacher.for_task(task), student.for_task(task)
        exs = read_jsonl(path, list(t.labels), limit=limit)
        texts, y = [e.text for e in exs], np.asarray([e.label for e in exs])
        pt, ps = t.probabilities(texts), s.probabilities(texts)
        f1 = [
            classification_report(y.tolist(), p.argmax(1).tolist(), list(t.labels))["macro_f1"]
            for p in (pt, ps)
        ]
        tt, tshift = _served_figures(t, pt, y, draws, seed)
        st, sshift = _served_figures(s, ps, y, draws, seed)
        rows.append(
            QualityRow(
                name,
                task,
                len(y),
                f1[0],
                f1[1],
                tt,
                st,
                tshift,
                sshift,
                agreement(pt.argmax(1), ps.argmax(1)),
            )
        )
    return rows


def corpus_agreement(
    teacher: OnnxPredictor, student: OnnxPredictor, texts: Sequence[str]
) -> dict[str, float]:
    """Per head, the share of posts given the same label by both models."""
    lt, ls = teacher.logits_all(texts), student.logits_all(texts)
    return {task: float(np.mean(lt[task].argmax(1) == ls[task].argmax(1))) for task in lt}


def held_out_posts(corpus: Path, count: int, seed: int = 0) -> list[str]:
    """Corpus posts the student never trained on (training.distill keeps them out)."""
    from training.distill import read_posts

    return read_posts(corpus, count, random.Random(seed), held_out=True)


def speed_lines(rows: Sequence[SpeedRow], n_posts: int, repeats: int) -> list[str]:
    lines = [
        f"model-only, {n_posts} corpus posts cut to {FULL} tokens, batch 32, INT8, median of {repeats}",
        "| model | version | posts/s (wall) | CPU ms/post | posts/s ratio (wall) | ratio (CPU time) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.version} | {r.posts_per_s:.1f} | {r.cpu_ms_per_post:.2f} | {r.ratio:.2f}x "
        f"| {r.cpu_ratio:.2f}x |"
        for r in rows
    ]
    return lines


def quality_lines(rows: Sequence[QualityRow], corpus: dict[str, float], n_corpus: int) -> list[str]:
    protos = list(rows[0].teacher_shift_tvd) if rows else []
    head = "| set | task | n | macro-F1 teacher | student | delta (pts) | TVD teacher | student | "
    head += " | ".join(f"shift {p} TVD teacher | student" for p in protos) + " | agreement |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        shift = " | ".join(f"{r.teacher_shift_tvd[p]:.4f} | {r.student_shift_tvd[p]:.4f}" for p in protos)
        lines.append(
            f"| {r.dataset} | {r.task} | {r.n} | {r.teacher_f1:.4f} | {r.student_f1:.4f} | "
            f"{100 * (r.student_f1 - r.teacher_f1):+.2f} | {r.teacher_tvd:.4f} | {r.student_tvd:.4f} | "
            f"{shift} | {100 * r.agreement:.1f} % |"
        )
    lines.append(
        f"agreement on {n_corpus} held-out corpus posts: "
        + ", ".join(f"{t} {100 * a:.1f} %" for t, a in corpus.items())
    )
    return lines
