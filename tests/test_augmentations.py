"""SimCSE's Table 1 positives (`--augmentation`): each view against an independent check of what
the spec promises, on real packed batches."""
import numpy as np
import pytest

from test_esimcse_pipeline import BATCH, SENTENCES, _batches, _inner, _preprocessor, tokenizer  # noqa: F401
from test_token_augmentation import crop_removed, deleted_positions, deletion_count, span_start
from tf_esimcse.data.augmentations import augmentation_dataset, next_sentence_pairs, parse_augmentation
from tf_esimcse.data.pipeline import unsup_dataset

MAX_LEN = 16


def _rows(ds):
    for batch in _batches(ds):
        for r in range(BATCH):
            yield (_inner(batch["anchor"]["token_ids"][r], batch["anchor"]["padding_mask"][r]),
                   _inner(batch["positive"]["token_ids"][r], batch["positive"]["padding_mask"][r]))


def test_parse():
    assert parse_augmentation("none") == ("none", None)
    assert parse_augmentation("crop:10") == ("crop", pytest.approx(0.1))
    assert parse_augmentation("Word_Deletion:30") == ("word_deletion", pytest.approx(0.3))
    assert parse_augmentation("delete_one_word") == ("delete_one_word", 1)
    assert parse_augmentation("next_3_sentences") == ("next_sentences", 3)
    for bad in ("crop", "crop:abc", "crop:120", "synonym", "none:3"):
        with pytest.raises(ValueError, match="unknown augmentation"):
            parse_augmentation(bad)
    assert parse_augmentation("mlm:15") == ("mlm", pytest.approx(0.15))


@pytest.mark.large
def test_none_is_unsupervised_simcse(tokenizer):  # noqa: F811
    pre = _preprocessor(tokenizer, MAX_LEN)
    a = _batches(augmentation_dataset(SENTENCES, pre, "none", batch_size=BATCH, seed=3))
    b = _batches(unsup_dataset(SENTENCES, pre, batch_size=BATCH, seed=3))
    for x, y in zip(a, b):
        for key in ("token_ids", "padding_mask"):
            np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.large
@pytest.mark.parametrize("percent", [10, 30])
def test_crop_keeps_a_contiguous_span_of_the_stated_fraction(tokenizer, percent):  # noqa: F811
    pre = _preprocessor(tokenizer, MAX_LEN)
    for anchor, positive in _rows(augmentation_dataset(SENTENCES, pre, f"crop:{percent}", batch_size=BATCH,
                                                       shuffle=False, seed=1)):
        assert len(positive) == len(anchor) - crop_removed(len(anchor), percent / 100)
        assert span_start(anchor, positive) is not None


@pytest.mark.parametrize("spec,count", [("word_deletion:20", None), ("delete_one_word", 1)])
def test_deletion_removes_the_stated_count(tokenizer, spec, count):  # noqa: F811
    pre = _preprocessor(tokenizer, MAX_LEN)
    deleted_any = False
    for anchor, positive in _rows(augmentation_dataset(SENTENCES, pre, spec, batch_size=BATCH, shuffle=False,
                                                       seed=2)):
        n = len(anchor)
        expected = min(1, n) if count else deletion_count(n, 0.2)
        assert len(positive) == n - expected
        assert deleted_positions(anchor, positive) is not None
        deleted_any |= expected > 0
    assert deleted_any


def test_next_sentences_are_the_following_lines(tokenizer):  # noqa: F811
    assert next_sentence_pairs(["a", "b", "c", "d"], 1) == [("a", "b"), ("b", "c"), ("c", "d")]
    pairs = next_sentence_pairs(list("abcdefgh"), 3, seed=1)
    assert [a for a, _ in pairs] == list("abcde")
    assert all(p in "abcdefgh"[i + 1:i + 4] for i, (_, p) in enumerate(pairs))
    drawn = {p for i in range(50) for _, p in next_sentence_pairs(list("abcd"), 3, seed=i)}
    assert drawn == {"b", "c", "d"}  # each of the three successors is drawn
    pre = _preprocessor(tokenizer, MAX_LEN)
    rows = list(_rows(augmentation_dataset(SENTENCES, pre, "next_sentence", batch_size=BATCH, shuffle=False)))
    tokens = pre.tokenize(np.array(SENTENCES)).to_list()
    assert len(rows) == (len(SENTENCES) - 1) // BATCH * BATCH
    for i, (anchor, positive) in enumerate(rows):
        assert anchor == tokens[i] and positive == tokens[i + 1]
