"""Reddit search, two ways: the public JSON (no credentials) and praw (OAuth app credentials).

Both clients return a `FetchResult` and share the same behaviour:

- Pagination always ends: at the pages the limit needs plus one, at a page that adds no
  new post, or at a cursor seen before (an upstream that repeats a cursor otherwise sends
  the client round in a loop for as long as the deadline allows).
- Every request first takes a token from the shared `RequestBudget`; Reddit's rate-limit
  headers and 429s feed it back.
- A failure or a near deadline after the first page gives a partial answer with the posts
  already fetched (`FetchResult.partial` says why); a failure on the first page raises.
- Post hygiene (`serve_app.domain.posts.PostFilter`) runs as posts arrive, so the limit counts
  usable posts.
- A scope (`serve_app.domain.scope`: subreddits, exclusions, time window, sort) goes out the way
  Reddit's search takes it; the stop rules live in `serve_app.sources.reddit_pages`, the comment
  pages in `serve_app.sources.comments`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from serve_app.config.defaults import REDDIT_OAUTH_URL, REDDIT_WWW_URL
from serve_app.domain.errors import SourceError
from serve_app.domain.posts import FetchResult, Post
from serve_app.domain.scope import Scope, reddit_search
from serve_app.monitoring import metrics
from serve_app.sources.reddit_pages import PAGE, Pages, max_pages
from serve_app.sources.request_budget import Priority, RequestBudget

__all__ = ["PAGE", "RedditPrawClient", "RedditPublicClient", "max_pages", "post_from_reddit", "user_agent"]

log = logging.getLogger("ray.serve.emotion_monitor.reddit")

RETRYABLE_STATUS = (429, 500, 502, 503, 504)


def user_agent(app_id: str, version: str, contact: str | None, platform: str = "python") -> str:
    """A User-Agent in the form Reddit's API rules ask for: `platform:app_id:version (by contact)`."""
    ua = f"{platform}:{app_id}:v{version}"
    return f"{ua} (by {contact})" if contact else ua


def post_from_reddit(d: dict[str, Any], base_url: str) -> Post:
    """A Post from a listing child's `data` (or a praw Submission's attributes)."""
    permalink = str(d.get("permalink") or "")
    parent = str(d.get("crosspost_parent") or "")
    return Post(
        id=str(d.get("id", "")),
        title=str(d.get("title") or ""),
        body=str(d.get("selftext") or ""),
        subreddit=str(d.get("subreddit") or ""),
        created_utc=float(d.get("created_utc") or 0),
        score=int(d.get("score") or 0),
        url=f"{base_url.rstrip('/')}{permalink}" if permalink.startswith("/") else str(d.get("url", "")),
        nsfw=bool(d.get("over_18")),
        stickied=bool(d.get("stickied")),
        promoted=bool(d.get("promoted")),
        crosspost_of=parent.removeprefix("t3_") or None,
        num_comments=int(d.get("num_comments") or 0),
    )


def _ratelimit(headers: Any) -> tuple[float, float] | None:
    try:
        remaining = headers.get("x-ratelimit-remaining")
        reset = headers.get("x-ratelimit-reset")
        return (float(remaining), float(reset or 0)) if remaining is not None else None
    except (TypeError, ValueError):
        return None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _feed_budget(budget: RequestBudget | None, status: int, headers: Any) -> None:
    """Tell the shared budget what Reddit said: its rate-limit headers, or a 429, after which
    every process backs off (not only this one)."""
    if budget is None:
        return
    limits = _ratelimit(headers)
    if status == 429:
        budget.observe(0, _retry_after(headers) or (limits[1] if limits else 1.0))
    elif limits is not None:
        budget.observe(*limits)


class RedditPublicClient:
    """Reddit's public search JSON (no credentials): paginated, budgeted, bounded in time.

    Retries 429 and 5xx with exponential backoff (honouring Retry-After) and never spends
    longer than `deadline_s` in total.
    """

    access = "public"

    def __init__(
        self,
        base_url: str = REDDIT_WWW_URL,
        user_agent: str = user_agent("emotion-monitor", "0", None),
        timeout_s: float = 10.0,
        retries: int = 2,
        deadline_s: float = 25.0,
        budget: RequestBudget | None = None,
        include_nsfw: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.deadline_s = deadline_s
        self.budget = budget
        self.include_nsfw = include_nsfw
        self.sleep = sleep
        self.requests = 0
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def _send(
        self, params: dict[str, Any], remaining: float, priority: Priority, path: str = "/search.json"
    ) -> httpx.Response:
        if self.budget is not None:
            self.budget.acquire(priority, self.budget.clock() + remaining)
        self.requests += 1
        try:
            resp = self.client.get(
                path, params=params, timeout=min(remaining, self.client.timeout.read or remaining)
            )
        except httpx.HTTPError:
            metrics.record_reddit_request(self.access, "error")
            raise
        metrics.record_reddit_request(self.access, resp.status_code)
        _feed_budget(self.budget, resp.status_code, resp.headers)
        return resp

    def _get(
        self, params: dict[str, Any], deadline: float, priority: Priority, path: str = "/search.json"
    ) -> httpx.Response:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError("reddit", "timeout", f"no answer within {self.deadline_s:.0f} s")
            try:
                resp: httpx.Response | None = self._send(params, remaining, priority, path)
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
            if resp is not None and resp.status_code not in RETRYABLE_STATUS:
                raise SourceError("reddit", "unreachable", f"HTTP {resp.status_code} from {path}")
            retry_after = _retry_after(resp.headers) if resp is not None else None
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

    def search(
        self, keyword: str, limit: int, priority: Priority = "user", scope: Scope | None = None
    ) -> FetchResult:
        started = time.monotonic()
        deadline = started + self.deadline_s
        sent_before = self.requests
        pages = Pages(limit, self.include_nsfw, scope)
        wanted = reddit_search(keyword, pages.scope, pages.now)
        after: str | None = None
        partial: str | None = None
        slowest = 0.0
        while True:
            params: dict[str, Any] = {**wanted.params(), "limit": PAGE, "type": "link", "raw_json": 1}
            if after:
                params["after"] = after
            if pages.pages and deadline - time.monotonic() < max(1.0, slowest):
                partial = f"the {self.deadline_s:.0f} s deadline came near after {pages.pages} pages"
                break
            page_started = time.monotonic()
            try:
                data, children = self._page(params, deadline, priority, wanted.path + ".json")
            except SourceError as exc:
                if not pages.pages:
                    raise  # nothing fetched: the caller answers 502/503/504 as before
                partial = f"page {pages.pages + 1} failed ({exc.message})"
                break
            slowest = max(slowest, time.monotonic() - page_started)
            new = sum(pages.add(post_from_reddit(c.get("data") or {}, self.base_url)) for c in children)
            after = pages.next_cursor(data.get("after"), new)
            if after is None:
                break
        if partial:
            log.warning("reddit search %r: partial answer, %s", keyword, partial)
        return pages.result(partial, self.requests - sent_before)

    def _page(
        self, params: dict[str, Any], deadline: float, priority: Priority, path: str = "/search.json"
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        resp = self._get(params, deadline, priority, path)
        try:
            data = resp.json()["data"]
            children = data.get("children") or []
            return data, [c for c in children if isinstance(c, dict)]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SourceError(
                "reddit", "unreachable", "search answered with something that is not a listing"
            ) from None


# The priority and deadline of the praw search running on this thread: praw's requestor is
# made once per client, but every search has its own.
_CALL = threading.local()


@contextmanager
def _call_context(priority: Priority, deadline: float) -> Iterator[None]:
    _CALL.ctx = (priority, deadline)
    try:
        yield
    finally:
        _CALL.ctx = None


def _budgeted_requestor(budget: RequestBudget | None) -> type:
    import prawcore

    class BudgetedRequestor(prawcore.Requestor):
        """praw's requestor, taking a budget token before each request and reading the headers."""

        def request(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            ctx: tuple[Priority, float] = getattr(_CALL, "ctx", None) or ("user", time.time() + 60)
            priority, deadline = ctx
            left = deadline - time.time()
            if left <= 0:
                raise SourceError("reddit", "timeout", "deadline reached between pages")
            if budget is not None:
                budget.acquire(priority, budget.clock() + left)
            try:
                resp = super().request(*args, timeout=min(timeout or self.timeout, left), **kwargs)
            except prawcore.exceptions.RequestException:
                metrics.record_reddit_request("oauth", "error")
                raise
            metrics.record_reddit_request("oauth", resp.status_code)
            _feed_budget(budget, resp.status_code, resp.headers)
            return resp

    return BudgetedRequestor


class RedditPrawClient:
    """Reddit through praw (OAuth app credentials); the budget and stop rules as above."""

    access = "oauth"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        user_agent: str,
        oauth_url: str = REDDIT_OAUTH_URL,
        reddit_url: str = REDDIT_WWW_URL,
        timeout_s: float = 10.0,
        deadline_s: float = 25.0,
        budget: RequestBudget | None = None,
        include_nsfw: bool = False,
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
            requestor_class=_budgeted_requestor(budget),
        )
        self.base_url = reddit_url
        self.deadline_s = deadline_s
        self.include_nsfw = include_nsfw

    def search(
        self, keyword: str, limit: int, priority: Priority = "user", scope: Scope | None = None
    ) -> FetchResult:
        import prawcore

        pages = Pages(limit, self.include_nsfw, scope)
        partial: str | None = None
        wanted = reddit_search(keyword, pages.scope, pages.now)
        listing = self.reddit.subreddit(wanted.subreddit).search(
            wanted.q, sort=wanted.sort, time_filter=wanted.t or "all", limit=max_pages(limit) * PAGE
        )
        try:
            with _call_context(priority, time.time() + self.deadline_s):
                for n, sub in enumerate(listing, 1):
                    # vars(), not getattr: a missing attribute makes praw fetch the post again.
                    d = dict(vars(sub))
                    d["subreddit"] = sub.subreddit.display_name if sub.subreddit else ""
                    pages.add(post_from_reddit(d, self.base_url))
                    # praw asks for the next page when this one is used up: stop before that.
                    if pages.full or (pages.done and n % PAGE == 0):
                        break
        except SourceError as exc:
            if not pages.posts:
                raise
            partial = f"a later page failed ({exc.message})"
        except prawcore.exceptions.PrawcoreException as exc:
            error = _praw_error(exc)
            if not pages.posts:
                raise error from None
            partial = f"a later page failed ({error.message})"
        if partial:
            log.warning("reddit search %r: partial answer, %s", keyword, partial)
        return pages.result(partial, 0)


def _praw_error(exc: Exception) -> SourceError:
    import prawcore

    if isinstance(exc, prawcore.exceptions.TooManyRequests):
        return SourceError("reddit", "rate_limited", str(exc))
    if isinstance(exc, prawcore.exceptions.RequestException):
        kind = "timeout" if "timeout" in repr(exc.original_exception).lower() else "unreachable"
        return SourceError("reddit", kind, f"{type(exc.original_exception).__name__}")
    return SourceError("reddit", "unreachable", f"{type(exc).__name__}: {exc}")
