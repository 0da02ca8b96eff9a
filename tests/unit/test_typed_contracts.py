"""Typed contracts across boundaries (issue 31 item 4): no `Any` in a public signature of
serve_app/ or deployments/ unless docs/architecture.md lists it with its reason.

Pure AST (nothing imported): a public function or method (name without a leading
underscore, in a public class) whose parameter or return annotation names `Any`, or a
module-level alias that does (e.g. `Answer = dict[str, Any]`), must be listed."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

PACKAGES = ("serve_app", "deployments")
SECTION = "## Any left in public signatures"


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
            yield name, ast.parse(path.read_text(encoding="utf-8"))


def _names_any(node: ast.AST | None, aliases: set[str]) -> bool:
    if node is None:
        return False
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and (sub.id == "Any" or sub.id in aliases):
            return True
        if isinstance(sub, ast.Attribute) and sub.attr == "Any":
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):  # a quoted annotation
            names = set(re.findall(r"\w+", sub.value))
            if "Any" in names or names & aliases:
                return True
    return False


def any_aliases(modules: list[tuple[str, ast.Module]]) -> set[str]:
    """Module-level aliases whose value names Any (they hide it from a plain name search)."""
    out: set[str] = set()
    for _, tree in modules:
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and _names_any(value, set()):
                out.add(target.id)
    return out


def _signature_has_any(fn: ast.FunctionDef | ast.AsyncFunctionDef, aliases: set[str]) -> bool:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x)]
    return any(_names_any(p.annotation, aliases) for p in params) or _names_any(fn.returns, aliases)


def public_any_signatures() -> set[str]:
    modules = list(_modules())
    aliases = any_aliases(modules)
    found: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.")
            elif (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not node.name.startswith("_")
                and _signature_has_any(node, aliases)
            ):
                found.add(prefix + node.name)

    for name, tree in modules:
        visit(tree.body, f"{name}.")
    return found


def documented() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert SECTION in text, f"docs/architecture.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([\w.]+)`", section, flags=re.MULTILINE))


def test_every_any_in_a_public_signature_is_listed_with_its_reason() -> None:
    missing = sorted(public_any_signatures() - documented())
    assert not missing, f"Any in public signatures, not listed in docs/architecture.md: {missing}"


def test_the_list_names_only_signatures_that_still_carry_any() -> None:
    # A converted signature leaves the list too, so the list stays the honest remainder.
    stale = sorted(documented() - public_any_signatures())
    assert not stale, f"listed in docs/architecture.md but no longer Any: {stale}"


def test_the_scan_sees_any_directly_through_an_alias_and_in_quotes() -> None:
    tree = ast.parse(
        "from typing import Any\n"
        "Blob = dict[str, Any]\n"
        "def a(x: Any) -> None: ...\n"
        "def b() -> Blob: ...\n"
        "def c(x: 'list[Any]') -> None: ...\n"
        "def d(x: int) -> str: ...\n"
        "def _e(x: Any) -> None: ...\n"
    )
    aliases = any_aliases([("m", tree)])
    assert aliases == {"Blob"}
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {name for name, fn in fns.items() if _signature_has_any(fn, aliases)} == {"a", "b", "c", "_e"}


def test_metrics_helpers_keep_their_names_and_signatures() -> None:
    from serve_app.monitoring import metrics

    assert metrics.record_alert.__name__ == "record_alert"
    assert list(inspect.signature(metrics.record_alert).parameters) == ["task", "label"]
    assert list(inspect.signature(metrics.record_drift).parameters) == ["check"]


def test_the_sync_status_carries_every_counter_the_actor_keeps() -> None:
    from serve_app.domain.schemas import SyncStatus

    # The sync actor's counters (deployments/sync_actor.py SyncActor) all reach /sync/status.
    assert {"pending", "synced_total", "recovered_total", "cpu_pauses", "last_forced_pass"} <= set(
        SyncStatus.model_fields
    )
