"""What the ONNX and LiteRT exports convert: token ids in, the pooled, normalised embedding out.

`tf_esimcse.onnx_export` and `tf_esimcse.litert_export` each trace `embedding_function` (with
their own input dtypes) and hand it to their converter; the tokenizer is written beside the graph
(`st_export.write_tokenizer_files`), cut at `tokenizer_length`. Unlike the SavedModel
(`tf_esimcse.export`), these graphs hold no tokenizer: TF-Text's ops exist in neither runtime.
"""
import tensorflow as tf

from tf_esimcse.models.keras_hub_encoder import KerasHubEncoder
from tf_esimcse.models.sentence_encoder import SentenceEncoder

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embeddings"


def check_exportable(encoder, what):
    """Raise `TypeError` / `ValueError` (one line) unless `encoder` is a `SentenceEncoder` with a
    preprocessor (its vocabulary is written beside the graph). `what` names the export."""
    if not isinstance(encoder, SentenceEncoder):
        hint = " (pass its `.encoder`)" if isinstance(getattr(encoder, "encoder", None), SentenceEncoder) else ""
        raise TypeError(f"{what} takes a SentenceEncoder, got {type(encoder).__name__}{hint}.")
    if encoder.preprocessor is None:
        raise ValueError(f"this SentenceEncoder has no preprocessor: the {what} needs its tokenizer's vocabulary.")
    check_bert_family(encoder, what)


def check_bert_family(encoder, what):
    """Raise `ValueError` (one line) if `encoder`'s backbone is a wrapped keras-hub backbone
    (`KerasHubEncoder`): the ONNX, LiteRT and sentence-transformers exports write BERT/RoBERTa
    graphs and tokenizer files only; the SavedModel export takes every backbone."""
    inner = getattr(encoder.backbone, "backbone", None)
    if isinstance(encoder.backbone, KerasHubEncoder):
        raise ValueError(f"the {what} supports BERT and RoBERTa encoders only, not a keras-hub {type(inner).__name__}; "
                         "use the SavedModel export (export_for_serving, `tf-esimcse export`).")


def output_dim(encoder):
    """The size of the exported embeddings: the encoder's `truncate_dim` (`--dim`), else its full size."""
    return int(encoder.truncate_dim or encoder.embedding_dim)


def embedding_function(encoder):
    """`fn(input_ids, attention_mask) -> {"embeddings": float32 [batch, dim]}`: the encoder with
    dropout off, then L2 normalisation (the encoder's own, or added when it was built with
    `normalize=False`); with a `truncate_dim`, its first `dim` coordinates normalised again
    (`encoder.encode(dim=d)`'s rule, as the SavedModel). Ids of any integer dtype are cast to the
    int32 the encoder takes."""
    dim = output_dim(encoder)

    def fn(input_ids, attention_mask):
        x = encoder({"token_ids": tf.cast(input_ids, tf.int32), "padding_mask": tf.cast(attention_mask, tf.int32)},
                    training=False)
        x = tf.cast(x, tf.float32)
        if dim != encoder.embedding_dim:
            x = tf.math.l2_normalize(x[:, :dim], axis=-1)  # tf_esimcse.truncation.truncate's rule
        elif not encoder.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return {OUTPUT_NAME: x}

    return fn


def tokenizer_length(encoder):
    """The tokenizer's truncation length written beside the graph: the encoder's inference
    length, else the backbone's maximum (as `encode` never truncates further)."""
    return int(encoder.inference_length or encoder.backbone.max_sequence_length)


def export_metadata(encoder):
    """String metadata stored in the exported graphs (ONNX `metadata_props`)."""
    return {
        "producer": "tf_esimcse",
        "pooler": str(encoder.inference_settings()),
        "embedding_dim": str(output_dim(encoder)),
        "max_length": str(tokenizer_length(encoder)),
        "normalized": "true",
        "inputs": ",".join(INPUT_NAMES),
        "outputs": OUTPUT_NAME,
    }
