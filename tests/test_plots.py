"""Figures: a recipe's run folder (single run and seeds), a resumed run's TensorBoard parts on
global steps, the length split and STS bars; PNGs written atomically; clear errors for an empty
folder and for a missing matplotlib."""
import json
import math
import shutil
import sys

import pytest
import tensorflow as tf

from test_recipes import _argv, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse import plots
from tf_esimcse.errors import TfEsimcseError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STS = {"sts12": 60.1, "sts13": 70.2, "sts14": 65.3, "sts15": 75.4, "sts16": 72.5, "stsb_test": 71.6,
       "sickr_test": 68.7, "avg": 69.1}


def _split(short, long, n_short=900, n_long=479, threshold=3):
    return {"short_diff": short, "long_diff": long, "n_short": n_short, "n_long": n_long, "threshold": threshold,
            "unit": "wordpiece tokens"}


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000, (path, len(data))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]  # no temp file left


def _axes_by_title(fig):
    return {ax.get_title().split(" ")[0]: ax for ax in fig.axes}


def _start_artists(ax):
    """What an axes draws for the untrained start (gid "start"): lines, bars, collections."""
    return [a for a in ax.get_children() if a.get_gid() == "start"]


def _not_start(artists):
    return [a for a in artists if a.get_gid() != "start"]


@pytest.fixture(scope="module")
def runs(workspace, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("plots")
    recipe = load_recipe("unsup_simcse")
    recipe.main(_argv(workspace, root / "single", **{"steps": 4, "eval-steps": 2}))
    recipe.main(_argv(workspace, root / "seeds", **{"steps": 4, "eval-steps": 2, "seeds": "1,2"}))
    return root


@pytest.mark.large
def test_plot_run_draws_loss_learning_rate_stsb_and_alignment_uniformity(runs, tmp_path):
    run_dir = runs / "single"
    path = plots.plot_run(run_dir)
    assert path == run_dir / "run.png"
    _assert_png(path)

    custom = plots.plot_run(run_dir, tmp_path / "figures" / "mine.png")  # the folder is created
    assert custom == tmp_path / "figures" / "mine.png"
    _assert_png(custom)

    fig = plots.run_figure(run_dir)
    assert len(fig.axes) == 4
    axes = _axes_by_title(fig)
    assert set(axes) == {"training", "learning", "STS-B", "alignment"}
    # One objective term: drawn once, as the total loss, and named.
    assert [line.get_label() for line in axes["training"].get_lines()] == ["loss (= contrastive_loss)"]
    assert list(axes["training"].get_lines()[0].get_xdata()) == [2, 4]
    assert list(axes["learning"].get_lines()[0].get_xdata()) == [2, 4]
    assert axes["learning"].get_lines()[0].get_ydata()[-1] == 0.0  # linear decay to 0 at the last step

    saved = json.loads((run_dir / "results.json").read_text())
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    curve, star = _not_start(axes["STS-B"].get_lines())
    assert list(curve.get_xdata()) == [r["step"] for r in evaluations]
    assert list(star.get_xdata()) == [saved["best_step"]] and star.get_marker() == "*"
    assert star.get_ydata()[0] == pytest.approx(saved["best_stsb_dev"])
    align = axes["alignment"].get_lines()[0]  # SimCSE Fig. 2: x uniformity, y alignment
    assert list(align.get_xdata()) == pytest.approx([r["uniformity"] for r in evaluations])
    assert list(align.get_ydata()) == pytest.approx([r["alignment"] for r in evaluations])
    assert f"best STS-B dev {saved['best_stsb_dev']:.2f} at step {saved['best_step']}" in fig.get_suptitle()
    # The title names the run and the model it started from; the step-0 evaluation, when the run
    # made one, is the dashed baseline.
    assert fig.get_suptitle().startswith(f"single (from {plots._short_model(saved['config']['model'])})")
    has_start = evaluations[0]["step"] == 0
    assert bool(_start_artists(axes["STS-B"])) == has_start == bool(_start_artists(axes["alignment"]))


@pytest.mark.large
def test_plot_run_of_a_seeds_folder_draws_one_line_per_seed(runs):
    path = plots.plot_run(runs / "seeds")
    assert path == runs / "seeds" / "run.png"
    _assert_png(path)
    fig = plots.run_figure(runs / "seeds")
    assert len(fig.axes) == 4
    axes = _axes_by_title(fig)
    assert [line.get_label() for line in axes["learning"].get_lines()] == ["seed 1", "seed 2"]
    curves = [line for line in _not_start(axes["STS-B"].get_lines()) if line.get_marker() != "*"]
    assert [line.get_label() for line in curves] == ["seed 1", "seed 2"]
    assert len([line for line in axes["STS-B"].get_lines() if line.get_marker() == "*"]) == 2  # each seed's best
    assert [line.get_label() for line in axes["training"].get_lines()] == ["seed 1 loss (= contrastive_loss)",
                                                                           "seed 2 loss (= contrastive_loss)"]
    assert "2 seeds" in fig.get_suptitle()


@pytest.mark.large
def test_without_evaluations_json_the_tensorboard_scalars_are_read(runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs / "single" / "logs", run_dir / "logs")  # a run whose JSON files are gone
    expected = json.loads((runs / "single" / "evaluations.json").read_text())
    run = plots.read_run(run_dir)
    assert run["evaluations_source"] == "tensorboard" and run["results"] is None
    assert [r["step"] for r in run["evaluations"]] == [r["step"] for r in expected]
    for got, want in zip(run["evaluations"], expected):
        for key in ("stsb_dev", "alignment", "uniformity"):
            assert got[key] == pytest.approx(want[key], abs=1e-4)
    assert {"loss", "contrastive_loss", "learning_rate"} <= set(run["train"])
    _assert_png(plots.plot_run(run_dir))


def test_evaluations_alone_are_enough_and_nan_evaluations_are_marked(tmp_path):
    records = [{"step": 125, "stsb_dev": 70.5, "alignment": 0.2, "uniformity": -2.1},
               {"step": 250, "stsb_dev": math.nan, "alignment": math.nan, "uniformity": math.nan},
               {"step": 375, "stsb_dev": 75.0, "alignment": 0.22, "uniformity": -2.5}]
    (tmp_path / "evaluations.json").write_text(json.dumps(records))  # NaN as json.dumps writes it
    _assert_png(plots.plot_run(tmp_path))
    axes = _axes_by_title(plots.run_figure(tmp_path))
    curve, nan, star = axes["STS-B"].get_lines()
    assert list(curve.get_xdata()) == [125, 375] and list(star.get_xdata()) == [375]
    assert list(nan.get_xdata()) == [250] and nan.get_label() == "NaN evaluation"
    assert "no batch_loss" in axes["training"].texts[0].get_text()


def _write_part(log_dir, events, loss):
    """One fit's event file, as Keras's TensorBoard callback writes it: `events` are ("batch", step)
    (its local batch count) and ("epoch", index) (the global Keras epoch) in the order they happen."""
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for kind, step in events:
            tf.summary.scalar(f"{kind}_loss", loss, step=step)
            loss += kind == "batch"
    writer.close()


def test_a_resumed_run_is_placed_on_global_steps(tmp_path):
    # Chunks of 2 steps (backup_steps=2): the first part ran steps 1-5 (logged at 2 and 4, chunks
    # 0 and 1), was killed, and the resumed part counts batches from 1 again from chunk 2 on.
    run_dir = tmp_path / "run"
    train = run_dir / "logs" / "train"
    _write_part(train, [("batch", 2), ("epoch", 0), ("batch", 4), ("epoch", 1)], loss=10.0)
    _write_part(train, [("batch", 2), ("epoch", 2), ("batch", 4), ("epoch", 3)], loss=20.0)
    run = plots.read_run(run_dir)  # still training: no results.json, the chunk size is estimated
    assert run["train"]["loss"] == [(2, 10.0), (4, 11.0), (6, 20.0), (8, 21.0)] and run["unplaced"] == 0

    (run_dir / "results.json").write_text(json.dumps({"config": {"steps": 8, "backup_steps": 2}}))
    assert plots.read_run(run_dir)["train"]["loss"] == [(2, 10.0), (4, 11.0), (6, 20.0), (8, 21.0)]

    # A resumed part that has not finished its first chunk cannot be placed yet: left out, and said.
    _write_part(train, [("batch", 2)], loss=30.0)
    run = plots.read_run(run_dir)
    assert run["unplaced"] == 1 and run["train"]["loss"][-1] == (8, 21.0)
    fig = plots.run_figure(run_dir)
    assert any("not placed" in text.get_text() for text in _axes_by_title(fig)["training"].texts)


def test_parts_are_ordered_by_time_not_by_file_name(tmp_path):
    # A process's writers are numbered 0, 1, ..., 9, 10: by name, ".10." sorts before ".9.", and
    # the record opening each file has whole seconds only; the first summary's time orders them.
    train = tmp_path / "run" / "logs" / "train"
    _write_part(train, [("batch", 2), ("epoch", 0), ("batch", 4), ("epoch", 1)], loss=10.0)
    (first,) = train.iterdir()
    first.rename(train / "events.out.tfevents.1700000000.host.1.9.v2")
    _write_part(train, [("batch", 2), ("epoch", 2), ("batch", 4), ("epoch", 3)], loss=20.0)
    second = next(p for p in train.iterdir() if not p.name.endswith(".9.v2"))
    second.rename(train / "events.out.tfevents.1700000000.host.1.10.v2")
    assert plots.read_run(tmp_path / "run")["train"]["loss"] == [(2, 10.0), (4, 11.0), (6, 20.0), (8, 21.0)]
    assert sorted(["a.10.v2", "a.9.v2"], key=plots._natural) == ["a.9.v2", "a.10.v2"]


def test_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(plots.PlotError, match="no training logs or evaluations") as info:
        plots.plot_run(tmp_path)
    assert str(tmp_path) in str(info.value) and "evaluations.json" in str(info.value)
    assert isinstance(info.value, TfEsimcseError)
    assert not (tmp_path / "run.png").exists()

    with pytest.raises(plots.PlotError, match="no such folder"):
        plots.plot_run(tmp_path / "missing")

    (tmp_path / "seed_1" / "logs").mkdir(parents=True)  # a seed that has not started logging yet
    with pytest.raises(plots.PlotError, match="seed_1") as info:
        plots.plot_run(tmp_path)
    assert "logs/train" in str(info.value)


@pytest.mark.large
def test_a_missing_matplotlib_is_a_clear_error(runs, tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib...` now raises ImportError
    with pytest.raises(plots.MatplotlibNotInstalled, match=r'pip install "tf_esimcse\[plots\]"') as info:
        plots.plot_length_split({"length_split": _split(80.0, 70.0)}, tmp_path / "split.png")
    assert isinstance(info.value, TfEsimcseError) and isinstance(info.value, ImportError)
    with pytest.raises(plots.MatplotlibNotInstalled):
        plots.plot_run(runs / "single", tmp_path / "run.png")
    assert not list(tmp_path.iterdir())


def test_plot_length_split_one_model_and_two_side_by_side(tmp_path):
    one = {"model": "saved_models/unsup_esimcse/model", "length_split": _split(82.5, 74.25), **STS}
    path = plots.plot_length_split(one, tmp_path / "one.png")
    assert path == tmp_path / "one.png"
    _assert_png(path)
    fig = plots.length_split_figure(one)
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == [82.5, 74.25]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["length diff <= 3\n(n=900)", "length diff > 3\n(n=479)"]

    # Two models, one with another tokenizer (other n) and an empty group (NaN): n in the legend, "n/a" bar.
    pair = [("SimCSE", {"length_split": _split(80.0, 70.0)}),
            ("ESimCSE", {"test": {"length_split": _split(81.0, math.nan, n_short=1379, n_long=0)}})]
    _assert_png(plots.plot_length_split(pair, tmp_path / "two.png"))
    (ax,) = plots.length_split_figure(pair).axes
    assert [p.get_height() for p in ax.patches] == [80.0, 70.0, 81.0, 0.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["SimCSE (n = 900 / 479)", "ESimCSE (n = 1379 / 0)"]
    assert "n/a" in [t.get_text() for t in ax.texts]


@pytest.mark.large
def test_plot_length_split_and_sts_table_of_a_run(runs, tmp_path):
    results = runs / "single" / "results.json"  # a path to a run's results.json: scores under "test"
    _assert_png(plots.plot_length_split(results, tmp_path / "split.png"))
    _assert_png(plots.plot_sts_table(results, tmp_path / "sts.png"))
    test = json.loads(results.read_text())["test"]
    (ax,) = plots.sts_table_figure(results).axes
    trained = _not_start(ax.patches)  # the run's untrained start, when it has one, as grey bars beside
    assert [p.get_height() for p in trained] == pytest.approx([test[k] for k, _ in plots.STS_TASKS])


def test_plot_sts_table_bars_of_the_seven_tasks_and_avg(tmp_path):
    _assert_png(plots.plot_sts_table([("a", STS), ("b", dict(STS, avg=70.0))], tmp_path / "sts.png"))
    (ax,) = plots.sts_table_figure([("a", STS), ("b", dict(STS, avg=70.0))]).axes
    assert len(ax.patches) == 16
    assert [t.get_text() for t in ax.get_xticklabels()] == [label for _, label in plots.STS_TASKS]


def test_bad_results_are_clear_errors(tmp_path):
    with pytest.raises(plots.PlotError, match="SimCSE: no length split.*--length-split"):
        plots.plot_length_split([("SimCSE", STS)], tmp_path / "x.png")
    with pytest.raises(plots.PlotError, match="lack sts16, avg"):
        plots.plot_sts_table({k: v for k, v in STS.items() if k not in ("sts16", "avg")}, tmp_path / "x.png")
    with pytest.raises(plots.PlotError, match=r"\(label, results\) pairs"):
        plots.plot_sts_table([STS], tmp_path / "x.png")
    with pytest.raises(plots.PlotError, match="is a folder"):
        plots.plot_sts_table(STS, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_failed_write_keeps_the_previous_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = plots.plot_sts_table(STS, tmp_path / "sts.png")
    before = path.read_bytes()

    def crash_mid_write(self, f, **kwargs):
        f.write(PNG_SIGNATURE + b"truncated")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", crash_mid_write)
    with pytest.raises(OSError, match="No space left"):
        plots.plot_sts_table(dict(STS, avg=10.0), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sts.png"]


@pytest.mark.large
def test_cli_plot_commands(workspace, tmp_path, capsys):  # noqa: F811
    from tf_esimcse import cli

    run = tmp_path / "run"
    load_recipe("unsup_simcse").main(_argv(workspace, run, steps=2, **{"eval-steps": 1}))
    assert cli.main(["plot-run", str(run)]) == 0
    assert (run / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "split.png"
    assert cli.main(["evaluate", "--model", str(run), "--data-dir", str(workspace["data"]), "--length-split",
                     "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["plot-run", str(tmp_path / "empty_nothing")]) == 2
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Figures that stand alone: the model or run in the title, Avg. set apart, the start as a baseline

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
START_TEST = {"sts12": 62.0, "sts13": 68.0, "sts14": 66.0, "sts15": 77.0, "sts16": 73.0, "stsb_test": 74.6,
              "sickr_test": 70.7, "avg": 70.2}
START = {"stsb_dev": 86.72, "alignment": 0.19, "uniformity": -2.2}


def _write_run(run_dir, step0=True, start_in_results=True, best_step=None, model=MINILM):
    """A finished run folder as `run_training` leaves it (evaluations.json, results.json), no logs.
    Training makes this encoder worse: every trained evaluation is below the start's 86.72."""
    run_dir.mkdir(parents=True)
    evaluations = [{"step": step, "stsb_dev": dev, "alignment": 0.2 + step / 1000, "uniformity": -2.3 - step / 100}
                   for step, dev in ((50, 85.89), (100, 84.88), (150, 82.06))]
    if step0:
        evaluations.insert(0, {"step": 0, **START})
    (run_dir / "evaluations.json").write_text(json.dumps(evaluations))
    results = {"config": {"model": model, "output_dir": str(run_dir)}, "status": "ok",
               "best_step": 50 if best_step is None else best_step, "test": STS}
    if start_in_results:
        results["start"] = dict(START, test=START_TEST)
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_a_run_figure_names_the_run_and_its_model_and_draws_the_start(tmp_path):
    run_dir = _write_run(tmp_path / "simcse_from_minilm")
    fig = plots.run_figure(run_dir)
    title = fig.get_suptitle()
    assert title.startswith(f"simcse_from_minilm (from {MINILM})")
    assert "best STS-B dev 85.89 at step 50, below the start's 86.72" in title
    assert "test Avg. 69.10 (start 70.20)" in title
    axes = _axes_by_title(fig)

    (baseline,) = _start_artists(axes["STS-B"])  # a dashed line at the start's STS-B dev, named
    assert baseline.get_linestyle() == "--" and set(baseline.get_ydata()) == {86.72}
    assert baseline.get_label().startswith("start (untrained)")
    assert "start (untrained) 86.72" in [t.get_text() for t in axes["STS-B"].get_legend().get_texts()]
    curve, star = _not_start(axes["STS-B"].get_lines())
    assert list(curve.get_xdata()) == [0, 50, 100, 150]  # training's path from the start
    assert list(star.get_xdata()) == [50]  # the best trained step, although the start scores higher

    (start_star,) = _start_artists(axes["alignment"])  # the start in Figure 2's plane: a star
    assert start_star.get_marker() == "*"
    assert (start_star.get_xdata()[0], start_star.get_ydata()[0]) == (START["uniformity"], START["alignment"])
    assert "start (untrained)" in [t.get_text() for t in axes["alignment"].get_legend().get_texts()]


def test_the_start_from_results_json_and_a_kept_start(tmp_path):
    # Evaluations without step 0 but results.json with "start": still the baseline.
    axes = _axes_by_title(plots.run_figure(_write_run(tmp_path / "a", step0=False)))
    assert len(_start_artists(axes["STS-B"])) == 1 and len(_start_artists(axes["alignment"])) == 1

    # --keep-start: the start is the run's best (best_step 0), so the star marks step 0.
    fig = plots.run_figure(_write_run(tmp_path / "kept", best_step=0))
    curve, star = _not_start(_axes_by_title(fig)["STS-B"].get_lines())
    assert list(star.get_xdata()) == [0]
    assert "best STS-B dev 86.72 at step 0 (the untrained start, kept)" in fig.get_suptitle()


def test_a_run_without_a_start_has_no_baseline(tmp_path):
    fig = plots.run_figure(_write_run(tmp_path / "old_run", step0=False, start_in_results=False))
    for ax in fig.axes:
        assert not _start_artists(ax)
    axes = _axes_by_title(fig)
    assert "start" not in axes["STS-B"].get_title() and axes["STS-B"].get_legend() is None
    assert "start" not in fig.get_suptitle() and fig.get_suptitle().startswith(f"old_run (from {MINILM})")
    _assert_png(plots.plot_run(tmp_path / "old_run"))


def test_seeds_from_one_start_share_one_baseline_and_the_title_names_the_model(tmp_path):
    for seed in (1, 2):
        _write_run(tmp_path / "seeds" / f"seed_{seed}")
    fig = plots.run_figure(tmp_path / "seeds")
    assert fig.get_suptitle().startswith(f"seeds (from {MINILM}): 2 seeds")
    axes = _axes_by_title(fig)
    assert len(_start_artists(axes["STS-B"])) == 1 and len(_start_artists(axes["alignment"])) == 1
    # each seed's best in the legend (labels beside stars this close would overlap)
    assert "seed 2 best 85.89 @ 50" in [t.get_text() for t in axes["STS-B"].get_legend().get_texts()]


def _bar_centers(ax):
    return [p.get_x() + p.get_width() / 2 for p in _not_start(ax.patches)]


def test_the_sts_bars_set_avg_apart_and_name_the_model(tmp_path):
    model = "saved_models/unsup_esimcse/model"
    evaluated = dict(STS, model=model, pooler="cls_before_pooler")  # as `tf-esimcse evaluate` writes it
    fig = plots.sts_table_figure([(model, evaluated)])  # as `tf-esimcse evaluate --plot` calls it
    (ax,) = fig.axes
    assert ax.get_title().startswith(f"{model} (pooler cls_before_pooler)\n")
    xs = _bar_centers(ax)
    assert len(xs) == 8
    task_step = xs[6] - xs[5]
    assert xs[7] - xs[6] > task_step + 0.5  # a gap before Avg.: a summary, not an 8th task
    avg_bar = ax.patches[-1]
    assert avg_bar.get_gid() == "avg" and avg_bar.get_hatch() and not ax.patches[0].get_hatch()
    (tick,) = [t for t in ax.get_xticklabels() if t.get_text() == "Avg."]
    assert tick.get_fontweight() == "bold"
    assert not _start_artists(ax)  # an evaluated model has no start
    _assert_png(plots.plot_sts_table([(model, evaluated)], tmp_path / "sts.png"))

    # Several models: the title names each, and Avg. is apart for every one of them.
    (ax,) = plots.sts_table_figure([("SimCSE", STS), ("ESimCSE", STS)]).axes
    assert ax.get_title().startswith("SimCSE vs ESimCSE\n")
    first, second = ax.patches[:8], ax.patches[8:]
    for bars in (first, second):
        xs = [p.get_x() for p in bars]
        assert xs[7] - xs[6] > (xs[6] - xs[5]) + 0.5


def test_a_runs_sts_bars_show_its_start_beside(tmp_path):
    run_dir = _write_run(tmp_path / "simcse_from_minilm")
    fig = plots.sts_table_figure(run_dir / "results.json")
    (ax,) = fig.axes
    assert ax.get_title().startswith(f"simcse_from_minilm (from {MINILM})\n")
    start_bars = [p for p in ax.patches if p.get_gid() == "start"]
    assert [p.get_height() for p in start_bars] == [START_TEST[k] for k, _ in plots.STS_TASKS]
    assert [p.get_height() for p in _not_start(ax.patches)] == [STS[k] for k, _ in plots.STS_TASKS]
    assert all(s.get_x() < t.get_x() for s, t in zip(start_bars, _not_start(ax.patches)))  # beside, on the left
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["start (untrained)", "simcse_from_minilm"]
    _assert_png(plots.plot_sts_table(run_dir / "results.json", tmp_path / "sts.png"))

    # A seed's run is named with its parent folder.
    seed = _write_run(tmp_path / "unsup_simcse" / "seed_2", step0=False, start_in_results=False)
    assert plots.sts_table_figure(seed / "results.json").axes[0].get_title().startswith(
        f"unsup_simcse/seed_2 (from {MINILM})\n")
    assert plots.run_figure(seed).get_suptitle().startswith(f"unsup_simcse/seed_2 (from {MINILM})\n")

    # Two runs from the same start: one grey series; from different starts: one each, named.
    other = _write_run(tmp_path / "esimcse_from_minilm")
    (ax,) = plots.sts_table_figure([("SimCSE", run_dir / "results.json"), ("ESimCSE", other / "results.json")]).axes
    assert len([p for p in ax.patches if p.get_gid() == "start"]) == 8
    results = json.loads((other / "results.json").read_text())
    results["start"]["test"] = dict(START_TEST, avg=60.0)
    (ax,) = plots.sts_table_figure([("SimCSE", run_dir / "results.json"), ("ESimCSE", results)]).axes
    assert len([p for p in ax.patches if p.get_gid() == "start"]) == 16
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["SimCSE: start (untrained)",
                                                                       "ESimCSE: start (untrained)"]

    # A run from before the start was evaluated: no grey bars.
    old = _write_run(tmp_path / "old", step0=False, start_in_results=False)
    (ax,) = plots.sts_table_figure(old / "results.json").axes
    assert not _start_artists(ax) and ax.get_legend() is None


def test_the_length_split_names_the_model_and_shows_a_runs_start(tmp_path):
    model = "saved_models/unsup_esimcse/model"
    (ax,) = plots.length_split_figure([(model, {"pooler": "avg", "length_split": _split(80.0, 70.0)})]).axes
    assert ax.get_title().startswith(f"{model} (pooler avg)\n") and not _start_artists(ax)

    run_dir = _write_run(tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    results["test"]["length_split"] = _split(82.5, 74.25)
    results["start"]["test"]["length_split"] = _split(80.0, 71.0)
    (ax,) = plots.length_split_figure(results).axes
    assert ax.get_title().startswith(f"run (from {MINILM})\n")
    assert [p.get_height() for p in ax.patches if p.get_gid() == "start"] == [80.0, 71.0]
    assert [p.get_height() for p in _not_start(ax.patches)] == [82.5, 74.25]


def _rows():
    return [{"label": "p = 0.1", "status": "ok", "paper": 82.5, "stsb_dev": {"mean": 84.0, "std": 0.4}},
            {"label": "p = 0.5", "status": "ok", "paper": 71.0, "stsb_dev": {"mean": 80.0, "std": 0.6}},
            {"label": "fixed 0.1", "status": "diverged", "paper": 43.6, "reason": "non-finite loss"},
            {"label": "MLM", "status": "unavailable", "paper": None, "reason": "needs --generator"}]


def test_the_ablation_table_names_its_model_and_keeps_the_start_line(tmp_path):
    fig = plots.ablation_table_figure(_rows(), "simcse-dropout", "Dropout probability", start_stsb_dev=86.7,
                                      model=MINILM)
    (ax,) = fig.axes
    assert ax.get_title() == f"simcse-dropout: Dropout probability\nevery row trained from {MINILM}"
    # top to bottom in table order; a row neither trained nor with a paper figure is left out
    assert [t.get_text() for t in ax.get_yticklabels()] == ["p = 0.1", "p = 0.5", "fixed 0.1 (diverged)"]
    (start,) = _start_artists(ax)
    assert start.get_linestyle() == "--" and set(start.get_xdata()) == {86.7}
    assert "start (untrained) (86.7)" in [t.get_text() for t in fig.legends[0].get_texts()]
    _assert_png(plots.plot_ablation_table(_rows(), tmp_path / "table.png", "simcse-dropout", "Dropout probability",
                                          start_stsb_dev=86.7, model=MINILM))

    (ax,) = plots.ablation_table_figure(_rows(), "simcse-dropout", "Dropout probability").axes
    assert not _start_artists(ax) and ax.get_title() == "simcse-dropout: Dropout probability"


def test_the_ablation_trajectory_starts_at_a_star(tmp_path):
    trajectories = [("p = 0.1", [(-2.2, 0.19), (-2.5, 0.21)]), ("p = 0.5", [(-2.2, 0.19), (-2.4, 0.25)]),
                    ("not run", [])]
    fig = plots.ablation_trajectory_figure(trajectories, "simcse-dropout", start=(-2.2, 0.19), model=MINILM)
    (ax,) = fig.axes
    assert ax.get_title().startswith("simcse-dropout: alignment and uniformity during training\n")
    assert MINILM in ax.get_title()
    (star,) = _start_artists(ax)
    assert star.get_marker() == "*" and (star.get_xdata()[0], star.get_ydata()[0]) == (-2.2, 0.19)
    assert [line.get_label() for line in _not_start(ax.get_lines())] == ["p = 0.1", "p = 0.5"]
    _assert_png(plots.plot_ablation_trajectory(trajectories, tmp_path / "trajectory.png", "simcse-dropout",
                                               start=(-2.2, 0.19)))
    (ax,) = plots.ablation_trajectory_figure(trajectories, "simcse-dropout").axes
    assert not _start_artists(ax)


def test_figures_are_drawn_only_in_plots_py():
    """One plotting module (issue 27): no other module of the package, recipe or benchmark
    imports matplotlib or calls pyplot."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    drawing = re.compile(r"\bplt\.|^\s*(import|from) matplotlib", re.M)
    offenders = [str(path.relative_to(root)) for folder in ("tf_esimcse", "recipes", "benchmarks")
                 for path in sorted((root / folder).rglob("*.py"))
                 if path != root / "tf_esimcse" / "plots.py" and drawing.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
