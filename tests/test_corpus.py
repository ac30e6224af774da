"""Tests for `tf_esimcse.data.corpus`: text files, the Brown corpus, NLI triplets, load_sentences."""
import re

import pytest

from tf_esimcse.data.corpus import load_sentences
from tf_esimcse.data.corpus import read_brown
from tf_esimcse.data.corpus import read_nli_triplets
from tf_esimcse.data.corpus import read_text_lines
from tf_esimcse.data.corpus import strip_brown_tags
from tf_esimcse.errors import DataError

BROWN_CA01 = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr ./.\n\n\n"
    "\tHeading/nn\n\n"  # fewer than min_words: skipped
    "\tThe/at jury/nn said/vbd ``/`` and/or/cc 1/2/cd ''/'' ./.\n"
)
BROWN_CB02 = "\tIt/pps was/bedz a/at dark/jj night/nn ./.\n"


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


@pytest.fixture()
def fake_brown(tmp_path):
    brown = tmp_path / "data" / "brown"
    _write(brown / "ca01", BROWN_CA01)
    _write(brown / "cb02", BROWN_CB02)
    _write(brown / "README", "BROWN CORPUS/nn is/bez not/* a/at corpus/nn file/nn\n")
    _write(brown / "CONTENTS", "ca01 A/at table/nn of/in contents/nns\n")
    _write(brown / "cats.txt", "ca01 news\n")
    return brown


# --- read_text_lines ---


def test_read_text_lines_skips_blank_and_strips(tmp_path):
    path = _write(tmp_path / "c.txt", "  first sentence.  \n\n   \nsecond one\r\n\tthird\n")
    assert read_text_lines(path) == ["first sentence.", "second one", "third"]
    assert read_text_lines(path, min_words=2) == ["first sentence.", "second one"]


def test_read_text_lines_errors(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'missing.txt'}: no such file")):
        read_text_lines(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: is a directory")):
        read_text_lines(tmp_path)
    bad = _write(tmp_path / "bad.txt", b"good line\nsecond line\nbad \xff byte\n")
    with pytest.raises(DataError, match=re.escape(f"{bad}:3: not valid UTF-8")) as info:
        read_text_lines(bad)
    assert info.value.path == bad and info.value.line == 3
    assert isinstance(info.value, ValueError)


# --- Brown ---


@pytest.mark.parametrize(
    "line, expected",
    [
        ("The/at Fulton/np-tl County/nn-tl", "The Fulton County"),
        ("Atlanta's/np$ ``/`` no/at ''/'' ./.", "Atlanta's `` no '' ."),
        ("and/or/cc 1/2/cd", "and/or 1/2"),  # only the last /tag goes
        ("untagged words/nn", "untagged words"),
        ("", ""),
    ],
)
def test_strip_brown_tags(line, expected):
    assert strip_brown_tags(line) == expected


def test_read_brown_fake(fake_brown):
    assert read_brown(fake_brown) == [
        "The Fulton County Grand Jury said Friday .",
        "The jury said `` and/or 1/2 '' .",
        "It was a dark night .",
    ]
    assert len(read_brown(fake_brown, min_words=7)) == 2


def test_read_brown_errors(tmp_path):
    with pytest.raises(DataError, match="Brown corpus directory not found"):
        read_brown(tmp_path / "nope")
    _write(tmp_path / "empty" / "README", "nothing\n")
    with pytest.raises(DataError, match="no Brown corpus files"):
        read_brown(tmp_path / "empty")


def test_read_brown_real(data_dir):
    brown = data_dir / "brown"
    if not brown.is_dir():
        pytest.skip(f"no Brown corpus under {data_dir}")
    sentences = read_brown(brown)
    assert len(sentences) > 50_000
    assert sentences[0] == (
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
        "election produced `` no evidence '' that any irregularities took place ."
    )
    tokens = [t for s in sentences for t in s.split()]
    tag = re.compile(r"/(at|nn|nns|np|in|jj|vbd|vbz|cc|cs|rb|pps|dt|md)(-tl|-hl|\$)?$")
    assert not [t for t in tokens if tag.search(t)]
    # What keeps a "/" is text, not tags: fractions, "and/or", units ("mg/l").
    with_slash = [t for t in tokens if "/" in t]
    assert len(with_slash) < 1e-3 * len(tokens)
    sample = [t for s in sentences[:2000] for t in s.split() if "/" in t]
    assert all(re.search(r"\d/\d", t) for t in sample), sample  # only fractions ("1-1/2")
    assert all(len(s.split()) >= 3 for s in sentences)


# --- NLI triplets ---


def test_read_nli_triplets(tmp_path):
    path = _write(
        tmp_path / "nli.csv",
        'sent0,sent1,hard_neg\nA man plays.,Someone plays.,Nobody plays.\n\n"Quoted, comma",b,c\n',
    )
    assert read_nli_triplets(path) == [
        ("A man plays.", "Someone plays.", "Nobody plays."),
        ("Quoted, comma", "b", "c"),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("premise,hypothesis,label\na,b,c\n", ":1: expected header sent0,sent1,hard_neg, got premise,hypothesis,label"),
        ("sent0,sent1,hard_neg\na,b,c\nd,e\n", ":3: expected 3 fields, got 2"),
        ("sent0,sent1,hard_neg\n", "no triplets"),
    ],
)
def test_read_nli_triplets_errors(tmp_path, text, message):
    path = _write(tmp_path / "nli.csv", text)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_nli_triplets(path)
    assert str(path) in str(info.value)


# --- load_sentences ---


def test_load_sentences_file_and_max(tmp_path):
    path = _write(tmp_path / "corpus.txt", "one two\n\nthree four five\nsix\n")
    assert load_sentences(str(path)) == ["one two", "three four five", "six"]
    assert load_sentences(path, max_sentences=2) == ["one two", "three four five"]
    assert load_sentences(path, min_words=2) == ["one two", "three four five"]


def test_load_sentences_directory_in_name_order(tmp_path):
    _write(tmp_path / "corpus" / "b.txt", "from b\n")
    _write(tmp_path / "corpus" / "a.txt", "from a\nagain a\n")
    _write(tmp_path / "corpus" / ".hidden", "never read\n")
    (tmp_path / "corpus" / "subdir").mkdir()
    assert load_sentences(tmp_path / "corpus") == ["from a", "again a", "from b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no files"):
        load_sentences(tmp_path / "empty")


def test_load_sentences_brown(fake_brown):
    data_dir = fake_brown.parent
    assert load_sentences("brown", data_dir=data_dir) == read_brown(fake_brown)
    assert load_sentences("brown", data_dir=data_dir, max_sentences=1) == ["The Fulton County Grand Jury said Friday ."]
    with pytest.raises(DataError, match="needs --data-dir"):
        load_sentences("brown")


def test_load_sentences_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_sentences(tmp_path / "missing.txt")
    empty = _write(tmp_path / "blank.txt", "\n  \n")
    with pytest.raises(DataError, match="corpus is empty"):
        load_sentences(empty)
