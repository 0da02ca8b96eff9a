"""`emotion-monitor predict` and `analyze` (a service's answer, or --file), and the answer as text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from serve_app.domain.tasks import DEFAULT_TASK
from tooling.cli import scope as cli_scope
from tooling.cli.main import DEFAULT_URL, ServiceUrl, app

TOP = 5  # drivers shown per label


def _driver(d: Mapping[str, Any]) -> str:
    net = d.get("net_sentiment")
    mood = f", net {net['value']:+.2f}" if net else ""
    return f"{d['term']} (z {d['z']:.1f}, {d['posts']} posts{mood})"


def driver_lines(data: Mapping[str, Any]) -> list[str]:
    """Per task, each label's top drivers: "  anger    refund policy (z 5.2, 14 posts, net -0.71), ..."."""
    lines: list[str] = []
    for task, labels in (data.get("drivers") or {}).items():
        rows = [(label, drivers) for label, drivers in labels.items() if drivers]
        if not rows:
            continue
        lines += ["", f"{task} drivers (terms distinctive of each label's posts; z >= 1.96)"]
        lines += [f"  {label:<10}" + ", ".join(_driver(d) for d in drivers[:TOP]) for label, drivers in rows]
    return lines


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="Text(s) to classify.")],
    task: Annotated[str, typer.Option(help="Which task's head answers (emotion, sentiment).")] = DEFAULT_TASK,
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify texts and print the label and the score of every class."""
    from serve_app.domain.schemas import Task
    from serve_app.model.predictor import OnnxPredictor

    if task not in get_args(Task):
        typer.echo(f"--task must be {' or '.join(get_args(Task))}, not {task!r}", err=True)
        raise typer.Exit(2)
    predictor = OnnxPredictor(model, threads=1, task=task)
    preds = predictor.predict(texts)
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in preds], indent=2))
        return
    for text, p in zip(texts, preds, strict=True):
        typer.echo(f"{text!r} -> {p.label} ({p.confidence:.3f})")
        for lab, score in sorted(p.scores.items(), key=lambda kv: -kv[1]):
            typer.echo(f"  {lab:<9} {score:.4f} {'#' * round(score * 40)}")


def format_analysis(data: dict[str, Any]) -> list[str]:
    """An /analyze answer as text: a table per breakdown, then languages and urgent posts."""
    versions = data.get("model_versions") or {"emotion": data.get("model_version", "?")}
    lines = [
        f"{data['count']} posts about {data['keyword']!r} from {data['post_source']} "
        f"({data['source']}, {data['time']:.2f} s; "
        + ", ".join(f"{t} {v}" for t, v in versions.items())
        + ")"
    ]
    if data.get("partial"):
        lines.append(f"PARTIAL: {data.get('partial_reason') or 'the source stopped early'}")
    if scope := cli_scope.scope_line(data):
        lines.append(scope)
    reasons = data.get("excluded_reasons") or {}
    if reasons:
        lines.append(
            f"{data.get('scored', data['count'])} scored; left out: "
            + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        )
    elif data.get("scored") is not None and data.get("excluded"):
        lines.append(
            f"{data['scored']} scored, {data['excluded']} left out (languages the models do not read)"
        )
    methods = data.get("breakdown_methods") or {}
    panels = [
        ("emotion", data.get("agg"), methods.get("emotion")),
        ("among emotional posts", data.get("emotional_agg"), methods.get("emotion")),
        ("sentiment", data.get("sentiment_agg"), methods.get("sentiment")),
    ]
    for title, agg, method in panels:
        if not agg:
            continue
        head = f"{title}" + (f" ({method})" if method else "")
        lines += ["", head, f"{'':<10}{'share':>8}{'95 % interval':>16}{'posts':>7}{'mean conf':>11}"]
        for a in sorted(agg, key=lambda x: -x["pct"]):
            bar = "#" * round(a["pct"] / 2)
            low, high = a.get("pct_low"), a.get("pct_high")
            interval = f"{low:.1f}-{high:.1f}%" if low is not None and high is not None else "n/a"
            row = f"{a['label']:<10}{a['pct']:>7.1f}%{interval:>16}{a['count']:>7}{a['avg_score']:>11.3f}"
            lines.append(f"{row}  {bar}")
    lines += driver_lines(data)
    neg = data.get("strongly_negative")
    if neg:
        ids = ", ".join(neg["ids"][:10]) + (" ..." if len(neg["ids"]) > 10 else "")
        lines += [
            "",
            f"strongly negative (confidence >= {neg['threshold']}): {neg['count']} posts, {neg['pct']:.1f}%"
            + (f": {ids}" if ids else ""),
        ]
    langs = data.get("languages") or {}
    if langs:
        top = sorted(langs.items(), key=lambda kv: -kv[1])
        lines.append("languages: " + ", ".join(f"{k} {v}" for k, v in top))
    return lines


@app.command()
def analyze(
    keyword: Annotated[str | None, typer.Argument(help="Keyword to analyse (or --file).")] = None,
    limit: Annotated[int, typer.Option(help="Most posts to analyse (1-1000).")] = 250,
    source: Annotated[str | None, typer.Option(help="reddit or jsonl (default: the service's).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Save the chart PNG here.")] = None,
    url: ServiceUrl = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 120.0,
    tasks: Annotated[
        list[str] | None,
        typer.Option("--task", help="Breakdowns to ask for, repeatable (default: all the service serves)."),
    ] = None,
    include_other_languages: Annotated[
        bool, typer.Option(help="Score posts in languages the models were not trained for too.")
    ] = False,
    file: Annotated[
        Path | None,
        typer.Option(help="Analyse your own texts (.jsonl or .csv) in this process instead of a keyword."),
    ] = None,
    text_field: Annotated[
        str, typer.Option(help="With --file: the text's field (several, comma-separated: title,body).")
    ] = "text",
    id_field: Annotated[
        str | None, typer.Option(help="With --file: the id field (default: the row's number).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    ray_address: Annotated[
        str | None, typer.Option("--ray", help="With --file: score on this Ray cluster (Ray Data).")
    ] = None,
    dedupe: Annotated[bool, typer.Option(help="With --file: exact repeats of a text count once.")] = False,
    export: Annotated[
        Path | None,
        typer.Option(help="Save the scored posts here: .csv (UTF-8 with BOM) or .jsonl, by the suffix."),
    ] = None,
    subreddit: cli_scope.Subreddits = None,
    exclude_subreddit: cli_scope.ExcludeSubreddits = None,
    time_window: cli_scope.TimeWindow = None,
    since: cli_scope.Since = None,
    until: cli_scope.Until = None,
    sort: cli_scope.Sort = None,
    comments: cli_scope.Comments = 0,
    count_over: cli_scope.CountOver = None,
) -> None:
    """Ask a running service for the emotion and sentiment breakdown of posts about KEYWORD,
    or analyse your own texts with --file (the same answer, no service needed)."""
    if file is not None:  # tooling/cli/file_analysis.py
        from tooling.cli.file_analysis import FileRequest, run_file_analysis

        run_file_analysis(
            FileRequest(file, text_field, id_field, as_json, ray_address, tuple(tasks or ()),
                        include_other_languages, dedupe)
        )  # fmt: skip
        return
    if keyword is None:
        typer.echo("give a KEYWORD (posts via the service) or --file (your own texts)", err=True)
        raise typer.Exit(2)
    body = _keyword_body(keyword, limit, plot is not None, source, tasks, include_other_languages)
    body |= cli_scope.scope_body(subreddit, exclude_subreddit, time_window, since, until, sort)
    body |= cli_scope.comments_body(comments, count_over)
    _show_answer(_ask_service(url, body, timeout, export), as_json, plot)


def _keyword_body(
    keyword: str, limit: int, return_plot: bool, source: str | None, tasks: list[str] | None, other: bool
) -> dict[str, Any]:
    """The /analyze request's own fields (the scope and comment fields are added to it)."""
    body: dict[str, Any] = {"keyword": keyword, "limit": limit, "return_plot": return_plot}
    if source:
        body["source"] = source
    if tasks:
        body["tasks"] = tasks
    if other:
        body["include_other_languages"] = True
    return body


def _ask_service(url: str, body: dict[str, Any], timeout: float, export: Path | None) -> dict[str, Any]:
    """POST /analyze (exits on an error); saves the scored posts to `export` when given."""
    import httpx

    try:
        r = httpx.post(f"{url.rstrip('/')}/analyze", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc} (is the service running? `make run`)", err=True)
        raise typer.Exit(2) from None
    if r.status_code != 200:
        typer.echo(f"HTTP {r.status_code}: {r.text}", err=True)
        raise typer.Exit(1)
    data: dict[str, Any] = r.json()
    if export is not None:  # tooling/cli/compare.py
        from tooling.cli.compare import save_export

        save_export(url, data.get("analysis_id"), export, timeout)
    return data


def _show_answer(data: dict[str, Any], as_json: bool, plot: Path | None) -> None:
    """The answer as JSON or as tables; the chart saved to `plot` when asked and sent."""
    import base64

    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in format_analysis(data):
        typer.echo(line)
    if plot is not None and data.get("plot_base64"):
        plot.write_bytes(base64.b64decode(data["plot_base64"]))
        typer.echo(f"chart -> {plot}")
