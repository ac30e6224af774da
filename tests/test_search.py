"""Semantic search: exact top-k equals a brute-force NumPy computation, a saved index reloads,
the approximate (faiss) index finds the same neighbours on an easy corpus, and bad input gets a
clear error."""
import numpy as np
import pytest

from test_case import TINY_SENTENCES
from tf_esimcse import cli
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.search import SearchError, SearchIndex, exact_top_k


def _brute_force(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ c.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("block_size", [7, 65536])
def test_exact_top_k_equals_brute_force(block_size):
    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(300, 16)), rng.normal(size=(5, 16))
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    indices, scores = exact_top_k(q, c, top_k=10, block_size=block_size)
    want_i, want_s = _brute_force(queries, corpus, 10)
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    # k larger than the corpus: every row, sorted
    assert exact_top_k(q[:1], c[:4], top_k=10)[0].shape == (1, 4)


def test_index_search_save_load_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    sentences = [f"sentence {i}" for i in range(50)]
    embeddings = rng.normal(size=(50, 8)).astype(np.float32)
    index = SearchIndex(sentences, embeddings, model="m")
    queries = rng.normal(size=(3, 8))
    hits = index.search(queries, top_k=4)
    want_i, want_s = _brute_force(queries, embeddings, 4)
    assert [[s for s, _ in row] for row in hits] == [[sentences[i] for i in row] for row in want_i]
    np.testing.assert_allclose([[score for _, score in row] for row in hits], want_s, atol=1e-5)

    path = index.save(tmp_path / "docs.index")
    again = SearchIndex.load(path)
    assert again.sentences == sentences and again.model == "m"
    assert again.search(queries, top_k=4) == hits

    with pytest.raises(SearchError, match="empty"):
        SearchIndex([], np.zeros((0, 8)))
    with pytest.raises(SearchError, match="dimension 5, the index 8"):
        index.search(np.ones((1, 5)))
    with pytest.raises(SearchError, match="no search index here"):
        SearchIndex.load(tmp_path / "missing")
    (path / "embeddings.npy").write_bytes(b"garbage")
    with pytest.raises(SearchError, match="damaged search index"):
        SearchIndex.load(path)


def test_approximate_index_finds_the_exact_neighbours_on_clustered_data(tmp_path):
    pytest.importorskip("faiss", reason="the 'search' extra (faiss-cpu) is part of the test install")
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(20, 16))
    embeddings = np.repeat(centers, 25, axis=0) + 0.01 * rng.normal(size=(500, 16))
    sentences = [f"s{i}" for i in range(500)]
    exact = SearchIndex(sentences, embeddings)
    approx = SearchIndex(sentences, embeddings, approximate=True)
    queries = centers[:5] + 0.01 * rng.normal(size=(5, 16))
    top_exact = [{s for s, _ in row} for row in exact.search(queries, top_k=10)]
    top_approx = [{s for s, _ in row} for row in approx.search(queries, top_k=10)]
    assert np.mean([len(a & b) / 10 for a, b in zip(top_exact, top_approx)]) >= 0.9
    reloaded = SearchIndex.load(approx.save(tmp_path / "approx.index"))
    assert reloaded.faiss_index is not None and reloaded.search(queries, top_k=3) == approx.search(queries, top_k=3)


@pytest.mark.large
def test_cli_build_index_and_search(model_dir, tmp_path, capsys):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(TINY_SENTENCES) + "\n")
    assert cli.main(["build-index", "--model", str(model_dir), "--corpus", str(corpus)]) == 0
    assert (tmp_path / "docs.txt.index" / "index.json").is_file()
    capsys.readouterr()
    query = TINY_SENTENCES[2]
    assert cli.main(["search", "--model", str(model_dir), "--corpus", str(corpus), "--query", query,
                     "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "loaded the index" in out
    first = [line for line in out.splitlines() if line.strip().startswith("1. ")][0]
    assert first.endswith(query) and "1.0000" in first  # the sentence itself, cosine 1
    # The same top-k as brute force over the encoder's own embeddings.
    encoder = SentenceEncoder.from_pretrained(str(model_dir))
    emb = encoder.encode(TINY_SENTENCES, verbose=0)
    want, _ = _brute_force(encoder.encode([query], verbose=0), emb, 3)
    import re

    ranked = [m.group(1) for m in (re.match(r"^\s*\d+\. \S+  (.*)$", line) for line in out.splitlines()) if m]
    assert ranked == [TINY_SENTENCES[i] for i in want[0]]

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert cli.main(["search", "--model", str(model_dir), "--corpus", str(empty), "--query", "x"]) == 2
    assert cli.main(["search", "--model", str(model_dir), "--corpus", str(corpus), "--query", "x",
                     "--index", str(tmp_path / "nope")]) == 2
    assert "no search index here" in capsys.readouterr().err
    assert cli.main(["search", "--model", "default", "--corpus", str(corpus), "--query", "x"]) == 2
    assert "was built with --model" in capsys.readouterr().err
