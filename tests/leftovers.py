"""Processes a test run left behind: the suite fails at its end if any are still alive.

A process counts as this run's if it started after the run did and is either a descendant
of the pytest process or (daemons such as an embedded PostgreSQL, reparented to init) names
one of the run's own temp directories on its command line. Other sessions' processes on the
same machine match neither, so parallel runs do not blame each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import psutil

# Temp directories this run created outside pytest's basetemp (Ray's, the reliability tier's).
OWN_DIRS: list[str] = []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ours(p: psutil.Process, started: float, descendants: set[int], dirs: Iterable[str]) -> bool:
    try:
        if p.create_time() < started:
            return False
        if p.pid in descendants:
            return True
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(d and d in cmd for d in dirs)


def leftovers(started: float, dirs: Iterable[str]) -> list[psutil.Process]:
    me = psutil.Process()
    descendants = {c.pid for c in me.children(recursive=True)}
    own = [*dirs, *OWN_DIRS]
    return [
        p
        for p in psutil.process_iter()
        if p.pid != me.pid and _ours(p, started, descendants, own) and _alive(p)
    ]


def wait_for_none(started: float, dirs: Iterable[str], grace_s: float = 30.0) -> list[psutil.Process]:
    """This run's processes still alive after `grace_s` (Ray and Chromium take a moment)."""
    dirs = list(dirs)
    deadline = time.monotonic() + grace_s
    left = leftovers(started, dirs)
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = leftovers(started, dirs)
    return left


def describe(procs: Iterable[psutil.Process]) -> str:
    lines = []
    for p in procs:
        try:
            lines.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            continue
    return "\n".join(lines)
