"""A graceful stop for `serve run`: SIGTERM (Docker, Kubernetes, systemd) as Ctrl-C.

`serve run` shuts Serve down cleanly on SIGINT (KeyboardInterrupt: every replica drains its
in-flight requests and runs its shutdown code, which hands held history records over) but
dies at once on SIGTERM, the signal every process manager sends. `run_gracefully` runs it
as a child in its own session, turns the first SIGTERM or SIGINT into one SIGINT for the
child (a second SIGINT would abort the child's shutdown), and waits at most
`stop_timeout_s` before it kills it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("emotion_monitor.graceful")


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_gracefully(cmd: Sequence[str], stop_timeout_s: float = 60.0) -> int:
    """Run `cmd`; 0 after a stop that finished within the bound, 1 if it had to be killed,
    else the child's own exit status."""
    # SIGINT back to its default in the child: a shell starting us in the background (`&`
    # without job control) sets it to "ignored", which exec keeps, and Python then never
    # raises KeyboardInterrupt, so `serve run` would not stop.
    child = subprocess.Popen(list(cmd), start_new_session=True, preexec_fn=_default_signals)
    asked_at: float | None = None

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal asked_at
        if asked_at is None:
            asked_at = time.monotonic()
            log.warning(
                "%s: stopping gracefully (at most %.0f s)", signal.Signals(signum).name, stop_timeout_s
            )
            child.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                rc = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if asked_at is not None and time.monotonic() - asked_at > stop_timeout_s:
                    log.error("not stopped within %.0f s: killing it", stop_timeout_s)
                    # Its whole session: the local Ray processes `serve run` started too.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if asked_at is not None:
        log.warning("stopped in %.1f s", time.monotonic() - asked_at)
        return 0 if rc in (0, -signal.SIGINT, 130) else rc
    return rc
