"""SentencePreprocessor: raw strings -> int32 {token_ids, padding_mask}, for one sentence each."""
import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope

from tf_esimcse.api_export import tf_esimcse_export


@tf_esimcse_export("layers.SentencePreprocessor")
class SentencePreprocessor(keras.layers.Layer):
    """Tokenizes sentences and packs them as `[CLS] tokens [SEP] [PAD]...` for a BERT encoder.

    The two halves are exposed separately so that augmentations that act on token ids (such
    as ESimCSE's `WordRepetition`) run between them, inside `tf.data`:
    `tokenize(strings) -> ragged ids` and `pack(ragged ids) -> {"token_ids", "padding_mask"}`.
    Outputs are int32 (no strings or bools reach a model under a `tf.distribute` strategy).

    Args:
        tokenizer: a keras-hub `BertTokenizer` (or any WordPiece tokenizer with
            `cls_token_id`, `sep_token_id`, `pad_token_id`).
        sequence_length: int. Length after packing, special tokens included; longer sentences
            are truncated. Defaults to `32` (SimCSE's `max_seq_length`).

    Examples:
    ```python
    pre = SentencePreprocessor(tokenizer, sequence_length=32)
    ds = tf.data.Dataset.from_tensor_slices(["a sentence", "another one"]).batch(2).map(pre)
    ```
    """

    def __init__(self, tokenizer, sequence_length=32, **kwargs):
        super().__init__(**kwargs)
        if int(sequence_length) < 3:
            raise ValueError(f"sequence_length must be at least 3, got {sequence_length!r}.")
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=self.sequence_length,
            start_value=tokenizer.cls_token_id,
            end_value=tokenizer.sep_token_id,
            pad_value=tokenizer.pad_token_id,
            return_padding_mask=True,
        )
        self.built = True

    @property
    def special_token_ids(self):
        t = self.tokenizer
        return sorted({int(t.cls_token_id), int(t.sep_token_id), int(t.pad_token_id)})

    def tokenize(self, sentences):
        """Strings -> token ids (ragged for a batch), truncated so that [CLS]/[SEP] still fit."""
        if tf.executing_eagerly():
            # keras-hub tokenizers run a pure-Python path when called eagerly (returning lists);
            # the TF-Text graph path is the one tf.data, serving and our models use.
            return self._eager_tokenize(tf.convert_to_tensor(sentences))
        return self._tokenize(sentences)

    def _tokenize(self, sentences):
        with no_convert_scope():
            ids = self.tokenizer(sentences)
        return ids[..., : self.sequence_length - 2]

    @tf.function(reduce_retracing=True)
    def _eager_tokenize(self, sentences):
        return self._tokenize(sentences)

    def pack(self, token_ids, sequence_length=None):
        """Token ids without specials -> int32 dict with [CLS]/[SEP] added and padding."""
        with no_convert_scope():
            token_ids, mask = self.packer(token_ids, sequence_length=sequence_length)
        return {"token_ids": tf.cast(token_ids, tf.int32), "padding_mask": tf.cast(mask, tf.int32)}

    def call(self, sentences):
        return self.pack(self.tokenize(sentences))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("tokenizer"), dict):
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def trim_to_longest(batch):
    """Cut the padding columns that no sentence in the batch uses (dynamic padding).

    `batch` is a dict with `token_ids` and `padding_mask` (batch, length); returns the same dict
    with length = the longest sentence in the batch. Numerically a no-op for the encoder.
    """
    longest = tf.reduce_max(tf.reduce_sum(batch["padding_mask"], axis=1))
    return {k: v[:, :longest] for k, v in batch.items()}
