"""tf.data pipelines: sentences -> tokenized once -> shuffled -> batched int32 view dicts.

Strings are tokenized once (the token ids are cached), shuffled every epoch, batched with
`drop_remainder=True` (every contrastive batch has the same number of negatives) and packed as
`[CLS] ... [SEP]` with padding. Only int32 tensors leave the pipeline, so the batches can be fed
to a model under any `tf.distribute` strategy.
"""
import tensorflow as tf

from tf_esimcse.errors import DataError
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest


def _check(sentences, batch_size):
    if len(sentences) == 0:
        raise DataError("no sentences to train on")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (in-batch negatives), got {batch_size!r}.")
    if len(sentences) < batch_size:
        raise DataError(
            f"the corpus has {len(sentences)} sentences, fewer than one batch of {batch_size} "
            "(batches drop the remainder)"
        )


def tokenized_dataset(sentences, preprocessor):
    """Sentences -> dataset of 1-D token-id tensors (no [CLS]/[SEP]), tokenized once and cached."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(sentences), dtype=tf.string))
    ds = ds.batch(1024).map(preprocessor.tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.cache()


def unsup_dataset(sentences, preprocessor, batch_size=64, shuffle=True, seed=42, dynamic_padding=False,
                  repeat=False):
    """Unsupervised SimCSE batches: `{"token_ids", "padding_mask"}` int32, (batch, length).

    Args:
        sentences: list of str.
        preprocessor: a `SentencePreprocessor` (sets the max length, 32 by default).
        batch_size: int. Defaults to `64`.
        shuffle: bool. Reshuffle each epoch with `seed`. Defaults to `True`.
        dynamic_padding: bool. Trim each batch to its longest sentence instead of padding to
            the max length (the loss is unchanged; the step is cheaper).
        repeat: bool. Repeat forever (use with `steps_per_epoch`).
    """
    _check(sentences, batch_size)
    ds = tokenized_dataset(sentences, preprocessor)
    if shuffle:
        ds = ds.shuffle(len(sentences), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.ragged_batch(batch_size, drop_remainder=True)
    ds = ds.map(preprocessor.pack, num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_padding:
        ds = ds.map(trim_to_longest, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def paired_dataset(sentences, preprocessor, positive_fn, batch_size=64, shuffle=True, seed=42,
                   repeat=False):
    """Batches of `{"anchor": view, "positive": view}` where the positive is
    `positive_fn(ragged token ids, seed)` of the anchor (e.g. ESimCSE's `WordRepetition`),
    drawn anew every epoch. `seed` is an int64 (2,) tensor unique to the batch and the epoch, so
    the augmentation is reproducible whatever the parallelism.
    """
    _check(sentences, batch_size)
    ds = tokenized_dataset(sentences, preprocessor)
    if shuffle:
        ds = ds.shuffle(len(sentences), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.ragged_batch(batch_size, drop_remainder=True)
    # Each batch gets its own stateless seed: a random stream seeded by `seed` that is drawn
    # anew each time the dataset is iterated (each Keras epoch), reproducibly.
    batch_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((batch_keys, ds))

    def make_views(key, ids):
        batch_seed = tf.stack([tf.cast(seed, tf.int64), key])
        return {
            "anchor": preprocessor.pack(ids),
            "positive": preprocessor.pack(positive_fn(ids, batch_seed)),
        }

    ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def esimcse_dataset(sentences, preprocessor, dup_rate=0.32, mode="paper", batch_size=64, shuffle=True, seed=42,
                    repeat=False, word_repetition=None):
    """ESimCSE batches: `{"anchor": original, "positive": word-repeated}` int32 views.

    Repetition acts on the sub-word ids after truncation to `max_len - 2` and before
    [CLS]/[SEP] are added (so they are never repeated); the packer then truncates the repeated
    sentence to `max_len` again. Each batch's draw is seeded by (seed, batch index in the
    stream), so runs are reproducible and each epoch draws anew.

    Args:
        dup_rate: float. ESimCSE's duplication rate (0.32 for BERT-base). Defaults to `0.32`.
        mode: str. `"paper"` (dup_len ~ U[0, max(2, int(rate * N))]) or `"official_subword"`
            (the official code's U{0 .. min(10, int(rate * (N + 2))) - 1}); see `WordRepetition`.
        word_repetition: a ready `WordRepetition` layer (overrides dup_rate and mode).
    """
    from tf_esimcse.layers.word_repetition import WordRepetition

    layer = word_repetition or WordRepetition(dup_rate=dup_rate, mode=mode, seed=seed)

    def positive_fn(ids, batch_seed):
        return layer(ids, seed=batch_seed)

    return paired_dataset(sentences, preprocessor, positive_fn, batch_size=batch_size, shuffle=shuffle, seed=seed,
                          repeat=repeat)
