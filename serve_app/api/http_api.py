"""The HTTP surface shared by every route: the FastAPI app, its error responses, the body
size limit and the API key check.

Errors raised below the ingress (`serve_app.domain.errors`) and here are mapped to HTTP statuses in
this module alone.
"""
# No `from __future__ import annotations`: FastAPI reads the dependency's signature.

import math
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app import __version__
from serve_app.api.security import key_matches
from serve_app.domain.errors import ServiceUnavailable, SourceConfigError, SourceError, TaskNotServed
from serve_app.domain.schemas import MAX_BODY_BYTES, ErrorResponse

api = FastAPI(
    title="emotion-monitor",
    version=__version__,
    description="Emotion breakdown of recent posts about a keyword, and single-text emotion classification.",
    # /docs is served by serve_app.api.page_api from packaged files, not a CDN; no /redoc (ReDoc
    # fetches its logo from the internet).
    docs_url=None,
    redoc_url=None,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in {
        400: "The body is not UTF-8 JSON or is nested too deeply, or a task this service does not serve",
        401: "Missing or invalid X-API-Key (when the service has a key configured)",
        413: "Request body over the size limit",
        422: "Invalid input: the message says which field and why",
        429: "Too many /analyze requests from this client; retry after Retry-After seconds",
        502: "The post source failed (named in the message)",
        503: "A part of the service is unavailable or rate limited; retry after Retry-After seconds",
        504: "The post source did not answer in time",
    }.items()
}


class BodyLimit:
    """Refuse oversized bodies from their Content-Length, before reading them into memory.

    Plain ASGI rather than `@api.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    every request through an extra task group and a streamed response, a cost measured
    on each /predict call at hundreds of requests per second (docs/benchmarks.md).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    size = value.decode("latin-1")
                    if not size.isdigit() or int(size) > MAX_BODY_BYTES:
                        detail = f"request body of {size} bytes is over the {MAX_BODY_BYTES} byte limit"
                        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


api.add_middleware(BodyLimit)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
    # FastAPI's words for invalid UTF-8 or JSON nested past Python's recursion limit.
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        return JSONResponse(
            {"detail": "the body is not parseable: send UTF-8 JSON nested at most ~500 levels deep"},
            status_code=400,
        )
    return await http_exception_handler(request, exc)


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f} s")
        self.retry_after = retry_after


@api.exception_handler(RateLimited)
async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
    seconds = max(1, math.ceil(exc.retry_after))
    return JSONResponse(
        {"detail": f"too many /analyze requests from this client; retry in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


@api.exception_handler(SourceError)
async def _source_error(_: Request, exc: SourceError) -> JSONResponse:
    status = {"timeout": 504, "rate_limited": 503}.get(exc.kind, 502)
    headers = {"Retry-After": str(int(exc.retry_after or 30))} if status == 503 else None
    return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)


@api.exception_handler(SourceConfigError)
async def _source_config_error(_: Request, exc: SourceConfigError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=503, headers={"Retry-After": "60"})


@api.exception_handler(ServiceUnavailable)
async def _unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail}, status_code=503, headers={"Retry-After": str(int(exc.retry_after))}
    )


@api.exception_handler(TaskNotServed)
async def _task_not_served(_: Request, exc: TaskNotServed) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=400)


class Unauthorized(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@api.exception_handler(Unauthorized)
async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "ApiKey"})


async def require_api_key(request: Request) -> None:
    """With a key configured, every API route but /healthz needs it in X-API-Key.

    A route dependency rather than a check inside each handler: it runs before the body is
    validated, so a caller without the key learns nothing about the API from 422s.
    `async` so FastAPI calls it in the event loop, not through its thread pool.
    """
    expected: str | None = getattr(request.app.state, "api_key", None)
    if expected:
        given = request.headers.get("x-api-key")
        if given is None:
            raise Unauthorized("missing X-API-Key header")
        if not key_matches(given, expected):
            raise Unauthorized("invalid API key")


AUTH = [Depends(require_api_key)]
