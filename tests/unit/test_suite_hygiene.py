"""The suite's own rules: every test module carries a tier marker, CI cannot pass by skipping
a tier whose service is missing, and the leftover-process check sees what a test leaves."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
import tomllib

import pytest

from tests.conftest import ROOT, service_unavailable
from tests.leftovers import leftovers

pytestmark = pytest.mark.unit


def _markers() -> set[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {m.split(":")[0] for m in cfg["tool"]["pytest"]["ini_options"]["markers"]}


def _module_marker(path: str) -> str | None:
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return ast.unparse(node.value)
    return None


def test_every_test_module_carries_a_known_tier_marker() -> None:
    known = _markers()
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    assert len(modules) > 30
    missing = [m for m in modules if _module_marker(m) is None]
    assert not missing, f"modules without `pytestmark = pytest.mark.<tier>`: {missing}"
    unknown = [m for m in modules if not any(f"mark.{k}" in (_module_marker(m) or "") for k in known)]
    assert not unknown, f"modules whose marker is none of {sorted(known)}: {unknown}"


def test_a_missing_service_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        service_unavailable("no Redis")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required service is unavailable: no Redis"):
        service_unavailable("no Redis")


def test_the_leftover_check_finds_a_daemon_named_by_an_own_dir() -> None:
    started = time.time() - 1
    marker = f"/tmp/em-leftover-probe-{time.time_ns()}"
    # A grandchild that outlives its parent (reparented, like a daemon) and names our dir.
    sleeper = f"import time; time.sleep(30)  # {marker}"
    code = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {sleeper!r}])"
    subprocess.run([sys.executable, "-c", code], check=True)
    found = leftovers(started, [marker])
    try:
        assert len(found) == 1 and marker in " ".join(found[0].cmdline())
        # Another run's directory does not claim it.
        assert all(marker not in " ".join(p.cmdline()) for p in leftovers(started, ["/tmp/em-other"]))
    finally:
        for p in found:
            p.kill()
            p.wait(5)
    assert not [p for p in leftovers(started, [marker]) if marker in " ".join(p.cmdline())]
