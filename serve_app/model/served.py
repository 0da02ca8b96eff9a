"""What the Classifier serves, as the ingress knows it: read through `info()`, kept a few
seconds, and re-read as soon as an answer shows that a model version was rolled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from serve_app.domain.errors import ServiceUnavailable, TaskNotServed
from serve_app.domain.records import ServedModels


class ServedCatalog:
    def __init__(self, read: Callable[[], Awaitable[ServedModels]], ttl_s: float) -> None:
        self._read = read
        self.ttl_s = ttl_s
        self._models: ServedModels | None = None
        self._read_at = 0.0

    async def get(self) -> ServedModels:
        """The served models; the last known ones while the Classifier does not answer."""
        if self._models is None or time.monotonic() - self._read_at > self.ttl_s:
            try:
                self._models = await asyncio.wait_for(self._read(), timeout=10)
            except Exception as exc:
                if self._models is None:
                    raise ServiceUnavailable(f"classifier not ready: {type(exc).__name__}") from None
            self._read_at = time.monotonic()
        assert self._models is not None
        return self._models

    def note_versions(self, expected: dict[str, str], got: dict[str, str]) -> None:
        """An answer came from other versions than the catalog said: re-read it next time."""
        if got != expected:
            self._read_at = 0.0

    @staticmethod
    def plan(models: ServedModels, tasks: Sequence[str] | None) -> list[str]:
        """The tasks to run: those asked for (all served by default), each one served."""
        served = list(models.tasks)
        chosen = list(tasks) if tasks else served
        missing = [t for t in chosen if t not in served]
        if missing:
            raise TaskNotServed(f"task {missing[0]!r} is not served here; served: {', '.join(served)}")
        return chosen
