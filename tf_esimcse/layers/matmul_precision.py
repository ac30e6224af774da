"""Matmul precision for inference: float32 (default) or bfloat16 products with float32 elsewhere.

On CPUs with AMX or AVX-512 BF16 units (AMX: Intel Sapphire Rapids and later; AVX-512 BF16 gives less),
TensorFlow's oneDNN kernels multiply bfloat16 matrices several times faster than float32 ones
(measured here: 1,065 against 230-270 GFLOP/s for a 4096 x 384 x 1536 product on 2 cores). A
Keras ``mixed_bfloat16`` policy gains nothing on such a CPU, because it also runs every
element-wise op (GELU, LayerNorm, softmax, residual adds) in bfloat16, where TensorFlow's
CPU kernels are slower than in float32.

`matmul_precision("bfloat16")` changes only the encoder's dense projections (`projection`):
inputs and kernel are rounded to bfloat16 and multiplied by oneDNN together with the bias and
activation fused into the same op, and the result is cast back to float32; everything else
(attention, LayerNorm, residuals) stays float32. Embeddings move by ~1e-4 (cosine to the float32
embedding >= 0.9999 on STS-B test for all-MiniLM-L6-v2). It only has an effect in plain graph
mode (XLA's CPU backend does not use the AMX units), i.e. for `SentenceEncoder.encode` and the
exported SavedModel, and only helps on CPUs with bfloat16 matrix units; elsewhere bfloat16
products are emulated and slower. It is read when a function is traced: use it around the
tracing (`SentenceEncoder.encode(precision=...)` and `export_for_serving(precision=...)` do).

This module uses TensorFlow ops, not `keras.ops`: the fusion depends on the exact TF graph.
"""
import contextlib
import threading

import tensorflow as tf

PRECISIONS = ("float32", "bfloat16")
_state = threading.local()


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown matmul precision {precision!r}: expected one of {PRECISIONS}.")
    return precision


def current_matmul_precision():
    """The precision set by the innermost `matmul_precision` block ("float32" outside any)."""
    return getattr(_state, "precision", "float32")


@contextlib.contextmanager
def matmul_precision(precision):
    """Within the block, dense projections traced by `projection_matmul` use `precision`."""
    check_precision(precision)
    previous = current_matmul_precision()
    _state.precision = precision
    try:
        yield
    finally:
        _state.precision = previous


def projection(x, kernel, bias=None, activation=None):
    """`activation(x @ kernel + bias)` for 2-D `x` (rows, in) and `kernel` (in, out), float32 out.

    Written as `MatMul -> BiasAdd -> activation` so that TensorFlow's oneDNN graph rewrite fuses
    the three into one `_MklNativeFusedMatMul` in graph mode (exact GELU included when written as
    `tf_esimcse.layers.transformer_layer.gelu_exact` or `tf.nn.gelu` write it); an `AddV2` bias, or anything between the
    ops, keeps them apart. In bfloat16 precision the fused op runs in bfloat16 and its result is
    cast back to float32 (the bias and activation then round to bfloat16 too: ~2^-9 relative).
    Under XLA all of this fuses anyway.
    """
    if current_matmul_precision() == "bfloat16" and x.dtype == "float32":
        y = tf.matmul(tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16))
        if bias is not None:
            y = tf.nn.bias_add(y, tf.cast(bias, tf.bfloat16))
        if activation is not None:
            y = activation(y)
        return tf.cast(y, tf.float32)
    y = tf.matmul(x, kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    if activation is not None:
        y = activation(y)
    return y
