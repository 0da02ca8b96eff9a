"""The house in layers (issue 31): the core (`serve_app`) is a library that imports no Ray
Serve deployment module; `deployments` holds the thin Ray shells and the composition root
(the app builder and the ingress) and imports the core, never the other way. Checked on the
real import graph two ways: every import statement in the source (lazy ones inside functions
included), and the modules a fresh interpreter holds after importing each core module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "serve_app"
SHELLS = ROOT / "deployments"
LIMITS = {"module": 400, "class": 250, "function": 60}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module an import statement anywhere in the file names (relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_name(path).split(".")[: -node.level]
                names.add(".".join([*base, node.module or ""]).rstrip("."))
            elif node.module:
                names.add(node.module)
    return names


def graph(pkg: Path) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(pkg.rglob("*.py"))}


def test_the_core_imports_no_deployment_module_in_its_source() -> None:
    core = graph(CORE)
    assert len(core) > 60  # the walk found the core
    offenders = sorted(
        f"{m} imports {n}" for m, ns in core.items() for n in ns if n.split(".")[0] == "deployments"
    )
    assert not offenders, offenders


def test_deployments_import_the_core_one_way() -> None:
    shells = graph(SHELLS)
    used = {n for ns in shells.values() for n in ns if n.startswith("serve_app")}
    assert used, "deployments build on the core"
    # A shell never reaches past the core into the tooling or training.
    bad = sorted(
        f"{m} imports {n}"
        for m, ns in shells.items()
        for n in ns
        if n.split(".")[0] in {"tooling", "training"}
    )
    assert not bad, bad


def test_importing_every_core_module_loads_no_deployment_module() -> None:
    mods = sorted(m for m in graph(CORE) if m != "serve_app")
    code = (
        "import importlib, json, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] == 'deployments')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_deployment_import_is_seen_by_the_check(tmp_path: Path) -> None:
    # The check can fail: a lazy import of a deployment inside a core function is caught.
    p = CORE / "_layer_probe.py"
    p.write_text("def f() -> None:\n    from deployments.classifier import Classifier  # noqa: F401\n")
    try:
        assert "deployments.classifier" in imports_of(p)
    finally:
        p.unlink()


def test_every_core_subpackage_says_its_purpose_in_one_line() -> None:
    pkgs = sorted(p for p in CORE.iterdir() if (p / "__init__.py").is_file())
    assert len(pkgs) >= 8
    for pkg in pkgs:
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text()))
        assert doc and "\n" not in doc.strip() and len(doc) <= 110, f"{pkg.name}: {doc!r}"
    # No module is left loose at the core's top but the version.
    loose = sorted(p.name for p in CORE.glob("*.py") if p.name != "__init__.py")
    assert not loose, loose


def sizes(path: Path) -> list[tuple[str, str, int]]:
    text = path.read_text()
    out = [("module", str(path.relative_to(ROOT)), len(text.splitlines()))]
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.ClassDef):
            out.append(("class", f"{path.relative_to(ROOT)}:{node.name}", node.end_lineno - node.lineno + 1))  # type: ignore[operator]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(
                ("function", f"{path.relative_to(ROOT)}:{node.name}", node.end_lineno - node.lineno + 1)
            )  # type: ignore[operator]
    return out


def test_modules_classes_and_functions_stay_small() -> None:
    over = [
        f"{kind} {where}: {n} lines (limit {LIMITS[kind]})"
        for pkg in ("serve_app", "deployments", "tooling", "training")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        for kind, where, n in sizes(path)
        if n > LIMITS[kind]
    ]
    assert not over, over
