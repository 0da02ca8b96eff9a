"""The page at `/` and the offline API docs: what is shipped, what may be served, its size."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from serve_app.api.page import (
    DOC_ASSETS,
    AssetNotFound,
    docs_asset,
    index_html,
    page_asset,
    page_asset_names,
    registry_json,
)
from serve_app.domain.tasks import TASKS

pytestmark = pytest.mark.unit

PAGE_BUDGET_BYTES = 200_000


def test_index_carries_the_task_registry() -> None:
    html = index_html()
    assert "__REGISTRY__" not in html
    block = re.search(r'<script type="application/json" id="registry">(.*?)</script>', html, re.S)
    assert block is not None
    tasks = json.loads(block.group(1))["tasks"]
    assert list(tasks) == list(TASKS)
    for name, spec in TASKS.items():
        assert tasks[name]["labels"] == list(spec.labels)
        assert tasks[name]["field"] == spec.response_field
        assert set(tasks[name]["colours"]) == set(spec.labels)


def test_registry_json_cannot_close_its_script_element() -> None:
    assert "</" not in registry_json()


def test_every_asset_the_page_names_is_shipped_and_nothing_external() -> None:
    html = index_html()
    named = set(re.findall(r'(?:src|href)="/static/([^"]+)"', html))
    assert named == {"main.js"}  # the stylesheet is written into the page
    assert page_asset("page.css").body.decode() in html
    shipped = set(page_asset_names())
    # Every module's own imports resolve to shipped files too.
    for name in shipped:
        if name.endswith(".js"):
            for dep in re.findall(r'from "\./([^"]+)"', page_asset(name).body.decode()):
                assert dep in shipped, f"{name} imports {dep}, which is not shipped"
    assert named <= shipped
    for name in shipped:
        body = page_asset(name).body.decode()
        remote = re.search(r"(?:src|href|url\()\s*=?\s*[\"']?https?://", body)
        assert not remote, f"{name} loads something remote"
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_page_assets_stay_under_200_kb() -> None:
    total = len(index_html().encode()) + sum(len(page_asset(n).body) for n in page_asset_names())
    assert total < PAGE_BUDGET_BYTES, f"the page's own assets are {total} bytes"


@pytest.mark.parametrize(
    "name", ["../page.py", "..%2Fpage.py", "index.html", "page.py", ".hidden.js", "a/b.js"]
)
def test_only_page_assets_are_served(name: str) -> None:
    with pytest.raises(AssetNotFound):
        page_asset(name)


def test_media_types() -> None:
    assert page_asset("main.js").media_type.startswith("text/javascript")
    assert page_asset("page.css").media_type.startswith("text/css")


def test_docs_assets_come_from_the_package() -> None:
    for name in DOC_ASSETS:
        assert len(docs_asset(name).body) > 1000
    with pytest.raises(AssetNotFound):
        docs_asset("../core.py")


def test_static_files_are_package_data() -> None:
    static = resources.files("serve_app").joinpath("static")
    assert static.joinpath("index.html").is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    for pattern in ("static/*.html", "static/*.js", "static/*.css"):
        assert pattern in pyproject


@pytest.fixture(scope="module")
def client() -> Any:
    from fastapi.testclient import TestClient

    import serve_app.api.page_api  # noqa: F401  (registers the routes on the shared app)
    from serve_app.api.http_api import api

    return TestClient(api)


def test_routes_serve_the_page_its_assets_and_offline_docs(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="registry"' in page.text
    js = client.get("/static/main.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/..%2Fpage.py").status_code == 404
    moved = client.get("/dashboard", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "/?tab=watch"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    css = client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/core.py").status_code == 404
