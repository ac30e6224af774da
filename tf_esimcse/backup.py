"""Resumable training that survives SIGKILL: Keras' BackupAndRestore with atomic backups.

Keras' `BackupAndRestore` writes `latest.weights.h5` and `training_metadata.json` in place; a
process killed in the middle (SIGKILL, OOM killer, a pre-empted VM) leaves a truncated HDF5 file
and the next run cannot resume ("bad object header version number"), and one killed between the
two files leaves weights of one step beside the metadata (step count, hence data position) of
another. This subclass makes the pair change at one instant:

1. the weights (model, optimizer step and slots, ESimCSE's momentum encoder and queue, the random
   generators' states) are written to `incomplete.weights.h5`, synced, and renamed to
   `next-<epoch>.weights.h5`;
2. the metadata, naming that file, is written beside its final name, synced, and moved into place
   with `os.replace` (atomic on POSIX filesystems): this is the commit;
3. `next-<epoch>.weights.h5` is renamed to `latest.weights.h5`.

A restore first finishes step 3 if the metadata names a weights file still waiting, and deletes
any weights file the metadata does not name (a backup killed before its commit), so the backup
folder always resumes from a complete previous or a complete new backup, never a mix.
"""
import json
import os

from tf_esimcse import private_apis
from tf_esimcse.errors import ModelSaveError
from tf_esimcse.errors import TfEsimcseError

INCOMPLETE_WEIGHTS = "incomplete.weights.h5"
INCOMPLETE_METADATA = "incomplete_training_metadata.json"


def _fsync_replace(tmp, final):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a filesystem that cannot open directories: the renames still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def finish_interrupted_backup(backup_dir):
    """Bring `backup_dir` to its last committed backup (see the module docstring): a weights file
    the metadata names and that is still waiting becomes `latest.weights.h5`; weights files of an
    uncommitted backup and half-written temporary files are deleted. Does nothing to a folder
    without metadata beyond removing the temporary files."""
    backup_dir = str(backup_dir)
    if not os.path.isdir(backup_dir):
        return
    latest = os.path.join(backup_dir, "latest.weights.h5")
    named = None
    metadata_path = os.path.join(backup_dir, "training_metadata.json")
    if os.path.isfile(metadata_path):
        with open(metadata_path) as f:
            named = json.loads(f.read()).get("weights")
    if named and named != "latest.weights.h5" and os.path.isfile(os.path.join(backup_dir, named)):
        os.replace(os.path.join(backup_dir, named), latest)
    for name in os.listdir(backup_dir):
        if name in (INCOMPLETE_WEIGHTS, INCOMPLETE_METADATA) or (
                name.startswith("next-") and name.endswith(".weights.h5")):
            os.remove(os.path.join(backup_dir, name))
    _fsync_dir(backup_dir)


class AtomicBackupAndRestore(private_apis.BackupAndRestoreHooks):
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

    def _local(self):
        return "://" not in str(self.backup_dir)

    def on_train_begin(self, logs=None):
        try:
            if self._local():
                finish_interrupted_backup(self.backup_dir)
            return super().on_train_begin(logs)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            raise TfEsimcseError(
                f"{self.backup_dir}: the backup cannot be restored ({type(e).__name__}: {str(e).splitlines()[0]}); "
                f"nothing was changed. Restore the backup, or move {self.backup_dir} away to start the run over"
            ) from e

    def on_train_end(self, logs=None):
        if self._skipping():
            return  # keep the last good backup
        return super().on_train_end(logs)

    def save_backup(self, keras_save):
        """Called wherever Keras would write a backup; `keras_save()` is Keras' own writer."""
        if self._skipping():
            return None
        if not self._local():  # remote filesystems: Keras' own behaviour
            return keras_save()
        try:
            return self._save_atomically()
        except OSError as e:
            raise ModelSaveError(f"{self.backup_dir}: could not write the backup ({e.strerror or e}); the previous "
                                 "backup there is untouched") from e

    def _save_atomically(self):
        backup_dir = str(self.backup_dir)
        os.makedirs(backup_dir, exist_ok=True)
        epoch, batch = self.backup_position()
        waiting = f"next-{epoch}.weights.h5"
        tmp_weights = os.path.join(backup_dir, INCOMPLETE_WEIGHTS)
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        _fsync_replace(tmp_weights, os.path.join(backup_dir, waiting))
        tmp_meta = os.path.join(backup_dir, INCOMPLETE_METADATA)
        with open(tmp_meta, "w") as f:
            f.write(json.dumps({"epoch": epoch, "batch": batch, "weights": waiting}))
        _fsync_replace(tmp_meta, self.backup_metadata_path)  # the commit
        _fsync_dir(backup_dir)
        os.replace(os.path.join(backup_dir, waiting), self.backup_weights_path)
        _fsync_dir(backup_dir)
