"""Text normalisation shared by training and serving.

The model is trained on tweets (lower-cased, punctuation stripped) and on Reddit comments
(mixed case, markdown, links). Both the training pipeline and the predictor call
`normalize_text`, so the two can never drift apart; the function's version is recorded in
each model card (`PREPROCESS_VERSION`).
"""

from __future__ import annotations

import html
import re
import unicodedata

PREPROCESS_VERSION = "1"

_MD_LINK = re.compile(r"\[([^\]]*)\]\((?:[^)]*)\)")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_USER = re.compile(r"(?<!\w)/?u/[A-Za-z0-9_-]+")
_SUB = re.compile(r"(?<!\w)/?r/([A-Za-z0-9_]+)")
_MD_NOISE = re.compile(r"(?m)^\s{0,3}(?:#{1,6}\s+|>\s?|[*+-]\s+)|[*_~`]{1,3}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Return `text` cleaned of markup that carries no emotion.

    Markdown links keep their anchor text, bare URLs and user names are dropped,
    `r/sub` becomes `sub`, HTML entities are decoded, control characters removed and
    whitespace collapsed. Case and punctuation are kept: the tokenizer is uncased, and
    punctuation ("!!!", "?!") carries signal on Reddit.
    """
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _USER.sub(" ", text)
    text = _SUB.sub(r"\1", text)
    text = _MD_NOISE.sub(" ", text)
    text = _CONTROL.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalize_keyword(keyword: str) -> str:
    """A keyword's canonical form (cache keys, history, hot-keyword counts): lower-case,
    single spaces."""
    return " ".join(keyword.lower().split())


def post_text(title: str, body: str) -> str:
    """The text classified for a post: its title, then its body."""
    title = title.strip()
    body = body.strip()
    if title and body:
        return f"{title}. {body}" if title[-1] not in ".!?" else f"{title} {body}"
    return title or body
