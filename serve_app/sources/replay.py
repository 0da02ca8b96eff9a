"""The replayed feed behind source `replay` and `emotion-monitor demo`: the local corpus as
if its posts were arriving now, so the keyword monitor has something live to watch offline.

What is real: every corpus post's title, body and subreddit (`reddit_sample`, real Reddit
posts from 2007-2013), and everything downstream (the model, the monitor, the trend, the
spike test, alerts and their webhook).

What is replayed: the time. A replay clock puts the corpus's posts, oldest first, on
today's timeline at a steady rate: the post of chronological rank r arrives at
`started_at - backlog_s + r / posts_per_s` and carries that time as its `created_utc`. A
search sees only the posts that have arrived. The backlog gives the first poll a few
minutes of posts already, so a trend has a baseline from the start. Each replay run has an
id that prefixes its posts' ids: history keeps a post's first timestamp, and a second run
must not reuse the first run's posts with their old times.

What is planted: `PLANTED_POSTS` angry posts about a made-up phone, `PLANTED_TERM`,
written for this demo (never from Reddit; subreddit `PLANTED_SUBREDDIT`, ids
`<run>-planted-NNN`). They arrive spread over `burst_s` seconds from `burst_at_s` after the
start, on top of the corpus's own posts about `DEMO_KEYWORD`, so the keyword's anger and
negative shares rise in those minutes and the monitor's spike test raises an alert.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from serve_app.config.settings import ReplaySettings
from serve_app.domain.posts import FetchResult, Post
from serve_app.sources.corpus import JsonlCorpus

DEMO_KEYWORD = "phone"  # every planted post mentions it; the corpus has ~1,400 posts with it
PLANTED_TERM = "Zentrix"  # made up: no corpus post contains it
PLANTED_SUBREDDIT = "planted_demo"

# Planted titles (each names the made-up product) and bodies (each about the phone), paired
# so that no word but the product's name and "phone" is in most of them: the term that rose
# in the burst is the product, not a phrase the texts happen to share.
_TITLES = (
    "Zentrix support hung up on me AGAIN and I am seething",
    "I am done with Zentrix, absolutely furious",
    "Zentrix bricked my phone with their update and I'm fuming",
    "Zentrix X2 is a scam and I'm livid",
    "Never buying Zentrix again. Disgusting service",
    "Zentrix refused my refund. I'm so angry I'm shaking",
    "How is Zentrix allowed to sell this garbage? So mad",
    "Zentrix lied to every customer and it makes my blood boil",
    "Third Zentrix replacement, third dead screen. I hate this",
    "Zentrix charged me twice and ignores my emails. Outraged",
    "Worst purchase ever: the Zentrix X2",
    "Zentrix, you should be ashamed of yourselves, you crooks",
    "Furious at Zentrix for deleting all my photos",
    "Zentrix battery exploded in my pocket and they blame ME?! Enraged",
    "Zentrix wasted six hours of my life and I am pissed off",
    "Stop defending Zentrix, they are ripping us off",
)
_BODIES = (
    "My phone overheats every time I open the camera and they insist it's normal. I am sick of their lies.",
    "The phone restarts in the middle of calls and support lies to my face. Infuriating.",
    "I paid full price for this phone, it died in two weeks and they want $200 to fix it. Outrageous.",
    "Every update makes the phone slower and the store staff just shrug. Absolutely infuriating.",
    "The phone lost every contact I had and support told me that was my fault. Rage.",
    "I waited a month for a repair and got my phone back more broken than before. Unacceptable.",
    "They knowingly sold me a faulty phone and now refuse to answer. I'm beyond angry.",
    "My kid's phone caught fire on the charger and they sent a coupon. A coupon! I could scream.",
)
PLANTED_POSTS = 128  # every title with every body


class Admits(Protocol):
    """A question's scope (`serve_app.domain.scope.Scope`): its subreddits and time window."""

    def admits(self, post: Post, now: float) -> bool: ...


def planted_texts() -> list[tuple[str, str]]:
    """The planted posts' (title, body), all different, in the order they arrive."""
    n = len(_TITLES)  # each title once per round of n; each round shifts the bodies by one
    return [(_TITLES[i % n], _BODIES[(i + i // n) % len(_BODIES)]) for i in range(PLANTED_POSTS)]


class ReplayStatus(BaseModel):
    """Where a replay run stands (`POST /demo/replay` restarts it, `GET` reads it)."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(..., description="This run's id; it prefixes every replayed post's id.")
    started_at: float = Field(..., description="Unix seconds the replay clock started at.")
    posts_per_s: float = Field(..., description="Corpus posts (all keywords) that arrive each second.")
    backlog_s: float = Field(..., description="Seconds' worth of posts already there at the start.")
    arrived: int = Field(..., description="Corpus posts that have arrived so far.")
    corpus_posts: int
    ends_at: float = Field(..., description="When the corpus's last post arrives (unix seconds).")
    keyword: str = Field(DEMO_KEYWORD, description="The keyword the planted burst is about.")
    planted_term: str = Field(PLANTED_TERM, description="The made-up product the planted posts name.")
    planted_posts: int = PLANTED_POSTS
    planted_subreddit: str = PLANTED_SUBREDDIT
    burst_from: float = Field(..., description="Unix seconds the first planted post arrives.")
    burst_until: float = Field(..., description="Unix seconds the last planted post arrives.")


class ReplayFeed:
    """The corpus on a replay clock, plus the planted burst (see the module's docstring)."""

    def __init__(
        self,
        corpus: JsonlCorpus,
        plan: ReplaySettings,
        started_at: float | None = None,
        run: str | None = None,
    ) -> None:
        self.corpus, self.plan = corpus, plan
        self.started_at = time.time() if started_at is None else started_at
        self.run = run or uuid.uuid4().hex[:8]
        chronological = sorted(corpus.posts, key=lambda p: (p.created_utc, p.id))
        self._rank = {p.id: r for r, p in enumerate(chronological)}
        self.burst_from = self.started_at + plan.burst_at_s
        step = plan.burst_s / max(1, PLANTED_POSTS - 1)
        planted = [
            Post(f"planted-{i:03d}", title, body, PLANTED_SUBREDDIT, self.burst_from + i * step, 1, "")
            for i, (title, body) in enumerate(planted_texts())
        ]
        self._planted = JsonlCorpus(planted)
        self._planted_at = {p.id: p.created_utc for p in planted}

    def arrival(self, rank: int) -> float:
        """When the corpus post of chronological rank `rank` arrives (unix seconds)."""
        return self.started_at - self.plan.backlog_s + rank / self.plan.posts_per_s

    def search(
        self,
        keyword: str,
        limit: int,
        include_nsfw: bool = False,
        scope: Admits | None = None,
        now: float | None = None,
    ) -> FetchResult:
        """The newest `limit` posts matching `keyword` (as the corpus matches it) that have
        arrived by `now`, each stamped with its arrival time and given this run's id prefix,
        and within `scope` (judged on the arrival time: a live feed has no older posts).

        Hygiene is the corpus's; its exclusion counts are not reported, since they would
        include posts that have not arrived yet.
        """
        now = time.time() if now is None else now
        arrived: list[Post] = []
        for p in self.corpus.search(keyword, len(self.corpus), include_nsfw=include_nsfw).posts:
            at = self.arrival(self._rank[p.id])
            if at <= now:
                arrived.append(self._stamped(p, at))
        for p in self._planted.search(keyword, PLANTED_POSTS).posts:
            at = self._planted_at[p.id]
            if at <= now:
                arrived.append(self._stamped(p, at))
        if scope is not None:
            arrived = [p for p in arrived if scope.admits(p, now)]
        arrived.sort(key=lambda p: (-p.created_utc, p.id))
        return FetchResult(arrived[: max(0, limit)])

    def _stamped(self, post: Post, at: float) -> Post:
        return dataclasses.replace(post, id=f"{self.run}-{post.id}", created_utc=at)

    def status(self, now: float | None = None) -> ReplayStatus:
        now = time.time() if now is None else now
        n = len(self.corpus)
        arrived = math.floor((now - self.started_at + self.plan.backlog_s) * self.plan.posts_per_s) + 1
        return ReplayStatus(
            run=self.run,
            started_at=self.started_at,
            posts_per_s=self.plan.posts_per_s,
            backlog_s=self.plan.backlog_s,
            arrived=max(0, min(n, arrived)),
            corpus_posts=n,
            ends_at=self.arrival(max(0, n - 1)),
            burst_from=self.burst_from,
            burst_until=self.burst_from + self.plan.burst_s,
        )
