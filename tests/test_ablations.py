"""`recipes/ablations.py` (`tf_esimcse.ablations`) on a tiny model: one command trains a table's rows
with the same seeds and writes table.json, table.md and the PNGs; a second call trains nothing
again; a table killed between rows or inside a row finishes, run again, as if never interrupted."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from test_recipes import _argv, workspace  # noqa: F401  (fixture)
from tf_esimcse import ablations

PNG = b"\x89PNG\r\n\x1a\n"


def _flags(workspace, output_dir, *extra):  # noqa: F811
    """The tiny workspace's recipe flags, 2 steps, seeds 1 and 2, then `extra`."""
    argv = _argv(workspace, output_dir, steps=2, **{"eval-steps": 1})
    i = argv.index("--output-dir")
    del argv[i:i + 2]  # the runner's own --output-dir, below
    i = argv.index("--steps")
    del argv[i:i + 2]
    return [*argv, "--steps", "2", "--seeds", "1,2", "--output-dir", str(output_dir), *extra]


def _encoders_argv(workspace, root):  # noqa: F811
    """The simcse-encoders table, 2 rows x seeds 1,2, 12 steps: STS-B dev at every step (`--trajectory
    1` sets `--eval-steps 1`), backups every 3 steps (so that a kill can land inside a row, after a
    backup)."""
    flags = _flags(workspace, root, "--table", "simcse-encoders", "--steps", "12", "--trajectory", "1")
    return [*flags, "--backup-steps", "3"]


@pytest.fixture(scope="module")
def encoders_table(workspace, tmp_path_factory):  # noqa: F811
    """The table trained once, uninterrupted, by the command a user runs (`python
    recipes/ablations.py ...` in its own process): the first test reads and reruns it, the kill test
    compares its killed table with the snapshot taken here (before anything else touches it)."""
    root = tmp_path_factory.mktemp("encoders_table")
    code, lines = _run_table(_encoders_argv(workspace, root))
    assert code == 0, "".join(lines[-30:])
    table_dir = root / "simcse-encoders"
    return {"root": root, "table_dir": table_dir, "output": "".join(lines),
            "table": json.loads((table_dir / "table.json").read_text()), "normalized": _normalized(table_dir, root)}


@pytest.mark.large
def test_a_table_trains_every_row_with_the_same_seeds(workspace, encoders_table, capsys):  # noqa: F811
    runner = ablations
    tmp_path, table_dir = encoders_table["root"], encoders_table["table_dir"]
    saved = encoders_table["table"]
    assert saved["seeds"] == "1,2" and [r["label"] for r in saved["rows"]] == ["one encoder", "two encoders"]
    for row in saved["rows"]:
        assert row["status"] == "ok" and row["stsb_dev"]["n"] == 2 and len(row["stsb_dev"]["values"]) == 2
        assert len(row["trajectories"]) == 2 and [r["step"] for r in row["trajectories"][0]] == list(range(13))
        assert {"alignment", "uniformity"} <= set(row["trajectories"][0][0])
    # Each row ran with its own flag on the same seeds.
    two = json.loads((table_dir / "two_encoders" / "seed_2" / "results.json").read_text())
    assert two["config"]["two_encoders"] is True and two["config"]["seed"] == 2
    one = json.loads((table_dir / "one_encoder" / "seed_2" / "results.json").read_text())
    assert one["config"]["two_encoders"] is False and one["config"]["seed"] == 2
    markdown = (table_dir / "table.md").read_text()
    assert "| one encoder |" in markdown and "82.5" in markdown and "80.7" in markdown and " ± " in markdown
    # the start row: the same encoder evaluated untrained, as `tf-esimcse evaluate` does
    from tf_esimcse.evaluation.sts import evaluate_sts
    from tf_esimcse.models.sentence_encoder import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(workspace["model"], pooler_type="cls_before_pooler")
    expected = evaluate_sts(lambda s: encoder.encode(s, verbose=0), workspace["data"])
    assert saved["start"]["scores"]["stsb_dev"] == pytest.approx(expected["stsb_dev"], abs=1e-6)
    assert saved["start"]["scores"]["avg"] == pytest.approx(expected["avg"], abs=1e-6)
    assert markdown.splitlines()[8].startswith("| start: ") and f"{expected['stsb_dev']:.2f}" in markdown.splitlines()[8]
    assert "python recipes/unsup_simcse.py" in saved["rows"][1]["command"] and "--two-encoders" in saved["rows"][1]["command"]
    for png in ("table.png", "trajectory.png"):
        assert (table_dir / png).read_bytes()[:8] == PNG
    # Figure 2's curves: each row from its own untrained start (step 0, the same encoder and pooler as
    # the table's start), then its evaluations in step order
    start_point = (saved["start"]["scores"]["uniformity"], saved["start"]["scores"]["alignment"])
    for row in saved["rows"]:
        evaluations = [(r["uniformity"], r["alignment"]) for r in row["trajectories"][0]]
        assert evaluations[0] == pytest.approx(start_point, abs=1e-6)
        assert runner.trajectory_points(row, saved["start"]) == evaluations
        assert runner.trajectory_points(row) == evaluations
    # the rows' numbers are their seeds' results.json
    for row in saved["rows"]:
        seeds = [json.loads((table_dir / slug_dir / "results.json").read_text())
                 for slug_dir in (f"{ablations.slug(row['label'])}/seed_1", f"{ablations.slug(row['label'])}/seed_2")]
        assert row["stsb_dev"]["values"] == pytest.approx([r["best_stsb_dev"] for r in seeds], abs=1e-9)

    # Started again: every seed is already trained, the same table comes back.
    capsys.readouterr()
    again = runner.main(_encoders_argv(workspace, tmp_path))
    printed = capsys.readouterr().out
    assert printed.count("already finished: ") == 4 and "=== start" not in printed  # start.json is reused
    assert "config ==" not in printed  # no seed trained again
    assert [r["stsb_dev"] for r in again["rows"]] == [r["stsb_dev"] for r in saved["rows"]]

    # Fewer seeds than trained: the row's numbers are those of the seeds asked for, not of its
    # summary.json (which covers seeds 1 and 2); nothing is trained.
    one_seed = runner.main([*_encoders_argv(workspace, tmp_path), "--seeds", "1"])
    for row, full in zip(one_seed["rows"], saved["rows"]):
        assert row["stsb_dev"]["n"] == 1 and row["stsb_dev"]["values"] == full["stsb_dev"]["values"][:1]
    assert "=== start" not in capsys.readouterr().out

    # Other settings on the same folders: the first row's recipe refuses (exit 2), the table stops
    # naming the row, and nothing of the finished rows changes.
    from tf_esimcse.errors import TfEsimcseError

    before = (table_dir / "one_encoder" / "seed_1" / "results.json").read_bytes()
    with pytest.raises(TfEsimcseError, match="row 'one encoder': .* stopped with exit code 2"):
        runner.main([*_encoders_argv(workspace, tmp_path), "--learning-rate", "1e-4"])
    assert (table_dir / "one_encoder" / "seed_1" / "results.json").read_bytes() == before


def test_trajectory_starts_at_the_start_only_for_rows_evaluated_with_its_pooler():
    runner = ablations
    start = {"pooler": "cls_before_pooler", "scores": {"uniformity": -1.5, "alignment": 0.1}}
    evaluations = [[{"step": 1, "uniformity": -2.0, "alignment": 0.2}]]
    assert runner._eval_pooler({"pooler": "cls", "mlp_only_train": True}) == "cls_before_pooler"
    assert runner._eval_pooler({"pooler": "cls", "mlp_only_train": False}) == "cls"
    assert runner._eval_pooler({"pooler": "avg"}) == "avg"
    row = {"trajectories": evaluations, "eval_pooler": "cls_before_pooler"}
    assert runner.trajectory_points(row, start) == [(-1.5, 0.1), (-2.0, 0.2)]
    assert runner.trajectory_points(dict(row, eval_pooler="avg"), start) == [(-2.0, 0.2)]
    assert runner._exit_description(-9) == "was killed by SIGKILL"
    assert runner._exit_description(2).startswith("stopped with exit code 2")


@pytest.mark.large
def test_rows_filter_and_rows_that_cannot_run_here(workspace, tmp_path):  # noqa: F811
    runner = ablations
    # Without a generator the MLM row cannot run: the table says why and trains nothing. (A row's
    # own flags reaching its run: the encoders table's test.)
    out = runner.main(_flags(workspace, tmp_path, "--table", "simcse-augmentation", "--rows", "MLM 15 %"))
    rows = {r["label"]: r for r in out["rows"]}
    assert set(rows) == {"MLM 15 %"}
    assert rows["MLM 15 %"]["status"] == "unavailable" and "--augmentation-generator" in rows["MLM 15 %"]["reason"]
    assert not (tmp_path / "simcse-augmentation" / "mlm_15").exists()
    assert "unavailable: needs --augmentation-generator" in (tmp_path / "simcse-augmentation" / "table.md").read_text()

    # With a masked-LM generator on the table command, the MLM row trains.
    from test_diffcse import write_tiny_generator

    generator = write_tiny_generator(tmp_path / "generator")
    out = runner.main(_flags(workspace, tmp_path, "--table", "simcse-augmentation", "--rows", "MLM 15 %",
                             "--augmentation-generator", generator))
    assert out["rows"][0]["status"] == "ok"
    config = json.loads((tmp_path / "simcse-augmentation" / "mlm_15" / "seed_1" / "results.json").read_text())["config"]
    assert (config["augmentation"], config["augmentation_generator"]) == ("mlm:15", generator)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    runner = ablations
    with pytest.raises(ValueError, match="unknown rows"):
        runner.main(["--table", "simcse-dropout", "--rows", "p = 0.7", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        runner.main(["--table", "no-such-table"])
    runner.main(["--list"])
    listing = capsys.readouterr().out
    assert "esimcse-queue" in listing and "python recipes/unsup_esimcse.py --queue-size 160" in listing
    # beyond what fits in memory, the batch-size rows train with the cached step
    assert "python recipes/unsup_simcse.py --batch-size 2048 --mini-batch-size 64" in listing
    assert "python recipes/sup_simcse.py --batch-size 512\n" in listing


def test_methods_table_gives_the_generator_to_diffcse_only(workspace, tmp_path):  # noqa: F811
    """SimCSE vs ESimCSE vs DiffCSE in one command: `--generator` reaches the DiffCSE row only (the
    other recipes have no such flag), and each row's recipe accepts the flags it is given (its own
    parser, as the row's process parses them; the rows' training itself is the encoders table's test)."""
    from test_diffcse import write_tiny_generator
    from tf_esimcse.methods import method as methods

    generator = write_tiny_generator(tmp_path / "generator")
    table = ablations.TABLES["methods"]
    common = [*_flags(workspace, tmp_path, "--generator", generator), "--seeds", "1"]
    configs = {}
    for row in table.rows:
        flags = ablations.row_flags(row, common, table)
        assert ("--generator" in flags) == (row.recipe == "diffcse"), (row.label, flags)
        configs[row.label] = methods.get(row.recipe).parse([*flags, *row.flags])
    assert [r.label for r in table.rows] == ["unsup SimCSE", "ESimCSE", "DiffCSE"]
    assert configs["DiffCSE"].generator == generator
    assert not any(hasattr(configs[k], "generator") for k in ("unsup SimCSE", "ESimCSE"))
    with pytest.raises(SystemExit):  # what the row's process would do if the flag leaked
        methods.get("unsup_esimcse").parse(["--generator", generator])


@pytest.mark.large
def test_rows_train_in_their_own_process_and_a_failing_row_is_named(workspace, tmp_path):  # noqa: F811
    """A diverged row is marked and the table goes on; a row whose recipe fails stops the table
    with the row and its command named (each row is a child process: its exit code is read)."""
    from tf_esimcse.errors import TfEsimcseError

    runner = ablations
    out = runner.main(_flags(workspace, tmp_path, "--table", "simcse-encoders", "--seeds", "1", "--steps", "6",
                             "--learning-rate", "1e6", "--max-grad-norm", "1e12"))
    assert [r["status"] for r in out["rows"]] == ["diverged", "diverged"]
    saved = json.loads((tmp_path / "simcse-encoders" / "one_encoder" / "seed_1" / "results.json").read_text())
    assert saved["status"] == "diverged" and out["rows"][0]["reason"] == saved["reason"]
    assert "| one encoder | (defaults) | diverged: " in (tmp_path / "simcse-encoders" / "table.md").read_text()

    with pytest.raises(TfEsimcseError, match=r"row 'one encoder': `python recipes/unsup_simcse.py .*` stopped with exit code 2"):
        runner.main(_flags(workspace, tmp_path / "bad", "--table", "simcse-encoders", "--seeds", "1",
                           "--corpus", str(tmp_path / "no_such_corpus.txt")))


# --- a killed table resumes (issue 26) ---------------------------------------------------------------

RECIPE = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "ablations.py"


def _run_table(argv, kill_when=None, timeout=900):
    """`python recipes/ablations.py argv` in its own process group; with `kill_when(lines, out)`
    (the output lines so far), the whole group (runner and row) gets SIGKILL as soon as it holds.
    Returns (exit code, output lines)."""
    proc = subprocess.Popen([sys.executable, "-u", str(RECIPE), *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            if kill_when is not None and kill_when(list(lines)):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        if proc.poll() is None and time.time() >= deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"the table command ran past {timeout} s")
        code = proc.wait()
    finally:
        reader.join(timeout=60)
    return code, lines


def _normalized(table_dir, root):
    """table.json and table.md with the run's own folder replaced by a placeholder."""
    text = json.dumps(json.loads((table_dir / "table.json").read_text()), sort_keys=True)
    return text.replace(str(root), "<out>"), (table_dir / "table.md").read_text().replace(str(root), "<out>")


@pytest.mark.large
def test_a_killed_table_resumes_to_the_uninterrupted_table(workspace, encoders_table, tmp_path):  # noqa: F811
    """SIGKILL on the runner's process group inside a row (after a seed's backup, mid-seed) and
    between rows; the same command run again finishes a table equal to the uninterrupted one's
    (the `encoders_table` fixture, the same command in another folder)."""
    def argv(root):
        return _encoders_argv(workspace, root)

    reference = encoders_table["normalized"]

    root = tmp_path / "killed"
    table_dir = root / "simcse-encoders"
    second_seed_backup = table_dir / "one_encoder" / "seed_2" / "backup" / "training_metadata.json"
    kills = {
        # inside the first row: seed 1 finished, seed 2 backed up and still training
        "inside a row": lambda lines: second_seed_backup.is_file(),
        # between rows: the first row is in table.json, the second row's recipe is only starting
        "between rows": lambda lines: any(line.startswith("=== two encoders: ") for line in lines),
        # inside the second row, before its first backup
        "inside a row, before its first backup": lambda lines: any(
            "two encoders" in line for line in lines) and any(line.startswith("== unsup_simcse seed 1 config ==")
                                                                for line in lines[-50:]),
    }
    outputs = {}
    for what, kill_when in kills.items():
        code, lines = _run_table(argv(root), kill_when)
        assert code == -signal.SIGKILL, (what, code, "".join(lines[-20:]))
        outputs[what] = "".join(lines)
    # each kill landed where it was meant to: the run after the first resumed seed 2 from its
    # backup, the one after the second skipped the finished first row
    assert "resuming from step " in outputs["between rows"]
    assert outputs["inside a row, before its first backup"].count("already finished: ") == 2
    first = json.loads((table_dir / "table.json").read_text())
    assert [r["label"] for r in first["rows"]] == ["one encoder"]  # killed after the first row was written
    code, lines = _run_table(argv(root))
    assert code == 0, "".join(lines[-30:])
    assert _normalized(table_dir, root) == reference
