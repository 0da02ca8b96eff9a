"""`emotion-monitor bench file`: the file analysis beside model-only on the same machine.

Throughput: the same texts, model batch size and token length, scored by the ONNX predictor
alone (model-only: tokenise + run, chunk by chunk, nothing kept) and by the whole file
analysis (read, hygiene, language detection, selection, scoring, counting), runs interleaved,
medians and their ratio. Memory: each path in a fresh process over a small and a large file
(real posts, titles + bodies, repeated to size; written under /tmp, never into the repo),
peak RSS side by side.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from serve_app.model.preprocess import post_text

MODEL_ONLY_CHUNK = 1000  # texts per chunk, as the file analysis reads them


@dataclass(frozen=True)
class BenchPlan:
    model: Path
    posts: Path
    texts: int
    repeats: int
    memory_sizes: list[int]
    memory_max_length: int
    max_length: int
    batch_size: int
    workdir: Path


def write_texts(posts: Path, n: int, out: Path) -> Path:
    """`n` real texts (a post's title and body, as the service joins them), the corpus repeated."""
    if out.is_file() and sum(1 for _ in out.open(encoding="utf-8")) == n:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", encoding="utf-8") as fh:
        while written < n:
            for line in posts.open(encoding="utf-8"):
                r = json.loads(line)
                text = post_text(str(r.get("title", "")), str(r.get("body", "")))
                if not text.strip():
                    continue
                fh.write(json.dumps({"id": str(written), "text": text}) + "\n")
                written += 1
                if written >= n:
                    break
    return out


def _chunks(path: Path, size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            chunk.append(json.loads(line)["text"])
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def model_only(model: Path, path: Path, max_length: int, batch_size: int) -> int:
    """Score every text of `path`, a chunk at a time, keeping nothing (the baseline)."""
    from serve_app.model.predictor import OnnxPredictor

    predictor = OnnxPredictor(model, threads=2, max_length=max_length, batch_size=batch_size)
    n = 0
    for chunk in _chunks(path, MODEL_ONLY_CHUNK):
        predictor.probabilities_all(chunk)
        n += len(chunk)
    return n


@dataclass
class Runs:
    """Wall and CPU seconds (this process, all threads) of each run of one path."""

    wall: list[float]
    cpu: list[float]

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)


def _throughput(plan: BenchPlan, path: Path, log: Callable[[str], None]) -> tuple[Runs, Runs]:
    """Model-only and the file analysis, runs interleaved, one predictor for both."""
    from serve_app.flow.file_analysis import FileOptions, analyze_file, local_scorer
    from serve_app.flow.text_files import TextFields
    from serve_app.model.predictor import OnnxPredictor

    predictor = OnnxPredictor(plan.model, threads=2, max_length=plan.max_length, batch_size=plan.batch_size)
    texts = [t for chunk in _chunks(path, MODEL_ONLY_CHUNK) for t in chunk]
    model, file = Runs([], []), Runs([], [])
    for r in range(plan.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), MODEL_ONLY_CHUNK):
            predictor.probabilities_all(texts[i : i + MODEL_ONLY_CHUNK])
        model.add(time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        analysis = analyze_file(
            path, TextFields(("text",), "id"), plan.model, FileOptions(), plan.max_length,
            chunk_size=MODEL_ONLY_CHUNK, scorer=lambda models: local_scorer(predictor, list(models.tasks)),
        )  # fmt: skip
        file.add(time.perf_counter() - wall, time.process_time() - cpu)
        assert analysis.scored == len(texts), (analysis.scored, len(texts))
        log(f"run {r + 1}: model-only {model.wall[-1]:.1f} s ({model.cpu[-1]:.1f} CPU s), "
            f"file {file.wall[-1]:.1f} s ({file.cpu[-1]:.1f} CPU s)")  # fmt: skip
    return model, file


def _peak_rss(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of a fresh process running `cmd`, measured by GNU time: a
    child forked from this (big) process would count this process's pages as its own."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        timed = ["/usr/bin/time", "-f", "%M %e", "-o", out.name, *cmd]
        done = subprocess.run(timed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {err}")
        kib, seconds = Path(out.name).read_text().split()[-2:]
    return int(kib) / 1024, float(seconds)


def _memory(plan: BenchPlan, log: Callable[[str], None]) -> list[str]:
    env = {
        **os.environ,
        "EMOTION_MONITOR_MODEL__MAX_LENGTH": str(plan.memory_max_length),
        "EMOTION_MONITOR_MODEL__DIR": str(plan.model),
    }
    cli = str(Path(sys.executable).parent / "emotion-monitor")
    rows = []
    for n in plan.memory_sizes:
        path = write_texts(plan.posts, n, plan.workdir / f"texts-{n}.jsonl")
        f_cmd = [cli, "analyze", "--file", str(path), "--id-field", "id", "--json"]
        f_rss, f_s = _peak_rss(f_cmd, env)
        # Model-only keeps nothing per text, yet its peak grows with the texts read (ONNX
        # Runtime's arena and the tokenizer, until they plateau): measured at every size, so
        # the file analysis's own memory is the difference.
        base = [sys.executable, "-m", "tooling.bench.file", str(plan.model), str(path)]
        m_rss, _ = _peak_rss([*base, str(plan.memory_max_length), str(plan.batch_size)], env)
        log(f"{n} texts: file {f_rss:.0f} MiB {f_s:.0f} s, model-only {m_rss:.0f} MiB")
        rows.append(f"| {n:,} | {m_rss:.0f} | {f_rss:.0f} | {f_rss - m_rss:.0f} | {n / f_s:.0f} |")
    return rows


def bench_file(plan: BenchPlan, progress: Callable[[str], None] = lambda _: None) -> str:
    path = write_texts(plan.posts, plan.texts, plan.workdir / f"texts-{plan.texts}.jsonl")
    model, file = _throughput(plan, path, progress)
    mw, fw = statistics.median(model.wall), statistics.median(file.wall)
    mc, fc = statistics.median(model.cpu), statistics.median(file.cpu)
    lines = [
        f"File analysis vs model-only: {plan.texts:,} real texts (reddit_sample titles + bodies), "
        f"max_length {plan.max_length}, model batch {plan.batch_size}, 2 ORT threads, "
        f"median of {plan.repeats} interleaved runs",
        "",
        "| path | wall s | texts/s | wall vs model-only | CPU s | CPU vs model-only |",
        "|---|---:|---:|---:|---:|---:|",
        f"| model-only (tokenise + ONNX, nothing kept) | {mw:.1f} | {plan.texts / mw:.0f} | 1.00x "
        f"| {mc:.1f} | 1.00x |",
        f"| analyze --file (whole answer) | {fw:.1f} | {plan.texts / fw:.0f} | {fw / mw:.2f}x "
        f"| {fc:.1f} | {fc / mc:.2f}x |",
    ]
    if plan.memory_sizes:
        lines += [
            "",
            f"Peak RSS (GNU time), each a fresh process, max_length {plan.memory_max_length}; "
            "the file path is the whole CLI (Ray's package imported, no cluster):",
            "",
            "| texts | model-only MiB | analyze --file MiB | file minus model-only MiB | file texts/s |",
            "|---:|---:|---:|---:|---:|",
            *_memory(plan, progress),
        ]
    return "\n".join(lines)


if __name__ == "__main__":  # the model-only process of the memory runs
    model_only(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
