"""Export a `SentenceEncoder` as a LiteRT (TensorFlow Lite) flatbuffer, for Android, iOS and edge.

    path = export_litert(encoder, "exported/my_encoder_litert", quantize="int8")
    # elsewhere, without TensorFlow or this package (pip install ai-edge-litert):
    #   runner = ai_edge_litert.interpreter.Interpreter(model_path=".../model.tflite").get_signature_runner()
    #   runner(input_ids=ids, attention_mask=mask)["embeddings"]

Layout written:

    model.tflite                float32: input_ids, attention_mask: int32 [batch, length]
                                -> embeddings: float32 [batch, dim], unit rows
    model_int8.tflite           with quantize="int8": the same graph with dynamic-range int8
                                weights (about 4x smaller; activations stay float32)
    vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json
                                the tokenizer (`st_export.write_tokenizer_files`): the graph takes
                                token ids, `[CLS] ... [SEP]` then padding, mask 1 on real tokens

Token ids in, not strings: the encoder's tokenizer is TF-Text's WordPiece, whose ops are not
LiteRT builtins, so a string-in graph would need select-TF-ops (the TensorFlow kernels linked
into the app, tens of MB). Every op of these graphs is a LiteRT builtin: the export refuses
select-TF-ops. (To get there the exact GELU is traced as one recognisable pattern,
`tf_esimcse.layers.transformer_layer.portable_gelu`, which the converter maps to its `GELU`
kernel.) The interpreter's signature runner resizes the inputs to each call's batch and length.

Converter: `tf.lite.TFLiteConverter.from_saved_model` on a SavedModel written by Keras'
`keras.export.ExportArchive` (the path Keras' own `model.export(format="litert")` takes, without
its select-TF-ops fallback), with `tf.lite.Optimize.DEFAULT` and no representative dataset for
the int8 variant (dynamic-range quantization).

The directory is written into a hidden temporary directory beside `output_dir` and renamed into
place; an existing non-empty `output_dir` is replaced only with `overwrite=True`.
"""
import pathlib
import tempfile

import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.atomic_files import replace_directory
from tf_esimcse.errors import ExportError
from tf_esimcse.layers.transformer_layer import portable_gelu
from tf_esimcse.portable_graph import INPUT_NAMES, check_exportable, embedding_function, tokenizer_length
from tf_esimcse.st_export import write_tokenizer_files

MODEL_FILE = "model.tflite"
INT8_MODEL_FILE = "model_int8.tflite"
QUANTIZATIONS = (None, "int8")


def check_quantize(quantize):
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None (float32 only) or 'int8', got {quantize!r}.")
    return quantize


def _write_saved_model(encoder, directory):
    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    with portable_gelu():  # read while tracing: the endpoint is traced here and again when written
        archive.add_endpoint("serving_default", embedding_function(encoder), input_signature=spec)
        archive.write_out(str(directory), verbose=False)


def litert_flatbuffers(encoder, quantize=None):
    """`{file name: flatbuffer bytes}`: ``model.tflite`` and, with `quantize="int8"`,
    ``model_int8.tflite``.

    Raises:
        ExportError: one line, when the converter cannot take the encoder's graph with LiteRT
            builtin ops only.
    """
    check_quantize(quantize)
    flatbuffers = {}
    with tempfile.TemporaryDirectory(prefix="tf_esimcse_litert_") as saved_model:
        _write_saved_model(encoder, saved_model)
        for name, optimize in [(MODEL_FILE, False)] + ([(INT8_MODEL_FILE, True)] if quantize == "int8" else []):
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if optimize:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            try:
                flatbuffers[name] = converter.convert()
            except Exception as e:  # ConverterError carries pages of MLIR: keep its verdict
                lines = [line.strip() for line in str(e).splitlines() if line.strip()]
                select = [line.split(":", 1)[1].strip() for line in lines if line.startswith("TF Select ops:")]
                verdict = (f"TensorFlow ops with no LiteRT builtin: {select[0]}" if select
                           else next((line for line in lines if "not supported" in line),
                                     lines[0] if lines else type(e).__name__))
                raise ExportError(f"the LiteRT converter cannot take this encoder with builtin ops only: {verdict}") from e
    return flatbuffers


@tf_esimcse_export("export_litert")
def export_litert(encoder, output_dir, overwrite=False, quantize=None):
    """Write `encoder` as ``model.tflite`` (and ``model_int8.tflite``) plus its tokenizer files.

    See the module docstring for the layout, inputs and outputs. In the LiteRT interpreter the
    float32 model's embeddings equal `encoder.encode`'s (cosine >= 0.99999, tested in a fresh
    process without this package).

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` with a preprocessor (for its vocabulary).
        output_dir: str or path. The directory to write.
        overwrite: bool. Replace an existing non-empty `output_dir`. Defaults to `False`.
        quantize: `None` (float32 only) or `"int8"` (also the dynamic-range int8 model).
            Defaults to `None`.

    Returns:
        The absolute `pathlib.Path` of the directory.

    Raises:
        FileExistsError: `output_dir` exists and is not empty (without `overwrite`), or is a file.
        ExportError: the converter cannot take the encoder with LiteRT builtin ops (nothing is
            written).
        ValueError: an unknown `quantize`, a tokenizer with no Hugging Face equivalent, or no
            preprocessor.
    """
    check_exportable(encoder, "LiteRT export")
    check_quantize(quantize)
    path = pathlib.Path(output_dir).expanduser().resolve()
    with replace_directory(path, overwrite=overwrite) as tmp:
        for name, data in litert_flatbuffers(encoder, quantize=quantize).items():
            (tmp / name).write_bytes(data)
        write_tokenizer_files(encoder.preprocessor.tokenizer, tmp, tokenizer_length(encoder), tokenizer_json=True)
    return path
