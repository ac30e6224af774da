"""Interrupted training resumes: atomic backups survive a crash mid-write, and a recipe killed
part-way finishes its run from the last backup with the same total number of steps."""
import json
import os

import keras
import numpy as np
import pytest

from test_recipes import _argv, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse.backup import AtomicBackupAndRestore
from training_test_case import crash_at_step


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


@pytest.mark.large
def test_interrupted_recipe_resumes_to_the_same_step_count(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    output_dir = tmp_path / "out"
    argv = _argv(workspace, output_dir, steps=8, **{"eval-steps": 2, "backup-steps": 2})
    recipe = load_recipe("unsup_esimcse")

    crash_at_step(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.main(argv)
    monkeypatch.undo()
    assert (output_dir / "backup" / "latest.weights.h5").is_file()
    meta = json.loads((output_dir / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2  # chunks of 2 steps: steps 1-4 are backed up
    capsys.readouterr()

    results = recipe.main(argv)
    out = capsys.readouterr().out
    assert "resuming from" in out
    assert "resuming from step 4 of 8" in out
    assert "trained to step 8 of 8" in out
    assert not (output_dir / "backup").exists()  # removed once the run completed
    assert results["best_step"] is not None and os.path.isdir(results["model_dir"])
