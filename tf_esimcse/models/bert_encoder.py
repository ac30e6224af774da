"""`BertEncoder`: the BERT network of tf_esimcse, on public Keras and keras-hub API only.

It computes what keras-hub's `BertBackbone` and Hugging Face's `BertModel` compute (token +
position + segment embeddings, LayerNorm, post-LayerNorm transformer blocks, BERT's tanh pooler
on [CLS]) with the same weights, named as keras-hub names them, plus what sentence embeddings
need:

* a configurable feed-forward activation (Hugging Face BERT checkpoints use the exact erf GELU,
  ``hidden_act="gelu"``; keras-hub's `BertBackbone` hard-codes the tanh approximation, which
  moves all-MiniLM-L6-v2's outputs by ~1e-3);
* every layer's hidden states on request (the `avg_top2` and `avg_first_last` poolers);
* the speed paths of `tf_esimcse.layers.transformer_layer.BertTransformerLayer` (one-matmul
  projections, hash dropout under XLA) and a [CLS]-only last layer (`first_token_output`);
* DiffCSE's discriminator input (`call_with_first_token_embedding`).

Its weights are copied by name from and to keras-hub's `BertBackbone` here
(`from_keras_hub_backbone`, `to_keras_hub_backbone`): that is how it is loaded and saved.
Finding and reading a checkpoint is `tf_esimcse.checkpoint_sources`; the tokenizer and
`load_backbone` are `tf_esimcse.backbones`.
"""
import json
import pathlib

import keras
import keras_hub

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.checkpoint_sources import BERT_ARGS
from tf_esimcse.checkpoint_sources import ENCODER_CONFIG_FILE
from tf_esimcse.checkpoint_sources import load_keras_hub_backbone
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.layers.transformer_layer import BertTransformerLayer
from tf_esimcse.layers.transformer_layer import bert_activation
from tf_esimcse.layers.transformer_layer import bert_kernel_initializer
from tf_esimcse.layers.transformer_layer import dropout_layer


class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings, as BERT's: one `(max_sequence_length, hidden_dim)`
    weight named `embeddings`, the first `length` rows of which are broadcast over the batch.

    Call arguments:
        inputs: a tensor `(batch, length, hidden_dim)` (the token embeddings); only its shape is
            read.

    Returns:
        A tensor of the shape of `inputs`.
    """

    def __init__(self, sequence_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer or bert_kernel_initializer())

    def build(self, inputs_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.sequence_length, inputs_shape[-1]), initializer=self.initializer,
        )

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        embeddings = keras.ops.convert_to_tensor(self.embeddings)
        embeddings = keras.ops.slice(embeddings, (0, 0), (shape[-2], shape[-1]))
        return keras.ops.broadcast_to(embeddings, shape)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "sequence_length": self.sequence_length,
            "initializer": keras.initializers.serialize(self.initializer),
        })
        return config


@tf_esimcse_export("BertEncoder")
class BertEncoder(keras_hub.models.Backbone):
    """A BERT encoder with a configurable activation, optional hidden states and speed paths.

    The same network and weight names as keras-hub's `BertBackbone` (see
    `from_keras_hub_backbone` / `to_keras_hub_backbone` (below) to convert between
    the two), built from `BertTransformerLayer` blocks.

    Args:
        vocabulary_size: int. The size of the token vocabulary.
        num_layers: int. The number of transformer layers.
        num_heads: int. The number of attention heads per layer.
        hidden_dim: int. The size of the transformer hidden state.
        intermediate_dim: int. The feed-forward inner size.
        dropout: float. Dropout on embeddings, attention and feed-forward. Defaults to `0.1`.
        max_sequence_length: int. The number of position embeddings. Defaults to `512`.
        num_segments: int. The number of segment (token type) ids. Defaults to `2`.
        activation: str. `"gelu"` (exact, as Hugging Face BERT), `"gelu_approximate"` (tanh,
            as keras-hub and Google's BERT) or `"relu"`. Defaults to `"gelu"`.
        output_hidden_states: bool. If `True`, also output `"hidden_states"`: a tensor of shape
            `(num_layers + 1, batch, length, hidden_dim)`, the embedding output followed by each
            layer's output (Hugging Face's `hidden_states` order). Defaults to `False`.
        fast_dropout: bool. If `True`, dropout masks are drawn with a counter-based hash inside
            XLA-compiled steps (`tf_esimcse.layers.hash_dropout.HashDropout`; XLA's Philox costs
            ~0.25 s of a ~1.5 s MiniLM step on 2 CPU cores); the same rates and scaling,
            different random streams. `False` keeps Keras' Philox dropout everywhere.
            Defaults to `True`.
        layer_norm_epsilon: float. The epsilon of every LayerNorm: `1e-12` as BERT, `1e-5` as
            RoBERTa (its Hugging Face ``layer_norm_eps``). Defaults to `1e-12`.
        dtype: string or `keras.mixed_precision.DTypePolicy`. The dtype policy of the layers.

    Call arguments:
        A dict with `"token_ids"`, `"segment_ids"` and `"padding_mask"`, int tensors of shape
        `(batch, length)`.

    Returns:
        A dict with `"sequence_output"` `(batch, length, hidden_dim)`, `"pooled_output"`
        `(batch, hidden_dim)` (BERT's own tanh pooler on [CLS]) and, if requested,
        `"hidden_states"`.

    Example:
    ```python
    encoder = tf_esimcse.BertEncoder(
        vocabulary_size=30522, num_layers=6, num_heads=12, hidden_dim=384,
        intermediate_dim=1536, activation="gelu",
    )
    ids = np.array([[101, 2023, 2003, 102, 0]], "int32")
    outputs = encoder({"token_ids": ids, "segment_ids": np.zeros_like(ids),
                       "padding_mask": (ids != 0).astype("int32")})
    outputs["sequence_output"].shape  # (1, 5, 384)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.1,
        max_sequence_length=512,
        num_segments=2,
        activation="gelu",
        output_hidden_states=False,
        fast_dropout=True,
        layer_norm_epsilon=1e-12,
        dtype=None,
        **kwargs,
    ):
        bert_activation(activation)  # fail early on an unknown name
        # === Layers === (keras-hub BertBackbone's names and order)
        self.token_embedding = keras.layers.Embedding(
            input_dim=vocabulary_size, output_dim=hidden_dim,
            embeddings_initializer=bert_kernel_initializer(), dtype=dtype, name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            sequence_length=max_sequence_length, initializer=bert_kernel_initializer(),
            dtype=dtype, name="position_embedding",
        )
        self.segment_embedding = keras.layers.Embedding(
            input_dim=num_segments, output_dim=hidden_dim,
            embeddings_initializer=bert_kernel_initializer(), dtype=dtype, name="segment_embedding",
        )
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            axis=-1, epsilon=layer_norm_epsilon, dtype=dtype, name="embeddings_layer_norm"
        )
        self.embeddings_dropout = dropout_layer(dropout, fast_dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            BertTransformerLayer(
                num_heads=num_heads, intermediate_dim=intermediate_dim, dropout=dropout,
                activation=activation, layer_norm_epsilon=layer_norm_epsilon, fast_dropout=fast_dropout,
                kernel_initializer=bert_kernel_initializer(), dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.pooled_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=bert_kernel_initializer(), activation="tanh",
            dtype=dtype, name="pooled_dense",
        )

        # === Functional Model ===
        token_id_input = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_id_input = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask_input = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self._embed(token_id_input, segment_id_input)
        outputs = self._encode(x, padding_mask_input, output_hidden_states=output_hidden_states)
        super().__init__(
            inputs={
                "token_ids": token_id_input,
                "segment_ids": segment_id_input,
                "padding_mask": padding_mask_input,
            },
            outputs=outputs,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.cls_token_index = 0
        self.activation = activation
        self.output_hidden_states = output_hidden_states
        self.fast_dropout = fast_dropout
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    # ------------------------------------------------------------------ forward pieces
    def _embed(self, token_ids, segment_ids, training=None, first_token_embedding=None):
        """The embedding block's output `(batch, length, hidden_dim)`."""
        tokens = self.token_embedding(token_ids)
        x = self.embeddings_add((tokens, self.position_embedding(tokens), self.segment_embedding(segment_ids)))
        x = self.embeddings_layer_norm(x)
        x = self.embeddings_dropout(x, training=training)
        if first_token_embedding is not None:
            first = keras.ops.cast(first_token_embedding, x.dtype)
            x = keras.ops.concatenate([keras.ops.expand_dims(first, axis=1), x[:, 1:, :]], axis=1)
        return x

    def _encode(self, x, padding_mask, training=None, output_hidden_states=None):
        """The transformer stack and the pooler on the embedding output `x`: the outputs dict."""
        if output_hidden_states is None:
            output_hidden_states = self.output_hidden_states
        hidden_states = [x]
        for block in self.transformer_layers:
            x = block(x, padding_mask=padding_mask, training=training)
            hidden_states.append(x)
        outputs = {"sequence_output": x, "pooled_output": self.pooled_dense(x[:, 0, :])}
        if output_hidden_states:
            outputs["hidden_states"] = keras.ops.stack(hidden_states, axis=0)
        return outputs

    @staticmethod
    def _unpack(inputs):
        token_ids = inputs["token_ids"]
        segment_ids = inputs.get("segment_ids")
        if segment_ids is None:
            segment_ids = keras.ops.zeros_like(token_ids)
        return token_ids, segment_ids, inputs["padding_mask"]

    # ------------------------------------------------------------------ public entry points
    def first_token_output(self, inputs, training=False):
        """`sequence_output[:, :1]` (the [CLS] position), without the last layer's other positions.

        Identical numbers to ``self(inputs)["sequence_output"][:, :1]``, cheaper: in the last
        transformer layer only the [CLS] query is attended, projected and fed forward (keys and
        values still come from every position; `BertTransformerLayer(first_token_only=True)`).
        For a 6-layer encoder that skips ~14 % of the forward and backward FLOPs. Used by
        `SentenceEncoder` with the `cls` poolers.

        Args:
            inputs: dict of `"token_ids"`, `"padding_mask"` and optionally `"segment_ids"`,
                int tensors of shape `(batch, length)`.
            training: bool. Dropout on or off. Defaults to `False`.

        Returns:
            A tensor of shape `(batch, 1, hidden_dim)`.
        """
        token_ids, segment_ids, padding_mask = self._unpack(inputs)
        x = self._embed(token_ids, segment_ids, training=training)
        for block in self.transformer_layers[:-1]:
            x = block(x, padding_mask=padding_mask, training=training)
        return self.transformer_layers[-1](x, padding_mask=padding_mask, training=training, first_token_only=True)

    def call_with_first_token_embedding(self, inputs, first_token_embedding, training=False):
        """The encoder's outputs with the embedding output at position 0 replaced by a vector.

        DiffCSE's discriminator input (voidism/DiffCSE, `cls_input` of its patched
        `BertModel.forward`): the embedding block runs as usual (token + position + segment
        embeddings, LayerNorm, dropout), then its output at the first ([CLS]) position is
        replaced by `first_token_embedding` (in DiffCSE, the sentence embedding of the original
        sentence), and the transformer layers run on the result. Gradients flow into
        `first_token_embedding`.

        Args:
            inputs: dict of `"token_ids"`, `"padding_mask"` and optionally `"segment_ids"`,
                int tensors of shape `(batch, length)`.
            first_token_embedding: float tensor of shape `(batch, hidden_dim)`.
            training: bool. Dropout on or off. Defaults to `False`.

        Returns:
            The dict `self(inputs)` returns (`"sequence_output"`, `"pooled_output"` and, with
            `output_hidden_states`, `"hidden_states"`, whose first entry holds the replaced
            embedding output).
        """
        token_ids, segment_ids, padding_mask = self._unpack(inputs)
        x = self._embed(token_ids, segment_ids, training=training, first_token_embedding=first_token_embedding)
        return self._encode(x, padding_mask, training=training)

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments,
            "activation": self.activation,
            "output_hidden_states": self.output_hidden_states,
            "fast_dropout": self.fast_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        })
        return config

    def with_settings(self, **overrides):
        """A new `BertEncoder` with some settings changed and this one's weights.

        Args:
            **overrides: constructor arguments to change, typically `dropout`, `activation`,
                `output_hidden_states` or `fast_dropout` (the shapes must stay the same).

        Returns:
            A new `BertEncoder` (new variables) holding a copy of this one's weights.
        """
        config = self.get_config()
        config.pop("name", None)
        config.update(overrides)
        other = BertEncoder.from_config(config)
        other.set_weights(self.get_weights())
        return other

    @classmethod
    def from_preset(cls, preset, dropout=None, output_hidden_states=False, fast_dropout=True):
        """Load a `BertEncoder` from a Hugging Face BERT directory, a keras-hub preset (directory
        or name) or a directory written by `save_to_preset` / `SentenceEncoder.save_pretrained`.

        Reads the checkpoint as a keras-hub `BertBackbone` and copies its weights by name
        (`tf_esimcse.checkpoint_sources.load_keras_hub_backbone` and `from_keras_hub_backbone`).

        Args:
            preset: str or path. See `tf_esimcse.backbones.load_backbone`.
            dropout: float or None. Override the checkpoint's dropout rate.
            output_hidden_states: bool. Also output all hidden states. Defaults to `False`.
            fast_dropout: bool. Hash dropout under XLA (`True`, default) or Keras' Philox.

        Returns:
            A `BertEncoder`.
        """
        bert, activation = load_keras_hub_backbone(preset)
        return from_keras_hub_backbone(
            bert, activation=activation, dropout=dropout, output_hidden_states=output_hidden_states,
            fast_dropout=fast_dropout,
        )

    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Save as a standard keras-hub `BertBackbone` preset, loadable without tf_esimcse.

        The weights are written by `keras_hub.models.BertBackbone.save_to_preset` (through
        `to_keras_hub_backbone`); the settings keras-hub's `BertBackbone`
        has no place for (the activation) are recorded in `tf_esimcse.json`, which
        `tf_esimcse.backbones.load_backbone` reads back.

        Args:
            preset_dir: str or path. The preset directory.
            max_shard_size: int or float. See `keras_hub.models.Backbone.save_to_preset`.
        """
        save_backbone_preset(self, preset_dir, max_shard_size=max_shard_size)


# --- weights by name: this network <-> keras-hub's BertBackbone ---

EMBEDDING_WEIGHT_NAMES = (
    "token_embedding/embeddings",
    "position_embedding/embeddings",
    "segment_embedding/embeddings",
    "embeddings_layer_norm/gamma",
    "embeddings_layer_norm/beta",
)
BLOCK_WEIGHT_NAMES = (
    "self_attention_layer/query/kernel",
    "self_attention_layer/query/bias",
    "self_attention_layer/key/kernel",
    "self_attention_layer/key/bias",
    "self_attention_layer/value/kernel",
    "self_attention_layer/value/bias",
    "self_attention_layer/attention_output/kernel",
    "self_attention_layer/attention_output/bias",
    "self_attention_layer_norm/gamma",
    "self_attention_layer_norm/beta",
    "feedforward_layer_norm/gamma",
    "feedforward_layer_norm/beta",
    "feedforward_intermediate_dense/kernel",
    "feedforward_intermediate_dense/bias",
    "feedforward_output_dense/kernel",
    "feedforward_output_dense/bias",
)
POOLER_WEIGHT_NAMES = ("pooled_dense/kernel", "pooled_dense/bias")


def weight_name_map(num_layers):
    """`{keras-hub BertBackbone weight name: BertEncoder weight name}` for `num_layers` layers.

    A weight's name is its variable path from its top-level layer on (e.g.
    ``"transformer_layer_0/self_attention_layer/query/kernel"``). `BertEncoder` names its layers
    and weights as keras-hub's `BertBackbone` does, so every name maps to itself; the names are
    spelled out so that a weight renamed or added on either side (a keras-hub upgrade, a change
    to `BertEncoder`) fails with its name instead of being loaded by position.
    """
    names = list(EMBEDDING_WEIGHT_NAMES)
    for i in range(num_layers):
        names += [f"transformer_layer_{i}/{name}" for name in BLOCK_WEIGHT_NAMES]
    names += POOLER_WEIGHT_NAMES
    return {name: name for name in names}


def named_weights(model):
    """`{name: variable}` of a functional model's weights, named from their top-level layer on
    (whatever name scope the model was built in)."""
    named = {}
    for layer in model.layers:
        for variable in layer.weights:
            parts = variable.path.split("/")
            start = parts.index(layer.name) if layer.name in parts else len(parts) - 1
            name = "/".join([layer.name] + parts[start + 1:])
            named[name] = variable
    return named


def copy_weights(source, target, name_map, source_label, target_label):
    """Assign each `target` weight from the `source` weight `name_map` names for it.

    Raises:
        ModelLoadError: naming the weight, if a mapped weight is missing on either side, if two
            mapped weights differ in shape, or if either model has a weight the map leaves out.
    """
    sources, targets = named_weights(source), named_weights(target)
    pairs = []
    for source_name, target_name in name_map.items():
        if source_name not in sources:
            raise ModelLoadError(f"{source_label} has no weight {source_name!r} (needed by {target_label}).")
        if target_name not in targets:
            raise ModelLoadError(
                f"{target_label} has no weight {target_name!r} (for {source_label}'s {source_name!r})."
            )
        a, b = sources[source_name], targets[target_name]
        if tuple(a.shape) != tuple(b.shape):
            raise ModelLoadError(
                f"weight {source_name!r} has shape {tuple(a.shape)} in {source_label} but "
                f"{target_name!r} has shape {tuple(b.shape)} in {target_label}."
            )
        pairs.append((a, b))
    for label, names, mapped in (
        (source_label, sources, set(name_map)), (target_label, targets, set(name_map.values()))
    ):
        unmapped = sorted(set(names) - mapped)
        if unmapped:
            raise ModelLoadError(f"{label} has weights with no counterpart: {unmapped}.")
    for a, b in pairs:
        b.assign(keras.ops.cast(keras.ops.convert_to_tensor(a), b.dtype))


@tf_esimcse_export("from_keras_hub_backbone")
def from_keras_hub_backbone(
    bert_backbone, activation="gelu", dropout=None, output_hidden_states=False, fast_dropout=True,
    layer_norm_epsilon=1e-12,
):
    """A `BertEncoder` with the architecture and the weights of a keras-hub `BertBackbone`.

    Weights are copied by name (`ModelLoadError` naming any missing or mismatched one), so the
    result does not depend on either model's weight order.

    Args:
        bert_backbone: a `keras_hub.models.BertBackbone` (e.g. from
            `keras_hub.models.BertBackbone.from_preset`).
        activation: str. The feed-forward activation of the checkpoint: `"gelu"` (exact, Hugging
            Face BERT), `"gelu_approximate"` (tanh, keras-hub's presets) or `"relu"`.
            Defaults to `"gelu"`.
        dropout: float or None. Dropout rate; `None` keeps the backbone's.
        output_hidden_states: bool. Also output all hidden states. Defaults to `False`.
        fast_dropout: bool. `BertEncoder`'s hash dropout under XLA (`True`, default) or
            Keras' Philox dropout.
        layer_norm_epsilon: float. keras-hub's `BertBackbone` fixes it at `1e-12`; a RoBERTa
            saved by tf_esimcse records its `1e-5` in ``tf_esimcse.json``. Defaults to `1e-12`.

    Returns:
        A new `BertEncoder`.

    Example:
    ```python
    bert = keras_hub.models.BertBackbone.from_preset("bert_base_en_uncased")
    encoder = from_keras_hub_backbone(bert, activation="gelu_approximate")
    ```
    """
    if not isinstance(bert_backbone, keras_hub.models.BertBackbone):
        raise TypeError(
            f"from_keras_hub_backbone takes a keras_hub.models.BertBackbone, got {type(bert_backbone).__name__}."
        )
    config = {key: bert_backbone.get_config()[key] for key in BERT_ARGS}
    if dropout is not None:
        config["dropout"] = float(dropout)
    encoder = BertEncoder(
        **config, activation=activation, output_hidden_states=bool(output_hidden_states),
        fast_dropout=bool(fast_dropout), layer_norm_epsilon=layer_norm_epsilon,
    )
    copy_weights(
        bert_backbone, encoder, weight_name_map(encoder.num_layers),
        f"keras-hub backbone {bert_backbone.name!r}", "BertEncoder",
    )
    return encoder


@tf_esimcse_export("to_keras_hub_backbone")
def to_keras_hub_backbone(bert_encoder):
    """A keras-hub `BertBackbone` with the architecture and the weights of a `BertEncoder`.

    The result is a plain keras-hub model (it can be saved with `save_to_preset` and loaded
    without tf_esimcse). keras-hub's `BertBackbone` always uses the tanh GELU: keep
    `bert_encoder.activation` alongside (as `SentenceEncoder.save_pretrained` does in
    ``tf_esimcse.json``) if it is not `"gelu_approximate"`.

    Args:
        bert_encoder: a `BertEncoder`.

    Returns:
        A new `keras_hub.models.BertBackbone` holding a copy of the weights.
    """
    if not isinstance(bert_encoder, BertEncoder):
        raise TypeError(f"to_keras_hub_backbone takes a tf_esimcse.BertEncoder, got {type(bert_encoder).__name__}.")
    backbone = keras_hub.models.BertBackbone(
        **{key: getattr(bert_encoder, key) for key in BERT_ARGS}, dtype=bert_encoder.dtype_policy
    )
    name_map = {ours: theirs for theirs, ours in weight_name_map(bert_encoder.num_layers).items()}
    copy_weights(bert_encoder, backbone, name_map, "BertEncoder", "keras-hub BertBackbone")
    return backbone


def save_backbone_preset(bert_encoder, preset_dir, max_shard_size=10):
    """Write `bert_encoder` as a standard keras-hub `BertBackbone` preset, plus its activation
    in ``tf_esimcse.json`` (merged into an existing one). `load_backbone(preset_dir)` reads both
    back; `keras_hub.models.BertBackbone.from_preset(preset_dir)` works without tf_esimcse."""
    to_keras_hub_backbone(bert_encoder).save_to_preset(str(preset_dir), max_shard_size=max_shard_size)
    path = pathlib.Path(preset_dir) / ENCODER_CONFIG_FILE
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings["activation"] = bert_encoder.activation
    if bert_encoder.layer_norm_epsilon != 1e-12:  # keras-hub's BertBackbone cannot hold it (RoBERTa: 1e-5)
        settings["layer_norm_epsilon"] = bert_encoder.layer_norm_epsilon
    path.write_text(json.dumps(settings, indent=2) + "\n")
