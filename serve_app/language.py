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


def detect(texts: Sequence[str], min_confidence: float = 0.8, max_chars: int = 1000) -> list[Detected]:
    """One `Detected` per text; the first `max_chars` characters are enough and bound the cost."""
    ident = _get_identifier()
    out = []
    for text in texts:
        sample = " ".join(text[:max_chars].split())
        if not sample:
            out.append(Detected(UNDETERMINED, 0.0))
            continue
        lang, prob = ident.classify(sample)
        prob = float(prob)
        out.append(Detected(str(lang) if prob >= min_confidence else UNDETERMINED, round(prob, 4)))
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
