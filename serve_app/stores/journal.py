"""A durable place for history records while Redis is unreachable: an fsynced local journal.

An analysis answered while Redis is down has its record appended here, and fsynced, before
the answer leaves; a `kill -9` of the whole app then loses nothing that was answered. When
Redis is back, the records are handed to it and the journal is emptied. Handing a record
over twice is harmless: records are keyed by their `query_id`, and the PostgreSQL sync
inserts each id once.

Each process writes its own file and holds an exclusive `flock` on it for as long as it
lives. A file whose lock can be taken belongs to a process that is gone: any replica
replays it (`replay_orphans`), so records left by a killed replica are not stranded.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("ray.serve.emotion_monitor.journal")

Record = Mapping[str, Any]  # a history record (serve_app.domain.records), any format


class JournalError(RuntimeError):
    """The journal could not be written: the record is not durable."""


def _read(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                # A torn last line: the process died mid-write, before its fsync returned,
                # so the answer it belonged to was never sent.
                log.warning("journal %s: skipping a torn last line (%d bytes)", path, len(line))
                break
            yield json.loads(line)


class Journal:
    def __init__(self, directory: Path, name: str | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{name or socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fh = self.path.open("ab")
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.pending = 0
        self._handed = 0  # records at the head of the file already handed over (a replay cut short)

    def append(self, rec: Record) -> None:
        """Write one record and fsync it; raises `JournalError` if it is not on disk."""
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
        try:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise JournalError(f"history journal {self.path} not writable: {exc}") from exc
        self.pending += 1

    async def replay(self, push: Callable[[list[Record]], Awaitable[None]], chunk: int = 1) -> int:
        """Hand this process's records to `push`, a few at a time, then empty the journal.

        One record per MULTI by default: one MULTI of many records (each up to ~130 KB) can
        outlast the client's socket timeout on a busy machine, fail, and be retried whole
        forever, while every new record queues behind it. If `push` raises, the
        records not handed over stay (and the exception propagates); the ones handed over are
        not offered again by this process (offering one twice would be harmless anyway).
        """
        if not self.pending:
            return 0
        records = list(_read(self.path))
        while self._handed < len(records):
            await push(records[self._handed : self._handed + chunk])
            self._handed = min(len(records), self._handed + chunk)
        self._fh.truncate(0)
        self._fh.seek(0)
        os.fsync(self._fh.fileno())
        self.pending = 0
        self._handed = 0
        return len(records)

    async def replay_orphans(self, push: Callable[[list[Record]], Awaitable[None]]) -> int:
        """Replay and delete the journals of processes that are gone; the records replayed."""
        done = 0
        for path in sorted(self.dir.glob("*.jsonl")):
            if path == self.path:
                continue
            try:
                fh = path.open("rb+")
            except FileNotFoundError:
                continue  # another replica took it first
            with fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and will replay it itself
                if not path.exists():
                    continue  # replayed and deleted between our listing and our lock
                records = list(_read(path))
                for rec in records:  # one per MULTI (see `replay`)
                    await push([rec])
                if records:
                    log.warning(
                        "handed %d history records from %s (a stopped process) to Redis",
                        len(records),
                        path.name,
                    )
                path.unlink()
                done += len(records)
        return done

    def close(self) -> None:
        self._fh.close()
        if self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()
