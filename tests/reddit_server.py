"""A local HTTP server that speaks the parts of Reddit's API we use.

- `POST /api/v1/access_token`: OAuth client-credentials grant (praw's `reddit_url`)
- `GET /r/all/search[.json]`: OAuth search listing, bearer token required (praw's `oauth_url`)
- `GET /search.json`: the public search JSON (no credentials)
- `GET /r/<a+b>/search[.json]?restrict_sr=1`: a search scoped to subreddits (either client)
- `GET /comments/<post_id>[.json]?limit=&sort=top&depth=1`: a comment listing in Reddit's real
  shape (a two-element array: the post, then its comments), built from a recorded real
  listing (`recorded_comments`, `comment_listing`)

Searches honour `sort` (top, comments; new and relevance: newest first), `t` (against
`ServerState.now`) and `-subreddit:x` terms in `q`, as Reddit does.

Listings page with `limit` / `after` like Reddit's, and carry `x-ratelimit-*` headers.
Faults can be switched on per test: a fixed status for the next N requests (429 with
Retry-After, 5xx), optionally only after the first `after_ok` requests (a later page
fails), a delay before answering, an exhausted rate-limit window, or a cursor that loops
(every page is the first page again, with the same `after`). Posts carry the fields Reddit
sends that hygiene reads (`over_18`, `stickied`, `promoted`, `crosspost_parent`, removed
bodies); each request's User-Agent is recorded.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"  # a fake credential for the fake server
TOKEN = "test-bearer-token"


@dataclass
class Faults:
    status: int | None = None  # answer this status ...
    count: int = 0  # ... for this many requests (then behave)
    retry_after: float | None = None
    delay_s: float = 0.0
    ratelimit_remaining: float = 600.0
    ratelimit_reset: float = 60.0
    after_ok: int = 0  # let this many requests through before the status fault starts
    loop_cursor: bool = False  # every page is the first page, with the same `after`


@dataclass
class ServerState:
    posts: list[dict[str, Any]]
    faults: Faults = field(default_factory=Faults)
    requests: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # post id -> listing pair
    now: float = field(default_factory=time.time)  # what `t=` windows are measured back from


WINDOWS = {"hour": 3600, "day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400, "year": 365 * 86_400}
RECORDED_COMMENTS = (
    Path(__file__).resolve().parents[2] / "shared/data/reddit_listings/comments_funny_3hahrw_trimmed.json"
)


def recorded_comments() -> list[dict[str, Any]] | None:
    """The recorded real comment listing (see its README), or None where the data is absent."""
    if not RECORDED_COMMENTS.is_file():
        return None
    loaded: list[dict[str, Any]] = json.loads(RECORDED_COMMENTS.read_text(encoding="utf-8"))
    return loaded


def comment_listing(recorded: list[dict[str, Any]], post: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded listing as if it were `post`'s thread: the post listing holds `post`, and
    every comment id, link and parent is rewritten to belong to it (ids stay unique across
    threads); every other field is Reddit's, untouched."""
    pair = copy.deepcopy(recorded)
    pair[0]["data"]["children"][0]["data"].update(post)
    old_link = "t3_3hahrw"

    def rewrite(children: list[dict[str, Any]]) -> None:
        for child in children:
            d = child["data"]
            if child["kind"] == "t1":
                d["id"] = f"{post['id']}_{d['id']}"
                d["name"] = f"t1_{d['id']}"
                d["link_id"] = post["name"]
                d["subreddit"] = post["subreddit"]
                replies = d.get("replies")
                if isinstance(replies, dict):
                    rewrite(replies["data"]["children"])
            if d.get("parent_id") == old_link:
                d["parent_id"] = post["name"]

    rewrite(pair[1]["data"]["children"])
    return pair


def make_post(i: int, title: str, body: str = "", subreddit: str = "test", **fields: Any) -> dict[str, Any]:
    """A search result with the fields Reddit sends for a link; `fields` override any."""
    pid = f"p{i:05d}"
    post = {
        "id": pid,
        "name": f"t3_{pid}",
        "title": title,
        "selftext": body,
        "subreddit": subreddit,
        "subreddit_name_prefixed": f"r/{subreddit}",
        "created_utc": 1_700_000_000 - i * 60,
        "score": 100 - i % 100,
        "permalink": f"/r/{subreddit}/comments/{pid}/post/",
        "url": "",
        "author": "someone",
        "num_comments": 0,
        "over_18": False,
        "is_self": bool(body),
        "stickied": False,
        "promoted": None,
        "pinned": False,
        "locked": False,
        "spoiler": False,
        "distinguished": None,
        "removed_by_category": None,
        "num_crossposts": 0,
        "upvote_ratio": 0.97,
        "link_flair_text": None,
        "author_fullname": "t2_someone",
        "domain": f"self.{subreddit}",
        "thumbnail": "self",
        "edited": False,
        "gilded": 0,
    }
    post.update(fields)
    return post


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def end_headers(self) -> None:
        # A request that asked to close (prawcore's token POST sends `Connection: close`) is
        # answered with the same header, as real servers do: without it the client pools a
        # socket this server is about to close, its next request may go out on it and fail,
        # and praw's retry takes a second token from the budget (a flaky test on a busy CI).
        if self.close_connection:
            self.send_header("Connection", "close")
        super().end_headers()

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _fault(self) -> bool:
        st = self.server.state
        with st.lock:
            st.requests.append(self.path)
            st.user_agents.append(self.headers.get("User-Agent", ""))
            f = st.faults
            delay = f.delay_s
            status = None
            if f.after_ok > 0:
                f.after_ok -= 1
            elif f.status is not None and f.count > 0:
                f.count -= 1
                status = f.status
        if delay:
            time.sleep(delay)
        if status is not None:
            headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
            self._send(status, {"message": "fault injected", "error": status}, headers)
            return True
        return False

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        if urlparse(self.path).path.rstrip("/") != "/api/v1/access_token":
            self._send(404, {"error": 404})
            return
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(401, {"message": "Unauthorized", "error": 401})
            return
        if form.get("grant_type") != ["client_credentials"]:
            self._send(400, {"error": "unsupported_grant_type"})
            return
        self._send(200, {"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600, "scope": "*"})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        path = url.path.rstrip("/").removesuffix(".json")
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        auth = self.headers.get("Authorization")
        if (path == "/r/all/search" or auth is not None) and auth != f"bearer {TOKEN}":
            self._send(401, {"message": "Unauthorized", "error": 401})
            return
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "comments":
            if self._fault():
                return
            self._send_comments(parts[1], params)
            return
        subreddits: list[str] = []
        if len(parts) == 3 and parts[0] == "r" and parts[2] == "search":
            if parts[1] != "all" and params.get("restrict_sr", "").lower() in ("1", "true", "on"):
                subreddits = parts[1].lower().split("+")
        elif path != "/search":
            self._send(404, {"message": "Not Found", "error": 404})
            return
        if self._fault():
            return
        self._send(200, self._listing(params, subreddits), self._ratelimit_headers())

    def _send_comments(self, post_id: str, params: dict[str, str]) -> None:
        pair = self.server.state.comments.get(post_id)
        if pair is None:
            self._send(404, {"message": "Not Found", "error": 404})
            return
        pair = copy.deepcopy(pair)
        children = pair[1]["data"]["children"]
        comments = [c for c in children if c["kind"] == "t1"]
        if params.get("sort") == "top":
            comments.sort(key=lambda c: -int(c["data"].get("score") or 0))
        if params.get("depth") == "1":
            for c in comments:
                c["data"]["replies"] = ""
        limit = int(params.get("limit", 200))
        more = [c for c in children if c["kind"] == "more"]
        pair[1]["data"]["children"] = comments[:limit] + more
        raw = json.dumps(pair).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in self._ratelimit_headers().items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _ratelimit_headers(self) -> dict[str, str]:
        f = self.server.state.faults
        return {
            "x-ratelimit-remaining": str(f.ratelimit_remaining),
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(f.ratelimit_reset)),
        }

    def _listing(self, params: dict[str, str], subreddits: list[str] | None = None) -> dict[str, Any]:
        words = params.get("q", "").split()
        excluded = {w.removeprefix("-subreddit:").lower() for w in words if w.startswith("-subreddit:")}
        q = " ".join(w for w in words if not w.startswith("-subreddit:")).lower()
        limit = max(1, min(100, int(params.get("limit", 25))))
        window = WINDOWS.get(params.get("t", "all"))
        state = self.server.state
        hits = [
            p
            for p in state.posts
            if q
            and (q in p["title"].lower() or q in p["selftext"].lower())
            and (not subreddits or p["subreddit"].lower() in subreddits)
            and p["subreddit"].lower() not in excluded
            and (window is None or p["created_utc"] >= state.now - window)
        ]
        sort = params.get("sort", "relevance")
        hits.sort(key=lambda p: -p["created_utc"])  # new, and relevance as this server sees it
        if sort == "top":
            hits.sort(key=lambda p: -p["score"])
        elif sort == "comments":
            hits.sort(key=lambda p: -p["num_comments"])
        start = 0
        after = params.get("after")
        if self.server.state.faults.loop_cursor:
            after = None  # a broken upstream: the first page again, with the same cursor
        if after:
            names = [p["name"] for p in hits]
            start = names.index(after) + 1 if after in names else len(hits)
        page = hits[start : start + limit]
        more = start + limit < len(hits)
        return {
            "kind": "Listing",
            "data": {
                "after": page[-1]["name"]
                if page and (more or self.server.state.faults.loop_cursor)
                else None,
                "before": None,
                "dist": len(page),
                "children": [{"kind": "t3", "data": p} for p in page],
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


class RedditTestServer:
    """`with RedditTestServer(posts) as srv:` serves on 127.0.0.1 at `srv.url`."""

    def __init__(self, posts: list[dict[str, Any]]) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.state = ServerState(posts=posts)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def state(self) -> ServerState:
        return self.httpd.state

    def __enter__(self) -> RedditTestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
