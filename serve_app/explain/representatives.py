"""Representative posts of a label: typical of the label's posts, and different from each other.

A stream keeps, per label, only its most confident posts (`KeptPosts`, a bounded heap with
each post's terms and a snippet). From the most confident of them, `pick` chooses by maximal
marginal relevance (Carbonell and Goldstein 1998): relevance is half the model's confidence
and half the closeness of the post's terms to the label's term profile (the label's driver
z's, or how often the label's posts use each term when it has no drivers); each choice is
penalised by its word overlap (Jaccard) with the posts already chosen, so three rants
about one thing do not crowd out the second thing the label is about.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from serve_app.domain.records import RepresentativeRow

SNIPPET_CHARS = 240
PER_LABEL = 3
POOL = 30  # the most confident posts considered for each label
MMR_LAMBDA = 0.7  # relevance against novelty


@dataclass(frozen=True)
class Candidate:
    confidence: float
    id: str
    link: str
    subreddit: str
    created_utc: float
    text: str  # enough of it for a snippet (`head`): the snippet is made for the chosen only
    terms: frozenset[str]

    def row(self) -> RepresentativeRow:
        return {
            "id": self.id,
            "link": self.link,
            "subreddit": self.subreddit,
            "created_utc": self.created_utc,
            "snippet": snippet(self.text),
            "confidence": round(self.confidence, 4),
        }


def head(text: str, chars: int = SNIPPET_CHARS) -> str:
    """What a snippet of the text can show (kept per candidate instead of the whole post)."""
    return text[: 2 * chars]


def snippet(text: str, chars: int = SNIPPET_CHARS) -> str:
    """The text on one line, cut at a word boundary to at most `chars` characters."""
    flat = " ".join(head(text, chars).split())  # a long post's tail is never shown
    if len(flat) <= chars:
        return flat
    cut = flat[: chars - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > chars // 2 else cut).rstrip(" ,;:.") + "…"


class KeptPosts:
    """The `capacity` most confident posts offered (a min-heap: memory bounded by capacity)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # (confidence, id, post): tuples compare in C; ids are unique, so posts never compare.
        self._heap: list[tuple[float, str, Candidate]] = []

    def wants(self, confidence: float) -> bool:
        return len(self._heap) < self.capacity or confidence > self._heap[0][0]

    def offer(self, confidence: float, make: Callable[[], Candidate]) -> None:
        """Keep the post `make()` builds if it is among the most confident so far (built only then)."""
        if len(self._heap) < self.capacity:
            c = make()
            heapq.heappush(self._heap, (c.confidence, c.id, c))
        elif confidence > self._heap[0][0]:
            c = make()
            heapq.heapreplace(self._heap, (c.confidence, c.id, c))

    def merge(self, other: KeptPosts) -> KeptPosts:
        for _, _, c in other._heap:
            self.offer(c.confidence, lambda c=c: c)  # type: ignore[misc]
        return self

    def best_first(self) -> list[Candidate]:
        return [c for _, _, c in sorted(self._heap, reverse=True)]


def _closeness(terms: frozenset[str], weights: Mapping[str, float]) -> float:
    # Cosine-like: a long post holds more terms, so the sum is scaled by its length.
    return sum(map(weights.__getitem__, terms & weights.keys())) / math.sqrt(len(terms) + 1)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    shared = len(a & b)  # the union's size without building it
    union = len(a) + len(b) - shared
    return shared / union if union else 1.0


def pick(
    kept: KeptPosts,
    weights: Mapping[str, float],
    k: int = PER_LABEL,
    pool: int = POOL,
    lam: float = MMR_LAMBDA,
) -> list[Candidate]:
    """Up to `k` posts: the most relevant first, then each the best trade of relevance
    against similarity to those already chosen."""
    cands = kept.best_first()[:pool]
    if not cands:
        return []
    close = [_closeness(c.terms, weights) for c in cands]
    top = max(close) or 1.0
    relevance = [0.5 * c.confidence + 0.5 * (x / top) for c, x in zip(cands, close, strict=True)]
    chosen: list[int] = []
    # Each candidate's largest overlap with the chosen, updated with the latest choice only.
    overlap = [0.0] * len(cands)
    while len(chosen) < min(k, len(cands)):
        if chosen:
            last = cands[chosen[-1]].terms
            overlap = [max(o, _jaccard(c.terms, last)) for o, c in zip(overlap, cands, strict=True)]
        best, best_score = -1, -math.inf
        for i in range(len(cands)):
            if i in chosen:
                continue
            score = lam * relevance[i] - (1 - lam) * overlap[i]
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return [cands[i] for i in chosen]
