"""Calls from the ingress to the other deployments: retried while a replica is replaced,
bounded in time, and admitted only while the ingress has room for more model work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from serve_app.domain.errors import ServiceUnavailable, SourceConfigError, SourceError
from serve_app.monitoring import metrics

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.calls")

T = TypeVar("T")

# A replica died or is being replaced: the call never ran to completion, so it may be re-sent.
RETRYABLE = (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
    ReplicaUnavailableError,
    DeploymentUnavailableError,
)


def _unwrap(exc: BaseException) -> BaseException:
    """Ray re-raises a replica's exception wrapped; find ours inside, if it is."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


async def call_with_retries(what: str, send: Callable[[], Awaitable[T]], timeout: float, retries: int) -> T:
    """Await a handle call; retry it while the replica that took it died (Serve replaces it).

    Every call made through here is idempotent (fetch, classify, summarize), so a retry on
    another (or the replacement) replica is safe. A source's own error passes through;
    anything else, or running out of `timeout`, becomes ServiceUnavailable naming `what`.
    """
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(send(), timeout=max(0.1, left))
        except (SourceError, SourceConfigError):
            raise
        except TimeoutError:
            raise ServiceUnavailable(f"{what} did not answer within {timeout:.0f} s") from None
        except BackPressureError:
            raise ServiceUnavailable(f"{what} is at capacity; retry shortly", retry_after=1) from None
        except Exception as exc:
            inner = _unwrap(exc)
            if isinstance(inner, SourceError | SourceConfigError):
                raise inner from None
            attempt += 1
            retryable = isinstance(exc, RETRYABLE) or isinstance(inner, RETRYABLE)
            pause = min(2.0, 0.1 * 2**attempt)
            if retryable and attempt <= retries and deadline - time.monotonic() > pause:
                log.warning("%s: replica lost (%s); retry %d", what, type(exc).__name__, attempt)
                await asyncio.sleep(pause)
                continue
            log.warning("%s failed: %s", what, repr(exc)[:300])
            raise ServiceUnavailable(f"{what} unavailable ({type(inner).__name__}); retry shortly") from None


class Admission:
    """Bounds the model work in flight: beyond `limit`, answer 503 now instead of queueing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0
        self.shed_total = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.inflight >= self.limit:
            self.shed_total += 1
            metrics.record_shed()
            raise ServiceUnavailable(
                f"server busy: {self.inflight} requests in progress (limit {self.limit})", retry_after=1
            )
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
