from __future__ import annotations

import pytest

from serve_app.domain.labels import EMOTION_LABELS, UnknownLabelError, label_to_id
from serve_app.model.predictor import length_chunks
from serve_app.model.preprocess import normalize_text, post_text

pytestmark = pytest.mark.unit


def test_label_ids_follow_the_hf_dataset_order() -> None:
    assert [label_to_id(x, EMOTION_LABELS) for x in EMOTION_LABELS] == list(range(7))
    assert label_to_id("Joy ", EMOTION_LABELS) == 1
    assert label_to_id(5, EMOTION_LABELS) == 5
    # neutral comes after the six CARER ids, so data stored as HF ids keeps its meaning
    assert label_to_id("neutral", EMOTION_LABELS) == 6


@pytest.mark.parametrize("bad", ["happiness", 7, -1, True, ""])
def test_unknown_labels_are_rejected_with_the_known_list(bad: object) -> None:
    with pytest.raises(UnknownLabelError):
        label_to_id(bad, EMOTION_LABELS)  # type: ignore[arg-type]


def test_normalize_keeps_words_and_punctuation_and_drops_markup() -> None:
    raw = (
        "**WOW!!** see [this link](https://x.com/a?b=1) &amp; www.foo.com"
        "  u/someone on r/Python\x07\n\n> quoted"
    )
    assert normalize_text(raw) == "WOW!! see this link & on Python quoted"


def test_normalize_is_idempotent_and_handles_empty_and_unicode() -> None:
    for text in ["", "   ", "i feel so happy 😀", "日本語のテキスト", "ﬁne"]:
        once = normalize_text(text)
        assert normalize_text(once) == once
    assert normalize_text("ﬁne") == "fine"  # NFKC folds ligatures the tokenizer would split


def test_post_text_joins_title_and_body() -> None:
    assert post_text("Great news", "I got the job") == "Great news. I got the job"
    assert post_text("Why?", "no idea") == "Why? no idea"
    assert post_text("Title only", "") == "Title only"
    assert post_text("", "  body ") == "body"


@pytest.mark.parametrize("seed", range(5))
def test_length_chunks_cover_everything_once_and_pad_little(seed: int) -> None:
    import random

    rng = random.Random(seed)
    lengths = [rng.randint(1, 128) for _ in range(rng.randint(1, 300))]
    chunks = length_chunks(lengths, 32)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for c in chunks:
        assert 1 <= len(c) <= 32
        longest, real = max(lengths[i] for i in c), sum(lengths[i] for i in c)
        assert len(c) * longest <= 1.25 * real or len(c) == 1
    flat = [lengths[i] for c in chunks for i in c]
    assert flat == sorted(flat)  # longest last: every chunk holds neighbours in length


def test_length_chunks_keep_equal_lengths_together_up_to_the_cap() -> None:
    assert [len(c) for c in length_chunks([128] * 70, 32)] == [32, 32, 6]
    assert length_chunks([5, 100], 32) == [[0], [1]]  # padding 5 to 100 would waste 19x
    assert length_chunks([], 32) == []
