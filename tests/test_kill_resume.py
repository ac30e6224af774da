"""A real kill -9 loses nothing: a training process killed with SIGKILL (at a random step, then
once more in the middle of writing a backup) and started again with the same command ends in
exactly the state of a run that was never interrupted: weights, optimizer step and slots,
ESimCSE's momentum encoder and queue (contents, pointer, fill), the random generators, the best
STS-B dev and its step, the saved model. The runs cross several data epochs (ESimCSE empties its
queue at each), so the data position and the epoch-boundary state are covered across resumes."""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from test_recipes import _argv, workspace  # noqa: F401  (fixture)

REPO = pathlib.Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "kill_resume_driver.py"
STEPS = 14
# 40 sentences in batches of 8: 5 steps per data epoch, so the 14 steps span three data epochs;
# backups every 3 steps, STS-B dev every 4.
FLAGS = {"steps": STEPS, "eval-steps": 4, "backup-steps": 3, "max-sentences": 40}


def _command(workspace, output_dir, recipe, final_state):  # noqa: F811
    return [sys.executable, str(DRIVER), recipe, str(final_state), "--",
            *_argv(workspace, output_dir, **FLAGS)]


def _run_until(command, marker, env=None):
    """Start `command`; SIGKILL it as soon as it prints a line starting with `marker`. Returns
    the lines it printed. Fails if the process ends before printing the marker."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env=dict(os.environ, **(env or {})))
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(marker):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.stdout.close()
        code = proc.wait(timeout=120)
    assert code == -signal.SIGKILL, f"process ended with {code} before {marker!r}:\n" + "\n".join(lines[-30:])
    return lines


def _run(command):
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def _arrays(path):
    """{dataset path: array} of every dataset in an HDF5 weights file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _model_arrays(model_dir):
    out = {}
    for path in sorted(pathlib.Path(model_dir).rglob("*.h5")):
        for name, value in _arrays(path).items():
            out[f"{path.name}/{name}"] = value
    return out


def _assert_same(a, b, what):
    assert sorted(a) == sorted(b), what
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-5, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("recipe", ["unsup_esimcse", "unsup_simcse"])
def test_killed_and_resumed_run_equals_the_uninterrupted_one(workspace, tmp_path, recipe):  # noqa: F811
    reference_state = tmp_path / "reference.weights.h5"
    reference_out = _run(_command(workspace, tmp_path / "reference", recipe, reference_state))
    assert f"trained to step {STEPS} of {STEPS}" in reference_out

    out_dir, state = tmp_path / "killed", tmp_path / "killed.weights.h5"
    command = _command(workspace, out_dir, recipe, state)
    kill_step = random.Random(f"{recipe}-kill").randint(4, 8)  # after the first backup (step 3)
    _run_until(command, f"STEP {kill_step}")
    assert (out_dir / "backup" / "latest.weights.h5").is_file()

    # Killed again half-way through writing the next backup: its temporary file is truncated
    # and never moved into place; the previous backup stays whole.
    lines = _run_until(command, "IN_BACKUP", env={"PAUSE_IN_BACKUP": "1"})
    assert any(line.startswith("resuming from") for line in lines)
    assert (out_dir / "backup" / "incomplete.weights.h5").is_file()

    resumed_out = _run(command)
    assert "resuming from" in resumed_out and f"trained to step {STEPS} of {STEPS}" in resumed_out

    # Weights, optimizer (step, slots), objective state (momentum encoder, queue, pointer) and
    # random-generator states: everything `model.save_weights` writes.
    reference, resumed = _arrays(reference_state), _arrays(state)
    assert any("optimizer" in name for name in reference)
    if recipe == "unsup_esimcse":
        assert sum("objective" in name or "queue" in name for name in reference) >= 3
    assert any(name.endswith("random_state_0") for name in reference)
    _assert_same(reference, resumed, "final training state")

    # The best STS-B dev, its step, and the saved (best) model.
    a = json.loads((tmp_path / "reference" / "results.json").read_text())
    b = json.loads((out_dir / "results.json").read_text())
    assert (b["best_step"], b["best_stsb_dev"]) == (a["best_step"], a["best_stsb_dev"])
    # The training trajectory (every evaluation) survives the kills too.
    assert [r["step"] for r in a["evaluations"]] == [0, 4, 8, 12, 14]  # the start, every 4 steps, the end
    assert b["evaluations"] == pytest.approx(a["evaluations"])
    test_a, test_b = dict(a["test"]), dict(b["test"])
    assert test_b.pop("length_split") == pytest.approx(test_a.pop("length_split"))
    assert test_b == pytest.approx(test_a)
    _assert_same(_model_arrays(tmp_path / "reference" / "model"), _model_arrays(out_dir / "model"), "saved model")
    assert not (out_dir / "backup").exists()
