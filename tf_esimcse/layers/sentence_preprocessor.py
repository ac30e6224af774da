"""SentencePreprocessor: raw strings -> int32 {token_ids, padding_mask}, for one sentence each."""
import keras
import keras_hub
import tensorflow as tf

from tf_esimcse import private_apis
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
            `cls_token_id`, `sep_token_id`, `pad_token_id`), or a keras-hub `RobertaTokenizer`
            (byte-level BPE: `<s> tokens </s> <pad>...`, from its `start_token_id`,
            `end_token_id`, `pad_token_id`), or another family's keras-hub tokenizer with those
            ids (DistilBERT, ELECTRA, DeBERTa-v3: `[CLS]`/`[SEP]`/`[PAD]`; Gemma 3:
            `<bos>`/`<eos>`/`<pad>`).
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
        # Like keras-hub preprocessing layers: accept Python strings and lists, keep tf tensors.
        private_apis.keep_input_tensors(self)
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        # Made on first use: when a saved model is loaded, the tokenizer's vocabulary (and so
        # its special token ids) is restored only after __init__ has run.
        self.packer = None
        self.built = True

    def _get_packer(self):
        if self.packer is None:
            start, end, pad = start_end_pad_ids(self.tokenizer)
            self.packer = keras_hub.layers.StartEndPacker(
                sequence_length=self.sequence_length,
                start_value=start,
                end_value=end,
                pad_value=pad,
                return_padding_mask=True,
            )
        return self.packer

    @property
    def special_token_ids(self):
        return sorted(set(start_end_pad_ids(self.tokenizer)))

    def tokenize(self, sentences):
        """Strings -> token ids (ragged for a batch), truncated so that [CLS]/[SEP] still fit."""
        if tf.executing_eagerly():
            # keras-hub tokenizers run a pure-Python path when called eagerly (returning lists);
            # the TF-Text graph path is the one tf.data, serving and our models use.
            sentences = tf.convert_to_tensor(sentences)
            if sentences.shape.rank == 0:  # one traced function for every batch; keep the rank
                return call_traced_once(self._eager_tokenize, sentences[tf.newaxis])[0]
            return call_traced_once(self._eager_tokenize, sentences)
        return self._tokenize(sentences)

    def _tokenize(self, sentences):
        # Always traced (tf.data, or `_eager_tokenize` when called eagerly): keras-hub layers
        # return TF (ragged) tensors in graph mode, unconverted.
        ids = self.tokenizer(sentences)
        return ids[..., : self.sequence_length - 2]

    @tf.function(reduce_retracing=True)
    def _eager_tokenize(self, sentences):
        return self._tokenize(sentences)

    def pack(self, token_ids, sequence_length=None):
        """Token ids without specials -> int32 dict with [CLS]/[SEP] added and padding."""
        if tf.executing_eagerly():
            # As `tokenize`: keras-hub's packer converts its outputs when called eagerly, so run
            # it traced (one function per packed length; ragged and dense inputs alike).
            if not isinstance(token_ids, (tf.Tensor, tf.RaggedTensor)):
                token_ids = tf.ragged.constant(token_ids) if isinstance(token_ids, list) else tf.convert_to_tensor(token_ids)
            return call_traced_once(self._eager_pack, token_ids, sequence_length=sequence_length)
        return self._pack(token_ids, sequence_length)

    def _pack(self, token_ids, sequence_length=None):
        token_ids, mask = self._get_packer()(token_ids, sequence_length=sequence_length)
        return {"token_ids": tf.cast(token_ids, tf.int32), "padding_mask": tf.cast(mask, tf.int32)}

    @tf.function(reduce_retracing=True)
    def _eager_pack(self, token_ids, sequence_length=None):
        return self._pack(token_ids, sequence_length)

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


def call_traced_once(function, value, **options):
    """`function(value, **options)` (a `tf.function`), traced for any batch size and length.

    Called eagerly on a batch of a new size, a `tf.function` (even with `reduce_retracing`) is
    traced once for that exact shape and a second time for a relaxed one; a keras-hub tokenizer's
    trace takes ~0.5 s (WordPiece) to ~3 s (byte-level BPE), paid twice by every new encoder's
    first `encode`. Tracing first for a shape with every dimension unknown (the same rank,
    dtype and ragged structure) makes that trace serve every later batch.
    """
    if isinstance(value, tf.RaggedTensor):
        spec = tf.RaggedTensorSpec([None] * value.shape.rank, value.dtype, value.ragged_rank, value.row_splits.dtype)
    else:
        spec = tf.TensorSpec([None] * value.shape.rank, value.dtype)
    function.get_concrete_function(spec, **options)  # a cache lookup after the first call
    return function(value, **options)


def start_end_pad_ids(tokenizer):
    """`(start, end, pad)` ids: `[CLS]`, `[SEP]`, `[PAD]` of a WordPiece tokenizer (its
    `cls_token_id`...), else `<s>`, `</s>`, `<pad>` of a byte-level BPE one (`start_token_id`...)."""
    start = getattr(tokenizer, "cls_token_id", None)
    end = getattr(tokenizer, "sep_token_id", None)
    if start is None or end is None:
        start, end = getattr(tokenizer, "start_token_id", None), getattr(tokenizer, "end_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    if start is None or end is None or pad is None:
        raise ValueError(f"{type(tokenizer).__name__} has no start/end/padding token ids (need cls_token_id, "
                         "sep_token_id and pad_token_id, or start_token_id, end_token_id and pad_token_id).")
    return int(start), int(end), int(pad)


def trim_to_longest(batch):
    """Cut the padding columns that no sentence in the batch uses (dynamic padding).

    `batch` is a dict with `token_ids` and `padding_mask` (batch, length); returns the same dict
    with length = the longest sentence in the batch. Numerically a no-op for the encoder.
    """
    # An empty batch keeps 2 columns ([CLS] [SEP]); reduce_max of nothing is INT_MIN.
    longest = tf.reduce_max(tf.concat([tf.reduce_sum(batch["padding_mask"], axis=1), [2]], axis=0))
    return {k: v[:, :longest] for k, v in batch.items()}
