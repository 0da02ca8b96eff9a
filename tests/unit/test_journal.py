"""The history journal: records fsynced while Redis is down, replayed once, orphans adopted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serve_app.stores.journal import Journal

pytestmark = pytest.mark.unit


def rec(i: int) -> dict[str, Any]:
    return {"query_id": f"q{i}", "keyword": "k", "posts": [{"id": str(i), "title": "ü ✓"}]}


def test_records_are_replayed_once_then_the_journal_is_empty(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    for i in range(3):
        j.append(rec(i))
    assert j.pending == 3
    got: list[dict[str, Any]] = []

    async def push(records: list[dict[str, Any]]) -> None:
        got.extend(records)

    assert asyncio.run(j.replay(push)) == 3
    assert [r["query_id"] for r in got] == ["q0", "q1", "q2"] and got[0]["posts"][0]["title"] == "ü ✓"
    assert j.pending == 0 and j.path.stat().st_size == 0
    assert asyncio.run(j.replay(push)) == 0 and len(got) == 3
    j.close()
    assert not j.path.exists()  # an empty journal leaves nothing behind


def test_a_failed_push_keeps_the_records(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(rec(1))

    async def down(records: list[dict[str, Any]]) -> None:
        raise ConnectionError("redis down")

    with pytest.raises(ConnectionError):
        asyncio.run(j.replay(down))
    assert j.pending == 1 and j.path.stat().st_size > 0


WRITER = """
import sys, time
from pathlib import Path
from serve_app.stores.journal import Journal
j = Journal(Path(sys.argv[1]), name="killed")
for i in range(5):
    j.append({"query_id": f"q{i}"})
print("written", flush=True)
time.sleep(60)
"""


def test_a_killed_process_journal_is_adopted_by_another(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, cwd=root, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    other = Journal(tmp_path)
    got: list[dict[str, Any]] = []

    async def push(records: list[dict[str, Any]]) -> None:
        got.extend(records)

    # Alive: its lock is held, so it is left to replay its own records.
    assert asyncio.run(other.replay_orphans(push)) == 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with (tmp_path / next(p.name for p in tmp_path.glob("killed-*"))).open("ab") as fh:
        fh.write(b'{"query_id": "torn')  # a write cut short by the kill: never acknowledged
    assert asyncio.run(other.replay_orphans(push)) == 5
    assert [r["query_id"] for r in got] == [f"q{i}" for i in range(5)]
    assert not list(tmp_path.glob("killed-*"))
    other.close()


def test_a_replay_cut_short_resumes_where_it_stopped(tmp_path: Path) -> None:
    """One record per push: a long backlog never becomes one MULTI too big to get through,
    and records handed over before a failure are not offered again."""
    j = Journal(tmp_path)
    for i in range(5):
        j.append(rec(i))
    pushed: list[str] = []

    async def flaky(records: list[dict[str, Any]]) -> None:
        assert len(records) == 1
        if len(pushed) == 3 and not getattr(flaky, "failed", False):
            flaky.failed = True  # type: ignore[attr-defined]
            raise ConnectionError("timeout")
        pushed.extend(r["query_id"] for r in records)

    with pytest.raises(ConnectionError):
        asyncio.run(j.replay(flaky))
    assert pushed == ["q0", "q1", "q2"] and j.pending == 5
    assert asyncio.run(j.replay(flaky)) == 5
    assert pushed == [f"q{i}" for i in range(5)] and j.pending == 0
    j.close()
