"""STS evaluation: metrics against independent NumPy code, the "all" setting, real-data runs."""
import math
import re
import zlib

import numpy as np
import pytest
import scipy.stats

from tf_esimcse.data import senteval
from tf_esimcse.evaluation import sts

# ---------------------------------------------------------------------------------------------
# Independent reference implementations (written here, not imported from the module under test)
# ---------------------------------------------------------------------------------------------


def _average_ranks(x):
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0  # ties share their average rank
        i = j + 1
    return ranks


def _ref_spearman(a, b):
    return 100.0 * np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1]


def _ref_cosine(u, v):
    nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
    return sum(x * y for x, y in zip(u, v)) / (nu * nv) if nu * nv > 0 else 0.0


def _unit(v):
    return np.asarray(v, dtype=np.float64) / np.linalg.norm(v)


def bow_encode(sentences, dim=256):
    """Deterministic bag-of-words hashing embedder (a stand-in for a real encoder)."""
    out = np.zeros((len(sentences), dim), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        for token in sentence.split():
            out[i, zlib.crc32(token.encode("utf-8")) % dim] += 1.0
    return out


class CosineLookupEncoder:
    """Embeds "ref ..." as e0 and "c=<value> ..." as a unit vector with cosine <value> to e0."""

    def __init__(self):
        self.calls = []

    def __call__(self, sentences):
        self.calls.append(list(sentences))
        out = np.zeros((len(sentences), 3))
        for i, s in enumerate(sentences):
            if s.startswith("ref"):
                out[i] = [1.0, 0.0, 0.0]
            else:
                c = float(re.match(r"c=(\S+)", s).group(1))
                out[i] = [c, math.sqrt(1.0 - c * c), 0.0]
        return out * 3.0  # unnormalised on purpose


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_spearman_matches_rank_correlation_with_ties():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, size=200).astype(float)  # many ties, like STS gold scores
    predicted = gold + rng.normal(scale=2.0, size=200)
    predicted[:20] = 0.5  # ties in the prediction too
    assert sts.spearman(predicted, gold) == pytest.approx(_ref_spearman(predicted, gold), abs=1e-9)
    assert sts.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(100.0)
    assert sts.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-100.0)
    assert isinstance(sts.spearman([1, 2], [1, 2]), float)
    with pytest.raises(ValueError, match="length"):
        sts.spearman([1, 2, 3], [1, 2])


def test_cosine_scores_against_loop_normalised_or_not():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) * rng.uniform(0.1, 10, size=(7, 1))
    b[3] = 0.0  # a zero embedding scores 0, as SentEval's nan_to_num gives
    expected = [_ref_cosine(u, v) for u, v in zip(a, b)]
    np.testing.assert_allclose(sts.cosine_scores(a, b), expected, atol=1e-12)
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(sts.cosine_scores(a_unit, b), expected, atol=1e-12)
    assert sts.cosine_scores(a.astype(np.float32), b).dtype == np.float64
    with pytest.raises(ValueError, match="same shape"):
        sts.cosine_scores(a, b[:3])


def test_alignment_against_loop():
    rng = np.random.default_rng(2)
    z1, z2 = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) * 5.0
    for alpha in (2, 1):
        expected = np.mean([np.linalg.norm(_unit(u) - _unit(v)) ** alpha for u, v in zip(z1, z2)])
        assert sts.alignment(z1, z2, alpha=alpha) == pytest.approx(expected, rel=1e-12)
    assert sts.alignment(z1, 2.0 * z1) == pytest.approx(0.0, abs=1e-12)  # scale does not matter
    assert sts.alignment([[1.0, 0.0]], [[-1.0, 0.0]]) == pytest.approx(4.0)


@pytest.mark.parametrize("t", [2, 0.5, 50])
def test_uniformity_against_double_loop(t):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(13, 6)) * rng.uniform(0.5, 3.0, size=(13, 1))
    total, count = 0.0, 0
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            total += math.exp(-t * float(np.sum((_unit(z[i]) - _unit(z[j])) ** 2)))
            count += 1
    expected = math.log(total / count)
    assert sts.uniformity(z, t=t) == pytest.approx(expected, rel=1e-9)
    # Row blocks and the log-sum-exp must not change the value.
    assert sts.uniformity(z, t=t, block_size=4) == pytest.approx(expected, rel=1e-9)
    assert sts.uniformity(z, t=t, block_size=1) == pytest.approx(expected, rel=1e-9)


def test_uniformity_extremes():
    assert sts.uniformity(np.ones((5, 3))) == pytest.approx(0.0, abs=1e-12)  # collapsed
    assert sts.uniformity([[1.0, 0.0], [-1.0, 0.0]], t=2) == pytest.approx(-8.0)  # antipodal
    assert np.isfinite(sts.uniformity([[1.0, 0.0], [-1.0, 0.0]], t=1000))  # no underflow
    with pytest.raises(ValueError, match="at least 2"):
        sts.uniformity([[1.0, 0.0]])


# ---------------------------------------------------------------------------------------------
# The "all" setting on a synthetic SentEval layout
# ---------------------------------------------------------------------------------------------


def _write_year(root, year, subsets):
    d = root / "senteval" / "STS" / f"{year}-en-test"
    d.mkdir(parents=True, exist_ok=True)
    for name, rows in subsets.items():
        (d / f"STS.input.{name}.txt").write_text("".join(f"{a}\t{b}\n" for a, b, _ in rows), encoding="utf-8")
        (d / f"STS.gs.{name}.txt").write_text("".join(f"{g}\n" for _, _, g in rows), encoding="utf-8")


def test_all_setting_is_spearman_over_concatenated_subsets(tmp_path):
    # Within each subset cosine and gold agree perfectly, but across subsets they disagree:
    # the mean of per-subset Spearman would be 100, the "all" Spearman is negative.
    cos_a, gold_a = [0.80, 0.85, 0.90, 0.95], [0.0, 0.5, 1.0, 2.0]
    cos_b, gold_b = [0.10, 0.15, 0.20], [3.0, 4.0, 5.0]
    rows_a = [(f"ref {i}", f"c={c} a{i}", g) for i, (c, g) in enumerate(zip(cos_a, gold_a))]
    rows_b = [(f"ref {i}", f"c={c} b{i}", g) for i, (c, g) in enumerate(zip(cos_b, gold_b))]
    rows_b.insert(1, ("ref x", "c=0.99 unscored", ""))  # empty gold: must be dropped
    _write_year(tmp_path, "STS12", {"a": rows_a, "b": rows_b})

    encoder = CosineLookupEncoder()
    results = sts.evaluate_sts(encoder, tmp_path, tasks=("STS12",), include_dev=False, alignment_uniformity=False)
    expected = _ref_spearman(cos_a + cos_b, gold_a + gold_b)
    assert set(results) == {"sts12"}
    assert results["sts12"] == pytest.approx(expected, abs=1e-9)
    assert expected < 0
    per_subset = [_ref_spearman(cos_a, gold_a), _ref_spearman(cos_b, gold_b)]
    assert np.mean(per_subset) == pytest.approx(100.0)
    # One encode call per task, unique sentences only ("ref 0".. are shared by both subsets).
    assert len(encoder.calls) == 1
    assert len(encoder.calls[0]) == len(set(encoder.calls[0])) == 4 + 7
    assert "c=0.99 unscored" not in encoder.calls[0]


def test_evaluate_sts_rejects_unknown_task_and_bad_encoder(tmp_path):
    with pytest.raises(ValueError, match="STS17"):
        sts.evaluate_sts(bow_encode, tmp_path, tasks=("STS17",))
    _write_year(tmp_path, "STS13", {"a": [("ref", "c=0.5 x", 1.0), ("ref", "c=0.2 y", 2.0)]})
    with pytest.raises(ValueError, match="expected \\[num_sentences, dim\\]"):
        sts.evaluate_sts(lambda s: np.zeros((len(s) + 1, 4)), tmp_path, tasks=("STS13",),
                         include_dev=False, alignment_uniformity=False)


# ---------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------


def _raw_year(year_dir):
    """Independent read of a year without empty gold lines: concatenated (s1, s2, gold)."""
    s1, s2, gold = [], [], []
    for path in sorted(year_dir.glob("STS.input.*.txt")):
        name = path.name[len("STS.input.") : -len(".txt")]
        lines = path.read_text(encoding="utf-8").splitlines()
        scores = (year_dir / f"STS.gs.{name}.txt").read_text(encoding="utf-8").splitlines()
        for line, g in zip(lines, scores):
            if g:
                a, b = line.split("\t")
                s1.append(" ".join(a.split()))
                s2.append(" ".join(b.split()))
                gold.append(float(g))
    return s1, s2, gold


@pytest.fixture(scope="module")
def bow_results(data_dir):
    calls = []

    def encode(sentences):
        calls.append(len(sentences))
        return bow_encode(sentences)

    return sts.evaluate_sts(encode, data_dir), calls


def test_evaluate_sts_real_data_keys_and_ranges(bow_results):
    results, calls = bow_results
    assert list(results) == ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test",
                             "avg", "stsb_dev", "alignment", "uniformity"]
    assert all(isinstance(v, float) and np.isfinite(v) for v in results.values())
    seven = [results[k] for k in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test")]
    assert results["avg"] == pytest.approx(np.mean(seven), abs=1e-12)
    for value in seven + [results["stsb_dev"]]:
        assert 10.0 < value < 90.0  # bag of words: clearly correlated, clearly not perfect
    assert 0.0 < results["alignment"] < 4.0
    assert -4.0 * 2 < results["uniformity"] < 0.0
    assert len(calls) == 8  # 7 test tasks + STS-B dev (shared by stsb_dev, alignment, uniformity)


def test_evaluate_sts_real_data_matches_independent_computation(data_dir, bow_results):
    results, _ = bow_results
    root = senteval.resolve_senteval_dir(data_dir)
    for year in ("STS12", "STS16"):  # STS16 has many unscored pairs
        s1, s2, gold = _raw_year(root / "STS" / f"{year}-en-test")
        cos = [_ref_cosine(u, v) for u, v in zip(bow_encode(s1).astype(float), bow_encode(s2).astype(float))]
        assert results[year.lower()] == pytest.approx(scipy.stats.spearmanr(cos, gold)[0] * 100, abs=1e-6)
    lines = (root / "STS" / "STSBenchmark" / "sts-test.csv").read_text(encoding="utf-8").splitlines()
    fields = [line.strip().split("\t") for line in lines]
    e1, e2 = bow_encode([f[5] for f in fields]), bow_encode([f[6] for f in fields])
    cos = [_ref_cosine(u, v) for u, v in zip(e1.astype(float), e2.astype(float))]
    expected = scipy.stats.spearmanr(cos, [float(f[4]) for f in fields])[0] * 100
    assert results["stsb_test"] == pytest.approx(expected, abs=1e-6)


def test_evaluate_sts_subset_of_tasks_has_no_avg(data_dir):
    results = sts.evaluate_sts(bow_encode, data_dir, tasks=("STSBenchmark",), include_dev=False,
                               alignment_uniformity=False)
    assert list(results) == ["stsb_test"]


# ---------------------------------------------------------------------------------------------
# Table and length split
# ---------------------------------------------------------------------------------------------


def test_format_table_like_simcse():
    results = {"sts12": 68.404, "sts13": 82.406, "sts14": 74.384, "sts15": 80.914, "sts16": 78.556,
               "stsb_test": 76.854, "sickr_test": 72.234, "avg": 76.25, "stsb_dev": 82.5}
    table = sts.format_table(results)
    lines = table.splitlines()
    assert len(lines) == 5 and lines[0] == lines[2] == lines[4] and set(lines[0]) == {"+", "-"}
    headers = [c.strip() for c in lines[1].split("|")[1:-1]]
    assert headers == ["STS12", "STS13", "STS14", "STS15", "STS16", "STSB", "SICKR", "Avg."]
    cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert cells[:7] == ["68.40", "82.41", "74.38", "80.91", "78.56", "76.85", "72.23"]
    # Avg. is the mean of the printed (rounded) scores, as SimCSE's evaluation.py computes it.
    assert cells[7] == f"{sum(float(c) for c in cells[:7]) / 7:.2f}"
    partial = sts.format_table({"sts12": 70.0})
    assert [c.strip() for c in partial.splitlines()[3].split("|")[1:-1]] == ["70.00"] + ["-"] * 7


def test_length_split_spearman():
    gold = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0]
    cos = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.90, 0.30, 0.35]
    # Word-count differences: first 6 pairs differ by <= 3 words, last 3 by > 3.
    extra = [0, 1, 2, 3, 3, 0, 4, 9, 5]
    s1 = [f"ref {i} pad" for i in range(len(gold))]  # 3 words
    s2 = [f"c={c} w{i}" + " pad" * (k + 1) for i, (c, k) in enumerate(zip(cos, extra))]  # k + 3 words
    pairs = senteval.STSPairs(s1, s2, np.array(gold))
    out = sts.length_split_spearman(CosineLookupEncoder(), lambda s: len(s.split()), pairs, threshold=3)
    assert (out["n_short"], out["n_long"]) == (6, 3)
    assert out["short_diff"] == pytest.approx(_ref_spearman(cos[:6], gold[:6]))
    assert out["long_diff"] == pytest.approx(_ref_spearman(cos[6:], gold[6:]))
    assert out["short_diff"] == pytest.approx(100.0) and out["long_diff"] == pytest.approx(-50.0)
    assert isinstance(out["n_short"], int)
    out0 = sts.length_split_spearman(CosineLookupEncoder(), lambda s: len(s.split()), pairs, threshold=100)
    assert (out0["n_short"], out0["n_long"]) == (9, 0) and math.isnan(out0["long_diff"])


def test_pair_metrics_alignment_on_positives_uniformity_on_unique_sentences():
    # "ref 0" appears in three pairs; uniformity must count it once. Gold >= 4.0 are positives.
    s1 = ["ref 0", "ref 0", "ref 0", "ref 1"]
    s2 = ["c=0.9 a", "c=0.5 b", "c=0.1 c", "c=0.7 d"]
    gold = np.array([4.0, 3.99, 1.0, 5.0])
    out = sts.pair_metrics(CosineLookupEncoder(), senteval.STSPairs(s1, s2, gold))
    emb = {s: _unit(v) for s, v in zip(s1 + s2, CosineLookupEncoder()(s1 + s2))}
    expected_align = np.mean([np.sum((emb["ref 0"] - emb["c=0.9 a"]) ** 2),
                              np.sum((emb["ref 1"] - emb["c=0.7 d"]) ** 2)])
    unique = list(dict.fromkeys(s1 + s2))
    pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i + 1 :]]
    expected_unif = math.log(np.mean([math.exp(-2 * np.sum((emb[a] - emb[b]) ** 2)) for a, b in pairs]))
    assert out["alignment"] == pytest.approx(expected_align)
    assert out["uniformity"] == pytest.approx(expected_unif)
    assert out["spearman"] == pytest.approx(_ref_spearman([0.9, 0.5, 0.1, 0.7], gold))
