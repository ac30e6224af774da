"""Tests for the token-id augmentations on `TokenAugmentation`: `RandomCrop`, `WordDeletion`,
and the base class machinery (inputs, seeds, per-row keys, config).

The sizes and counts are checked against an independent computation with Python's `decimal`
(the rates as written, no float rounding), the contents token by token in NumPy/Python.
"""
import collections
import decimal
import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from test_case import run_serialization_test
from tf_esimcse.layers import token_augmentation as token_augmentation_module
from tf_esimcse.layers.random_crop import RandomCrop
from tf_esimcse.layers.token_augmentation import TokenAugmentation
from tf_esimcse.layers.word_deletion import WordDeletion
from tf_esimcse.layers.word_repetition import WordRepetition

CLS, SEP = 101, 102
P_MIN = 1e-4  # chi-square p-value floor; every draw below is seeded, so this is deterministic.
BODY = list(range(11, 31))  # 20 distinct ids


# ----------------------------------------------------------------------------- references


def crop_removed(n, rate):
    """SimCSE crop: floor(rate * n) removed, so ceil((1 - rate) * n) kept (rate as written)."""
    return math.floor(decimal.Decimal(str(rate)) * n)


def deletion_count(n, rate):
    """SimCSE word deletion: round(rate * n), halves up (rate as written)."""
    return int((decimal.Decimal(str(rate)) * n).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def span_start(inp, out):
    """The start of `out` as a contiguous span of `inp`, or None."""
    starts = [s for s in range(len(inp) - len(out) + 1) if inp[s:s + len(out)] == out]
    return starts[0] if starts else None


def deleted_positions(inp, out):
    """Positions of `inp` missing from `out` if `out` is `inp` with some tokens removed (order
    kept, distinct tokens); None otherwise."""
    it = iter(enumerate(inp))
    kept = []
    for token in out:
        for i, t in it:
            if t == token:
                kept.append(i)
                break
        else:
            return None
    return sorted(set(range(len(inp))) - set(kept))


def strip_specials(row):
    assert row[0] == CLS and row[-1] == SEP and CLS not in row[1:-1] and SEP not in row[1:-1], row
    return row[1:-1]


# ----------------------------------------------------------------------------- sizes


RATES = (0.0, 0.1, 0.15, 0.2, 0.29, 0.3, 0.5, 0.7, 1.0)
LENGTHS = (0, 1, 2, 3, 5, 7, 10, 14, 15, 32, 100)


@pytest.mark.parametrize("rate", RATES)
def test_sizes_match_the_decimal_reference(rate):
    lengths = LENGTHS
    rows = [[CLS] + list(range(1000, 1000 + n)) + [SEP] for n in lengths]
    x = tf.ragged.constant(rows, dtype=tf.int64)
    crop = RandomCrop(rate=rate, unselectable_token_ids=[CLS, SEP], seed=1)(x, seed=(1, 2)).to_list()
    delete = WordDeletion(rate=rate, unselectable_token_ids=[CLS, SEP], seed=1)(x, seed=(1, 2)).to_list()
    for n, row, c, d in zip(lengths, rows, crop, delete):
        body, c_body, d_body = strip_specials(row), strip_specials(c), strip_specials(d)
        assert len(c_body) == n - crop_removed(n, rate), (rate, n)
        assert span_start(body, c_body) is not None, (body, c_body)
        assert len(d_body) == n - deletion_count(n, rate), (rate, n)
        assert deleted_positions(body, d_body) is not None, (body, d_body)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_delete_a_fixed_count(count):
    """SimCSE's "delete one word" is count=1: min(count, N) tokens, specials untouched."""
    rows = [[CLS] + list(range(1000, 1000 + n)) + [SEP] for n in LENGTHS]
    out = WordDeletion(count=count, rate=0.9, unselectable_token_ids=[CLS, SEP], seed=4)(
        tf.ragged.constant(rows, dtype=tf.int64), seed=(3, 4)).to_list()
    for n, row, d in zip(LENGTHS, rows, out):
        assert d[0] == CLS and d[-1] == SEP
        body, d_body = strip_specials(row), strip_specials(d)
        assert len(d_body) == n - min(count, n), (count, n)
        assert deleted_positions(body, d_body) is not None
    assert WordDeletion.from_config(WordDeletion(count=1).get_config()).count == 1
    with pytest.raises(ValueError, match="count"):
        WordDeletion(count=-1)


def test_documented_rounding_examples():
    assert [crop_removed(n, 0.1) for n in (9, 10, 19, 20, 32)] == [0, 1, 1, 2, 3]
    assert crop_removed(100, 0.29) == 29  # 0.29 * 100 is 28.999999999999996 in float64
    assert [deletion_count(n, 0.1) for n in (4, 5, 14, 15, 32)] == [0, 1, 1, 2, 3]
    for rate, n in [(0.29, 100), (0.1, 5), (0.1, 15), (0.15, 10), (0.3, 5)]:
        x = tf.constant(list(range(1, n + 1)))
        assert len(RandomCrop(rate=rate, seed=0)(x, seed=0).numpy()) == n - crop_removed(n, rate)
        assert len(WordDeletion(rate=rate, seed=0)(x, seed=0).numpy()) == n - deletion_count(n, rate)


# ----------------------------------------------------------------------------- distributions


@pytest.mark.large
def test_crop_start_is_uniform():
    rate, n = 0.3, 10  # 3 removed: start in {0, 1, 2, 3}
    rows = [[CLS] + BODY[:n] + [SEP]] * 2000
    layer = RandomCrop(rate=rate, unselectable_token_ids=[CLS, SEP], seed=2)
    out = tf.function(lambda x: layer(x, seed=7))(tf.ragged.constant(rows))  # as in tf.data (eager: 20x slower)
    starts = [span_start(BODY[:n], strip_specials(r)) for r in out.to_list()]
    counts = collections.Counter(starts)
    assert set(counts) == set(range(crop_removed(n, rate) + 1))
    assert stats.chisquare([counts[s] for s in sorted(counts)]).pvalue > P_MIN


@pytest.mark.large
def test_deleted_positions_are_uniform_subsets():
    rate, n = 0.25, 8  # 2 deleted out of 8
    rows = [BODY[:n]] * 3000
    layer = WordDeletion(rate=rate, seed=3)
    out = tf.function(lambda x: layer(x, seed=(0, 1)))(tf.ragged.constant(rows)).to_list()  # as in tf.data
    pairs = collections.Counter(tuple(deleted_positions(BODY[:n], r)) for r in out)
    all_pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    assert set(pairs) == set(all_pairs)
    assert stats.chisquare([pairs[p] for p in all_pairs]).pvalue > P_MIN


# ----------------------------------------------------------------------------- selectable ids


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_unselectable_ids_are_never_touched(cls):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        body = rng.choice(BODY, size=rng.integers(0, 15), replace=False).tolist()
        # Unselectable ids inside the sentence too: they stay, in order, and are not counted.
        for _ in range(int(rng.integers(0, 3))):
            body.insert(int(rng.integers(0, len(body) + 1)), 7)
        rows.append([CLS] + body + [SEP])
    layer = cls(rate=0.4, unselectable_token_ids=[CLS, SEP, 7], seed=4)
    out = layer(tf.ragged.constant(rows), seed=1).to_list()
    for inp, o in zip(rows, out):
        specials = [t for t in inp if t in (CLS, SEP, 7)]
        assert [t for t in o if t in (CLS, SEP, 7)] == specials
        body = [t for t in inp if t not in (CLS, SEP, 7)]
        o_body = [t for t in o if t not in (CLS, SEP, 7)]
        if cls is RandomCrop:
            assert len(o_body) == len(body) - crop_removed(len(body), 0.4)
            assert span_start(body, o_body) is not None
        else:
            assert len(o_body) == len(body) - deletion_count(len(body), 0.4)
            assert deleted_positions(body, o_body) is not None
    # Rate 1: only the unselectable ids are left.
    all_gone = cls(rate=1.0, unselectable_token_ids=[CLS, SEP], seed=4)(tf.ragged.constant(rows[:20]))
    assert all_gone.to_list() == [[CLS, SEP]] * 20


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_input_kinds_keep_kind_rank_and_dtype(cls):
    layer = cls(rate=0.5, seed=5)
    ragged = tf.ragged.constant([[5, 6, 7, 8], [9, 10]], dtype=tf.int64)
    out = layer(ragged, seed=1)
    assert isinstance(out, tf.RaggedTensor) and out.dtype == tf.int64 and out.shape.rank == 2
    assert out.row_lengths().numpy().tolist() == [2, 1]

    one = layer(tf.constant([5, 6, 7, 8], tf.int32), seed=1)
    assert isinstance(one, tf.Tensor) and one.dtype == tf.int32 and one.shape.rank == 1 and len(one) == 2

    # Dense padded: trailing 0s are padding (not counted), the output is re-padded to the width.
    dense = tf.constant([[5, 6, 7, 8, 0, 0], [9, 10, 0, 0, 0, 0]])
    out = layer(dense, seed=1)
    assert isinstance(out, tf.Tensor) and out.shape == dense.shape and out.dtype == dense.dtype
    assert (out.numpy() != 0).sum(axis=1).tolist() == [2, 1]
    assert layer(np.array([[5, 6, 0], [7, 0, 0]], dtype=np.int32), seed=0).shape == (2, 3)

    assert isinstance(layer([[1, 2, 3], [4, 5, 6]]), tf.RaggedTensor)  # lists are never padded
    assert layer([1, 2, 3, 4]).shape.rank == 1
    empty = tf.RaggedTensor.from_row_lengths(tf.constant([], tf.int32), tf.constant([], tf.int64))
    assert layer(empty, seed=1).to_list() == []
    assert layer(tf.ragged.constant([[], [1]], dtype=tf.int32), seed=1).to_list()[0] == []

    with pytest.raises(ValueError, match="int32/int64 token ids.*string"):
        layer(tf.constant(["a b c"]))
    with pytest.raises(ValueError, match="float32"):
        layer(tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        layer(tf.zeros([2, 2, 2], tf.int32))


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_rate_zero_is_identity_on_every_call_path(cls):
    rows = [[5, 6, 7], [8], [], [9, 10, 11, 12, 13]]
    layer = cls(rate=0.0, seed=6)
    assert layer(tf.ragged.constant(rows)).to_list() == rows
    assert layer(tf.ragged.constant(rows), seed=3).to_list() == rows
    source = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(rows))
    assert [r.tolist() for r in source.map(layer).as_numpy_iterator()] == rows
    assert [b.to_list() for b in source.ragged_batch(4).map(layer)] == [rows]


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_seeds_are_reproducible(cls):
    x = tf.ragged.constant([BODY] * 30)
    a = cls(rate=0.3, seed=7)
    first = a(x, seed=(1, 2)).to_list()
    a(x)  # a stateful call in between changes nothing
    assert a(x, seed=(1, 2)).to_list() == first
    assert cls(rate=0.3, seed=7)(x, seed=tf.constant([1, 2], tf.int64)).to_list() == first
    assert a(x, seed=(1, 3)).to_list() != first
    assert cls(rate=0.3, seed=8)(x, seed=(1, 2)).to_list() != first
    assert len({tuple(r) for r in first}) > 1  # identical rows get different draws
    assert a(x, seed=5).to_list() == a(x, seed=tf.constant(5, tf.int32)).to_list()

    # Stateful: a fresh layer with the same seed replays the same calls; calls differ.
    b, c = cls(rate=0.3, seed=9), cls(rate=0.3, seed=9)
    seq_b = [b(x).to_list() for _ in range(2)]
    assert seq_b == [c(x).to_list() for _ in range(2)]
    assert seq_b[0] != seq_b[1]

    # Row r of a batch gets fold_in(key, r): row 0 is what an unbatched call gives.
    rows = [BODY, BODY[:7]]
    batched = a(tf.ragged.constant(rows), seed=(4, 4)).to_list()
    assert a(tf.constant(rows[0]), seed=(4, 4)).numpy().tolist() == batched[0]
    # Per-row seeds: each row as if called alone with its seed.
    per_row = a(tf.ragged.constant(rows), seed=tf.constant([[4, 4], [9, 9]], tf.int64)).to_list()
    assert per_row == [a(tf.constant(r), seed=s).numpy().tolist() for r, s in zip(rows, [(4, 4), (9, 9)])]
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="one row per input row"):
        a(tf.ragged.constant(rows), seed=tf.constant([[1, 1]] * 3))
    with pytest.raises(ValueError, match="seed"):
        a(x, seed=1.5)


def test_different_augmentations_draw_different_streams():
    # Same layer seed and call seed, different classes: the salts differ.
    for cls in (RandomCrop, WordDeletion, WordRepetition):
        assert cls.seed_salt not in {c.seed_salt for c in (RandomCrop, WordDeletion, WordRepetition) if c is not cls}


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_batch_then_map_equals_map_then_batch(cls):
    rng = np.random.default_rng(1)
    rows = [rng.choice(BODY, size=rng.integers(1, 15), replace=False).tolist() for _ in range(24)]
    layer = cls(rate=0.3, seed=10)
    source = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(rows))
    # Each element's seed is (index, 7): per element, or as per-row seeds of a batch.
    map_then_batch = (
        source.enumerate()
        .map(lambda i, x: layer(x, seed=tf.stack([i, tf.constant(7, tf.int64)])), num_parallel_calls=tf.data.AUTOTUNE)
        .ragged_batch(8)
    )

    def per_row(b, x):
        index = b * 8 + tf.range(x.nrows(out_type=tf.int64), dtype=tf.int64)
        return layer(x, seed=tf.stack([index, tf.fill(tf.shape(index), tf.constant(7, tf.int64))], axis=1))

    batch_then_map = source.ragged_batch(8).enumerate().map(per_row, num_parallel_calls=tf.data.AUTOTUNE)
    assert map_then_batch.element_spec == batch_then_map.element_spec
    assert isinstance(map_then_batch.element_spec, tf.RaggedTensorSpec)
    first = [b.to_list() for b in map_then_batch]
    assert first == [b.to_list() for b in batch_then_map]
    for inp, out in zip(rows, [r for b in first for r in b]):
        if cls is RandomCrop:
            assert len(out) == len(inp) - crop_removed(len(inp), 0.3) and span_start(inp, out) is not None
        else:
            assert len(out) == len(inp) - deletion_count(len(inp), 0.3) and deleted_positions(inp, out) is not None

    # A pipeline's per-batch (2,) seed and the stateful path work in tf.data as well.
    seeded = source.ragged_batch(8).enumerate().map(lambda b, x: layer(x, seed=tf.stack([tf.constant(3, tf.int64), b])))
    assert [b.to_list() for b in seeded] == [b.to_list() for b in seeded]
    stateful = source.map(layer).ragged_batch(8)
    assert stateful.element_spec == map_then_batch.element_spec
    assert sum(b.nrows() for b in stateful) == len(rows)

    # Dense padded batches stay dense with their width.
    padded = source.map(lambda x: x).padded_batch(8, padded_shapes=[16]).map(lambda x: layer(x, seed=1))
    assert padded.element_spec.shape.as_list() == [None, 16]


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_graph_mode_matches_eager(cls):
    layer = cls(rate=0.4, seed=11)
    x = tf.ragged.constant([BODY, BODY[:5], []])
    f = tf.function(lambda x, s: layer(x, seed=s))
    assert f(x, tf.constant([0, 3])).to_list() == layer(x, seed=[0, 3]).to_list()


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
def test_config_round_trip(cls):
    layer = cls(rate=0.2, unselectable_token_ids=(CLS, SEP), seed=3)
    config = layer.get_config()
    assert config["rate"] == 0.2 and config["unselectable_token_ids"] == [CLS, SEP] and config["seed"] == 3
    restored = run_serialization_test(layer)
    assert keras.saving.serialize_keras_object(layer)["registered_name"] == f"tf_esimcse>{cls.__name__}"
    x = tf.ragged.constant([BODY] * 4)
    assert restored(x, seed=1).to_list() == layer(x, seed=1).to_list()
    unseeded = cls()
    assert isinstance(unseeded.get_config()["seed"], int)
    assert cls.from_config(unseeded.get_config())(x, seed=1).to_list() == unseeded(x, seed=1).to_list()


@pytest.mark.parametrize("cls", [RandomCrop, WordDeletion])
@pytest.mark.parametrize(
    "kwargs, shown",
    [
        (dict(rate=-0.1), "-0.1"),
        (dict(rate=1.5), "1.5"),
        (dict(rate="high"), "'high'"),
        (dict(rate=True), "True"),
        (dict(unselectable_token_ids="[CLS]"), "'[CLS]'"),
        (dict(unselectable_token_ids=[101, "x"]), "'x'"),
        (dict(seed="abc"), "'abc'"),
    ],
)
def test_invalid_arguments_raise_value_error(cls, kwargs, shown):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert shown in str(info.value)


# ----------------------------------------------------------------------------- base class


def test_base_class_docstring_example_and_hooks():
    code = re.search(r"```python\n(.*?)```", token_augmentation_module.__doc__, re.S).group(1)
    namespace = {}
    exec(code, namespace)  # noqa: S102
    reverse = namespace["layer"]
    assert reverse(tf.ragged.constant([[101, 5, 6, 7, 102], [101, 8, 102]])).to_list() == [
        [101, 7, 6, 5, 102], [101, 8, 102]]
    assert isinstance(reverse, TokenAugmentation)
    assert isinstance(WordRepetition(seed=1), TokenAugmentation)

    # Per-row keys are exactly stateless_fold_in(call key, row index).
    keys = reverse.row_seeds((4, 5), 3).numpy().tolist()
    call_key = reverse.stateless_key((4, 5))
    assert keys == [tf.random.experimental.stateless_fold_in(call_key, tf.constant(r, tf.int64), alg="philox")
                    .numpy().tolist() for r in range(3)]

    with pytest.raises(NotImplementedError, match="augment_row"):
        TokenAugmentation(seed=1)(tf.ragged.constant([[1, 2]]))
    # WordRepetition draws per batch: per-row seeds are refused.
    with pytest.raises(ValueError, match="1-D integer tensor of static length"):
        WordRepetition(seed=1)(tf.ragged.constant([[1, 2]]), seed=tf.constant([[1, 2]]))


def test_docstring_examples_of_the_layers():
    crop = RandomCrop(rate=0.5, seed=1)(tf.ragged.constant([[5, 6, 7, 8], [9, 10, 11]]), seed=(0, 1))
    assert crop.row_lengths().numpy().tolist() == [2, 2]
    delete = WordDeletion(rate=0.25, seed=1)(tf.ragged.constant([[5, 6, 7, 8], [9, 10]]), seed=(0, 1))
    assert delete.row_lengths().numpy().tolist() == [3, 1]  # round(0.5) = 1: halves up
