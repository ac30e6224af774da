"""Quantized search (issue 29): int8 codes equal faiss's scalar quantizer's, Hamming top-k and int8
top-k equal brute force in NumPy, every precision round-trips through disk (exact and faiss), int8
scores stay close to float, binary + rescoring recall@10 against exact float search on a clustered
fixture, `dim` truncates then normalises, and an index of another corpus, model, precision or size
is refused with one line. No model is needed except for the CLI test."""
import json
import re

import numpy as np
import pytest

from test_case import TINY_SENTENCES
from tf_esimcse import cli
from tf_esimcse.quantization import binarize, dequantize_int8, hamming_to_cosine, int8_ranges, quantize_int8
from tf_esimcse.search import SearchError, SearchIndex, corpus_sha256, hamming_top_k, int8_top_k


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clustered(n=3000, dim=64, clusters=60, noise=0.6, queries=40, seed=0):
    """Corpus and queries drawn around shared centres: neighbours exist, as in sentence embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    corpus = centers[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, dim))
    q = centers[rng.integers(0, clusters, queries)] + noise * rng.normal(size=(queries, dim))
    return corpus.astype(np.float32), q.astype(np.float32)


def _exact(queries, corpus, k):
    """Top-k by float64 cosine, ties in corpus order."""
    scores = _unit(queries) @ _unit(corpus).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def _ids(hits):
    return [[int(s[1:]) for s, _ in row] for row in hits]


def _recall(hits, want):
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(_ids(hits), want)]))


SENTENCES = [f"s{i}" for i in range(3000)]


# --- the codes -------------------------------------------------------------------------------
def test_int8_codes_equal_faiss_scalar_quantizer():
    faiss = pytest.importorskip("faiss", reason="the 'search' extra (faiss-cpu) is part of the test install")
    corpus, queries = _clustered(n=500, dim=24)
    ranges = int8_ranges(corpus)
    np.testing.assert_array_equal(ranges, np.stack([corpus.min(0), corpus.max(0)]))
    codes = quantize_int8(corpus, ranges)
    sq = faiss.ScalarQuantizer(24, faiss.ScalarQuantizer.QT_8bit)
    sq.train(corpus)  # faiss's own min/max calibration over the same vectors
    theirs = sq.compute_codes(corpus)
    np.testing.assert_array_equal(codes.astype(np.int16) + 128, theirs)
    np.testing.assert_allclose(dequantize_int8(codes, ranges), sq.decode(theirs), atol=1e-6)
    # Each value within half a step of what its code stands for; out-of-range queries are clipped.
    step = (ranges[1] - ranges[0]) / 255
    assert np.all(np.abs(dequantize_int8(codes, ranges) - corpus) <= step / 2 + 1e-6)
    assert quantize_int8(ranges[1:] + 10, ranges).tolist() == [[127] * 24]
    assert quantize_int8(ranges[:1] - 10, ranges).tolist() == [[-128] * 24]


@pytest.mark.parametrize("dim", [37, 128])
def test_hamming_top_k_equals_numpy(dim):
    rng = np.random.default_rng(dim)
    corpus, queries = rng.normal(size=(700, dim)), rng.normal(size=(6, dim))
    bits, qbits = binarize(corpus), binarize(queries)
    np.testing.assert_array_equal(bits, np.packbits(corpus > 0, axis=1))
    distances = np.bitwise_count(qbits[:, None, :] ^ bits[None, :, :]).sum(-1)
    np.testing.assert_array_equal(distances, (np.sign(queries)[:, None] != np.sign(corpus)[None]).sum(-1))
    want = np.argsort(distances, axis=1, kind="stable")[:, :15]
    indices, got = hamming_top_k(qbits, bits, 15, max_elements=5000)  # many blocks
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_array_equal(got, np.take_along_axis(distances, want, axis=1))
    np.testing.assert_allclose(hamming_to_cosine(got, dim),
                               np.take_along_axis(np.sign(queries) @ np.sign(corpus).T / dim, want, axis=1), atol=1e-6)


def test_int8_top_k_equals_numpy_on_the_dequantized_corpus():
    corpus, queries = _clustered(n=900, dim=32)
    corpus, queries = _unit(corpus), _unit(queries)
    ranges = int8_ranges(corpus)
    codes = quantize_int8(corpus, ranges)
    scores = queries @ dequantize_int8(codes, ranges).astype(np.float64).T
    want = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    indices, got = int8_top_k(queries, codes, ranges, 10, block_size=100)
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_allclose(got, np.take_along_axis(scores, want, axis=1), atol=1e-5)


# --- indexes ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture():
    corpus, queries = _clustered()
    return corpus, queries, _exact(queries, corpus, 10)[0]


@pytest.mark.parametrize("approximate", [False, True])
@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_round_trip_and_recall(fixture, tmp_path, precision, approximate):
    if approximate:
        pytest.importorskip("faiss", reason="the 'search' extra (faiss-cpu) is part of the test install")
    corpus, queries, want = fixture
    index = SearchIndex(SENTENCES, corpus, model="m", precision=precision, approximate=approximate)
    hits = index.search(queries, top_k=10)
    again = SearchIndex.load(index.save(tmp_path / "i"))
    assert again.search(queries, top_k=10) == hits and again.precision == precision
    meta = json.loads((tmp_path / "i" / "index.json").read_text())
    assert (meta["precision"], meta["dim"], meta["model_dim"], meta["count"]) == (precision, 64, 64, 3000)
    assert meta["corpus_sha256"] == corpus_sha256(SENTENCES) and meta["approximate"] == approximate
    bytes_per_row = {"float32": 4 * 64, "int8": 64, "binary": 8}[precision]
    assert index.searched_bytes == 3000 * bytes_per_row + (2 * 4 * 64 if precision == "int8" else 0)

    recall = _recall(hits, want)
    # Measured on this fixture: float32 1.0 / 0.99+ (HNSW); int8 0.99; binary with rescoring 0.9+.
    assert recall >= {"float32": 0.97, "int8": 0.95, "binary": 0.85}[precision], recall
    if precision != "int8":  # rescored / float scores are the exact float cosines of the hits
        exact = _unit(queries) @ _unit(corpus).T
        got = [[exact[q, i] for i in row] for q, row in enumerate(_ids(hits))]
        np.testing.assert_allclose([[s for _, s in row] for row in hits], got, atol=1e-5)


def test_int8_scores_close_to_float(fixture):
    corpus, queries, _ = fixture
    index = SearchIndex(SENTENCES, corpus, precision="int8")
    exact = _unit(queries) @ _unit(corpus).T
    hits = index.search(queries, top_k=10)
    errors = [abs(s - exact[q, int(name[1:])]) for q, row in enumerate(hits) for name, s in row]
    assert max(errors) < 0.01, max(errors)


def test_binary_rescoring_recall_grows_with_candidates(fixture):
    corpus, queries, want = fixture
    index = SearchIndex(SENTENCES, corpus, precision="binary")
    recalls = {k: _recall(index.search(queries, top_k=10, rescore=k), want) for k in (0, 10, 40, 200)}
    assert recalls[0] <= recalls[40] <= recalls[200] and recalls[10] <= recalls[200]
    assert recalls[200] >= 0.97, recalls
    # rescore=0: the Hamming order, scored 1 - 2h/dim, computed here in NumPy
    bits = np.sign(corpus) @ np.sign(queries[:1]).T
    hits = index.search(queries[:1], top_k=5, rescore=0)
    want_cos = np.sort(bits[:, 0] / 64)[::-1][:5]
    np.testing.assert_allclose([s for _, s in hits[0]], want_cos, atol=1e-6)
    with pytest.raises(SearchError, match="rescore must be >= 0"):
        index.search(queries, rescore=-1)


def test_dim_truncates_then_normalises(tmp_path):
    corpus, queries = _clustered(n=300, dim=64)
    index = SearchIndex(SENTENCES[:300], corpus, dim=16)
    assert (index.dim, index.model_dim) == (16, 64)
    np.testing.assert_allclose(index.embeddings, _unit(corpus[:, :16]), atol=1e-6)
    want_i, want_s = _exact(queries[:, :16], corpus[:, :16], 5)
    for q in (queries, queries[:, :16], queries[:, :40]):  # the model's full queries, or cut
        hits = index.search(q, top_k=5)
        assert _ids(hits) == want_i.tolist()
        np.testing.assert_allclose([[s for _, s in row] for row in hits], want_s, atol=1e-5)
    binary = SearchIndex.load(SearchIndex(SENTENCES[:300], corpus, dim=20, precision="binary").save(tmp_path / "b"))
    assert binary.bits.shape == (300, 3) and binary.embeddings.shape == (300, 20)
    with pytest.raises(SearchError, match="query embeddings have dimension 10"):
        index.search(queries[:, :10])
    for bad in (0, 65):
        with pytest.raises(SearchError, match=f"dim {bad} must be between 1 and the embeddings' size 64"):
            SearchIndex(SENTENCES[:300], corpus, dim=bad)
    with pytest.raises(SearchError, match="rescoring applies to a binary index; this one holds float32"):
        index.search(queries, rescore=10)
    with pytest.raises(SearchError, match="unknown precision 'int4'"):
        SearchIndex(SENTENCES[:300], corpus, precision="int4")


def test_an_index_of_other_settings_is_refused(tmp_path):
    corpus, _ = _clustered(n=50, dim=8)
    sentences = SENTENCES[:50]
    index = SearchIndex.load(SearchIndex(sentences, corpus, model="m", precision="int8", dim=6).save(tmp_path / "i"))
    index.check("I", model="m", sentences=sentences, precision="int8", dim=6)  # matches: no error
    index.check("I")  # nothing given: nothing checked
    cases = [(dict(model="other"), "built with --model m, not other"),
             (dict(sentences=sentences[:-1] + ["changed"]), "I is stale: it was built from another corpus"),
             (dict(precision="binary"), "holds int8 vectors, not binary"),
             (dict(dim=8), "holds 6-dimensional vectors, not 8")]
    for kwargs, message in cases:
        with pytest.raises(SearchError, match=message):
            index.check("I", **kwargs)
    # The same model path, another model: its first sentence encodes differently.
    index.check_encoder("I", lambda s: corpus[:1] * 3.0)  # same direction: accepted
    index.check_encoder("I", lambda s: corpus[:1, :5])  # the same model cut to fewer dimensions: accepted
    with pytest.raises(SearchError, match="I was built with another model"):
        index.check_encoder("I", lambda s: corpus[1:2])

    # An index written before precisions existed (format 1) still loads, as float32, its corpus hashed.
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "embeddings.npy", _unit(corpus).astype(np.float32))
    (old / "sentences.json").write_text(json.dumps(sentences))
    (old / "index.json").write_text(json.dumps({"format": "tf_esimcse.search_index/1", "model": "m", "dim": 8,
                                                "count": 50, "approximate": False}))
    legacy = SearchIndex.load(old)
    assert (legacy.precision, legacy.dim, legacy.model_dim, legacy.probe) == ("float32", 8, 8, None)
    with pytest.raises(SearchError, match="stale"):
        legacy.check("old", sentences=sentences[1:])
    (old / "index.json").write_text(json.dumps({"format": "tf_esimcse.search_index/9"}))
    with pytest.raises(SearchError, match="not a search index this version reads"):
        SearchIndex.load(old)


@pytest.mark.large
def test_cli_quantized_index_and_stale_corpus(model_dir, tmp_path, capsys):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(TINY_SENTENCES) + "\n")
    assert cli.main(["build-index", "--model", str(model_dir), "--corpus", str(corpus), "--precision", "binary",
                     "--dim", "16"]) == 0
    assert "16-dimensional, binary" in capsys.readouterr().out
    meta = json.loads((tmp_path / "docs.txt.index" / "index.json").read_text())
    assert (meta["precision"], meta["dim"], meta["corpus_sha256"]) == ("binary", 16, corpus_sha256(TINY_SENTENCES))
    query = TINY_SENTENCES[2]
    assert cli.main(["search", "--model", str(model_dir), "--corpus", str(corpus), "--query", query,
                     "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "(16-dimensional, binary)" in out
    first = [line for line in out.splitlines() if re.match(r"^\s*1\. ", line)][0]
    assert first.endswith(query) and "1.0000" in first  # the sentence itself, rescored by its float cosine
    assert cli.main(["search", "--model", str(model_dir), "--corpus", str(corpus), "--query", "x",
                     "--precision", "int8"]) == 2
    assert "holds binary vectors, not int8" in capsys.readouterr().err
    corpus.write_text("\n".join(TINY_SENTENCES[:-1]) + "\nan added line\n")
    assert cli.main(["search", "--model", str(model_dir), "--corpus", str(corpus), "--query", "x"]) == 2
    err = capsys.readouterr().err
    assert "is stale: it was built from another corpus" in err and len(err.strip().splitlines()) == 1
