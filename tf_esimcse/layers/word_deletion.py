"""SimCSE's "word deletion k%" augmentation on token ids: delete a fixed number of tokens."""
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.random_crop import ROUNDING_TOLERANCE
from tf_esimcse.layers.token_augmentation import RNG_ALG
from tf_esimcse.layers.token_augmentation import TokenAugmentation
from tf_esimcse.layers.token_augmentation import check_rate


def num_deleted(rate, num_selectable):
    """`round(rate * N)`, halves rounded up: `floor(rate * N + 0.5)` (int64, float64 math)."""
    n = tf.cast(num_selectable, tf.float64)
    return tf.cast(tf.floor(rate * n + 0.5 + ROUNDING_TOLERANCE), tf.int64)


@tf_esimcse_export("layers.WordDeletion")
class WordDeletion(TokenAugmentation):
    """Deletes `round(rate * N)` random tokens of each sentence (SimCSE's "word deletion k%").

    With N the number of selectable tokens of a sentence (see `TokenAugmentation`), exactly
    `floor(rate * N + 0.5)` of them (the product rounded to nearest, halves UP; computed in
    float64 with a 1e-9 tolerance so that decimal rates count as written) are deleted, chosen
    uniformly without replacement; the others keep their order. Examples with rate 0.1: N = 1..4
    deletes nothing, N = 5..14 one token, N = 32 three. rate = 0 returns the input, rate = 1
    deletes every selectable token. Unselectable ids are never deleted.

    The layer acts on token ids (sub-words; SimCSE's table deletes words): run it on the
    tokenizer's output before the packer adds [CLS]/[SEP]. Each row draws from its own key
    (`TokenAugmentation.row_seeds`).

    keras-hub's `keras_hub.layers.RandomDeletion` is not used: it deletes each token
    independently with probability `rate` (a random count, only capped by `max_deletions`),
    draws from a stateful generator with no per-call stateless seed, and keeps no ids apart
    except through a skip list; the count here is fixed and the draw stateless.

    Args:
        rate: float in [0, 1]. The fraction of the tokens deleted (SimCSE's k%).
            Defaults to `0.1`.
        unselectable_token_ids: list of int. Ids never deleted and not counted in N.
        seed: int. The layer seed; `None` draws one, stored in the config.
        count: int or None. Delete exactly `min(count, N)` tokens instead of a fraction
            (`count=1`: SimCSE's "delete one word"); `rate` is then ignored. Defaults to `None`.

    Call arguments:
        inputs: token ids (see `TokenAugmentation`).
        seed: optional stateless call seed (see `TokenAugmentation`).

    Examples:
    ```python
    delete = WordDeletion(rate=0.25, seed=1)
    delete(tf.ragged.constant([[5, 6, 7, 8], [9, 10]]), seed=(0, 1))  # e.g. [[5, 7, 8], [10]]
    ```
    """

    seed_salt = 0xDE1E_7E01

    def __init__(self, rate=0.1, unselectable_token_ids=(), seed=None, count=None, **kwargs):
        rate = check_rate("rate", rate)
        if count is not None and (isinstance(count, bool) or int(count) != count or int(count) < 0):
            raise ValueError(f"`count` must be None or an integer >= 0. Received: count={count!r}")
        super().__init__(unselectable_token_ids=unselectable_token_ids, seed=seed, **kwargs)
        self.rate = rate
        self.count = None if count is None else int(count)

    def augment_row(self, token_ids, selectable, seed):
        n = tf.reduce_sum(tf.cast(selectable, tf.int64))
        if self.count is None:
            deleted = num_deleted(self.rate, n)
        else:
            deleted = tf.minimum(tf.constant(self.count, tf.int64), n)
        # A uniform `deleted`-subset of the selectable positions: the smallest i.i.d. uniform
        # keys; unselectable positions get key 2, after all of them.
        keys = tf.random.stateless_uniform(tf.shape(token_ids), seed=seed, dtype=tf.float64, alg=RNG_ALG)
        keys = tf.where(selectable, keys, tf.constant(2.0, tf.float64))
        ranks = tf.argsort(tf.argsort(keys, stable=True), stable=True)
        return tf.boolean_mask(token_ids, tf.cast(ranks, tf.int64) >= deleted)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "count": self.count})
        return config
