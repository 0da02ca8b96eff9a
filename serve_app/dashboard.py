"""The watchlist dashboard: one static page (no build step, no framework) that calls the API.

The page holds no data itself; its requests to /watch, /trends and /alerts carry the API key
the user types in (kept in the browser's localStorage), like any other client's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from serve_app.tasks import TASKS


@lru_cache(maxsize=1)
def dashboard_html() -> str:
    page = resources.files("serve_app").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    colours = {name: {lab: spec.colour(lab) for lab in spec.labels} for name, spec in TASKS.items()}
    labels = {name: list(spec.labels) for name, spec in TASKS.items()}
    return page.replace("__COLOURS__", json.dumps(colours)).replace("__LABELS__", json.dumps(labels))
