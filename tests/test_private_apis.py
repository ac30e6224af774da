"""The private Keras / TensorFlow APIs listed in `tf_esimcse/private_apis.py` still exist with
the shapes we rely on. If this fails after an upgrade, read that module's notes before anything
else: training behaviour (dropout under XLA, multi-worker fit, multi-worker logs) depends on it."""
import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse import private_apis


def test_keras_symbolic_build_hook_is_still_there():
    method = getattr(keras.Model, private_apis.KERAS_SYMBOLIC_BUILD_METHOD, None)
    assert method is not None, "keras.Model._maybe_symbolic_build is gone: see tf_esimcse/private_apis.py"
    params = list(inspect.signature(method).parameters)
    assert params[1:] == list(private_apis.KERAS_SYMBOLIC_BUILD_ARGS), params
    # Keras' TF trainer still calls it from fit (the reason we override it).
    from keras.src.backend.tensorflow import trainer

    assert private_apis.KERAS_SYMBOLIC_BUILD_METHOD in inspect.getsource(trainer.TensorFlowTrainer.fit)


def test_xla_context_query_still_answers():
    from tensorflow.python.ops import control_flow_util

    assert hasattr(control_flow_util, "GraphOrParentsInXlaContext")
    assert not private_apis.in_xla_context()
    assert bool(tf.function(lambda: tf.constant(private_apis.in_xla_context()), jit_compile=True)())
    assert not bool(tf.function(lambda: tf.constant(private_apis.in_xla_context()))())


def test_multi_worker_query_still_answers():
    assert private_apis.in_multi_worker_mode() is False
    assert hasattr(tf.distribute.MultiWorkerMirroredStrategy, "extended")
    from tensorflow.python.distribute import collective_all_reduce_strategy as cars

    assert hasattr(cars.CollectiveAllReduceExtended, "_in_multi_worker_mode")


def test_symbolic_build_without_reduce_builds_only_the_optimizer(mirrored_strategy):
    with mirrored_strategy.scope():
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        model.compile(optimizer="adam", loss="mse")
    model._distribute_strategy = mirrored_strategy
    assert not model.optimizer.built
    private_apis.symbolic_build_without_reduce(model, base_method=None)
    assert model.optimizer.built


def test_keras_still_reads_the_input_conversion_flags():
    import inspect as _inspect

    from keras.src.layers import layer as keras_layer

    source = _inspect.getsource(keras_layer.Layer)
    for flag in private_apis.KERAS_INPUT_FLAGS:
        assert flag in source, f"keras.Layer no longer reads {flag}: see tf_esimcse/private_apis.py"
    # And the effect we rely on: int ids and Python lists reach call() unconverted.
    from tf_esimcse.layers.random_crop import RandomCrop

    out = RandomCrop(rate=0.0, seed=1)([[5, 6, 7]])
    assert out.dtype in (tf.int32, tf.int64)


def test_sublayers_still_finds_nested_layers():
    inner = keras.layers.Dropout(0.1, name="inner_dropout")
    block = keras.Sequential([keras.layers.Dense(2), inner])
    outer = keras.Sequential([keras.Input((3,)), block])
    names = [layer.name for layer in private_apis.sublayers(outer)]
    assert "inner_dropout" in names and outer.name in names
    assert len(names) == len(set(names))


def test_backup_and_restore_privates_are_still_there(tmp_path):
    """`AtomicBackupAndRestore` replaces Keras' backup writer through these (private_apis note 6)."""
    from keras.src.callbacks import backup_and_restore

    source = inspect.getsource(backup_and_restore.BackupAndRestore)
    callback = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    for name in private_apis.KERAS_BACKUP_PRIVATES:
        assert name in source, f"keras' BackupAndRestore no longer uses {name}: see tf_esimcse/private_apis.py"
    assert callable(getattr(callback, "_save_model"))
    # Keras still writes its backups from _save_model, in on_epoch_end.
    assert "self._save_model()" in inspect.getsource(backup_and_restore.BackupAndRestore.on_epoch_end)
    # The metadata Keras writes is our position, and restores read it back.
    hooks = private_apis.BackupAndRestoreHooks(str(tmp_path / "backup"), save_freq=100)  # no write here
    hooks.on_epoch_end(2)  # Keras' counters advance as they did
    assert hooks.backup_position() == (3, 0)
    assert hooks.backup_weights_path.endswith("latest.weights.h5")
    assert hooks.backup_metadata_path.endswith("training_metadata.json")


def test_atomic_backup_writes_through_the_hook(tmp_path):
    """Keras' own on_epoch_end reaches AtomicBackupAndRestore's writer (not Keras' in-place one)."""
    from tf_esimcse.backup import AtomicBackupAndRestore

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="adam", loss="mse")
    callback = AtomicBackupAndRestore(str(tmp_path), save_freq="epoch", delete_checkpoint=False)
    callback.set_model(model)
    callback.on_epoch_end(0)
    metadata = json.loads((tmp_path / "training_metadata.json").read_text())
    assert metadata == {"epoch": 1, "batch": 0, "weights": "next-1.weights.h5"}  # written by ours
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.weights.h5", "training_metadata.json"]


@pytest.mark.large
@pytest.mark.parametrize("replicas", [1, 2])
def test_fit_traces_the_training_step_once(model_dir, mirrored_strategy, replicas):
    """The optimizer's slots are built before `fit` traces the train function: created inside
    the first trace, they make TensorFlow trace the whole training step a second time."""
    from test_case import tiny_encoder
    from tf_esimcse.models.contrastive_model import ContrastiveModel
    from tf_esimcse.objectives import SimCSEObjective

    strategy = mirrored_strategy if replicas == 2 else tf.distribute.get_strategy()
    traces = []

    class Counting(ContrastiveModel):
        def train_step(self, data):
            traces.append(1)
            return super().train_step(data)

    with strategy.scope():
        encoder = tiny_encoder(model_dir, pooler_type="avg", dropout=0.0)
        model = Counting(encoder, SimCSEObjective())
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ids = np.full((4, 6), 5, "int32")
    batch = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(2), epochs=1, verbose=0, shuffle=False)
    assert model.optimizer.built
    assert len(traces) == replicas, f"train_step traced {len(traces) // replicas} times"
