"""HTTP routes for the page at `/`, its assets, and the API docs served without a CDN.

Plain FastAPI routes on the ingress's app (imported by deployments.ingress so they exist
before Serve wraps the app). None needs the API key: the page and the docs are public, the
data they show comes from the API routes, which do.
"""
# No `from __future__ import annotations`: FastAPI must see real types.

from fastapi import Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from serve_app.api.http_api import api
from serve_app.api.page import Asset, AssetNotFound, docs_asset, index_html, page_asset

# The assets change only with a deploy; a revalidation is one cheap 304-less request.
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _asset_response(load: Asset) -> Response:
    return Response(load.body, media_type=load.media_type, headers=ASSET_HEADERS)


def _not_found(exc: AssetNotFound) -> JSONResponse:
    return JSONResponse({"detail": f"no such asset: {exc.args[0]}"}, status_code=404)


@api.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    """Ask about a keyword, compare keywords, export, watch: the page people use."""
    return HTMLResponse(index_html(), headers={"Cache-Control": "no-cache"})


@api.get("/static/{name}", include_in_schema=False)
async def static_asset(name: str) -> Response:
    try:
        return _asset_response(page_asset(name))
    except AssetNotFound as exc:
        return _not_found(exc)


@api.get("/dashboard", include_in_schema=False)
async def dashboard() -> RedirectResponse:
    """The old watchlist dashboard is the page's Watch tab now."""
    return RedirectResponse("/?tab=watch", status_code=308)


@api.get("/docs/assets/{name}", include_in_schema=False)
async def docs_file(name: str) -> Response:
    try:
        return _asset_response(docs_asset(name))
    except AssetNotFound as exc:
        return _not_found(exc)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@api.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI from files this app serves, so /docs works with no internet."""
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{api.openapi_url}",
        title=f"{api.title} - Swagger UI",
        swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/assets/favicon.png",
        oauth2_redirect_url=None,
        # No "try it out" validator badge: it would call a server on the internet.
        swagger_ui_parameters={"validatorUrl": None},
    )
