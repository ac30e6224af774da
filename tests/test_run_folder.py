"""A run folder's rules (tf_esimcse.run_folder), through the recipes as a user meets them: the same
command again skips a finished run, other settings are refused unless --overwrite, an unfinished
run resumes, a folder in use is refused naming its process, and the same for --seeds. Also the
start as a reference: step 0 in evaluations.json and TensorBoard, results["start"], the
below-start line and --keep-start."""
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from test_help import clean_env
from test_recipes import _argv, _scalars, load_recipe, workspace  # noqa: F401 (fixture)
from training_test_case import crash_at_step
from tf_esimcse import run_folder
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.evaluation.sts import format_table_rows
from tf_esimcse.training import below_start_message

REPO = pathlib.Path(__file__).resolve().parents[1]


def _snapshot(folder):
    """{relative path: (size, mtime_ns)} of every file under `folder`."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished(workspace, tmp_path_factory):  # noqa: F811
    """One finished 3-step SimCSE run (shared by the tests that only read or refuse it)."""
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    argv = _argv(workspace, output_dir)
    results = load_recipe("unsup_simcse").main(argv)
    return {"dir": output_dir, "argv": argv, "results": results}


@pytest.mark.large
def test_same_command_again_skips_a_finished_run(finished, capsys):
    before = _snapshot(finished["dir"])
    results = load_recipe("unsup_simcse").main(finished["argv"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"already finished: {finished['dir']}"), out
    assert "results.json" in lines[0] and "--overwrite" in lines[0]
    assert results == json.loads((finished["dir"] / "results.json").read_text())
    assert _snapshot(finished["dir"]) == before  # nothing retrained, rewritten or added (no new event file)


def test_other_settings_are_refused_naming_them(finished, capsys, workspace):  # noqa: F811
    before = _snapshot(finished["dir"])
    argv = _argv(workspace, finished["dir"], steps=4, **{"learning-rate": 1e-4})
    with pytest.raises(run_folder.RunFolderError) as error:
        load_recipe("unsup_simcse").main(argv)
    message = str(error.value)
    assert "\n" not in message
    assert "holds a finished run with other settings" in message
    assert "--steps 3 there, 4 here" in message and "--learning-rate" in message and "--overwrite" in message
    assert _snapshot(finished["dir"]) == before


@pytest.mark.large
def test_refusal_is_one_line_and_exit_2_in_a_process(finished, workspace):  # noqa: F811
    argv = _argv(workspace, finished["dir"], steps=5)
    # as a user runs it: without the test session's TF_CPP_MIN_LOG_LEVEL (which would count as the
    # user's own choice of TensorFlow logging)
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "unsup_simcse.py"), *argv],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env=clean_env())
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "--steps 3 there, 5 here" in errors[0]


@pytest.mark.large
def test_overwrite_trains_again_and_removes_only_the_runs_files(workspace, tmp_path, capsys):  # noqa: F811
    output_dir = tmp_path / "run"
    recipe = load_recipe("unsup_simcse")
    recipe.main(_argv(workspace, output_dir))
    (output_dir / "notes.txt").write_text("mine")
    first_events = sorted((output_dir / "logs").rglob("events.out.tfevents.*"))
    capsys.readouterr()
    results = recipe.main(_argv(workspace, output_dir, steps=4) + ["--overwrite"])
    out = capsys.readouterr().out
    assert f"--overwrite: removed the earlier run in {output_dir}" in out
    assert results["config"]["steps"] == 4 and results["status"] == "ok"
    assert json.loads((output_dir / "results.json").read_text())["config"]["steps"] == 4
    assert (output_dir / "notes.txt").read_text() == "mine"
    assert not set(first_events) & set((output_dir / "logs").rglob("events.out.tfevents.*"))


@pytest.mark.large
def test_unfinished_run_resumes_and_says_from_which_step(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    output_dir = tmp_path / "run"
    argv = _argv(workspace, output_dir, steps=6, **{"backup-steps": 2})
    recipe = load_recipe("unsup_simcse")
    crash_at_step(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.main(argv)
    monkeypatch.undo()
    assert run_folder.holder(output_dir) is None  # the crashed run let go of its lock
    assert (output_dir / "backup" / "latest.weights.h5").is_file()
    metadata = json.loads((output_dir / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1  # chunks of 2 steps: steps 1-2 are backed up, step 3 is lost
    state = run_folder.inspect(output_dir, recipe.METHOD.parse(argv))
    assert state.kind == "unfinished"
    capsys.readouterr()
    results = recipe.main(argv)
    out = capsys.readouterr().out
    assert f"resuming from step 2 of 6 (backup in {output_dir / 'backup'})" in out
    assert results["status"] == "ok" and "trained to step 6 of 6" in out
    assert results["best_step"] is not None and os.path.isdir(results["model_dir"])
    assert not (output_dir / "backup").exists()  # removed once the run completed
    steps = [r["step"] for r in json.loads((output_dir / "evaluations.json").read_text())]
    assert steps == sorted(steps) and steps[0] == 0 and steps.count(0) == 1


def test_a_folder_in_use_is_refused_naming_the_process(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "run"
    with run_folder.RunLock(output_dir):
        with pytest.raises(run_folder.RunFolderError, match=f"is in use by process {os.getpid()} "):
            load_recipe("unsup_simcse").main(_argv(workspace, output_dir))
    assert not (output_dir / "results.json").exists()
    assert run_folder.holder(output_dir) is None


@pytest.mark.large
def test_a_killed_process_does_not_leave_its_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from tf_esimcse.run_folder import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(600)"), str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        taken = run_folder.holder(tmp_path)
        assert taken is not None and taken.startswith(f"process {holder.pid} (") and "RunLock" in taken
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run_folder.holder(tmp_path) is None
    run_folder.RunLock(tmp_path).acquire().release()


@pytest.mark.large
def test_seeds_follow_the_same_rules(workspace, tmp_path, capsys):  # noqa: F811
    root = tmp_path / "seeds"
    recipe = load_recipe("unsup_simcse")
    argv = _argv(workspace, root) + ["--seeds", "1,2"]
    recipe.main(argv)
    start = json.loads((root / "start.json").read_text())  # measured once for both seeds
    assert "test" in start
    capsys.readouterr()
    out = recipe.main(argv)
    printed = capsys.readouterr().out
    assert printed.count("already finished: ") == 2 and "config ==" not in printed
    assert [run["config"]["seed"] for run in out["runs"]] == [1, 2]
    with pytest.raises(run_folder.RunFolderError, match=r"seed_1 holds a finished run with other settings \(--steps 3 there, 4 here\)"):
        recipe.main(_argv(workspace, root, steps=4) + ["--seeds", "1,2"])
    # a seed added later trains; the finished ones are skipped
    capsys.readouterr()
    out = recipe.main(_argv(workspace, root) + ["--seeds", "1,2,3"])
    printed = capsys.readouterr().out
    assert printed.count("already finished: ") == 2 and "seed 3 config" in printed
    assert len(out["runs"]) == 3


def test_the_start_is_evaluated_first_and_reported(finished):
    results = finished["results"]
    evaluations = json.loads((finished["dir"] / "evaluations.json").read_text())
    assert evaluations[0]["step"] == 0 and [r["step"] for r in evaluations[1:]] == [2, 3]
    start = results["start"]
    assert start["stsb_dev"] == evaluations[0]["stsb_dev"] and "alignment" in start and "uniformity" in start
    assert set(start["test"]) >= {"sts12", "sts16", "stsb_test", "sickr_test", "avg", "stsb_dev"}
    scalars = _scalars(finished["dir"] / "logs" / "validation")
    assert scalars["stsb_dev_spearman"][0] == (0, pytest.approx(evaluations[0]["stsb_dev"], abs=1e-4))


def test_start_scores_equal_the_untrained_encoders(finished, workspace):  # noqa: F811
    from tf_esimcse.evaluation.sts import evaluate_sts

    config = finished["results"]["config"]
    encoder = SentenceEncoder.from_pretrained(str(workspace["model"]), pooler_type="cls_before_pooler",
                                              sequence_length=config["max_len"])
    expected = evaluate_sts(lambda s: encoder.encode(s, verbose=0), workspace["data"])
    for task in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test", "avg"):
        assert finished["results"]["start"]["test"][task] == pytest.approx(expected[task], abs=1e-6), task


@pytest.mark.large
def test_below_start_is_said_and_keep_start_keeps_it(workspace, tmp_path, capsys):  # noqa: F811
    # The tiny fixture's STS-B dev is the same at every step, so no evaluation beats the start.
    output_dir = tmp_path / "run"
    results = load_recipe("unsup_simcse").main(_argv(workspace, output_dir) + ["--keep-start"])
    out = capsys.readouterr().out
    assert results["below_start"] and "below the start's" in results["below_start"] or \
        "no better than the start's" in results["below_start"]
    assert f"warning: {results['below_start']}" in out and "--keep-start kept the start" in out
    assert results["best_step"] == 0
    saved = SentenceEncoder.from_pretrained(results["model_dir"])
    untouched = SentenceEncoder.from_pretrained(str(workspace["model"]), pooler_type=saved.pooler_type,
                                                sequence_length=16)
    sentences = ["a cat sat on the mat", "the quick brown fox", "hello world"]
    np.testing.assert_allclose(saved.encode(sentences, verbose=0), untouched.encode(sentences, verbose=0), atol=1e-6)
    texts = [line for line in _text_summaries(output_dir / "logs" / "validation") if "below_start" in line[0]]
    assert texts and results["below_start"] in texts[0][1]


def test_without_keep_start_the_best_trained_model_is_saved(finished):
    results = finished["results"]
    assert results["best_step"] > 0 and "--keep-start" in results["below_start"]


def _text_summaries(log_dir):
    import tensorflow as tf

    out = []
    for path in sorted(pathlib.Path(log_dir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.dtype.kind in "SO":
                        out.append((value.tag, np.asarray(array).reshape(-1)[0].decode()))
    return out


@pytest.mark.parametrize("scores, expected", [
    ([(0, 80.0), (50, 79.0), (100, 78.5)], "STS-B dev 79.00 after training (best at step 50), below the start's 80.00"),
    ([(0, 80.0), (50, 80.0)], "no better than the start's 80.00"),
    ([(0, 80.0), (50, 81.0)], None),
    ([(50, 81.0)], None),  # no step-0 record (a run from before this rule)
    ([(0, 80.0), (50, float("nan"))], "no finite STS-B dev after training, below the start's 80.00"),
])
def test_below_start_message(scores, expected):
    message = below_start_message([{"step": s, "stsb_dev": v} for s, v in scores])
    if expected is None:
        assert message is None
    else:
        assert expected in message and "--keep-start" in message


def test_a_corpus_smaller_than_a_batch_is_refused_before_anything_is_written(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "run"
    one = tmp_path / "one.txt"
    one.write_text("just one sentence\n")
    argv = _argv(workspace, output_dir, corpus=one)
    from tf_esimcse.errors import DataError

    with pytest.raises(DataError, match=r"one.txt: 1 example, fewer than one batch of --batch-size 8"):
        load_recipe("unsup_simcse").main(argv)
    assert not output_dir.exists()


def test_format_table_rows_lines_up_the_start_and_the_trained_model():
    start = {"sts12": 1.0, "sts13": 2.0, "sts14": 3.0, "sts15": 4.0, "sts16": 5.0, "stsb_test": 6.0, "sickr_test": 7.0}
    trained = {k: v + 10 for k, v in start.items()}
    table = format_table_rows([("start (untrained)", start), ("trained (step 2)", trained)]).splitlines()
    assert len({len(line) for line in table}) == 1  # every line the same width
    assert table[3].startswith("| start (untrained)") and "4.00" in table[3] and table[4].startswith("| trained")
    assert "14.00" in table[4]  # Avg. of the trained row


def test_evaluate_on_a_run_folder_shows_its_start(finished, workspace, tmp_path, capsys):  # noqa: F811
    from tf_esimcse import cli

    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--model", str(finished["dir"]), "--data-dir", str(workspace["data"]),
                     "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| start (untrained)" in printed and "| this model" in printed
    saved = json.loads(out.read_text())
    assert saved["start"] == finished["results"]["start"]
    assert saved["avg"] == pytest.approx(finished["results"]["test"]["avg"], abs=1e-6)
    # another pooler is another model: no start row
    assert cli.main(["evaluate", "--model", str(finished["dir"]), "--data-dir", str(workspace["data"]),
                     "--pooler", "avg"]) == 0
    assert "start (untrained)" not in capsys.readouterr().out


@pytest.mark.large
def test_an_interruption_during_the_final_evaluation_resumes_there(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    import tf_esimcse.training as training

    output_dir = tmp_path / "run"
    argv = _argv(workspace, output_dir)
    recipe = load_recipe("unsup_simcse")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "encoder_length_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        recipe.main(argv)
    monkeypatch.undo()
    assert (output_dir / "backup" / "training_metadata.json").is_file()  # kept until results.json
    capsys.readouterr()
    results = recipe.main(argv)
    out = capsys.readouterr().out
    assert "resuming from step 3 of 3" in out and "step 1/3" not in out  # nothing trained again
    assert results["status"] == "ok" and "test" in results
    assert not (output_dir / "backup").exists()  # removed once results.json was written


@pytest.mark.large
def test_an_attempt_stopped_before_its_first_backup_starts_again_and_says_so(workspace, tmp_path, monkeypatch,  # noqa: F811
                                                                             capsys):
    output_dir = tmp_path / "run"
    argv = _argv(workspace, output_dir, steps=4)  # --eval-steps 2, backups every 200 steps: none before the crash
    recipe = load_recipe("unsup_simcse")
    crash_at_step(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.main(argv)
    monkeypatch.undo()
    assert (output_dir / "best_step.json").is_file() and not (output_dir / "backup").exists()
    capsys.readouterr()
    results = recipe.main(argv)
    out = capsys.readouterr().out
    assert f"starting from step 0: the earlier attempt in {output_dir} stopped before its first backup" in out
    assert "resuming" not in out and results["status"] == "ok"
    assert [r["step"] for r in results["evaluations"]] == [0, 2, 4]


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from tf_esimcse.training import main_guard

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        main_guard(interrupted)
    assert exit_.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: the same command resumes")
