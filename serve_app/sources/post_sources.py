"""Every configured source of posts (Reddit by praw or public JSON, the local corpus, the
replayed feed) behind one `fetch(source, keyword, limit)`, with language detection, the
shared request budget and comments. The Fetcher deployment holds one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from serve_app.config.defaults import REDDIT_OAUTH_URL, REDDIT_WWW_URL
from serve_app.domain.errors import SourceConfigError
from serve_app.domain.posts import FetchResult
from serve_app.domain.scope import Scope
from serve_app.sources.comments import CommentPlan, corpus_comments, fetch_comments, with_comments
from serve_app.sources.corpus import JsonlCorpus
from serve_app.sources.reddit import RedditPrawClient, RedditPublicClient
from serve_app.sources.replay import ReplayFeed, ReplayPlan
from serve_app.sources.request_budget import BudgetConfig, Priority, RequestBudget

log = logging.getLogger("ray.serve.emotion_monitor.fetcher")


@dataclass(frozen=True)
class FetcherConfig:
    jsonl_path: str | None = None
    reddit_client_id: str | None = None
    reddit_client_secret: str | None = field(default=None, repr=False)
    reddit_user_agent: str = "python:emotion-monitor:v0"
    reddit_public_url: str = REDDIT_WWW_URL
    reddit_oauth_url: str = REDDIT_OAUTH_URL
    reddit_www_url: str = REDDIT_WWW_URL
    timeout_s: float = 10.0
    retries: int = 2
    deadline_s: float = 25.0
    lang_min_confidence: float = 0.8
    include_nsfw: bool = False
    # The shared request budget (serve_app.sources.request_budget); no Redis: one per process.
    redis_url: str | None = field(default=None, repr=False)
    reddit_oauth_per_min: float = 100.0
    reddit_public_per_min: float = 10.0
    reddit_burst: int = 10
    reddit_background_reserve: float = 5.0
    comments_per_post: int = 20  # top-level comments read per post (issue 27)
    comments_total: int = 500  # comments one analysis may add in all
    replay: ReplayPlan = field(default_factory=ReplayPlan)  # source "replay" (serve_app.sources.replay)

    def budget(self, oauth: bool) -> BudgetConfig:
        # One bucket per credential: Reddit counts per OAuth client id, or per address without.
        key = f"em:reddit:budget:oauth:{self.reddit_client_id}" if oauth else "em:reddit:budget:public"
        per_min = self.reddit_oauth_per_min if oauth else self.reddit_public_per_min
        return BudgetConfig(per_min, self.reddit_burst, self.reddit_background_reserve, key)


class PostSources:
    """Every configured source behind one `fetch(source, keyword, limit)`."""

    def __init__(self, cfg: FetcherConfig) -> None:
        self.cfg = cfg
        self._corpus: JsonlCorpus | None = None
        self._reddit: RedditPublicClient | RedditPrawClient | None = None
        self._replay: ReplayFeed | None = None

    def corpus(self) -> JsonlCorpus:
        if self._corpus is None:
            if not self.cfg.jsonl_path:
                raise SourceConfigError("source 'jsonl' is not configured: set EMOTION_MONITOR_JSONL_PATH")
            started = time.perf_counter()
            self._corpus = JsonlCorpus.from_file(self.cfg.jsonl_path)
            log.info(
                "loaded %d posts from %s in %.2f s",
                len(self._corpus),
                self.cfg.jsonl_path,
                time.perf_counter() - started,
            )
        return self._corpus

    def reddit(self) -> RedditPublicClient | RedditPrawClient:
        if self._reddit is None:
            c = self.cfg
            oauth = bool(c.reddit_client_id and c.reddit_client_secret)
            budget = RequestBudget(c.budget(oauth), c.redis_url)
            if oauth:
                assert c.reddit_client_id and c.reddit_client_secret
                self._reddit = RedditPrawClient(
                    c.reddit_client_id,
                    c.reddit_client_secret,
                    c.reddit_user_agent,
                    c.reddit_oauth_url,
                    c.reddit_www_url,
                    timeout_s=c.timeout_s,
                    deadline_s=c.deadline_s,
                    budget=budget,
                    include_nsfw=c.include_nsfw,
                )
            else:
                self._reddit = RedditPublicClient(
                    c.reddit_public_url,
                    c.reddit_user_agent,
                    c.timeout_s,
                    c.retries,
                    c.deadline_s,
                    budget=budget,
                    include_nsfw=c.include_nsfw,
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
            got = self.corpus().search(keyword, limit, self.cfg.include_nsfw, scope)
            return corpus_comments(got, include_comments)
        if source == "reddit":
            started = time.monotonic()
            client = self.reddit()
            got = client.search(keyword, limit, priority, scope)
            if include_comments <= 0:
                return got
            plan = CommentPlan(include_comments, self.cfg.comments_per_post, self.cfg.comments_total)
            left = self.cfg.deadline_s - (time.monotonic() - started)
            found = fetch_comments(client, got.posts, plan, priority, left)
            return with_comments(got, found, include_comments)
        if source == "replay":  # the corpus on a live clock (serve_app.sources.replay); no comments either
            got = self.replay().search(keyword, limit, self.cfg.include_nsfw, scope)
            return corpus_comments(got, include_comments)
        raise SourceConfigError(f"unknown source {source!r}; use 'reddit', 'jsonl' or 'replay'")
