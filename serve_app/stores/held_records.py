"""History records on their way to Redis, and where they wait while Redis is down.

Each answered analysis leaves a record for the PostgreSQL sync. `HeldRecords.save` returns
only once the record is in Redis or, while Redis is unreachable, fsynced in this process's
journal (`serve_app.stores.journal`); a background task then offers held records to Redis until it
takes them, without waiting for the next request. Records the journal could not take are
held in memory (bounded) as a last resort.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from serve_app.domain.records import HistoryRecord
from serve_app.stores.cache import AnalysisCache
from serve_app.stores.history import queue_record
from serve_app.stores.journal import Journal, JournalError

log = logging.getLogger("ray.serve.emotion_monitor.held_records")


class HeldRecords:
    def __init__(
        self,
        store: AnalysisCache,
        journal_dir: str | None,
        retry_s: float = 1.0,
        shutdown_s: float = 10.0,
        max_memory: int = 10_000,
    ) -> None:
        self.store = store
        self.retry_s = retry_s
        self.shutdown_s = shutdown_s
        self.max_memory = max_memory
        self._unsaved: collections.deque[HistoryRecord] = collections.deque()
        self.journal = Journal(Path(journal_dir)) if journal_dir else None
        self._orphans_checked = self.journal is None
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Records not yet in Redis: in the journal, or in memory if it could not be written."""
        return len(self._unsaved) + (self.journal.pending if self.journal else 0)

    async def _push(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Hand records to Redis in one MULTI; raises if Redis does not take them."""
        assert self.store.client is not None
        pipe = self.store.client.pipeline(transaction=True)
        for rec in records:
            queue_record(pipe, rec)
        try:
            await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.store.mark_failed(exc)
            raise
        self.store.mark_ok()

    async def _hand_over_held(self) -> None:
        """Offer held records to Redis: this replica's, then those a stopped replica left."""
        if self.store.client is None or not self.store.available:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            if self.journal is not None:
                await self.journal.replay(self._push)
                if not self._orphans_checked:
                    await self.journal.replay_orphans(self._push)
                    self._orphans_checked = True
            while self._unsaved:
                await self._push([self._unsaved[0]])
                self._unsaved.popleft()

    async def save(self, rec: HistoryRecord | None) -> None:
        """Hand a record to Redis for the sync; while Redis is down, make it durable first.

        Returns only once the record is in Redis or fsynced in the journal: the caller
        answers after that, so an answered analysis survives a `kill -9` of the whole app.
        """
        # One writer at a time: concurrent requests must not write or drop each other's records.
        async with self._flush_lock:
            await self._hand_over_held()  # older records first
            if rec is not None:
                try:
                    if self.held or self.store.client is None or not self.store.available:
                        raise redis.ConnectionError("Redis marked unavailable")
                    await self._push([rec])
                except (redis.RedisError, OSError):
                    self._hold(rec)
        self._trim_unsaved()
        self._keep_offering()

    def _hold(self, rec: HistoryRecord) -> None:
        if self.journal is not None:
            try:
                self.journal.append(rec)
                return
            except JournalError as exc:
                log.error("%s; holding record %s in memory", exc, rec["query_id"])
        self._unsaved.append(rec)

    def _keep_offering(self) -> None:
        # Held records must not wait for this replica's next /analyze: behind HAProxy another
        # replica may take all the traffic.
        if self.held and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._offer_held())

    async def _offer_held(self) -> None:
        while self.held:
            await asyncio.sleep(self.retry_s)
            try:
                await self.save(None)
            except Exception as exc:  # the loop must outlive any one failure
                log.error("handing held history records to Redis failed: %r", exc)

    async def close(self) -> None:
        """At a graceful shutdown: a last few seconds for the task offering held records."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            await asyncio.wait({flusher}, timeout=self.shutdown_s)
        if self._unsaved:
            log.error("%d history records lost: Redis still unavailable at shutdown", len(self._unsaved))
        journal = self.journal
        if journal is not None:
            if journal.pending:
                log.warning("%d history records stay in %s for the next start", journal.pending, journal.path)
            journal.close()

    @property
    def due(self) -> bool:
        """Whether a hand-over should be tried: records are held or orphans not yet adopted."""
        return bool(self.held) or not self._orphans_checked

    async def offer(self) -> None:
        """Try a hand-over now (a health check, a request); never raises."""
        if self.due:
            try:
                await self.save(None)
            except Exception as exc:  # never fail the health check over history
                log.error("handing held history records to Redis failed: %r", exc)

    def _trim_unsaved(self) -> None:
        while len(self._unsaved) > self.max_memory:
            lost = self._unsaved.popleft()
            log.error(
                "history record %s dropped: Redis down and %d records held",
                lost["query_id"],
                self.max_memory,
            )
