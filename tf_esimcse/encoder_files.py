"""The on-disk format of a `SentenceEncoder`: what `save_pretrained` writes and `from_pretrained` reads.

A saved encoder is a directory holding

* a standard keras-hub `BertBackbone` preset (``config.json``, ``metadata.json``,
  ``model.weights.h5``), written by `keras_hub.models.BertBackbone.save_to_preset` through
  `tf_esimcse.backbones.to_keras_hub_backbone`: `keras_hub.models.BertBackbone.from_preset(dir)`
  loads it in a process without tf_esimcse;
* the tokenizer, as a keras-hub `BertTokenizer` (``tokenizer.json`` and ``assets/``);
* ``tf_esimcse.json``: what keras-hub's files have no place for (the feed-forward activation, the
  pooler, the training truncation length, the embedding size `encode()` returns when it is not the
  full one: ``truncate_dim``) and a format tag;
* ``pooler.weights.h5``: the MLP head's weights, for the `cls` pooler only;
* ``README.md``: the model card (`tf_esimcse.model_card`): the run's results when the directory is
  a recipe run's `model/`, else a minimal card saying that no results are recorded with it.

`from_pretrained` reads such a directory, a Hugging Face BERT directory, a keras-hub preset
(directory or name) or a directory written by an earlier tf_esimcse, all through
`tf_esimcse.backbones.load_backbone`.
"""
import json
import pathlib

import keras
import keras_hub

from tf_esimcse.atomic_files import replace_directory
from tf_esimcse.backbones import ENCODER_CONFIG_FILE
from tf_esimcse.backbones import load_backbone
from tf_esimcse.backbones import resolve_source
from tf_esimcse.backbones import to_keras_hub_backbone
from tf_esimcse.errors import ModelLoadError, ModelSaveError
from tf_esimcse.layers.pooler import check_pooler_type
from tf_esimcse.layers.pooler import pooler_needs_hidden_states
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor
from tf_esimcse.model_card import CARD_FILE, render_model_card
from tf_esimcse.models.keras_hub_encoder import KerasHubEncoder
from tf_esimcse.truncation import check_dim

POOLER_WEIGHTS_FILE = "pooler.weights.h5"
ST_CONFIG_FILE = "config_sentence_transformers.json"  # a sentence-transformers folder's own settings
FORMAT = "tf_esimcse/1"


def default_pooler_for(location):
    """The pooler a checkpoint was trained for: ours (tf_esimcse.json), sentence-transformers'
    1_Pooling/config.json (mean -> avg, cls -> cls_before_pooler), else SimCSE's release
    default `cls_before_pooler`."""
    path = pathlib.Path(location)
    ours = path / ENCODER_CONFIG_FILE
    if ours.is_file():
        return json.loads(ours.read_text()).get("pooler_type", "cls_before_pooler")
    st = path / "1_Pooling" / "config.json"
    if st.is_file():
        cfg = json.loads(st.read_text())
        if cfg.get("pooling_mode_mean_tokens"):
            return "avg"
        if cfg.get("pooling_mode_cls_token"):
            return "cls_before_pooler"
    return "cls_before_pooler"


def saved_truncate_dim(location):
    """`(size, file)`: the embedding size a model directory asks for, ``truncate_dim`` of our
    `tf_esimcse.json`, else of a sentence-transformers folder's ``config_sentence_transformers.json``;
    `(None, None)` when neither sets one (the full size)."""
    for name in (ENCODER_CONFIG_FILE, ST_CONFIG_FILE):
        path = pathlib.Path(location) / name
        if path.is_file():
            value = _read_json(path).get("truncate_dim")
            if value is not None:
                return value, path
    return None, None


def standard_tokenizer(tokenizer):
    """`tokenizer` as a plain keras-hub `BertTokenizer` (the same vocabulary and settings), so
    that its preset files load without tf_esimcse; other tokenizers are returned unchanged."""
    if isinstance(tokenizer, keras_hub.models.BertTokenizer) and type(tokenizer) is not keras_hub.models.BertTokenizer:
        config = tokenizer.get_config()
        config["name"] = "bert_tokenizer"  # fixed, as the names below: equal models, equal files
        config["vocabulary"] = tokenizer.get_vocabulary()
        return keras_hub.models.BertTokenizer.from_config(config)
    return tokenizer


def _read_json(path):
    try:
        value = json.loads(pathlib.Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e}); the model directory is damaged or was edited by hand") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def check_model_files(location):
    """Fail with the file's name when a model directory holds a damaged weights file (truncated
    by a crash or a copy) or a preset without its weights, before anything tries to load it."""
    import h5py

    location = pathlib.Path(location)
    if not location.is_dir():
        return
    for path in sorted(location.glob("*.h5")):
        try:
            with h5py.File(path, "r"):
                pass
        except OSError as e:
            raise ModelLoadError(f"{path}: damaged or truncated weights file ({e}); restore it or save the model "
                                 "again") from None
    if (location / "config.json").is_file() and (location / "metadata.json").is_file() and not any(
            location.glob("model.weights.*")):
        raise ModelLoadError(f"{location / 'model.weights.h5'}: missing (the preset has config.json and metadata.json "
                             "but no weights)")


def check_tokenizer_matches(location, tokenizer, backbone, strict):
    """A tokenizer whose ids do not index the backbone's embedding rows means the weights and the
    vocabulary come from different models: every id would look up the wrong token."""
    size = int(tokenizer.vocabulary_size())
    rows = int(backbone.vocabulary_size)
    if size > rows or (strict and size != rows):
        raise ModelLoadError(f"{location}: the tokenizer has {size} tokens but the weights have {rows} embedding rows: "
                             "the vocabulary and the weights come from different models")


# Our inference poolers that keras-hub's `BertTextEmbedder` computes the same way.
KERAS_HUB_POOLING = {"cls_before_pooler": "cls", "avg": "mean"}


def save_sentence_encoder(encoder, path):
    """Write `encoder` as a model directory at `path` (see the module docstring); returns the
    absolute path.

    The directory is written next to `path` and moved into place in one rename, so a crash
    never leaves a half-written model where a good one was.
    """
    path = pathlib.Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    try:
        return _save_sentence_encoder(encoder, path)
    except OSError as e:  # a full disk (ENOSPC), a quota, a read-only folder...
        kept = f"the model saved there before is untouched" if existed else "nothing was written there"
        raise ModelSaveError(f"{path}: could not save the encoder ({e.strerror or e}); {kept}") from e


def _save_sentence_encoder(encoder, path):
    with replace_directory(path) as tmp:
        pooler_type = encoder.inference_settings()
        if isinstance(encoder.backbone, KerasHubEncoder):  # DistilBERT, ELECTRA, DeBERTa-v3, Gemma 3...
            backbone_settings = _save_keras_hub_backbone(encoder, tmp)
        else:
            backbone_settings = _save_bert_backbone(encoder, tmp, pooler_type)
        settings = {
            "pooler_type": pooler_type,
            "first_layer": encoder.first_layer,
            "normalize": encoder.normalize,
            "sequence_length": encoder.preprocessor.sequence_length if encoder.preprocessor else None,
            **backbone_settings,
            "format": FORMAT,
        }
        if encoder.truncate_dim is not None:  # only then: untruncated saves are as before
            settings["truncate_dim"] = encoder.truncate_dim
        if getattr(encoder.backbone, "layer_norm_epsilon", 1e-12) != 1e-12:
            # RoBERTa's 1e-5: keras-hub's BertBackbone has no place for it
            settings["layer_norm_epsilon"] = encoder.backbone.layer_norm_epsilon
        if pooler_type == "cls":
            keras.saving.save_weights(encoder.pooler, str(tmp / POOLER_WEIGHTS_FILE))
        (tmp / ENCODER_CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        # The model card, from the run this save belongs to (or a minimal one): inside the rename.
        (tmp / CARD_FILE).write_text(render_model_card(path, model_files=tmp), encoding="utf-8")
    return path


def _save_bert_backbone(encoder, tmp, pooler_type):
    """A `BertEncoder` as keras-hub's `BertBackbone` preset, its tokenizer (and keras-hub's
    `BertTextEmbedder` task where it can pool as we do); returns its tf_esimcse.json settings."""
    backbone = to_keras_hub_backbone(encoder.backbone)
    backbone.name = "bert_backbone"  # not Keras' per-process counter ("bert_backbone_7")
    backbone.save_to_preset(str(tmp))
    if encoder.preprocessor is not None:
        tokenizer = standard_tokenizer(encoder.preprocessor.tokenizer)
        tokenizer.save_to_preset(str(tmp))
        pooling_mode = KERAS_HUB_POOLING.get(pooler_type)
        # keras-hub's BertTextEmbedder takes a BertTokenizer only (a RoBERTa's BPE one is saved alone).
        if pooling_mode is not None and isinstance(tokenizer, keras_hub.models.BertTokenizer):
            # keras-hub's own sentence embedder, so that `keras_hub.models.TextEmbedder
            # .from_preset(path)` pools as we do (without task.json it would mean-pool).
            length = int(encoder.inference_length or backbone.max_sequence_length)
            embedder = keras_hub.models.BertTextEmbedder(
                backbone, keras_hub.models.BertTextEmbedderPreprocessor(
                    tokenizer, sequence_length=length, name="bert_text_embedder_preprocessor"),
                pooling_mode=pooling_mode, normalize=True, name="bert_text_embedder")
            embedder.save_to_preset(str(tmp))
    return {"activation": encoder.backbone.activation}


def _save_keras_hub_backbone(encoder, tmp):
    """A `KerasHubEncoder`'s wrapped backbone and tokenizer as keras-hub's own presets; returns its
    tf_esimcse.json settings (the length encode() uses by default)."""
    encoder.backbone.backbone.save_to_preset(str(tmp))
    if encoder.preprocessor is not None:
        encoder.preprocessor.tokenizer.save_to_preset(str(tmp))
    return {"max_sequence_length": encoder.backbone.max_sequence_length}


def load_sentence_encoder(
    cls, source="default", pooler_type=None, sequence_length=None, dropout=None, normalize=True,
    mlp_only_train=False, inference_length=None, first_layer=None, fast_dropout=True, fresh_mlp=False,
    truncate_dim=None,
):
    """Build a `cls` (a `SentenceEncoder` class) from `source`; the body of
    `SentenceEncoder.from_pretrained`, whose docstring describes the arguments."""
    kind, location = resolve_source(source)
    settings = {}
    if kind != "preset_name":
        check_model_files(location)
    if kind != "preset_name" and (pathlib.Path(location) / ENCODER_CONFIG_FILE).is_file():
        settings = _read_json(pathlib.Path(location) / ENCODER_CONFIG_FILE)
    saved_encoder = "pooler_type" in settings  # by save_pretrained (a backbone preset only has "activation")
    if pooler_type is None:
        pooler_type = default_pooler_for(location) if kind != "preset_name" else "cls_before_pooler"
    check_pooler_type(pooler_type)
    if sequence_length is None:
        sequence_length = settings.get("sequence_length") or 32
    backbone, tokenizer = load_backbone(
        location if kind != "preset_name" else source,
        dropout=dropout,
        output_hidden_states=pooler_needs_hidden_states(pooler_type),
        fast_dropout=fast_dropout,
    )
    if tokenizer is not None:
        check_tokenizer_matches(location, tokenizer, backbone, strict=saved_encoder)
    encoder = cls(
        backbone,
        pooler_type=pooler_type,
        mlp_only_train=mlp_only_train,
        first_layer=first_layer if first_layer is not None else settings.get("first_layer", 1),
        normalize=normalize,
        preprocessor=SentencePreprocessor(tokenizer, sequence_length=sequence_length),
        inference_length=inference_length,
        truncate_dim=truncate_dim,
    )
    if truncate_dim is None and kind != "preset_name":
        saved, source_file = saved_truncate_dim(location)
        if saved is not None:
            encoder.truncate_dim = check_dim(saved, encoder.embedding_dim, name=f"{source_file}: truncate_dim")
    weights = pathlib.Path(location) / POOLER_WEIGHTS_FILE
    if pooler_type == "cls" and not fresh_mlp:
        if kind != "preset_name" and weights.is_file():
            keras.saving.load_weights(encoder.pooler, str(weights))
        elif saved_encoder and not mlp_only_train:
            raise ModelLoadError(f"{location}: pooler 'cls' needs {POOLER_WEIGHTS_FILE}, which is missing.")
        elif not mlp_only_train and not saved_encoder and getattr(encoder.backbone, "pooled_dense", None) is not None:
            # A Hugging Face / keras-hub checkpoint: its BERT pooler (dense + tanh on [CLS]) is
            # the "cls" head; released SimCSE models store their MLP there. Training
            # (fresh_mlp, or mlp_only_train) keeps SimCSE's freshly initialised MLP instead.
            encoder.pooler.mlp.set_weights(encoder.backbone.pooled_dense.get_weights())
        elif not mlp_only_train and not saved_encoder:
            # A keras-hub backbone without a pooler layer (DistilBERT, DeBERTa-v3, Gemma 3): no
            # head to evaluate with; a random one would give meaningless vectors without a word.
            raise ModelLoadError(
                f"{location}: pooler 'cls' needs a trained MLP head and this "
                f"{type(getattr(encoder.backbone, 'backbone', encoder.backbone)).__name__} checkpoint has none: "
                "pass fresh_mlp=True to train a new one (the recipes do), or use pooler cls_before_pooler or avg.")
    return encoder
