"""Every private Keras / TensorFlow API this package still relies on, in one place.

Each entry says why no public API does the job and what breaks if it changes;
`tests/test_private_apis.py` checks each one against the installed versions, so an upgrade of
keras or tensorflow that moves or changes one fails that test loudly instead of silently changing
training behaviour.

1. `in_xla_context()`: TensorFlow's `control_flow_util.GraphOrParentsInXlaContext`. `HashDropout`
   draws counter-hash masks only inside XLA-compiled functions (where XLA's Philox expansion is
   slow) and Keras' Philox dropout elsewhere. TensorFlow has no public "am I being compiled by
   XLA" query.
2. `symbolic_build_without_reduce(model, base_method, ...)`: Keras' TF trainer calls
   `Model._maybe_symbolic_build(iterator, data_batch)` at the start of `fit`; it peeks at the first
   batch and `strategy.reduce`s it, which fails for dict batches under
   `MultiWorkerMirroredStrategy`; without a strategy it builds nothing and the optimizer's slots
   are created inside the first trace of the train function, which makes TensorFlow trace it a
   second time. Our training models are built at construction, so only the optimizer needs
   building, eagerly, before the train function is traced. A model opts in by overriding the private method
   and calling this function.
4. `keep_input_tensors(layer)`: sets `Layer._convert_input_args = False` and
   `Layer._allow_non_tensor_positional_args = True`, as keras-hub's own preprocessing layers do,
   so that a preprocessing layer receives tf int/string/ragged tensors and Python lists as they
   are (Keras would otherwise cast inputs to the layer's float dtype and reject lists). Used by
   `SentencePreprocessor` and `TokenAugmentation`.
3. `in_multi_worker_mode(strategy)`: `strategy.extended._in_multi_worker_mode()`. Keras reduces
   step logs with `reduce(MEAN, axis=0)` across workers, which rejects scalars under
   `MultiWorkerMirroredStrategy`; the training step gives its logs a leading axis there only.
5. `sublayers(layer)`: `Layer._flatten_layers(include_self=True, recursive=True)`, every layer
   nested in a layer (Keras 3 has a public list only for functional models' top level). The
   cached large-batch step checks that every dropout in the encoder can replay its masks by row
   and that no layer mixes rows (BatchNormalization in training).
6. `BackupAndRestoreHooks`: `keras.callbacks.BackupAndRestore` writes its backup in the private
   `_save_model()` (called from `on_epoch_end`/`on_train_batch_end`), at the private paths
   `_weights_path` and `_training_metadata_path`, recording the private counters
   `_current_epoch` and `_last_batch_seen`. Keras has no public hook to change how a backup is
   written; `tf_esimcse.backup.AtomicBackupAndRestore` replaces the writer (atomic, SIGKILL-safe)
   through this class's public names. If Keras renames one of them, backups would silently be
   written by Keras' own non-atomic code (or not at all).
"""
import keras
import tensorflow as tf

# Names checked by tests/test_private_apis.py.
KERAS_SYMBOLIC_BUILD_METHOD = "_maybe_symbolic_build"
KERAS_SYMBOLIC_BUILD_ARGS = ("iterator", "data_batch")


def in_xla_context():
    """True while tracing inside a `jit_compile=True` function (or a function it calls)."""
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.ops import control_flow_util

    try:
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))
    except Exception:  # if the helper ever moves, assume XLA (the hash is correct anywhere)
        return True


def in_multi_worker_mode(strategy=None):
    """Whether `strategy` (default: the current one) is a multi-worker strategy with several workers."""
    strategy = strategy or tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    in_multi = getattr(extended, "_in_multi_worker_mode", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(in_multi and in_multi())


def symbolic_build_without_reduce(model, base_method, iterator=None, data_batch=None):
    """The body of a `Model._maybe_symbolic_build` override for models built at construction.

    Without a distribution strategy Keras' own method runs first (`base_method`, the parent's
    bound method); it builds nothing there, deferring the optimizer's slots to the first trace of
    the train function, and a `tf.function` that creates variables while tracing is traced twice
    (a whole second trace of the training step at the start of every `fit`). So in both cases the
    optimizer's slots are built here, eagerly (in the strategy's scope where there is one).
    """
    if getattr(model, "_distribute_strategy", None) is None:
        base_method(iterator=iterator, data_batch=data_batch)
    with model.distribute_strategy.scope():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    return None


KERAS_INPUT_FLAGS = ("_convert_input_args", "_allow_non_tensor_positional_args")


def keep_input_tensors(layer):
    """Let `layer` (a preprocessing layer) receive its inputs unconverted (see note 4)."""
    layer._convert_input_args = False
    layer._allow_non_tensor_positional_args = True
    return layer


KERAS_FLATTEN_LAYERS = "_flatten_layers"


def sublayers(layer):
    """`layer` and every layer nested in it, each once (see note 5)."""
    return list(getattr(layer, KERAS_FLATTEN_LAYERS)(include_self=True, recursive=True))


# Names checked by tests/test_private_apis.py (note 6).
KERAS_BACKUP_PRIVATES = ("_save_model", "_weights_path", "_training_metadata_path", "_current_epoch",
                         "_last_batch_seen")


class BackupAndRestoreHooks(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with its private writer and state under public names
    (see note 6): override `save_backup(keras_save)` to write backups another way."""

    def _save_model(self):
        return self.save_backup(super()._save_model)

    def save_backup(self, keras_save):
        """Write a backup; `keras_save()` is Keras' own writer (the default)."""
        return keras_save()

    @property
    def backup_weights_path(self):
        return self._weights_path

    @property
    def backup_metadata_path(self):
        return self._training_metadata_path

    def backup_position(self):
        """`(epoch, batch)` as Keras records them in the backup's metadata."""
        return self._current_epoch, self._last_batch_seen
