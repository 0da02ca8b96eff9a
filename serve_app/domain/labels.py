"""The label sets the models predict, in the order of their output logits."""

from __future__ import annotations

from collections.abc import Sequence

from serve_app.domain.tasks import TASKS

# Same ids as the Hugging Face `dair-ai/emotion` dataset (0 sadness ... 5 surprise), then
# 6 neutral (no clear emotion).
EMOTION_LABELS: tuple[str, ...] = TASKS["emotion"].labels


class UnknownLabelError(ValueError):
    """A data row carries a label that the task does not know."""


def label_to_id(label: str | int, labels: Sequence[str]) -> int:
    """Map a label name (or an integer id, as the HF datasets store them) to its index."""
    if isinstance(label, bool):
        raise UnknownLabelError(f"label {label!r} is a bool, expected a name or an id")
    if isinstance(label, int):
        if 0 <= label < len(labels):
            return label
        raise UnknownLabelError(f"label id {label} is outside 0..{len(labels) - 1}")
    name = str(label).strip().lower()
    try:
        return list(labels).index(name)
    except ValueError:
        raise UnknownLabelError(
            f"label {label!r} is not one of {', '.join(labels)}; fix the data or the label list"
        ) from None
