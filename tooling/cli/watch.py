"""`emotion-monitor watch add | list | rm` and `trends`: keywords the service monitors over time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tooling.cli import scope as cli_scope
from tooling.cli.main import (
    DEFAULT_URL,
    ServiceUrl,
    _call,
    app,
    watch_app,
)


def _watch_line(w: dict[str, Any]) -> str:
    import datetime as dt

    last = (
        dt.datetime.fromtimestamp(w["last_run_at"], dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        if w.get("last_run_at")
        else "never"
    )
    error = f"  last error: {w['last_error']}" if w.get("last_error") else ""
    return (
        f"{w['keyword']:<30} every {w['every_s']:>6} s  {w['source']:<6} {','.join(w['tasks']):<18} "
        f"limit {w['limit']:<5} last poll {last}{error}"
    )


@watch_app.command("add")
def watch_add(
    keyword: Annotated[str, typer.Argument(help="Keyword to watch.")],
    every: Annotated[int, typer.Option(help="Seconds between polls (at least 60).")] = 300,
    source: Annotated[str | None, typer.Option(help="reddit or jsonl (default: the service's).")] = None,
    tasks: Annotated[list[str] | None, typer.Option("--task", help="Tasks to track, repeatable.")] = None,
    limit: Annotated[int, typer.Option(help="Newest posts fetched per poll.")] = 100,
    url: ServiceUrl = DEFAULT_URL,
    subreddit: cli_scope.Subreddits = None,
    exclude_subreddit: cli_scope.ExcludeSubreddits = None,
    time_window: cli_scope.TimeWindow = None,
    since: cli_scope.Since = None,
    until: cli_scope.Until = None,
    sort: Annotated[str | None, typer.Option(help="Search order per poll (default new).")] = None,
) -> None:
    """Watch KEYWORD: the service polls it, keeps its trend and raises spike alerts."""
    body: dict[str, Any] = {"keyword": keyword, "every_s": every, "limit": limit}
    body |= cli_scope.scope_body(subreddit, exclude_subreddit, time_window, since, until, sort)
    if source:
        body["source"] = source
    if tasks:
        body["tasks"] = tasks
    typer.echo(_watch_line(_call("POST", url, "/watch", json=body)))


@watch_app.command("list")
def watch_list(url: ServiceUrl = DEFAULT_URL) -> None:
    """Every watched keyword and its last poll."""
    watches = _call("GET", url, "/watch")["watches"]
    for w in watches:
        typer.echo(_watch_line(w))
    if not watches:
        typer.echo("no keyword is watched; add one with `emotion-monitor watch add KEYWORD`")


@watch_app.command("rm")
def watch_rm(
    keyword: Annotated[str, typer.Argument(help="Keyword to stop watching.")], url: ServiceUrl = DEFAULT_URL
) -> None:
    """Stop watching KEYWORD (its history and alerts stay)."""
    _call("DELETE", url, f"/watch/{keyword}")
    typer.echo(f"{keyword!r} is no longer watched")


def format_trends(data: dict[str, Any], task: str, labels: list[str] | None = None) -> list[str]:
    """A trend as a table: a row per bucket, the task's label shares (%), and the posts."""
    import datetime as dt

    buckets = data["buckets"]
    shown = labels or [s["label"] for b in buckets[:1] for s in b["shares"].get(task, [])]
    head = f"{'bucket (UTC)':<17} {'posts':>5} " + " ".join(f"{lab:>9}" for lab in shown)
    lines = [f"{task} trend of {data['keyword']!r}, buckets of {data['bucket_s']} s", head]
    for b in buckets:
        if task not in b["shares"]:
            continue
        by = {s["label"]: s for s in b["shares"][task]}
        when = dt.datetime.fromtimestamp(b["start"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(
            f"{when:<17} {b['posts'][task]:>5} " + " ".join(f"{by[lab]['pct']:>8.1f}%" for lab in shown)
        )
    if len(lines) == 2:
        lines.append("(no posts in this window)")
    return lines


def save_trend_chart(data: dict[str, Any], task: str, path: Path) -> None:
    """Each label's share over time with its 95 % interval band, in the registry's colours."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from serve_app.domain.tasks import TASKS

    spec = TASKS[task]
    buckets = [b for b in data["buckets"] if task in b["shares"]]
    import numpy as np

    times = np.array([int(b["start"]) for b in buckets], dtype="datetime64[s]")  # UTC
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    for i, label in enumerate(spec.labels):
        pct = [b["shares"][task][i]["pct"] for b in buckets]
        low = [b["shares"][task][i]["pct_low"] for b in buckets]
        high = [b["shares"][task][i]["pct_high"] for b in buckets]
        ax.plot(times, pct, marker="o", ms=3, color=spec.colour(label), label=label)
        ax.fill_between(times, low, high, color=spec.colour(label), alpha=0.12)
    ax.set_ylabel("share of posts, %")
    ax.set_title(f"{spec.title} about “{data['keyword']}” per {data['bucket_s'] // 60} min (95 % bands)")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


@app.command()
def trends(
    keyword: Annotated[str, typer.Argument(help="Keyword (watched, or analysed before).")],
    bucket: Annotated[str, typer.Option(help="15m, 1h, 6h or 1d.")] = "1h",
    days: Annotated[float, typer.Option(help="How far back, in days.")] = 7.0,
    task: Annotated[list[str] | None, typer.Option("--task", help="Tasks to print (default: all).")] = None,
    chart: Annotated[Path | None, typer.Option(help="Save a line chart PNG here (one per task).")] = None,
    url: ServiceUrl = DEFAULT_URL,
) -> None:
    """Label shares of posts about KEYWORD over time (the posts' own creation time)."""
    import time

    params = {"keyword": keyword, "bucket": bucket, "since": time.time() - days * 86_400}
    data = _call("GET", url, "/trends", params=params)
    tasks = task or sorted({t for b in data["buckets"] for t in b["shares"]}) or ["emotion"]
    for t in tasks:
        for line in format_trends(data, t):
            typer.echo(line)
        typer.echo("")
        if chart is not None:
            path = chart if len(tasks) == 1 else chart.with_name(f"{chart.stem}_{t}{chart.suffix}")
            save_trend_chart(data, t, path)
            typer.echo(f"chart -> {path}")
