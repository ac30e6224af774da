"""Runs a recipe as a user would, with hooks a test can kill it by (tests/test_kill_resume.py).

    python tests/kill_resume_driver.py RECIPE FINAL_STATE -- RECIPE_FLAGS...

Prints `STEP <n>` (flushed) after every optimizer step, so the test can SIGKILL the process at
a chosen step. With `PAUSE_IN_BACKUP=<k>`, the k-th backup this process writes is left half
written (its temporary file truncated to half, not yet moved into place), `IN_BACKUP` is
printed and the process sleeps there, to be killed mid-write. When training ends (before the
backup folder is removed), the full training state (`model.save_weights`: weights, optimizer
step and slots, objective state such as ESimCSE's momentum encoder and queue, random-generator
states) is written to FINAL_STATE for comparison with an uninterrupted run. Nothing here changes
what is trained.
"""
import importlib.util
import os
import pathlib
import sys
import time

import keras

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tf_esimcse.backup as backup  # noqa: E402
import tf_esimcse.training as training  # noqa: E402


def main():
    recipe_name, final_state, sep, *flags = sys.argv[1:]
    assert sep == "--", "usage: kill_resume_driver.py RECIPE FINAL_STATE -- FLAGS"

    step_end = training.StopAtStep.on_train_batch_end

    def print_step(self, batch, logs=None):
        step_end(self, batch, logs)
        print(f"STEP {int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))}", flush=True)

    training.StopAtStep.on_train_batch_end = print_step

    pause_at = int(os.environ.get("PAUSE_IN_BACKUP", "0"))
    written = {"n": 0}
    replace = backup._fsync_replace

    def fsync_replace(tmp, final):
        if str(final).endswith(".weights.h5"):
            written["n"] += 1
            if written["n"] == pause_at:
                size = os.path.getsize(tmp)
                with open(tmp, "r+b") as f:
                    f.truncate(size // 2)
                print("IN_BACKUP", flush=True)
                time.sleep(600)
        return replace(tmp, final)

    backup._fsync_replace = fsync_replace

    train_end = backup.AtomicBackupAndRestore.on_train_end

    def save_final_state(self, logs=None):
        self.model.save_weights(final_state, overwrite=True)
        return train_end(self, logs)

    backup.AtomicBackupAndRestore.on_train_end = save_final_state

    spec = importlib.util.spec_from_file_location("recipe", REPO / "recipes" / f"{recipe_name}.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    training.main_guard(lambda: recipe.main(flags))


if __name__ == "__main__":
    main()
