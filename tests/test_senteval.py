"""Readers for SentEval's downstream layout: real-data counts and error messages on bad files."""
import pathlib

import numpy as np
import pytest

from tf_esimcse.data import senteval
from tf_esimcse.errors import DataError

EXPECTED_YEAR_COUNTS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186}


# ---------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("year", senteval.STS_YEARS)
def test_sts_year_counts(data_dir, year):
    subsets = senteval.read_sts_year(data_dir, year)
    assert sum(len(p.scores) for p in subsets.values()) == EXPECTED_YEAR_COUNTS[year]
    for pairs in subsets.values():
        assert len(pairs.sentences1) == len(pairs.sentences2) == len(pairs.scores)
        assert pairs.scores.dtype == np.float64
        assert pairs.scores.min() >= 0.0 and pairs.scores.max() <= 5.0


def test_sts_subsets_come_from_input_files(data_dir):
    # STS12 ships a gold-only STS.gs.ALL.txt and STS13 a gold-only SMT subset: neither is a subset.
    assert list(senteval.read_sts_year(data_dir, "STS12")) == [
        "MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"]
    assert list(senteval.read_sts_year(data_dir, "STS13")) == ["FNWN", "headlines", "OnWN"]


@pytest.mark.parametrize("year", ["STS15", "STS16"])
def test_empty_gold_pairs_are_dropped(data_dir, year):
    year_dir = senteval.resolve_senteval_dir(data_dir) / "STS" / f"{year}-en-test"
    subsets = senteval.read_sts_year(data_dir, year)
    raw_total = 0
    for name, pairs in subsets.items():
        inputs = (year_dir / f"STS.input.{name}.txt").read_text(encoding="utf-8").split("\n")[:-1]
        golds = (year_dir / f"STS.gs.{name}.txt").read_text(encoding="utf-8").split("\n")[:-1]
        raw_total += len(inputs)
        kept = [(line, float(g)) for line, g in zip(inputs, golds) if g != ""]
        assert len(pairs.scores) == len(kept) < len(inputs)
        np.testing.assert_array_equal(pairs.scores, [g for _, g in kept])
        # Pairs stay aligned with their gold score after the empty ones are removed.
        for i in (0, len(kept) // 2, len(kept) - 1):
            s1, s2 = kept[i][0].split("\t")
            assert pairs.sentences1[i] == " ".join(s1.split())
            assert pairs.sentences2[i] == " ".join(s2.split())
    assert raw_total > EXPECTED_YEAR_COUNTS[year]


@pytest.mark.parametrize("split,count", [("test", 1379), ("dev", 1500), ("train", 5749)])
def test_stsb_counts(data_dir, split, count):
    pairs = senteval.read_stsb(data_dir, split)
    assert len(pairs.sentences1) == len(pairs.sentences2) == len(pairs.scores) == count
    assert pairs.scores.min() >= 0.0 and pairs.scores.max() <= 5.0


def test_stsb_keeps_quote_characters(data_dir):
    # A CSV quoting parser would merge lines at an unmatched `"`; splitting on tabs must not.
    path = senteval.resolve_senteval_dir(data_dir) / "STS" / "STSBenchmark" / "sts-train.csv"
    raw = path.read_text(encoding="utf-8").split("\n")[:-1]
    quoted = [i for i, line in enumerate(raw) if '"' in line]
    assert quoted, "expected some STS-B lines with quote characters"
    pairs = senteval.read_stsb(data_dir, "train")
    for i in quoted[:20]:
        fields = raw[i].strip().split("\t")
        assert pairs.sentences1[i] == " ".join(fields[5].split())
        assert pairs.sentences2[i] == " ".join(fields[6].split())
        assert pairs.scores[i] == float(fields[4])


def test_sick_test_count(data_dir):
    pairs = senteval.read_sick(data_dir, "test")
    assert len(pairs.sentences1) == len(pairs.sentences2) == len(pairs.scores) == 4927
    assert pairs.scores.min() >= 1.0 and pairs.scores.max() <= 5.0
    assert "sentence_A" not in pairs.sentences1  # header skipped


def test_resolve_senteval_dir_accepts_root_or_senteval(data_dir):
    inner = pathlib.Path(data_dir) / "senteval"
    assert senteval.resolve_senteval_dir(data_dir) == inner
    assert senteval.resolve_senteval_dir(inner) == inner
    assert len(senteval.read_stsb(inner, "dev").scores) == 1500


# ---------------------------------------------------------------------------------------------
# Synthetic files: layouts and errors
# ---------------------------------------------------------------------------------------------


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _year_dir(root, year="STS12"):
    return root / "senteval" / "STS" / f"{year}-en-test"


def test_missing_data_dir_says_where_to_get_data(tmp_path):
    with pytest.raises(DataError) as info:
        senteval.read_stsb(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "tf-esimcse download-data --dest DIR --what senteval" in message and "download_dataset.sh" in message


def test_missing_year_dir(tmp_path):
    (tmp_path / "senteval" / "STS").mkdir(parents=True)
    with pytest.raises(DataError, match="STS14-en-test"):
        senteval.read_sts_year(tmp_path, "STS14")
    with pytest.raises(ValueError, match="STS17"):
        senteval.read_sts_year(tmp_path, "STS17")


def test_sts_reader_normalises_whitespace_and_drops_unscored(tmp_path):
    d = _year_dir(tmp_path)
    _write(d / "STS.input.b.txt", "a  man\t a man \nskip me\tplease\nx\ty\n")
    _write(d / "STS.gs.b.txt", "4.5\n\n1\n")
    _write(d / "STS.input.A.txt", "p\tq\r\nr\ts\r\n")  # CRLF line ends
    _write(d / "STS.gs.A.txt", "0\r\n5\r\n")
    _write(d / "STS.gs.ALL.txt", "1\n2\n3\n4\n")  # gold without input: not a subset
    subsets = senteval.read_sts_year(tmp_path / "senteval", "STS12")
    assert list(subsets) == ["A", "b"]
    assert subsets["b"].sentences1 == ["a man", "x"]
    assert subsets["b"].sentences2 == ["a man", "y"]
    np.testing.assert_array_equal(subsets["b"].scores, [4.5, 1.0])
    assert subsets["A"].sentences2 == ["q", "s"]


def test_sts_wrong_field_count_names_file_and_line(tmp_path):
    d = _year_dir(tmp_path)
    path = _write(d / "STS.input.x.txt", "a\tb\nonly one sentence\nc\td\n")
    _write(d / "STS.gs.x.txt", "1\n2\n3\n")
    with pytest.raises(DataError, match="2 tab-separated") as info:
        senteval.read_sts_year(tmp_path, "STS12")
    assert str(info.value).startswith(f"{path}:2: ")
    assert (info.value.path, info.value.line) == (path, 2)


def test_sts_non_numeric_gold_names_file_and_line(tmp_path):
    d = _year_dir(tmp_path)
    _write(d / "STS.input.x.txt", "a\tb\nc\td\ne\tf\n")
    path = _write(d / "STS.gs.x.txt", "1\n2\nfour\n")
    with pytest.raises(DataError) as info:
        senteval.read_sts_year(tmp_path, "STS12")
    assert str(info.value).startswith(f"{path}:3: ")
    assert "'four'" in str(info.value)


def test_sts_line_count_mismatch(tmp_path):
    d = _year_dir(tmp_path)
    _write(d / "STS.input.x.txt", "a\tb\nc\td\ne\tf\n")
    path = _write(d / "STS.gs.x.txt", "1\n2\n")
    with pytest.raises(DataError, match="has 2 lines but STS.input.x.txt has 3") as info:
        senteval.read_sts_year(tmp_path, "STS12")
    assert str(info.value).startswith(f"{path}:3: ")


def test_sts_missing_gold_file(tmp_path):
    d = _year_dir(tmp_path)
    _write(d / "STS.input.x.txt", "a\tb\n")
    with pytest.raises(DataError, match="missing file") as info:
        senteval.read_sts_year(tmp_path, "STS12")
    assert str(d / "STS.gs.x.txt") in str(info.value)


def _stsb_line(score="3.0", s1="a b", s2="c d", extra=()):
    return "\t".join(["main-captions", "MSRvid", "2012test", "0001", score, s1, s2, *extra]) + "\n"


def test_stsb_reader(tmp_path):
    path = tmp_path / "senteval" / "STS" / "STSBenchmark" / "sts-dev.csv"
    _write(path, _stsb_line("5.000", 'he said "hi', "ok") + _stsb_line("0.5", extra=("src1", "src2")))
    pairs = senteval.read_stsb(tmp_path, "dev")
    assert pairs.sentences1 == ['he said "hi', "a b"]
    np.testing.assert_array_equal(pairs.scores, [5.0, 0.5])


def test_stsb_errors_name_file_and_line(tmp_path):
    path = tmp_path / "senteval" / "STS" / "STSBenchmark" / "sts-test.csv"
    _write(path, _stsb_line() + "genre\tfile\tyear\tid\t4.0\tonly one sentence\n")
    with pytest.raises(DataError, match="at least 7") as info:
        senteval.read_stsb(tmp_path, "test")
    assert str(info.value).startswith(f"{path}:2: ")
    _write(path, _stsb_line() + _stsb_line() + _stsb_line(score="n/a"))
    with pytest.raises(DataError, match="not a finite number") as info:
        senteval.read_stsb(tmp_path, "test")
    assert str(info.value).startswith(f"{path}:3: ")
    with pytest.raises(DataError, match="missing file") as info:
        senteval.read_stsb(tmp_path, "train")
    assert "sts-train.csv" in str(info.value)
    with pytest.raises(ValueError, match="validation"):
        senteval.read_stsb(tmp_path, "validation")


def test_sick_reader_and_errors(tmp_path):
    path = tmp_path / "senteval" / "SICK" / "SICK_trial.txt"
    header = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
    _write(path, header + "1\tA  dog\tA cat\t3.5\tNEUTRAL\n")
    pairs = senteval.read_sick(tmp_path, "dev")
    assert (pairs.sentences1, pairs.sentences2) == (["A dog"], ["A cat"])
    np.testing.assert_array_equal(pairs.scores, [3.5])

    _write(path, header + "1\tA dog\tA cat\t3.5\tNEUTRAL\n2\tA dog\tA cat\n")
    with pytest.raises(DataError, match="at least 4") as info:
        senteval.read_sick(tmp_path, "dev")
    assert str(info.value).startswith(f"{path}:3: ")

    _write(path, header + "1\tA dog\tA cat\thigh\tNEUTRAL\n")
    with pytest.raises(DataError, match="'high'") as info:
        senteval.read_sick(tmp_path, "dev")
    assert str(info.value).startswith(f"{path}:2: ")

    _write(path, "1\tA dog\tA cat\t3.5\tNEUTRAL\n")  # header missing: would silently lose a pair
    with pytest.raises(DataError, match="header") as info:
        senteval.read_sick(tmp_path, "dev")
    assert str(info.value).startswith(f"{path}:1: ")


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "senteval" / "STS" / "STSBenchmark" / "sts-dev.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(_stsb_line().encode() + b"bad \xff byte\n")
    with pytest.raises(DataError, match="UTF-8") as info:
        senteval.read_stsb(tmp_path, "dev")
    assert str(info.value).startswith(f"{path}:2: ")
