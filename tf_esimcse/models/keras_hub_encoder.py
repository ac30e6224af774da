"""`KerasHubEncoder`: any keras-hub text backbone other than BERT and RoBERTa, as a tf_esimcse backbone.

BERT and RoBERTa checkpoints load into our own `BertEncoder` (speed paths, hash dropout, DiffCSE's
discriminator input). Every other keras-hub text `Backbone` (DistilBERT, ELECTRA, DeBERTa-v3,
Gemma 3, ...) is wrapped as it is by `KerasHubEncoder`: the keras-hub network and its own Keras
dropout, behind the interface `SentenceEncoder` and the objectives use for a backbone (called on
``{"token_ids", "segment_ids", "padding_mask"}``, returns ``{"sequence_output"}``;
`hidden_dim`, `max_sequence_length`, `vocabulary_size`, `with_settings`, `get_config`).

DiffCSE's discriminator input (`call_with_first_token_embedding`) is the backbone cut at its first
transformer layer (`split_at_first_layer`: two functional models on the same layers). What it does
not do, each refused with one line: the poolers that read every layer's hidden states
(`avg_top2`, `avg_first_last`), the cached step (`mini_batch_size`: Keras dropout masks cannot be
replayed by row) and the ONNX / LiteRT / sentence-transformers exports.
"""
import keras
import keras_hub

from tf_esimcse.api_export import tf_esimcse_export

# The keras-hub backbone classes that load into tf_esimcse's own `BertEncoder` instead.
BERT_FAMILY_CLASSES = ("keras_hub>BertBackbone", "keras_hub>RobertaBackbone", "tf_esimcse>BertEncoder")
# The inputs a text backbone may declare (a multimodal one also declares images: refused).
TEXT_INPUTS = ("token_ids", "segment_ids", "padding_mask")
# Used when the wrapped backbone has no `max_sequence_length` (Gemma 3: rotary positions).
DEFAULT_MAX_SEQUENCE_LENGTH = 512


@tf_esimcse_export("KerasHubEncoder")
class KerasHubEncoder(keras.Model):
    """A keras-hub text backbone (not BERT/RoBERTa) as a tf_esimcse sentence-encoder backbone.

    Args:
        backbone: a keras-hub text `Backbone`, e.g. `DistilBertBackbone`, `ElectraBackbone`,
            `DebertaV3Backbone` or a text-only `Gemma3Backbone`, or its serialized config.
        max_sequence_length: int or None. The longest input `encode()` and export use by
            default. `None` (default): the backbone's own `max_sequence_length`, else `512`.

    Call arguments:
        inputs: dict of int tensors `"token_ids"`, `"padding_mask"` and optionally
            `"segment_ids"`, shape (batch, length); only those the backbone declares are passed.
        training: bool. The backbone's own Keras dropout on or off.

    Returns:
        A dict with `"sequence_output"` (batch, length, hidden_dim).

    Example:
    ```python
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
    encoder = tf_esimcse.KerasHubEncoder(backbone)
    encoder({"token_ids": ids, "padding_mask": mask})["sequence_output"]
    ```
    """

    def __init__(self, backbone, max_sequence_length=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        check_text_backbone(backbone)
        # === Layers ===
        self.backbone = backbone
        # === Config ===
        own = getattr(backbone, "max_sequence_length", None)
        self.max_sequence_length = int(max_sequence_length or own or DEFAULT_MAX_SEQUENCE_LENGTH)
        self.backbone_input_names = tuple(name for name in TEXT_INPUTS if name in backbone.input)
        self.output_hidden_states = False
        # DiffCSE's discriminator: the backbone cut at its first transformer layer's input (the
        # embedding block's output), two functional models sharing the backbone's layers.
        self.embedding_model, self.encoding_model = split_at_first_layer(backbone, self.backbone_input_names)
        # Build so that weights exist (set_weights, clones, checkpoints).
        self({"token_ids": keras.ops.ones((1, 2), "int32"), "padding_mask": keras.ops.ones((1, 2), "int32")})

    @property
    def hidden_dim(self):
        return int(self.backbone.hidden_dim)

    @property
    def vocabulary_size(self):
        size = getattr(self.backbone, "vocabulary_size", None)
        return int(size if size is not None else self.backbone.vocab_size)  # ELECTRA's name

    @property
    def dropout(self):
        return float(getattr(self.backbone, "dropout", 0.0) or 0.0)

    @property
    def pooled_dense(self):
        """The backbone's own pooler on the first token, if it has one (ELECTRA): no SimCSE pooler
        reads it, so `SentenceEncoder` freezes it."""
        return getattr(self.backbone, "pooled_dense", None)

    def backbone_inputs(self, inputs):
        """The inputs the wrapped backbone declares, from `inputs` (zero `segment_ids` if needed)."""
        backbone_inputs = {name: inputs[name] for name in self.backbone_input_names if name in inputs}
        if "segment_ids" in self.backbone_input_names and "segment_ids" not in backbone_inputs:
            backbone_inputs["segment_ids"] = keras.ops.zeros_like(inputs["token_ids"])
        return backbone_inputs

    def call(self, inputs, training=False):
        return _sequence_output(self.backbone(self.backbone_inputs(inputs), training=training))

    def call_with_first_token_embedding(self, inputs, first_token_embedding, training=False):
        """The outputs with the input of the first transformer layer (the embedding block's
        output) at position 0 replaced by `first_token_embedding` (batch, hidden_dim): DiffCSE's
        discriminator input, as `BertEncoder.call_with_first_token_embedding`. Gradients flow
        into `first_token_embedding`.

        Raises:
            ValueError: if the backbone could not be cut at its first transformer layer.
        """
        if self.encoding_model is None:
            raise ValueError(f"{type(self.backbone).__name__}: DiffCSE's discriminator needs the input of the first "
                             "transformer layer, which this backbone does not expose (no transformer_layers).")
        backbone_inputs = self.backbone_inputs(inputs)
        hidden = self.embedding_model(backbone_inputs, training=training)
        first = keras.ops.cast(first_token_embedding, hidden.dtype)[:, None, :]
        hidden = keras.ops.concatenate([first, hidden[:, 1:]], axis=1)
        outputs = self.encoding_model([hidden] + [backbone_inputs[name] for name in self.backbone_input_names],
                                      training=training)
        return _sequence_output(outputs)

    def with_settings(self, **overrides):
        """A new `KerasHubEncoder` with this one's weights and `dropout` changed (where the
        keras-hub class takes one); `output_hidden_states=True` is refused (one line)."""
        if overrides.pop("output_hidden_states", False):
            raise ValueError(f"{type(self.backbone).__name__}: the poolers that read every layer's hidden states "
                             "(avg_top2, avg_first_last) support tf_esimcse's BERT/RoBERTa encoder only; use "
                             "avg, cls or cls_before_pooler.")
        overrides.pop("fast_dropout", None)  # hash dropout is BertEncoder's; keras-hub keeps Keras dropout
        dropout = overrides.pop("dropout", None)
        if overrides:
            raise ValueError(f"KerasHubEncoder.with_settings: unknown settings {sorted(overrides)} (only dropout).")
        config = self.backbone.get_config()
        if dropout is not None:
            if "dropout" not in config:
                raise ValueError(f"{type(self.backbone).__name__} takes no dropout rate; load it without dropout=.")
            config["dropout"] = float(dropout)
        backbone = type(self.backbone).from_config(config)
        backbone.set_weights(self.backbone.get_weights())
        return KerasHubEncoder(backbone, max_sequence_length=self.max_sequence_length)

    def get_config(self):
        return {
            "name": self.name,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "max_sequence_length": self.max_sequence_length,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _sequence_output(outputs):
    return {"sequence_output": outputs["sequence_output"] if isinstance(outputs, dict) else outputs}


def split_at_first_layer(backbone, input_names):
    """`(embedding_model, encoding_model)`: two functional models on the layers of a keras-hub
    `backbone` (no new weights), cut at the hidden-state input of `backbone.transformer_layers[0]`:
    `embedding_model(inputs) -> hidden` and `encoding_model([hidden, *inputs]) -> outputs`, whose
    composition is `backbone(inputs)`. `(None, None)` when the backbone has no `transformer_layers`."""
    layers = getattr(backbone, "transformer_layers", None)
    if not layers:
        return None, None
    hidden = keras.tree.flatten(layers[0].input)[0]
    inputs = [backbone.input[name] for name in input_names]
    embedding_model = keras.Model(backbone.input, hidden, name="embedding_block")
    encoding_model = keras.Model([hidden] + inputs, backbone.output, name="transformer_layers")
    return embedding_model, encoding_model


def check_text_backbone(backbone):
    """Raise `ValueError` (one line) unless `backbone` is a keras-hub text backbone this wrapper
    takes: a `keras_hub.models.Backbone` with `token_ids` and `padding_mask` inputs and no others."""
    name = type(backbone).__name__
    if not isinstance(backbone, keras_hub.models.Backbone):
        raise ValueError(f"KerasHubEncoder wraps a keras_hub.models.Backbone, got {name}.")
    if isinstance(backbone, (keras_hub.models.BertBackbone, keras_hub.models.RobertaBackbone)):
        raise ValueError(f"{name}: BERT and RoBERTa load into tf_esimcse.BertEncoder "
                         "(tf_esimcse.backbones.load_backbone).")
    inputs = getattr(backbone, "input", None)
    if not isinstance(inputs, dict) or "token_ids" not in inputs or "padding_mask" not in inputs:
        raise ValueError(f"{name}: not a text backbone (needs token_ids and padding_mask inputs).")
    others = sorted(set(inputs) - set(TEXT_INPUTS))
    if others:
        raise ValueError(f"{name}: takes inputs {others} besides text; tf_esimcse needs a text-only backbone.")
    if not hasattr(backbone, "hidden_dim"):
        raise ValueError(f"{name}: has no hidden_dim; tf_esimcse needs a transformer text encoder.")
