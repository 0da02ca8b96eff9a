"""The `emotion-monitor` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from serve_app.domain.tasks import DEFAULT_TASK
from tooling import cli_scope
from tooling.cli_drivers import driver_lines

app = typer.Typer(
    help="emotion-monitor: train, evaluate and serve an emotion classifier for public posts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="PostgreSQL history: schema migrations.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print tables (medians, side by side).", no_args_is_help=True)
model_app = typer.Typer(help="Model registry: push, pull and list artifact versions.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(bench_app, name="bench")
app.add_typer(db_app, name="db")
cluster_app = typer.Typer(
    help="A multi-node Ray cluster on this machine (head + workers, each its own `ray start`).",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")
watch_app = typer.Typer(help="Watchlists: keywords the service monitors over time.", no_args_is_help=True)
app.add_typer(watch_app, name="watch")
ServiceUrl = Annotated[str, typer.Option(help="Service base URL.", envvar="EMOTION_MONITOR_URL")]
DEFAULT_URL = "http://127.0.0.1:8000"
ClusterRoot = Annotated[Path, typer.Option(help="Where the cluster keeps its state and node logs.")]


def _offline() -> None:
    # The base model is on disk; never let transformers reach for the hub here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


DataRoot = Annotated[
    Path | None,
    typer.Option(help="Root of the data sets named in the config (default ../shared/data)."),
]


TrackOption = Annotated[
    bool, typer.Option(help="Log the run to MLflow (EMOTION_MONITOR_MLFLOW_TRACKING_URI; runs/mlflow.db).")
]


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="Training config (YAML).")] = Path("configs/multitask.yaml"),
    out: Annotated[Path, typer.Option(help="Where to write the INT8 artifact.")] = Path("models/multitask"),
    run_dir: Annotated[Path, typer.Option(help="Checkpoints, ONNX intermediates, logs.")] = Path(
        "runs/multitask"
    ),
    data_root: DataRoot = None,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (smoke runs).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many examples per source.")] = None,
    export: Annotated[bool, typer.Option(help="Export, quantize and evaluate after training.")] = True,
    track: TrackOption = True,
) -> None:
    """Fine-tune the base model, then export, quantize, evaluate and write the model card."""
    _offline()
    from training.config import load_config
    from training.data import default_data_root
    from training.pipeline import build_artifact
    from training.tracking import maybe_tracked_run
    from training.train import train as run_train

    cfg = load_config(config, {"epochs": epochs, "max_steps": max_steps})
    if limit is not None:
        for src in cfg.train:
            src.limit = limit
    root = data_root or default_data_root()
    with maybe_tracked_run(cfg, config, root, track) as tracker:
        result = run_train(cfg, run_dir, root, on_epoch=tracker.on_epoch if tracker else None)
        typer.echo(f"best epoch {result.best_epoch}; checkpoint {result.checkpoint}")
        if export:
            card = build_artifact(cfg, result.checkpoint, out, run_dir, root, result)
            if tracker:
                tracker.finish(card, out)
            typer.echo(json.dumps(_summary(card), indent=2))


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Option(help="best.pt written by `train`.")] = Path(
        "runs/multitask/best.pt"
    ),
    config: Annotated[Path, typer.Option(help="The training config used.")] = Path("configs/multitask.yaml"),
    out: Annotated[Path, typer.Option(help="Where to write the INT8 artifact.")] = Path("models/multitask"),
    data_root: DataRoot = None,
    track: TrackOption = True,
) -> None:
    """Export a checkpoint to ONNX, pick an INT8 scheme and counting method on validation,
    write the artifact; logs the run (its training history included) to MLflow."""
    _offline()
    from training.config import load_config
    from training.data import default_data_root
    from training.pipeline import build_artifact
    from training.tracking import maybe_tracked_run

    cfg = load_config(config)
    root = data_root or default_data_root()
    with maybe_tracked_run(cfg, config, root, track) as tracker:
        card = build_artifact(cfg, checkpoint, out, checkpoint.parent, root)
        if tracker:
            for record in card["training"].get("history") or []:
                tracker.on_epoch(record)
            tracker.finish(card, out)
    typer.echo(json.dumps(_summary(card), indent=2))


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    return {
        d: {
            p: {
                "accuracy": round(r[p]["accuracy"], 4),
                "macro_f1": round(r[p]["macro_f1"], 4),
                "breakdown_tvd": None
                if r[p]["breakdown"]["tvd"] is None
                else round(r[p]["breakdown"]["tvd"], 4),
            }
            for p in ("fp32", "int8")
        }
        for d, r in card["metrics"].items()
    }


def _card_sets(model: Path) -> list[tuple[str, Path]]:
    """(task, file) of every data set the artifact's model card reports on."""
    card_file = model / "model_card.json"
    if not card_file.is_file():
        raise typer.BadParameter(
            f"{model} has no model_card.json: name the data with --data", param_hint="--data"
        )
    card = json.loads(card_file.read_text())
    return [(res["task"], Path(res["int8"]["data"])) for res in card["metrics"].values()]


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="Labelled JSONL file; repeat for several (default: every set the model card reports)."
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="The head to evaluate --data with (default: the first).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    confusion_png: Annotated[Path | None, typer.Option(help="Write the confusion matrix PNG here.")] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads.")] = 2,
    shift: Annotated[
        bool,
        typer.Option(
            "--shift",
            help="Instead: the shifted-mix protocol (uniform and near-natural label mixes; every counting "
            "method's mean / p90 TVD and interval coverage).",
        ),
    ] = False,
    sizes: Annotated[str, typer.Option(help="--shift: sample sizes, comma-separated.")] = "250,50,1000",
    draws: Annotated[int, typer.Option(help="--shift: samples per protocol and size.")] = 500,
    seed: Annotated[int, typer.Option(help="--shift: seed of folds, mixes and samples.")] = 0,
) -> None:
    """Per data set: accuracy, macro-F1, per-class figures, the confusion matrix, the breakdown
    error (TVD between predicted and true label shares, for each counting method) and the
    share of neutral texts given another label. Accuracy, macro-F1, macro-recall and the argmax
    TVD carry 95 % bootstrap intervals over texts (`intervals`): what another sample of the
    same size could give.

    A data set may use a subset of the model's labels (CARER has no neutral): a prediction
    outside them counts as wrong. Prints one JSON object per file with --json.
    """
    from serve_app.model.predictor import OnnxPredictor
    from training.evaluate import evaluate_predictor, plot_confusion

    predictor = OnnxPredictor(model, threads=threads)
    head = task or predictor.task
    sets = [(head, f) for f in data] if data else _card_sets(model)
    if shift:  # tooling/cli_commands/counting.py
        from tooling.cli_commands.counting import shift_lines, shift_tables

        ns = [int(x) for x in sizes.split(",") if x.strip()]
        tables = shift_tables(model, sets, ns, draws, seed, threads)
        for name, t_ in tables.items():
            typer.echo(json.dumps(t_) if as_json else "\n".join(shift_lines(name, t_["protocol"])))  # type: ignore[arg-type]
        return
    reports: dict[str, Any] = {}
    for t, f in sets:
        view = predictor.for_task(t)
        report, _ = evaluate_predictor(view, f)
        report["model_version"] = predictor.version
        reports[str(f)] = report
        if confusion_png is not None:
            target = (
                confusion_png
                if len(sets) == 1
                else confusion_png.with_name(
                    f"{confusion_png.stem}_{f.parent.name}_{f.stem}{confusion_png.suffix}"
                )
            )
            plot_confusion(report["confusion_matrix"], view.labels, f"{predictor.version} {t} on {f}", target)
    if as_json:
        typer.echo(json.dumps(reports, indent=2))
        return
    for name, r in reports.items():
        typer.echo("\n".join(format_evaluation(name, r)))


def format_evaluation(name: str, r: dict[str, Any]) -> list[str]:
    """One evaluation report as text: the headline figures, then one line per class."""
    bd = r["breakdown"]
    ngo = r.get("neutral_given_other")
    ci = r.get("intervals", {})

    def fig(key: str) -> str:
        low_high = ci.get(key)
        return f"{r[key]:.4f}" + ("" if low_high is None else " [{:.4f}, {:.4f}]".format(*low_high))

    lines = [
        f"{name} ({r['task']}): n={r['n']} accuracy={fig('accuracy')} macro_f1={fig('macro_f1')} "
        f"macro_recall={fig('macro_recall')} breakdown TVD={bd['tvd']:.4f} "
        f"(served: {bd['served_method']}; "
        + ", ".join(f"{m} {v['tvd']:.4f}" for m, v in bd["methods"].items())
        + ")"
        + ("" if ngo is None else f" neutral_given_other={ngo:.3f}")
    ]
    shares = bd["methods"][bd["served_method"]]["shares"]
    for lab, m in r["per_class"].items():
        lines.append(
            f"  {lab:<9} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} n={m['support']}"
            f"  true {100 * bd['true'][lab]:.1f}% estimated {100 * shares[lab]:.1f}%"
        )
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
    url: Annotated[str, typer.Option(help="Service base URL.", envvar="EMOTION_MONITOR_URL")] = (
        "http://127.0.0.1:8000"
    ),
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
    import base64

    import httpx

    if file is not None:  # tooling/cli_commands/file_analysis.py
        from tooling.cli_commands.file_analysis import FileRequest, run_file_analysis

        run_file_analysis(
            FileRequest(file, text_field, id_field, as_json, ray_address, tuple(tasks or ()),
                        include_other_languages, dedupe)
        )  # fmt: skip
        return
    if keyword is None:
        typer.echo("give a KEYWORD (posts via the service) or --file (your own texts)", err=True)
        raise typer.Exit(2)

    body: dict[str, Any] = {"keyword": keyword, "limit": limit, "return_plot": plot is not None}
    if source:
        body["source"] = source
    if tasks:
        body["tasks"] = tasks
    if include_other_languages:
        body["include_other_languages"] = True
    body |= cli_scope.scope_body(subreddit, exclude_subreddit, time_window, since, until, sort)
    body |= cli_scope.comments_body(comments, count_over)
    try:
        r = httpx.post(f"{url.rstrip('/')}/analyze", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc} (is the service running? `make run`)", err=True)
        raise typer.Exit(2) from None
    if r.status_code != 200:
        typer.echo(f"HTTP {r.status_code}: {r.text}", err=True)
        raise typer.Exit(1)
    data = r.json()
    if export is not None:  # tooling/cli_commands/compare.py
        from tooling.cli_commands.compare import save_export

        save_export(url, data.get("analysis_id"), export, timeout)
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in format_analysis(data):
        typer.echo(line)
    if plot is not None and data.get("plot_base64"):
        plot.write_bytes(base64.b64decode(data["plot_base64"]))
        typer.echo(f"chart -> {plot}")


def _call(method: str, url: str, path: str, timeout: float = 60.0, **kwargs: Any) -> Any:
    """One API call with the API key (EMOTION_MONITOR_API_KEY) if set; exits with the error."""
    import httpx

    from serve_app.config.settings import get_settings, secret

    headers = {"X-API-Key": key} if (key := secret(get_settings().api_key)) else {}
    try:
        r = httpx.request(method, f"{url.rstrip('/')}{path}", headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc} (is the service running? `make run`)", err=True)
        raise typer.Exit(2) from None
    if r.status_code >= 400:
        typer.echo(f"HTTP {r.status_code}: {r.text}", err=True)
        raise typer.Exit(1)
    return r.json() if r.content else None


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


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Serve config (import_path + args).")] = Path(
        "serve_config.yaml"
    ),
    stop_timeout: Annotated[
        float, typer.Option(help="Seconds a stop may take before the service is killed.")
    ] = 60.0,
    keep_services: Annotated[
        bool, typer.Option(help="Leave the embedded Redis and PostgreSQL running after the stop.")
    ] = False,
) -> None:
    """Run the service (`serve run CONFIG`) and stop it gracefully on SIGTERM or SIGINT.

    A stop drains in-flight requests, hands held history records over, stops the embedded
    Redis and PostgreSQL (unless --keep-services) and exits 0 within --stop-timeout;
    `docker stop`, `kubectl delete` and `systemctl stop` send SIGTERM.
    """
    import logging
    import shutil
    import sys

    from serve_app.config.settings import Settings
    from serve_app.runtime.embedded import stop_embedded
    from serve_app.runtime.graceful import run_gracefully

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    serve = shutil.which("serve") or str(Path(sys.executable).with_name("serve"))
    rc = run_gracefully([serve, "run", str(config)], stop_timeout)
    settings = Settings()
    if settings.embedded and not keep_services:
        # After Ray is gone: its supervisor actor can no longer restart them.
        stop_embedded(settings.data_dir)
        logging.getLogger("emotion_monitor.run").warning("embedded servers in %s stopped", settings.data_dir)
    raise typer.Exit(rc)


@app.command()
def loadtest(
    host: Annotated[str, typer.Option(help="Service base URL.")] = "http://127.0.0.1:8000",
    users: Annotated[int, typer.Option(help="Concurrent Locust users.")] = 32,
    duration: Annotated[int, typer.Option(help="Seconds to run (the run always stops).")] = 60,
    spawn_rate: Annotated[float | None, typer.Option(help="Users started per second.")] = None,
    user_class: Annotated[list[str] | None, typer.Option(help="Only these Locust user classes.")] = None,
    shape: Annotated[str | None, typer.Option(help="'burst': ramp up, hold, ramp down.")] = None,
    out: Annotated[Path, typer.Option(help="Where Locust's CSVs and HTML report go.")] = Path("runs/locust"),
) -> None:
    """Run Locust headless against a running service and print RPS and latency percentiles."""
    from tooling.loadtest import run_locust, summary_table

    rows = run_locust(host, users, duration, out, spawn_rate, user_class, shape)
    typer.echo(summary_table(rows))
    typer.echo(f"CSVs: {out}/locust_*.csv  report: {out}/report.html")
    if any(r["name"] == "all" and r["failures"] for r in rows):
        raise typer.Exit(1)


@app.command("score-file")
def score_file_cmd(
    input: Annotated[Path, typer.Option(help="JSONL with a text field per line.")],
    output: Annotated[Path, typer.Option(help="Where to write the rows, each with its prediction.")],
    app_name: Annotated[str, typer.Option(help="Serve application name.")] = "emotion-monitor",
    field: Annotated[str, typer.Option(help="Name of the text field.")] = "text",
    chunk: Annotated[int, typer.Option(help="Texts per handle call.")] = 64,
    task: Annotated[str, typer.Option(help="Task to classify by; the prediction goes under its name.")] = (
        DEFAULT_TASK
    ),
) -> None:
    """Score a JSONL file through a running Serve app by DeploymentHandle (a Ray job)."""
    from serve_app.flow.jobs import score_file

    n = score_file(input, output, app_name=app_name, chunk=chunk, field=field, task=task)
    typer.echo(f"scored {n} rows -> {output}")


def _emit_report(report: str, out: Path | None) -> None:
    """Print a benchmark report, and write it to `out` too when given."""
    typer.echo(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n")


@bench_app.command("analyze")
def bench_analyze_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    jsonl: Annotated[Path, typer.Option(help="Post corpus.")] = Path(
        "../shared/data/reddit_sample/posts.jsonl"
    ),
    keywords: Annotated[str, typer.Option(help="Comma-separated keywords with >= 250 posts.")] = (
        "game,python,money,dog,work,music,school,food"
    ),
    repeats: Annotated[int, typer.Option(help="Cold calls per keyword.")] = 3,
    max_length: Annotated[int, typer.Option(help="Tokens per post for the served app.")] = 128,
    lengths: Annotated[str, typer.Option(help="Truncation lengths to compare.")] = "64,128,256,512",
    redis_url: Annotated[str, typer.Option(help="Redis for the cache (a DB the bench may write).")] = (
        "redis://127.0.0.1:6379/14"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) here.")] = None,
) -> None:
    """/analyze cold vs cache hit beside model-only time, and the truncation trade-off."""
    _offline()
    from tooling.bench import bench_analyze

    report = bench_analyze(
        model,
        jsonl,
        [k.strip() for k in keywords.split(",") if k.strip()],
        repeats,
        max_length,
        redis_url or None,
        [int(x) for x in lengths.split(",")],
    )
    _emit_report(report, out)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations not yet applied (EMOTION_MONITOR_POSTGRES_URL or embedded)."""
    from serve_app.config.settings import get_settings
    from serve_app.runtime.embedded import resolve_infrastructure
    from serve_app.stores.history import migrate

    infra = resolve_infrastructure(get_settings())
    if infra.postgres_url is None:
        typer.echo(
            "no PostgreSQL: set EMOTION_MONITOR_POSTGRES_URL or EMOTION_MONITOR_EMBEDDED=true", err=True
        )
        raise typer.Exit(2)
    applied = migrate(infra.postgres_url)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "schema up to date")


@app.command()
def sync(
    now: Annotated[bool, typer.Option("--now", help="Run one full pass regardless of CPU.")] = False,
    address: Annotated[str, typer.Option(help="Ray cluster address.")] = "auto",
    app_name: Annotated[str, typer.Option(help="Serve application name.")] = "emotion-monitor",
) -> None:
    """Show the history sync's state; with --now, force a pass (recovery + drain)."""
    import ray

    from deployments.actor_loops import get_actor, sync_actor_name
    from serve_app.domain.schemas import SyncStatus

    ray.init(address=address, log_to_driver=False)
    try:
        actor = get_actor(sync_actor_name(app_name))
    except ValueError:
        typer.echo("the sync actor is not running (start the app with PostgreSQL configured)", err=True)
        raise typer.Exit(2) from None
    state = ray.get(actor.sync_now.remote() if now else actor.status.remote())
    # The actor's own fields, as printed before the status was typed (the ingress adds the rest).
    fields = SyncStatus.model_validate(state).model_dump(mode="json", exclude={"unsaved_in_ingress"})
    typer.echo(json.dumps(fields, indent=2))


@bench_app.command("predict")
def bench_predict_cmd(
    model: Annotated[Path, typer.Option(help="INT8 artifact directory.")] = Path("models/multitask"),
    fp32: Annotated[
        Path | None, typer.Option(help="FP32 ONNX (from `train`) for the model-only row.")
    ] = Path("runs/emotion/export/model_fp32.onnx"),
    checkpoint: Annotated[Path | None, typer.Option(help="best.pt for the torch eager row.")] = Path(
        "runs/emotion/best.pt"
    ),
    texts: Annotated[Path, typer.Option(help="JSONL with a text field.")] = Path(
        "../shared/data/reddit_emotion/validation.jsonl"
    ),
    users: Annotated[str, typer.Option(help="Concurrent users, comma-separated.")] = "1,8,32,64",
    seconds: Annotated[int, typer.Option(help="Seconds per load row.")] = 20,
    batch_users: Annotated[int, typer.Option(help="Users sending 64-text batches.")] = 4,
    replicas: Annotated[str, typer.Option(help="Classifier replica counts to compare.")] = "1,2",
    threads: Annotated[int, typer.Option(help="ORT threads in total (the cores).")] = 2,
    out: Annotated[Path | None, typer.Option(help="Also write the tables here.")] = None,
) -> None:
    """Model only (torch/FP32/INT8), Serve vs single-process baseline on /predict, 64-text batches."""
    _offline()
    from tooling.bench import bench_predict

    report = bench_predict(
        model,
        fp32,
        checkpoint,
        texts,
        [int(u) for u in users.split(",")],
        seconds,
        batch_users,
        [int(r) for r in replicas.split(",")],
        threads,
    )
    _emit_report(report, out)


@bench_app.command("all")
def bench_all_cmd(
    fp32: Annotated[
        Path | None, typer.Option(help="FP32 ONNX (from `train`) for the model-only row.")
    ] = Path("runs/emotion/export/model_fp32.onnx"),
    checkpoint: Annotated[Path | None, typer.Option(help="best.pt for the torch eager row.")] = Path(
        "runs/emotion/best.pt"
    ),
    seconds: Annotated[int, typer.Option(help="Seconds per /predict load row.")] = 15,
    keywords: Annotated[
        str, typer.Option(help="Keywords for the /analyze rows.")
    ] = "game,python,money,music",
    redis_url: Annotated[str, typer.Option(help="Redis for the cache (a DB the bench may write).")] = (
        "redis://127.0.0.1:6379/14"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) here.")] = None,
) -> None:
    """Every row of issue 5's table in one run: model only, /predict vs the baseline, 64-text
    batches, then /analyze cold and cache hit (both tasks, one encoder)."""
    _offline()
    from tooling.bench import bench_analyze, bench_predict

    parts = [
        bench_predict(
            Path("models/multitask"),
            fp32,
            checkpoint,
            Path("../shared/data/reddit_emotion/validation.jsonl"),
            [1, 8, 32, 64],
            seconds,
            4,
            [1, 2],
            2,
        ),
        bench_analyze(
            Path("models/multitask"),
            Path("../shared/data/reddit_sample/posts.jsonl"),
            [k.strip() for k in keywords.split(",") if k.strip()],
            3,
            128,
            redis_url or None,
            [64, 128, 256],
        ),
    ]
    report = "\n\n".join(parts)
    _emit_report(report, out)


@bench_app.command("hold")
def bench_hold_cmd(
    redis_url: Annotated[
        str, typer.Option(help="A Redis the bench may write to.")
    ] = "redis://127.0.0.1:6379/11",
    records: Annotated[int, typer.Option(help="Analyses handed over.")] = 100,
    posts: Annotated[int, typer.Option(help="Posts per analysis.")] = 250,
    journal_dir: Annotated[Path, typer.Option(help="Where the journal is written.")] = Path(
        ".emotion-monitor/journal-bench"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the table here.")] = None,
) -> None:
    """What one analysis's history record costs to hand over: Redis vs the fsynced journal."""
    from tooling.bench import bench_hold

    _emit_report(bench_hold(redis_url, records, posts, journal_dir), out)


@bench_app.command("sync")
def bench_sync_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory.")] = Path("models/multitask"),
    redis_url: Annotated[
        str, typer.Option(help="A Redis DB the bench may flush.")
    ] = "redis://127.0.0.1:6379/11",
    postgres_url: Annotated[str, typer.Option(help="A database the bench may truncate.")] = (
        "postgresql://postgres@127.0.0.1:5432/test"
    ),
    records: Annotated[int, typer.Option(help="Analyses in the backlog.")] = 200,
    posts: Annotated[int, typer.Option(help="Posts per analysis.")] = 250,
    users: Annotated[int, typer.Option(help="Concurrent /predict users.")] = 16,
    seconds: Annotated[float, typer.Option(help="Load duration per run.")] = 20.0,
    texts: Annotated[Path, typer.Option(help="JSONL with a text field.")] = Path(
        "../shared/data/reddit_emotion/validation.jsonl"
    ),
    out: Annotated[Path | None, typer.Option(help="Also write the tables here.")] = None,
) -> None:
    """History sync throughput, and /predict p99 under load with the sync on vs off."""
    _offline()
    from tooling.bench import bench_sync

    report = bench_sync(model, redis_url, postgres_url, records, posts, users, seconds, texts)
    _emit_report(report, out)


def _registry() -> Any:
    from serve_app.config.settings import get_settings
    from serve_app.model.registry import registry_spec

    return registry_spec(get_settings()).open()


@model_app.command("push")
def model_push(
    src: Annotated[Path, typer.Argument(help="Artifact directory.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "emotion",
    version: Annotated[str | None, typer.Option(help="Version (default: the card's).")] = None,
) -> None:
    """Upload an artifact directory as a registry version."""
    from serve_app.model.predictor import read_artifact_info

    v = version or read_artifact_info(src).version
    typer.echo(f"pushed {name}/{_registry().push(name, v, src)}")


@model_app.command("pull")
def model_pull(
    dest: Annotated[Path, typer.Argument(help="Where to put the artifact.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "emotion",
    version: Annotated[str, typer.Option(help="Version or 'latest'.")] = "latest",
) -> None:
    """Download a registry version into a directory."""
    typer.echo(str(_registry().pull(name, version, dest)))


@model_app.command("list")
def model_list(name: Annotated[str, typer.Option(help="Model name.")] = "emotion") -> None:
    """List the versions of a model in the registry."""
    for v in _registry().versions(name):
        typer.echo(v)


@cluster_app.command("up")
def cluster_up(
    root: ClusterRoot = Path(".emotion-monitor/cluster"),
    workers: Annotated[int, typer.Option(min=0, max=8, help="Worker nodes.")] = 2,
    head_cpus: Annotated[int, typer.Option(min=1, help="Logical CPUs of the head.")] = 2,
    worker_cpus: Annotated[int, typer.Option(min=1, help="Logical CPUs of each worker.")] = 2,
) -> None:
    """Start a head (resource `frontend`) and workers (resource `classifier: 2` each).

    Then deploy with `serve deploy <config> --address <dashboard>`, pinning the app with
    the args `frontend_resources: {frontend: 1}` and `classifier_resources: {classifier: 1}`.
    """
    from tooling.local_cluster import LocalCluster

    st = LocalCluster(root).up(workers=workers, head_cpus=head_cpus, worker_cpus=worker_cpus)
    typer.echo(f"cluster up: {len(st.nodes)} nodes; RAY_ADDRESS={st.address}; dashboard {st.dashboard_url}")


@cluster_app.command("config")
def cluster_config(
    out: Annotated[Path, typer.Option(help="Where to write the derived Serve config.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="ARG=VALUE for the app's args (VALUE is YAML), repeatable."),
    ] = None,
    src: Annotated[Path, typer.Option(help="The Serve config to start from.")] = Path("serve_config.yaml"),
    http_host: Annotated[
        str | None,
        typer.Option(help="Bind address of Serve's HTTP proxy (e.g. 0.0.0.0 inside a container)."),
    ] = None,
) -> None:
    """Write SRC with some app args changed, validated: e.g. `--set predict_in_ingress=false`."""
    import yaml

    from deployments.app import derive_serve_config

    overrides: dict[str, Any] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            typer.echo(f"--set takes ARG=VALUE, got {item!r}", err=True)
            raise typer.Exit(2)
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        derived = derive_serve_config(yaml.safe_load(src.read_text()), overrides)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        typer.echo(f"invalid app args: {exc}", err=True)
        raise typer.Exit(2) from None
    if http_host:
        derived.setdefault("http_options", {})["host"] = http_host
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(derived, sort_keys=False))
    typer.echo(f"wrote {out}")


@cluster_app.command("status")
def cluster_status(root: ClusterRoot = Path(".emotion-monitor/cluster")) -> None:
    """Nodes, their resources and how many the cluster sees alive."""
    from tooling.local_cluster import LocalCluster

    typer.echo(json.dumps(LocalCluster(root).status(), indent=2))


@cluster_app.command("kill")
def cluster_kill(
    node: Annotated[str, typer.Argument(help="Node name, e.g. worker2.")],
    root: ClusterRoot = Path(".emotion-monitor/cluster"),
) -> None:
    """Crash one node (SIGKILL to all its processes): Serve moves its replicas."""
    from tooling.local_cluster import LocalCluster

    typer.echo(f"killed {LocalCluster(root).kill(node)} processes of {node}")


@cluster_app.command("down")
def cluster_down(root: ClusterRoot = Path(".emotion-monitor/cluster")) -> None:
    """Stop every node of the cluster and remove its temp dirs."""
    from tooling.local_cluster import LocalCluster

    LocalCluster(root).down()
    typer.echo("cluster down")


# Sub-commands that live in modules of their own register on `app` when imported here
# (after `app` and its sub-apps exist). One line per module.
from tooling import cli_commands  # noqa: E402,F401  (each module adds its commands)

if __name__ == "__main__":  # pragma: no cover
    app()
