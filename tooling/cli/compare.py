"""`emotion-monitor compare A B [C ...]`: keywords side by side, and `analyze --export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tooling.cli.main import DEFAULT_URL, ServiceUrl, _call, _emit_report, _offline, app, bench_app


def _share_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return f"{'-':>22}"
    low, high = row.get("pct_low"), row.get("pct_high")
    interval = "" if low is None or high is None else f" [{low:.1f}-{high:.1f}]"
    return f"{row['pct']:.1f}{interval}".rjust(22)


def format_comparison(data: dict[str, Any]) -> list[str]:
    """A /compare answer as text: per task a row per label with each keyword's share, then
    the differences (a - b) with their interval and whether they exceed chance."""
    keywords: list[str] = data["keywords"]
    analyses = data["analyses"]
    lines = [", ".join(f"{kw!r}: {a['scored']} of {a['count']} posts scored ({a['source']})"
                       for kw, a in zip(keywords, analyses, strict=True))]  # fmt: skip
    from serve_app.domain.tasks import TASKS

    for task, diffs in data["differences"].items():
        field = TASKS[task].response_field
        shares = [{r["label"]: r for r in (a.get(field) or [])} for a in analyses]
        lines += ["", f"{TASKS[task].title}: share % [95 % interval]",
                  f"{'':<10}" + "".join(f"{kw[:20]:>22}" for kw in keywords)]  # fmt: skip
        for label in TASKS[task].labels:
            lines.append(f"{label:<10}" + "".join(_share_cell(s.get(label)) for s in shares))
        lines.append(f"  {'difference (a - b, points)':<38}{'diff':>7} {'95 % interval':>16}{'p (Holm)':>10}")
        for d in diffs:
            mark = "  *" if d["significant"] else ""
            pair = f"{d['keyword_a'][:14]} - {d['keyword_b'][:14]} {d['label']}"
            interval = f"[{d['low']:+6.1f}, {d['high']:+6.1f}]"
            lines.append(f"  {pair:<38}{d['diff']:>+7.1f} {interval:>16}{d['p_holm']:>10.4f}{mark}")
    nets = data.get("net_sentiment_differences") or []
    if nets:
        lines += ["", "net sentiment (positive - negative) / (positive + negative)"]
        for d in nets:
            mark = "  *" if d["significant"] else ""
            lines.append(
                f"  {d['keyword_a'][:14]} {d['a']:+.3f} vs {d['keyword_b'][:14]} {d['b']:+.3f}: "
                f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p (Holm) {d['p_holm']:.4f}{mark}"
            )
    lines += ["", "* larger than chance explains (Holm-corrected p < 0.05). " + data.get("method", "")]
    return lines


def save_comparison_chart(data: dict[str, Any], path: Path) -> None:
    """One panel per task: each label's share per keyword, side by side, with 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from serve_app.domain.tasks import TASKS

    tasks = list(data["differences"])
    keywords = data["keywords"]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, 3.6 * len(tasks)), dpi=100, squeeze=False)
    width = 0.8 / len(keywords)
    colours = plt.get_cmap("tab10")
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        spec = TASKS[task]
        x = np.arange(len(spec.labels))
        for k, (kw, a) in enumerate(zip(keywords, data["analyses"], strict=True)):
            by = {r["label"]: r for r in (a.get(spec.response_field) or [])}
            pct = np.array([by[lab]["pct"] if lab in by else 0.0 for lab in spec.labels])
            low = np.array([by[lab].get("pct_low") or 0.0 if lab in by else 0.0 for lab in spec.labels])
            high = np.array([by[lab].get("pct_high") or 0.0 if lab in by else 0.0 for lab in spec.labels])
            ax.bar(x + (k - (len(keywords) - 1) / 2) * width, pct, width, color=colours(k), label=kw,
                   yerr=[np.maximum(pct - low, 0), np.maximum(high - pct, 0)], capsize=2)  # fmt: skip
        sig = {d["label"] for d in data["differences"][task] if d["significant"]}
        ax.set_xticks(x, [lab + (" *" if lab in sig else "") for lab in spec.labels])
        ax.set_ylabel("share of posts, %")
        ax.set_title(f"{spec.title}: " + " vs ".join(keywords) + " (95 % intervals; * differs beyond chance)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


@app.command()
def compare(
    keywords: Annotated[list[str], typer.Argument(help="2 to 5 different keywords.")],
    limit: Annotated[int, typer.Option(help="Most posts per keyword (1-1000).")] = 250,
    source: Annotated[str | None, typer.Option(help="reddit or jsonl (default: the service's).")] = None,
    tasks: Annotated[list[str] | None, typer.Option("--task", help="Breakdowns, repeatable.")] = None,
    chart: Annotated[Path | None, typer.Option(help="Save a chart PNG, keywords side by side.")] = None,
    url: ServiceUrl = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 300.0,
) -> None:
    """Compare keywords: each one's breakdowns, and which differences exceed chance."""
    body: dict[str, Any] = {"keywords": keywords, "limit": limit}
    if source:
        body["source"] = source
    if tasks:
        body["tasks"] = tasks
    data = _call("POST", url, "/compare", timeout=timeout, json=body)
    for line in format_comparison(data):
        typer.echo(line)
    if chart is not None:
        save_comparison_chart(data, chart)
        typer.echo(f"chart -> {chart}")


def save_export(url: str, analysis_id: str | None, path: Path, timeout: float = 120.0) -> None:
    """Download an analysis's scored posts (streamed to the file) in the format its suffix names."""
    import httpx

    from serve_app.config.settings import get_settings, secret

    if not analysis_id:
        typer.echo("the service's answer has no analysis_id: it predates export", err=True)
        raise typer.Exit(1)
    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    headers = {"X-API-Key": key} if (key := secret(get_settings().http.api_key)) else {}
    target = f"{url.rstrip('/')}/analyses/{analysis_id}/posts"
    try:
        with httpx.stream("GET", target, params={"format": fmt}, headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                typer.echo(f"export: HTTP {r.status_code}: {r.read().decode(errors='replace')}", err=True)
                raise typer.Exit(1)
            with path.open("wb") as out:
                for part in r.iter_bytes():
                    out.write(part)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"posts ({fmt}) -> {path}", err=True)


@bench_app.command("compare")
def bench_compare_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    jsonl: Annotated[Path, typer.Option(help="Post corpus.")] = Path(
        "../shared/data/reddit_sample/posts.jsonl"
    ),
    keywords: Annotated[str, typer.Option(help="3 comma-separated keywords with >= 250 posts.")] = (
        "game,python,money"
    ),
    redis_url: Annotated[str, typer.Option(help="A Redis DB the bench may write.")] = (
        "redis://127.0.0.1:6379/14"
    ),
    postgres_url: Annotated[
        str, typer.Option(help="A PostgreSQL database the bench may write (migrated first).")
    ] = "postgresql://postgres@127.0.0.1:5432/em_bench",
    repeats: Annotated[int, typer.Option(help="Calls per row.")] = 10,
    out: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) here.")] = None,
) -> None:
    """/compare of 3 keywords whose posts were scored before (target p50 < 500 ms) beside 3
    /analyze calls; export of a 1,000-post analysis (target < 1 s, memory flat)."""
    _offline()
    from tooling.bench.compare import bench_compare

    kws = [k.strip() for k in keywords.split(",") if k.strip()]
    _emit_report(bench_compare(model, jsonl, kws, redis_url, postgres_url, repeats), out)
