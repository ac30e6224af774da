"""Smaller stored embeddings for search: int8 codes with calibration ranges, and sign bits.

    ranges = int8_ranges(corpus)              # float32 [2, dim]: per-dimension min and max
    codes = quantize_int8(corpus, ranges)      # int8 [n, dim]: 4x smaller than float32
    approx = dequantize_int8(codes, ranges)    # float32 [n, dim]: what a code stands for
    bits = binarize(corpus)                    # uint8 [n, ceil(dim / 8)]: 32x smaller, one bit a dimension

int8 (scalar quantization, as faiss's `ScalarQuantizer.QT_8bit` does it, so the faiss index and
the exact search score the same vectors): each dimension's range [min, max] over the corpus (its
calibration) is cut into 255 steps; a value x becomes the step it falls in,
`floor(255 * clip((x - min) / (max - min), 0, 1))`, stored minus 128 as an int8, and stands for the
middle of its step, `min + (code + 128 + 0.5) * (max - min) / 255`. A query is not rounded: its float
vector is scored against the dequantized corpus (the asymmetric distance faiss uses too).

binary: one bit a dimension, set where the value is > 0 (sentence-transformers' `ubinary`), packed
8 to a byte (NumPy's `packbits`, big-endian within a byte; the padding bits of a last partial byte
are 0 in every vector, so they never count). Two vectors' Hamming distance h estimates their angle:
`1 - 2 h / dim` is the cosine of two +-1 vectors.

Pure NumPy; searching these codes is `tf_esimcse.search`.
"""
import numpy as np

PRECISIONS = ("float32", "int8", "binary")
INT8_STEPS = 255


def check_precision(precision):
    """`precision` if it is one of PRECISIONS; else a ValueError naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision


def int8_ranges(embeddings):
    """Calibration ranges of `embeddings` [n, dim]: float32 [2, dim], row 0 the per-dimension
    minimum, row 1 the maximum."""
    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"int8 calibration needs a non-empty [n, dim] array, got shape {x.shape}")
    return np.stack([x.min(axis=0), x.max(axis=0)]).astype(np.float32)


def _min_and_step(ranges):
    ranges = np.asarray(ranges, np.float32)
    low, width = ranges[0], ranges[1] - ranges[0]
    return low, np.where(width > 0, width, np.float32(1.0)).astype(np.float32)


def quantize_int8(embeddings, ranges):
    """int8 codes [n, dim] of `embeddings` under `ranges` (values outside a range are clipped)."""
    low, width = _min_and_step(ranges)
    x = (np.asarray(embeddings, np.float32) - low) / width
    steps = np.floor(np.float32(INT8_STEPS) * np.clip(x, 0.0, 1.0))
    return (steps.astype(np.int16) - 128).astype(np.int8)


def int8_scale_and_offset(ranges):
    """`(scale, offset)`, float32 [dim] each, with dequantized = offset + scale * code for int8 codes."""
    low, width = _min_and_step(ranges)
    scale = (width / np.float32(INT8_STEPS)).astype(np.float32)
    return scale, (low + np.float32(128.5) * scale).astype(np.float32)


def dequantize_int8(codes, ranges):
    """The float32 vectors [n, dim] that int8 `codes` stand for (the middle of each step)."""
    scale, offset = int8_scale_and_offset(ranges)
    return offset + scale * np.asarray(codes, np.float32)


def binarize(embeddings):
    """Sign bits of `embeddings` [n, dim] (1 where > 0), packed: uint8 [n, ceil(dim / 8)]."""
    return np.packbits(np.asarray(embeddings) > 0, axis=-1)


def hamming_to_cosine(distances, dim):
    """The cosine of two +-1 vectors of `dim` dimensions that differ in `distances` places."""
    return 1.0 - 2.0 * np.asarray(distances, np.float32) / np.float32(dim)
