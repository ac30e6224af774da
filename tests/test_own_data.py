"""A user's own evaluation data: STS-style files (TSV/CSV, header optional, bad rows named by file
and line), `tf-esimcse evaluate --sts-file`, model selection with `--dev-file` (no SentEval
needed), and SentEval's three STS12-16 aggregations against an independent computation."""
import json

import numpy as np
import pytest
import scipy.stats

from test_cli import data_root, reference_encoder  # noqa: F401  (fixtures; model_dir: conftest.py)
from test_recipes import _argv, load_method, workspace  # noqa: F401  (fixture)
from tf_esimcse import cli
from tf_esimcse.data import senteval
from tf_esimcse.errors import DataError


def _write(path, text):
    path.write_text(text)
    return path


def test_read_sts_file_tsv_csv_header_and_errors(tmp_path):
    tsv = _write(tmp_path / "dev.tsv", "s1\ts2\tscore\na  cat\ta dog\t3.5\nhello\tworld\t1\n\n")
    pairs = senteval.read_sts_file(tsv)
    assert pairs.sentences1 == ["a cat", "hello"] and list(pairs.scores) == [3.5, 1.0]
    csv_file = _write(tmp_path / "dev.csv", 'x,"y, with comma",0.5\nq,r,2\n')  # no header
    pairs = senteval.read_sts_file(csv_file)
    assert pairs.sentences2 == ["y, with comma", "r"] and list(pairs.scores) == [0.5, 2.0]

    bad_fields = _write(tmp_path / "bad.tsv", "a\tb\t1\nonly two\tfields\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: expected 3 tab-separated fields"):
        senteval.read_sts_file(bad_fields)
    bad_score = _write(tmp_path / "bad2.csv", "a,b,1\nc,d,1\ne,f,high\n")
    with pytest.raises(DataError, match=r"bad2\.csv:3: score 'high' is not a finite number"):
        senteval.read_sts_file(bad_score)
    with pytest.raises(DataError, match="at least 2"):
        senteval.read_sts_file(_write(tmp_path / "one.tsv", "a\tb\t1\n"))
    with pytest.raises(DataError, match="missing file"):
        senteval.read_sts_file(tmp_path / "nope.tsv")


def _cosines(encoder, pairs):
    a = encoder.encode(pairs.sentences1, verbose=0)
    b = encoder.encode(pairs.sentences2, verbose=0)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_evaluate_own_files_and_aggregations(model_dir, data_root, reference_encoder, tmp_path, capsys):  # noqa: F811
    rng = np.random.default_rng(0)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick"]
    rows = [(" ".join(rng.choice(words, 5)), " ".join(rng.choice(words, 4)), float(rng.uniform(0, 5)))
            for _ in range(30)]
    own = _write(tmp_path / "own.tsv", "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    out = tmp_path / "results.json"
    assert cli.main(["evaluate", "--model", str(model_dir), "--sts-file", str(own), "--only-sts-files",
                     "--output", str(out)]) == 0
    results = json.loads(out.read_text())
    assert "sts12" not in results  # SentEval not used
    expected = 100 * scipy.stats.spearmanr(_cosines(reference_encoder, senteval.read_sts_file(own)),
                                           [s for _, _, s in rows]).correlation
    assert results["sts_files"][str(own)]["spearman"] == pytest.approx(expected, abs=1e-6)
    assert results["sts_files"][str(own)]["pairs"] == 30

    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(model_dir), "--data-dir", str(data_root), "--aggregations",
                     "--output", str(out)]) == 0
    assert "wmean" in capsys.readouterr().out
    results = json.loads(out.read_text())
    for year in senteval.STS_YEARS:
        subsets = senteval.read_sts_year(data_root, year)
        per = {name: 100 * scipy.stats.spearmanr(_cosines(reference_encoder, p), p.scores).correlation
               for name, p in subsets.items()}
        sizes = [len(p.scores) for p in subsets.values()]
        agg = results["sts_aggregations"][year]
        assert agg["mean"] == pytest.approx(np.mean(list(per.values())), abs=1e-6)
        assert agg["wmean"] == pytest.approx(np.average(list(per.values()), weights=sizes), abs=1e-6)
        assert agg["all"] == pytest.approx(results[year.lower()], abs=1e-9)  # "all" is the reported one

    bad = _write(tmp_path / "bad.tsv", "a\tb\n")
    assert cli.main(["evaluate", "--model", str(model_dir), "--sts-file", str(bad), "--only-sts-files"]) == 2
    assert "bad.tsv:1" in capsys.readouterr().err


@pytest.mark.large
def test_recipe_selects_on_a_dev_file_without_senteval(workspace, tmp_path):  # noqa: F811
    rng = np.random.default_rng(1)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick"]
    dev = _write(tmp_path / "dev.csv", "sentence1,sentence2,score\n" + "".join(
        f"{' '.join(rng.choice(words, 4))},{' '.join(rng.choice(words, 5))},{rng.uniform(0, 5):.2f}\n"
        for _ in range(20)))
    empty_data = tmp_path / "no_senteval"
    empty_data.mkdir()
    argv = _argv(workspace, tmp_path / "out", steps=4, **{"eval-steps": 2, "dev-file": dev, "data-dir": empty_data})
    results = load_method("unsup_simcse").main(argv)
    assert results["status"] == "ok" and "test" not in results
    assert results["dev_file"]["path"] == str(dev) and np.isfinite(results["dev_file"]["spearman"])
    # The best step's score is the dev file's Spearman of the saved model.
    assert results["best_stsb_dev"] == pytest.approx(results["dev_file"]["spearman"], abs=1e-4)
    assert [r["step"] for r in results["evaluations"]] == [0, 2, 4]  # step 0: the start, on the same file
    assert "test" not in results["start"]  # no SentEval here: no 7-task row for the start either
