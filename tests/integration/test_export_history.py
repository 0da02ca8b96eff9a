"""Export against real Redis and PostgreSQL, without the app: the same bytes from the held
record and, after the sync, from PostgreSQL; 404 and 410 as the route answers them."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import psycopg
import pytest
import redis

from serve_app.flow.export import AnalysisExpired, AnalysisNotFound, iso_utc
from serve_app.stores.export_store import from_postgres, from_record
from serve_app.stores.history import REC_PREFIX, HistorySync, current_format, store_record
from tests.unit.test_export import TITLES, make_test_record

pytestmark = pytest.mark.integration


def _export(src_parts: object) -> bytes:
    return b"".join(src_parts)  # type: ignore[arg-type]


def test_bytes_are_identical_before_and_after_the_sync(clean_history: tuple[str, redis.Redis]) -> None:
    pg_url, r = clean_history
    rec = make_test_record(40)
    store_record(r, rec)
    held = current_format(json.loads(r.get(REC_PREFIX + rec["query_id"])))  # type: ignore[arg-type]
    before = {fmt: _export(from_record(held, fmt).parts) for fmt in ("csv", "jsonl")}  # type: ignore[arg-type]
    sync = HistorySync(r, pg_url)
    try:
        assert sync.sync_batch().synced == 1
    finally:
        sync.close()
    r.delete(REC_PREFIX + rec["query_id"])  # the held record expired: PostgreSQL answers now
    for fmt in ("csv", "jsonl"):
        src = from_postgres(pg_url, rec["query_id"], fmt)  # type: ignore[arg-type]
        assert src.where == "postgres" and src.keyword == "python"
        assert _export(src.parts) == before[fmt], fmt
    # The CSV from PostgreSQL, read back by csv and pandas, holds the record's scored texts.
    text = before["csv"].decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    scored = [p for p in rec["posts"] if p["predictions"]]
    assert [row["id"] for row in rows] == list(df["id"]) == [p["id"] for p in scored]
    assert [row["created_utc"] for row in rows] == [iso_utc(p["created_utc"]) for p in scored]
    assert rows[0]["title"] == "'" + TITLES[0]  # "=HYPERLINK(...)" neutralised
    assert float(df["sentiment_confidence"][1]) == scored[1]["predictions"]["sentiment"]["confidence"]


def test_unknown_and_expired_ids_say_which(clean_history: tuple[str, redis.Redis]) -> None:
    pg_url, r = clean_history
    with pytest.raises(AnalysisNotFound, match=r"no analysis 0+ is recorded") as err:
        from_postgres(pg_url, "0" * 32, "csv")
    assert not isinstance(err.value, AnalysisExpired)
    with pytest.raises(AnalysisNotFound, match="PostgreSQL is not configured"):
        from_postgres(None, "0" * 32, "csv")
    rec = make_test_record(5)
    store_record(r, rec)
    sync = HistorySync(r, pg_url)
    try:
        sync.sync_batch()
    finally:
        sync.close()
    with psycopg.connect(pg_url, autocommit=True) as c:  # as a record synced before 0010 would be
        c.execute("DELETE FROM analysis_texts WHERE query_id = %s", (rec["query_id"],))
    with pytest.raises(AnalysisExpired, match="no longer kept"):
        from_postgres(pg_url, rec["query_id"], "csv")
