"""`emotion-monitor demo`: a live demo with no internet, driven over the service's HTTP API.

It restarts the replayed feed (`POST /demo/replay`: the local corpus's posts arrive from now
on, with a planted burst of angry posts about a made-up product; serve_app/sources/replay.py),
watches the burst's keyword on source "replay", and prints the keyword's trend after each
poll of the service's own keyword monitor until a spike alert arrives or its time is up.
Nothing here computes a trend or an alert: it only shows what the service produced.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from serve_app.domain.schemas import AlertOut, AlertsResponse, TrendsResponse, WatchOut
from serve_app.sources.replay import ReplayStatus

WATCH_EVERY_S = 60  # the shortest poll interval a watch may have
WATCH_LIMIT = 200  # newest posts per poll: more than arrive between two polls
STATED_TIME_S = 300.0  # the demo's promise: a trend and an alert within 5 minutes
WAIT_HINT_S = 45.0  # the monitor looks for due watches every 15 s: a first poll is late by now


class DemoError(Exception):
    """The demo could not run; the message says what to do."""


@dataclass(frozen=True)
class DemoConfig:
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = STATED_TIME_S  # from the replay's start to giving up
    wait_for_service_s: float = 120.0  # `make run` may still be starting
    poll_s: float = 5.0  # how often the trend and the alerts are read


@dataclass
class DemoOutcome:
    replay: ReplayStatus
    trend: TrendsResponse | None = None
    alerts: list[AlertOut] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.trend is not None and len(self.trend.buckets) >= 2 and bool(self.alerts)


def clock(seconds: float) -> str:
    m, s = divmod(max(0, int(seconds)), 60)
    return f"{m}:{s:02d}"


def hhmm(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%H:%M")


def _share(bucket_shares: list[tuple[str, float]], label: str) -> float:
    return next((pct for lab, pct in bucket_shares if lab == label), 0.0)


def trend_lines(trend: TrendsResponse) -> list[str]:
    """A row per bucket: its posts and its anger and negative shares (the alert labels)."""
    lines = [f"  {'bucket (UTC)':<12} {'posts':>5} {'anger':>7} {'negative':>9}"]
    for b in trend.buckets:
        emotion = [(s.label, s.pct) for s in b.shares.get("emotion", [])]
        sentiment = [(s.label, s.pct) for s in b.shares.get("sentiment", [])]
        posts = max(b.posts.values(), default=0)
        lines.append(
            f"  {hhmm(b.start):<12} {posts:>5} {_share(emotion, 'anger'):>6.1f}% "
            f"{_share(sentiment, 'negative'):>8.1f}%"
        )
    return lines


def alert_line(a: AlertOut) -> str:
    terms = getattr(a, "emerging_terms", None) or []
    named = ", ".join(str(getattr(t, "term", None) or t.get("term")) for t in terms) if terms else ""
    return (
        f"ALERT {a.task}/{a.label} in the {hhmm(a.bucket_start)} bucket: {a.share:.1f} % of {a.posts} posts "
        f"against {a.baseline:.1f} % of {a.baseline_posts} before (z {a.z:.1f})"
        + (f"; emerging terms: {named}" if named else "")
    )


class DemoRun:
    """One demo against a running service; `say` prints a line."""

    def __init__(
        self, cfg: DemoConfig, say: Callable[[str], None], client: httpx.Client | None = None
    ) -> None:
        self.cfg, self.say = cfg, say
        headers = {"X-API-Key": cfg.api_key} if cfg.api_key else {}
        self.http = client or httpx.Client(base_url=cfg.url.rstrip("/"), headers=headers, timeout=60)

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str | float] | None = None,
        json: dict[str, str | int] | None = None,
    ) -> httpx.Response:
        r = self.http.request(method, path, params=params, json=json)
        if r.status_code >= 400:
            raise DemoError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r

    def wait_for_service(self) -> None:
        deadline = time.monotonic() + self.cfg.wait_for_service_s
        told = False
        while True:
            try:
                if self.http.get("/healthz", timeout=10).status_code == 200:
                    return
                why = "the model is not loaded yet"
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}"
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no service answers at {self.cfg.url} ({why}): start it with `make run` "
                    "in another terminal, then run `emotion-monitor demo` again"
                )
            if not told:
                self.say(f"waiting for the service at {self.cfg.url} ({why}; is `make run` running?)")
                told = True
            time.sleep(2)

    def start(self) -> ReplayStatus:
        """Restart the replay and watch its keyword on source "replay"."""
        replay = ReplayStatus.model_validate(self._call("POST", "/demo/replay").json())
        body: dict[str, str | int] = {
            "keyword": replay.keyword,
            "every_s": WATCH_EVERY_S,
            "source": "replay",
            "limit": WATCH_LIMIT,
        }
        WatchOut.model_validate(self._call("POST", "/watch", json=body).json())
        return replay

    def read(self, replay: ReplayStatus) -> tuple[TrendsResponse, list[AlertOut]]:
        """The keyword's trend in minute buckets since the replay's backlog, and its alerts
        raised since the replay started."""
        since = replay.started_at - replay.backlog_s - 60
        params: dict[str, str | float] = {"keyword": replay.keyword, "bucket": "1m", "since": since}
        trend = TrendsResponse.model_validate(self._call("GET", "/trends", params=params).json())
        got = AlertsResponse.model_validate(
            self._call("GET", "/alerts", params={"keyword": replay.keyword}).json()
        )
        alerts = [a for a in got.alerts if a.created_at >= replay.started_at - 1]
        return trend, sorted(alerts, key=lambda a: (a.created_at, a.alert_id))

    def run(self) -> DemoOutcome:
        self.wait_for_service()
        replay = self.start()
        self._intro(replay)
        out = DemoOutcome(replay)
        shown_posts, shown_alerts, waiting_told = -1, set(), False
        while True:
            out.trend, out.alerts = self.read(replay)
            out.elapsed_s = time.time() - replay.started_at
            posts = sum(max(b.posts.values(), default=0) for b in out.trend.buckets)
            if posts != shown_posts and out.trend.buckets:
                shown_posts = posts
                self.say(f"[{clock(out.elapsed_s)}] trend of {replay.keyword!r}: {posts} posts in "
                         f"{len(out.trend.buckets)} buckets of 1 min")  # fmt: skip
                for line in trend_lines(out.trend):
                    self.say(line)
            for a in out.alerts:
                if a.alert_id not in shown_alerts:
                    shown_alerts.add(a.alert_id)
                    self.say(f"[{clock(out.elapsed_s)}] {alert_line(a)}")
            if out.done or out.elapsed_s > self.cfg.timeout_s:
                return out
            if not out.trend.buckets and not waiting_told and out.elapsed_s > WAIT_HINT_S:
                waiting_told = True
                self.say(f"[{clock(out.elapsed_s)}] no poll yet: the service's monitor waits while the "
                         "CPU is above EMOTION_MONITOR_MONITOR__CPU_THRESHOLD (50 %), and runs only "
                         "with EMOTION_MONITOR_MONITOR__ENABLED on and PostgreSQL")  # fmt: skip
            time.sleep(self.cfg.poll_s)

    def _intro(self, r: ReplayStatus) -> None:
        burst = clock(r.burst_from - r.started_at)
        self.say(f"demo: the local corpus replays as a live feed into {self.cfg.url} (run {r.run})")
        self.say(f"  real: the posts' text ({r.corpus_posts} Reddit posts from 2007-2013), the model, "
                 "the keyword monitor, the spike test, the alert")  # fmt: skip
        self.say(f"  replayed: the time: {r.posts_per_s:g} corpus posts arrive each second, stamped now "
                 f"({clock(r.backlog_s)} of them already there)")  # fmt: skip
        self.say(f"  planted: {r.planted_posts} angry posts about a made-up phone, {r.planted_term!r}, "
                 f"arriving from {burst} on (subreddit {r.planted_subreddit})")  # fmt: skip
        self.say(f"  watching {r.keyword!r} on source 'replay' every {WATCH_EVERY_S} s; "
                 f"an alert is expected within {clock(self.cfg.timeout_s)}")  # fmt: skip
        self.say(f"  open {self.cfg.url.rstrip('/')}/ to see it on the page (trend bucket 1m)")
