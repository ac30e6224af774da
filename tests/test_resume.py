"""Atomic backups survive a crash mid-write: the complete previous backup is restored. (A recipe
crashed part-way and run again: tests/test_run_folder.py; killed with SIGKILL at random points and
compared bit for bit with an uninterrupted run: tests/test_kill_resume.py.)"""
import json

import keras
import numpy as np
import pytest

from tf_esimcse.backup import AtomicBackupAndRestore


def _tiny_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_crash_while_writing_keeps_the_previous_backup(tmp_path, monkeypatch):
    model = _tiny_model()
    backup = AtomicBackupAndRestore(str(tmp_path), save_freq="epoch", delete_checkpoint=False)
    backup.set_model(model)
    backup._current_epoch = 3
    backup._save_model()
    saved = [w.copy() for w in model.get_weights()]
    meta = json.loads((tmp_path / "training_metadata.json").read_text())
    assert meta["epoch"] == 3

    model.set_weights([w + 1.0 for w in saved])

    def killed_mid_write(filepath, overwrite=True):  # a truncated file, then the process dies
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n")
        raise KeyboardInterrupt("SIGKILL stand-in")

    monkeypatch.setattr(model, "save_weights", killed_mid_write)
    backup._current_epoch = 4
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    monkeypatch.undo()

    fresh = _tiny_model()
    restore = AtomicBackupAndRestore(str(tmp_path), save_freq="epoch")
    restore.set_model(fresh)
    restore.on_train_begin()  # loads without error: the complete previous backup
    for a, b in zip(fresh.get_weights(), saved):
        np.testing.assert_array_equal(a, b)
    assert fresh._initial_epoch == 3
