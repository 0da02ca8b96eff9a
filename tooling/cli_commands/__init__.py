"""Sub-commands of `emotion-monitor` kept out of tooling/cli.py, one module per command group.

Each module imports `app` (or a sub-app) from tooling.cli and decorates its commands; the
import list below registers them.
"""

from __future__ import annotations

# One import per command module.
from tooling.cli_commands import (
    compare,  # noqa: F401
    counting,  # noqa: F401
    demo,  # noqa: F401
    distill,  # noqa: F401
    drift_bench,  # noqa: F401
    file_analysis,  # noqa: F401
    model_rollout,  # noqa: F401
    profile,  # noqa: F401
    retrain,  # noqa: F401
    services,  # noqa: F401
)
