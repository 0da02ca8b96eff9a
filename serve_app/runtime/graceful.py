"""A graceful stop for `serve run`: SIGTERM (Docker, Kubernetes, systemd) as Ctrl-C.

`serve run` shuts Serve down cleanly on SIGINT (KeyboardInterrupt: every replica drains its
in-flight requests and runs its shutdown code, which hands held history records over) but
dies at once on SIGTERM, the signal every process manager sends. `run_gracefully` runs it
as a child in its own session, turns the first SIGTERM or SIGINT into one SIGINT for the
child (a second SIGINT would abort the child's shutdown), and waits at most
`stop_timeout_s` before it kills it.

Behind Ray's HAProxy ingress, Serve's shutdown kills HAProxy first (`proc.kill()`), which
cuts every request in flight through it. So before the SIGINT the runner soft-stops each
HAProxy under the child (SIGUSR1: stop listening, finish the connections it has, exit) and
waits for them, bounded by `drain_timeout_s`: accepted requests are answered, new
connections are refused.
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


def soft_stop_proxies(root_pid: int, timeout_s: float) -> int:
    """SIGUSR1 to every HAProxy below `root_pid`; wait (at most `timeout_s`) until they have
    answered what they accepted and exited. Returns how many there were."""
    import psutil

    try:
        tree = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    proxies = []
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            if proc.name() == "haproxy":
                proc.send_signal(signal.SIGUSR1)
                proxies.append(proc)
    _, alive = psutil.wait_procs(proxies, timeout=timeout_s)
    if alive:
        log.warning("%d HAProxy process(es) still draining after %.0f s", len(alive), timeout_s)
    return len(proxies)


def run_gracefully(cmd: Sequence[str], stop_timeout_s: float = 60.0, drain_timeout_s: float = 30.0) -> int:
    """Run `cmd`; 0 after a stop that finished within the bound, 1 if it had to be killed,
    else the child's own exit status."""
    # SIGINT back to its default in the child: a shell starting us in the background (`&`
    # without job control) sets it to "ignored", which exec keeps, and Python then never
    # raises KeyboardInterrupt, so `serve run` would not stop.
    child = subprocess.Popen(list(cmd), start_new_session=True, preexec_fn=_default_signals)
    asked: list[float] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        if not asked:  # the work happens in the loop below, not in the handler
            asked.append(time.monotonic())
            name = signal.Signals(signum).name
            log.warning("%s: stopping gracefully (at most %.0f s)", name, stop_timeout_s)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    interrupted = False
    try:
        while True:
            if asked and not interrupted:
                drained = soft_stop_proxies(child.pid, min(drain_timeout_s, stop_timeout_s / 2))
                if drained:
                    log.warning("HAProxy drained in %.1f s", time.monotonic() - asked[0])
                child.send_signal(signal.SIGINT)
                interrupted = True
            try:
                rc = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > stop_timeout_s:
                    log.error("not stopped within %.0f s: killing it", stop_timeout_s)
                    # Its whole session: the local Ray processes `serve run` started too.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if asked:
        log.warning("stopped in %.1f s", time.monotonic() - asked[0])
        return 0 if rc in (0, -signal.SIGINT, 130) else rc
    return rc
