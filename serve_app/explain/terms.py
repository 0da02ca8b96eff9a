"""Terms of a post for drivers and emerging terms: lower-case 1-2-grams of words.

What never becomes a term: URLs, markdown and HTML markup (a markdown link keeps its text),
numbers-only tokens, emoji and other symbols, one-letter tokens, English stop words,
GoEmotions-style placeholders (`[NAME]`), and any term holding a word of the query keyword
in a variant (case, plural, possessive; each word of a multiword keyword). A bigram never spans a
sentence or clause boundary and needs two non-stop words ("battery life", not "the battery").
"""

from __future__ import annotations

import html
import re
import string
import threading
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache

# Terms come from a post's first 600 characters: about what the classifier read to label it
# (128 word pieces, ~100 words). Past that the label says nothing about the text, and a
# 40,000-character post would cost as much as a hundred.
MAX_TEXT_CHARS = 600

_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# A bare domain ("youtube.com") is left to the tokens: "com" is a stop word, "youtube" a word.
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_PLACEHOLDER = re.compile(r"\[[A-Z]+\]")
_SUBREDDIT_OR_USER = re.compile(r"(?<!\w)/?[ru]/\w+")
# A word starts with a letter (any script: posts in other languages get terms too); digits
# may follow ("covid19"), a number alone is no word. Emoji and symbols are not \w. The other
# alternatives are clause boundaries: no bigram crosses punctuation, a symbol, an emoji, a
# dash between spaces or a line break.
_TOKEN = re.compile(r"[^\W\d_](?:[\w'-]*\w)?|[^\w\s'-]+|\s[-\u2013\u2014]+\s|[\n\t]+")
_POSSESSIVE = re.compile(r"'s\b")  # "apple's" -> "apple"
# The same boundaries for ASCII text, as a one-character translation (CPython's fast path),
# each then made a token of its own.
_ASCII_BOUNDARIES = str.maketrans({c: "\0" for c in string.punctuation + "\n\t" if c not in "'-"})

_STOP_TEXT = """
    a about above after again against all almost also although always am among an and another any
    anybody anyone anything anyway anyways are aren't around as at away back be became because become
    been before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't done down during each either else enough etc even ever every everyone
    everything few for from further get gets getting go goes going gone got gotta had hadn't has
    hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how
    how's however i i'd i'll i'm i've ie if in into is isn't it it'd it'll it's its itself just
    least less let let's like lot lots made make makes many may maybe me might mine more most much
    must mustn't my myself need needs neither never no nobody none nor not nothing now of off often
    oh ok okay on once one ones only or other others otherwise our ours ourselves out over own per
    perhaps please quite rather really said same say says see seem seems several shall shan't she
    she'd she'll she's should shouldn't since so some somebody someone something sometimes still such
    sure than that that's thats the their theirs them themselves then there there's these they
    they'd they'll they're they've thing things this those though through thus to too took toward
    towards under until up upon us use used using very via want wants was wasn't way we we'd we'll
    we're we've well were weren't what what's whatever when when's where where's whether which while
    who who's whoever whole whom whose why why's will with within without won't would wouldn't yeah
    yes yet you you'd you'll you're you've your yours yourself yourselves
    dont cant wont im ive id youre theyre isnt doesnt didnt wasnt arent couldnt wouldnt shouldnt
    lol amp nbsp x200b gt lt edit edited deleted removed http https www com reddit
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_TEXT.split())


def _normalise(text: str) -> str:
    text = html.unescape(text[:MAX_TEXT_CHARS]).replace("\u2019", "'").replace("\u2018", "'")
    if "](" in text:
        text = _MD_LINK.sub(lambda m: m.group(1), text)
    text = _URL.sub(" . ", text)  # a removed URL is a boundary: no bigram across it
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "[" in text:
        text = _PLACEHOLDER.sub(" . ", text)
    if "r/" in text or "u/" in text:  # the regex is slow; most posts name no subreddit
        text = _SUBREDDIT_OR_USER.sub(" . ", text)
    return text.lower()


def _raw_tokens(text: str) -> list[str]:
    """Words, and boundary tokens (whatever does not start with a letter), in order. This
    runs on every post of every analysis: ASCII text (most posts) takes a fast path of
    str.translate and split; other text one regex pass."""
    text = _normalise(text)
    if not text.isascii():
        return _TOKEN.findall(_POSSESSIVE.sub("", text))
    # String-wide replaces (C loops) instead of per-word work: possessives, and quotes or
    # hyphens at a word's edges.
    text = f" {text.translate(_ASCII_BOUNDARIES).replace(chr(0), ' . ')} "
    for old in ("'s ", " '", "' ", " -", "- "):
        text = text.replace(old, " ")
    return text.split()


def tokens(text: str) -> list[str]:
    """The text's words (lower-case, stop words still in place) in order, and "" where a
    clause ends (punctuation, a symbol, an emoji, a line break, a removed URL, a number)."""
    return [t if t[0].isalpha() else "" for t in _raw_tokens(text)]


def variants(word: str) -> set[str]:
    """A keyword word and its plural/singular and possessive forms."""
    out = {word, word + "s", word + "es", word + "'s"}
    if word.endswith("y") and len(word) > 2:
        out.add(word[:-1] + "ies")
    if word.endswith("ies") and len(word) > 4:
        out.add(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        out.add(word[:-2])
    if word.endswith("s") and len(word) > 2:
        out.add(word[:-1])
    return out


def keyword_words(keyword: str) -> frozenset[str]:
    """Every word that names the query itself (each word of the keyword, in its variants)."""
    out: set[str] = set()
    for w in tokens(keyword):
        if w:
            out |= variants(w)
    return frozenset(out)


@lru_cache(maxsize=64)
def _skipped(banned: frozenset[str]) -> frozenset[str]:
    return STOP_WORDS | banned


def post_terms(text: str, exclude: Iterable[str] = ()) -> set[str]:
    """The set of terms (unigrams and bigrams) of one post. `exclude`: words that name the
    query (`keyword_words`): no term holds one ("iphone battery" would echo the query and,
    being in every post that says "battery" after it, hide "battery" itself)."""
    skip = _skipped(exclude if isinstance(exclude, frozenset) else frozenset(exclude))
    terms: set[str] = set()
    prev = ""  # the word before, when it may start a bigram
    for w in _raw_tokens(text):
        if len(w) < 2 or w in skip or not w[0].isalpha():
            prev = ""  # a boundary, a stop word or the keyword: no term, no bigram across it
            continue
        terms.add(w)
        if prev:
            terms.add(f"{prev} {w}")
        prev = w
    return terms


class TermSets:
    """Each post's term set, remembered by post id and text (LRU, `capacity` posts): the
    Aggregator sees the same posts again and again (an analysis whose answer expired, the
    warmer, the keywords of a /compare), and tokenising is a third of what drivers cost.
    Keyed by the text's hash too, so an edited post is tokenised again. Not for a file's
    texts: each is seen once, and the cache would only hold memory."""

    def __init__(self, capacity: int = 5000) -> None:
        self.capacity = capacity
        self._sets: OrderedDict[tuple[str, int, frozenset[str]], frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()  # a replica may run several analyses in threads

    def get(self, post_id: str, text: str, exclude: frozenset[str]) -> frozenset[str]:
        key = (post_id, hash(text), exclude)
        with self._lock:
            found = self._sets.get(key)
            if found is not None:
                self._sets.move_to_end(key)
                return found
        made = frozenset(post_terms(text, exclude))
        with self._lock:
            self._sets[key] = made
            if len(self._sets) > self.capacity:
                self._sets.popitem(last=False)
        return made
