"""Loading labelled text: JSON Lines `{"text", "label"[, "id"]}` files, or the HF hub when online."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from serve_app.domain.labels import label_to_id

# The target of a task a training example has no label for: the loss skips it.
NO_LABEL = -100


class DataError(ValueError):
    """A data file is missing or malformed."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    source: str = ""
    id: str = ""


@dataclass(frozen=True)
class TrainExample:
    """A text with a target per task, in the config's task order (NO_LABEL where unlabelled)."""

    text: str
    targets: tuple[int, ...]
    source: str = ""


def default_data_root() -> Path:
    """Where the shared data sets live: $EMOTION_MONITOR_MODEL__DATA_ROOT or ../shared/data."""
    from serve_app.config.settings import get_settings

    return get_settings().model.data_root


def read_jsonl(
    path: str | Path, labels: Sequence[str], source: str = "", limit: int | None = None
) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass --data-root or set EMOTION_MONITOR_MODEL__DATA_ROOT")
    out: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = row["text"], row["label"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object with 'text' and 'label' ({exc})"
                ) from None
            if not isinstance(text, str):
                raise DataError(f"{path}:{lineno}: 'text' must be a string")
            try:
                out.append(
                    Example(text, label_to_id(label, labels), source or path.stem, str(row.get("id", "")))
                )
            except ValueError as exc:
                raise DataError(f"{path}:{lineno}: {exc}") from None
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise DataError(f"{path} holds no examples")
    return out


def join_tasks(
    per_task: Mapping[str, Sequence[Example]], tasks: Sequence[str], source: str
) -> list[TrainExample]:
    """One example per distinct row across a source's task files, joined on `id` (on the text
    where a row has no id), with a target for every task that labels it."""
    merged: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    for task, exs in per_task.items():
        col = tasks.index(task)
        for ex in exs:
            key = ex.id or f"text:{ex.text}"
            targets = merged.setdefault(key, [NO_LABEL] * len(tasks))
            texts.setdefault(key, ex.text)
            targets[col] = ex.label
    return [TrainExample(texts[k], tuple(v), source) for k, v in merged.items()]


def load_hf_dataset(name: str, split: str, labels: Sequence[str], limit: int | None = None) -> list[Example]:
    """The online alternative: e.g. `dair-ai/emotion` from the Hugging Face hub.

    Needs the `datasets` package and a network; it is not reachable on our CI machines.
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("`pip install datasets` to load data from the Hugging Face hub") from exc
    ds = datasets.load_dataset(name, split=split)  # pragma: no cover - needs the network
    rows = ds if limit is None else ds.select(range(min(limit, len(ds))))  # pragma: no cover
    return [Example(r["text"], label_to_id(r["label"], labels), name) for r in rows]  # pragma: no cover


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def label_counts(examples: Sequence[Example], labels: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(labels, 0)
    for ex in examples:
        counts[labels[ex.label]] += 1
    return counts
