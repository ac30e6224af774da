"""Export a `SentenceEncoder` as a Hugging Face BERT or RoBERTa / sentence-transformers directory.

    path = export_sentence_transformers(encoder, "exported/my_encoder")
    # elsewhere, with PyTorch:  SentenceTransformer("exported/my_encoder").encode([...])
    #                           transformers.AutoModel.from_pretrained("exported/my_encoder")

Layout written (the standard one of sentence-transformers models such as all-MiniLM-L6-v2):

    config.json                        Hugging Face `BertConfig` (model_type "bert", BertModel)
    model.safetensors                  the BERT weights under Hugging Face's names (float32)
    vocab.txt                          the tokenizer's WordPiece vocabulary, one token a line
    tokenizer_config.json              BertTokenizer settings (do_lower_case, strip_accents, ...)
    special_tokens_map.json            [CLS] [SEP] [PAD] [UNK] [MASK]
    (a RoBERTa, i.e. a byte-level BPE tokenizer, instead: `RobertaConfig` (model_type "roberta",
    max_position_embeddings = positions + pad_token_id + 1, type_vocab_size 1, its layer_norm_eps),
    RobertaModel's weights (`tf_esimcse.roberta_checkpoint.hf_roberta_weights`, the loader's table
    backwards), vocab.json + merges.txt and RobertaTokenizer's tokenizer_config.json /
    special_tokens_map.json: `roberta_checkpoint.write_roberta_tokenizer`)
    modules.json                       Transformer -> Pooling [-> Dense] [-> Normalize]
    sentence_bert_config.json          max_seq_length (the encoder's inference truncation)
    config_sentence_transformers.json  cosine similarity, no prompts; the encoder's `truncate_dim`, if set
    1_Pooling/config.json              pooling_mode_cls_token or pooling_mode_mean_tokens
    2_Dense/config.json, model.safetensors   pooler "cls" with its MLP at inference only:
                                       the MLP (Linear + Tanh); needs sentence-transformers >= 3.0.1
    2_Normalize/ (or 3_Normalize/)     when the encoder L2-normalises

Poolers (as `encoder.inference_settings()` names them): `cls_before_pooler` (also `cls` with
`mlp_only_train=True`) -> CLS pooling; `avg` -> mean pooling; `cls` with its MLP at inference ->
CLS pooling + `2_Dense` (tanh), the MLP also stored as BERT's own pooler (``pooler.dense.*``, where
released SimCSE checkpoints keep it: `transformers.BertModel(...).pooler_output` is the embedding
before normalisation). `avg_top2` and `avg_first_last` read intermediate layers, which
sentence-transformers' Pooling cannot: `ValueError`.

Weights are named by inverting the table keras-hub's Hugging Face converter
(`keras_hub/src/utils/transformers/convert_bert.py`) loads them with, which
`tf_esimcse.backbones.load_backbone` goes through: Hugging Face `nn.Linear` weights are
``[out, in]``, so kernels are flattened to ``[in, out]`` and transposed; attention biases
``(heads, head_dim)`` are flattened. `SentenceEncoder.from_pretrained(path)` reads the result back
(a Hugging Face directory plus ``1_Pooling``; pass ``pooler_type="cls"`` for an exported MLP head:
the loader takes it from ``pooler.dense`` and does not read ``2_Dense``).

The directory is written into a hidden temporary directory next to `output_dir` and renamed into
place, so a crash never leaves a half-written export; an existing non-empty `output_dir` is
replaced only with `overwrite=True`.
"""
import json
import pathlib

import numpy as np
from safetensors.numpy import save_file

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.atomic_files import replace_directory
from tf_esimcse.models.bert_encoder import named_weights
from tf_esimcse.models.bert_encoder import weight_name_map
from tf_esimcse.errors import ModelSaveError
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.portable_graph import check_bert_family
from tf_esimcse.roberta_checkpoint import hf_roberta_weights
from tf_esimcse.roberta_checkpoint import write_roberta_tokenizer

# Our activation names -> Hugging Face `hidden_act` (the inverse of checkpoint_sources.HF_ACTIVATIONS).
# "gelu" is the exact erf GELU in transformers; "gelu_new" its tanh approximation (the one
# keras-hub's BertBackbone and Google's BERT use).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}
# What keras-hub's BertBackbone computes (it has no `activation` attribute).
_KERAS_HUB_ACTIVATION = "gelu_approximate"
_ST_MODULES = "sentence_transformers.models"
_TANH = "torch.nn.modules.activation.Tanh"
_LN = {"gamma": "weight", "beta": "bias"}


def _hf_weight_table(num_layers):
    """``[(hf_name, our_name, kind)]`` for every BERT weight; `kind` says how to convert:
    ``"copy"``, ``"kernel_in"`` (q/k/v: ``(in, heads, head_dim)``), ``"kernel_out"`` (attention
    output: ``(heads, head_dim, out)``), ``"kernel"`` (``(in, out)``), ``"bias"`` (flattened).

    The inverse of keras-hub's `convert_bert.convert_weights` (Hugging Face -> keras-hub
    `BertBackbone`, whose names `BertEncoder` shares: `tf_esimcse.models.bert_encoder.weight_name_map`).
    """
    table = [
        ("embeddings.word_embeddings.weight", "token_embedding/embeddings", "copy"),
        ("embeddings.position_embeddings.weight", "position_embedding/embeddings", "copy"),
        ("embeddings.token_type_embeddings.weight", "segment_embedding/embeddings", "copy"),
    ]
    table += [(f"embeddings.LayerNorm.{hf}", f"embeddings_layer_norm/{ours}", "copy") for ours, hf in _LN.items()]
    attention = "self_attention_layer"
    for i in range(num_layers):
        hf, ours = f"encoder.layer.{i}", f"transformer_layer_{i}"
        for name in ("query", "key", "value"):
            table.append((f"{hf}.attention.self.{name}.weight", f"{ours}/{attention}/{name}/kernel", "kernel_in"))
            table.append((f"{hf}.attention.self.{name}.bias", f"{ours}/{attention}/{name}/bias", "bias"))
        table += [
            (f"{hf}.attention.output.dense.weight", f"{ours}/{attention}/attention_output/kernel", "kernel_out"),
            (f"{hf}.attention.output.dense.bias", f"{ours}/{attention}/attention_output/bias", "bias"),
            (f"{hf}.intermediate.dense.weight", f"{ours}/feedforward_intermediate_dense/kernel", "kernel"),
            (f"{hf}.intermediate.dense.bias", f"{ours}/feedforward_intermediate_dense/bias", "bias"),
            (f"{hf}.output.dense.weight", f"{ours}/feedforward_output_dense/kernel", "kernel"),
            (f"{hf}.output.dense.bias", f"{ours}/feedforward_output_dense/bias", "bias"),
        ]
        for ours_ln, hf_ln in _LN.items():
            table.append((f"{hf}.attention.output.LayerNorm.{hf_ln}", f"{ours}/{attention}_norm/{ours_ln}", "copy"))
            table.append((f"{hf}.output.LayerNorm.{hf_ln}", f"{ours}/feedforward_layer_norm/{ours_ln}", "copy"))
    table += [
        ("pooler.dense.weight", "pooled_dense/kernel", "kernel"),
        ("pooler.dense.bias", "pooled_dense/bias", "bias"),
    ]
    return table


def _to_hf(value, kind):
    value = np.asarray(value, dtype=np.float32)
    if kind == "kernel_in":
        value = value.reshape(value.shape[0], -1).T
    elif kind == "kernel_out":
        value = value.reshape(-1, value.shape[-1]).T
    elif kind == "kernel":
        value = value.T
    elif kind == "bias":
        value = value.reshape(-1)
    return np.ascontiguousarray(value)


def hf_bert_weights(backbone, pooler_dense=None):
    """`{Hugging Face BertModel weight name: float32 array}` of a `BertEncoder` (or keras-hub
    `BertBackbone`).

    Args:
        backbone: the BERT network.
        pooler_dense: a `keras.layers.Dense` (hidden -> hidden) to store as BERT's pooler
            (``pooler.dense.*``) instead of the backbone's own `pooled_dense`, or None.

    Raises:
        ValueError: naming the weight, if the backbone lacks one of BERT's weights or has one
            this table does not know.
    """
    num_layers = int(backbone.num_layers)
    named = named_weights(backbone)
    table = _hf_weight_table(num_layers)
    ours = {name for _, name, _ in table}
    expected = set(weight_name_map(num_layers).values())
    if ours != expected:  # the loader's table and ours must name the same weights
        raise AssertionError(f"export table and bert_encoder.weight_name_map differ: {sorted(ours ^ expected)}")
    missing = sorted(ours - set(named))
    unknown = sorted(set(named) - ours)
    if missing or unknown:
        raise ValueError(
            f"cannot export {type(backbone).__name__} {backbone.name!r} as a Hugging Face BERT: "
            + (f"missing weights {missing}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"weights with no BERT counterpart {unknown}" if unknown else "")
        )
    tensors = {hf: _to_hf(named[name].numpy(), kind) for hf, name, kind in table}
    if pooler_dense is not None:
        tensors["pooler.dense.weight"] = _to_hf(pooler_dense.kernel.numpy(), "kernel")
        tensors["pooler.dense.bias"] = _to_hf(pooler_dense.bias.numpy(), "bias")
    return tensors


def _st_pooling(encoder):
    """``(pooling_mode key, uses the MLP head)`` for the encoder's inference pooler."""
    pooler_type = encoder.inference_settings()
    if pooler_type == "cls_before_pooler":
        return "pooling_mode_cls_token", False
    if pooler_type == "avg":
        return "pooling_mode_mean_tokens", False
    if pooler_type == "cls":
        if getattr(encoder.pooler, "mlp", None) is None:
            raise ValueError("pooler 'cls' has no MLP head built; cannot export it.")
        return "pooling_mode_cls_token", True
    raise ValueError(
        f"pooler {pooler_type!r} cannot be exported to sentence-transformers: it averages "
        "intermediate hidden states, which sentence-transformers' Pooling module cannot read "
        "(supported: 'cls_before_pooler', 'avg', and 'cls' with or without mlp_only_train). "
        "Re-load the encoder with pooler_type='avg' or 'cls_before_pooler' if that is acceptable "
        "for your model (it changes the embeddings)."
    )


def _is_byte_level_bpe(tokenizer):
    """Whether `tokenizer` is keras-hub's byte-level BPE (RoBERTa's `RobertaTokenizer`)."""
    return getattr(tokenizer, "merges", None) is not None


def _tokenizer_files(tokenizer, max_length):
    """``(vocab.txt text, tokenizer_config, special_tokens_map)`` for a keras-hub `BertTokenizer`."""
    if _is_byte_level_bpe(tokenizer):
        raise ValueError(f"the tokenizer is a byte-level BPE one ({type(tokenizer).__name__}): a BERT WordPiece "
                         "vocab.txt / tokenizer.json cannot hold it; a RoBERTa exports as a SavedModel "
                         "(tf-esimcse export), for sentence-transformers, or with save_pretrained.")
    for attribute, required in (("suffix_indicator", "##"), ("split", True)):
        if getattr(tokenizer, attribute, required) != required:
            raise ValueError(
                f"the tokenizer's {attribute}={getattr(tokenizer, attribute)!r} has no Hugging Face "
                f"BertTokenizer equivalent (it needs {required!r})."
            )
    vocabulary = [str(token) for token in tokenizer.get_vocabulary()]
    bad = [token for token in vocabulary if "\n" in token or "\r" in token]
    if bad:
        raise ValueError(f"vocabulary tokens containing line breaks cannot be written to vocab.txt: {bad[:5]}")
    special = {
        "unk_token": getattr(tokenizer, "oov_token", "[UNK]"),
        "sep_token": getattr(tokenizer, "sep_token", "[SEP]"),
        "pad_token": getattr(tokenizer, "pad_token", "[PAD]"),
        "cls_token": getattr(tokenizer, "cls_token", "[CLS]"),
        "mask_token": getattr(tokenizer, "mask_token", "[MASK]"),
    }
    lowercase = bool(getattr(tokenizer, "lowercase", False))
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercase,
        # Explicit (Hugging Face's None means "strip when lower-casing").
        "strip_accents": bool(getattr(tokenizer, "strip_accents", False)),
        "tokenize_chinese_chars": bool(getattr(tokenizer, "split_on_cjk", True)),
        "do_basic_tokenize": True,
        "never_split": None,
        "model_max_length": int(max_length),
        "clean_up_tokenization_spaces": True,
        **special,
    }
    return "\n".join(vocabulary) + "\n", config, special


def write_tokenizer_files(tokenizer, directory, max_length, tokenizer_json=False):
    """Write a keras-hub `BertTokenizer` as Hugging Face `BertTokenizer` files into `directory`.

    Writes ``vocab.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json`` (what this
    module's export holds: `transformers.AutoTokenizer.from_pretrained(directory)` loads them),
    and with `tokenizer_json=True` also ``tokenizer.json``: the same WordPiece tokenizer as one
    Hugging Face `tokenizers` file (`tokenizers.Tokenizer.from_file`, in Python, Rust, Node or
    transformers' fast tokenizers), adding ``[CLS]``/``[SEP]`` and truncating to `max_length`.
    The ONNX and LiteRT exports write it beside their graph.

    Args:
        tokenizer: a keras-hub `BertTokenizer` (an encoder's `preprocessor.tokenizer`).
        directory: path. An existing directory.
        max_length: int. The tokenizer's truncation length (special tokens included).
        tokenizer_json: bool. Also write ``tokenizer.json``. Defaults to `False`.

    Returns:
        The list of paths written.

    Raises:
        ValueError: for a tokenizer with no Hugging Face BertTokenizer equivalent.
    """
    directory = pathlib.Path(directory)
    vocab_text, tokenizer_config, special = _tokenizer_files(tokenizer, max_length)
    written = [directory / "vocab.txt", directory / "tokenizer_config.json", directory / "special_tokens_map.json"]
    written[0].write_text(vocab_text, encoding="utf-8")
    _write_json(written[1], tokenizer_config)
    _write_json(written[2], special)
    if tokenizer_json:
        # `tokenizers` comes with keras-hub; imported here, as only these exports need it.
        from tokenizers.implementations import BertWordPieceTokenizer

        fast = BertWordPieceTokenizer(
            str(written[0]), unk_token=special["unk_token"], sep_token=special["sep_token"],
            cls_token=special["cls_token"], pad_token=special["pad_token"], mask_token=special["mask_token"],
            clean_text=True, handle_chinese_chars=tokenizer_config["tokenize_chinese_chars"],
            strip_accents=tokenizer_config["strip_accents"], lowercase=tokenizer_config["do_lower_case"],
            wordpieces_prefix="##",
        )
        fast.enable_truncation(int(max_length))
        written.append(directory / "tokenizer.json")
        fast.save(str(written[-1]))
    return written


def _bert_config(backbone, pad_token_id):
    activation = getattr(backbone, "activation", _KERAS_HUB_ACTIVATION)
    if activation not in HF_ACTIVATIONS:
        raise ValueError(f"activation {activation!r} has no Hugging Face hidden_act equivalent.")
    layer_norm = getattr(backbone, "embeddings_layer_norm", None)
    dropout = float(backbone.dropout)
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(backbone.vocabulary_size),
        "hidden_size": int(backbone.hidden_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(backbone.num_heads),
        "intermediate_size": int(backbone.intermediate_dim),
        "hidden_act": HF_ACTIVATIONS[activation],
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "max_position_embeddings": int(backbone.max_sequence_length),
        "type_vocab_size": int(backbone.num_segments),
        "initializer_range": 0.02,
        "layer_norm_eps": float(layer_norm.epsilon) if layer_norm is not None else 1e-12,
        "pad_token_id": int(pad_token_id),
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def _roberta_config(backbone, tokenizer):
    """`_bert_config` as Hugging Face's `RobertaConfig`: ``max_position_embeddings`` counts the
    ``pad_token_id + 1`` rows below the first position (`roberta_checkpoint.roberta_encoder_settings`
    subtracts them again)."""
    pad_token_id = int(tokenizer.pad_token_id)
    return dict(_bert_config(backbone, pad_token_id), architectures=["RobertaModel"], model_type="roberta",
                max_position_embeddings=int(backbone.max_sequence_length) + pad_token_id + 1,
                bos_token_id=int(tokenizer.start_token_id), eos_token_id=int(tokenizer.end_token_id))


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _write_export(encoder, tmp):
    backbone = encoder.backbone
    pooling_key, with_mlp = _st_pooling(encoder)
    if encoder.preprocessor is None:
        raise ValueError("this SentenceEncoder has no preprocessor: the export needs its tokenizer's vocabulary.")
    tokenizer = encoder.preprocessor.tokenizer
    max_length = int(encoder.inference_length or backbone.max_sequence_length)
    hidden = int(backbone.hidden_dim)
    pooler_dense = encoder.pooler.mlp if with_mlp else None
    if _is_byte_level_bpe(tokenizer):  # RoBERTa
        config = _roberta_config(backbone, tokenizer)
        tensors = hf_roberta_weights(backbone, tokenizer.pad_token_id, pooler_dense=pooler_dense)
        write_tokenizer = write_roberta_tokenizer
    else:
        _tokenizer_files(tokenizer, max_length)  # an unsupported tokenizer fails before anything is written
        config = _bert_config(backbone, int(getattr(tokenizer, "pad_token_id", 0) or 0))
        tensors = hf_bert_weights(backbone, pooler_dense=pooler_dense)
        write_tokenizer = write_tokenizer_files
    _write_json(tmp / "config.json", config)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(tokenizer, tmp, max_length)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": f"{_ST_MODULES}.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": f"{_ST_MODULES}.Pooling"},
    ]
    _write_json(tmp / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        **{key: key == pooling_key for key in (
            "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
        )},
    })
    if with_mlp:
        mlp = encoder.pooler.mlp
        dense_dir = tmp / "2_Dense"
        _write_json(dense_dir / "config.json", {
            "in_features": hidden, "out_features": int(mlp.units), "bias": True, "activation_function": _TANH,
        })
        save_file(
            {"linear.weight": tensors["pooler.dense.weight"], "linear.bias": tensors["pooler.dense.bias"]},
            str(dense_dir / "model.safetensors"), metadata={"format": "pt"},
        )
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": f"{_ST_MODULES}.Dense"})
    if encoder.normalize:
        idx = len(modules)
        (tmp / f"{idx}_Normalize").mkdir()
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize", "type": f"{_ST_MODULES}.Normalize"})
    _write_json(tmp / "modules.json", modules)
    _write_json(tmp / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    st_config = {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    if encoder.truncate_dim is not None:
        # sentence-transformers >= 3 reads it; it truncates AFTER its Normalize module: the same
        # cosines as `encode(dim=d)`, vectors of norm <= 1 unless encode(normalize_embeddings=True).
        st_config["truncate_dim"] = int(encoder.truncate_dim)
    _write_json(tmp / "config_sentence_transformers.json", st_config)


def _is_nonempty_dir(path):
    return path.is_dir() and any(path.iterdir())


@tf_esimcse_export("export_sentence_transformers")
def export_sentence_transformers(encoder, output_dir, overwrite=False):
    """Write `encoder` as a Hugging Face BERT or RoBERTa + sentence-transformers directory.

    See the module docstring for the layout and the poolers supported.
    `sentence_transformers.SentenceTransformer(output_dir).encode(sentences)` then gives
    `encoder.encode(sentences)` (up to float rounding and tokenizer differences between
    keras-hub's WordPiece and Hugging Face's BertTokenizer on unusual text; for RoBERTa's byte-level
    BPE, tests/test_st_export.py checks the ids on spaces, accents, emoji, CJK and numbers).

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` with a preprocessor (for its vocabulary).
        output_dir: str or path. The directory to write.
        overwrite: bool. Replace an existing non-empty `output_dir`. Defaults to `False`.

    Returns:
        The absolute `pathlib.Path` of the directory.

    Raises:
        FileExistsError: if `output_dir` exists, is not empty and `overwrite` is False (or it
            is a file).
        ValueError: for a pooler sentence-transformers cannot express (`avg_top2`,
            `avg_first_last`), an activation or tokenizer with no Hugging Face equivalent, or
            an encoder without a preprocessor.
        ModelSaveError: if the files cannot be written (a full disk, permissions); what was at
            `output_dir` before is kept.
    """
    if not isinstance(encoder, SentenceEncoder):
        hint = " (pass its `.encoder`)" if isinstance(getattr(encoder, "encoder", None), SentenceEncoder) else ""
        raise TypeError(f"export_sentence_transformers takes a SentenceEncoder, got {type(encoder).__name__}{hint}.")
    check_bert_family(encoder, "sentence-transformers export")
    path = pathlib.Path(output_dir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a directory.")
    if _is_nonempty_dir(path) and not overwrite:
        raise FileExistsError(f"{path}: directory exists and is not empty; pass overwrite=True (--overwrite) to replace it.")
    _st_pooling(encoder)  # fail on an unsupported pooler before writing anything
    existed = path.exists()
    entered = False
    try:
        # Refuses (again) a non-empty directory that appeared while we were writing.
        with replace_directory(path, overwrite=overwrite) as tmp:
            entered = True
            _write_export(encoder, tmp)
    except OSError as e:
        if not entered:
            raise ModelSaveError(f"{path}: could not create the export directory ({e.strerror or e})") from e
        if isinstance(e, FileExistsError):
            raise
        kept = "the directory there before is untouched" if existed else "nothing was written there"
        raise ModelSaveError(f"{path}: could not export the encoder ({e.strerror or e}); {kept}") from e
    return path
