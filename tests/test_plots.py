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


@pytest.fixture(scope="module")
def runs(workspace, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("plots")
    recipe = load_recipe("unsup_simcse")
    recipe.main(_argv(workspace, root / "single", **{"steps": 4, "eval-steps": 2}))
    recipe.main(_argv(workspace, root / "seeds", **{"steps": 4, "eval-steps": 2, "seeds": "1,2"}))
    return root


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
    curve, star = axes["STS-B"].get_lines()
    assert list(curve.get_xdata()) == [r["step"] for r in evaluations]
    assert list(star.get_xdata()) == [saved["best_step"]] and star.get_marker() == "*"
    assert star.get_ydata()[0] == pytest.approx(saved["best_stsb_dev"])
    align = axes["alignment"].get_lines()[0]  # SimCSE Fig. 2: x uniformity, y alignment
    assert list(align.get_xdata()) == pytest.approx([r["uniformity"] for r in evaluations])
    assert list(align.get_ydata()) == pytest.approx([r["alignment"] for r in evaluations])
    assert f"best STS-B dev {saved['best_stsb_dev']:.2f} at step {saved['best_step']}" in fig.get_suptitle()


def test_plot_run_of_a_seeds_folder_draws_one_line_per_seed(runs):
    path = plots.plot_run(runs / "seeds")
    assert path == runs / "seeds" / "run.png"
    _assert_png(path)
    fig = plots.run_figure(runs / "seeds")
    assert len(fig.axes) == 4
    axes = _axes_by_title(fig)
    assert [line.get_label() for line in axes["learning"].get_lines()] == ["seed 1", "seed 2"]
    curves = [line for line in axes["STS-B"].get_lines() if line.get_marker() != "*"]
    assert [line.get_label() for line in curves] == ["seed 1", "seed 2"]
    assert len([line for line in axes["STS-B"].get_lines() if line.get_marker() == "*"]) == 2  # each seed's best
    assert [line.get_label() for line in axes["training"].get_lines()] == ["seed 1 loss (= contrastive_loss)",
                                                                           "seed 2 loss (= contrastive_loss)"]
    assert "2 seeds" in fig.get_suptitle()


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


def test_plot_length_split_and_sts_table_of_a_run(runs, tmp_path):
    results = runs / "single" / "results.json"  # a path to a run's results.json: scores under "test"
    _assert_png(plots.plot_length_split(results, tmp_path / "split.png"))
    _assert_png(plots.plot_sts_table(results, tmp_path / "sts.png"))
    test = json.loads(results.read_text())["test"]
    (ax,) = plots.sts_table_figure(results).axes
    assert [p.get_height() for p in ax.patches] == pytest.approx([test[k] for k, _ in plots.STS_TASKS])


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
