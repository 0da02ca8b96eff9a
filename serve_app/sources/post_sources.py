"""Every configured source of posts (Reddit by praw or public JSON, the local corpus, the
replayed feed) behind one `fetch(source, keyword, limit)`, with language detection, the
shared request budget and comments. The Fetcher deployment holds one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from serve_app.config.settings import (
    ModelSettings,
    RedditSettings,
    ReplaySettings,
    SourcesSettings,
    reddit_user_agent,
    secret,
)
from serve_app.domain.errors import SourceConfigError
from serve_app.domain.posts import FetchResult
from serve_app.domain.scope import Scope
from serve_app.sources.comments import CommentPlan, corpus_comments, fetch_comments, with_comments
from serve_app.sources.corpus import JsonlCorpus
from serve_app.sources.reddit import RedditPrawClient, RedditPublicClient
from serve_app.sources.replay import ReplayFeed
from serve_app.sources.request_budget import BudgetConfig, Priority, RequestBudget

log = logging.getLogger("ray.serve.emotion_monitor.fetcher")


@dataclass(frozen=True)
class FetcherConfig:
    """The settings groups a Fetcher uses, as they are, plus its run-time values."""

    sources: SourcesSettings = field(default_factory=SourcesSettings)
    reddit: RedditSettings = field(default_factory=RedditSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)  # source "replay"
    model: ModelSettings = field(default_factory=ModelSettings)  # lang_min_confidence
    deadline_s: float = 25.0  # the app's fetch deadline (AppArgs.fetch_deadline_s)
    # The shared request budget (serve_app.sources.request_budget); no Redis: one per process.
    redis_url: str | None = field(default=None, repr=False)

    def budget(self, oauth: bool) -> BudgetConfig:
        # One bucket per credential: Reddit counts per OAuth client id, or per address without.
        r = self.reddit
        key = f"em:reddit:budget:oauth:{r.client_id}" if oauth else "em:reddit:budget:public"
        return BudgetConfig(
            r.oauth_per_min if oauth else r.public_per_min, r.burst, r.background_reserve, key
        )


class PostSources:
    """Every configured source behind one `fetch(source, keyword, limit)`."""

    def __init__(self, cfg: FetcherConfig) -> None:
        self.cfg = cfg
        self._corpus: JsonlCorpus | None = None
        self._reddit: RedditPublicClient | RedditPrawClient | None = None
        self._replay: ReplayFeed | None = None

    def corpus(self) -> JsonlCorpus:
        if self._corpus is None:
            path = self.cfg.sources.jsonl_path
            started = time.perf_counter()
            self._corpus = JsonlCorpus.from_file(str(path))
            log.info(
                "loaded %d posts from %s in %.2f s",
                len(self._corpus),
                path,
                time.perf_counter() - started,
            )
        return self._corpus

    def reddit(self) -> RedditPublicClient | RedditPrawClient:
        if self._reddit is None:
            c, r = self.cfg, self.cfg.reddit
            client_secret, agent, nsfw = secret(r.client_secret), reddit_user_agent(r), c.sources.include_nsfw
            oauth = bool(r.client_id and client_secret)
            budget = RequestBudget(c.budget(oauth), c.redis_url)
            if r.client_id and client_secret:
                self._reddit = RedditPrawClient(
                    r.client_id,
                    client_secret,
                    agent,
                    r.oauth_url,
                    r.www_url,
                    timeout_s=r.timeout_s,
                    deadline_s=c.deadline_s,
                    budget=budget,
                    include_nsfw=nsfw,
                )
            else:
                self._reddit = RedditPublicClient(
                    r.public_url,
                    agent,
                    r.timeout_s,
                    r.retries,
                    c.deadline_s,
                    budget=budget,
                    include_nsfw=nsfw,
                )
        return self._reddit

    def replay(self, restart: bool = False) -> ReplayFeed:
        """The replayed feed; its clock starts at its first use, or again on `restart`.

        The clock lives in this replica (the Fetcher has one): a replaced replica starts a
        new run, whose posts carry new ids, so history never mixes two runs' timestamps.
        """
        if self._replay is None or restart:
            self._replay = ReplayFeed(self.corpus(), self.cfg.replay)
        return self._replay

    def fetch(
        self,
        source: str,
        keyword: str,
        limit: int,
        priority: Priority = "user",
        scope: Scope | None = None,
        include_comments: int = 0,
    ) -> FetchResult:
        if source == "jsonl":
            got = self.corpus().search(keyword, limit, self.cfg.sources.include_nsfw, scope)
            return corpus_comments(got, include_comments)
        if source == "reddit":
            started = time.monotonic()
            client = self.reddit()
            got = client.search(keyword, limit, priority, scope)
            if include_comments <= 0:
                return got
            plan = CommentPlan(
                include_comments, self.cfg.reddit.comments_per_post, self.cfg.reddit.comments_total
            )
            left = self.cfg.deadline_s - (time.monotonic() - started)
            found = fetch_comments(client, got.posts, plan, priority, left)
            return with_comments(got, found, include_comments)
        if source == "replay":  # the corpus on a live clock (serve_app.sources.replay); no comments either
            got = self.replay().search(keyword, limit, self.cfg.sources.include_nsfw, scope)
            return corpus_comments(got, include_comments)
        raise SourceConfigError(f"unknown source {source!r}; use 'reddit', 'jsonl' or 'replay'")
