"""Readers for SentEval's downstream STS data, with no dependency on SentEval.

The readers return sentence pairs and gold scores exactly as the SentEval fork bundled with
SimCSE (princeton-nlp/SimCSE, `SentEval/senteval/sts.py`, `SentEval/senteval/engine.py`) feeds
them to SimCSE's batcher (`evaluation.py`, and `simcse/trainers.py` for the dev-set check). What
was confirmed in that code, and how this module follows it:

- Layout: `engine.py` reads `<task_path>/downstream/STS/STS1x-en-test`,
  `downstream/STS/STSBenchmark` and `downstream/SICK`. Our `senteval/` directory plays the role
  of `downstream/` (see `resolve_senteval_dir`, which also accepts SentEval's own `data/` dir).
- STS12-16 (`STSEval.loadFile`): each line of `STS.input.<subset>.txt` is split on a tab into
  two sentences; `STS.gs.<subset>.txt` holds one gold score a line, and pairs whose gold line is
  empty are dropped (`raw_scores != ''`). The fork hard-codes the subset list per year (STS13
  without the unlicensed SMT subset); we take the subsets from the `STS.input.*.txt` files present
  (a gold file without an input file, such as STS12's `STS.gs.ALL.txt` or STS13's `STS.gs.SMT.txt`,
  is ignored), ordered case-insensitively, which reproduces the fork's order. The fork also sorts
  pairs by length to reduce padding; that does not change any Spearman correlation, so we keep
  file order.
- STS-B (`STSBenchmarkEval.loadFile`): each line is stripped and split on tabs (no CSV quoting,
  which matters because sentences contain `"`); field 4 is the score, fields 5 and 6 the
  sentences; any further fields are ignored, as the raw STS-B release has a few 9-field lines.
- SICK-R (`SICKRelatednessEval`): the first line is a header and is skipped; each line is stripped
  and split on tabs; fields 1 and 2 are the sentences, field 3 the relatedness score. Splits are
  `SICK_train.txt`, `SICK_trial.txt` (dev) and `SICK_test_annotated.txt` (test).
- Sentences: SentEval splits every sentence on whitespace (`s.split()`) and SimCSE's batcher joins
  the tokens back with single spaces (`' '.join(s)`). We return `' '.join(s.split())`, the exact
  string SimCSE's tokenizer sees.

Lines are split on newlines only (universal newlines, so `\\r\\n` files work); `str.splitlines`,
which the fork uses for STS12-16, would also split on Unicode separators such as U+2028. The two
agree on the released data (checked), and ours cannot silently shift the gold scores.
"""
import pathlib
from typing import NamedTuple

import numpy as np

from tf_esimcse.errors import DataError

STS_YEARS = ("STS12", "STS13", "STS14", "STS15", "STS16")
STSB_SPLITS = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_SPLITS = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}

_DOWNLOAD_HINT = (
    "get SentEval's downstream data with `tf-esimcse download-data --dest DIR --what senteval` and pass "
    "--data-dir DIR (it fetches what SimCSE's `data/downstream/download_dataset.sh` and SentEval's "
    "`data/downstream/get_transfer_data.bash` do; see docs/data.md)"
)


class STSPairs(NamedTuple):
    """Sentence pairs with gold similarity scores.

    Attributes:
        sentences1: list of str. First sentence of each pair, whitespace-normalised.
        sentences2: list of str. Second sentence of each pair, whitespace-normalised.
        scores: `np.ndarray` of float64, shape `(n,)`. Gold scores (0-5 for STS, 1-5 for SICK).
    """

    sentences1: list
    sentences2: list
    scores: np.ndarray


def _normalize(sentence):
    """Split on whitespace and re-join with single spaces, as SentEval + SimCSE's batcher do."""
    return " ".join(sentence.split())


def _read_lines(path):
    """Read a UTF-8 text file as a list of lines (newline-split, trailing newline dropped)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("missing file", path=path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 ({e.reason})", path=path, line=data[: e.start].count(b"\n") + 1)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _parse_score(field, path, line):
    try:
        score = float(field)
    except ValueError:
        score = None
    if score is None or not np.isfinite(score):
        raise DataError(f"score {field!r} is not a finite number", path=path, line=line)
    return score


def resolve_senteval_dir(data_dir):
    """Find SentEval's downstream directory (the one holding `STS/` and `SICK/`).

    Args:
        data_dir: str or path-like. Either the data root that contains `senteval/` (our layout),
            the `senteval/` directory itself, or SentEval's own `data/` directory (containing
            `downstream/`).

    Returns:
        A `pathlib.Path` to the directory containing `STS/` and/or `SICK/`.

    Raises:
        DataError: if none of the accepted layouts is found.
    """
    root = pathlib.Path(data_dir).expanduser()
    for candidate in (root, root / "senteval", root / "downstream"):
        if (candidate / "STS").is_dir() or (candidate / "SICK").is_dir():
            return candidate
    raise DataError(
        "no SentEval downstream data found: expected STS/ and SICK/ in this directory, in its "
        f"senteval/ or in its downstream/ subdirectory; {_DOWNLOAD_HINT}",
        path=root,
    )


def _read_sts_subset(input_path, gold_path):
    inputs = _read_lines(input_path)
    golds = _read_lines(gold_path)
    if len(inputs) != len(golds):
        raise DataError(
            f"gold file has {len(golds)} lines but {input_path.name} has {len(inputs)}",
            path=gold_path,
            line=min(len(inputs), len(golds)) + 1,
        )
    sentences1, sentences2, scores = [], [], []
    for i, (pair, gold) in enumerate(zip(inputs, golds), start=1):
        fields = pair.split("\t")
        if len(fields) != 2:
            raise DataError(f"expected 2 tab-separated sentences, found {len(fields)} fields", input_path, i)
        if gold.strip() == "":  # unscored pair: SentEval drops it
            continue
        scores.append(_parse_score(gold, gold_path, i))
        sentences1.append(_normalize(fields[0]))
        sentences2.append(_normalize(fields[1]))
    return STSPairs(sentences1, sentences2, np.asarray(scores, dtype=np.float64))


def read_sts_year(data_dir, year):
    """Read one STS12-16 year as SentEval does, one entry per subset.

    Args:
        data_dir: str or path-like. See `resolve_senteval_dir`.
        year: str. One of `STS_YEARS` ("STS12" ... "STS16").

    Returns:
        A dict mapping subset name (e.g. "MSRpar") to `STSPairs`, ordered case-insensitively by
        name. Pairs with an empty gold score are dropped.

    Raises:
        ValueError: if `year` is not in `STS_YEARS`.
        DataError: for a missing directory or file, a malformed line, a non-numeric score, or
            input and gold files with different line counts.
    """
    if year not in STS_YEARS:
        raise ValueError(f"Unknown STS year {year!r}; expected one of {STS_YEARS}")
    year_dir = resolve_senteval_dir(data_dir) / "STS" / f"{year}-en-test"
    if not year_dir.is_dir():
        raise DataError(f"missing directory for {year}; {_DOWNLOAD_HINT}", path=year_dir)
    prefix, suffix = "STS.input.", ".txt"
    names = sorted(
        (p.name[len(prefix) : -len(suffix)] for p in year_dir.glob(f"{prefix}*{suffix}")), key=str.lower
    )
    if not names:
        raise DataError(f"no {prefix}<subset>{suffix} files for {year}", path=year_dir)
    return {
        name: _read_sts_subset(year_dir / f"{prefix}{name}{suffix}", year_dir / f"STS.gs.{name}{suffix}")
        for name in names
    }


def _read_tsv_pairs(path, idx1, idx2, idx_score, skip_header):
    lines = _read_lines(path)
    min_fields = max(idx1, idx2, idx_score) + 1
    sentences1, sentences2, scores = [], [], []
    for i, line in enumerate(lines, start=1):
        fields = line.strip().split("\t")
        if i == 1 and skip_header:
            if len(fields) > idx_score and _is_number(fields[idx_score]):
                raise DataError("expected a header line (pair_ID, sentence_A, ...), found data", path, i)
            continue
        if len(fields) < min_fields:
            message = f"expected at least {min_fields} tab-separated fields, found {len(fields)}"
            raise DataError(message, path, i)
        scores.append(_parse_score(fields[idx_score], path, i))
        sentences1.append(_normalize(fields[idx1]))
        sentences2.append(_normalize(fields[idx2]))
    return STSPairs(sentences1, sentences2, np.asarray(scores, dtype=np.float64))


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_stsb(data_dir, split="test"):
    """Read one split of the STS Benchmark (`STS/STSBenchmark/sts-<split>.csv`).

    Args:
        data_dir: str or path-like. See `resolve_senteval_dir`.
        split: str. "train", "dev" or "test". Defaults to "test".

    Returns:
        `STSPairs` with gold scores in [0, 5].

    Raises:
        ValueError: for an unknown split.
        DataError: for a missing file, a line with fewer than 7 fields or a non-numeric score.
    """
    if split not in STSB_SPLITS:
        raise ValueError(f"Unknown STS-B split {split!r}; expected one of {tuple(STSB_SPLITS)}")
    path = resolve_senteval_dir(data_dir) / "STS" / "STSBenchmark" / STSB_SPLITS[split]
    return _read_tsv_pairs(path, idx1=5, idx2=6, idx_score=4, skip_header=False)


def read_stsb_raw(data_dir, split="test"):
    """Read the original, untokenized STS Benchmark (`stsbenchmark/sts-<split>.csv`).

    SentEval's copy (`read_stsb`) is Moses-tokenized and lower-cased; sentence-transformers and
    the model cards it publishes (e.g. all-MiniLM-L6-v2's STS-B 82.03) use this raw release
    (http://ixa2.si.ehu.eus/stswiki/images/4/48/Stsbenchmark.tar.gz), same pairs and scores.
    """
    if split not in STSB_SPLITS:
        raise ValueError(f"Unknown STS-B split {split!r}; expected one of {tuple(STSB_SPLITS)}")
    path = resolve_senteval_dir(data_dir) / "stsbenchmark" / STSB_SPLITS[split]
    return _read_tsv_pairs(path, idx1=5, idx2=6, idx_score=4, skip_header=False)


def read_sick(data_dir, split="test"):
    """Read one split of SICK relatedness (SICK-R), as SentEval's `SICKRelatednessEval` does.

    Args:
        data_dir: str or path-like. See `resolve_senteval_dir`.
        split: str. "train" (`SICK_train.txt`), "dev" (`SICK_trial.txt`) or "test"
            (`SICK_test_annotated.txt`). Defaults to "test".

    Returns:
        `STSPairs` with relatedness scores in [1, 5].

    Raises:
        ValueError: for an unknown split.
        DataError: for a missing file or header, a line with fewer than 4 fields or a
            non-numeric score.
    """
    if split not in SICK_SPLITS:
        raise ValueError(f"Unknown SICK split {split!r}; expected one of {tuple(SICK_SPLITS)}")
    path = resolve_senteval_dir(data_dir) / "SICK" / SICK_SPLITS[split]
    return _read_tsv_pairs(path, idx1=1, idx2=2, idx_score=3, skip_header=True)


def read_sts_file(path):
    """A user's own STS-style file: one pair per row, `sentence 1, sentence 2, score`.

    Tab-separated, or comma-separated (csv quoting) when the file name ends in `.csv`; a first
    row whose score is not a number is a header and skipped; blank rows are skipped; extra
    columns are ignored. Any score scale works (only ranks matter for Spearman; alignment's
    "positive pairs" assume SentEval's 0-5 scale, scores >= 4).

    Raises:
        DataError: naming the file and the line, for a missing file, a row with fewer than
            three fields, a non-numeric score after the first row, or fewer than two pairs.
    """
    import csv

    path = pathlib.Path(path)
    lines = _read_lines(path)
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        kind = "comma-separated"
    else:
        rows = [line.split("\t") for line in lines]
        kind = "tab-separated"
    sentences1, sentences2, scores = [], [], []
    for i, fields in enumerate(rows, start=1):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) < 3:
            raise DataError(f"expected 3 {kind} fields (sentence 1, sentence 2, score), found {len(fields)}", path, i)
        if i == 1 and not _is_number(fields[2].strip()):
            continue  # a header
        scores.append(_parse_score(fields[2].strip(), path, i))
        sentences1.append(_normalize(fields[0]))
        sentences2.append(_normalize(fields[1]))
    if len(scores) < 2:
        raise DataError(f"{len(scores)} scored pairs: a Spearman correlation needs at least 2", path=path)
    return STSPairs(sentences1, sentences2, np.asarray(scores, dtype=np.float64))
