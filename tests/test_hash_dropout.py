"""HashDropout: Keras dropout semantics with a counter-based hash RNG inside XLA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import run_serialization_test
from test_case import tiny_backbone
from tf_esimcse.layers.hash_dropout import HashDropout
from tf_esimcse.layers.hash_dropout import hash_dropout
from tf_esimcse.layers.hash_dropout import hash_random_bits
from tf_esimcse.layers.hash_dropout import in_xla_context

SHAPE = (64, 32, 96)  # 196,608 elements


def _bits(seed, shape=SHAPE):
    return hash_random_bits(tf.constant(shape), tf.constant(seed, tf.int64)).numpy()


def test_bits_are_uniform_and_unbiased():
    bits = _bits([123, 7]).ravel().astype(np.float64)
    n = bits.size
    u = bits / 2**32
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    # every bit position is set half of the time
    words = _bits([123, 7]).ravel()
    for bit in range(32):
        frac = ((words >> np.uint32(bit)) & 1).mean()
        assert abs(frac - 0.5) < 4 * 0.5 / np.sqrt(n), bit
    # 16-bin histogram within 5 sigma of flat
    counts = np.bincount((u * 16).astype(int), minlength=16)
    expected = n / 16
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_neighbours_and_seeds_are_uncorrelated():
    u = _bits([5, 0]).ravel() / 2**32
    n = u.size
    for lag in (1, 2, 96, 32 * 96):
        r = np.corrcoef(u[:-lag], u[lag:])[0, 1]
        assert abs(r) < 5 / np.sqrt(n), (lag, r)
    # consecutive seeds (what a SeedGenerator hands out) and different first words
    for other in ([5, 1], [6, 0], [5, 2**31 + 1]):
        v = _bits(other).ravel() / 2**32
        assert abs(np.corrcoef(u, v)[0, 1]) < 5 / np.sqrt(n), other
        assert (u == v).mean() < 1e-3


def test_the_two_views_of_a_simcse_batch_get_independent_masks():
    """SimCSE feeds both views of a sentence in one batch (rows i and i + N): their keep
    decisions must be independent (a shared mask would make the positive pair trivial)."""
    n, length, hidden = 32, 16, 64
    for seed in ([12345, 7], [5, 0]):
        keep = _bits(seed, shape=(2 * n, length, hidden)) >= np.uint32(round(0.1 * 2**32))
        first, second = keep[:n].ravel(), keep[n:].ravel()
        assert abs((first & second).mean() - first.mean() * second.mean()) < 5 * 0.09 / np.sqrt(first.size)
        assert abs(np.corrcoef(first, second)[0, 1]) < 5 / np.sqrt(first.size)


def test_deterministic_and_the_same_under_xla_and_graph():
    x = tf.random.stateless_normal(SHAPE, seed=[1, 2])
    seed = tf.constant([9, 4], tf.int64)
    eager = hash_dropout(x, 0.1, seed)
    graph = tf.function(lambda x, s: hash_dropout(x, 0.1, s))(x, seed)
    xla = tf.function(lambda x, s: hash_dropout(x, 0.1, s), jit_compile=True)(x, seed)
    np.testing.assert_array_equal(eager.numpy(), graph.numpy())
    np.testing.assert_array_equal(eager.numpy(), xla.numpy())


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_rate_and_scaling(rate):
    x = tf.ones(SHAPE)
    y = hash_dropout(x, rate, tf.constant([3, 3])).numpy()
    dropped = (y == 0).mean()
    n = y.size
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(np.unique(y[y != 0]), [1 / (1 - rate)], rtol=1e-6)


def test_extreme_rates():
    x = tf.ones([4, 5])
    np.testing.assert_array_equal(hash_dropout(x, 0.0, tf.constant([1, 1])).numpy(), x.numpy())
    np.testing.assert_array_equal(hash_dropout(x, 1.0, tf.constant([1, 1])).numpy(), np.zeros([4, 5]))


def test_in_xla_context():
    assert not in_xla_context()
    assert bool(tf.function(lambda: tf.constant(in_xla_context()), jit_compile=True)())
    assert not bool(tf.function(lambda: tf.constant(in_xla_context()))())


def test_layer_under_xla_draws_a_new_mask_each_call_and_keeps_gradients():
    layer = HashDropout(0.2, seed=1)
    x = tf.ones([16, 64])

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return y, tape.gradient(loss, x)

    y1, g1 = step(x)
    y2, _ = step(x)
    assert not np.array_equal(y1.numpy(), y2.numpy())
    assert abs((y1.numpy() == 0).mean() - 0.2) < 0.05
    # d/dx sum(y^2) = 2 y / (1 - rate) where kept, 0 where dropped
    np.testing.assert_allclose(g1.numpy(), 2 * y1.numpy() / 0.8, rtol=1e-6)
    # inference: identity
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())


def test_layer_outside_xla_is_keras_dropout():
    """Eagerly / in graph mode it is exactly keras.layers.Dropout (TF's Philox kernel)."""
    x = tf.ones([8, 32])
    ours = HashDropout(0.3, seed=5)
    keras_layer = keras.layers.Dropout(0.3, seed=5)
    np.testing.assert_array_equal(ours(x, training=True).numpy(), keras_layer(x, training=True).numpy())


def test_serialization():
    restored = run_serialization_test(HashDropout(0.1, seed=3))
    assert type(restored) is HashDropout


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


def _dropout_sites(backbone):
    """The embeddings' dropout and each block's (attention probabilities, attention output,
    feed-forward output)."""
    sites = [backbone.embeddings_dropout]
    for block in backbone.transformer_layers:
        sites += [block.self_attention_layer.attention_dropout, block.self_attention_dropout, block.feedforward_dropout]
    return sites


def test_bert_encoder_fast_dropout_setting():
    fast = tiny_backbone()
    assert fast.fast_dropout is True
    assert all(type(layer) is HashDropout for layer in _dropout_sites(fast))
    dropouts = [layer for layer in _all_layers(fast) if isinstance(layer, keras.layers.Dropout)]
    # embeddings + (attention probabilities, attention output, feed-forward output) per layer
    assert len(dropouts) == 1 + 3 * fast.num_layers
    assert all(type(layer) is HashDropout for layer in dropouts)
    plain = tiny_backbone(fast_dropout=False)
    assert all(type(layer) is keras.layers.Dropout for layer in _dropout_sites(plain))
    assert not any(isinstance(layer, HashDropout) for layer in _all_layers(plain))
    assert run_serialization_test(plain).fast_dropout is False


def test_bert_encoder_dropout_statistics_under_xla():
    """Train-mode outputs under XLA vary between calls and stay centred on the inference output."""
    backbone = tiny_backbone(dropout=0.1)
    inputs = {
        "token_ids": tf.constant(np.arange(4 * 12).reshape(4, 12) % 20 + 5, tf.int32),
        "segment_ids": tf.zeros([4, 12], tf.int32),
        "padding_mask": tf.ones([4, 12], tf.int32),
    }
    train = tf.function(lambda x: backbone(x, training=True)["sequence_output"], jit_compile=True)
    a, b = train(inputs).numpy(), train(inputs).numpy()
    assert not np.allclose(a, b)
    clean = backbone(inputs, training=False)["sequence_output"].numpy()
    no_dropout = tiny_backbone(dropout=0.0)
    no_dropout.set_weights(backbone.get_weights())
    np.testing.assert_allclose(
        tf.function(lambda x: no_dropout(x, training=True)["sequence_output"], jit_compile=True)(inputs).numpy(),
        clean, atol=1e-5,
    )


def test_from_pretrained_fast_dropout_flag(tmp_path):
    from test_case import tiny_encoder, write_tiny_model_dir

    model_dir = write_tiny_model_dir(tmp_path / "tiny")
    fast = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True)
    plain = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True, fast_dropout=False)
    assert fast.backbone.fast_dropout and not plain.backbone.fast_dropout
    assert all(type(layer) is HashDropout for layer in _dropout_sites(fast.backbone))
    assert not any(isinstance(layer, HashDropout) for layer in _all_layers(plain.backbone))
    # the same weights and, without dropout, the same embeddings
    batch = {k: v for k, v in fast.preprocessor(tf.constant(["the cat sat .", "hello world"])).items()}
    np.testing.assert_allclose(fast(batch, training=False).numpy(), plain(batch, training=False).numpy(), atol=1e-6)
