"""The `emotion-monitor` command line: one module per sub-command group.

Importing a module registers its commands on the apps of tooling/cli/main.py; the order of
the imports below is the order `--help` lists the commands in.
"""

from __future__ import annotations

from tooling.cli.main import app

# One import per command module (each adds its commands when imported).
from tooling.cli import (  # noqa: F401  isort: skip
    model,
    analyze,
    watch,
    ops,
    bench,
    cluster,
    compare,
    counting,
    demo,
    distill,
    drift,
    file_analysis,
    rollout,
    profile,
    retrain,
    services,
)

__all__ = ["app"]
