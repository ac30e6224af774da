"""Tests for `tf_esimcse.data.views`: `View`, `views_dataset`, `supervised_views`.

`unsup_dataset`, `paired_dataset` and `esimcse_dataset` are now built on `views_dataset`; the
functions below (`old_*`) are their implementations before that change, copied verbatim, and
the new ones must give exactly the same batches for the same arguments and seed.
"""
import re

import numpy as np
import pytest
import tensorflow as tf

from test_case import write_tiny_model_dir
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.data import views as views_module
from tf_esimcse.data.pipeline import esimcse_dataset
from tf_esimcse.data.pipeline import paired_dataset
from tf_esimcse.data.pipeline import unsup_dataset
from tf_esimcse.data.views import View
from tf_esimcse.data.views import supervised_views
from tf_esimcse.data.views import views_dataset
from tf_esimcse.errors import DataError
from tf_esimcse.layers.random_crop import RandomCrop
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tf_esimcse.layers.word_deletion import WordDeletion
from tf_esimcse.layers.word_repetition import WordRepetition
from tiny_hf import CLS_ID
from tiny_hf import PAD_ID
from tiny_hf import SEP_ID

SEQ_LEN = 12
BATCH = 4
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox",
         "jumped", "over", "lazy", "is", "playing", "cats", "runs", "cafe", ".", ",", "!"]


def make_sentences(n, seed, min_words=0, max_words=12):
    """n sentences with distinct first words (so distinct token ids), 1 to max_words + 1 words."""
    rng = np.random.default_rng(seed)
    return [" ".join([WORDS[i]] + list(rng.choice(WORDS, size=rng.integers(min_words, max_words + 1))))
            for i in range(n)]


SENT0 = make_sentences(14, seed=0)
SENT1 = make_sentences(14, seed=1)
HARD_NEG = make_sentences(14, seed=2)


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    tokenizer = load_tokenizer(str(write_tiny_model_dir(tmp_path_factory.mktemp("tiny_views"))))
    return SentencePreprocessor(tokenizer, sequence_length=SEQ_LEN)


# ----------------------------------------------------------------------------- the old code


def old_check(sentences, batch_size):
    if len(sentences) == 0:
        raise DataError("no sentences to train on")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (in-batch negatives), got {batch_size!r}.")
    if len(sentences) < batch_size:
        raise DataError(
            f"the corpus has {len(sentences)} sentences, fewer than one batch of {batch_size} "
            "(batches drop the remainder)"
        )


def old_tokenized_dataset(sentences, preprocessor):
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(sentences), dtype=tf.string))
    ds = ds.batch(1024).map(preprocessor.tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.cache()


def old_token_batches(sentences, preprocessor, batch_size, shuffle=True, seed=42, repeat=False):
    old_check(sentences, batch_size)
    ds = old_tokenized_dataset(sentences, preprocessor)
    if shuffle:
        ds = ds.shuffle(len(sentences), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.ragged_batch(batch_size, drop_remainder=True)


def old_unsup_dataset(sentences, preprocessor, batch_size=64, shuffle=True, seed=42, dynamic_padding=False,
                      repeat=False):
    ds = old_token_batches(sentences, preprocessor, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
    ds = ds.map(preprocessor.pack, num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_padding:
        ds = ds.map(trim_to_longest, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def old_paired_dataset(sentences, preprocessor, positive_fn, batch_size=64, shuffle=True, seed=42,
                       repeat=False, positive_length=None):
    ds = old_token_batches(sentences, preprocessor, batch_size, shuffle=shuffle, seed=seed, repeat=repeat)
    batch_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((batch_keys, ds))

    def make_views(key, ids):
        batch_seed = tf.stack([tf.cast(seed, tf.int64), key])
        return {
            "anchor": preprocessor.pack(ids),
            "positive": preprocessor.pack(positive_fn(ids, batch_seed), sequence_length=positive_length),
        }

    ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def old_esimcse_dataset(sentences, preprocessor, dup_rate=0.32, mode="paper", batch_size=64, shuffle=True, seed=42,
                        repeat=False, word_repetition=None, positive_length=None):
    layer = word_repetition or WordRepetition(dup_rate=dup_rate, mode=mode, seed=seed)

    def positive_fn(ids, batch_seed):
        return layer(ids, seed=batch_seed)

    return old_paired_dataset(sentences, preprocessor, positive_fn, batch_size=batch_size, shuffle=shuffle,
                              seed=seed, repeat=repeat, positive_length=positive_length)


# ----------------------------------------------------------------------------- helpers


def epochs(ds, n_epochs=2, take=None):
    """`n_epochs` iterations over `ds` (or `take` batches of one), as nested NumPy dicts."""
    if take is not None:
        return [list(ds.take(take).as_numpy_iterator())]
    return [list(ds.as_numpy_iterator()) for _ in range(n_epochs)]


def assert_same_batches(new, old):
    assert len(new) == len(old)
    for new_epoch, old_epoch in zip(new, old):
        assert len(new_epoch) == len(old_epoch) > 0
        for a, b in zip(new_epoch, old_epoch):
            tf.nest.assert_same_structure(a, b)
            for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
                assert x.dtype == y.dtype == np.int32
                np.testing.assert_array_equal(x, y)


def stamp_seed(ids, seed):
    """A transform that shows its seed: row r becomes [seed[0] % 1000, seed[1] % 1000, r]."""
    n = ids.nrows(out_type=tf.int64)
    rows = tf.stack([tf.fill([n], seed[0] % 1000), tf.fill([n], seed[1] % 1000), tf.range(n)], axis=1)
    return tf.RaggedTensor.from_tensor(tf.cast(rows, ids.dtype))


def inner(ids, mask):
    """The content of one packed row: no [CLS], [SEP] or padding."""
    n = int(mask.sum())
    assert ids[0] == CLS_ID and ids[n - 1] == SEP_ID and (ids[n:] == PAD_ID).all()
    return [int(t) for t in ids[1:n - 1]]


# ----------------------------------------------------------------------------- same batches as before


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(shuffle=False),
        dict(seed=7, dynamic_padding=True),
        dict(seed=3, batch_size=3, shuffle=False, dynamic_padding=True),
    ],
)
@pytest.mark.large
def test_unsup_dataset_gives_the_old_batches(pre, kwargs):
    kwargs = dict(dict(batch_size=BATCH), **kwargs)
    assert_same_batches(epochs(unsup_dataset(SENT0, pre, **kwargs)), epochs(old_unsup_dataset(SENT0, pre, **kwargs)))
    # And views_dataset(views=None) is the same thing.
    assert_same_batches(epochs(views_dataset(SENT0, pre, **kwargs)), epochs(old_unsup_dataset(SENT0, pre, **kwargs)))


def test_unsup_dataset_repeat_gives_the_old_batches(pre):
    kwargs = dict(batch_size=BATCH, seed=5, repeat=True)
    assert_same_batches(epochs(unsup_dataset(SENT0, pre, **kwargs), take=10),
                        epochs(old_unsup_dataset(SENT0, pre, **kwargs), take=10))


@pytest.mark.parametrize(
    "kwargs",
    [dict(seed=5), dict(shuffle=False, seed=1), dict(seed=9, positive_length=SEQ_LEN + 4)],
)
@pytest.mark.large
def test_paired_dataset_gives_the_old_batches(pre, kwargs):
    kwargs = dict(dict(batch_size=BATCH), **kwargs)
    layer = WordDeletion(rate=0.3, seed=4)
    for fn in (stamp_seed, lambda ids, seed: layer(ids, seed=seed)):
        assert_same_batches(epochs(paired_dataset(SENT0, pre, fn, **kwargs)),
                            epochs(old_paired_dataset(SENT0, pre, fn, **kwargs)))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(seed=7, shuffle=False),
        dict(mode="official_subword", seed=2, positive_length=SEQ_LEN + 9),
        dict(dup_rate=0.5, seed=11, repeat=True),
    ],
)
@pytest.mark.large
def test_esimcse_dataset_gives_the_old_batches(pre, kwargs):
    kwargs = dict(dict(batch_size=BATCH), **kwargs)
    take = 9 if kwargs.get("repeat") else None
    # The old defaults (paper rule, positives re-truncated), stated explicitly since the new
    # defaults are the official code's.
    legacy = dict(dict(mode="paper", positive_length=SEQ_LEN), **kwargs)
    assert_same_batches(epochs(esimcse_dataset(SENT0, pre, **legacy), take=take),
                        epochs(old_esimcse_dataset(SENT0, pre, **kwargs), take=take))


@pytest.mark.large
def test_esimcse_dataset_with_a_ready_layer_gives_the_old_batches(pre):
    def run(fn, **kwargs):
        layer = WordRepetition(dup_rate=0.4, seed=3)
        return epochs(fn(SENT0, pre, batch_size=BATCH, seed=6, word_repetition=layer, **kwargs))

    assert_same_batches(run(esimcse_dataset, positive_length=SEQ_LEN), run(old_esimcse_dataset))


# ----------------------------------------------------------------------------- views


def _example_index(pre, sentences):
    """Packed token ids (tuple) of each sentence -> its index."""
    packed = pre(tf.constant(sentences))["token_ids"].numpy()
    index = {tuple(row): i for i, row in enumerate(packed)}
    assert len(index) == len(sentences)
    return index


@pytest.mark.large
def test_supervised_views_from_a_dict_of_columns(pre):
    nli = {"sent0": SENT0, "sent1": SENT1, "hard_neg": HARD_NEG}
    views = {"anchor": View("sent0"), "positive": View("sent1"), "negative": View("hard_neg")}
    ds = views_dataset(nli, pre, views, batch_size=BATCH, seed=3)
    assert list(ds.element_spec) == ["anchor", "positive", "negative"]
    for view in ds.element_spec.values():
        assert set(view) == {"token_ids", "padding_mask"}
        for spec in view.values():
            assert spec.dtype == tf.int32 and spec.shape.as_list() == [BATCH, SEQ_LEN]
    columns = {"anchor": SENT0, "positive": SENT1, "negative": HARD_NEG}
    index = {name: _example_index(pre, sents) for name, sents in columns.items()}
    orders, first_two = [], epochs(ds)
    for epoch in first_two:
        assert len(epoch) == len(SENT0) // BATCH  # drop_remainder
        order = []
        for batch in epoch:
            rows = {name: [index[name][tuple(r)] for r in batch[name]["token_ids"]] for name in columns}
            # The fields of an example stay together (shuffled jointly).
            assert rows["anchor"] == rows["positive"] == rows["negative"]
            order += rows["anchor"]
        assert len(set(order)) == len(order)
        orders.append(order)
    assert orders[0] != orders[1]  # reshuffled every epoch

    # Same views by helper; triplets as tuples give the same batches as the named columns.
    triplets = list(zip(SENT0, SENT1, HARD_NEG))
    for other in (
        views_dataset(nli, pre, supervised_views("sent0", "sent1", "hard_neg"), batch_size=BATCH, seed=3),
        views_dataset(triplets, pre, supervised_views(), batch_size=BATCH, seed=3),
        views_dataset([list(t) for t in triplets], pre, {"anchor": 0, "positive": 1, "negative": 2},
                      batch_size=BATCH, seed=3),
    ):
        assert_same_batches(epochs(other), first_two)


def test_pairs_and_unused_fields(pre):
    pairs = list(zip(SENT0, SENT1))
    ds = views_dataset(pairs, pre, supervised_views(negative=None), batch_size=BATCH, shuffle=False)
    assert list(ds.element_spec) == ["anchor", "positive"]
    batches = epochs(ds, n_epochs=1)[0]
    expected = {
        "anchor": pre(tf.constant(SENT0))["token_ids"].numpy(),
        "positive": pre(tf.constant(SENT1))["token_ids"].numpy(),
    }
    for b, batch in enumerate(batches):
        for name in expected:
            np.testing.assert_array_equal(batch[name]["token_ids"], expected[name][b * BATCH:(b + 1) * BATCH])
    # A view of field 1 only: the other field is not needed; views=None reads the first field.
    only = epochs(views_dataset(pairs, pre, {"second": View(1)}, batch_size=BATCH, shuffle=False), n_epochs=1)[0]
    np.testing.assert_array_equal(only[0]["second"]["token_ids"], expected["positive"][:BATCH])
    plain = epochs(views_dataset({"b": SENT1, "a": SENT0}, pre, batch_size=BATCH, shuffle=False), n_epochs=1)[0]
    assert set(plain[0]) == {"token_ids", "padding_mask"}
    np.testing.assert_array_equal(plain[0]["token_ids"], expected["positive"][:BATCH])


def test_each_transformed_view_gets_its_own_seed_per_batch(pre):
    views = {"a": View(0, stamp_seed), "plain": View(0), "b": View(0, stamp_seed), "c": View(1, stamp_seed)}
    ds = views_dataset(list(zip(SENT0, SENT1)), pre, views, batch_size=BATCH, seed=40)
    keys = tf.data.Dataset.random(seed=40, rerandomize_each_iteration=True)
    expected_keys = [int(k) for k in keys.take(len(SENT0) // BATCH).as_numpy_iterator()]
    seen = []
    for b, batch in enumerate(epochs(ds, n_epochs=1)[0]):
        for j, name in enumerate(["a", "b", "c"]):
            rows = [inner(ids, m) for ids, m in zip(batch[name]["token_ids"], batch[name]["padding_mask"])]
            # View j (counting transformed views only) gets (seed + j, key of batch b).
            assert rows == [[(40 + j) % 1000, expected_keys[b] % 1000, r] for r in range(BATCH)]
            seen.append(tuple(rows[0][:2]))
    assert len(set(seen)) == len(seen)  # distinct per view and per batch


def test_transforms_per_view_sequence_length_and_dynamic_padding(pre):
    crop = RandomCrop(rate=0.5, seed=1)
    repeat = WordRepetition(dup_rate=1.0, mode="official_subword", seed=2)
    views = {
        "anchor": View(0),
        "cropped": View(0, crop),
        "repeated": View(0, repeat, sequence_length=SEQ_LEN + 9),
    }
    ds = views_dataset(SENT0, pre, views, batch_size=BATCH, seed=8)
    assert ds.element_spec["repeated"]["token_ids"].shape.as_list() == [BATCH, SEQ_LEN + 9]
    grew, first_epoch = 0, epochs(ds, n_epochs=1)[0]
    for batch in first_epoch:
        for r in range(BATCH):
            anchor, cropped, repeated = (
                inner(batch[v]["token_ids"][r], batch[v]["padding_mask"][r]) for v in views
            )
            n = len(anchor)
            keep = n - int(np.floor(0.5 * n + 1e-9))
            assert len(cropped) == keep
            assert any(anchor[s:s + keep] == cropped for s in range(n - keep + 1))  # a contiguous span
            assert len(repeated) >= n
            grew += len(repeated) > SEQ_LEN - 2
    assert grew > 0  # the longer positive length is used

    dynamic = views_dataset(SENT0, pre, views, batch_size=BATCH, seed=8, dynamic_padding=True)
    for full, cut in zip(first_epoch, epochs(dynamic, n_epochs=1)[0]):
        for v in views:
            width = int(full[v]["padding_mask"].sum(axis=1).max())
            assert cut[v]["token_ids"].shape == (BATCH, width)
            np.testing.assert_array_equal(cut[v]["token_ids"], full[v]["token_ids"][:, :width])
            np.testing.assert_array_equal(cut[v]["padding_mask"], full[v]["padding_mask"][:, :width])


def test_transforms_are_reproducible_and_redrawn_each_epoch(pre):
    views = {"anchor": View(0, WordDeletion(rate=0.3, seed=1)), "positive": View(0, WordDeletion(rate=0.3, seed=1))}

    def run():
        return epochs(views_dataset(SENT0, pre, views, batch_size=BATCH, shuffle=False, seed=5))

    first, again = run(), run()
    assert_same_batches(first, again)
    a = [b["anchor"]["token_ids"] for b in first[0]]
    assert any(not np.array_equal(x, y["anchor"]["token_ids"]) for x, y in zip(a, first[1]))  # new epoch
    assert any(not np.array_equal(x["anchor"]["token_ids"], x["positive"]["token_ids"]) for x in first[0])


def test_module_docstring_example_runs(pre):
    code = re.search(r"```python\n(.*?)```", views_module.__doc__, re.S).group(1)
    namespace = {"preprocessor": pre}
    exec(code, namespace)  # noqa: S102
    batch = next(iter(namespace["ds"]))
    assert set(batch) == {"anchor", "positive"}


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "examples, message",
    [
        ([], "no examples"),
        ({}, "no examples"),
        ({"a": [], "b": []}, "no examples"),
        ([("a b", "c")] * 3 + [("d",)] + [("e", "f")] * 4, "example 3 has 1 fields, example 0 has 2"),
        (["a"] * 5 + [3] + ["b"] * 4, "example 5: expected str"),
        ([("a", "b")] * 5 + [("c", None)], r"example 5, field 1: expected str"),
        ([("a", "b")] * 5 + ["c d"], "example 5: expected a tuple of 2 str"),
        ({"sent0": ["a"] * 8, "sent1": ["b"] * 7}, "different numbers of examples"),
        ({"sent0": ["a"] * 8, "sent1": ["b"] * 7 + [1]}, "field 'sent1', example 7"),
        ("a single string", "examples must be a list"),
        (["a", "b", "c"], "3 examples, fewer than one batch of 4"),
    ],
)
def test_bad_examples_raise_data_error(pre, examples, message):
    with pytest.raises(DataError, match=message):
        views_dataset(examples, pre, batch_size=4)


def test_bad_views_and_arguments_raise_value_error(pre):
    pairs = list(zip(SENT0, SENT1))
    with pytest.raises(ValueError, match="unknown field 2; the examples have fields \\[0, 1\\]"):
        views_dataset(pairs, pre, supervised_views(), batch_size=4)
    with pytest.raises(ValueError, match="view 'negative' reads unknown field 'hard_negative'"):
        views_dataset({"sent0": SENT0, "hard_neg": HARD_NEG}, pre,
                      {"anchor": View("sent0"), "negative": View("hard_negative")}, batch_size=4)
    with pytest.raises(ValueError, match="unknown field 0"):
        views_dataset({"sent0": SENT0}, pre, {"anchor": View(0)}, batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        views_dataset(SENT0, pre, batch_size=1)
    with pytest.raises(ValueError, match="non-empty dict"):
        views_dataset(SENT0, pre, {}, batch_size=4)
    with pytest.raises(ValueError, match="must be a View"):
        views_dataset(SENT0, pre, {"anchor": 1.5}, batch_size=4)
    with pytest.raises(ValueError, match="source=-1"):
        View(-1)
    with pytest.raises(ValueError, match="source=1.0"):
        View(1.0)
    with pytest.raises(ValueError, match="transform=3"):
        View(0, transform=3)
    with pytest.raises(ValueError, match="sequence_length=2"):
        View(0, sequence_length=2)
