"""BERT's masked-LM corruption on token ids (DiffCSE's masked view): select, then mask / replace / keep."""
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.token_augmentation import RNG_ALG
from tf_esimcse.layers.token_augmentation import TokenAugmentation
from tf_esimcse.layers.token_augmentation import check_rate


@tf_esimcse_export("layers.TokenMasking")
class TokenMasking(TokenAugmentation):
    """Selects each selectable token with probability `rate`; a selected token becomes
    `mask_token_id` with probability `mask_token_rate`, a uniformly random id in
    `[0, vocabulary_size)` with probability `random_token_rate`, and stays itself otherwise.

    This is the corruption of Hugging Face's `DataCollatorForLanguageModeling.mask_tokens` that
    DiffCSE's `train.py` uses for its masked view (`--masking_ratio 0.30`; 80 % [MASK], 10 %
    random, 10 % kept; special tokens and padding never selected): run it on the tokenizer's
    output before the packer adds [CLS]/[SEP]. The output has the input's length, so the masked
    view stays aligned with the original position by position.

    keras-hub's `MaskedLMMaskGenerator` (the same scheme, used by `recipes/pretrain_mlm.py`) is
    not used here: its draws are not stateless per call, and a resumed run must replay the masks
    of the uninterrupted one (see `TokenAugmentation` for the seeds).

    Args:
        vocabulary_size: int. Random replacements are drawn from `[0, vocabulary_size)`.
        mask_token_id: int. The [MASK] id.
        rate: float in [0, 1]. Selection probability per token. Defaults to `0.15`.
        mask_token_rate: float. Share of the selected tokens set to [MASK]. Defaults to `0.8`.
        random_token_rate: float. Share replaced by a random id. Defaults to `0.1`.
        unselectable_token_ids: list of int. Ids never selected.
        seed: int. The layer seed.
    """

    seed_salt = 0x3A5C_0B17

    def __init__(self, vocabulary_size, mask_token_id, rate=0.15, mask_token_rate=0.8, random_token_rate=0.1,
                 unselectable_token_ids=(), seed=None, **kwargs):
        rate = check_rate("rate", rate)
        mask_token_rate = check_rate("mask_token_rate", mask_token_rate)
        random_token_rate = check_rate("random_token_rate", random_token_rate)
        if mask_token_rate + random_token_rate > 1.0 + 1e-9:
            raise ValueError(f"mask_token_rate + random_token_rate must be <= 1, got {mask_token_rate} + "
                             f"{random_token_rate}.")
        if int(vocabulary_size) < 1 or not 0 <= int(mask_token_id) < int(vocabulary_size):
            raise ValueError(f"Need 0 <= mask_token_id < vocabulary_size; got {mask_token_id} and {vocabulary_size}.")
        super().__init__(unselectable_token_ids=unselectable_token_ids, seed=seed, **kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.mask_token_id = int(mask_token_id)
        self.rate = rate
        self.mask_token_rate = mask_token_rate
        self.random_token_rate = random_token_rate

    def augment_batch(self, token_ids, selectable, seed):
        select_key, kind_key, random_key = self.batch_seeds(seed, num=3)
        values = token_ids.values
        shape = tf.shape(values)
        chosen = tf.logical_and(selectable.values,
                                tf.random.stateless_uniform(shape, seed=select_key, dtype=tf.float64, alg=RNG_ALG)
                                < self.rate)
        kind = tf.random.stateless_uniform(shape, seed=kind_key, dtype=tf.float64, alg=RNG_ALG)
        to_mask = tf.logical_and(chosen, kind < self.mask_token_rate)
        to_random = tf.logical_and(chosen, tf.logical_and(kind >= self.mask_token_rate,
                                                          kind < self.mask_token_rate + self.random_token_rate))
        random_ids = tf.random.stateless_uniform(shape, seed=random_key, minval=0, maxval=self.vocabulary_size,
                                                 dtype=tf.int64, alg=RNG_ALG)
        out = tf.where(to_mask, tf.cast(self.mask_token_id, values.dtype),
                       tf.where(to_random, tf.cast(random_ids, values.dtype), values))
        return token_ids.with_values(out)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size, "mask_token_id": self.mask_token_id,
                       "rate": self.rate, "mask_token_rate": self.mask_token_rate,
                       "random_token_rate": self.random_token_rate})
        return config
