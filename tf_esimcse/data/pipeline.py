"""tf.data pipelines: sentences -> tokenized once -> shuffled -> batched int32 view dicts.

Strings are tokenized once (the token ids are cached), shuffled every epoch, batched with
`drop_remainder=True` (every contrastive batch has the same number of negatives) and packed as
`[CLS] ... [SEP]` with padding. Only int32 tensors leave the pipeline, so the batches can be fed
to a model under any `tf.distribute` strategy.

`unsup_dataset`, `paired_dataset` and `esimcse_dataset` are fixed sets of views over
`tf_esimcse.data.views.views_dataset` (which also serves pairs, triplets and named columns);
`bucketed_unsup_dataset` groups sentences by length instead.
"""
import tensorflow as tf

from tf_esimcse.data.views import View
from tf_esimcse.data.views import tokenized_dataset
from tf_esimcse.data.views import views_dataset
from tf_esimcse.errors import DataError
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tf_esimcse.layers.word_repetition import WordRepetition

__all__ = [
    "tokenized_dataset", "token_batches", "unsup_dataset", "paired_dataset", "esimcse_dataset",
    "default_bucket_widths", "bucketed_unsup_dataset", "View", "views_dataset",
]


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


def token_batches(sentences, preprocessor, batch_size, shuffle=True, seed=42, repeat=False):
    """Cached token ids -> (shuffled each epoch) -> (repeated) -> ragged batches, remainder dropped."""
    _check(sentences, batch_size)
    ds = tokenized_dataset(sentences, preprocessor)
    if shuffle:
        ds = ds.shuffle(len(sentences), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.ragged_batch(batch_size, drop_remainder=True)


def unsup_dataset(sentences, preprocessor, batch_size=64, shuffle=True, seed=42, dynamic_padding=False,
                  repeat=False):
    """Unsupervised SimCSE batches: `{"token_ids", "padding_mask"}` int32, (batch, length).

    `views_dataset(sentences, preprocessor, views=None, ...)`: each sentence once per batch
    (the model encodes it twice; dropout is the augmentation).

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
    return views_dataset(list(sentences), preprocessor, None, batch_size=batch_size, shuffle=shuffle, seed=seed,
                         repeat=repeat, dynamic_padding=dynamic_padding)


def paired_dataset(sentences, preprocessor, positive_fn, batch_size=64, shuffle=True, seed=42,
                   repeat=False, positive_length=None):
    """Batches of `{"anchor": view, "positive": view}` where the positive is
    `positive_fn(ragged token ids, seed)` of the anchor (e.g. ESimCSE's `WordRepetition`),
    drawn anew every epoch. `seed` is an int64 (2,) tensor unique to the batch and the epoch, so
    the augmentation is reproducible whatever the parallelism.

    `views_dataset(sentences, preprocessor, {"anchor": View(0), "positive": View(0,
    positive_fn, positive_length)}, ...)`.
    """
    _check(sentences, batch_size)
    views = {"anchor": View(0), "positive": View(0, transform=positive_fn, sequence_length=positive_length)}
    return views_dataset(list(sentences), preprocessor, views, batch_size=batch_size, shuffle=shuffle, seed=seed,
                         repeat=repeat)


def esimcse_dataset(sentences, preprocessor, dup_rate=0.32, mode="official_subword", batch_size=64, shuffle=True,
                    seed=42, repeat=False, word_repetition=None, positive_length=None):
    """ESimCSE batches: `{"anchor": original, "positive": word-repeated}` int32 views.

    Repetition acts on the sub-word ids after truncation to `max_len - 2` and before
    [CLS]/[SEP] are added (so they are never repeated). Each batch's draw is seeded by (seed,
    batch index in the stream), so runs are reproducible and each epoch draws anew.

    Args:
        dup_rate: float. ESimCSE's duplication rate (0.32 for BERT-base). Defaults to `0.32`.
        mode: str. `"official_subword"` (default: the official code's
            U{0 .. min(10, int(rate * (N + 2))) - 1}) or `"paper"` (the paper's
            dup_len ~ U[0, max(2, int(rate * N))]); see `WordRepetition`.
        word_repetition: a ready `WordRepetition` layer (overrides dup_rate and mode).
        positive_length: int or None. Packed length of the repeated view. `None` (default)
            keeps every repeated token, as the official code does: `max_len` plus the most
            tokens the rule can add (41 for max_len 32 and dup_rate 0.32), so the positive is a
            wider view than the anchor (`ContrastiveModel` encodes each width in its own pass).
            `max_len` re-truncates it to the anchor's length: sentences that already fill
            max_len (~31 % of Brown at 32) then lose their repeated tokens at the end and keep
            the anchor's length, which weakens the length cue ESimCSE exists to break.
    """
    _check(sentences, batch_size)
    layer = word_repetition or WordRepetition(dup_rate=dup_rate, mode=mode, seed=seed)
    if positive_length is None:
        max_len = int(preprocessor.sequence_length)
        positive_length = max_len + layer.max_added_tokens(max_len - 2)
    views = {"anchor": View(0), "positive": View(0, transform=layer, sequence_length=positive_length)}
    return views_dataset(list(sentences), preprocessor, views, batch_size=batch_size, shuffle=shuffle, seed=seed,
                         repeat=repeat)


def default_bucket_widths(max_len):
    """Bucket widths (packed lengths, [CLS]/[SEP] included) for `bucketed_unsup_dataset`: every
    `max(4, max_len // 8)` tokens from 8 (or less for tiny max_len) up to `max_len`, so at most
    ~8 distinct batch shapes (each is one XLA compilation). `(8, 12, ..., 32)` for max_len 32."""
    max_len = int(max_len)
    step = max(4, max_len // 8)
    widths = [w for w in range(min(8, max_len), max_len, step)]
    return tuple(widths) + (max_len,)


def bucketed_unsup_dataset(sentences, preprocessor, batch_size=64, bucket_widths=None, pad_to_bucket_width=True,
                           shuffle=True, seed=42, batch_shuffle_buffer=32, repeat=False):
    """Unsupervised SimCSE batches grouped by length (opt-in): `{"token_ids", "padding_mask"}`
    int32, (batch_size, width). Same elements as `unsup_dataset`, fewer padding tokens.

    Sentences are tokenized once (cached), shuffled each epoch with `seed`, then put in the
    bucket of the smallest width >= their packed length (`[CLS]`/`[SEP]` included); a bucket
    emits a batch when it holds exactly `batch_size` sentences (`drop_remainder`: a bucket's
    last partial batch of an epoch is dropped; with `repeat=True` it carries over into the
    next epoch instead). The batches are then shuffled across buckets (`batch_shuffle_buffer`).

    Every batch therefore holds sentences of SIMILAR LENGTH, which changes the distribution of
    the in-batch negatives (the model can no longer use length to tell sentences apart). It is
    a different training recipe, not only a faster one: check STS-B dev against the unbucketed
    run before relying on it. `unsup_dataset` (random batches) stays the default everywhere.

    Args:
        sentences: list of str.
        preprocessor: a `SentencePreprocessor` (its `sequence_length` is the max length).
        batch_size: int. Every batch has exactly this many rows. Defaults to `64`.
        bucket_widths: increasing ints, the bucket widths (packed lengths); the last must be
            `>= sequence_length` (`sequence_length` is appended otherwise). `None` uses
            `default_bucket_widths(sequence_length)`.
        pad_to_bucket_width: bool. `True` (default): every batch of a bucket has the bucket's
            width, so there are only `len(bucket_widths)` shapes (XLA compiles once per shape).
            `False`: each batch is trimmed to its own longest sentence (fewest padding tokens,
            but up to `sequence_length` shapes).
        shuffle: bool. Shuffle sentences each epoch (and the batches across buckets).
        seed: int.
        batch_shuffle_buffer: int. Batches held to mix the buckets' outputs (0: none).
        repeat: bool. Repeat forever (use with `steps_per_epoch`).
    """
    _check(sentences, batch_size)
    max_len = int(preprocessor.sequence_length)
    widths = sorted({int(w) for w in (bucket_widths or default_bucket_widths(max_len))})
    if widths[0] < 2:
        raise ValueError(f"bucket widths must be >= 2 ([CLS] and [SEP]), got {widths}.")
    widths = [w for w in widths if w < max_len] + [max_len]
    width_table = tf.constant(widths, tf.int32)

    ds = tokenized_dataset(sentences, preprocessor)
    if shuffle:
        ds = ds.shuffle(len(sentences), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def bucket_of(ids):
        packed_len = tf.cast(tf.shape(ids)[0], tf.int32) + 2
        return tf.cast(tf.searchsorted(width_table, packed_len[tf.newaxis], side="left")[0], tf.int64)

    def batch_bucket(key, window):
        # `window` holds at most batch_size elements; a partial one (end of input) is dropped.
        return window.ragged_batch(batch_size, drop_remainder=True).map(lambda ids: (key, ids))

    ds = ds.group_by_window(key_func=bucket_of, reduce_func=batch_bucket, window_size=batch_size)

    def pack(key, ids):
        batch = preprocessor.pack(ids)
        if pad_to_bucket_width:
            width = tf.gather(width_table, tf.cast(key, tf.int32))
            return {k: v[:, :width] for k, v in batch.items()}
        return trim_to_longest(batch)

    ds = ds.map(pack, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle and batch_shuffle_buffer and batch_shuffle_buffer > 1:
        ds = ds.shuffle(int(batch_shuffle_buffer), seed=seed + 1, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)
