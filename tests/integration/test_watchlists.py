"""Watchlists through the whole app: the API, the monitor actor, trends, spike alerts and
webhook delivery (a local receiver that is down, then up)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from serve_app.domain.records import PredictionRow
from serve_app.domain.tasks import TASKS
from serve_app.flow.analysis import BackgroundRun
from serve_app.model.predictor import read_artifact_info
from serve_app.stores.history import insert_records
from tests.conftest import MODEL_DIR
from tests.records import history_record
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

APP = "emotion-monitor"


@pytest.fixture()
def client(serve_url: str) -> httpx.Client:
    return httpx.Client(base_url=serve_url, timeout=120)


@pytest.fixture()
def no_watches(client: httpx.Client, app_pg_url: str, clean_cache: redis.Redis) -> Iterator[str]:
    def wipe() -> None:
        for w in client.get("/watch").json()["watches"]:
            client.delete(f"/watch/{w['keyword']}")
        with psycopg.connect(app_pg_url, autocommit=True) as c:
            c.execute("TRUNCATE alerts")

    wipe()
    yield app_pg_url
    wipe()


def monitor_pass() -> int:
    import ray

    from deployments.actor_loops import get_actor, monitor_actor_name

    return int(ray.get(get_actor(monitor_actor_name(APP)).run_once.remote(True), timeout=300))


def test_watch_api_validates_stores_and_removes(client: httpx.Client, no_watches: str) -> None:
    for body, field in [
        ({"keyword": "intel", "every_s": 30}, "every_s"),
        ({"keyword": "   ", "every_s": 60}, "keyword"),
        ({"keyword": "intel", "every_s": 60, "tasks": ["mood"]}, "tasks"),
        ({"keyword": "intel", "every_s": 60, "source": "twitter"}, "source"),
        ({"keyword": "intel", "every_s": 60, "extra": 1}, "extra"),
    ]:
        r = client.post("/watch", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.text
    r = client.post("/watch", json={"keyword": "Intel  Chips", "every_s": 300, "source": "jsonl"})
    assert r.status_code == 201, r.text
    assert r.json()["keyword"] == "Intel Chips" and r.json()["tasks"] == ["emotion", "sentiment"]
    # The same keyword in another case updates the watch instead of adding one.
    r = client.post("/watch", json={"keyword": "intel chips", "every_s": 600, "tasks": ["emotion"]})
    watches = client.get("/watch").json()["watches"]
    assert [(w["keyword"], w["every_s"], w["tasks"]) for w in watches] == [("intel chips", 600, ["emotion"])]
    assert client.delete("/watch/INTEL chips").status_code == 204
    r = client.delete("/watch/intel chips")
    assert r.status_code == 404 and "not watched" in r.json()["detail"]
    assert client.get("/trends", params={"keyword": "x", "bucket": "2h"}).status_code == 422


def test_the_monitor_polls_scores_new_posts_only_and_feeds_trends(
    client: httpx.Client, no_watches: str, clean_cache: redis.Redis
) -> None:
    from ray import serve

    assert (
        client.post(
            "/watch", json={"keyword": "coffee", "every_s": 60, "source": "jsonl", "limit": 60}
        ).status_code
        == 201
    )
    assert monitor_pass() == 1
    (w,) = client.get("/watch").json()["watches"]
    assert w["last_run_at"] and w["last_error"] is None
    trends = client.get("/trends", params={"keyword": "Coffee", "bucket": "1d", "since": 0}).json()
    posts = sum(b["posts"]["emotion"] for b in trends["buckets"])
    assert 0 < posts <= 60
    for b in trends["buckets"]:
        for task, shares in b["shares"].items():
            assert [s["label"] for s in shares] == list(TASKS[task].labels)
            assert abs(sum(s["pct"] for s in shares) - 100) < 0.1
            assert all(s["pct_low"] <= s["pct"] <= s["pct_high"] for s in shares)
    # A second poll finds the same posts: the per-post score cache answers, the models do not run.
    ingress = serve.get_deployment_handle("Ingress", app_name=APP)
    again = ingress.run_background.remote(
        BackgroundRun("coffee", 60, "jsonl", ("emotion", "sentiment"))
    ).result()
    assert again.computed and again.newly_scored == 0 and again.scored > 0
    # Trends count each post once however often it was analysed.
    trends2 = client.get("/trends", params={"keyword": "coffee", "bucket": "1d", "since": 0}).json()
    assert sum(b["posts"]["emotion"] for b in trends2["buckets"]) == posts


SPIKE_TERM = "burnt toaster"  # what the spike hour's angry posts are about


def spike_history(
    pg_url: str, keyword: str, now: float, version_of_hour: Callable[[int], str] | None = None
) -> None:
    """24 hours at 10 % anger, then an hour at 50 %: 30 posts an hour, one analysis each. The
    spike hour's angry posts say what it is about (`SPIKE_TERM`). Labelled by the served
    model's version unless `version_of_hour` says otherwise: spike baselines count only the
    version behind the keyword's newest analysis, and the monitor's own poll (now) is newer
    than the spike hour's record (half past the hour) for half of every hour."""
    served = read_artifact_info(MODEL_DIR).version
    records = []
    for h in range(25):
        share = 15 if h == 24 else 3
        start = (now // 3600 - 24 + h) * 3600
        labels = ["anger"] * share + ["neutral"] * (30 - share)
        posts = [
            {"id": f"sp{h}_{i}", "title": f"{keyword} post",
             "body": f"the {SPIKE_TERM} smell again" if h == 24 and i < share else "", "subreddit": "s",
             "created_utc": start + 60 * i, "score": 1, "url": ""}
            for i in range(30)
        ]  # fmt: skip
        preds: list[PredictionRow] = [
            {"label": lab, "confidence": 0.9, "scores": {lab: 0.9}} for lab in labels
        ]
        agg = [{"label": "anger", "pct": 100 * share / 30, "count": share, "avg_score": 0.9}]
        version = version_of_hour(h) if version_of_hour else served
        records.append(
            history_record(
                keyword,
                posts,
                {"emotion": preds},
                limit=30,
                created_at=start + 1800,
                breakdowns={"agg": agg},
                model_versions={"emotion": version},
            )
        )
    with psycopg.connect(pg_url) as conn:
        insert_records(conn, records)
        conn.commit()


def test_a_spike_raises_one_alert_delivered_when_the_webhook_comes_back(
    client: httpx.Client, no_watches: str, webhook: WebhookReceiver
) -> None:
    keyword = "kettlegate"  # not in the corpus: polls add nothing, the history below is the trend
    spike_history(no_watches, keyword, time.time())
    assert (
        client.post("/watch", json={"keyword": keyword, "every_s": 60, "source": "jsonl"}).status_code == 201
    )
    webhook.set_down(True)
    before = webhook.attempts
    try:
        monitor_pass()
        monitor_pass()  # the same spike again: still one alert
    finally:
        webhook.set_down(False)
    (alert,) = client.get("/alerts", params={"keyword": keyword}).json()["alerts"]
    assert (alert["task"], alert["label"], alert["share"], alert["baseline"]) == (
        "emotion",
        "anger",
        50.0,
        10.0,
    )
    assert alert["z"] >= 3 and alert["posts"] == 30 and alert["baseline_posts"] == 720
    # What the spike is about: the term the spike hour's posts brought (never the keyword).
    terms = [t["term"] for t in alert["emerging_terms"]]
    assert SPIKE_TERM in terms[:3] and not any(keyword in t for t in terms), alert["emerging_terms"]
    assert all(t["z"] >= 1.96 and t["posts"] >= 3 for t in alert["emerging_terms"])
    assert alert["delivery"] == "pending" and alert["attempts"] == 2 and "503" in alert["last_error"]
    assert webhook.attempts - before == 6  # 3 tries per pass, with backoff
    monitor_pass()
    (alert,) = client.get("/alerts", params={"keyword": keyword}).json()["alerts"]
    assert alert["delivery"] == "delivered" and alert["delivered_at"]
    delivered = [a for a in webhook.received if a["alert_id"] == alert["alert_id"]]
    assert len(delivered) == 1 and keyword in delivered[0]["text"] and SPIKE_TERM in delivered[0]["text"]
    assert SPIKE_TERM in [t["term"] for t in delivered[0]["emerging_terms"]]
    monitor_pass()
    assert len([a for a in webhook.received if a["alert_id"] == alert["alert_id"]]) == 1


def test_cli_watch_and_trends(serve_url: str, no_watches: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tooling.cli import app

    cli = CliRunner()
    added = cli.invoke(
        app, ["watch", "add", "Tea Time", "--every", "120", "--source", "jsonl", "--url", serve_url]
    )
    assert added.exit_code == 0, added.output
    assert "Tea Time" in added.output and "every    120 s" in added.output
    listed = cli.invoke(app, ["watch", "list", "--url", serve_url])
    assert "Tea Time" in listed.output and "last poll never" in listed.output
    bad = cli.invoke(app, ["watch", "add", "tea", "--every", "5", "--url", serve_url])
    assert bad.exit_code == 1 and "422" in bad.output and "every_s" in bad.output
    spike_history(no_watches, "tea time", time.time())
    chart = tmp_path / "trend.png"
    shown = cli.invoke(
        app,
        ["trends", "tea time", "--bucket", "1h", "--days", "2", "--chart", str(chart), "--url", serve_url],
    )
    assert shown.exit_code == 0, shown.output
    assert "emotion trend of 'tea time'" in shown.output
    rows = [line.split() for line in shown.output.splitlines()]
    # The spike hour: 30 posts, anger at 50 % (the fourth emotion column).
    assert any(r[2:3] == ["30"] and r[6:7] == ["50.0%"] for r in rows), shown.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    removed = cli.invoke(app, ["watch", "rm", "tea time", "--url", serve_url])
    assert removed.exit_code == 0 and "no longer watched" in removed.output


def test_trends_refuse_a_since_past_2100(client: httpx.Client) -> None:
    r = client.get("/trends", params={"keyword": "x", "since": 8.4e117})
    assert r.status_code == 422 and "since" in r.text
