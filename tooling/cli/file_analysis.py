"""`emotion-monitor analyze --file` (the analysis of a user's texts, in this process or on a Ray
cluster) and `emotion-monitor bench file` (its throughput and memory beside model-only)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tooling.cli.analyze import format_analysis
from tooling.cli.main import _emit_report, _offline, bench_app

if TYPE_CHECKING:
    from serve_app.flow.file_ray import RayScoring


@dataclass(frozen=True)
class FileRequest:
    """What `analyze --file` was asked (tooling/cli/analyze.py's `analyze` hands it over)."""

    path: Path
    text_field: str = "text"
    id_field: str | None = None
    as_json: bool = False
    ray_address: str | None = None
    tasks: tuple[str, ...] | None = None
    include_other_languages: bool = False
    dedupe: bool = False
    model: Path | None = None


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def run_file_analysis(req: FileRequest) -> None:
    """Analyse the file, print the answer (a table, or JSON with --json); bad input exits 2."""
    _offline()
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from serve_app.config.settings import get_settings
    from serve_app.flow.file_analysis import FileAnalysisError, FileOptions, analyze_file
    from serve_app.flow.text_files import TextFields, TextFileError, file_kind
    from serve_app.model.predictor import ModelArtifactError

    settings = get_settings()
    try:
        fields = TextFields.parse(req.text_field, req.id_field)
        file_kind(req.path)  # a missing file or a wrong extension fails before the model loads
    except TextFileError as exc:
        raise _fail(str(exc)) from None
    opts = FileOptions(
        tasks=req.tasks or None,
        negative_threshold=settings.model.negative_threshold,
        include_other_languages=req.include_other_languages,
        lang_min_confidence=settings.model.lang_min_confidence,
        dedupe=req.dedupe,
    )
    ray_scoring = _ray_scoring(req.ray_address) if req.ray_address else None
    console = Console(stderr=True)
    started = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=console, disable=not console.is_terminal, transient=True,
    ) as bar:  # fmt: skip
        job = bar.add_task(f"analysing {req.path.name}", total=req.path.stat().st_size)
        try:
            analysis = analyze_file(
                req.path, fields, req.model or settings.model.dir, opts, settings.model.max_length,
                chunk_size=ray_scoring.chunk_size if ray_scoring else 1000,
                progress=lambda done: bar.update(job, completed=done),
                scorer=ray_scoring,
            )  # fmt: skip
        except (TextFileError, FileAnalysisError, ModelArtifactError) as exc:
            raise _fail(str(exc)) from None
    data = analysis.model_dump()
    if req.as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in format_analysis({**data, "source": "inference", "time": time.perf_counter() - started}):
        typer.echo(line)


def _ray_scoring(address: str) -> RayScoring:
    from serve_app.flow.file_ray import RayScoring  # Ray Data only when asked for

    return RayScoring(address)


@bench_app.command("file")
def bench_file_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    posts: Annotated[Path, typer.Option(help="Real posts; titles + bodies are the texts.")] = Path(
        "../shared/data/reddit_sample/posts.jsonl"
    ),
    texts: Annotated[int, typer.Option(help="Texts in the throughput runs (file vs model-only).")] = 3000,
    repeats: Annotated[int, typer.Option(help="Runs of each, the median is reported.")] = 3,
    memory_sizes: Annotated[str, typer.Option(help="File sizes (texts) whose peak RSS is measured.")] = (
        "10000,100000"
    ),
    memory_max_length: Annotated[
        int, typer.Option(help="Tokens per text in the memory runs (fewer: faster, same memory shape).")
    ] = 128,
    max_length: Annotated[int, typer.Option(help="Tokens per text in the throughput runs.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Texts per model batch, both paths.")] = 32,
    workdir: Annotated[Path, typer.Option(help="Where the generated files go (never the repo).")] = Path(
        "/tmp/em-bench-file"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) here.")] = None,
) -> None:
    """The file analysis beside model-only (same texts, batch size and token length), and its
    peak memory at two file sizes (each in a fresh process)."""
    _offline()
    from tooling.bench.file import BenchPlan, bench_file

    plan = BenchPlan(
        model, posts, texts, repeats, [int(x) for x in memory_sizes.split(",") if x.strip()],
        memory_max_length, max_length, batch_size, workdir,
    )  # fmt: skip
    _emit_report(bench_file(plan, progress=lambda msg: print(msg, file=sys.stderr, flush=True)), out)


@bench_app.command("file-nodes")
def bench_file_nodes_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    posts: Annotated[Path, typer.Option(help="Real posts; titles + bodies are the texts.")] = Path(
        "../shared/data/reddit_sample/posts.jsonl"
    ),
    texts: Annotated[int, typer.Option(help="Texts per run.")] = 1000,
    repeats: Annotated[int, typer.Option(help="Runs of each, the median is reported.")] = 2,
    max_length: Annotated[int, typer.Option(help="Tokens per text.")] = 128,
    workdir: Annotated[Path, typer.Option(help="Generated files and the cluster's state.")] = Path(
        "/tmp/em-bench-file-nodes"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the table (markdown) here.")] = None,
) -> None:
    """`analyze --file --ray` on the local cluster with 1, then 2 worker nodes, beside in-process."""
    _offline()
    from tooling.bench.file_nodes import NodesPlan, bench_file_nodes

    plan = NodesPlan(model.resolve(), posts, texts, repeats, max_length, workdir)
    _emit_report(bench_file_nodes(plan, log=lambda msg: print(msg, file=sys.stderr, flush=True)), out)
