"""A local HTTP server that speaks the parts of Reddit's API we use.

- `POST /api/v1/access_token`: OAuth client-credentials grant (praw's `reddit_url`)
- `GET /r/all/search[.json]`: OAuth search listing, bearer token required (praw's `oauth_url`)
- `GET /search.json`: the public search JSON (no credentials)

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
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
        if path == "/r/all/search":
            if self.headers.get("Authorization") != f"bearer {TOKEN}":
                self._send(401, {"message": "Unauthorized", "error": 401})
                return
        elif path != "/search":
            self._send(404, {"message": "Not Found", "error": 404})
            return
        if self._fault():
            return
        self._send(200, self._listing(params), self._ratelimit_headers())

    def _ratelimit_headers(self) -> dict[str, str]:
        f = self.server.state.faults
        return {
            "x-ratelimit-remaining": str(f.ratelimit_remaining),
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(f.ratelimit_reset)),
        }

    def _listing(self, params: dict[str, str]) -> dict[str, Any]:
        q = params.get("q", "").lower()
        limit = max(1, min(100, int(params.get("limit", 25))))
        hits = [
            p
            for p in self.server.state.posts
            if q and (q in p["title"].lower() or q in p["selftext"].lower())
        ]
        hits.sort(key=lambda p: -p["created_utc"])
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
