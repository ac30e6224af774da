"""Export a `SentenceEncoder` as an ONNX model, for ONNX Runtime (Python, C#, Java, C++, JS).

    path = export_onnx(encoder, "exported/my_encoder_onnx")
    # elsewhere, without TensorFlow or this package:
    #   session = onnxruntime.InferenceSession("exported/my_encoder_onnx/model.onnx")
    #   tokenizer = tokenizers.Tokenizer.from_file("exported/my_encoder_onnx/tokenizer.json")

Layout written:

    model.onnx                  the encoder with dropout off, its pooler and L2 normalisation:
                                input_ids, attention_mask: int64 [batch, length]
                                -> embeddings: float32 [batch, dim], unit rows
    tokenizer.json              the WordPiece tokenizer for Hugging Face `tokenizers` (adds
                                [CLS]/[SEP], truncates to the encoder's inference length)
    vocab.txt, tokenizer_config.json, special_tokens_map.json
                                the same tokenizer as `transformers.AutoTokenizer` files (the
                                sentence-transformers export's, `st_export.write_tokenizer_files`)

Unlike sentence-transformers' ONNX export, whose graph stops at the token embeddings, the pooling
and normalisation are inside the graph: the output is what `SentenceEncoder.encode` returns.
`input_ids` and `attention_mask` are what a Hugging Face tokenizer returns (int64, as Hugging
Face's and Optimum's ONNX models take them; `[CLS] ... [SEP]` then padding, mask 1 on real
tokens); there is no `token_type_ids` input (the encoder uses segment 0 throughout).

The converter is tf2onnx (`tf2onnx.convert.from_function`), the ONNX project's TensorFlow
converter, on a `tf.function` traced from the encoder. Keras' own `model.export(format="onnx")`
calls the same function on the TensorFlow backend; calling it directly lets the graph take the
Hugging Face input names and dtypes and end with the normalisation. The graph's metadata
(`onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map`) records the pooler,
the dimension and the tokenizer's length.

The directory is written into a hidden temporary directory beside `output_dir` and renamed into
place; an existing non-empty `output_dir` is replaced only with `overwrite=True`.
"""
import pathlib

import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.atomic_files import replace_directory
from tf_esimcse.errors import ExportError
from tf_esimcse.portable_graph import INPUT_NAMES, check_exportable, embedding_function, export_metadata, tokenizer_length
from tf_esimcse.st_export import write_tokenizer_files

MODEL_FILE = "model.onnx"
DEFAULT_OPSET = 17


def onnx_model_proto(encoder, opset=DEFAULT_OPSET):
    """The encoder as an `onnx.ModelProto` (see the module docstring), converted by tf2onnx.

    Raises:
        ExportError: one line, when tf2onnx cannot convert the encoder's graph.
    """
    # Optional dependencies (the `onnx` extra), imported only by this export.
    import tf2onnx

    spec = [tf.TensorSpec([None, None], tf.int64, name=name) for name in INPUT_NAMES]
    function = tf.function(embedding_function(encoder), input_signature=spec)
    try:
        model, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    except Exception as e:  # tf2onnx raises many types; say which model and why, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"tf2onnx could not convert this encoder to ONNX (opset {opset}): {first}") from e
    for key, value in export_metadata(encoder).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


@tf_esimcse_export("export_onnx")
def export_onnx(encoder, output_dir, overwrite=False, opset=DEFAULT_OPSET):
    """Write `encoder` as ``model.onnx`` plus its tokenizer files into `output_dir`.

    See the module docstring for the layout, inputs and outputs. In ONNX Runtime the embeddings
    equal `encoder.encode`'s (cosine >= 0.99999, tested in a process without TensorFlow).

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` with a preprocessor (for its vocabulary).
        output_dir: str or path. The directory to write.
        overwrite: bool. Replace an existing non-empty `output_dir`. Defaults to `False`.
        opset: int. The ONNX opset. Defaults to 17.

    Returns:
        The absolute `pathlib.Path` of the directory.

    Raises:
        FileExistsError: `output_dir` exists and is not empty (without `overwrite`), or is a file.
        ExportError: tf2onnx cannot convert the encoder (nothing is written).
        ValueError: a tokenizer with no Hugging Face equivalent, or no preprocessor.
    """
    check_exportable(encoder, "ONNX export")
    path = pathlib.Path(output_dir).expanduser().resolve()
    with replace_directory(path, overwrite=overwrite) as tmp:
        model = onnx_model_proto(encoder, opset=opset)
        (tmp / MODEL_FILE).write_bytes(model.SerializeToString())
        write_tokenizer_files(encoder.preprocessor.tokenizer, tmp, tokenizer_length(encoder), tokenizer_json=True)
    return path
