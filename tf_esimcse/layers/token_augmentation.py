"""`TokenAugmentation`: the shared base of the augmentations that act on token ids.

A token augmentation turns the token ids of sentences into other token ids (ESimCSE's word
repetition, SimCSE's crop and word deletion...). It runs after tokenization and *before*
[CLS]/[SEP] are added and the batch is padded by the packer (`SentencePreprocessor.pack`), inside
`tf.data` (eagerly and inside `tf.function` too). This base class holds everything such a layer
needs except the augmentation itself, so that every augmentation accepts the same inputs and
seeds and behaves the same in a pipeline:

Inputs (int32 or int64 token ids; the output has the same kind, dtype and rank):
  * 1-D tensor: one sentence (`0` is an ordinary id unless listed as unselectable);
  * 2-D `tf.RaggedTensor` `[batch, None]`: a batch of sentences;
  * 2-D dense tensor: a padded batch; trailing `0`s are padding (never selected, not counted) and
    the output is re-padded with `0` (or truncated) to the input width;
  * Python lists (`tf.ragged.constant`: a list of lists is a ragged batch, never padded) and
    NumPy arrays (`tf.convert_to_tensor`: a 2-D array is a padded dense batch).
  Eager calls return TensorFlow tensors, never Python lists.

Selectable ids: ids listed in `unselectable_token_ids` (and padding `0`s of a dense input) are
never touched by an augmentation: they are neither changed, moved relative to each other, removed
nor duplicated, and they are not counted in a sentence's length N.

Seeds. The layer has an integer `seed` (`None` draws one, stored in the config, as keras-hub's
`RandomSwap` does). `call(inputs, seed=None)`:
  * `seed=None`: stateful: a per-call key is drawn from a `tf.random.Generator` made from the
    layer seed (a fresh layer with the same seed replays the same sequence of calls; under a
    parallel `Dataset.map` the pairing of draws to elements is not reproducible);
  * `seed=<int scalar or 1-D int tensor of static length>` (e.g. the pipelines' per-batch
    `(dataset seed, batch key)` int64 pair): stateless. The call key is `(layer seed,
    seed_salt)` with every element of `seed` folded in (`tf.random.experimental.stateless_fold_in`,
    Philox), so the result depends only on (layer seed, call seed, input);
  * `seed=<2-D int tensor [batch, k]>` (per-row augmentations only): one call seed per row; row
    r then gets exactly what an unbatched call on that row with `seed[r]` gives, so
    "map then batch" and "batch then map" give identical values.
Per-row seeds: row r of a batch called with seed s gets the key `fold_in(key(s), r)` (a 1-D
input is a batch of one, row 0). A subclass that implements `augment_row` therefore gives each
row its own stream; a subclass that overrides `augment_batch` (as `WordRepetition` does, for
speed and for its historical outputs) draws for the whole batch from `batch_seeds`.

Subclasses implement ONE of:
  * `augment_row(token_ids, selectable, seed)`: one sentence, 1-D ids, a bool mask of the
    selectable positions and a `(2,)` int64 stateless key -> 1-D ids (run over the rows with
    `tf.map_fn`); or
  * `augment_batch(token_ids, selectable, seed)`: a ragged `[batch, None]` batch, a ragged bool
    mask of the same structure and the *call* seed as given (None, an int scalar/vector or
    per-row seeds) -> ragged batch; use `self.batch_seeds(seed, num)` for per-batch keys or
    `self.row_seeds(seed, nrows)` for per-row keys.
and add their own arguments to `__init__` (validated before `super().__init__`) and
`get_config`.

Keras attributes: like keras-hub's preprocessing layers, the layer sets
`_convert_input_args = False` (keep tf int/ragged tensors as they are instead of casting them to
the layer dtype) and `_allow_non_tensor_positional_args = True` (accept Python lists); both are
`keras.layers.Layer` attributes also used by `SentencePreprocessor`.

Examples:

```python
import tensorflow as tf
from tf_esimcse.layers.token_augmentation import TokenAugmentation


class Reverse(TokenAugmentation):
    # Reverses the selectable tokens of each sentence (no randomness needed).

    def augment_row(self, token_ids, selectable, seed):
        positions = tf.where(selectable)[:, 0]
        return tf.tensor_scatter_nd_update(
            token_ids, positions[:, None], tf.reverse(tf.gather(token_ids, positions), [0])
        )


layer = Reverse(unselectable_token_ids=[101, 102], seed=1)
layer(tf.ragged.constant([[101, 5, 6, 7, 102], [101, 8, 102]]))  # [[101, 7, 6, 5, 102], [101, 8, 102]]
```
"""
import numbers
import random

import keras
import numpy as np
import tensorflow as tf

from tf_esimcse import private_apis
from tf_esimcse.api_export import tf_esimcse_export

RNG_ALG = "philox"  # fixed, so that stateless draws do not depend on the device.
_INT64_MAX = 2**63 - 1


def is_int(value):
    """A Python/NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_rate(name, value):
    """A float in [0, 1], or a `ValueError` quoting the value."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"`{name}` must be a number in [0, 1]. Received: {name}={value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")
    return float(value)


def to_tensor(inputs):
    """Python/NumPy inputs -> tf tensors (lists -> ragged); tf tensors unchanged."""
    if isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
        return inputs
    if isinstance(inputs, (str, bytes)):
        return tf.constant(inputs)
    if isinstance(inputs, (list, tuple)):
        return tf.ragged.constant(inputs)
    return tf.convert_to_tensor(inputs)


def _check_unselectable(unselectable_token_ids):
    if isinstance(unselectable_token_ids, (str, bytes)) or not isinstance(
        unselectable_token_ids, (list, tuple, set, frozenset, np.ndarray)
    ):
        raise ValueError(
            "`unselectable_token_ids` must be a list of integer token ids. "
            f"Received: unselectable_token_ids={unselectable_token_ids!r}"
        )
    if isinstance(unselectable_token_ids, np.ndarray):
        ids = unselectable_token_ids.reshape(-1).tolist()
    else:
        ids = list(unselectable_token_ids)
    for token_id in ids:
        if not is_int(token_id) or token_id < 0:
            raise ValueError(
                "`unselectable_token_ids` must contain non-negative integers. Received: "
                f"unselectable_token_ids={unselectable_token_ids!r} (bad entry {token_id!r})"
            )
    return [int(i) for i in ids]


def _fold_row_index(key, nrows):
    """`stateless_fold_in(key, r)` for every r in range(nrows), vectorised: [nrows, 2] int64.

    (`fold_in(key, data)` is `[uniform_full_int(key), data]`; the first word does not depend on r.)
    """
    first = tf.random.stateless_uniform(
        [], seed=key, dtype=tf.int64, minval=None, maxval=None, alg=RNG_ALG
    )
    rows = tf.range(tf.cast(nrows, tf.int64), dtype=tf.int64)
    return tf.stack([tf.fill(tf.shape(rows), first), rows], axis=1)


@tf_esimcse_export("layers.TokenAugmentation")
class TokenAugmentation(keras.layers.Layer):
    """Base class of the token-id augmentations (see the module docstring).

    Args:
        unselectable_token_ids: list of int. Ids that are never touched and not counted in a
            sentence's length (e.g. [CLS], [SEP], [PAD] when present). For a dense 2-D input
            `0` is always treated as padding too. Defaults to `()`.
        seed: int. The layer seed. `None` draws a random integer once, stored in the config.

    Call arguments:
        inputs: token ids (1-D tensor, 2-D ragged or dense padded tensor, Python lists, NumPy).
        seed: optional int scalar or 1-D int tensor of static length (e.g. the pipelines'
            `(seed, batch key)` int64 pair) for a stateless draw, or (per-row augmentations) a
            2-D `[batch, k]` int tensor of per-row seeds.

    Returns:
        Token ids of the input's kind, dtype and rank.
    """

    # Second word of the stateless key next to the layer seed, so that two augmentations
    # with the same layer seed and call seed do not draw the same stream. Each subclass sets
    # its own constant (changing it changes every seeded output).
    seed_salt = 0x70CE_A061

    def __init__(self, unselectable_token_ids=(), seed=None, **kwargs):
        ids = _check_unselectable(unselectable_token_ids)
        if seed is not None and (not is_int(seed) or abs(int(seed)) > _INT64_MAX):
            raise ValueError(f"`seed` must be None or a 64-bit integer. Received: seed={seed!r}")
        super().__init__(**kwargs)
        # As keras-hub's preprocessing layers: tf (ragged) int tensors pass through untouched,
        # Python lists are accepted.
        private_apis.keep_input_tensors(self)
        self.built = True
        self.unselectable_token_ids = ids
        # As keras-hub's RandomSwap: a missing seed becomes a stored random integer, so the
        # config (and a reloaded layer) replays the same stream.
        self.seed = random.randint(1, int(1e9)) if seed is None else int(seed)
        with tf.init_scope(), tf.device("cpu"):
            self._generator = tf.random.Generator.from_seed(self.seed)

    # ------------------------------------------------------------------ seeds

    @staticmethod
    def _check_call_seed(seed, allow_per_row=False):
        """The call seed as an integer tensor; `ValueError` for anything else."""
        seed = tf.convert_to_tensor(seed)
        if not seed.dtype.is_integer:
            raise ValueError(f"The call `seed` must be an integer tensor. Received: seed={seed!r}")
        rank = seed.shape.rank
        static_parts = rank is not None and rank >= 1 and seed.shape[-1] is not None and seed.shape[-1] >= 1
        if rank == 0 or (rank == 1 and static_parts) or (allow_per_row and rank == 2 and static_parts):
            return seed
        per_row = " or a 2-D [batch, k] tensor of per-row seeds" if allow_per_row else ""
        raise ValueError(
            "The call `seed` must be an integer scalar or a 1-D integer tensor of static "
            f"length, e.g. (epoch, index){per_row}. Received: seed={seed!r}"
        )

    def stateless_key(self, seed):
        """`(layer seed, seed_salt)` with every element of the call `seed` (an int scalar or a
        1-D int tensor of static length) folded in: a `(2,)` int64 Philox key."""
        seed = self._check_call_seed(seed)
        parts = [seed] if seed.shape.rank == 0 else tf.unstack(seed, num=seed.shape[0])
        key = tf.constant([self.seed, self.seed_salt], dtype=tf.int64)
        for part in parts:
            key = tf.random.experimental.stateless_fold_in(key, tf.cast(part, tf.int64), alg=RNG_ALG)
        return key

    def batch_seeds(self, seed, num=1):
        """`num` `(2,)` int64 stateless keys for one call on a whole batch.

        `seed=None`: drawn from the layer's generator (`make_seeds(num)`); otherwise the
        `stateless_key(seed)` split in `num` (`tf.random.experimental.stateless_split`).
        """
        if seed is None:
            seeds = self._generator.make_seeds(num)
            return [seeds[:, i] for i in range(num)]
        keys = tf.random.experimental.stateless_split(self.stateless_key(seed), num=num, alg=RNG_ALG)
        return [keys[i] for i in range(num)]

    def row_seeds(self, seed, nrows):
        """Per-row `(2,)` int64 keys, `[nrows, 2]`: `fold_in(key, r)` for row r, with `key` drawn
        from the generator (`seed=None`) or `stateless_key(seed)`; with per-row seeds
        (`[nrows, k]`), `fold_in(stateless_key(seed[r]), 0)`."""
        if seed is None:
            return _fold_row_index(self._generator.make_seeds(1)[:, 0], nrows)
        seed = self._check_call_seed(seed, allow_per_row=True)
        if seed.shape.rank < 2:
            return _fold_row_index(self.stateless_key(seed), nrows)
        with tf.control_dependencies(
            [tf.debugging.assert_equal(
                tf.shape(seed, out_type=tf.int64)[0], tf.cast(nrows, tf.int64),
                message="per-row call seeds must have one row per input row",
            )]
        ):
            seed = tf.identity(seed)
        return tf.map_fn(
            lambda s: _fold_row_index(self.stateless_key(s), 1)[0],
            seed,
            fn_output_signature=tf.TensorSpec([2], tf.int64),
        )

    # ------------------------------------------------------------------ subclass hooks

    def augment_row(self, token_ids, selectable, seed):
        """One sentence: 1-D `token_ids`, bool `selectable` of the same length, a `(2,)` int64
        stateless key -> 1-D token ids of the same dtype. Unselectable ids must be kept."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `augment_row` or `augment_batch`."
        )

    def augment_batch(self, token_ids, selectable, seed):
        """A ragged `[batch, None]` batch -> ragged batch. `selectable` is a ragged bool tensor of
        the same row lengths; `seed` the call seed as given. Default: `augment_row` on every row
        with its key from `row_seeds` (`tf.map_fn`)."""
        keys = self.row_seeds(seed, token_ids.nrows(out_type=tf.int64))
        out = tf.map_fn(
            lambda args: self.augment_row(*args),
            (token_ids, selectable, keys),
            fn_output_signature=tf.RaggedTensorSpec(shape=[None], dtype=token_ids.dtype, ragged_rank=0),
        )
        if not isinstance(out, tf.RaggedTensor):  # map_fn over zero rows
            out = tf.RaggedTensor.from_tensor(out)
        return out.with_row_splits_dtype(token_ids.row_splits.dtype)

    # ------------------------------------------------------------------ call

    def selectable_mask(self, values, padded):
        """Bool mask over the flat `values`: not an unselectable id (nor `0` when `padded`)."""
        ids = list(self.unselectable_token_ids) + ([0] if padded else [])
        if not ids:
            return tf.ones_like(values, dtype=tf.bool)
        table = tf.constant(ids, dtype=values.dtype)
        return tf.logical_not(tf.reduce_any(tf.equal(values[:, None], table[None, :]), axis=-1))

    def check_dtype(self, x):
        if x.dtype not in (tf.int32, tf.int64):
            raise ValueError(
                f"{type(self).__name__} expects int32/int64 token ids. Received dtype={x.dtype.name}"
            )

    def call(self, inputs, seed=None):
        with tf.device("cpu"):
            x = to_tensor(inputs)
            self.check_dtype(x)
            return self.call_ids(x, seed)

    def call_ids(self, x, seed):
        """Int token ids of any accepted kind -> the augmented ids, same kind and rank."""
        rank = x.shape.rank
        if isinstance(x, tf.RaggedTensor):
            if rank != 2 or x.ragged_rank != 1:
                raise ValueError(
                    "Ragged token ids must have shape [batch, None]. "
                    f"Received: shape={x.shape}, ragged_rank={x.ragged_rank}"
                )
            batch, padded = x, False
        elif rank == 1:
            batch, padded = tf.RaggedTensor.from_tensor(x[None, :]), False
        elif rank == 2:
            # Dense padded batch: strip trailing padding, re-pad the result to the input width.
            batch, padded = tf.RaggedTensor.from_tensor(x, padding=tf.constant(0, x.dtype)), True
        else:
            raise ValueError(f"Token ids must be a 1-D or 2-D tensor. Received: shape={x.shape}")
        selectable = batch.with_values(self.selectable_mask(batch.values, padded))
        out = self.augment_batch(batch, selectable, seed)
        if isinstance(x, tf.RaggedTensor):
            return out
        if rank == 1:
            return out.values
        width = tf.shape(x, out_type=tf.int64)[1]
        dense = out.to_tensor(default_value=tf.constant(0, x.dtype), shape=tf.stack([-1, width]))
        dense.set_shape(x.shape)
        return dense

    # ------------------------------------------------------------------ keras

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "unselectable_token_ids": list(self.unselectable_token_ids),
                "seed": self.seed,
            }
        )
        return config
