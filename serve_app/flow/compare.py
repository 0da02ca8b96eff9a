"""`POST /compare`: several keywords' breakdowns side by side, and which differences are
larger than chance explains. Pure functions over the analyses' answers.

The test (stated in every answer's `method`): for each task, label and pair of keywords
(a, b), the difference of the served shares a - b in percentage points, with a Wald
interval and a two-sided z-test whose standard error combines the two shares' own
standard errors, sqrt(se_a^2 + se_b^2) (the keywords' posts are independent samples).
A share's standard error is read off its served 95 % bootstrap interval,
(high - low) / (2 * 1.96), so it follows the artifact's counting method (cc, pcc, pacc);
it is floored at the binomial standard error with one pseudo-post of each kind,
sqrt(p~(1 - p~) / (n + 2)), p~ = (k + 1) / (n + 2), because a share of 0 % in a small sample
has a bootstrap interval of width 0 without being certain. The p-values are Holm-corrected
within each task over all its labels and keyword pairs; `significant` is p_holm < 0.05.
The 95 % intervals are per comparison (not corrected). Net sentiment differences are
tested the same way from each keyword's net-sentiment interval, Holm-corrected over pairs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from serve_app.counting.polarity import net_from_shares
from serve_app.domain.records import NetSentimentRow
from serve_app.domain.schemas import MAX_KEYWORD_CHARS, AnalyzeRequest, AnalyzeResponse, _clean_keyword
from serve_app.domain.tasks import TASKS
from serve_app.model.preprocess import normalize_keyword

Z95 = 1.959963984540054
ALPHA = 0.05
MAX_KEYWORDS = 5
METHOD = (
    "Per task, label and keyword pair: diff = share(a) - share(b) in percentage points; 95 % Wald "
    "interval and two-sided z-test with se = sqrt(se_a^2 + se_b^2), each share's se read off its "
    "served 95 % bootstrap interval and floored at the binomial se with add-one smoothing; p-values "
    "Holm-corrected within each task over all labels and pairs; significant: p_holm < 0.05. Net "
    "sentiment: the same test from each keyword's net-sentiment interval, Holm over pairs."
)


class CompareRequest(AnalyzeRequest):
    """The options of /analyze, for 2 to 5 keywords (a subclass: new /analyze options apply here)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"keywords": ["python", "java"], "limit": 100, "source": "jsonl"}]},
    )

    # Not a /compare field: whatever a client sends under `keyword` is ignored, as extras are.
    keyword: SkipJsonSchema[Any] = Field(None, exclude=True)
    keywords: list[Annotated[str, Field(min_length=1, max_length=MAX_KEYWORD_CHARS)]] = Field(
        ...,
        min_length=2,
        max_length=MAX_KEYWORDS,
        description="2 to 5 different keywords (case-insensitive), each analysed as /analyze would.",
    )

    @field_validator("keyword")
    @classmethod
    def keyword_has_text(cls, v: object) -> None:  # type: ignore[override]
        return None

    @field_validator("keywords")
    @classmethod
    def keywords_distinct(cls, v: list[str]) -> list[str]:
        cleaned = [_clean_keyword(k) for k in v]
        seen: dict[str, str] = {}
        for k in cleaned:
            norm = normalize_keyword(k)
            if norm in seen:
                raise ValueError(
                    f"keywords must differ (case-insensitive): {seen[norm]!r} and {k!r} are the same"
                )
            seen[norm] = k
        return cleaned

    def per_keyword(self) -> list[AnalyzeRequest]:
        """One /analyze request per keyword, with every other option as given."""
        options = self.model_dump(exclude={"keywords", "keyword"})
        return [AnalyzeRequest.model_validate({**options, "keyword": k}) for k in self.keywords]


class DifferenceRow(BaseModel):
    keyword_a: str
    keyword_b: str
    label: str
    a: float = Field(description="Share of the label among keyword a's scored posts, %.")
    b: float = Field(description="Share among keyword b's, %.")
    diff: float = Field(description="a - b, percentage points.")
    low: float = Field(description="95 % interval of the difference, lower end (pp).")
    high: float
    z: float
    p_value: float = Field(description="Two-sided z-test, uncorrected.")
    p_holm: float = Field(description="Holm-corrected over the task's labels and keyword pairs.")
    significant: bool = Field(description="p_holm < 0.05: larger than chance explains.")


class NetSentimentDifference(BaseModel):
    keyword_a: str
    keyword_b: str
    a: float = Field(description="Net sentiment of keyword a, in [-1, 1].")
    b: float
    diff: float = Field(description="a - b.")
    low: float
    high: float
    z: float
    p_value: float
    p_holm: float = Field(description="Holm-corrected over keyword pairs.")
    significant: bool


class CompareResponse(BaseModel):
    keywords: list[str]
    analyses: list[AnalyzeResponse] = Field(description="Each keyword's /analyze answer, in order.")
    differences: dict[str, list[DifferenceRow]] = Field(
        description="Per task: per keyword pair and label, the difference of shares (a minus b)."
    )
    net_sentiment_differences: list[NetSentimentDifference] = Field(
        default_factory=list, description="Per keyword pair, when sentiment was analysed for both."
    )
    method: str = Field(METHOD, description="The test, as applied.")
    time: float = Field(description="Seconds spent answering this request.")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def share_se(pct: float, low: float | None, high: float | None, n: int) -> float:
    """A served share's standard error in percentage points (see the module's docstring)."""
    if n <= 0:
        return math.inf
    boot = 0.0 if low is None or high is None else (high - low) / (2 * Z95)
    smoothed = (pct / 100 * n + 1) / (n + 2)
    return max(boot, 100 * math.sqrt(smoothed * (1 - smoothed) / (n + 2)))


def z_test(diff: float, se: float) -> tuple[float, float]:
    """(z, two-sided p) of a difference with this standard error; no evidence when undefined."""
    if not math.isfinite(se) or se <= 0:
        return (0.0, 1.0) if diff == 0 or not math.isfinite(se) else (math.copysign(math.inf, diff), 0.0)
    z = diff / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _interval(diff: float, se: float, bound: float) -> tuple[float, float]:
    if not math.isfinite(se):
        return -bound, bound
    return max(-bound, diff - Z95 * se), min(bound, diff + Z95 * se)


def _finite(z: float) -> float:
    return max(-1e6, min(1e6, z))  # JSON has no infinity


def share_differences(
    keywords: Sequence[str], shares: Sequence[Sequence[Mapping[str, Any]]], scored: Sequence[int]
) -> list[DifferenceRow]:
    """One task: every pair of keywords and every label, Holm-corrected together.

    `shares[i]` are keyword i's breakdown rows (label, pct, pct_low, pct_high); `scored[i]`
    its scored posts."""
    rows: list[dict[str, Any]] = []
    by_label = [{r["label"]: r for r in s} for s in shares]
    labels = list(dict.fromkeys(r["label"] for s in shares for r in s))
    for i, j in itertools.combinations(range(len(keywords)), 2):
        for lab in labels:
            ra, rb = by_label[i].get(lab), by_label[j].get(lab)
            if ra is None or rb is None:
                continue
            se = math.hypot(
                share_se(ra["pct"], ra.get("pct_low"), ra.get("pct_high"), scored[i]),
                share_se(rb["pct"], rb.get("pct_low"), rb.get("pct_high"), scored[j]),
            )
            diff = float(ra["pct"]) - float(rb["pct"])
            z, p = z_test(diff, se)
            low, high = _interval(diff, se, 100.0)
            rows.append(
                dict(keyword_a=keywords[i], keyword_b=keywords[j], label=lab, a=ra["pct"], b=rb["pct"],
                     diff=round(diff, 2), low=round(low, 2), high=round(high, 2), z=round(_finite(z), 3),
                     p_value=p)
            )  # fmt: skip
    for row, adj in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row.update(p_holm=adj, significant=adj < ALPHA)
    return [DifferenceRow(**r) for r in rows]


def net_differences(
    keywords: Sequence[str], nets: Sequence[NetSentimentRow | None]
) -> list[NetSentimentDifference]:
    """Every pair of keywords whose net sentiment ({value, low, high}) is known."""
    rows: list[dict[str, Any]] = []
    for i, j in itertools.combinations(range(len(keywords)), 2):
        na, nb = nets[i], nets[j]
        if na is None or nb is None:
            continue
        se = math.hypot((na["high"] - na["low"]) / (2 * Z95), (nb["high"] - nb["low"]) / (2 * Z95))
        diff = na["value"] - nb["value"]
        z, p = z_test(diff, se)
        low, high = _interval(diff, se, 2.0)
        rows.append(
            dict(keyword_a=keywords[i], keyword_b=keywords[j], a=na["value"], b=nb["value"],
                 diff=round(diff, 4), low=round(low, 4), high=round(high, 4), z=round(_finite(z), 3),
                 p_value=p)
        )  # fmt: skip
    for row, adj in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row.update(p_holm=adj, significant=adj < ALPHA)
    return [NetSentimentDifference(**r) for r in rows]


def net_sentiment_of(answer: AnalyzeResponse) -> NetSentimentRow | None:
    """The answer's net sentiment {value, low, high}: its own field (the Aggregator's, from the
    served shares' bootstrap draws); for an answer cached before that field existed, computed
    from its sentiment shares (serve_app.counting.polarity)."""
    given = answer.net_sentiment
    if given is not None:
        return {"value": given.value, "low": given.low, "high": given.high}
    rows = getattr(answer, "sentiment_agg", None)
    if not rows or not answer.scored:
        return None
    return net_from_shares([r.model_dump() for r in rows], answer.scored)


def compare_answers(
    keywords: Sequence[str], answers: Sequence[AnalyzeResponse], took: float
) -> CompareResponse:
    """The comparison of these keywords' answers (in the same order)."""
    tasks = [t for t in answers[0].tasks if all(t in a.tasks for a in answers)]
    differences = {}
    for t in tasks:
        field = TASKS[t].response_field
        shares = [[r.model_dump() for r in (getattr(a, field, None) or [])] for a in answers]
        differences[t] = share_differences(keywords, shares, [a.scored or 0 for a in answers])
    nets = [net_sentiment_of(a) for a in answers]
    return CompareResponse(
        keywords=list(keywords),
        analyses=list(answers),
        differences=differences,
        net_sentiment_differences=net_differences(keywords, nets),
        time=took,
    )
