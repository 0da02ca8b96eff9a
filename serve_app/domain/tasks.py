"""The task registry: every classification task the service knows, declared once.

Schemas, aggregation, the chart and history read this; an artifact's head for a task must
carry exactly these labels (checked when a model loads). Adding a task or a label means
changing its declaration here (and a migration if history must show it differently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal


class TaskError(ValueError):
    """A task name or an artifact head that does not match the registry."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    labels: tuple[str, ...]
    title: str  # chart panel and CLI heading
    colours: dict[str, str] = field(default_factory=dict)
    # The label that means "none of the others" (no clear emotion): the response also
    # gives the other labels' shares among the posts that carry one of them.
    rest_label: str | None = None
    among_field: str | None = None  # response field of the shares among the other labels
    # The response field that holds this task's breakdown (`agg` predates the registry).
    field: str = ""
    description: str = ""
    # Posts with this label at or above the request's confidence threshold are listed for
    # triage (`strongly_negative`); at most one task has one.
    triage_label: str | None = None
    # A jump in this label's share raises a spike alert for a watched keyword.
    alert_label: str | None = None

    @property
    def response_field(self) -> str:
        return self.field or f"{self.name}_agg"

    @property
    def rest_index(self) -> int | None:
        return None if self.rest_label is None else self.labels.index(self.rest_label)

    def colour(self, label: str) -> str:
        return self.colours.get(label, "#777777")


NEUTRAL_GREY = "#9E9E9E"

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="emotion",
            # Logit order of the emotion head: the six CARER emotions (dair-ai/emotion ids
            # 0-5), then `neutral`, the raters' "no clear emotion" (GoEmotions).
            labels=("sadness", "joy", "love", "anger", "fear", "surprise", "neutral"),
            title="Emotions",
            colours={
                "sadness": "#4C72B0",
                "joy": "#F2C14E",
                "love": "#E377C2",
                "anger": "#D62728",
                "fear": "#8C564B",
                "surprise": "#2CA02C",
                "neutral": NEUTRAL_GREY,
            },
            rest_label="neutral",
            among_field="emotional_agg",
            field="agg",
            description="six emotions, or neutral (no clear emotion)",
            alert_label="anger",
        ),
        TaskSpec(
            name="sentiment",
            labels=("negative", "neutral", "positive"),
            title="Sentiment",
            colours={"negative": "#D62728", "neutral": NEUTRAL_GREY, "positive": "#2CA02C"},
            description="negative, neutral or positive",
            triage_label="negative",
            alert_label="negative",
        ),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
# The first task: what /predict classifies by default, and the model the single
# `model_version` field of older responses names.
DEFAULT_TASK = TASK_NAMES[0]
# The task whose confident `triage_label` posts are listed for triage, if one is declared.
TRIAGE_TASK: str | None = next((t.name for t in TASKS.values() if t.triage_label), None)
# The task names as a type, for request schemas and app args (validation and the OpenAPI
# enum), built from TASKS at run time; the type checker sees a plain str.
if TYPE_CHECKING:
    TaskName = str
else:
    TaskName = Literal[TASK_NAMES]


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def check_head(task: str, labels: Sequence[str], where: str) -> None:
    """Refuse an artifact whose head for `task` does not carry the registry's labels."""
    spec = get_task(task)
    if tuple(labels) != spec.labels:
        raise TaskError(
            f"{where}: the {task} head has labels {list(labels)}, the service expects {list(spec.labels)}; "
            "serve an artifact trained with the current label set (configs/multitask.yaml)"
        )
