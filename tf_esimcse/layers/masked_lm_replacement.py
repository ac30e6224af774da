"""`MaskedLMReplacement`: SimCSE's "MLM k %" positive, k % of a sentence's tokens replaced by a
masked language model's predictions.

SimCSE's Table 1 compares dropout with discrete augmentations; its "MLM 15 %" row replaces 15 % of
the words using BERT-base's masked-LM predictions. Here, on packed word-piece batches: in each row,
`round(rate * N)` of its N ordinary tokens (at least one when N > 0; never [CLS], [SEP], padding or
other ids in `unselectable_token_ids`) are drawn uniformly (stateless, from the call seed), set to
[MASK], the generator reads the masked sentence, and each drawn token becomes the generator's most
likely token OTHER than the original one and other than a special id (taking the plain argmax would
often give the original back, i.e. no replacement). The generator is frozen and run with dropout
off; it must share the encoder's vocabulary (any keras-hub `MaskedLM`, e.g. the one
`recipes/pretrain_mlm.py` trains here).

Runs inside `tf.data` on `{token_ids, padding_mask}` batches after packing
(`tf_esimcse.data.augmentations`, `--augmentation mlm:15 --augmentation-generator <preset>`).
"""
import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.generator_vocabulary import model_inputs

_NEG = -1e9


@tf_esimcse_export("layers.MaskedLMReplacement")
class MaskedLMReplacement(keras.layers.Layer):
    """Replace `rate` of each row's ordinary tokens with a masked LM's best other token.

    Args:
        generator: a keras-hub `MaskedLM` (called with `token_ids`, `padding_mask`,
            `mask_positions`, and zero `segment_ids` when it declares them, as `BertMaskedLM`
            does and `RobertaMaskedLM` does not; returns logits `(batch, positions, vocabulary)`).
        mask_token_id: int. The tokenizer's [MASK] id.
        unselectable_token_ids: list of int. Ids never replaced and never predicted (padding,
            [CLS], [SEP], [MASK], [UNK]...).
        rate: float in [0, 1]. Fraction of each row's ordinary tokens replaced. Defaults to `0.15`.

    Call arguments:
        inputs: `{"token_ids", "padding_mask"}` int batch `(batch, length)`.
        seed: `(2,)` int tensor, the stateless key of this call.

    Returns:
        `(token_ids (batch, length), replaced (batch, length) bool)`.
    """

    def __init__(self, generator, mask_token_id, unselectable_token_ids=(0,), rate=0.15, **kwargs):
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate!r}.")
        super().__init__(**kwargs)
        self.generator = generator
        self.generator.trainable = False
        self.mask_token_id = int(mask_token_id)
        self.unselectable_token_ids = sorted({int(i) for i in unselectable_token_ids} | {self.mask_token_id})
        self.rate = float(rate)

    def call(self, inputs, seed):
        ids = tf.cast(inputs["token_ids"], tf.int32)
        real = tf.cast(inputs["padding_mask"], tf.bool)
        special = tf.reduce_any(tf.equal(ids[..., None], tf.constant(self.unselectable_token_ids, tf.int32)), axis=-1)
        selectable = tf.logical_and(real, tf.logical_not(special))
        n = tf.reduce_sum(tf.cast(selectable, tf.int32), axis=1)
        k = tf.cast(tf.round(self.rate * tf.cast(n, tf.float32)), tf.int32)
        k = tf.where(tf.logical_and(n > 0, self.rate > 0), tf.maximum(k, 1), 0)
        # A uniform random order of each row's selectable positions; the first k are replaced.
        scores = tf.random.stateless_uniform(tf.shape(ids), seed=tf.cast(seed, tf.int64))
        scores = tf.where(selectable, scores, 2.0)
        width = tf.maximum(tf.reduce_max(k), 1)
        positions = tf.argsort(scores, axis=1, stable=True)[:, :width]  # (batch, width)
        valid = tf.range(width)[None, :] < k[:, None]
        rows = tf.broadcast_to(tf.range(tf.shape(ids)[0])[:, None], tf.shape(positions))
        index = tf.stack([rows, positions], axis=-1)
        chosen = tf.scatter_nd(tf.boolean_mask(index, valid), tf.ones([tf.reduce_sum(k)], tf.bool), tf.shape(ids))
        masked = tf.where(chosen, self.mask_token_id, ids)
        logits = self.generator(model_inputs(self.generator, masked, tf.cast(real, tf.int32), mask_positions=positions),
                                training=False)
        logits = tf.cast(logits, tf.float32)
        vocabulary = tf.shape(logits)[-1]
        original = tf.gather_nd(ids, index)
        banned = tf.one_hot(original, vocabulary, on_value=True, off_value=False)
        specials = tf.reduce_any(tf.equal(tf.range(vocabulary)[:, None], tf.constant(self.unselectable_token_ids)),
                                 axis=-1)
        banned = tf.logical_or(banned, specials[None, None, :])
        prediction = tf.cast(tf.argmax(tf.where(banned, _NEG, logits), axis=-1), tf.int32)
        replaced_ids = tf.tensor_scatter_nd_update(ids, tf.boolean_mask(index, valid), tf.boolean_mask(prediction, valid))
        return tf.cast(replaced_ids, inputs["token_ids"].dtype), chosen

    def get_config(self):
        config = super().get_config()
        config.update({"generator": keras.saving.serialize_keras_object(self.generator),
                       "mask_token_id": self.mask_token_id, "unselectable_token_ids": self.unselectable_token_ids,
                       "rate": self.rate})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return cls(**config)
