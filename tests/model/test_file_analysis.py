"""`emotion-monitor analyze --file`: the same answer as the service's functions give for the
same texts, from JSONL and CSV alike; bad input exits 2 with a message; memory stays flat."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve_app.counting.quantify import Counting
from serve_app.domain.posts import Post, clean_body
from serve_app.flow.aggregate import strongly_negative, summarize
from serve_app.flow.file_analysis import FileOptions, analyze_file, served_models
from serve_app.flow.text_files import TextFields
from serve_app.model.batching import probs_to_rows
from serve_app.model.predictor import OnnxPredictor
from serve_app.model.preprocess import post_text
from tooling.bench.file import _peak_rss, write_texts
from tooling.cli import app

pytestmark = pytest.mark.model

N = 120


def _posts(data_root: Path, n: int = N) -> list[dict[str, str]]:
    out = []
    with (data_root / "reddit_sample" / "posts.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            body = clean_body(r["body"])  # as the file's hygiene cleans it
            if post_text(r["title"], body).strip():
                out.append({"id": r["id"], "title": r["title"], "body": body})
            if len(out) >= n:
                break
    return out


def _write(tmp_path: Path, rows: list[dict[str, str]]) -> tuple[Path, Path]:
    jsonl, table = tmp_path / "texts.jsonl", tmp_path / "texts.csv"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with table.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "title", "body"])
        w.writeheader()
        w.writerows(rows)
    return jsonl, table


def test_a_file_gets_the_services_answer_for_the_same_texts(
    tmp_path: Path, model_dir: Path, data_root: Path
) -> None:
    rows = _posts(data_root)
    jsonl, table = _write(tmp_path, rows)
    # Every text scored, as the direct path below scores them all (the language rule is the
    # service's select_posts either way; another test sees it exclude).
    opts = FileOptions(include_other_languages=True)
    fields = TextFields.parse("title,body", "id")
    got = analyze_file(jsonl, fields, model_dir, opts, 128, chunk_size=1000).model_dump()
    from_csv = analyze_file(table, fields, model_dir, opts, 128, chunk_size=1000).model_dump()
    assert {**from_csv, "keyword": got["keyword"]} == got

    # The service's own functions on the same texts: predictor, rows, Aggregator, triage.
    models = served_models(model_dir, 128, None)
    predictor = OnnxPredictor(model_dir, threads=2, max_length=128, batch_size=32)
    probs = predictor.probabilities_all([post_text(r["title"], r["body"]) for r in rows])
    preds = {t: probs_to_rows(probs[t], models.tasks[t].labels) for t in models.tasks}
    counting = {t: m.counting or Counting(m.breakdown_method, m.adjustment) for t, m in models.tasks.items()}
    posts = [Post(r["id"], r["title"], r["body"], "", 0.0, 0, "") for r in rows]
    summary = summarize("texts.jsonl", preds, False, counting, posts=posts)
    for field, expected in summary.breakdowns.items():
        assert got[field] == expected, field
    assert got["strongly_negative"] == strongly_negative(
        [r["id"] for r in rows], preds["sentiment"], 0.8, "negative"
    )
    assert got["net_sentiment"] == summary.net_sentiment
    assert got["drivers"] == summary.drivers and any(summary.drivers["emotion"].values())
    assert got["representatives"] == summary.representatives
    assert got["count"] == got["scored"] == N and got["post_source"] == "file"


def test_other_languages_and_empty_rows_are_counted_as_the_service_counts_them(
    tmp_path: Path, model_dir: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    texts = [
        "I love this phone, the battery lasts for days and the screen is gorgeous.",
        "",
        "Ce produit est une catastrophe, je suis vraiment très déçu et en colère contre le vendeur.",
        "Worst customer service I have ever had, I waited three hours and nobody called back.",
    ]
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    a = analyze_file(path, TextFields(), model_dir, FileOptions(), 128)
    assert (a.count, a.scored, a.excluded) == (3, 2, 1)
    assert a.excluded_reasons == {"language": 1, "empty": 1}
    assert a.languages.get("fr") == 1


def test_the_cli_prints_the_answer_as_json_and_as_tables(tmp_path: Path, data_root: Path) -> None:
    jsonl, table = _write(tmp_path, _posts(data_root, 40))
    runner = CliRunner()
    r = runner.invoke(app, ["analyze", "--file", str(table), "--text-field", "title,body", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["count"] == 40 and {x["label"] for x in data["agg"]} >= {"anger", "joy"}
    assert sum(x["count"] for x in data["sentiment_agg"]) == data["scored"]
    args = ["analyze", "--file", str(jsonl), "--text-field", "title,body", "--id-field", "id"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "40 posts about 'texts.jsonl' from file" in r.stdout and "sentiment (" in r.stdout


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, [], "absent.jsonl: no such file"),
        ("texts.txt", [], "unknown extension '.txt'"),
        ("texts.jsonl", ["--text-field", "review"], "no field 'review'"),
        ("texts.csv", ["--text-field", "review"], "no field 'review'"),
        ("texts.jsonl", ["--text-field", "title", "--id-field", "uid"], "no field 'uid'"),
        ("texts.jsonl", ["--text-field", "title", "--task", "toxicity"], "--task toxicity"),
    ],
)
def test_bad_input_exits_2_with_a_message_naming_it(
    tmp_path: Path, make: str | None, args: list[str], message: str
) -> None:
    path = tmp_path / (make or "absent.jsonl")
    if make is not None:
        _write(tmp_path, [{"id": "1", "title": "Battery died again", "body": "Third time."}])
        if make.endswith(".txt"):
            path.write_text("hello\n")
    r = CliRunner().invoke(app, ["analyze", "--file", str(path), *args])
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output


@pytest.mark.timeout(1500)
def test_memory_stays_flat_from_2k_to_20k_texts(tmp_path: Path, data_root: Path, model_dir: Path) -> None:
    """Each size in a fresh process (GNU time's peak RSS), titles + bodies (~1.5 kB a text).
    Measured here: 494 -> 593 MiB (the drivers' term table filling towards its prune bound,
    and the bootstrap's blocks); with the bootstrap's weights in one piece it was 497 -> 761."""
    if not Path("/usr/bin/time").is_file():
        pytest.skip("GNU time is needed to read a fresh process's peak RSS")
    env = {
        **os.environ,
        "EMOTION_MONITOR_MODEL__MAX_LENGTH": "8",
        "EMOTION_MONITOR_MODEL__DIR": str(model_dir),
    }
    cli = str(Path(sys.executable).parent / "emotion-monitor")
    peaks = []
    for n in (2_000, 20_000):
        path = write_texts(data_root / "reddit_sample" / "posts.jsonl", n, tmp_path / f"t{n}.jsonl")
        peaks.append(_peak_rss([cli, "analyze", "--file", str(path), "--json"], env)[0])
    print(f"peak RSS: 2k texts {peaks[0]:.0f} MiB, 20k texts {peaks[1]:.0f} MiB")
    assert peaks[1] - peaks[0] < 150, peaks
