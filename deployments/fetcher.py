"""Fetcher: a Serve shell over `serve_app.sources.post_sources.PostSources` (Reddit, the
local corpus, the replayed feed), which it holds and calls."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ray import serve

from serve_app.domain.posts import FetchResult
from serve_app.domain.scope import Scope
from serve_app.model.language import SeenLanguages, detect
from serve_app.model.preprocess import post_text
from serve_app.monitoring import metrics
from serve_app.sources.post_sources import FetcherConfig, PostSources
from serve_app.sources.replay import ReplayStatus
from serve_app.sources.request_budget import Priority

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.fetcher")


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=64,
    logging_config={"enable_access_log": False},
)
class Fetcher:
    def __init__(self, cfg: FetcherConfig, preload_jsonl: bool = True) -> None:
        self.sources = PostSources(cfg)
        self.lang_min_confidence = cfg.model.lang_min_confidence
        if preload_jsonl and Path(cfg.sources.jsonl_path).is_file():
            self.sources.corpus()  # load once per replica, before the first request
        detect(["warm up"])  # load the language model now, not on the first request
        self.languages = SeenLanguages()

    def fetch(
        self,
        source: str,
        keyword: str,
        limit: int,
        priority: Priority = "user",
        scope: Scope | None = None,
        include_comments: int = 0,
    ) -> FetchResult:
        """The posts (and the comments of the first `include_comments`), each with the language
        it is written in (`lang`, `lang_confidence`), within `scope`.

        `priority` "background" (the warmer, monitors) yields Reddit's request budget to users.
        """
        started = time.perf_counter()
        got = self.sources.fetch(source, keyword, limit, priority, scope, include_comments)
        metrics.record_fetch(source, time.perf_counter() - started)
        log.debug("fetched %d posts for %r from %s in %.3f s", len(got.posts), keyword, source,
                  time.perf_counter() - started)  # fmt: skip
        found = self.languages.detect(
            [p.id for p in got.posts],
            [post_text(p.title, p.body) for p in got.posts],
            self.lang_min_confidence,
        )
        posts = [
            dataclasses.replace(p, lang=d.lang, lang_confidence=d.confidence)
            for p, d in zip(got.posts, found, strict=True)
        ]
        return dataclasses.replace(got, posts=posts)

    def restart_replay(self) -> ReplayStatus:
        """Start the replayed feed (source "replay") again from its beginning, as a new run."""
        return self.sources.replay(restart=True).status()

    def replay_status(self) -> ReplayStatus:
        return self.sources.replay().status()
