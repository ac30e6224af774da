"""`HashDropout`: `keras.layers.Dropout` with a counter-based hash instead of Philox.

Dropout is SimCSE's only augmentation, so every training step draws one random number per
activation of every dropout site: for a 6-layer, 384-wide BERT on 2 x 64 sentences of 32 tokens,
19 sites x 1.57 M = 30 M numbers. Keras draws them with `tf.random.stateless_uniform` (Philox
4x32-10). TensorFlow's own Philox kernel is fast, but inside an XLA-compiled step on CPU, Philox
is expanded into HLO that runs single-threaded at ~16 ms per 1.57 M numbers: ~0.28 s of a
~1.5 s all-MiniLM-L6-v2 training step (measured with the TF profiler, 2 cores).

`HashDropout` draws each element's 32 random bits as a keyed integer hash of its position,
`mix(mix(i * 0x9E3779B9 + k0) ^ k1)`, where (k0, k1) are mixed from a fresh seed from the layer's
`SeedGenerator` at every call (as Keras' own dropout draws one) and `mix` is a bijective 32-bit
avalanche mixer (xor-shift-multiply; shifts 16/15/15 and multipliers 0x21f0aaad, 0x735a2d97,
a low-bias 2-multiply 32-bit hash from Chris Wellons' hash-prospector). The ~20 integer
operations per element vectorize in one fused XLA loop: ~1.5 ms per 1.57 M numbers.
An element is kept when its bits are >= round(rate * 2**32), so the drop probability equals
`rate` to 2**-32, and kept values are scaled by 1 / (1 - rate), as in `keras.layers.Dropout`.
Masks are a pure function of (seed, position) (`hash_dropout` gives the same mask under XLA,
in graph mode and eagerly); the layer only uses it under XLA (see `HashDropout`).

The masks differ from those Keras would draw for the same seed (a different generator), not in
distribution; tests check the keep rate, independence between calls and between neighbours.

Row-addressed masks (`dropout_rows`). Because a mask is a function of (seed, flat position), the
mask of row r of a batch can be drawn without drawing the batch: inside `dropout_rows(offset)`
every `HashDropout` call treats its input as rows `offset, offset + 1, ...` of a larger batch and
always hashes (in or out of XLA). The cached large-batch step (`tf_esimcse.models.cached_step`) encodes a
batch in mini-batches this way, with the seed generators rewound to the same state for every
mini-batch, and so draws bit for bit the masks one forward pass of the whole batch draws.
"""
import contextlib
import threading

import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.private_apis import in_xla_context  # noqa: F401 (re-exported)

_GOLDEN = 0x9E3779B9
_M1 = 0x21F0AAAD
_M2 = 0x735A2D97


def _mix32(x):
    """Bijective 32-bit avalanche mixer (xor-shift-multiply) on a uint32 tensor."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(_M1, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(_M2, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))


def _seed_words(seed):
    """Two uint32 keys from a `(2,)` int seed, each depending on both seed words."""
    seed = tf.cast(tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), 0xFFFFFFFF), tf.uint32)
    key0 = _mix32(tf.bitwise.bitwise_xor(seed[0], _mix32(seed[1] + tf.constant(_GOLDEN, tf.uint32))))
    key1 = _mix32(seed[1] + key0)
    return key0, key1


def hash_random_bits(shape, seed, row_offset=0):
    """uint32 random bits of `shape`: a keyed hash of each element's flat position.

    Args:
        shape: a 1-D int tensor or list, the output shape.
        seed: an int tensor of shape `(2,)` (the key); different seeds give independent bits.
        row_offset: int or int scalar tensor. The bits are those of rows `row_offset ...` of a
            larger tensor of the same trailing shape (the position counts from
            `row_offset * prod(shape[1:])`). Defaults to `0`.
    """
    key0, key1 = _seed_words(seed)
    shape_t = tf.cast(shape, tf.int32)
    size = tf.reduce_prod(shape_t)
    counter = tf.cast(tf.range(size), tf.uint32)
    if not (isinstance(row_offset, int) and row_offset == 0):
        row_size = tf.cast(tf.reduce_prod(shape_t[1:]), tf.int64)
        start = tf.bitwise.bitwise_and(tf.cast(row_offset, tf.int64) * row_size, 0xFFFFFFFF)
        counter = counter + tf.cast(start, tf.uint32)  # wraps mod 2**32, as the full counter does
    x = _mix32(counter * tf.constant(_GOLDEN, tf.uint32) + key0)
    x = _mix32(tf.bitwise.bitwise_xor(x, key1))
    return tf.reshape(x, shape)


def hash_dropout(inputs, rate, seed, row_offset=0):
    """Inverted dropout of `inputs` at `rate` with masks from `hash_random_bits(seed, row_offset)`."""
    if rate <= 0.0:
        return inputs
    if rate >= 1.0:
        return tf.zeros_like(inputs)
    threshold = min(int(round(rate * 2**32)), 2**32 - 1)
    keep = hash_random_bits(tf.shape(inputs), seed, row_offset) >= tf.constant(threshold, tf.uint32)
    scale = tf.cast(1.0 / (1.0 - rate), inputs.dtype)
    return tf.where(keep, inputs * scale, tf.zeros_like(inputs))


_ROWS = threading.local()


@contextlib.contextmanager
def dropout_rows(row_offset=0):
    """Inside this context, every `HashDropout` hashes (in or out of XLA) and masks its input as
    rows `row_offset, row_offset + 1, ...` of a larger batch (`hash_random_bits`' `row_offset`).

    Read when a layer is called (or traced), per thread: `tf.distribute` replicas each enter their
    own. `row_offset` may be a tensor (e.g. a `tf.while_loop` counter).
    """
    previous = getattr(_ROWS, "offset", None)
    _ROWS.offset = row_offset
    try:
        yield
    finally:
        _ROWS.offset = previous


def random_states(model):
    """The state variables of every random-seed generator in `model` (each dropout layer's), in a
    fixed order: its variables that are not weights. The cached step rewinds an encoder's to
    replay its masks; `ContrastiveModel` saves its own with the weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def current_row_offset():
    """The `dropout_rows` offset in force in this thread, or `None` outside the context."""
    return getattr(_ROWS, "offset", None)


@tf_esimcse_export("layers.HashDropout")
class HashDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` drawing its masks with `hash_random_bits` inside XLA.

    Same arguments and config as `keras.layers.Dropout`. Only inside an XLA-compiled function
    (where Philox is slow) does it hash; eagerly and in plain graph mode TensorFlow's own Philox
    kernel is faster than the unfused hash (~5 ms against ~12 ms per 1.57 M on 2 cores), so it
    runs Keras' dropout there, as it does with a `noise_shape`.

    Inside `dropout_rows(offset)` it always hashes, with its input's rows addressed from `offset`
    (what the cached large-batch step needs to replay masks); a `noise_shape` is not supported
    there.
    """

    def call(self, inputs, training=False):
        offset = current_row_offset()
        if offset is not None and training and self.rate > 0:
            if self.noise_shape is not None:
                raise ValueError(f"{self.name}: dropout_rows (the cached step's replayed masks) does not support a "
                                 "noise_shape.")
            return hash_dropout(inputs, self.rate, self.seed_generator.next(), row_offset=offset)
        if not training or self.rate == 0 or self.noise_shape is not None or not in_xla_context():
            return super().call(inputs, training=training)
        return hash_dropout(inputs, self.rate, self.seed_generator.next())

