"""Resumable training that survives SIGKILL: Keras' BackupAndRestore with atomic writes.

Keras' `BackupAndRestore` writes `latest.weights.h5` and `training_metadata.json` in place; a
process killed in the middle (SIGKILL, OOM killer, a pre-empted VM) leaves a truncated HDF5 file
and the next run cannot resume ("bad object header version number"). This subclass writes each
file next to its final name and moves it into place with `os.replace`, which is atomic on POSIX
filesystems: at any instant the backup folder holds a complete previous or a complete new backup.
The weights (model, optimizer step and slots, ESimCSE's momentum encoder and queue) are written
before the metadata, so the metadata never points past the weights.
"""
import json
import os

import keras


def _fsync_replace(tmp, final):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups are written atomically (local paths).

    Args:
        skip_if: callable or None. While it returns True (e.g. training has diverged) no backup
            is written and the last one is not deleted at the end, so it stays for inspection.
        Other arguments: those of `keras.callbacks.BackupAndRestore`.
    """

    def __init__(self, *args, skip_if=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip_if = skip_if

    def _skipping(self):
        return self.skip_if is not None and bool(self.skip_if())

    def on_train_begin(self, logs=None):
        try:
            return super().on_train_begin(logs)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            from tf_esimcse.errors import TfEsimcseError

            raise TfEsimcseError(
                f"{self.backup_dir}: the backup cannot be restored ({type(e).__name__}: {str(e).splitlines()[0]}); "
                f"nothing was changed. Restore the backup, or move {self.backup_dir} away to start the run over"
            ) from e

    def _save_model_or_explain(self):
        try:
            return self._save_model_atomically()
        except OSError as e:
            from tf_esimcse.errors import ModelSaveError

            raise ModelSaveError(f"{self.backup_dir}: could not write the backup ({e.strerror or e}); the previous "
                                 "backup there is untouched") from e

    def on_train_end(self, logs=None):
        if self._skipping():
            return  # keep the last good backup
        return super().on_train_end(logs)

    def _save_model(self):
        if self._skipping():
            return None
        if "://" in str(self.backup_dir):  # remote filesystems: Keras' own behaviour
            return super()._save_model()
        return self._save_model_or_explain()

    def _save_model_atomically(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_weights = os.path.join(self.backup_dir, "incomplete.weights.h5")
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        _fsync_replace(tmp_weights, self._weights_path)
        tmp_meta = os.path.join(self.backup_dir, "incomplete_training_metadata.json")
        with open(tmp_meta, "w") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        _fsync_replace(tmp_meta, self._training_metadata_path)
