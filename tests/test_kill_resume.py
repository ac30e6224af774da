"""A real kill -9 loses nothing, bit for bit.

A recipe run is stopped (SIGSTOP, from a hook of `tests/kill_resume_driver.py`) and killed with
SIGKILL twice, each time started again with the same command:

1. at a random event after a new best model was saved and before the next evaluation (the
   save itself or the end of a step), once the first backup exists;
2. inside a random backup of the resumed process, at a random write event: after the i-th array
   written into the still-open HDF5 file, after the weights' rename, or after the metadata's
   commit (`tf_esimcse/backup.py`'s steps).

The third start finishes the run. Compared with `np.array_equal` / `==` (no tolerance) against a
run never interrupted (which runs alongside): the final training state (every array
`model.save_weights` writes: weights, optimizer step and every slot, ESimCSE's momentum encoder
and queue with its pointer and fill, the dropout generators' states), the batch each optimizer
step trained on (the data position, step by step, replayed steps included), evaluations.json,
best_step.json, results.json (best step, best STS-B dev, evaluations, the 7-task test where it
runs; not the timings, paths and environment) and every file of the saved model (HDF5 files array by array,
keras-hub's metadata.json without its save date, the rest byte for byte).

The fixture's STS-B dev (200 pairs whose gold score is the untrained encoder's cosine reversed)
changes at every evaluation and improves at each, so new best models are saved before the kill
and after the resume (both asserted). Cases: ESimCSE and SimCSE each on the default path (XLA,
hash dropout) and with `--jit-compile false` (Keras' Philox dropout), and SimCSE's cached step
(`--mini-batch-size`, XLA). The 14 steps cross three data epochs (ESimCSE empties its queue at
each).

Kill points are drawn afresh each run from `os.urandom`; the seed is printed (shown with a
failure) and `KILL_RESUME_SEED=<seed>` replays the same points.
"""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from test_case import write_tiny_model_dir
from test_cli import write_tiny_senteval
from test_recipes import _WORDS
from tf_esimcse import backup
from tf_esimcse.backup import AtomicBackupAndRestore
from tf_esimcse.models.sentence_encoder import SentenceEncoder

REPO = pathlib.Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "kill_resume_driver.py"
STEPS, EVAL_STEPS, BACKUP_STEPS = 14, 2, 3
# 40 sentences in batches of 8: 5 steps per data epoch, so the 14 steps span three data epochs;
# backups every 3 steps, STS-B dev every 2 (new bests and backups interleave).
FLAGS = {"steps": STEPS, "eval-steps": EVAL_STEPS, "backup-steps": BACKUP_STEPS, "max-sentences": 40,
         "batch-size": 8, "max-len": 16, "learning-rate": 1e-3}
CASES = {
    "esimcse-xla": ("unsup_esimcse", {}),  # the default path: XLA, hash dropout
    # Both methods on both paths (Keras' Philox dropout without XLA), and the cached step. Without
    # the 7-task evaluations (start and end), which the first case covers, to keep the test short.
    "esimcse-no-xla": ("unsup_esimcse", {"jit-compile": "false", "no-final-eval": None}),
    "simcse-xla": ("unsup_simcse", {"no-final-eval": None}),
    "simcse-no-xla": ("unsup_simcse", {"jit-compile": "false", "no-final-eval": None}),
    "simcse-cached-xla": ("unsup_simcse", {"mini-batch-size": 4, "no-final-eval": None}),
}
SEED = int(os.environ.get("KILL_RESUME_SEED") or int.from_bytes(os.urandom(4), "little"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_resume")
    rng = np.random.default_rng(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(_WORDS, size=rng.integers(3, 13))) for _ in range(200)) + "\n")
    data = write_tiny_senteval(root / "data")
    model = write_tiny_model_dir(root / "tiny_hf")
    # STS-B dev: 200 pairs whose gold score falls as the untrained encoder's cosine rises, so
    # Spearman starts at -100 and climbs as training moves the encoder away from its start: a
    # different score at every evaluation and new best models all along the run.
    pairs = [tuple(" ".join(rng.choice(_WORDS, size=rng.integers(3, 9))) for _ in "ab") for _ in range(200)]
    start = SentenceEncoder.from_pretrained(str(model), pooler_type="cls_before_pooler", sequence_length=16)
    a, b = (start.encode([p[i] for p in pairs], verbose=0) for i in (0, 1))
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    gold = 5.0 * (cosine.max() - cosine) / (cosine.max() - cosine.min())
    rows = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{g:.6f}\t{s1}\t{s2}\n"
            for i, ((s1, s2), g) in enumerate(zip(pairs, gold))]
    (data / "senteval" / "STS" / "STSBenchmark" / "sts-dev.csv").write_text("".join(rows))
    return {"model": model, "data": data, "corpus": corpus}


def _command(workspace, output_dir, recipe, extra):
    flags = {"model": workspace["model"], "corpus": workspace["corpus"], "data-dir": workspace["data"],
             "output-dir": output_dir, **FLAGS, **extra}
    argv = []
    for key, value in flags.items():  # None: a flag without a value
        argv += [f"--{key}"] if value is None else [f"--{key}", str(value)]
    return [sys.executable, str(DRIVER), recipe, str(output_dir) + ".state.weights.h5", "--", *argv]


def _start(command, stop_at=None):
    env = dict(os.environ, STOP_AT=stop_at or "", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)


def _finish(proc):
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    return out.splitlines()


def _run_until_stopped(command, stop_at):
    """Run `command` until the driver stops itself at `stop_at`, then SIGKILL it there."""
    proc = _start(command, stop_at)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("STOPPED "):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.stdout.close()
        code = proc.wait(timeout=120)
    assert code == -signal.SIGKILL, f"ended with {code} before {stop_at!r}:\n" + "\n".join(lines[-30:])
    assert lines[-1] == f"STOPPED {stop_at}"
    return lines


def _events(lines):
    return [line for line in lines if line.split(" ")[0] in ("BATCH", "BEST", "STEP", "BACKUP")]


def _first_kill(rng):
    """`(event, evaluation step)`: the end of a step or the save of a new best model, after the
    evaluation at that step and before the next one, once the first backup exists. The fixture
    saves a new best at every evaluation (checked on the uninterrupted run)."""
    candidates = []
    for evaluation in range(EVAL_STEPS, STEPS - EVAL_STEPS, EVAL_STEPS):  # a later one follows
        if evaluation > BACKUP_STEPS:  # `STEP s` comes before the backup of step s
            candidates += [(f"BEST {evaluation}", evaluation)]
            candidates += [(f"STEP {s}", evaluation) for s in range(evaluation, evaluation + EVAL_STEPS)]
    return rng.choice(candidates)


def _arrays(path):
    """{dataset path: array} of every dataset in an HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _assert_equal_arrays(a, b, what):
    assert sorted(a) == sorted(b), what
    different = [name for name in a if not (a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]))]
    assert not different, f"{what}: {len(different)} of {len(a)} arrays differ, e.g. {different[:5]}"


def _assert_same_folder(a, b, what):
    files_a = sorted(p.relative_to(a) for p in pathlib.Path(a).rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in pathlib.Path(b).rglob("*") if p.is_file()), what
    for name in files_a:
        if name.suffix == ".h5":  # HDF5 files record their own write times: compare the arrays
            _assert_equal_arrays(_arrays(a / name), _arrays(b / name), f"{what}/{name}")
        elif name.name == "metadata.json":  # keras-hub's: the save's date, to the second
            metadata_a, metadata_b = (json.loads((x / name).read_text()) for x in (a, b))
            assert metadata_a.pop("date_saved") and metadata_b.pop("date_saved"), what
            assert metadata_a == metadata_b, f"{what}/{name}"
        elif name.name == "README.md":  # the model card names its run folder (path and title): equal up to that
            run_a, run_b = pathlib.Path(a).parent, pathlib.Path(b).parent
            card_b = (b / name).read_text().replace(str(run_b), str(run_a)).replace(f"\n# {run_b.name}\n",
                                                                                  f"\n# {run_a.name}\n")
            assert (a / name).read_text() == card_b, f"{what}/{name}"
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{what}/{name}"


def _batches(lines):
    """{step: set of batch fingerprints it trained on} over every process of a run."""
    out = {}
    for line in lines:
        if line.startswith("BATCH "):
            _, step, fingerprint = line.split()
            out.setdefault(int(step), set()).add(fingerprint)
    return out


def _results(path):
    results = json.loads(path.read_text())
    for key in ("train_seconds", "model_dir", "environment"):
        results.pop(key)
    for key in ("output_dir", "log_dir"):
        results["config"].pop(key)
    return results


@pytest.mark.large  # spawns 4 training processes per case
@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(workspace, tmp_path, case):
    recipe, extra = CASES[case]
    rng = random.Random(f"{SEED}-{case}")
    print(f"kill points drawn with KILL_RESUME_SEED={SEED} (set it to replay them)")
    ref_dir, out_dir = tmp_path / "reference", tmp_path / "killed"
    reference_proc = _start(_command(workspace, ref_dir, recipe, extra))  # runs alongside the killed run
    command = _command(workspace, out_dir, recipe, extra)

    first, best_before = _first_kill(rng)
    print(f"{case}: kill 1 at {first!r}")
    lines = _run_until_stopped(command, first)
    assert f"BEST {best_before}" in lines  # a new best model was saved before the kill
    metadata = json.loads((out_dir / "backup" / "training_metadata.json").read_text())
    resume_step = metadata["epoch"] * BACKUP_STEPS
    assert 0 < resume_step <= STEPS

    # Inside a backup of the resumed process (one per chunk of BACKUP_STEPS steps after
    # resume_step), after a random write event of it.
    k = rng.randint(1, -(-STEPS // BACKUP_STEPS) - metadata["epoch"])
    n_writes = int(next(e for e in lines if e.startswith("BACKUP 1 WRITES")).split()[-1])
    second = f"BACKUP {k} WRITE {rng.randint(1, n_writes)}"
    print(f"{case}: resumed from step {resume_step}; kill 2 at {second!r} of {n_writes} write events")
    more = _run_until_stopped(command, second)
    assert any(line.startswith(f"resuming from step {resume_step} of {STEPS}") for line in more), more[-30:]
    lines += more

    final = _finish(_start(command))
    assert any(line.startswith("resuming from step") for line in final)
    lines += final

    reference = _finish(reference_proc)
    assert f"trained to step {STEPS} of {STEPS}" in "\n".join(reference)
    bests = [int(e.split()[1]) for e in _events(reference) if e.startswith("BEST ")]
    assert bests == list(range(EVAL_STEPS, STEPS + 1, EVAL_STEPS)), f"a new best at every evaluation: {bests}"
    resumed = lines[lines.index(f"STOPPED {first}"):]
    assert any(line.startswith("BEST ") for line in resumed), "the resumed run saves new best models too"

    # The final training state: every array save_weights writes.
    reference_state = _arrays(str(ref_dir) + ".state.weights.h5")
    names = "\n".join(reference_state)
    assert "optimizer" in names and "random_state" in names, names  # slots, dropout generators
    if recipe == "unsup_esimcse":
        assert "queue" in names and "momentum" in names, names
    _assert_equal_arrays(reference_state, _arrays(str(out_dir) + ".state.weights.h5"),
                         f"final training state (KILL_RESUME_SEED={SEED})")

    # The data position: each step trained on the same batch as in the uninterrupted run.
    expected = _batches(reference)
    assert sorted(expected) == list(range(1, STEPS + 1))
    assert _batches(lines) == expected, f"batches per step differ (KILL_RESUME_SEED={SEED})"

    # Evaluations, the best model's step and score, results and the saved model.
    for name in ("evaluations.json", "best_step.json"):
        assert json.loads((out_dir / name).read_text()) == json.loads((ref_dir / name).read_text()), name
    evaluations = json.loads((ref_dir / "evaluations.json").read_text())
    assert [r["step"] for r in evaluations] == list(range(0, STEPS + 1, EVAL_STEPS))
    assert len({r["stsb_dev"] for r in evaluations}) == len(evaluations)  # it changes every time
    assert _results(out_dir / "results.json") == _results(ref_dir / "results.json")
    _assert_same_folder(ref_dir / "model", out_dir / "model", f"saved model (KILL_RESUME_SEED={SEED})")
    assert not (out_dir / "backup").exists()


class _Killed(Exception):
    pass


def _small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="adam", loss="mse")
    return model


def _state(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in [*model.weights, *model.optimizer.variables]]


@pytest.mark.parametrize("killed_after, resumes_at", [
    ("half the weights file", 1), ("the weights' rename", 1), ("the metadata's commit", 2), ("the last rename", 2)])
def test_a_backup_killed_between_any_two_writes_resumes_from_one_whole_backup(tmp_path, monkeypatch, killed_after,
                                                                              resumes_at):
    """Every window of a backup write, in process (the spawned test above draws one at random):
    the folder resumes from the previous backup (step 1) or the new one (step 2), its weights,
    optimizer step and slots and metadata all of the same step, and keeps no leftover file."""
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model = _small_model()
    callback = AtomicBackupAndRestore(str(tmp_path), save_freq="epoch", delete_checkpoint=False)
    callback.set_model(model)
    states = {}
    for epoch in (0, 1):
        model.train_on_batch(x, y)
        states[epoch + 1] = _state(model)
        if epoch == 0:
            callback.on_epoch_end(epoch)  # the backup of step 1, whole
    if killed_after == "half the weights file":
        original = type(model).save_weights

        def save_weights(self, filepath, overwrite=True):
            original(self, filepath, overwrite=overwrite)
            with open(filepath, "r+b") as f:
                f.truncate(f.seek(0, 2) // 2)
            raise _Killed
        monkeypatch.setattr(type(model), "save_weights", save_weights)
    else:
        replace, renames = os.replace, []
        stop = ["the weights' rename", "the metadata's commit", "the last rename"].index(killed_after) + 1

        def replace_then_die(src, dst):
            replace(src, dst)
            renames.append(dst)
            if len(renames) == stop:
                raise _Killed
        monkeypatch.setattr(backup.os, "replace", replace_then_die)
    with pytest.raises(_Killed):
        callback.on_epoch_end(1)
    monkeypatch.undo()

    resumed = _small_model()  # a new process
    callback = AtomicBackupAndRestore(str(tmp_path), save_freq="epoch", delete_checkpoint=False)
    callback.set_model(resumed)
    callback.on_train_begin()
    assert json.loads((tmp_path / "training_metadata.json").read_text())["epoch"] == resumes_at
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == resumes_at
    assert all(np.array_equal(a, b) for a, b in zip(_state(resumed), states[resumes_at], strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.weights.h5", "training_metadata.json"]
