"""Tests for `tf_esimcse.layers.sentence_preprocessor` (packing, truncation, tf.data, trimming)."""
import numpy as np
import pytest
import tensorflow as tf

from test_case import run_serialization_test
from test_case import to_numpy
from test_case import write_tiny_model_dir
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tiny_hf import CLS_ID
from tiny_hf import PAD_ID
from tiny_hf import SEP_ID

SEQ_LEN = 6
SENTENCES = ["the cat sat", "hello", "the quick brown fox jumped over the lazy dog"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(str(write_tiny_model_dir(tmp_path_factory.mktemp("tiny_tok"))))


@pytest.fixture(scope="module")
def ids(tokenizer):
    """Token ids (no specials) of each of SENTENCES, from the tokenizer's own vocabulary."""
    vocab = tokenizer.get_vocabulary()
    return [[vocab.index(w) for w in s.split()] for s in SENTENCES]


@pytest.fixture()
def pre(tokenizer):
    return SentencePreprocessor(tokenizer, sequence_length=SEQ_LEN)


def _expected(ids, seq_len=SEQ_LEN):
    token_ids, mask = [], []
    for row in ids:
        row = [CLS_ID] + row[: seq_len - 2] + [SEP_ID]
        mask.append([1] * len(row) + [0] * (seq_len - len(row)))
        token_ids.append(row + [PAD_ID] * (seq_len - len(row)))
    return np.array(token_ids, "int32"), np.array(mask, "int32")


def _check_output(out, ids):
    token_ids, mask = _expected(ids)
    assert set(out) == {"token_ids", "padding_mask"}
    assert out["token_ids"].dtype == tf.int32 and out["padding_mask"].dtype == tf.int32
    np.testing.assert_array_equal(to_numpy(out["token_ids"]), token_ids)
    np.testing.assert_array_equal(to_numpy(out["padding_mask"]), mask)


def test_packs_cls_tokens_sep_and_pads(pre, ids):
    _check_output(pre(tf.constant(SENTENCES)), ids)


def test_truncation_keeps_sep_last(pre):
    out = pre(tf.constant([SENTENCES[2]]))
    token_ids = to_numpy(out["token_ids"])[0]
    assert token_ids.shape == (SEQ_LEN,)
    assert token_ids[0] == CLS_ID and token_ids[-1] == SEP_ID
    assert to_numpy(out["padding_mask"])[0].tolist() == [1] * SEQ_LEN
    # tokenize() alone already leaves room for the two special tokens.
    assert to_numpy(pre.tokenize(tf.constant([SENTENCES[2]])).row_lengths()).tolist() == [SEQ_LEN - 2]


def test_sequence_length_too_small_raises(tokenizer):
    with pytest.raises(ValueError, match="sequence_length must be at least 3, got 2"):
        SentencePreprocessor(tokenizer, sequence_length=2)


def test_special_token_ids(pre):
    assert pre.special_token_ids == sorted({CLS_ID, SEP_ID, PAD_ID})


def test_tokenize_then_pack_equals_call(pre, ids):
    ragged = pre.tokenize(tf.constant(SENTENCES))
    assert isinstance(ragged, tf.RaggedTensor)
    _check_output(pre.pack(ragged), ids)
    # pack() can pad to a shorter length than the layer's.
    short = pre.pack(ragged, sequence_length=4)
    assert short["token_ids"].shape == (3, 4)


def test_eager_call_on_python_list(pre, ids):
    _check_output(pre(list(SENTENCES)), ids)


def test_unbatched_input_keeps_its_rank(pre, ids):
    pre(tf.constant(SENTENCES))  # a batched call first, as encode() and tf.data do
    single = pre(tf.constant(SENTENCES[0]))
    np.testing.assert_array_equal(to_numpy(single["token_ids"]), _expected(ids[:1])[0][0])
    np.testing.assert_array_equal(to_numpy(pre.tokenize(tf.constant(SENTENCES[0]))), ids[0])


def test_dataset_batch_then_map(pre, ids):
    ds = tf.data.Dataset.from_tensor_slices(SENTENCES).batch(3).map(pre)
    (out,) = list(ds)
    _check_output(out, ids)


def test_dataset_map_then_batch_agrees(pre, ids):
    ds = tf.data.Dataset.from_tensor_slices(SENTENCES).map(pre).batch(3)
    (out,) = list(ds)
    _check_output(out, ids)


def test_trim_to_longest(pre, ids):
    batch = pre(tf.constant(SENTENCES[:2]))  # longest: [CLS] the cat sat [SEP] = 5 of 6
    trimmed = trim_to_longest(batch)
    assert trimmed["token_ids"].shape == (2, 5)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(to_numpy(trimmed[key]), to_numpy(batch[key])[:, :5])
    # A batch with a full-length sentence keeps every column; inside tf.data too.
    ds = tf.data.Dataset.from_tensor_slices(SENTENCES).batch(3).map(pre).map(trim_to_longest)
    assert next(iter(ds))["token_ids"].shape == (3, SEQ_LEN)
    ds = tf.data.Dataset.from_tensor_slices(SENTENCES[1:2]).batch(1).map(pre).map(trim_to_longest)
    np.testing.assert_array_equal(to_numpy(next(iter(ds))["token_ids"]), [[CLS_ID, ids[1][0], SEP_ID]])


def test_serialization(pre):
    # The tokenizer's vocabulary is an asset (restored by `.keras` loading, see
    # test_sentence_encoder), so only the configs are compared here, as keras-hub does.
    revived = run_serialization_test(pre)
    assert revived.sequence_length == SEQ_LEN
    assert type(revived.tokenizer) is type(pre.tokenizer)


def test_eager_calls_trace_once_for_every_batch_size(pre, ids):
    """Called eagerly (as `encode` does) on batches of several sizes, the tokenizer and the packer
    are each traced once, not once per new size and again relaxed (each keras-hub tokenizer trace
    costs ~0.5 s for WordPiece, ~3 s for byte-level BPE), and the outputs stay right."""
    for n in (3, 2, 1, 3):
        _check_output(pre(tf.constant(SENTENCES[:n])), ids[:n])
    assert pre._eager_tokenize.experimental_get_tracing_count() == 1
    assert pre._eager_pack.experimental_get_tracing_count() == 1
    for sentence in SENTENCES:  # unbatched: the same tokenizer trace, one packer trace for rank 1
        np.testing.assert_array_equal(to_numpy(pre(sentence)["token_ids"]), to_numpy(pre([sentence])["token_ids"])[0])
    assert pre._eager_tokenize.experimental_get_tracing_count() == 1
    assert pre._eager_pack.experimental_get_tracing_count() == 2
