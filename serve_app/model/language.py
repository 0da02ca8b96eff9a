"""Which language each post is in, so models only judge text they were trained for.

py3langid (a maintained fork of langid.py, 97 languages) ships its model inside the
wheel: nothing is downloaded. Short or ambiguous texts get a low probability; those are
marked `und` (undetermined) and are *not* excluded, since there is no evidence that the
model cannot read them. A post is excluded only when another language is detected with
at least `min_confidence`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

UNDETERMINED = "und"
_lock = threading.Lock()
_identifier: Any = None


def _get_identifier() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _identifier


@dataclass(frozen=True)
class Detected:
    lang: str  # ISO 639-1 where the language has one, else the detector's code; `und` if unsure
    confidence: float  # the detector's normalised probability for `lang` (before `und`)


def _classify(text: str, max_chars: int) -> tuple[str, float] | None:
    """The detector's language and probability, None for a text with no characters."""
    sample = " ".join(text[:max_chars].split())
    if not sample:
        return None
    lang, prob = _get_identifier().classify(sample)
    return str(lang), float(prob)


def _detected(found: tuple[str, float] | None, min_confidence: float) -> Detected:
    if found is None:
        return Detected(UNDETERMINED, 0.0)
    lang, prob = found
    return Detected(lang if prob >= min_confidence else UNDETERMINED, round(prob, 4))


def detect(texts: Sequence[str], min_confidence: float = 0.8, max_chars: int = 1000) -> list[Detected]:
    """One `Detected` per text; the first `max_chars` characters are enough and bound the cost."""
    return [_detected(_classify(text, max_chars), min_confidence) for text in texts]


class SeenLanguages:
    """`detect` for posts, remembering each post's answer (LRU by post id and the text's
    hash, `capacity` posts, ~100 bytes each): the Fetcher gets the same posts again and
    again (an expired answer, the warmer, /compare), and detection was ~55 ms of an
    analysis of 250 posts whose scores were all cached."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._seen: collections.OrderedDict[tuple[str, int], tuple[str, float] | None] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def detect(
        self, ids: Sequence[str], texts: Sequence[str], min_confidence: float = 0.8, max_chars: int = 1000
    ) -> list[Detected]:
        out = []
        for pid, text in zip(ids, texts, strict=True):
            key = (pid, hash(text))
            with self._lock:
                hit = key in self._seen
                found = self._seen[key] if hit else None
                if hit:
                    self._seen.move_to_end(key)
            if not hit:
                found = _classify(text, max_chars)
                with self._lock:
                    self._seen[key] = found
                    if len(self._seen) > self.capacity:
                        self._seen.popitem(last=False)
            out.append(_detected(found, min_confidence))
        return out


def is_supported(lang: str, supported: Iterable[str]) -> bool:
    """Undetermined text is given to the model; a confidently detected other language is not."""
    return lang == UNDETERMINED or lang in set(supported)


def readable_languages(per_model: Iterable[Iterable[str]]) -> set[str]:
    """Languages every requested model was trained for: a post is scored by all the
    requested models or by none, so no model judges a language it never saw (an English
    emotion model beside a multilingual sentiment model reads English posts only; ask for
    the multilingual task alone to score the other languages)."""
    sets = [set(langs) for langs in per_model]
    return set.intersection(*sets) if sets else set()


def count_languages(langs: Iterable[str]) -> dict[str, int]:
    """Posts per language, most frequent first."""
    return dict(collections.Counter(langs).most_common())
