"""The page at `/`: static files (no build step, no framework, no CDN) read from the package.

The page holds no data itself: its requests carry the API key the user types in (kept in the
browser's localStorage), like any other client's. The task registry's labels, titles and
colours are written into the HTML once, so the page draws every served task without a
request of its own and without repeating the registry in JavaScript.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from serve_app.domain.tasks import TASKS

# Only these names are served from serve_app/static: a request can never walk elsewhere.
ASSET_NAME = re.compile(r"^[a-z][a-z0-9_]*\.(js|css)$")
MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "png": "image/png",
}
STYLESHEET_LINK = '<link rel="stylesheet" href="/static/page.css">'
# The Swagger UI files that /docs loads, from the fastapi-offline wheel. (Its ReDoc build is
# left out: ReDoc fetches its logo from the internet.)
DOC_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


class AssetNotFound(LookupError):
    """A page or docs asset name that is not shipped."""


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def registry_json() -> str:
    """What the page needs of each task: its title, labels in order, colours, response fields."""
    tasks = {
        name: {
            "title": spec.title,
            "labels": list(spec.labels),
            "colours": {lab: spec.colour(lab) for lab in spec.labels},
            "field": spec.response_field,
            "among_field": spec.among_field,
            "rest_label": spec.rest_label,
        }
        for name, spec in TASKS.items()
    }
    # `</` cannot end the <script> element it is written into.
    return json.dumps({"tasks": tasks}).replace("</", "<\\/")


# Read on each request, not cached: a few KB from disk, and an edited page shows on reload.
def index_html() -> str:
    """The page, its stylesheet written in: the first paint waits for no second request."""
    static = resources.files("serve_app").joinpath("static")
    page = static.joinpath("index.html").read_text(encoding="utf-8")
    css = static.joinpath("page.css").read_text(encoding="utf-8")
    page = page.replace(STYLESHEET_LINK, f"<style>\n{css}</style>")
    return page.replace("__REGISTRY__", registry_json())


def page_asset(name: str) -> Asset:
    """A JavaScript module or stylesheet of the page; AssetNotFound for anything else."""
    if not ASSET_NAME.match(name):
        raise AssetNotFound(name)
    file = resources.files("serve_app").joinpath("static", name)
    if not file.is_file():
        raise AssetNotFound(name)
    return Asset(file.read_bytes(), MEDIA_TYPES[name.rsplit(".", 1)[1]])


def _docs_dir() -> Path:
    try:
        import fastapi_offline
    except ImportError:  # a dependency of the project: only a broken install lacks it
        raise AssetNotFound("fastapi-offline is not installed: `pip install -e .` installs it") from None
    return Path(fastapi_offline.__file__).parent / "static"


@lru_cache(maxsize=8)
def docs_asset(name: str) -> Asset:
    """A Swagger UI file shipped by the fastapi-offline package."""
    if name not in DOC_ASSETS:
        raise AssetNotFound(name)
    path = _docs_dir() / name
    if not path.is_file():
        raise AssetNotFound(name)
    return Asset(path.read_bytes(), MEDIA_TYPES[name.rsplit(".", 1)[1]])


def page_asset_names() -> list[str]:
    """Every asset the page ships (the size budget in the tests sums these)."""
    static = resources.files("serve_app").joinpath("static")
    return sorted(f.name for f in static.iterdir() if ASSET_NAME.match(f.name))
