"""The package's shape: the service's core never imports tooling or torch, and a wheel carries
everything `pip install .` users need (the CLI entry point, migrations, the locustfile)."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CORE = ["serve_app", "deployments"]
FORBIDDEN = ("tooling", "training", "torch", "transformers")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_tooling_or_torch() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for pkg in CORE
        for path in (ROOT / pkg).rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not offenders, sorted(offenders)


def test_a_wheel_carries_the_cli_migrations_and_locustfile(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("emotion_monitor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "loadtest/locustfile.py" in names
    migrations = sorted(n for n in names if n.startswith("serve_app/migrations/") and n.endswith(".sql"))
    assert [Path(m).name for m in migrations] == sorted(
        p.name for p in (ROOT / "serve_app" / "migrations").glob("*.sql")
    )
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "emotion-monitor = tooling.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith("tests/") for n in names)
