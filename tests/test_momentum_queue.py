"""Tests for `tf_esimcse.layers.momentum_queue.MomentumQueue`."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse.layers.momentum_queue import MomentumQueue

SIZE = 5
DIM = 3


class RingReference:
    """NumPy reference: writes rows one at a time into a ring buffer."""

    def __init__(self, size, dim):
        self.queue = np.zeros((size, dim), np.float32)
        self.pointer = 0
        self.count = 0
        self.size = size
        self.history = []

    def enqueue(self, keys):
        for row in keys:
            self.queue[self.pointer] = row
            self.pointer = (self.pointer + 1) % self.size
            self.count = min(self.count + 1, self.size)
            self.history.append(row)

    def mask(self):
        return np.arange(self.size) < self.count


def _batches(sizes, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(b, dim)).astype(np.float32) for b in sizes]


# Batch sizes exercising partial fill, exact fill, wrap-around, b == size, b > size and b == 0.
BATCH_SIZES = [2, 2, 3, SIZE, 1, 2 * SIZE + 2, 0, 4, SIZE + 1, 3]


def _assert_matches(queue, ref):
    embeddings, mask = queue.negatives()
    np.testing.assert_array_equal(embeddings.numpy(), ref.queue)
    np.testing.assert_array_equal(mask.numpy(), ref.mask())
    assert int(queue.pointer.numpy()) == ref.pointer
    assert int(queue.count.numpy()) == ref.count


def _assert_chronological(queue, ref):
    """Filled rows, read from the oldest slot, are the most recent keys in arrival order."""
    embeddings, _ = queue.negatives()
    count, pointer = int(queue.count.numpy()), int(queue.pointer.numpy())
    oldest = pointer if count == queue.size else 0
    ordered = np.roll(embeddings.numpy(), -oldest, axis=0)[:count]
    np.testing.assert_array_equal(ordered, np.stack(ref.history[-count:]))


def test_variables_created_in_init_when_dim_given():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    assert queue.built
    assert len(queue.weights) == 3
    assert len(queue.non_trainable_weights) == 3
    assert queue.trainable_weights == []
    assert tuple(queue.queue.shape) == (SIZE, DIM)
    assert queue.queue.dtype == "float32"
    assert queue.pointer.dtype == "int64" and queue.count.dtype == "int64"
    embeddings, mask = queue.negatives()
    assert not mask.numpy().any()
    assert float(queue.fill) == 0.0


def test_lazy_build_on_first_enqueue():
    queue = MomentumQueue(size=SIZE)
    assert not queue.built and queue.dim is None
    with pytest.raises(ValueError, match="not built"):
        queue.negatives()
    queue.enqueue(np.ones((2, DIM), np.float32))
    assert queue.built and queue.dim == DIM
    assert len(queue.weights) == 3


def test_invalid_arguments():
    with pytest.raises(ValueError, match="size"):
        MomentumQueue(size=0)
    with pytest.raises(ValueError, match="dim"):
        MomentumQueue(size=4, dim=-1)
    queue = MomentumQueue(size=4, dim=DIM)
    with pytest.raises(ValueError, match="dim"):
        queue.enqueue(np.ones((2, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="shape"):
        queue.enqueue(np.ones((2, 1, DIM), np.float32))
    with pytest.raises(ValueError, match="embedding size"):
        MomentumQueue(size=4).build(None)


def test_fifo_order_against_numpy():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    ref = RingReference(SIZE, DIM)
    for keys in _batches(BATCH_SIZES):
        count = queue.enqueue(keys)
        ref.enqueue(keys)
        assert int(count) == ref.count
        _assert_matches(queue, ref)
        if ref.count:
            _assert_chronological(queue, ref)


def test_batch_larger_than_queue_keeps_last_rows():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    queue.enqueue(np.full((3, DIM), -1.0, np.float32))  # pointer at 3
    keys = np.arange(12 * DIM, dtype=np.float32).reshape(12, DIM)
    queue.enqueue(keys)
    embeddings, mask = queue.negatives()
    assert mask.numpy().all()
    assert int(queue.pointer.numpy()) == (3 + 12) % SIZE
    # The last SIZE keys, each in the slot it would reach when written one by one.
    assert sorted(map(tuple, embeddings.numpy())) == sorted(map(tuple, keys[-SIZE:]))
    oldest_first = np.roll(embeddings.numpy(), -int(queue.pointer.numpy()), axis=0)
    np.testing.assert_array_equal(oldest_first, keys[-SIZE:])


def test_batch_equal_to_queue_size():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    queue.enqueue(np.zeros((2, DIM), np.float32))
    keys = np.arange(SIZE * DIM, dtype=np.float32).reshape(SIZE, DIM)
    queue.enqueue(keys)
    assert int(queue.pointer.numpy()) == 2
    np.testing.assert_array_equal(np.roll(queue.negatives()[0].numpy(), -2, 0), keys)


def test_partial_fill_mask_and_fill():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    keys = np.ones((2, DIM), np.float32)
    queue.enqueue(keys)
    embeddings, mask = queue.negatives()
    np.testing.assert_array_equal(mask.numpy(), [True, True, False, False, False])
    np.testing.assert_array_equal(embeddings.numpy()[:2], keys)
    np.testing.assert_allclose(float(queue.fill), 2 / SIZE)
    queue.enqueue(np.ones((4, DIM), np.float32))
    assert queue.negatives()[1].numpy().all()
    assert float(queue.fill) == 1.0


def test_reset():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    queue.enqueue(np.ones((7, DIM), np.float32))
    queue.reset()
    embeddings, mask = queue.negatives()
    assert not mask.numpy().any()
    assert int(queue.pointer.numpy()) == 0 and int(queue.count.numpy()) == 0
    assert not embeddings.numpy().any()
    assert float(queue.fill) == 0.0
    # After a reset, filling starts again from slot 0.
    queue.enqueue(np.full((1, DIM), 2.0, np.float32))
    np.testing.assert_array_equal(queue.negatives()[1].numpy(), [True, False, False, False, False])


def test_call_returns_negatives_eager_and_symbolic():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    queue.enqueue(np.ones((2, DIM), np.float32))
    embeddings, mask = queue()
    np.testing.assert_array_equal(mask.numpy(), queue.negatives()[1].numpy())
    symbolic = MomentumQueue(size=SIZE)
    out_embeddings, out_mask = symbolic(keras.Input((DIM,)))
    assert symbolic.built and symbolic.dim == DIM
    assert tuple(out_embeddings.shape) == (SIZE, DIM) and out_mask.dtype == "bool"


def test_queue_stays_float32_under_mixed_precision():
    queue = MomentumQueue(size=SIZE, dim=DIM, dtype="mixed_float16")
    queue.enqueue(tf.ones((2, DIM), tf.float16))
    embeddings, _ = queue(tf.ones((2, DIM), tf.float16))
    assert embeddings.dtype == tf.float32


def test_enqueue_inside_tf_function():
    queue = MomentumQueue(size=SIZE, dim=DIM)
    ref = RingReference(SIZE, DIM)

    @tf.function(input_signature=[tf.TensorSpec((None, DIM), tf.float32)])
    def step(keys):
        queue.enqueue(keys)
        return queue.negatives()

    for keys in _batches(BATCH_SIZES, seed=1):
        embeddings, mask = step(keys)
        ref.enqueue(keys)
        np.testing.assert_array_equal(embeddings.numpy(), ref.queue)
        np.testing.assert_array_equal(mask.numpy(), ref.mask())
    # One trace for all batch sizes.
    assert step.experimental_get_tracing_count() == 1

    @tf.function
    def reset_and_fill():
        queue.reset()
        return queue.fill

    assert float(reset_and_fill()) == 0.0


def test_enqueue_under_mirrored_strategy(mirrored_strategy):
    strategy = mirrored_strategy
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        queue = MomentumQueue(size=SIZE, dim=DIM)
    assert isinstance(queue.queue.value, tf.distribute.DistributedValues)
    ref = RingReference(SIZE, DIM)

    @tf.function
    def step(keys):
        # Same (e.g. all-gathered) keys on every replica.
        return strategy.run(lambda k: (queue.enqueue(k), queue.negatives()), args=(keys,))

    for keys in _batches([3, 4, 2 * SIZE + 1, SIZE], seed=2):
        count, (embeddings, mask) = step(tf.constant(keys))
        ref.enqueue(keys)
        for replica_embeddings, replica_mask in zip(
            strategy.experimental_local_results(embeddings),
            strategy.experimental_local_results(mask),
        ):
            np.testing.assert_array_equal(replica_embeddings.numpy(), ref.queue)
            np.testing.assert_array_equal(replica_mask.numpy(), ref.mask())
        expected_state = (
            (queue.queue, ref.queue),
            (queue.pointer, ref.pointer),
            (queue.count, ref.count),
        )
        for variable, expected in expected_state:
            for local in strategy.experimental_local_results(variable.value):
                np.testing.assert_array_equal(local.numpy(), expected)

    # Reset inside a replica context empties every copy.
    strategy.run(tf.function(queue.reset))
    for local in strategy.experimental_local_results(queue.count.value):
        assert int(local.numpy()) == 0
    # Cross-replica enqueue also works.
    queue.enqueue(np.ones((2, DIM), np.float32))
    for local in strategy.experimental_local_results(queue.count.value):
        assert int(local.numpy()) == 2


def test_mirrored_queue_checkpoint_restores_into_plain_queue(tmp_path, mirrored_strategy):
    strategy = mirrored_strategy
    with strategy.scope():
        queue = MomentumQueue(size=SIZE, dim=DIM)
    keys = _batches([SIZE + 2], seed=5)[0]
    strategy.run(tf.function(queue.enqueue), args=(tf.constant(keys),))
    path = tf.train.Checkpoint(queue=queue).save(str(tmp_path / "ckpt"))
    restored = MomentumQueue(size=SIZE, dim=DIM)
    tf.train.Checkpoint(queue=restored).restore(path).assert_consumed()
    ref = RingReference(SIZE, DIM)
    ref.enqueue(keys)
    _assert_matches(restored, ref)


def _filled_queue(seed=3):
    queue = MomentumQueue(size=SIZE, dim=DIM)
    for keys in _batches([4, 3], seed=seed):
        queue.enqueue(keys)
    return queue


def _assert_same_state(a, b):
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_tf_train_checkpoint_round_trip(tmp_path):
    queue = _filled_queue()
    path = tf.train.Checkpoint(queue=queue).save(str(tmp_path / "ckpt"))
    restored = MomentumQueue(size=SIZE, dim=DIM)
    tf.train.Checkpoint(queue=restored).restore(path).assert_consumed()
    _assert_same_state(queue, restored)
    # The restored queue keeps behaving as a FIFO from the restored pointer.
    keys = np.full((1, DIM), 9.0, np.float32)
    queue.enqueue(keys)
    restored.enqueue(keys)
    _assert_same_state(queue, restored)


class TinyModel(keras.Model):
    """A dense layer plus a queue, as a stand-in for the ESimCSE model."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(DIM)
        self.queue = MomentumQueue(size=SIZE, dim=DIM)

    def call(self, inputs):
        return self.dense(inputs)


def test_keras_save_and_load_weights(tmp_path):
    model = TinyModel()
    model(np.zeros((1, 4), np.float32))
    for keys in _batches([4, 3], seed=4):
        model.queue.enqueue(keys)
    path = str(tmp_path / "tiny.weights.h5")
    model.save_weights(path)

    restored = TinyModel()
    restored(np.zeros((1, 4), np.float32))
    assert not restored.queue.negatives()[1].numpy().any()
    restored.load_weights(path)
    _assert_same_state(model.queue, restored.queue)
    np.testing.assert_array_equal(model.dense.kernel.numpy(), restored.dense.kernel.numpy())


def test_get_config_round_trip_and_serialization():
    queue = MomentumQueue(size=7, dim=DIM, name="negatives_queue")
    config = queue.get_config()
    assert config["size"] == 7 and config["dim"] == DIM
    json.dumps(config)
    clone = MomentumQueue.from_config(config)
    assert clone.get_config() == config
    assert clone.built and len(clone.weights) == 3

    serialized = keras.saving.serialize_keras_object(queue)
    assert serialized["registered_name"] == "tf_esimcse>MomentumQueue"
    json.dumps(serialized)
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert isinstance(revived, MomentumQueue)
    assert revived.get_config() == config

    lazy = MomentumQueue(size=4)
    assert MomentumQueue.from_config(lazy.get_config()).dim is None
