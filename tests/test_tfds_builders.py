"""TFDS builders (`tf_esimcse.data.tfds_builders`): each split equals our own readers' output,
in order, loaded by its `tf_esimcse:` name from tiny files written here (offline); missing manual
files give errors that name them; `tfds_sentences` / `tfds_examples` feed the pipelines."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from test_case import write_tiny_model_dir
from test_cli import write_tiny_senteval
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.data import corpus, senteval, tfds_builders
from tf_esimcse.data.views import supervised_views, views_dataset
from tf_esimcse.errors import DataError
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor

# Blank and whitespace-only lines, padding, tabs, CRLF, non-ASCII; > 10 lines so that an order
# by string key ("10" < "2") would show.
TEXT_LINES = (
    "The cat sat on the mat.\r\n\r\n   padded both sides   \n\t\ttabbed\n   \nçà et là — 東京 🙂\n"
    + "".join(f"sentence number {i}\n" for i in range(12))
    + "last line without newline"
)
NLI_CSV = (
    'sent0,sent1,hard_neg\n'
    'a man plays,"a person, with a guitar, plays",nobody plays\n'
    '"she said ""hi""",she spoke,"she was silent, all day"\n'
    '\n'
    '  spaced  ,"line\nbreak",x\n'
    + "".join(f"premise {i},entailed {i},contradicted {i}\n" for i in range(10))
)


def _prepare(name, manual_dir, tmp_path):
    builder = tfds.builder(f"{tfds_builders.NAMESPACE}:{name}", data_dir=tmp_path / "tfds")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def senteval_root(tmp_path_factory):
    return write_tiny_senteval(tmp_path_factory.mktemp("data"))


# ---------------------------------------------------------------------------------------------
# Each builder equals our reader
# ---------------------------------------------------------------------------------------------


def test_wiki1m_equals_read_text_lines(tmp_path):
    path = _write(tmp_path / "manual" / "wiki1m_for_simcse.txt", TEXT_LINES)
    builder = _prepare("wiki1m_for_simcse", tmp_path / "manual", tmp_path)
    assert str(builder.info.version) == "1.0.0"
    assert list(builder.info.splits) == ["train"]
    expected = corpus.read_text_lines(path)
    assert len(expected) == 17
    assert tfds_builders.tfds_sentences(builder.as_dataset(split="train")) == expected
    # Again through tfds.load (reuses the prepared files), and deterministic.
    ds = tfds.load("tf_esimcse:wiki1m_for_simcse", split="train", data_dir=tmp_path / "tfds")
    assert tfds_builders.tfds_sentences(ds) == expected


def test_nli_equals_read_nli_triplets(tmp_path):
    path = _write(tmp_path / "manual" / "nli_for_simcse.csv", NLI_CSV)
    ds = tfds.load(
        "tf_esimcse:nli_for_simcse", split="train", data_dir=tmp_path / "tfds",
        download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=tmp_path / "manual")},
    )
    expected = corpus.read_nli_triplets(path)
    assert expected[0] == ("a man plays", "a person, with a guitar, plays", "nobody plays")
    assert expected[1] == ('she said "hi"', "she spoke", "she was silent, all day")
    assert len(expected) == 13
    assert tfds_builders.tfds_examples(ds) == expected
    assert tfds_builders.tfds_examples(ds, keys=("hard_neg", "sent0"))[1] == ("she was silent, all day",
                                                                              'she said "hi"')


def _expected_sts(root, config, split):
    if config == "stsb":
        subsets = {"": senteval.read_stsb(root, split)}
    elif config == "sickr":
        subsets = {"": senteval.read_sick(root, split)}
    else:
        subsets = senteval.read_sts_year(root, config.upper())
    return [(s1, s2, float(np.float32(score)), subset)
            for subset, pairs in subsets.items()
            for s1, s2, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores)]


@pytest.mark.parametrize("config,splits", [
    ("sts12", ["test"]), ("sts13", ["test"]), ("sts14", ["test"]), ("sts15", ["test"]), ("sts16", ["test"]),
    ("stsb", ["dev", "test"]), ("sickr", ["test"]),
])
def test_senteval_sts_equals_the_senteval_readers(tmp_path, senteval_root, config, splits):
    builder = _prepare(f"senteval_sts/{config}", senteval_root, tmp_path)
    assert builder.builder_config.name == config
    assert sorted(builder.info.splits) == sorted(splits)
    for split in splits:
        ds = builder.as_dataset(split=split)
        got = tfds_builders.tfds_examples(ds, keys=("sentence1", "sentence2", "score", "subset"))
        expected = _expected_sts(senteval_root, config, split)
        assert len(expected) == 8
        assert got == expected
        # Default keys for STS examples: (sentence1, sentence2, score).
        assert tfds_builders.tfds_examples(ds) == [e[:3] for e in expected]
    if config == "sts12":
        assert {e[3] for e in expected} == {"alpha", "beta"}


def test_senteval_sts_accepts_the_senteval_dir_itself(tmp_path, senteval_root):
    builder = _prepare("senteval_sts/stsb", senteval_root / "senteval", tmp_path)
    keys = ("sentence1", "sentence2", "score", "subset")
    got = tfds_builders.tfds_examples(builder.as_dataset(split="dev"), keys=keys)
    assert got == _expected_sts(senteval_root, "stsb", "dev")


def test_sentences_reads_every_txt_file_in_name_order(tmp_path):
    manual = tmp_path / "manual"
    b = _write(manual / "b.txt", "second file, line one\n\nsecond file, line two\n")
    a = _write(manual / "a.txt", TEXT_LINES)
    _write(manual / "notes.md", "not a corpus file\n")
    builder = _prepare("sentences", manual, tmp_path)
    expected = corpus.read_text_lines(a) + corpus.read_text_lines(b)
    assert tfds_builders.tfds_sentences(builder.as_dataset(split="train")) == expected
    # The class itself, without the namespace, reads the prepared files back.
    direct = tfds_builders.Sentences(data_dir=tmp_path / "tfds")
    assert tfds_builders.tfds_sentences(direct.as_dataset(split="train")) == expected


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,file", [("wiki1m_for_simcse", "wiki1m_for_simcse.txt"),
                                       ("nli_for_simcse", "nli_for_simcse.csv")])
def test_missing_manual_file_is_named(tmp_path, name, file):
    manual = _write(tmp_path / "manual" / "something_else.txt", "hello\n").parent
    with pytest.raises(DataError, match=f"missing {file}.*huggingface.co"):
        _prepare(name, manual, tmp_path)
    # An empty or absent manual directory: TFDS's own check, which quotes our instructions.
    (tmp_path / "empty").mkdir()
    for manual in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(DataError, match=f"(?s)does not exist or is empty.*{file}"):
            _prepare(name, manual, tmp_path)
    assert not (tmp_path / "tfds" / name / "1.0.0").exists()


def test_sentences_without_txt_files(tmp_path):
    manual = _write(tmp_path / "manual" / "corpus.csv", "a,b\n").parent
    with pytest.raises(DataError, match=r"no \*\.txt files"):
        _prepare("sentences", manual, tmp_path)


def test_senteval_without_senteval_data(tmp_path):
    manual = _write(tmp_path / "manual" / "README", "nothing here\n").parent
    with pytest.raises(DataError, match="no SentEval downstream data found"):
        _prepare("senteval_sts/sts12", manual, tmp_path)


def test_unknown_names(tmp_path):
    with pytest.raises(tfds.core.registered.DatasetNotFoundError, match="nli_for_simcse, sentences"):
        tfds.builder("tf_esimcse:wiki2m", data_dir=tmp_path)
    with pytest.raises(ValueError, match="sts17"):
        tfds.builder("tf_esimcse:senteval_sts/sts17", data_dir=tmp_path)
    # Only in our namespace: nothing is added to (or can clash with) TFDS's own names.
    own = set(tfds.list_builders(with_community_datasets=False))
    assert not own & {cls.name for cls in tfds_builders.BUILDERS}
    tfds_builders.register_namespace()  # idempotent


def test_conversion_errors():
    ds = tf.data.Dataset.from_tensor_slices({"text": ["a", "b", "c"]})
    assert tfds_builders.tfds_sentences(ds, batch_size=2) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="no field sent0, sent1, hard_neg; their fields are text"):
        tfds_builders.tfds_examples(ds)
    with pytest.raises(ValueError, match="unbatched"):
        tfds_builders.tfds_sentences(ds.batch(2))
    with pytest.raises(ValueError, match="dict examples"):
        tfds_builders.tfds_sentences(tf.data.Dataset.from_tensor_slices(["a", "b"]))


# ---------------------------------------------------------------------------------------------
# A TFDS split as a training pipeline's source
# ---------------------------------------------------------------------------------------------


def test_nli_split_feeds_the_supervised_pipeline(tmp_path):
    path = _write(tmp_path / "manual" / "nli_for_simcse.csv", NLI_CSV)
    builder = _prepare("nli_for_simcse", tmp_path / "manual", tmp_path)
    pre = SentencePreprocessor(load_tokenizer(str(write_tiny_model_dir(tmp_path / "tiny"))), sequence_length=16)

    def batches(examples):
        ds = views_dataset(examples, pre, views=supervised_views(), batch_size=4, seed=3)
        return [{v: {k: t.numpy() for k, t in b[v].items()} for v in b} for b in ds]

    got = batches(tfds_builders.tfds_examples(builder.as_dataset(split="train")))
    expected = batches(corpus.read_nli_triplets(path))
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected):
        for view in ("anchor", "positive", "negative"):
            np.testing.assert_array_equal(g[view]["token_ids"], e[view]["token_ids"])
            np.testing.assert_array_equal(g[view]["padding_mask"], e[view]["padding_mask"])
