"""Fetcher: up to `limit` posts for a keyword, from Reddit or a local JSONL corpus.

Pure parts (the corpus index, the Reddit clients) are plain classes tested without Ray;
the `Fetcher` deployment at the bottom only holds them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ray import serve

from serve_app import metrics
from serve_app.errors import SourceConfigError, SourceError
from serve_app.language import detect
from serve_app.preprocess import post_text

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.fetcher")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Post:
    id: str
    title: str
    body: str
    subreddit: str
    created_utc: float
    score: int
    url: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def keyword_tokens(keyword: str) -> list[str]:
    return _WORD.findall(keyword.lower())


class JsonlCorpus:
    """A local corpus of posts with an inverted index: keyword search in milliseconds.

    A keyword matches a post when all its words occur in the title or body as whole
    words, adjacent and in order ("machine learning" does not match "learning machine";
    "ai" does not match "said"). Results are newest first.
    """

    def __init__(self, posts: list[Post]) -> None:
        # Newest first once, so every posting list is already in result order.
        self.posts = sorted(posts, key=lambda p: (-p.created_utc, p.id))
        self._tokens: list[list[str]] = []
        self.index: dict[str, list[int]] = {}
        for i, p in enumerate(self.posts):
            toks = _WORD.findall(f"{p.title}\n{p.body}".lower())
            self._tokens.append(toks)
            for t in set(toks):
                self.index.setdefault(t, []).append(i)

    @classmethod
    def from_file(cls, path: str | Path) -> JsonlCorpus:
        path = Path(path)
        if not path.is_file():
            raise SourceConfigError(
                f"JSONL corpus {path} not found; set EMOTION_MONITOR_JSONL_PATH to a posts file"
            )
        posts = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    posts.append(
                        Post(
                            id=str(r["id"]),
                            title=str(r.get("title", "")),
                            body=str(r.get("body", "")),
                            subreddit=str(r.get("subreddit", "")),
                            created_utc=float(r.get("created_utc", 0)),
                            score=int(r.get("score", 0)),
                            url=str(r.get("url", "")),
                        )
                    )
        return cls(posts)

    def __len__(self) -> int:
        return len(self.posts)

    def search(self, keyword: str, limit: int) -> list[Post]:
        words = keyword_tokens(keyword)
        if not words or limit <= 0:
            return []
        postings = sorted((self.index.get(w, []) for w in set(words)), key=len)
        if not postings[0]:
            return []
        candidates: list[int]
        if len(postings) == 1:
            candidates = postings[0]
        else:
            common = set(postings[0]).intersection(*postings[1:])
            candidates = sorted(common)
        out: list[Post] = []
        for i in candidates:
            if len(words) == 1 or _has_phrase(self._tokens[i], words):
                out.append(self.posts[i])
                if len(out) >= limit:
                    break
        return out


def _has_phrase(tokens: list[str], words: list[str]) -> bool:
    n = len(words)
    first = words[0]
    return any(tokens[i] == first and tokens[i : i + n] == words for i in range(len(tokens) - n + 1))


def _post_from_reddit(d: dict[str, Any], base_url: str) -> Post:
    permalink = str(d.get("permalink") or "")
    return Post(
        id=str(d.get("id", "")),
        title=str(d.get("title") or ""),
        body=str(d.get("selftext") or ""),
        subreddit=str(d.get("subreddit") or ""),
        created_utc=float(d.get("created_utc") or 0),
        score=int(d.get("score") or 0),
        url=f"{base_url.rstrip('/')}{permalink}" if permalink.startswith("/") else str(d.get("url", "")),
    )


class RedditPublicClient:
    """Reddit's public search JSON (no credentials): paginated, rate-limit aware, bounded.

    Retries 429 and 5xx with exponential backoff (honouring Retry-After), waits for the
    rate-limit window when `x-ratelimit-remaining` runs out, and never spends longer than
    `deadline_s` in total: past it a `SourceError` says what happened.
    """

    PAGE = 100  # Reddit's maximum page size

    def __init__(
        self,
        base_url: str = "https://www.reddit.com",
        user_agent: str = "emotion-monitor/0.1",
        timeout_s: float = 10.0,
        retries: int = 2,
        deadline_s: float = 25.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.deadline_s = deadline_s
        self.sleep = sleep
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def _get(self, params: dict[str, Any], deadline: float) -> httpx.Response:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError("reddit", "timeout", f"no answer within {self.deadline_s:.0f} s")
            try:
                resp = self.client.get(
                    "/search.json",
                    params=params,
                    timeout=min(remaining, self.client.timeout.read or remaining),
                )
            except httpx.TimeoutException as exc:
                if attempt >= self.retries:
                    raise SourceError(
                        "reddit", "timeout", f"{type(exc).__name__} after {attempt + 1} tries"
                    ) from None
                resp = None
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise SourceError("reddit", "unreachable", f"{type(exc).__name__}: {exc}") from None
                resp = None
            if resp is not None and resp.status_code == 200:
                return resp
            if resp is not None and resp.status_code not in (429, 500, 502, 503, 504):
                raise SourceError("reddit", "unreachable", f"HTTP {resp.status_code} from search")
            retry_after = _retry_after(resp) if resp is not None else None
            if attempt >= self.retries:
                if resp is not None and resp.status_code == 429:
                    raise SourceError("reddit", "rate_limited", "HTTP 429 after retries", retry_after)
                status = resp.status_code if resp is not None else "no response"
                raise SourceError("reddit", "unreachable", f"HTTP {status} after {attempt + 1} tries")
            wait = retry_after if retry_after is not None else 0.5 * 2**attempt
            if time.monotonic() + wait > deadline:
                kind = "rate_limited" if resp is not None and resp.status_code == 429 else "timeout"
                raise SourceError("reddit", kind, f"would have to wait {wait:.1f} s past the deadline", wait)
            self.sleep(wait)
            attempt += 1

    def search(self, keyword: str, limit: int) -> list[Post]:
        deadline = time.monotonic() + self.deadline_s
        seen: set[str] = set()
        out: list[Post] = []
        after: str | None = None
        while len(out) < limit:
            params: dict[str, Any] = {
                "q": keyword,
                "sort": "new",
                "limit": min(self.PAGE, limit - len(out)),
                "type": "link",
                "raw_json": 1,
            }
            if after:
                params["after"] = after
            resp = self._get(params, deadline)
            try:
                data = resp.json()["data"]
                children = data.get("children") or []
            except (ValueError, KeyError, TypeError):
                raise SourceError(
                    "reddit", "unreachable", "search answered with something that is not a listing"
                ) from None
            for child in children:
                post = _post_from_reddit(child.get("data") or {}, self.base_url)
                if post.id and post.id not in seen:
                    seen.add(post.id)
                    out.append(post)
            after = data.get("after")
            if not after or not children or len(out) >= limit:
                break
            self._respect_rate_limit(resp, deadline)  # only before another request
        return out[:limit]

    def _respect_rate_limit(self, resp: httpx.Response, deadline: float) -> None:
        try:
            remaining = float(resp.headers.get("x-ratelimit-remaining", "1"))
            reset = float(resp.headers.get("x-ratelimit-reset", "0"))
        except ValueError:
            return
        if remaining < 1:
            if time.monotonic() + reset > deadline:
                raise SourceError("reddit", "rate_limited", f"rate limit resets in {reset:.0f} s", reset)
            self.sleep(reset)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RedditPrawClient:
    """Reddit through praw (OAuth app credentials): praw paginates and rate-limits itself."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        user_agent: str,
        oauth_url: str = "https://oauth.reddit.com",
        reddit_url: str = "https://www.reddit.com",
        timeout_s: float = 10.0,
    ) -> None:
        import praw

        self.reddit = praw.Reddit(
            client_id=client_id,
            client_secret=client_secret,
            user_agent=user_agent,
            oauth_url=oauth_url,
            reddit_url=reddit_url,
            timeout=int(max(1, timeout_s)),
            check_for_updates=False,
            check_for_async=False,
        )
        self.base_url = reddit_url

    def search(self, keyword: str, limit: int) -> list[Post]:
        import prawcore

        seen: set[str] = set()
        out: list[Post] = []
        try:
            for sub in self.reddit.subreddit("all").search(keyword, sort="new", limit=limit):
                p = Post(
                    id=str(sub.id),
                    title=str(sub.title or ""),
                    body=str(getattr(sub, "selftext", "") or ""),
                    subreddit=str(sub.subreddit.display_name if sub.subreddit else ""),
                    created_utc=float(sub.created_utc or 0),
                    score=int(sub.score or 0),
                    url=f"{self.base_url.rstrip('/')}{sub.permalink}",
                )
                if p.id not in seen:
                    seen.add(p.id)
                    out.append(p)
        except prawcore.exceptions.TooManyRequests as exc:
            raise SourceError("reddit", "rate_limited", str(exc)) from None
        except prawcore.exceptions.RequestException as exc:
            kind = "timeout" if "timeout" in repr(exc.original_exception).lower() else "unreachable"
            raise SourceError("reddit", kind, f"{type(exc.original_exception).__name__}") from None
        except (prawcore.exceptions.ResponseException, prawcore.exceptions.OAuthException) as exc:
            raise SourceError("reddit", "unreachable", f"{type(exc).__name__}: {exc}") from None
        return out


@dataclass(frozen=True)
class FetcherConfig:
    jsonl_path: str | None = None
    reddit_client_id: str | None = None
    reddit_client_secret: str | None = field(default=None, repr=False)
    reddit_user_agent: str = "emotion-monitor/0.1"
    reddit_public_url: str = "https://www.reddit.com"
    reddit_oauth_url: str = "https://oauth.reddit.com"
    reddit_www_url: str = "https://www.reddit.com"
    timeout_s: float = 10.0
    retries: int = 2
    deadline_s: float = 25.0
    lang_min_confidence: float = 0.8


class PostSources:
    """Every configured source behind one `fetch(source, keyword, limit)`."""

    def __init__(self, cfg: FetcherConfig) -> None:
        self.cfg = cfg
        self._corpus: JsonlCorpus | None = None
        self._reddit: RedditPublicClient | RedditPrawClient | None = None

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
            if c.reddit_client_id and c.reddit_client_secret:
                self._reddit = RedditPrawClient(
                    c.reddit_client_id,
                    c.reddit_client_secret,
                    c.reddit_user_agent,
                    c.reddit_oauth_url,
                    c.reddit_www_url,
                    c.timeout_s,
                )
            else:
                self._reddit = RedditPublicClient(
                    c.reddit_public_url, c.reddit_user_agent, c.timeout_s, c.retries, c.deadline_s
                )
        return self._reddit

    def fetch(self, source: str, keyword: str, limit: int) -> list[Post]:
        if source == "jsonl":
            return self.corpus().search(keyword, limit)
        if source == "reddit":
            return self.reddit().search(keyword, limit)
        raise SourceConfigError(f"unknown source {source!r}; use 'reddit' or 'jsonl'")


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=64,
    logging_config={"enable_access_log": False},
)
class Fetcher:
    def __init__(self, cfg: FetcherConfig, preload_jsonl: bool = True) -> None:
        self.sources = PostSources(cfg)
        self.lang_min_confidence = cfg.lang_min_confidence
        if preload_jsonl and cfg.jsonl_path and Path(cfg.jsonl_path).is_file():
            self.sources.corpus()  # load once per replica, before the first request
        detect(["warm up"])  # load the language model now, not on the first request

    def fetch(self, source: str, keyword: str, limit: int) -> list[dict[str, Any]]:
        """Posts as dicts, each with the language it is written in (`lang`, `lang_confidence`)."""
        started = time.perf_counter()
        posts = [p.as_dict() for p in self.sources.fetch(source, keyword, limit)]
        metrics.record_fetch(source, time.perf_counter() - started)
        log.debug("fetched %d posts for %r from %s in %.3f s", len(posts), keyword, source,
                  time.perf_counter() - started)  # fmt: skip
        found = detect([post_text(p["title"], p["body"]) for p in posts], self.lang_min_confidence)
        for p, d in zip(posts, found, strict=True):
            p["lang"], p["lang_confidence"] = d.lang, d.confidence
        return posts
