"""Tests for the momentum encoder's parts: `ema_update` (`tf_esimcse.objectives.esimcse`) and
`clone_frozen` (`tf_esimcse.models.sentence_encoder`, behind `SentenceEncoder.copy_backbone`)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse.models.sentence_encoder import clone_frozen
from tf_esimcse.objectives.esimcse import ema_update

SHAPES = [(4, 3), (3,), ()]


def _variables(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [tf.Variable(rng.normal(size=shape).astype(np.float32)) for shape in shapes]


def _numpy(variables):
    return [v.numpy().copy() for v in variables]


@pytest.mark.parametrize("use_tf_function", [False, True])
def test_ema_update_matches_numpy_over_steps(use_tf_function):
    m = 0.995
    targets, sources = _variables(0), _variables(1)
    expected = _numpy(targets)
    update = tf.function(ema_update) if use_tf_function else ema_update
    rng = np.random.default_rng(2)
    for _ in range(5):
        # The online weights move between steps, as the optimizer would move them.
        for source in sources:
            source.assign(source.numpy() + rng.normal(size=source.shape).astype(np.float32))
        update(targets, sources, m)
        expected = [m * e + (1 - m) * s.numpy() for e, s in zip(expected, sources)]
        for target, want in zip(targets, expected):
            np.testing.assert_allclose(target.numpy(), want, rtol=1e-6, atol=1e-6)


def test_ema_update_momentum_zero_copies_and_one_keeps():
    targets, sources = _variables(0), _variables(1)
    before = _numpy(targets)
    ema_update(targets, sources, 1.0)
    for target, want in zip(targets, before):
        np.testing.assert_array_equal(target.numpy(), want)
    ema_update(targets, sources, 0.0)
    for target, source in zip(targets, sources):
        np.testing.assert_array_equal(target.numpy(), source.numpy())


def test_ema_update_accepts_tensor_momentum_and_keras_variables():
    targets = [keras.Variable(np.ones((2, 2), np.float32))]
    sources = [keras.Variable(np.zeros((2, 2), np.float32))]
    momentum = tf.Variable(0.75)
    ema_update(targets, sources, momentum)
    np.testing.assert_allclose(targets[0].numpy(), np.full((2, 2), 0.75))
    momentum.assign(0.5)
    ema_update(targets, sources, tf.convert_to_tensor(momentum))
    np.testing.assert_allclose(targets[0].numpy(), np.full((2, 2), 0.375))


def test_ema_update_errors():
    targets, sources = _variables(0), _variables(1)
    with pytest.raises(ValueError, match="same length"):
        ema_update(targets, sources[:2], 0.9)
    with pytest.raises(ValueError, match="Shape mismatch at index 0"):
        ema_update(targets[:1], [tf.Variable(np.zeros((3, 4), np.float32))], 0.9)
    with pytest.raises(ValueError, match="floating-point"):
        ema_update([tf.Variable(1)], [tf.Variable(2)], 0.9)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ema_update(targets, sources, 1.5)
    with pytest.raises(ValueError, match="list of variables"):
        ema_update(targets[0], sources[0], 0.5)


def _functional_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="tanh")(inputs)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.LayerNormalization()(x)
    outputs = keras.layers.Dense(4)(x)
    return keras.Model(inputs, outputs)


def test_clone_frozen_functional_model():
    model = _functional_model()
    clone = clone_frozen(model)
    assert type(clone) is type(model)
    assert clone.trainable is False and clone.trainable_weights == []
    assert model.trainable is True and len(model.trainable_weights) == len(model.weights)
    assert [v.path for v in clone.weights] == [v.path for v in model.weights]

    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), rtol=1e-6)

    # Independent variables: changing either model leaves the other alone.
    before_clone = [w.copy() for w in clone.get_weights()]
    model.weights[0].assign(model.weights[0] + 1.0)
    for now, before in zip(clone.get_weights(), before_clone):
        np.testing.assert_array_equal(now, before)
    before_model = [w.copy() for w in model.get_weights()]
    clone.weights[1].assign(clone.weights[1] - 1.0)
    for now, before in zip(model.get_weights(), before_model):
        np.testing.assert_array_equal(now, before)

    # ema_update pairs clone.weights with model.weights.
    ema_update(clone.weights, model.weights, 0.0)
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), rtol=1e-6)


class Projector(keras.Model):
    """A subclassed model with its own config, built by calling it."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(units)

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


@pytest.mark.parametrize("pass_inputs", [False, True])
def test_clone_frozen_subclassed_model(pass_inputs):
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    model = Projector(units=2)
    model(x)
    clone = clone_frozen(model, inputs=x if pass_inputs else None)
    assert isinstance(clone, Projector) and clone.units == 2
    assert clone.trainable is False
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-6)
    model.out.kernel.assign(model.out.kernel + 1.0)
    assert not np.allclose(clone(x), model(x))


def test_clone_frozen_requires_built_model():
    with pytest.raises(ValueError, match="must be built"):
        clone_frozen(Projector())
    with pytest.raises(ValueError, match="keras.Model"):
        clone_frozen(keras.layers.Dense(2))


def test_ema_update_of_clone_under_mirrored_strategy(mirrored_strategy):
    """The lead's use: clone under the scope, EMA update inside the replica context."""
    strategy = mirrored_strategy
    m = 0.9
    with strategy.scope():
        model = _functional_model(seed=3)
        clone = clone_frozen(model)
    assert isinstance(clone.weights[0].value, tf.distribute.DistributedValues)
    # Move the online model away from the clone.
    for v in model.weights:
        v.assign(v + 0.5)
    expected = [m * c + (1 - m) * s for c, s in zip(clone.get_weights(), model.get_weights())]

    @tf.function
    def step():
        strategy.run(lambda: ema_update(clone.weights, model.weights, m))

    step()
    for variable, want in zip(clone.weights, expected):
        for local in strategy.experimental_local_results(variable.value):
            np.testing.assert_allclose(local.numpy(), want, rtol=1e-6, atol=1e-6)

    # Cross-replica context (outside strategy.run) also works.
    ema_update(clone.weights, model.weights, 0.0)
    for variable, source in zip(clone.weights, model.weights):
        for local in strategy.experimental_local_results(variable.value):
            np.testing.assert_allclose(local.numpy(), source.numpy(), rtol=1e-6)
