"""Tests for `tf_esimcse.run_summary`: arithmetic against hand-computed numbers, file contents,
non-finite and missing values, atomic writes."""
import json
import math
import os

import pytest

from tf_esimcse import run_summary
from tf_esimcse.run_summary import summarize_seeds, write_summary

TASK_KEYS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test")


def make_result(seed, base, stsb_dev, alignment, uniformity, best_step, length_split=None, **config):
    """A `results.json` dict as `run_training` writes it; task i scores `base + i`."""
    test = {key: base + i for i, key in enumerate(TASK_KEYS)}
    test["avg"] = sum(test.values()) / 7
    test.update(stsb_dev=stsb_dev - 0.5, alignment=alignment, uniformity=uniformity)
    if length_split:
        test["length_split"] = dict(length_split, n_short=700, n_long=679, threshold=3, unit="wordpiece tokens")
    return {
        "config": dict({"seed": seed, "output_dir": f"runs/seed{seed}", "batch_size": 64}, **config),
        "best_step": best_step,
        "best_stsb_dev": stsb_dev,
        "train_seconds": 100.0,
        "model_dir": f"runs/seed{seed}/model",
        "test": test,
    }


@pytest.fixture
def three_seeds():
    # Task i scores 70 + i, 72 + i, 74 + i: mean 72 + i, sample std sqrt((4 + 0 + 4) / 2) = 2.
    return [
        make_result(42, 70.0, 80.0, 0.20, -2.0, 125, {"short_diff": 80.0, "long_diff": 60.0}),
        make_result(43, 72.0, 81.0, 0.25, -2.5, 250, {"short_diff": 81.0, "long_diff": 62.0}),
        make_result(44, 74.0, 85.0, 0.30, -3.0, 375, {"short_diff": 85.0, "long_diff": 67.0}),
    ]


def test_mean_and_sample_std(three_seeds):
    summary = summarize_seeds(three_seeds)
    assert summary["n_seeds"] == 3 and summary["seeds"] == [42, 43, 44]
    m = summary["metrics"]
    for i, key in enumerate(TASK_KEYS):
        assert m[key]["values"] == [70.0 + i, 72.0 + i, 74.0 + i]
        assert m[key]["mean"] == pytest.approx(72.0 + i)
        assert m[key]["std"] == pytest.approx(2.0)  # sqrt((4 + 0 + 4) / 2)
        assert m[key]["n"] == 3
    assert m["avg"]["mean"] == pytest.approx(75.0) and m["avg"]["std"] == pytest.approx(2.0)
    # 80, 81, 85: mean 82, deviations -2, -1, 3 -> var (4 + 1 + 9) / 2 = 7.
    assert m["best_stsb_dev"]["mean"] == pytest.approx(82.0)
    assert m["best_stsb_dev"]["std"] == pytest.approx(math.sqrt(7.0))
    assert m["stsb_dev"]["mean"] == pytest.approx(81.5)
    assert m["stsb_dev"]["std"] == pytest.approx(math.sqrt(7.0))
    assert m["alignment"]["mean"] == pytest.approx(0.25) and m["alignment"]["std"] == pytest.approx(0.05)
    assert m["uniformity"]["mean"] == pytest.approx(-2.5) and m["uniformity"]["std"] == pytest.approx(0.5)
    # long_diff 60, 62, 67: mean 63, deviations -3, -1, 4 -> var (9 + 1 + 16) / 2 = 13.
    assert m["length_split.short_diff"]["mean"] == pytest.approx(82.0)
    assert m["length_split.long_diff"]["mean"] == pytest.approx(63.0)
    assert m["length_split.long_diff"]["std"] == pytest.approx(math.sqrt(13.0))
    assert m["best_step"]["mean"] == pytest.approx(250.0) and m["best_step"]["std"] == pytest.approx(125.0)
    assert summary["config_differences"] == []  # seed and output_dir do not count


def test_metric_order_and_bookkeeping_fields_skipped(three_seeds):
    keys = list(summarize_seeds(three_seeds)["metrics"])
    assert keys == list(TASK_KEYS) + ["avg", "best_stsb_dev", "stsb_dev", "alignment", "uniformity",
                                      "length_split.short_diff", "length_split.long_diff", "best_step"]


def test_one_seed_has_std_zero():
    summary = summarize_seeds([make_result(7, 70.0, 80.0, 0.2, -2.0, 125)])
    m = summary["metrics"]
    assert m["sts12"]["mean"] == 70.0 and m["sts12"]["std"] == 0.0 and m["sts12"]["n"] == 1
    assert "length_split.short_diff" not in m
    md = run_summary.format_markdown(summary)
    assert "n=1" in md
    assert "| STS12 | 70.00 ± 0.00 (n=1) | 70.00 |" in md


def test_two_seeds_hand_computed():
    summary = summarize_seeds([make_result(1, 75.5, 80.0, 0.2, -2.0, 10), make_result(2, 76.5, 80.0, 0.2, -2.0, 10)])
    m = summary["metrics"]["sts12"]
    assert m["mean"] == pytest.approx(76.0) and m["std"] == pytest.approx(math.sqrt(0.5))
    assert summary["metrics"]["alignment"]["std"] == 0.0


def test_non_finite_values_are_not_averaged(three_seeds):
    three_seeds[1]["test"]["sts13"] = float("nan")
    three_seeds[2]["best_stsb_dev"] = float("inf")
    summary = summarize_seeds(three_seeds)
    m = summary["metrics"]
    assert m["sts13"]["mean"] is None and m["sts13"]["std"] is None
    assert m["sts13"]["values"] == [71.0, "nan", 75.0]
    assert m["sts13"]["non_finite"] == [1]
    assert m["best_stsb_dev"]["values"][2] == "inf" and m["best_stsb_dev"]["mean"] is None
    assert m["sts12"]["mean"] == pytest.approx(72.0)  # the other metrics are unaffected
    json.dumps(summary, allow_nan=False)  # strict JSON
    md = run_summary.format_markdown(summary)
    assert "| STS13 | non-finite (seed 43) | 71.00 | nan | 75.00 |" in md
    assert "| STS-B dev (best, training) | non-finite (seed 44) | 80.00 | 81.00 | inf |" in md


def test_missing_values_are_reported(three_seeds):
    del three_seeds[0]["test"]  # final_eval off for one seed
    three_seeds[1]["best_stsb_dev"] = None  # no evaluation ever ran
    summary = summarize_seeds(three_seeds)
    m = summary["metrics"]
    assert m["sts12"]["values"] == [None, 72.0, 74.0] and m["sts12"]["n"] == 2
    assert m["sts12"]["mean"] == pytest.approx(73.0) and m["sts12"]["std"] == pytest.approx(math.sqrt(2.0))
    assert m["best_stsb_dev"]["values"] == [80.0, None, 85.0]
    md = run_summary.format_markdown(summary)
    assert "| STS12 | 73.00 ± 1.41 (n=2 of 3) | missing | 72.00 | 74.00 |" in md


def test_config_differences_are_flagged(three_seeds):
    three_seeds[2]["config"]["batch_size"] = 128
    summary = summarize_seeds(three_seeds)
    assert summary["config_differences"] == ["batch_size"]
    assert "batch_size" in run_summary.format_markdown(summary)


def test_empty_results_raise():
    with pytest.raises(ValueError):
        summarize_seeds([])


def test_write_summary_files(tmp_path, three_seeds):
    out = tmp_path / "runs"
    summary = write_summary(out, three_seeds, command=["python", "-m", "recipes.unsup", "--seeds", "42 43 44"])
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "summary.md"]  # no temporary file left
    data = json.loads((out / "summary.json").read_text())
    assert data == json.loads(json.dumps(summary))
    assert data["command"] == "python -m recipes.unsup --seeds '42 43 44'"
    assert data["metrics"]["sts12"]["mean"] == pytest.approx(72.0)
    assert data["metrics"]["sts12"]["values"] == [70.0, 72.0, 74.0]

    md = (out / "summary.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Results over 3 seeds"
    assert "`python -m recipes.unsup --seeds '42 43 44'`" in md
    assert "ddof=1" in md
    header = next(line for line in lines if line.startswith("| Metric"))
    assert header == "| Metric | mean ± std | seed 42 | seed 43 | seed 44 |"
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Metric")]
    assert len(rows) == len(summary["metrics"])
    assert "| STS12 | 72.00 ± 2.00 | 70.00 | 72.00 | 74.00 |" in lines
    assert "| STS-B | 77.00 ± 2.00 | 75.00 | 77.00 | 79.00 |" in lines
    assert "| SICK-R | 78.00 ± 2.00 | 76.00 | 78.00 | 80.00 |" in lines
    assert "| Avg. | 75.00 ± 2.00 | 73.00 | 75.00 | 77.00 |" in lines
    assert "| alignment | 0.2500 ± 0.0500 | 0.2000 | 0.2500 | 0.3000 |" in lines
    assert "| uniformity | -2.5000 ± 0.5000 | -2.0000 | -2.5000 | -3.0000 |" in lines
    assert "| best step | 250 ± 125 | 125 | 250 | 375 |" in lines
    assert "| STS-B test, length diff > 3 | 63.00 ± 3.61 | 60.00 | 62.00 | 67.00 |" in lines
    assert f"| STS-B dev (best, training) | 82.00 ± {math.sqrt(7):.2f} | 80.00 | 81.00 | 85.00 |" in lines


def test_write_summary_overwrites_and_leaves_no_temp_file(tmp_path, three_seeds):
    write_summary(tmp_path, three_seeds[:1])
    write_summary(tmp_path, three_seeds, command="make unsup")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "summary.md"]
    assert json.loads((tmp_path / "summary.json").read_text())["n_seeds"] == 3


def test_failed_write_keeps_the_old_summary(tmp_path, three_seeds, monkeypatch):
    write_summary(tmp_path, three_seeds[:1])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_summary(tmp_path, three_seeds)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched, no temp file


def test_non_finite_json_is_strict(tmp_path, three_seeds):
    three_seeds[0]["test"]["uniformity"] = float("-inf")
    write_summary(tmp_path, three_seeds)
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["metrics"]["uniformity"]["values"][0] == "-inf"
