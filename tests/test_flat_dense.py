"""FlatEinsumDense / FlatDense: the same numbers as EinsumDense / Dense as one 2-D matmul
(one-matmul kernel gradients), and bfloat16 products under `matmul_precision`."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import run_serialization_test
from test_case import tiny_backbone
from tf_esimcse.layers.flat_dense import FlatDense
from tf_esimcse.layers.flat_dense import FlatEinsumDense
from tf_esimcse.layers.flat_dense import _flat_plan
from tf_esimcse.layers.matmul_precision import current_matmul_precision
from tf_esimcse.layers.matmul_precision import matmul_precision

# (equation, output_shape, bias_axes, input shape): keras-hub's query/key/value and output
# projections, a plain dense, and an equation the flat path must leave to EinsumDense.
CASES = [
    ("abc,cde->abde", (None, 4, 8), "de", (3, 5, 16)),
    ("abcd,cde->abe", (None, 16), "e", (3, 5, 4, 8)),
    ("abc,cd->abd", (None, 7), "d", (3, 5, 16)),
    ("abc,dc->abd", (None, 7), "d", (3, 5, 16)),
]


def test_flat_plan():
    assert _flat_plan("abc,cde->abde") == (2, 1)
    assert _flat_plan("abcd,cde->abe") == (2, 2)
    assert _flat_plan("ab,bc->ac") == (1, 1)
    assert _flat_plan("abc,dc->abd") is None  # kernel contracted on its last axis
    assert _flat_plan("abc,cd->acd") is None  # output drops a batch axis
    assert _flat_plan("abc,abd->acd") is None
    assert _flat_plan("not an equation") is None


@pytest.mark.parametrize("equation,output_shape,bias_axes,input_shape", CASES)
def test_same_outputs_and_gradients_as_einsum_dense(equation, output_shape, bias_axes, input_shape):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=input_shape), tf.float32)
    kwargs = dict(equation=equation, output_shape=output_shape, bias_axes=bias_axes, activation="gelu")
    ref = keras.layers.EinsumDense(**kwargs)
    flat = FlatEinsumDense(**kwargs)
    ref.build(input_shape)
    flat.build(input_shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in ref.weights]
    ref.set_weights(weights)
    flat.set_weights(weights)

    def value_and_grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y))
        return y, tape.gradient(loss, [x] + layer.trainable_weights)

    y_ref, g_ref = value_and_grads(ref)
    y_flat, g_flat = value_and_grads(flat)
    assert y_flat.shape == y_ref.shape
    np.testing.assert_allclose(y_flat, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_flat, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dynamic_batch_and_length_in_a_graph():
    layer = FlatEinsumDense("abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de")
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, 8], tf.float32)])
    assert fn(tf.ones([3, 5, 8])).shape == (3, 5, 2, 4)
    assert fn(tf.ones([1, 2, 8])).shape == (1, 2, 2, 4)


def test_serialization():
    layer = FlatEinsumDense("abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de")
    restored = run_serialization_test(layer)
    assert type(restored) is FlatEinsumDense


def test_flat_dense_matches_dense():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(3, 5, 16)), tf.float32)
    ref, flat = keras.layers.Dense(24, activation="gelu"), FlatDense(24, activation="gelu")
    ref.build(x.shape)
    flat.build(x.shape)
    flat.set_weights(ref.get_weights())
    for layer_input in (x, x[0], tf.reshape(x, (3, 5, 1, 16))):
        np.testing.assert_allclose(flat(layer_input), ref(layer_input), rtol=1e-5, atol=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = tf.reduce_sum(tf.sin(ref(x))), tf.reduce_sum(tf.sin(flat(x)))
    for g_ref, g_flat in zip(tape.gradient(a, [x] + ref.trainable_weights), tape.gradient(b, [x] + flat.trainable_weights)):
        np.testing.assert_allclose(g_flat, g_ref, rtol=1e-4, atol=1e-4)
    assert type(run_serialization_test(flat)) is FlatDense


def _all_layers(layer):
    """`layer` and every layer reachable from its attributes (directly or in lists)."""
    found, stack = {}, [layer]
    while stack:
        current = stack.pop()
        if id(current) in found:
            continue
        found[id(current)] = current
        for value in vars(current).values():
            values = value if isinstance(value, (list, tuple)) else [value]
            stack.extend(v for v in values if isinstance(v, keras.layers.Layer))
    return list(found.values())


def test_bert_encoder_uses_flat_projections():
    backbone = tiny_backbone()
    for block in backbone.transformer_layers:
        attention = block.self_attention_layer
        assert all(type(layer) is FlatEinsumDense for layer in
                   (attention.query, attention.key, attention.value, attention.attention_output))
        assert type(block.feedforward_intermediate_dense) is FlatDense
        assert type(block.feedforward_output_dense) is FlatDense
    inner = [layer for block in backbone.transformer_layers for layer in _all_layers(block)]
    einsum_layers = [layer for layer in inner if isinstance(layer, keras.layers.EinsumDense)]
    dense_layers = [layer for layer in inner if isinstance(layer, keras.layers.Dense)]
    # query, key, value and output; feed-forward intermediate and output; in each of the 2 layers
    assert len(einsum_layers) == 4 * backbone.num_layers
    assert len(dense_layers) == 2 * backbone.num_layers
    assert all(type(layer) is FlatEinsumDense for layer in einsum_layers)
    assert all(type(layer) is FlatDense for layer in dense_layers)


def test_matmul_precision_context():
    assert current_matmul_precision() == "float32"
    with matmul_precision("bfloat16"):
        assert current_matmul_precision() == "bfloat16"
        with matmul_precision("float32"):
            assert current_matmul_precision() == "float32"
        assert current_matmul_precision() == "bfloat16"
    assert current_matmul_precision() == "float32"
    with pytest.raises(ValueError, match="float16"):
        with matmul_precision("float16"):
            pass


def test_bfloat16_products_only():
    """Under matmul_precision('bfloat16') the traced graph multiplies in bfloat16, returns
    float32, and stays within bfloat16 rounding of the float32 result."""
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(4, 6, 32)), tf.float32)
    layer = FlatEinsumDense("abc,cde->abde", output_shape=(None, 2, 16), bias_axes="de")
    layer.build(x.shape)
    exact = layer(x).numpy()
    with matmul_precision("bfloat16"):
        fn = tf.function(layer)
        concrete = fn.get_concrete_function(x)
    out = fn(x).numpy()
    assert out.dtype == np.float32
    matmuls = [op for op in concrete.graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2")]
    assert matmuls and all(op.inputs[0].dtype == tf.bfloat16 for op in matmuls)
    assert not np.array_equal(out, exact)
    # bfloat16 keeps 8 significand bits: relative error of a 32-term dot product ~ 2^-8
    scale = np.abs(exact).mean()
    assert np.abs(out - exact).max() < 0.05 * scale


def test_kernel_gradient_is_not_a_per_example_product():
    """Under XLA, no dot of the backward pass has the (batch, hidden, hidden) per-example shape
    that the broadcasting BatchMatMulV2 gradient produces."""
    batch, length = 6, 5
    backbone = tiny_backbone(dropout=0.0)
    hidden = backbone.hidden_dim
    inputs = {
        "token_ids": tf.ones([batch, length], tf.int32),
        "segment_ids": tf.zeros([batch, length], tf.int32),
        "padding_mask": tf.ones([batch, length], tf.int32),
    }

    @tf.function(jit_compile=True)
    def grads(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(backbone(inputs)["sequence_output"] ** 2)
        return tape.gradient(loss, backbone.trainable_variables[:0] + [
            v for v in backbone.trainable_variables if "transformer_layer" in v.path
        ])

    hlo = grads.experimental_get_compiler_ir(inputs)(stage="hlo")
    per_example = re.findall(rf"f32\[{batch},{hidden},{hidden}\]\S* dot\(", hlo)
    assert not per_example, per_example
    # ... and the attention kernels' gradients are plain (hidden x hidden) contractions.
    assert re.search(rf"f32\[{hidden},{hidden}\]\S* dot\(", hlo)
