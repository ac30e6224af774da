"""Export a `SentenceEncoder` as a SavedModel for TensorFlow Serving.

    path = export_for_serving(encoder, "saved_models/my_encoder")   # -> .../my_encoder/1
    print(describe_signatures(path))

The layout is TF Serving's versioned one, `export_base/<version>/saved_model.pb` + `variables/`;
point `tensorflow_model_server --model_base_path` at `export_base`. Each version is written into
a hidden temporary directory next to it (`export_base/.tmp-export-*`, a name TF Serving ignores)
and renamed into place in one `os.replace`, so a server polling `export_base` never sees a
half-written version.

Signatures (the whole inference path is in the graph: WordPiece tokenization with TF-Text ops,
packing, the encoder with dropout off, pooling and L2 normalisation):

    serving_default   sentences: string [batch]                   -> embeddings: float32 [batch, dim]
    encode_tokens     token_ids, padding_mask: int32 [batch, len] -> embeddings: float32 [batch, dim]
    similarity        sentences_a, sentences_b: string [batch]    -> scores: float32 [batch]

`encode_tokens` takes what `encoder.preprocessor` produces (`[CLS] ids [SEP]` then padding,
`padding_mask` 1 on real tokens). `similarity` is the cosine of each pair (a[i], b[i]).

One size per export: `dim` is the encoder's `truncate_dim` unless `export_for_serving(dim=d)` (the
CLI's `--dim`) says otherwise, and every signature gives that size (the first `dim` coordinates,
L2-normalised again: `encoder.encode(dim=d)`), with the size in its output shape `[batch, dim]`.
Not an input and not one signature per size: a TF Serving client, an index built from the model
and the model's version then agree on one width without a request parameter to get wrong; export
another version (or another model name) for another size.

TF-Text ops: the official `tensorflow_model_server` (and the `tensorflow/serving` Docker image)
links TF-Text's op library, so the default export serves as is. A server or tool without those ops
cannot load the default export at all (a SavedModel's ops are resolved when the whole graph is
imported, not per signature): export with `text_ops=False` for them, which writes only the
token-id path (`encode_tokens`, also as `serving_default`) and contains no TF-Text op; clients
then tokenize with the model's `vocab.txt` (`encoder.preprocessor`).
"""
import numbers
import os
import pathlib
import re
import shutil
import uuid

import keras
import tensorflow as tf

from tf_esimcse.errors import ExportError, VersionExistsError
from tf_esimcse.layers.matmul_precision import matmul_precision
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.truncation import check_dim

TEMP_PREFIX = ".tmp-export-"
SERVING_DEFAULT = "serving_default"
ENCODE_TOKENS = "encode_tokens"
SIMILARITY = "similarity"
_VERSION_RE = re.compile(r"^[0-9]+$")


def existing_versions(export_base):
    """`{version: directory name}` of the version directories in `export_base` (names that are
    non-negative integers, as TF Serving reads them; `"007"` is version 7). Empty if the
    directory does not exist."""
    base = pathlib.Path(export_base)
    if not base.is_dir():
        return {}
    return {int(p.name): p.name for p in base.iterdir() if _VERSION_RE.match(p.name) and p.is_dir()}


def next_version(export_base):
    """1 + the largest existing version in `export_base` (1 if there is none)."""
    versions = existing_versions(export_base)
    return max(versions) + 1 if versions else 1


def _check_encoder(encoder, text_ops):
    if not isinstance(encoder, SentenceEncoder):
        inner = getattr(encoder, "encoder", None)
        if isinstance(inner, SentenceEncoder):
            raise TypeError(
                f"export_for_serving takes the inference SentenceEncoder, not the training model "
                f"{type(encoder).__name__}: pass `model.encoder` (training-only parts are never exported)."
            )
        raise TypeError(f"export_for_serving takes a tf_esimcse.SentenceEncoder, got {type(encoder).__name__}.")
    if text_ops and encoder.preprocessor is None:
        raise ValueError(
            "This SentenceEncoder has no preprocessor, so sentences cannot be tokenized in the graph: "
            "load it with SentenceEncoder.from_pretrained, or export with text_ops=False."
        )


def _trim_padding(batch):
    """Drop padding columns no sentence uses (as `encode` does); keeps >= 2 columns so that an
    empty batch still has a valid shape (every packed sentence has [CLS] and [SEP])."""
    longest = tf.reduce_max(tf.concat([tf.reduce_sum(batch["padding_mask"], axis=1), [2]], axis=0))
    return {k: v[:, :longest] for k, v in batch.items()}


def serving_functions(encoder, text_ops=True, dim=None):
    """The signature functions (`tf.function`s with input signatures) for `encoder`, by name.

    Each returns a dict of float32 tensors. Dropout is off (`training=False`) and embeddings are
    L2-normalised in the graph (the encoder's own normalisation, or an added one if the encoder
    was built with `normalize=False`). `dim`: the embeddings' size (the first `dim` coordinates,
    normalised again); `None` (default) uses the encoder's `truncate_dim`, else the full size.
    """
    _check_encoder(encoder, text_ops)
    dim = encoder.truncate_dim if dim is None else check_dim(dim, encoder.embedding_dim)
    if dim == encoder.embedding_dim:
        dim = None  # the full vector, as before
    ids_spec = tf.TensorSpec([None, None], tf.int32)
    text_spec = tf.TensorSpec([None], tf.string)

    def embed_tokens(token_ids, padding_mask):
        x = encoder({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        x = tf.cast(x, tf.float32)
        if not encoder.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        if dim is not None:
            x = tf.math.l2_normalize(x[:, :dim], axis=-1)  # tf_esimcse.truncation.truncate's rule
        return x

    vocabulary_size = int(encoder.backbone.vocabulary_size)
    max_length = int(encoder.backbone.max_sequence_length)

    @tf.function(input_signature=[ids_spec, ids_spec])
    def encode_tokens(token_ids, padding_mask):
        # Client-made ids: say what is wrong instead of failing deep in the graph (or, for a
        # negative id, silently embedding a zero vector).
        checks = [
            tf.debugging.assert_equal(tf.shape(token_ids), tf.shape(padding_mask),
                                      message="encode_tokens: token_ids and padding_mask must have the same shape"),
            tf.debugging.assert_less_equal(tf.shape(token_ids)[1], max_length,
                                           message=f"encode_tokens: sequences longer than {max_length} tokens"),
            tf.debugging.assert_non_negative(token_ids, message="encode_tokens: negative token ids"),
            tf.debugging.assert_less(token_ids, vocabulary_size,
                                     message=f"encode_tokens: token ids must be < the vocabulary size {vocabulary_size}"),
        ]
        with tf.control_dependencies(checks):
            token_ids = tf.identity(token_ids)
        return {"embeddings": embed_tokens(token_ids, padding_mask)}

    if not text_ops:
        return {SERVING_DEFAULT: encode_tokens, ENCODE_TOKENS: encode_tokens}

    preprocessor = encoder.inference_preprocessor

    def embed_sentences(sentences):
        batch = _trim_padding(preprocessor(sentences))
        return embed_tokens(batch["token_ids"], batch["padding_mask"])

    @tf.function(input_signature=[text_spec])
    def serving_default(sentences):
        return {"embeddings": embed_sentences(sentences)}

    @tf.function(input_signature=[text_spec, text_spec])
    def similarity(sentences_a, sentences_b):
        n = tf.shape(sentences_a)[0]
        tf.debugging.assert_equal(
            n, tf.shape(sentences_b)[0], message="similarity: sentences_a and sentences_b must have the same length"
        )
        # One forward pass over both sides; embeddings are unit vectors, so the dot is the cosine.
        embeddings = embed_sentences(tf.concat([sentences_a, sentences_b], axis=0))
        return {"scores": tf.reduce_sum(embeddings[:n] * embeddings[n:], axis=-1)}

    return {SERVING_DEFAULT: serving_default, ENCODE_TOKENS: encode_tokens, SIMILARITY: similarity}


def _serving_module(functions):
    """A `tf.Module` holding the signature functions and exactly the variables they read.

    Only variables captured by the traced signatures are tracked (not the Keras model, whose
    object graph may hold an optimizer, training heads or cached traces), so the SavedModel
    contains the inference weights and nothing else, each once.
    """
    module = tf.Module(name="sentence_encoder_serving")
    variables = {}
    for name, fn in functions.items():
        for v in fn.get_concrete_function().variables:
            variables.setdefault(id(v), v)
        setattr(module, name, fn)
    module.inference_variables = list(variables.values())
    return module


def tokenizer_tables(encoder):
    """The lookup tables of the encoder's tokenizer that nothing else tracks, to be saved with
    the signatures that read them: keras-hub's byte-level BPE tokenizer (RoBERTa) keeps its
    vocabulary and merge tables on itself and its merge cache (a `MutableHashTable`) on a plain
    Python object, `tokenizer.cache`; keras-hub's SentencePiece tokenizers (DeBERTa-v3, Gemma 3)
    hold a TF-Text tokenizer (a `tf.Module`) whose model is such a resource. A WordPiece tokenizer
    (BERT) has none: `[]`."""
    tokenizer = getattr(encoder.preprocessor, "tokenizer", None)
    owners = [tokenizer, getattr(tokenizer, "cache", None)]
    if tokenizer is not None:
        owners += [value for value in vars(tokenizer).values()
                   if isinstance(value, tf.Module) and not isinstance(value, keras.layers.Layer)]
    tables = []
    for owner in owners:
        for value in (vars(owner).values() if owner is not None else ()):
            if isinstance(value, tf.saved_model.experimental.TrackableResource):
                tables.append(value)
    return tables


def resolve_version(export_base, version=None):
    """The version `export_for_serving` will write: `version` checked (a non-negative int not
    already in `export_base`, else `ValueError` / `VersionExistsError`), or the next one."""
    base = pathlib.Path(export_base)
    if base.exists() and not base.is_dir():
        raise ExportError(f"{base}: the export base exists and is not a directory.")
    versions = existing_versions(export_base)
    if version is None:
        return (max(versions) + 1) if versions else 1
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 0:
        raise ValueError(f"version must be a non-negative int, got {version!r}.")
    version = int(version)
    if version in versions:
        raise VersionExistsError(
            f"{pathlib.Path(export_base) / versions[version]}: version {version} already exists; "
            f"versions are never overwritten (omit --version to write version {max(versions) + 1})."
        )
    return version


def export_for_serving(encoder, export_base, version=None, text_ops=True, precision="float32", dim=None):
    """Write `encoder` as a TF Serving SavedModel at `export_base/<version>` and return that path.

    Args:
        encoder: a `SentenceEncoder` with a preprocessor (its `encode()` works).
        export_base: the model's base directory (TF Serving's `--model_base_path`); created if
            needed.
        version: int or None. None writes 1 + the largest existing version (1 if none). An
            existing version is never overwritten (`VersionExistsError`).
        text_ops: bool. True (default): `serving_default`, `encode_tokens` and `similarity`, with
            tokenization in the graph (TF-Text ops). False: token ids in only (`encode_tokens`,
            also as `serving_default`), for servers built without TF-Text ops.
        precision: `"float32"` (default) or `"bfloat16"`: the encoder's matrix products in
            bfloat16, everything else in float32 (faster on CPUs with bfloat16 units, AMX or
            AVX-512 BF16; see `tf_esimcse.layers.matmul_precision`). Inputs and outputs stay the same dtypes.
        dim: int or None. The embeddings' size in every signature (`encode(dim=d)`); `None`
            (default) uses the encoder's `truncate_dim`, else the full size.

    Returns:
        The absolute `pathlib.Path` of the version directory.
    """
    base = pathlib.Path(export_base).expanduser().resolve()
    version = resolve_version(base, version)
    with matmul_precision(precision):  # the functions are traced here
        module = _serving_module(serving_functions(encoder, text_ops=text_ops, dim=dim))  # fail before writing
    if text_ops and tokenizer_tables(encoder):
        module.tokenizer_tables = tokenizer_tables(encoder)
    base.mkdir(parents=True, exist_ok=True)
    target = base / str(version)
    # os.mkdir, not tempfile.mkdtemp: mkdtemp's 0700 mode would survive the rename and hide the
    # version from a server running as another user (the usual Docker volume set-up).
    tmp = base / f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex[:12]}"
    os.mkdir(tmp)
    try:
        with matmul_precision(precision):
            tf.saved_model.save(module, str(tmp), signatures=_signatures(module, text_ops))
        if target.exists():  # another writer got there first
            raise VersionExistsError(f"{target}: version {version} appeared while exporting; not overwritten.")
        try:
            os.replace(tmp, target)
        except OSError as e:  # rename onto a non-empty directory: a concurrent export of it
            raise VersionExistsError(f"{target}: version {version} already exists ({e.strerror}).") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _signatures(module, text_ops):
    names = [SERVING_DEFAULT, ENCODE_TOKENS] + ([SIMILARITY] if text_ops else [])
    return {name: getattr(module, name).get_concrete_function() for name in names}


def read_signatures(saved_model_dir, tag="serve"):
    """`{signature: {"inputs": {name: (dtype, shape)}, "outputs": {...}}}` read from
    `saved_model.pb` (no model loading, so no TF-Text ops needed). Shapes use -1 for unknown."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((pathlib.Path(saved_model_dir) / "saved_model.pb").read_bytes())
    graphs = [mg for mg in proto.meta_graphs if tag in mg.meta_info_def.tags]
    if not graphs:
        raise ExportError(f"{saved_model_dir}: no MetaGraph with tag {tag!r}.")

    def describe(infos):
        return {
            name: (
                tf.dtypes.as_dtype(info.dtype).name,
                None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim),
            )
            for name, info in sorted(infos.items())
        }

    return {
        key: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
        for key, sig in sorted(graphs[0].signature_def.items())
        if not key.startswith("__")
    }


def describe_signatures(saved_model_dir):
    """The signature table of an exported version directory, as printable text."""

    def fmt(tensors):
        def dims(shape):
            return "?" if shape is None else ", ".join("?" if d < 0 else str(d) for d in shape)

        return ", ".join(f"{name}: {dtype} [{dims(shape)}]" for name, (dtype, shape) in tensors.items())

    rows = [("signature", "inputs", "outputs")]
    for key, sig in read_signatures(saved_model_dir).items():
        rows.append((key, fmt(sig["inputs"]), fmt(sig["outputs"])))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows)
