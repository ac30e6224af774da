"""Training under tf.distribute equals training on one device.

With dropout off and the same global batch, one replica and two replicas (MirroredStrategy over
the two logical CPUs from conftest) give the same loss and the same weights after a few steps:
negatives are all-gathered across replicas, labels are offset by the replica id, the all-gather's
gradient is exact, and the ESimCSE queue/momentum updates are identical on every replica. The
multi-worker test runs two worker processes on 127.0.0.1 with TF_CONFIG.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse.backbones import BertEncoder
from tf_esimcse.models.esimcse import ESimCSE
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.models.simcse import SimCSE
from tf_esimcse.models.simcse import SupervisedSimCSE

HERE = pathlib.Path(__file__).resolve().parent
GLOBAL_BATCH = 8
STEPS = 3


def _data(kind, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 100, size=(GLOBAL_BATCH * STEPS, 10)).astype("int32")
    ids[:, 7:] = 0  # some padding too
    mask = (ids != 0).astype("int32")
    view = {"token_ids": ids, "padding_mask": mask}
    if kind == "simcse":
        return view
    if kind.startswith("supervised"):  # (anchor, entailment, contradiction) triplets: hard negatives are gathered too
        other = rng.integers(5, 100, size=ids.shape).astype("int32")
        negative = rng.integers(5, 100, size=ids.shape).astype("int32")
        batch = {"anchor": view, "positive": {"token_ids": other, "padding_mask": np.ones_like(other)},
                 "negative": {"token_ids": negative, "padding_mask": np.ones_like(negative)}}
        if kind == "supervised_neutral":  # + a neutral hypothesis: a second block of hard negatives
            neutral = rng.integers(5, 100, size=ids.shape).astype("int32")
            batch["neutral"] = {"token_ids": neutral, "padding_mask": np.ones_like(neutral)}
        return batch
    rep = ids.copy()
    rep[:, 1] = rep[:, 0]  # a different positive view, as word repetition makes one
    return {"anchor": view, "positive": {"token_ids": rep, "padding_mask": mask}}


def _build(kind, **kwargs):
    keras.utils.set_random_seed(0)
    backbone = BertEncoder(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                           max_sequence_length=32, dropout=0.0)
    encoder = SentenceEncoder(backbone, pooler_type="cls", mlp_only_train=True)
    if kind == "simcse":
        model = SimCSE(encoder, **kwargs)
    elif kind.startswith("supervised"):
        model = SupervisedSimCSE(encoder, alpha=2.0, **kwargs)
    else:
        model = ESimCSE(encoder, queue_size=12, **kwargs)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=False)
    return model


def _train(kind, strategy, **kwargs):
    with strategy.scope():
        model = _build(kind, **kwargs)
    ds = tf.data.Dataset.from_tensor_slices(_data(kind)).batch(GLOBAL_BATCH, drop_remainder=True)
    losses = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    model.fit(ds, epochs=1, verbose=0, shuffle=False, callbacks=[Record()])
    return model, np.array(losses)


@pytest.mark.large
# SimCSE and supervised SimCSE on two replicas: run_objective_test's check 4 (test_objectives.py);
# here the flat models with neutral hard negatives, and ESimCSE's queue on every replica.
@pytest.mark.parametrize("kind", ["supervised_neutral", "esimcse"])
def test_two_replicas_equal_one(kind, mirrored_strategy):
    single, single_losses = _train(kind, tf.distribute.get_strategy())
    mirrored, mirrored_losses = _train(kind, mirrored_strategy)
    assert mirrored_strategy.num_replicas_in_sync == 2
    assert len(single_losses) == STEPS
    # Keras reports the running mean of the loss tracker; the same on both.
    np.testing.assert_allclose(mirrored_losses, single_losses, atol=1e-5)
    for a, b in zip(single.encoder.get_weights(), mirrored.encoder.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5)
    if kind == "esimcse":
        for a, b in zip(single.momentum_backbone.get_weights(), mirrored.momentum_backbone.get_weights()):
            np.testing.assert_allclose(b, a, atol=1e-5)
        q1, m1 = single.queue.negatives()
        # every replica holds the same queue: the keys of the global batch
        for replica_queue in mirrored_strategy.experimental_local_results(mirrored.queue.queue.value):
            np.testing.assert_allclose(np.asarray(replica_queue), q1.numpy(), atol=1e-5)
        assert int(mirrored.queue.count.numpy()) == int(single.queue.count.numpy()) == 12


@pytest.mark.large
@pytest.mark.parametrize("kind", ["simcse", "esimcse"])
def test_gathered_negatives_are_used(kind, mirrored_strategy):
    """Per-replica-only negatives give a different loss: the gather really matters."""
    _, gathered = _train(kind, mirrored_strategy)
    _, local_only = _train(kind, mirrored_strategy, cross_replica_negatives=False)
    assert abs(gathered[0] - local_only[0]) > 1e-3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.large
@pytest.mark.parametrize("kind", ["simcse", "esimcse"])
def test_multi_worker_equals_single_process(kind, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    worker = str(HERE / "multiworker_worker.py")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, worker, str(tmp_path / f"worker{index}.npz"), kind],
            env=dict(env, TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    single = subprocess.run([sys.executable, worker, str(tmp_path / "single.npz"), kind], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    w0, w1, one = (np.load(tmp_path / f) for f in ("worker0.npz", "worker1.npz", "single.npz"))
    np.testing.assert_allclose(w0["loss"], one["loss"], atol=1e-5)
    np.testing.assert_allclose(w1["loss"], one["loss"], atol=1e-5)
    weight_keys = [k for k in one.files if k.startswith("w")]
    assert weight_keys
    for k in weight_keys:
        np.testing.assert_array_equal(w0[k], w1[k])  # identical on both workers
        np.testing.assert_allclose(w0[k], one[k], atol=1e-5)


@pytest.mark.large
def test_gradient_clipping_is_of_the_global_gradient(mirrored_strategy):
    """max_grad_norm clips the summed gradient: two replicas equal one device, and the small norm
    really clips (the weights differ from an unclipped run)."""
    single, _ = _train("simcse", tf.distribute.get_strategy(), max_grad_norm=1e-3)
    mirrored, _ = _train("simcse", mirrored_strategy, max_grad_norm=1e-3)
    unclipped, _ = _train("simcse", tf.distribute.get_strategy())
    for a, b in zip(single.encoder.get_weights(), mirrored.encoder.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5)
    differences = [np.abs(a - b).max() for a, b in zip(single.encoder.get_weights(), unclipped.encoder.get_weights())]
    assert max(differences) > 1e-4
