"""Matmul precision for inference: float32 (default) or bfloat16 products with float32 elsewhere.

On CPUs with AMX or AVX-512 BF16 units (AMX: Intel Sapphire Rapids and later; AVX-512 BF16 gives less),
TensorFlow's oneDNN kernels multiply bfloat16 matrices several times faster than float32 ones
(measured here: 1,065 against 230-270 GFLOP/s for a 4096 x 384 x 1536 product on 2 cores). A
Keras ``mixed_bfloat16`` policy gains nothing on such a CPU, because it also runs every
element-wise op (GELU, LayerNorm, softmax, residual adds) in bfloat16, where TensorFlow's
CPU kernels are slower than in float32.

`matmul_precision("bfloat16")` changes only the products of the encoder's dense projections:
inputs and kernel are rounded to bfloat16, multiplied by oneDNN, and the result is cast back to
float32; everything else stays float32. Embeddings move by ~1e-4 (cosine to the float32
embedding >= 0.9999 on STS-B test for all-MiniLM-L6-v2). It only has an effect in plain graph
mode (XLA's CPU backend does not use the AMX units), i.e. for `SentenceEncoder.encode` and the
exported SavedModel, and only helps on CPUs with bfloat16 matrix units; elsewhere bfloat16
products are emulated and slower. It is read when a function is traced: use it around the
tracing (`SentenceEncoder.encode(precision=...)` and `export_for_serving(precision=...)` do).
"""
import contextlib
import threading

import keras

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


def projection_matmul(x, kernel):
    """`x @ kernel` for 2-D `x` and `kernel`, in the current matmul precision, float32 out."""
    if current_matmul_precision() == "bfloat16" and x.dtype == "float32":
        product = keras.ops.matmul(keras.ops.cast(x, "bfloat16"), keras.ops.cast(kernel, "bfloat16"))
        return keras.ops.cast(product, "float32")
    return keras.ops.matmul(x, kernel)
