"""Batch scoring through a running Serve app, by DeploymentHandle (no HTTP).

Run as a Ray job against a cluster that runs the app:

    ray job submit --address http://127.0.0.1:8265 -- \\
        emotion-monitor score-file --input texts.jsonl --output scored.jsonl
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve_app.domain.tasks import DEFAULT_TASK


def read_texts(path: Path, field: str = "text") -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get(field), str):
                    raise ValueError(f"{path}:{lineno}: no string field {field!r}")
                yield row


def score_file(
    input_path: Path,
    output_path: Path,
    app_name: str = "emotion-monitor",
    chunk: int = 64,
    field: str = "text",
    in_flight: int = 8,
    task: str = DEFAULT_TASK,
) -> int:
    """Classify every row's `field` and write the row back with the `task`'s prediction added
    under the task's name."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address="auto", log_to_driver=False)
    handle = serve.get_deployment_handle("Classifier", app_name=app_name)
    rows = list(read_texts(input_path, field))
    pending: list[tuple[int, Any]] = []
    results: list[list[dict[str, Any]]] = [[] for _ in range(0, len(rows), chunk)]
    for n, start in enumerate(range(0, len(rows), chunk)):
        pending.append((n, handle.classify.remote([r[field] for r in rows[start : start + chunk]], task)))
        if len(pending) >= in_flight:  # bounded: never queue the whole file at once
            i, resp = pending.pop(0)
            results[i] = resp.result()
    for i, resp in pending:
        results[i] = resp.result()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        for row, pred in zip(rows, (p for part in results for p in part), strict=True):
            out.write(json.dumps({**row, task: pred}, ensure_ascii=False) + "\n")
    return len(rows)
