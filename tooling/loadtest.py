"""Run Locust headless in its own process and summarise its CSV statistics.

Locust (gevent) is never imported here: it runs as `python -m locust`, so this module can
live beside Ray.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _locustfile() -> Path:
    # Installed with the package (`loadtest` is packaged), so `pip install .` finds it too.
    spec = importlib.util.find_spec("loadtest.locustfile")
    if spec is None or spec.origin is None:
        raise LoadTestError("the loadtest package is not installed: pip install the project")
    return Path(spec.origin)


class LoadTestError(RuntimeError):
    """Locust could not run or wrote no statistics."""


def run_locust(
    host: str,
    users: int,
    duration_s: int,
    out_dir: Path,
    spawn_rate: float | None = None,
    user_classes: list[str] | None = None,
    shape: str | None = None,
    locustfile: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "locust"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile or _locustfile()),
        "--headless",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--html",
        str(out_dir / "report.html"),
        "--only-summary",
        "--stop-timeout",
        "10",
        "--exit-code-on-error",
        "0",
    ]
    if shape is None:
        cmd += ["-u", str(users), "-r", str(spawn_rate or users), "-t", f"{duration_s}s"]
    cmd += user_classes or []
    env = {**os.environ, **(extra_env or {})}
    if shape:
        env["EM_SHAPE"] = shape
    # The run bounds itself (-t or the shape's last stage); the timeout is a backstop.
    limit = duration_s + 60 if shape is None else 600
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        raise LoadTestError(f"locust did not stop within {limit} s") from None
    stats = Path(f"{prefix}_stats.csv")
    if not stats.is_file():
        raise LoadTestError(f"locust wrote no statistics (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return read_stats(stats)


def read_stats(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append(
                {
                    "name": r["Name"] if r["Name"] != "Aggregated" else "all",
                    "requests": int(r["Request Count"]),
                    "failures": int(r["Failure Count"]),
                    "rps": float(r["Requests/s"]),
                    "p50_ms": float(r["50%"] or 0),
                    "p95_ms": float(r["95%"] or 0),
                    "p99_ms": float(r["99%"] or 0),
                }
            )
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'request':<18}{'reqs':>8}{'fails':>7}{'RPS':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"]
    for r in rows:
        lines.append(
            f"{r['name']:<18}{r['requests']:>8}{r['failures']:>7}{r['rps']:>9.1f}"
            f"{r['p50_ms']:>9.0f}{r['p95_ms']:>9.0f}{r['p99_ms']:>9.0f}"
        )
    return "\n".join(lines)
