"""Hugging Face RoBERTa directories, read into a `BertEncoder` and a keras-hub `RobertaTokenizer`,
and written back from them (`hf_roberta_weights`, `write_roberta_tokenizer`: the sentence-transformers
export, `tf_esimcse.st_export`).

RoBERTa is BERT's network with other conventions, all of which `BertEncoder` holds:

* positions start at ``padding_idx + 1`` (``pad_token_id`` 1, so at 2): the first
  ``padding_idx + 1`` rows of ``position_embeddings`` are never used by a right-padded batch and
  are dropped, so that `BertEncoder`'s position ``i`` reads Hugging Face's row ``i + padding_idx + 1``
  (keras-hub's RoBERTa converter does the same); `max_sequence_length` is
  ``max_position_embeddings - padding_idx - 1`` (512 for roberta-base). Padding positions, which
  Hugging Face gives the padding row, differ; every real token's state is the same;
* one token type (``type_vocab_size`` 1): its row is `BertEncoder`'s one segment row, added to every
  token as in Hugging Face (keras-hub's converter drops it, exact only when that row is zero);
* LayerNorm epsilon ``layer_norm_eps`` (1e-5), not BERT's 1e-12;
* ``<s>``, ``</s>``, ``<pad>`` as the start, end and padding ids, from a byte-level BPE tokenizer
  (``vocab.json`` + ``merges.txt``: keras-hub's `RobertaTokenizer`);
* a checkpoint may lack ``pooler.dense`` (SimCSE saves RoBERTa with `add_pooling_layer=False`;
  `RobertaForMaskedLM` has none): BERT's tanh pooler then keeps its fresh initialisation, as
  `transformers` does.

Weights are read with `safetensors` and assigned by name; a weight left over on either side, or of
another shape, is a `ModelLoadError` naming the file. A keras-hub RoBERTa preset (a
`RobertaBackbone`: no token-type row, no pooler, exact GELU, epsilon 1e-5, positions already
offset) is copied by name the same way (`from_keras_hub_roberta`): its segment row is zero. `tf_esimcse.backbones.load_backbone` calls
this module for ``model_type: roberta``; saved again, the encoder is a keras-hub `BertBackbone`
preset like any other (`tf_esimcse.json` keeps the epsilon) with the `RobertaTokenizer` beside it.
"""
import json
import pathlib

import keras
import keras_hub
import numpy as np
from safetensors.numpy import load_file

from tf_esimcse.checkpoint_sources import HF_ACTIVATIONS
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.models.bert_encoder import BertEncoder
from tf_esimcse.models.bert_encoder import named_weights

# Prefixes of the encoder's weights in RoBERTa checkpoints saved from a task model
# (`RobertaForMaskedLM`, SimCSE's `RobertaForCL`); weights under other heads are not the encoder's.
_PREFIXES = ("roberta.",)
_HEAD_PREFIXES = ("lm_head.", "mlp.", "classifier.", "generator.", "discriminator.")


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: cannot be read as JSON ({e})") from None


def roberta_encoder_settings(location):
    """`BertEncoder` constructor arguments for the RoBERTa directory `location` (its config.json)."""
    path = pathlib.Path(location) / "config.json"
    cfg = _read_json(path)
    if cfg.get("model_type") != "roberta":
        raise ModelLoadError(f"{path}: model_type {cfg.get('model_type')!r}, not 'roberta'")
    hidden_act = cfg.get("hidden_act", "gelu")
    if hidden_act not in HF_ACTIVATIONS:
        raise ModelLoadError(f"{path}: hidden_act {hidden_act!r} is not supported.")
    offset = int(cfg.get("pad_token_id", 1)) + 1
    try:
        return {
            "vocabulary_size": int(cfg["vocab_size"]),
            "num_layers": int(cfg["num_hidden_layers"]),
            "num_heads": int(cfg["num_attention_heads"]),
            "hidden_dim": int(cfg["hidden_size"]),
            "intermediate_dim": int(cfg["intermediate_size"]),
            "dropout": float(cfg.get("hidden_dropout_prob", 0.1)),
            "max_sequence_length": int(cfg["max_position_embeddings"]) - offset,
            "num_segments": int(cfg.get("type_vocab_size", 1)),
            "activation": HF_ACTIVATIONS[hidden_act],
            "layer_norm_epsilon": float(cfg.get("layer_norm_eps", 1e-5)),
        }, offset
    except KeyError as e:
        raise ModelLoadError(f"{path}: no {e.args[0]!r}") from None


def _hf_weights(location):
    """`{name without the "roberta." prefix: array}` of the encoder's weights in `location`."""
    location = pathlib.Path(location)
    index = location / "model.safetensors.index.json"
    files = sorted(set(_read_json(index)["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    weights = {}
    for name in files:
        try:
            raw = load_file(str(location / name))
        except Exception as e:  # safetensors raises several kinds; name the file in one line
            raise ModelLoadError(f"{location / name}: cannot be read as safetensors ({e})") from None
        for key, value in raw.items():
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
            if key.startswith(_HEAD_PREFIXES) or key.endswith(("position_ids", "token_type_ids")):
                continue  # a task head, or a buffer
            weights[key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")] = value
    return weights


def _weight_map(num_layers, num_heads, hidden_dim, offset):
    """`{Hugging Face name: (BertEncoder name, to_ours, to_hf)}`: `to_ours(array)` gives our layout
    (reading a checkpoint), `to_hf(array)` Hugging Face's back (writing one, `hf_roberta_weights`)."""
    head_dim = hidden_dim // num_heads

    # torch Linear [out, in] <-> EinsumDense [in, heads, head_dim] (query, key, value)
    in_heads = (lambda w: w.T.reshape(hidden_dim, num_heads, head_dim), lambda w: w.reshape(hidden_dim, -1).T)
    # [out, in] <-> [heads, head_dim, out] (attention output)
    out_heads = (lambda w: w.T.reshape(num_heads, head_dim, hidden_dim), lambda w: w.reshape(-1, hidden_dim).T)
    bias_heads = (lambda b: b.reshape(num_heads, head_dim), lambda b: b.reshape(-1))
    same = (lambda x: x, lambda x: x)
    transpose = (lambda x: x.T, lambda x: x.T)
    # The first `offset` rows (padding_idx + 1) are dropped on reading, written back as zeros (only
    # Hugging Face's padding tokens read row padding_idx; row 0 is never read).
    positions = (lambda x: x[offset:],
                 lambda x: np.concatenate([np.zeros((offset, x.shape[1]), x.dtype), x], axis=0))
    entries = {
        "embeddings.word_embeddings.weight": ("token_embedding/embeddings", same),
        "embeddings.position_embeddings.weight": ("position_embedding/embeddings", positions),
        "embeddings.token_type_embeddings.weight": ("segment_embedding/embeddings", same),
        "embeddings.LayerNorm.weight": ("embeddings_layer_norm/gamma", same),
        "embeddings.LayerNorm.bias": ("embeddings_layer_norm/beta", same),
        "pooler.dense.weight": ("pooled_dense/kernel", transpose),
        "pooler.dense.bias": ("pooled_dense/bias", same),
    }
    for i in range(num_layers):
        hf, ours = f"encoder.layer.{i}", f"transformer_layer_{i}"
        for name in ("query", "key", "value"):
            entries[f"{hf}.attention.self.{name}.weight"] = (f"{ours}/self_attention_layer/{name}/kernel", in_heads)
            entries[f"{hf}.attention.self.{name}.bias"] = (f"{ours}/self_attention_layer/{name}/bias", bias_heads)
        entries.update({
            f"{hf}.attention.output.dense.weight": (f"{ours}/self_attention_layer/attention_output/kernel", out_heads),
            f"{hf}.attention.output.dense.bias": (f"{ours}/self_attention_layer/attention_output/bias", same),
            f"{hf}.attention.output.LayerNorm.weight": (f"{ours}/self_attention_layer_norm/gamma", same),
            f"{hf}.attention.output.LayerNorm.bias": (f"{ours}/self_attention_layer_norm/beta", same),
            f"{hf}.intermediate.dense.weight": (f"{ours}/feedforward_intermediate_dense/kernel", transpose),
            f"{hf}.intermediate.dense.bias": (f"{ours}/feedforward_intermediate_dense/bias", same),
            f"{hf}.output.dense.weight": (f"{ours}/feedforward_output_dense/kernel", transpose),
            f"{hf}.output.dense.bias": (f"{ours}/feedforward_output_dense/bias", same),
            f"{hf}.output.LayerNorm.weight": (f"{ours}/feedforward_layer_norm/gamma", same),
            f"{hf}.output.LayerNorm.bias": (f"{ours}/feedforward_layer_norm/beta", same),
        })
    return {hf: (ours, to_ours, to_hf) for hf, (ours, (to_ours, to_hf)) in entries.items()}


def load_roberta_encoder(location, dropout=None, output_hidden_states=False, fast_dropout=True):
    """A `BertEncoder` holding the Hugging Face RoBERTa checkpoint in directory `location`.

    Args:
        location: str or path. A directory with config.json (``model_type: roberta``) and
            model.safetensors (or a sharded model.safetensors.index.json).
        dropout: float or None. Override the checkpoint's dropout rate (`None` keeps it).
        output_hidden_states: bool. Also output every layer's hidden states.
        fast_dropout: bool. Hash dropout under XLA (`True`, default) or Keras' Philox.

    Returns:
        A `BertEncoder` whose outputs on right-padded `<s> ... </s>` ids equal `transformers`'
        `RobertaModel` on every real token.

    Raises:
        ModelLoadError: naming the file, if a weight is missing, left over or of another shape.
    """
    settings, offset = roberta_encoder_settings(location)
    if dropout is not None:
        settings["dropout"] = float(dropout)
    encoder = BertEncoder(**settings, output_hidden_states=bool(output_hidden_states), fast_dropout=bool(fast_dropout))
    weights_file = pathlib.Path(location) / "model.safetensors"
    hf = _hf_weights(location)
    ours = named_weights(encoder)
    mapping = _weight_map(encoder.num_layers, encoder.num_heads, encoder.hidden_dim, offset)
    left_over = sorted(set(hf) - set(mapping))
    if left_over:
        raise ModelLoadError(f"{weights_file}: weights a RoBERTa encoder does not have: {left_over[:5]}")
    for hf_name, (name, convert, _) in mapping.items():
        if hf_name not in hf:
            if hf_name.startswith("pooler."):
                continue  # no pooler in this checkpoint: BERT's pooler keeps its initialisation
            raise ModelLoadError(f"{weights_file}: no weight {hf_name!r}")
        value = convert(np.asarray(hf[hf_name], dtype="float32"))
        if tuple(value.shape) != tuple(ours[name].shape):
            raise ModelLoadError(f"{weights_file}: {hf_name!r} has shape {tuple(hf[hf_name].shape)}, which does not "
                                 f"fit config.json (expected {tuple(ours[name].shape)} after conversion)")
        ours[name].assign(value.astype(ours[name].dtype))
    return encoder


def from_keras_hub_roberta(roberta_backbone, dropout=None, output_hidden_states=False, fast_dropout=True):
    """A `BertEncoder` computing what a keras-hub `RobertaBackbone` computes, with its weights.

    keras-hub's RoBERTa has no token-type embedding (the one segment row is zero here) and no
    pooler (BERT's tanh pooler keeps its initialisation; only the `cls` poolers' MLP would read
    it, and training gives that a fresh one).

    Raises:
        ModelLoadError: naming the weight, if the two networks' weights do not pair up.
    """
    if not isinstance(roberta_backbone, keras_hub.models.RobertaBackbone):
        raise TypeError(f"from_keras_hub_roberta takes a keras_hub.models.RobertaBackbone, got "
                        f"{type(roberta_backbone).__name__}.")
    config = roberta_backbone.get_config()
    settings = {key: config[key] for key in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim",
                                              "intermediate_dim", "dropout", "max_sequence_length")}
    if dropout is not None:
        settings["dropout"] = float(dropout)
    encoder = BertEncoder(**settings, num_segments=1, activation="gelu", layer_norm_epsilon=1e-5,
                          output_hidden_states=bool(output_hidden_states), fast_dropout=bool(fast_dropout))
    theirs, ours = named_weights(roberta_backbone), named_weights(encoder)
    renamed = {"embeddings/token_embedding/embeddings": "token_embedding/embeddings",
               "embeddings/position_embedding/embeddings": "position_embedding/embeddings"}
    label = f"keras-hub RobertaBackbone {roberta_backbone.name!r}"
    for name, variable in theirs.items():
        target = renamed.get(name, name)
        if target not in ours or tuple(ours[target].shape) != tuple(variable.shape):
            raise ModelLoadError(f"{label}: weight {name!r} {tuple(variable.shape)} has no counterpart in BertEncoder")
        ours[target].assign(keras.ops.cast(keras.ops.convert_to_tensor(variable), ours[target].dtype))
    missing = sorted(set(ours) - {renamed.get(n, n) for n in theirs} - {"segment_embedding/embeddings",
                                                                         "pooled_dense/kernel", "pooled_dense/bias"})
    if missing:
        raise ModelLoadError(f"{label}: no weights for BertEncoder's {missing[:5]}")
    ours["segment_embedding/embeddings"].assign(keras.ops.zeros(ours["segment_embedding/embeddings"].shape))
    return encoder


def load_roberta_tokenizer(location):
    """keras-hub's `RobertaTokenizer` from ``vocab.json`` + ``merges.txt`` in `location`, checked
    against its config.json: the vocabulary must fit the embedding rows and ``<s>``, ``</s>``,
    ``<pad>`` must have the ids the weights were trained with (``bos_token_id``, ``eos_token_id``,
    ``pad_token_id``).

    Raises:
        ModelLoadError: naming the file and the mismatch.
    """
    location = pathlib.Path(location)
    vocab, merges = location / "vocab.json", location / "merges.txt"
    for path in (vocab, merges):
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing (a RoBERTa directory needs vocab.json and merges.txt)")
    options = {}
    tokenizer_config = location / "tokenizer_config.json"
    if tokenizer_config.is_file() and _read_json(tokenizer_config).get("add_prefix_space"):
        options["add_prefix_space"] = True
    try:
        tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=str(vocab), merges=str(merges), **options)
    except Exception as e:  # a missing special token, a malformed file
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"{vocab}: not a RoBERTa vocabulary ({type(e).__name__}: {first_line})") from None
    cfg = _read_json(location / "config.json")
    size, rows = int(tokenizer.vocabulary_size()), int(cfg.get("vocab_size", 0))
    if size > rows:
        raise ModelLoadError(f"{vocab}: {size} tokens but config.json's vocab_size is {rows}: the vocabulary and the "
                             "weights come from different models")
    for token, attribute, key in (("<s>", "start_token_id", "bos_token_id"), ("</s>", "end_token_id", "eos_token_id"),
                                  ("<pad>", "pad_token_id", "pad_token_id")):
        if key in cfg and cfg[key] is not None and int(getattr(tokenizer, attribute)) != int(cfg[key]):
            raise ModelLoadError(f"{vocab}: {token} has id {getattr(tokenizer, attribute)} but config.json's {key} is "
                                 f"{cfg[key]}: the tokenizer and the weights come from different models")
    return tokenizer


# --- writing a Hugging Face RoBERTa directory back (the sentence-transformers export) ---


def hf_roberta_weights(backbone, pad_token_id, pooler_dense=None):
    """`{Hugging Face RobertaModel weight name: float32 array}` of a `BertEncoder` holding a
    RoBERTa: `load_roberta_encoder`'s table run backwards (the position rows shifted down by
    ``pad_token_id + 1`` again, the rows below them zero).

    Args:
        backbone: the `BertEncoder`.
        pad_token_id: int. The tokenizer's ``<pad>`` id (Hugging Face's ``padding_idx``).
        pooler_dense: a `keras.layers.Dense` (hidden -> hidden) to store as the pooler
            (``pooler.dense.*``) instead of the backbone's own `pooled_dense`, or None.

    Raises:
        ValueError: naming the weights, if the backbone's do not pair up with RoBERTa's.
    """
    mapping = _weight_map(int(backbone.num_layers), int(backbone.num_heads), int(backbone.hidden_dim),
                          int(pad_token_id) + 1)
    named = named_weights(backbone)
    ours = {name for name, _, _ in mapping.values()}
    if ours != set(named):
        raise ValueError(f"cannot export {type(backbone).__name__} {backbone.name!r} as a Hugging Face RoBERTa: "
                         f"weights that do not pair up {sorted(ours ^ set(named))[:5]}")
    values = {name: keras.ops.convert_to_numpy(variable) for name, variable in named.items()}
    if pooler_dense is not None:
        values["pooled_dense/kernel"] = keras.ops.convert_to_numpy(pooler_dense.kernel)
        values["pooled_dense/bias"] = keras.ops.convert_to_numpy(pooler_dense.bias)
    return {hf: np.ascontiguousarray(to_hf(np.asarray(values[name], dtype="float32")))
            for hf, (name, _, to_hf) in mapping.items()}


def roberta_special_tokens(tokenizer):
    """Hugging Face's RoBERTa special-token map (``special_tokens_map.json``) of a keras-hub
    `RobertaTokenizer`: ``<s>`` is also the classifier token and ``</s>`` the separator."""
    start, end = getattr(tokenizer, "start_token", "<s>"), getattr(tokenizer, "end_token", "</s>")
    special = {"bos_token": start, "eos_token": end, "unk_token": "<unk>", "sep_token": end, "pad_token":
               getattr(tokenizer, "pad_token", "<pad>"), "cls_token": start,
               "mask_token": getattr(tokenizer, "mask_token", "<mask>")}
    if special["unk_token"] not in tokenizer.vocabulary:  # byte-level BPE needs none; invent none
        del special["unk_token"]
    return special


def write_roberta_tokenizer(tokenizer, directory, max_length):
    """Write a keras-hub `RobertaTokenizer` as Hugging Face RoBERTa tokenizer files into
    `directory`: ``vocab.json`` and ``merges.txt`` (what `load_roberta_tokenizer` reads),
    ``tokenizer_config.json`` (``RobertaTokenizer``, `add_prefix_space`, truncation at
    `max_length`) and ``special_tokens_map.json``. `transformers.AutoTokenizer` builds its fast
    RoBERTa tokenizer from them, with our ids.

    Returns:
        The list of paths written.

    Raises:
        ValueError: if the tokenizer's ``<s>``/``</s>``/``<pad>`` are not in its vocabulary.
    """
    directory = pathlib.Path(directory)
    vocabulary = {str(token): int(i) for token, i in tokenizer.vocabulary.items()}
    special = roberta_special_tokens(tokenizer)
    missing = sorted({special[k] for k in ("bos_token", "eos_token", "pad_token")} - set(vocabulary))
    if missing:
        raise ValueError(f"the {type(tokenizer).__name__}'s vocabulary lacks {missing}: no Hugging Face RoBERTa "
                         "tokenizer can be written for it")
    merges = [str(m) for m in tokenizer.merges if not str(m).startswith("#version")]  # keras-hub keeps the header
    config = {"tokenizer_class": "RobertaTokenizer", "add_prefix_space": bool(tokenizer.add_prefix_space),
              "trim_offsets": True, "errors": "replace", "model_max_length": int(max_length),
              "clean_up_tokenization_spaces": False, **special}
    written = [directory / name for name in ("vocab.json", "merges.txt", "tokenizer_config.json",
                                             "special_tokens_map.json")]
    written[0].write_text(json.dumps(dict(sorted(vocabulary.items(), key=lambda kv: kv[1])), ensure_ascii=False),
                          encoding="utf-8")
    written[1].write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8")
    for path, obj in zip(written[2:], (config, special)):
        path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return written
