"""SimCSE's "crop k%" augmentation on token ids: keep one random contiguous span."""
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.token_augmentation import RNG_ALG
from tf_esimcse.layers.token_augmentation import TokenAugmentation
from tf_esimcse.layers.token_augmentation import check_rate

# Tolerance on `rate * N`, so that decimal rates count as written (0.29 * 100 is
# 28.999999999999996 in float64 and must give 29).
ROUNDING_TOLERANCE = 1e-9


def num_removed(rate, num_selectable):
    """`floor(rate * N)` (int64), computed in float64 with `ROUNDING_TOLERANCE`."""
    n = tf.cast(num_selectable, tf.float64)
    return tf.cast(tf.floor(rate * n + ROUNDING_TOLERANCE), tf.int64)


@tf_esimcse_export("layers.RandomCrop")
class RandomCrop(TokenAugmentation):
    """Keeps one random contiguous span of each sentence's tokens (SimCSE's "crop k%").

    With N the number of selectable tokens of a sentence (see `TokenAugmentation`), the layer
    removes `floor(rate * N)` of them and keeps the other `N - floor(rate * N)` =
    `ceil((1 - rate) * N)` as one contiguous span, whose start is uniform on
    `{0, ..., floor(rate * N)}`. Rounding: the kept length is rounded UP (at least
    `(1 - rate) * N` tokens are kept, so any sentence with N >= 1 keeps a token when rate < 1),
    and `rate * N` is computed in float64 with a 1e-9 tolerance so that decimal rates count as
    written (rate 0.29, N 100: 29 removed). Examples with rate 0.1: N = 1..9 keeps everything,
    N = 10..19 drops one token, N = 32 drops three. rate = 0 returns the input, rate = 1 keeps
    nothing.

    Unselectable ids (e.g. [CLS]/[SEP] when present) are always kept where they are; the span
    is contiguous among the selectable tokens. The layer acts on token ids (sub-words): run it
    on the tokenizer's output before the packer adds [CLS]/[SEP]. Each row draws from its own
    key (`TokenAugmentation.row_seeds`).

    Args:
        rate: float in [0, 1]. The fraction of the tokens cropped away (SimCSE's k%).
            Defaults to `0.1`.
        unselectable_token_ids: list of int. Ids always kept and not counted in N.
        seed: int. The layer seed; `None` draws one, stored in the config.

    Call arguments:
        inputs: token ids (see `TokenAugmentation`).
        seed: optional stateless call seed (see `TokenAugmentation`).

    Examples:
    ```python
    crop = RandomCrop(rate=0.5, seed=1)
    crop(tf.ragged.constant([[5, 6, 7, 8], [9, 10, 11]]), seed=(0, 1))  # e.g. [[6, 7], [10, 11]]
    ```
    """

    seed_salt = 0xC20B_0001

    def __init__(self, rate=0.1, unselectable_token_ids=(), seed=None, **kwargs):
        rate = check_rate("rate", rate)
        super().__init__(unselectable_token_ids=unselectable_token_ids, seed=seed, **kwargs)
        self.rate = rate

    def augment_row(self, token_ids, selectable, seed):
        sel = tf.cast(selectable, tf.int64)
        n = tf.reduce_sum(sel)
        removed = num_removed(self.rate, n)
        keep = n - removed
        u = tf.random.stateless_uniform([], seed=seed, dtype=tf.float64, alg=RNG_ALG)
        start = tf.minimum(tf.cast(tf.floor(u * tf.cast(removed + 1, tf.float64)), tf.int64), removed)
        rank = tf.cumsum(sel, exclusive=True)  # rank of each selectable token among them
        in_span = tf.logical_and(rank >= start, rank < start + keep)
        return tf.boolean_mask(token_ids, tf.logical_or(tf.logical_not(selectable), in_span))

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate})
        return config
