"""The export's encoding: a record's scored texts as CSV (read back by the csv module and by
pandas) and JSON lines, the formula-injection guard, and the PostgreSQL rows' round trip."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from serve_app.domain.posts import Post
from serve_app.domain.question import Question
from serve_app.domain.records import HistoryRecord, PredictionRow
from serve_app.domain.schemas import Analysis
from serve_app.domain.tasks import TASKS
from serve_app.flow.export import (
    BOM,
    ExportText,
    chunks,
    filename,
    guard,
    iso_utc,
    record_chunks,
    text_rows,
    texts_from_record,
)
from serve_app.stores.history import make_record

pytestmark = pytest.mark.unit

TITLES = [
    '=HYPERLINK("http://evil","click")',
    "+1 for this",
    "-5 degrees today",
    "@everyone look",
    "\tindented",
    'plain, with a comma and "quotes"',
    "multi\nline title\r\nwith CRLF",
    "ünïcödé — emoji 😀",
    "",
]


def _row(task: str, i: int) -> PredictionRow:
    labels = TASKS[task].labels
    raw = [((i * 7 + j * 3) % 11) + 1.0 for j in range(len(labels))]
    total = sum(raw)
    scores = {lab: r / total for lab, r in zip(labels, raw, strict=True)}
    top = max(scores, key=lambda k: scores[k])
    return {"label": top, "confidence": scores[top], "scores": scores}


def make_test_record(n: int = len(TITLES), left_out: tuple[int, ...] = (2,)) -> HistoryRecord:
    posts = [
        Post(
            id=f"p{i}",
            title=TITLES[i % len(TITLES)],
            body=f"body {i}\nsecond line; =SUM(A1:A9)" if i % 2 else f"body {i}",
            subreddit="-sub" if i == 3 else "python",
            created_utc=1_700_000_000.0 + i * 61.5,
            score=i,
            url=f"https://www.reddit.com/r/python/comments/p{i}/",
            lang="en",
            lang_confidence=0.9,
        )
        for i in range(n)
    ]
    kept = [i for i in range(n) if i not in left_out]
    preds = {t: [_row(t, i) for i in kept] for t in ("emotion", "sentiment")}
    q = Question("python", 250, "jsonl", ("emotion", "sentiment"), 0.8)
    analysis = Analysis.model_validate(
        {
            "keyword": "python",
            "count": n,
            "post_source": "jsonl",
            "model_version": "v",
            "tasks": ["emotion", "sentiment"],
        }
    )
    return make_record(q, analysis, posts, preds, kept)


def _csv(rec: HistoryRecord) -> bytes:
    return b"".join(record_chunks(rec, "csv"))


def _unguard(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@", "\t", "\r") else cell


def _expected(rec: HistoryRecord) -> list[dict[str, str]]:
    """What every row must hold, from the record itself."""
    out = []
    for p in rec["posts"]:
        if not p["predictions"]:
            continue
        row = {"id": p["id"], "kind": "post", "link": p["url"], "subreddit": p["subreddit"],
               "created_utc": iso_utc(p["created_utc"]), "title": p["title"], "text": p["body"],
               "language": "en"}  # fmt: skip
        for t, pred in p["predictions"].items():
            row[f"{t}_label"] = pred["label"]
            row[f"{t}_confidence"] = repr(pred["confidence"])
            row.update({f"{t}_score_{lab}": repr(s) for lab, s in pred["scores"].items()})
        out.append(row)
    return out


def test_csv_read_back_by_the_csv_module_equals_the_records_texts() -> None:
    rec = make_test_record()
    data = _csv(rec)
    assert data.startswith(BOM.encode())
    got = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    expected = _expected(rec)
    assert len(got) == len(expected) == len(rec["posts"]) - 1  # the post left out has no scores
    for g, e in zip(got, expected, strict=True):
        assert {k: _unguard(g[k]) for k in e} == e
        assert (
            float(g["emotion_confidence"])
            == next(p for p in rec["posts"] if p["id"] == g["id"])["predictions"]["emotion"]["confidence"]
        )


def test_csv_read_back_by_pandas_equals_the_records_texts() -> None:
    rec = make_test_record()
    df = pd.read_csv(io.BytesIO(_csv(rec)), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    expected = _expected(rec)
    assert list(df["id"]) == [e["id"] for e in expected]
    for (_, g), e in zip(df.iterrows(), expected, strict=True):
        assert {k: _unguard(str(g[k])) for k in e} == e
    assert list(df.columns[:9]) == [
        "id", "kind", "parent_id", "link", "subreddit", "created_utc", "title", "text", "language"
    ]  # fmt: skip
    assert "sentiment_score_negative" in df.columns and "emotion_score_neutral" in df.columns


def test_a_title_starting_with_equals_is_neutralised() -> None:
    rec = make_test_record()
    rows = list(csv.DictReader(io.StringIO(_csv(rec).decode("utf-8-sig"), newline="")))
    first = next(r for r in rows if r["id"] == "p0")
    assert first["title"] == "'" + TITLES[0]
    assert next(r for r in rows if r["id"] == "p1")["title"] == "'+1 for this"
    assert next(r for r in rows if r["id"] == "p3")["subreddit"] == "'-sub"
    assert next(r for r in rows if r["id"] == "p4")["title"] == "'\tindented"
    # Text that only contains a formula later is left alone; numbers we write are never guarded.
    assert next(r for r in rows if r["id"] == "p1")["text"].startswith("body 1")
    assert not any(r["emotion_confidence"].startswith("'") for r in rows)
    assert [guard(x) for x in ("=1", "+1", "-1", "@a", "\tx", "\rx", "a=1", "")] == [
        "'=1", "'+1", "'-1", "'@a", "'\tx", "'\rx", "a=1", ""
    ]  # fmt: skip


def test_jsonl_keeps_raw_values_one_object_per_line() -> None:
    rec = make_test_record()
    lines = b"".join(record_chunks(rec, "jsonl")).decode().splitlines()
    objs = [json.loads(line) for line in lines]
    expected = [p for p in rec["posts"] if p["predictions"]]
    assert [o["id"] for o in objs] == [p["id"] for p in expected]
    for o, p in zip(objs, expected, strict=True):
        assert o["title"] == p["title"] and o["text"] == p["body"]  # no guard in JSON
        assert o["sentiment"] == p["predictions"]["sentiment"]
        assert o["created_utc"] == iso_utc(p["created_utc"]) and o["created_utc"].endswith("Z")


def test_postgres_rows_give_the_same_bytes_as_the_record() -> None:
    """The rows stored for PostgreSQL (`text_rows`), read back as the store reads them (JSON
    predictions, floats as stored), encode to exactly the record's bytes."""
    rec = make_test_record()
    stored = list(text_rows(rec))
    assert [r[1] for r in stored] == [i for i, p in enumerate(rec["posts"]) if p["predictions"]]
    back: list[ExportText] = [
        {
            "id": r[2],
            "kind": r[3],
            "parent_id": r[4],
            "link": r[5],
            "subreddit": r[6],
            "created_utc": r[7],
            "title": r[8],
            "text": r[9],
            "language": r[10],
            "predictions": json.loads(str(r[11])),
        }
        for r in stored
    ]
    for fmt in ("csv", "jsonl"):
        assert b"".join(chunks(fmt, rec["tasks"], back)) == b"".join(record_chunks(rec, fmt))  # type: ignore[arg-type]


def test_an_analysis_with_no_scored_text_exports_a_header_only() -> None:
    rec = make_test_record(3, left_out=(0, 1, 2))
    assert list(texts_from_record(rec)) == []
    data = _csv(rec).decode("utf-8-sig")
    assert data.count("\r\n") == 1 and data.startswith("id,kind,parent_id,link")
    assert b"".join(record_chunks(rec, "jsonl")) == b""


def test_a_large_export_streams_in_chunks() -> None:
    rec = make_test_record(1000, left_out=())
    parts = list(record_chunks(rec, "csv"))
    assert len(parts) == 1 + 10  # the header, then 100 rows per chunk
    assert max(len(p) for p in parts) < 100_000


def test_times_and_file_names() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    assert iso_utc(1.5) == "1970-01-01T00:00:01.500000Z"
    assert iso_utc(None) == ""
    assert filename("0123456789abcdef" * 2, "Ünï code/../x", "csv") == "n-code-x-0123456789ab.csv"
    assert filename("ab" * 16, "😀", "jsonl") == "analysis-abababababab.jsonl"


def test_an_unreachable_redis_says_retry_not_unknown() -> None:
    """A record answered while Redis was down waits in a journal: 503, not 404."""
    import asyncio

    import redis.asyncio as aioredis

    from serve_app.api.export_api import ExportDesk
    from serve_app.domain.errors import ServiceUnavailable
    from serve_app.flow.export import AnalysisNotFound
    from tooling.net import free_port

    down = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    with pytest.raises(ServiceUnavailable, match="Redis is unavailable"):
        asyncio.run(ExportDesk(down, None).source("a" * 32, "csv"))
    with pytest.raises(AnalysisNotFound, match="PostgreSQL is not configured"):
        asyncio.run(ExportDesk(None, None).source("a" * 32, "csv"))


def test_comments_are_exported_with_their_kind_and_post() -> None:
    import dataclasses

    rec = make_test_record(4, left_out=())
    posts = [
        Post(id="c1", title="", body="=cmd|' /C calc'!A0", subreddit="python", created_utc=1.7e9, score=1,
             url="https://www.reddit.com/r/python/comments/p0/_/c1/", kind="comment", parent_id="p0"),
    ]  # fmt: skip
    q = Question("python", 250, "jsonl", ("emotion", "sentiment"), 0.8)
    analysis = Analysis.model_validate(
        {
            "keyword": "python",
            "count": 1,
            "post_source": "jsonl",
            "model_version": "v",
            "tasks": ["emotion", "sentiment"],
        }
    )
    comment_rec = make_record(q, analysis, posts, {t: [_row(t, 0)] for t in ("emotion", "sentiment")})
    row = next(csv.DictReader(io.StringIO(_csv(comment_rec).decode("utf-8-sig"), newline="")))
    assert (row["kind"], row["parent_id"], row["title"]) == ("comment", "p0", "")
    assert row["text"] == "'=cmd|' /C calc'!A0"
    assert dataclasses.asdict(posts[0])["kind"] == "comment" and rec["posts"][0].get("kind", "post") == "post"
