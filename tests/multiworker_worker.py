"""One worker of the multi-worker test (run as a subprocess by tests/test_distributed.py).

    python multiworker_worker.py OUT.npz          # TF_CONFIG set: MultiWorkerMirroredStrategy
                                                  # TF_CONFIG unset: one process, one device

Trains a tiny SimCSE or ESimCSE model (dropout off) for a few steps on a fixed global batch
and writes the per-step losses and the encoder weights to OUT.npz.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_esimcse.backbones import BertEncoder  # noqa: E402
from tf_esimcse.models.esimcse import ESimCSE  # noqa: E402
from tf_esimcse.models.sentence_encoder import SentenceEncoder  # noqa: E402
from tf_esimcse.models.simcse import SimCSE  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 3


def data(kind):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 100, size=(GLOBAL_BATCH * STEPS, 10)).astype("int32")
    view = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    return view if kind == "simcse" else {"anchor": view, "positive": view}


def build(kind):
    keras.utils.set_random_seed(0)
    backbone = BertEncoder(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                           max_sequence_length=32, dropout=0.0)
    encoder = SentenceEncoder(backbone, pooler_type="cls", mlp_only_train=True)
    model = SimCSE(encoder) if kind == "simcse" else ESimCSE(encoder, queue_size=12)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=False)
    return model


def main(out, kind):
    multi = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.get_strategy()
    with strategy.scope():
        model = build(kind)
    x = data(kind)
    global_ds = tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH, drop_remainder=True)
    # Default auto-sharding splits every global batch between the workers in replica order
    # (worker 0 rows [0, per), worker 1 rows [per, 2 * per)), so the replicas together see
    # exactly the single-process batches. (AutoShardPolicy.OFF would not: each worker would
    # iterate over all the per-replica slices.)
    dataset = global_ds
    history = model.fit(dataset, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    weights = {f"w{i}": np.asarray(w) for i, w in enumerate(model.encoder.get_weights())}
    np.savez(out, loss=np.array(history.history["loss"]), **weights)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "simcse")
