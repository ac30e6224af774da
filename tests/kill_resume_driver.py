"""Runs a recipe as a user would, with hooks a test can stop and kill it at (tests/test_kill_resume.py).

    python tests/kill_resume_driver.py RECIPE FINAL_STATE -- RECIPE_FLAGS...

It prints, flushed, one line per event of the run:

- `BATCH <step> <fingerprint>`: the fingerprint of the batch the optimizer step `<step>` trained
  on (read where the input pipeline hands batches to `fit`, so the data position is compared
  step by step);
- `BEST <step>`: a new best model was saved at the evaluation of `<step>` (after the save);
- `STEP <step>`: step `<step>` is done, its evaluation included (before the backup of its chunk);
- `BACKUP <k> WRITES <n>`: the k-th backup of this process is complete; writing it took `n`
  events (each array written into the HDF5 file, each rename).

With `STOP_AT=<event>` the process stops itself (SIGSTOP) at that event, after printing
`STOPPED <event>`, for the test to SIGKILL it there: `<event>` is `STEP <s>`, `BEST <s>`, or
`BACKUP <k> WRITE <i>` (inside the k-th backup of this process, just after its i-th write event:
an HDF5 file half written and still open, or between two renames).

When training ends (before any other callback's `on_train_end`, so before the best weights are
put back), the full training state (`model.save_weights`: weights, optimizer step and slots,
objective state such as ESimCSE's momentum encoder and queue, random-generator states) is written
to FINAL_STATE for comparison with an uninterrupted run. Nothing here changes what is trained.
"""
import hashlib
import importlib
import os
import pathlib
import signal
import sys

import keras
import numpy as np
import tensorflow as tf
from keras.src.saving import saving_lib  # the HDF5 writer of save_weights (a test-only hook)

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tf_esimcse.backup as backup  # noqa: E402
import tf_esimcse.training as training  # noqa: E402
from tf_esimcse.models.contrastive_model import ContrastiveModel  # noqa: E402

STOP_AT = os.environ.get("STOP_AT", "")


def event(line):
    print(line, flush=True)
    if line == STOP_AT:
        print(f"STOPPED {line}", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # the test SIGKILLs us here


def _step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class _State:
    batches = []  # fingerprints of the batches the pipeline handed out, in order
    first_step = 0  # the optimizer step this process resumed from
    backups = 0
    writes = None  # write events of the backup in progress (None: none in progress)


def _fingerprint(batch):
    digest = hashlib.sha256()
    for value in tf.nest.flatten(batch):
        digest.update(np.asarray(value).tobytes())
    return digest.hexdigest()[:16]


def _record(*values):
    _State.batches.append(_fingerprint([v.numpy() for v in values]))
    return np.int64(0)


class First(keras.callbacks.Callback):
    """Runs before every other callback."""

    def on_train_end(self, logs=None):
        self.model.save_weights(FINAL_STATE, overwrite=True)


class Last(keras.callbacks.Callback):
    """Runs after every other callback (the evaluation, the best model's save)."""

    def __init__(self, callbacks):
        super().__init__()
        self.sts = next(c for c in callbacks if hasattr(c, "best_step") and hasattr(c, "evaluate"))
        self.reported_best = None

    def on_train_begin(self, logs=None):
        _State.first_step = _step(self.model)  # after the backup was restored

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        event(f"BATCH {step} {_State.batches[step - _State.first_step - 1]}")
        if self.sts.best_step == step and self.sts.best_step != self.reported_best:
            self.reported_best = step
            event(f"BEST {step}")
        event(f"STEP {step}")


def main():
    global FINAL_STATE
    recipe_name, FINAL_STATE, sep, *flags = sys.argv[1:]
    assert sep == "--", "usage: kill_resume_driver.py RECIPE FINAL_STATE -- FLAGS"

    fit = ContrastiveModel.fit

    def fit_with_hooks(self, x=None, callbacks=None, **kwargs):
        def tap(batch):
            done = tf.py_function(_record, tf.nest.flatten(batch), Tout=tf.int64)
            with tf.control_dependencies([done]):
                return tf.nest.map_structure(tf.identity, batch)

        callbacks = list(callbacks or [])
        return fit(self, x.map(tap), callbacks=[First(), *callbacks, Last(callbacks)], **kwargs)

    ContrastiveModel.fit = fit_with_hooks

    def write_event():
        if _State.writes is not None:
            _State.writes += 1
            event(f"BACKUP {_State.backups + 1} WRITE {_State.writes}")

    setitem = saving_lib.H5IOStore.__setitem__

    def setitem_with_event(self, key, value):
        setitem(self, key, value)
        if _State.writes is not None:
            self.h5_file.flush()  # what was written so far is on disk, the file still open
            write_event()

    saving_lib.H5IOStore.__setitem__ = setitem_with_event

    replace = backup._fsync_replace

    def replace_with_event(tmp, final):
        replace(tmp, final)
        write_event()

    backup._fsync_replace = replace_with_event

    save = backup.AtomicBackupAndRestore.save_backup

    def save_with_events(self, keras_save):
        _State.writes = 0
        result = save(self, keras_save)
        _State.backups += 1
        event(f"BACKUP {_State.backups} WRITES {_State.writes}")
        _State.writes = None
        return result

    backup.AtomicBackupAndRestore.save_backup = save_with_events

    recipe = importlib.import_module(f"tf_esimcse.methods.{recipe_name}")  # what recipes/<name>.py runs
    training.main_guard(lambda: recipe.main(flags))


if __name__ == "__main__":
    main()
