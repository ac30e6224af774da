"""Semantic search over a corpus with a trained encoder: the official SimCSE tool's first use.

    index = SearchIndex.build(encoder, sentences)          # encodes once, showing its progress
    index.save("docs.index")                              # next to the corpus; reload with SearchIndex.load
    index.search(encoder.encode(["a query"]), top_k=10)   # [[(sentence, cosine), ...]]

Exact search by default: unit-length embeddings, one matrix product per block of the corpus
(float32, TensorFlow), top-k per query; fine to about a million sentences on a laptop. An
approximate index for larger corpora (`approximate=True`): faiss's HNSW graph over inner products
(`pip install "tf_esimcse[search]"`), which trades a little recall for speed.

On disk an index is one folder: `embeddings.npy` (float32 [n, dim], L2-normalised),
`sentences.json` (the corpus, in order) and `index.json` (model, dimension, count, format), each
written atomically; `faiss.index` too when approximate.
"""
import json
import pathlib

import numpy as np

from tf_esimcse.atomic_files import replace_directory
from tf_esimcse.data.corpus import read_text_lines
from tf_esimcse.errors import SearchError

FORMAT = "tf_esimcse.search_index/1"


def _normalize(x):
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def exact_top_k(queries, corpus, top_k, block_size=65536):
    """Indices and cosines of the `top_k` corpus rows nearest each query (both unit length):
    `(indices [q, k] int64, scores [q, k] float32)`, best first; ties keep corpus order."""
    import tensorflow as tf

    queries, corpus = np.asarray(queries, np.float32), np.asarray(corpus, np.float32)
    k = min(int(top_k), corpus.shape[0])
    best_scores = np.full((queries.shape[0], 0), -np.inf, np.float32)
    best_indices = np.zeros((queries.shape[0], 0), np.int64)
    q = tf.constant(queries)
    for start in range(0, corpus.shape[0], block_size):
        block = tf.constant(corpus[start:start + block_size])
        scores = tf.matmul(q, block, transpose_b=True)
        kk = min(k, int(block.shape[0]))
        top = tf.math.top_k(scores, k=kk, sorted=True)
        best_scores = np.concatenate([best_scores, top.values.numpy()], axis=1)
        best_indices = np.concatenate([best_indices, top.indices.numpy().astype(np.int64) + start], axis=1)
        order = np.lexsort((best_indices, -best_scores), axis=1)[:, :k]  # score desc, then index asc
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_indices = np.take_along_axis(best_indices, order, axis=1)
    return best_indices, best_scores


class SearchIndex:
    """A corpus and its unit-length embeddings, searched by cosine similarity.

    Args:
        sentences: list of str.
        embeddings: array [len(sentences), dim]; normalised here.
        model: str. Where the embeddings came from (recorded, and checked by the CLI).
        approximate: bool. Also build a faiss HNSW index (`pip install "tf_esimcse[search]"`).
    """

    def __init__(self, sentences, embeddings, model="", approximate=False):
        sentences = list(sentences)
        if not sentences:
            raise SearchError("the corpus is empty: nothing to search")
        embeddings = _normalize(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(sentences):
            raise SearchError(f"{len(sentences)} sentences but embeddings of shape {embeddings.shape}")
        self.sentences, self.embeddings, self.model = sentences, embeddings, str(model)
        self.faiss_index = _build_faiss(embeddings) if approximate else None

    @property
    def dim(self):
        return int(self.embeddings.shape[1])

    @classmethod
    def build(cls, encoder, sentences, batch_size=256, model="", approximate=False, verbose=1):
        """Encode `sentences` once with `encoder.encode(..., verbose=verbose)`.

        `verbose=1` (default): encode's progress, a bar ending at n/n on a terminal and, in a log
        file, plain lines without escape codes (a final `encoding n/n sentences ... in Xs` line,
        and one every 30 s of a long job); `0`: silent; `"auto"`: only for more than 10 batches.
        """
        sentences = [s for s in sentences]
        if not sentences:
            raise SearchError("the corpus is empty: nothing to search")
        embeddings = encoder.encode(sentences, batch_size=batch_size, verbose=verbose)
        return cls(sentences, embeddings, model=model, approximate=approximate)

    def search(self, query_embeddings, top_k=10):
        """For each query embedding, the `top_k` `(sentence, cosine)` pairs, best first."""
        queries = _normalize(np.atleast_2d(query_embeddings))
        if queries.shape[1] != self.dim:
            raise SearchError(f"query embeddings have dimension {queries.shape[1]}, the index {self.dim} "
                              "(was it built with another model?)")
        if int(top_k) < 1:
            raise SearchError(f"top_k must be >= 1, got {top_k}")
        if self.faiss_index is not None:
            k = min(int(top_k), len(self.sentences))
            scores, indices = self.faiss_index.search(np.ascontiguousarray(queries), k)
        else:
            indices, scores = exact_top_k(queries, self.embeddings, top_k)
        return [[(self.sentences[i], float(s)) for i, s in zip(row_i, row_s) if i >= 0]
                for row_i, row_s in zip(indices, scores)]

    # --- on disk -------------------------------------------------------------------------
    def save(self, path):
        """Write the index folder at `path` atomically (a new folder renamed into place)."""
        path = pathlib.Path(path)
        with replace_directory(path) as tmp:
            np.save(tmp / "embeddings.npy", self.embeddings)
            (tmp / "sentences.json").write_text(json.dumps(self.sentences, ensure_ascii=False))
            meta = {"format": FORMAT, "model": self.model, "dim": self.dim, "count": len(self.sentences),
                    "approximate": self.faiss_index is not None}
            if self.faiss_index is not None:
                import faiss

                faiss.write_index(self.faiss_index, str(tmp / "faiss.index"))
            (tmp / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path):
        path = pathlib.Path(path)
        meta_file = path / "index.json"
        if not meta_file.is_file():
            raise SearchError(f"{path}: no search index here (no index.json); build one with tf-esimcse build-index")
        try:
            meta = json.loads(meta_file.read_text())
            sentences = json.loads((path / "sentences.json").read_text())
            embeddings = np.load(path / "embeddings.npy")
        except (OSError, ValueError) as e:
            raise SearchError(f"{path}: damaged search index ({e})") from None
        if meta.get("format") != FORMAT or len(sentences) != embeddings.shape[0] or embeddings.shape[1] != meta["dim"]:
            raise SearchError(f"{path}: inconsistent search index (format {meta.get('format')!r}, "
                              f"{len(sentences)} sentences, embeddings {embeddings.shape})")
        index = cls.__new__(cls)
        index.sentences, index.embeddings, index.model = sentences, embeddings.astype(np.float32), meta["model"]
        index.faiss_index = None
        if meta.get("approximate"):
            faiss = _import_faiss()
            index.faiss_index = faiss.read_index(str(path / "faiss.index"))
        return index


def _import_faiss():
    try:
        import faiss
    except ImportError:
        raise SearchError("the approximate index needs faiss: pip install 'tf_esimcse[search]' (faiss-cpu)") from None
    return faiss


def _build_faiss(embeddings, neighbors=32):
    faiss = _import_faiss()
    index = faiss.IndexHNSWFlat(embeddings.shape[1], neighbors, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 128
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def read_corpus(path):
    """Sentences of a one-per-line text file (blank lines skipped), with clear errors."""
    sentences = read_text_lines(path)
    if not sentences:
        raise SearchError(f"{path}: the corpus is empty: nothing to search")
    return sentences
