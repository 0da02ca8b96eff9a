"""`emotion-monitor run`'s stop: SIGTERM becomes one SIGINT for `serve run`, bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

# Stands in for `serve run`: Python's own KeyboardInterrupt (no handler of its own, as serve
# run), a shutdown taking `shutdown_s`, and a record of every SIGINT it gets.
CHILD = """
import signal, sys, time
from pathlib import Path
log = Path(sys.argv[1]); shutdown_s = float(sys.argv[2])
log.write_text("ready\\n")
try:
    while True: time.sleep(0.05)
except KeyboardInterrupt:
    with log.open("a") as fh: fh.write("SIGINT\\n")
    signal.signal(signal.SIGINT, lambda s, f: open(sys.argv[1], "a").write("SIGINT again\\n"))
    time.sleep(shutdown_s)
    with log.open("a") as fh: fh.write("drained\\n")
    sys.exit(0)
"""

WRAPPER = """
import sys
from serve_app.runtime.graceful import run_gracefully
sys.exit(run_gracefully([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], float(sys.argv[4])))
"""


def start(
    tmp_path: Path, shutdown_s: float, bound: float, sigint_ignored: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "child.log"
    root = Path(__file__).resolve().parents[2]
    # A shell starting a job in the background without job control ignores SIGINT for it.
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, CHILD, str(log), str(shutdown_s), str(bound)],
        cwd=root,
        preexec_fn=ignore,
    )
    deadline = time.monotonic() + 20
    while not (log.exists() and "ready" in log.read_text()):
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    return proc, log


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "started-in-background"])
def test_sigterm_drains_and_exits_0(tmp_path: Path, sigint_ignored: bool) -> None:
    proc, log = start(tmp_path, shutdown_s=1.0, bound=10, sigint_ignored=sigint_ignored)
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)  # impatient process managers send it twice
    assert proc.wait(timeout=15) == 0
    assert log.read_text().splitlines() == ["ready", "SIGINT", "drained"]  # one SIGINT only


def test_a_stop_past_the_bound_is_killed_and_says_so(tmp_path: Path) -> None:
    proc, log = start(tmp_path, shutdown_s=30.0, bound=1.0)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=15) == 1
    assert time.monotonic() - started < 5
    assert "drained" not in log.read_text()


# Stands in for Ray's HAProxy: a process named `haproxy` under `serve run` that, on SIGUSR1
# (soft stop), finishes the request it holds (0.5 s) and exits; its log says when.
PROXY = """
import signal, sys, time
from pathlib import Path
log = Path(sys.argv[1])
def soft_stop(signum, frame):
    with log.open("a") as fh: fh.write("proxy soft-stop\\n")
    time.sleep(0.5)
    with log.open("a") as fh: fh.write("proxy drained\\n")
    sys.exit(0)
signal.signal(signal.SIGUSR1, soft_stop)
deadline = time.monotonic() + 60  # never outlives a failed test for long
while time.monotonic() < deadline: time.sleep(0.05)
"""

CHILD_WITH_PROXY = """
import os, subprocess, sys, time
from pathlib import Path
proxy = Path(sys.argv[1]).with_name("haproxy")
os.symlink(sys.executable, proxy)
subprocess.Popen([str(proxy), "-c", sys.argv[3], sys.argv[1]])
time.sleep(0.5)
code, sys.argv = sys.argv[2], [sys.argv[0], sys.argv[1], "0.2"]  # CHILD's own arguments
exec(code)
"""


def test_the_haproxy_front_drains_before_serve_is_interrupted(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    root = Path(__file__).resolve().parents[2]
    wrapper = WRAPPER.replace("sys.argv[3]]", "sys.argv[3], sys.argv[5]]")
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, CHILD_WITH_PROXY, str(log), CHILD, "10", PROXY],
        cwd=root,
    )
    deadline = time.monotonic() + 20
    while not (log.exists() and "ready" in log.read_text()):
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    # The proxy finished what it held before serve run got its SIGINT, and only one SIGINT.
    assert log.read_text().splitlines() == ["ready", "proxy soft-stop", "proxy drained", "SIGINT", "drained"]
