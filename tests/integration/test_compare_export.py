"""/compare and the export through the whole Serve graph: real Ray, Redis, PostgreSQL, the
committed model and the JSONL corpus."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis

from serve_app.flow.export import iso_utc
from serve_app.stores.history import REC_PREFIX
from tooling.cli.compare import save_export

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(serve_url: str) -> httpx.Client:
    return httpx.Client(base_url=serve_url, timeout=180)


def test_compare_two_corpus_keywords_through_the_same_flow(
    client: httpx.Client, clean_cache: redis.Redis
) -> None:
    body = {"keywords": ["python", "dog"], "limit": 60, "source": "jsonl"}
    r = client.post("/compare", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["keywords"] == ["python", "dog"]
    assert [a["keyword"] for a in data["analyses"]] == ["python", "dog"]
    assert all(a["source"] == "inference" and a["analysis_id"] for a in data["analyses"])
    for task in data["analyses"][0]["tasks"]:
        rows = data["differences"][task]
        assert {d["label"] for d in rows} and all(d["keyword_a"] == "python" for d in rows)
        for d in rows:
            assert d["low"] <= d["diff"] <= d["high"] and 0 <= d["p_value"] <= d["p_holm"] <= 1
            assert d["diff"] == pytest.approx(d["a"] - d["b"], abs=0.011)
            assert d["significant"] == (d["p_holm"] < 0.05)
    assert "Holm" in data["method"]
    # The same caches as /analyze: each keyword's answer is now a cache hit, with the same id.
    for a in data["analyses"]:
        alone = client.post("/analyze", json={"keyword": a["keyword"], "limit": 60, "source": "jsonl"}).json()
        assert alone["source"] == "cache" and alone["analysis_id"] == a["analysis_id"]
        assert alone["agg"] == a["agg"]
    again = client.post("/compare", json=body).json()
    assert [a["source"] for a in again["analyses"]] == ["cache", "cache"]
    assert again["differences"] == data["differences"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"keywords": ["Python", "python "]}, "must differ"),
        ({"keywords": ["python"]}, "at least 2"),
        ({"keywords": ["a", "b", "c", "d", "e", "f"]}, "at most 5"),
        ({"keywords": ["python", "dog"], "limit": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_compare_requests_get_422_naming_the_field(client: httpx.Client, body: dict, says: str) -> None:
    r = client.post("/compare", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    field = "limit" if "limit" in body else "keywords"
    assert any(e["loc"][-1] == field and says in e["msg"] for e in detail), detail


def _get(client: httpx.Client, analysis_id: str, fmt: str) -> httpx.Response:
    return client.get(f"/analyses/{analysis_id}/posts", params={"format": fmt})


def test_export_is_the_same_bytes_before_and_after_the_sync(
    client: httpx.Client, clean_cache: redis.Redis, app_pg_url: str, tmp_path: Path
) -> None:
    import ray

    from deployments.actor_loops import SYNC_ACTOR, get_actor

    answer = client.post("/analyze", json={"keyword": "coffee", "limit": 40, "source": "jsonl"}).json()
    aid = answer["analysis_id"]
    assert aid and len(aid) == 32
    before = {fmt: _get(client, aid, fmt) for fmt in ("csv", "jsonl")}
    for resp in before.values():
        assert resp.status_code == 200 and resp.headers["x-export-source"] == "redis"
        assert resp.headers["content-disposition"].startswith('attachment; filename="coffee-')
    assert before["csv"].headers["content-type"].startswith("text/csv")
    # The CSV, read back by csv and by pandas, holds the answer's scored posts (its record).
    rec = json.loads(clean_cache.get(REC_PREFIX + aid))  # type: ignore[arg-type]
    scored = [p for p in rec["posts"] if p["predictions"]]
    assert len(scored) == answer["scored"]
    text = before["csv"].content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert [x["id"] for x in rows] == list(df["id"]) == [p["id"] for p in scored]
    for row, (_, frame_row), p in zip(rows, df.iterrows(), scored, strict=True):
        assert row["link"] == frame_row["link"] == p["url"]
        assert row["created_utc"] == iso_utc(p["created_utc"])
        for task, pred in p["predictions"].items():
            assert row[f"{task}_label"] == frame_row[f"{task}_label"] == pred["label"]
            assert float(row[f"{task}_confidence"]) == pred["confidence"]
    assert [json.loads(line)["id"] for line in before["jsonl"].text.splitlines()] == [p["id"] for p in scored]
    # A cached answer carries the id it was computed with.
    cached = client.post("/analyze", json={"keyword": "coffee", "limit": 40, "source": "jsonl"}).json()
    assert cached["source"] == "cache" and cached["analysis_id"] == aid
    state = ray.get(get_actor(SYNC_ACTOR).sync_now.remote())
    assert state.pending == 0 and state.last_forced_pass is not None and state.last_forced_pass.error is None
    clean_cache.delete(REC_PREFIX + aid)  # as when the held record's retention ends
    for fmt, first in before.items():
        after = _get(client, aid, fmt)
        assert after.status_code == 200 and after.headers["x-export-source"] == "postgres"
        assert after.content == first.content, fmt
        # `emotion-monitor analyze KEYWORD --export posts.<fmt>` saves the same bytes.
        saved = tmp_path / f"posts.{fmt}"
        save_export(str(client.base_url), aid, saved)
        assert saved.read_bytes() == first.content


def test_export_errors_say_what_is_wrong(client: httpx.Client) -> None:
    r = _get(client, "0" * 32, "csv")
    assert r.status_code == 404 and "no analysis" in r.json()["detail"]
    r = _get(client, "0" * 32, "xlsx")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "format"
    r = _get(client, "not-an-id", "csv")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "analysis_id"


def test_an_empty_answer_has_an_id_and_no_export(client: httpx.Client, clean_cache: redis.Redis) -> None:
    body = {"keyword": "python", "since": 0, "until": "2000-01-01T00:00:00Z", "source": "jsonl"}
    r = client.post("/analyze", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["count"] == 0 and answer["analysis_id"]
    # An analysis that fetched nothing leaves no history record, so nothing to export.
    missing = _get(client, answer["analysis_id"], "csv")
    assert missing.status_code == 404 and "fetched no posts" in missing.json()["detail"]
