"""Semantic search over a corpus with a trained encoder: the official SimCSE tool's first use.

    index = SearchIndex.build(encoder, sentences)          # encodes once, showing its progress
    index.save("docs.index")                              # next to the corpus; reload with SearchIndex.load
    index.search(encoder.encode(["a query"]), top_k=10)   # [[(sentence, cosine), ...]]

Exact search by default: unit-length embeddings, one matrix product per block of the corpus
(float32, TensorFlow), top-k per query; fine to about a million sentences on a laptop. An
approximate index for larger corpora (`approximate=True`): faiss's HNSW graph over inner products
(`pip install "tf_esimcse[search]"`), which trades a little recall for speed.

Smaller indexes (`precision=`, codes in `tf_esimcse.quantization`), for the exact and the faiss search:
- `"float32"` (default): the unit vectors, 4 bytes a dimension.
- `"int8"`: one byte a dimension, with per-dimension calibration ranges from the corpus stored in the
  index; the float query is scored against the dequantized corpus (faiss: `IndexHNSWSQ`, 8 bits).
- `"binary"`: one bit a dimension, searched by Hamming distance (TensorFlow XOR and popcount, XLA; faiss:
  `IndexBinaryHNSW`); the `rescore` best candidates of each query (default 10 x top_k) are then
  re-ranked by the float cosine, read from the float vectors kept on disk (memory-mapped: only the
  candidates' rows are read). `rescore=0` keeps the Hamming order, scored 1 - 2 h / dim.
`dim=d` keeps the first d dimensions of every embedding (then normalises), the corpus's and the
queries' alike: a Matryoshka-trained encoder's prefixes.

On disk an index is one folder, each file written atomically: `index.json` (format, model, the
model's embedding size, dim, precision, count, the corpus's sha256), `sentences.json` (the corpus,
in order), `probe.npy` (the model's full embedding of the first sentence: a changed model shows),
and per precision `embeddings.npy` (float32 [n, dim], unit length; binary: for rescoring),
`int8.npy` + `int8_ranges.npy`, `bits.npy`; `faiss.index` too when approximate.
"""
import functools
import hashlib
import json
import pathlib

import numpy as np

from tf_esimcse.atomic_files import replace_directory
from tf_esimcse.data.corpus import read_text_lines
from tf_esimcse.errors import SearchError
from tf_esimcse.quantization import (PRECISIONS, binarize, check_precision, dequantize_int8, hamming_to_cosine,
                                     int8_ranges, int8_scale_and_offset, quantize_int8)

FORMAT = "tf_esimcse.search_index/2"
_OLD_FORMATS = ("tf_esimcse.search_index/1",)  # float32, full size, no corpus hash or probe: still loads
# binary: Hamming candidates re-ranked per result. sentence-transformers uses 4; on 20,500 all-MiniLM-L6-v2
# embeddings 4 found 0.90 of the float top 10 and 10 found 0.97 for 15 % fewer queries/s (docs/performance.md).
RESCORE_MULTIPLIER = 10
_PROBE_COSINE = 0.999  # the probe sentence's embedding must come back this close from the search's model


def _normalize(x):
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def truncate_normalize(embeddings, dim=None):
    """The first `dim` dimensions of each embedding (all when None), scaled to unit length."""
    x = np.asarray(embeddings, dtype=np.float32)
    if dim is not None:
        dim = int(dim)
        if not 1 <= dim <= x.shape[-1]:
            raise SearchError(f"dim {dim} must be between 1 and the embeddings' size {x.shape[-1]}")
        x = x[..., :dim]
    return _normalize(x)


def corpus_sha256(sentences):
    """sha256 of the sentences one per line, each ending in a newline (so equal to the sha256 of a
    corpus file holding exactly those lines)."""
    digest = hashlib.sha256()
    for sentence in sentences:
        digest.update(sentence.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _blockwise_top_k(n, k, num_queries, score_block, block_size):
    """Top `k` of `score_block(start, stop)` ([q, stop - start] scores, higher better) over corpus
    rows 0..n in blocks: `(indices [q, k] int64, scores [q, k])`, best first; ties keep corpus order."""
    import tensorflow as tf

    best_scores, best_indices = None, np.zeros((num_queries, 0), np.int64)
    for start in range(0, n, block_size):
        scores = score_block(start, min(start + block_size, n))
        top = tf.math.top_k(scores, k=min(k, int(scores.shape[1])), sorted=True)
        values = top.values.numpy()
        best_scores = values if best_scores is None else np.concatenate([best_scores, values], axis=1)
        best_indices = np.concatenate([best_indices, top.indices.numpy().astype(np.int64) + start], axis=1)
        order = np.lexsort((best_indices, -best_scores), axis=1)[:, :k]  # score desc, then index asc
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_indices = np.take_along_axis(best_indices, order, axis=1)
    return best_indices, best_scores


def exact_top_k(queries, corpus, top_k, block_size=65536):
    """Indices and cosines of the `top_k` corpus rows nearest each query (both unit length):
    `(indices [q, k] int64, scores [q, k] float32)`, best first; ties keep corpus order."""
    import tensorflow as tf

    queries, corpus = np.asarray(queries, np.float32), np.asarray(corpus, np.float32)
    q = tf.constant(queries)
    return _blockwise_top_k(corpus.shape[0], min(int(top_k), corpus.shape[0]), queries.shape[0],
                            lambda a, b: tf.matmul(q, tf.constant(corpus[a:b]), transpose_b=True), block_size)


def int8_top_k(queries, codes, ranges, top_k, block_size=65536):
    """`exact_top_k` of float `queries` against the corpus that int8 `codes` under `ranges` stand for
    (`quantization.dequantize_int8`), without dequantizing more than one block at a time."""
    import tensorflow as tf

    scale, offset = int8_scale_and_offset(ranges)
    queries = np.asarray(queries, np.float32)
    q_scaled = tf.constant(queries * scale)  # q . (offset + scale * c) = (q * scale) . c + q . offset
    q_offset = tf.constant((queries @ offset)[:, None])

    def score(a, b):
        return tf.matmul(q_scaled, tf.cast(tf.constant(codes[a:b]), tf.float32), transpose_b=True) + q_offset

    return _blockwise_top_k(codes.shape[0], min(int(top_k), codes.shape[0]), queries.shape[0], score, block_size)


def _as_words(bits):
    """Packed bits [n, bytes] as uint64 words [n, ceil(bytes / 8)] (zero bytes appended)."""
    bits = np.asarray(bits, np.uint8)
    pad = (-bits.shape[1]) % 8
    if pad:
        bits = np.concatenate([bits, np.zeros((bits.shape[0], pad), np.uint8)], axis=1)
    return np.ascontiguousarray(bits).view(np.uint64)


@functools.lru_cache(maxsize=None)
def _minus_hamming():
    """A TF function: minus the Hamming distances [q, rows] of words [q, 1, w] and [rows, w]. XLA fuses
    the XOR, popcount and sum into one pass (5x faster than eager ops on a 2-core AMD EPYC)."""
    import tensorflow as tf

    def minus_hamming(queries, rows):
        xor = tf.bitwise.bitwise_xor(queries, rows[None, :, :])
        return -tf.reduce_sum(tf.cast(tf.raw_ops.PopulationCount(x=xor), tf.int32), axis=-1)

    return tf.function(minus_hamming, jit_compile=True)


def hamming_top_k(query_bits, corpus_bits, top_k, max_elements=1 << 24):
    """Indices and Hamming distances of the `top_k` corpus rows nearest each query, both packed bits
    (`quantization.binarize`): `(indices [q, k] int64, distances [q, k] int32)`, nearest first; ties
    keep corpus order. Blocks hold at most `max_elements` query x row x word XORs."""
    import tensorflow as tf

    q_words, c_words = _as_words(query_bits), _as_words(corpus_bits)
    q = tf.constant(q_words[:, None, :])

    def score(a, b):  # minus the distance: higher is better
        return _minus_hamming()(q, tf.constant(c_words[a:b]))

    block = max(1, max_elements // max(1, q_words.shape[0] * q_words.shape[1]))
    indices, scores = _blockwise_top_k(c_words.shape[0], min(int(top_k), c_words.shape[0]), q_words.shape[0],
                                       score, block)
    return indices, -scores


class SearchIndex:
    """A corpus and its unit-length embeddings, searched by cosine similarity.

    Args:
        sentences: list of str.
        embeddings: array [len(sentences), model_dim], the encoder's; truncated to `dim` and normalised here.
        model: str. Where the embeddings came from (recorded, and checked by the CLI).
        approximate: bool. Also build a faiss HNSW index (`pip install "tf_esimcse[search]"`).
        precision: str. `"float32"`, `"int8"` or `"binary"` (see the module's docstring). Defaults to float32.
        dim: int or None. Keep the first `dim` dimensions (then normalise). Defaults to all.
    """

    def __init__(self, sentences, embeddings, model="", approximate=False, precision="float32", dim=None):
        sentences = list(sentences)
        if not sentences:
            raise SearchError("the corpus is empty: nothing to search")
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(sentences):
            raise SearchError(f"{len(sentences)} sentences but embeddings of shape {embeddings.shape}")
        self.precision = _check_precision(precision)
        self.sentences, self.model = sentences, str(model)
        self.model_dim, self.corpus_sha256 = int(embeddings.shape[1]), corpus_sha256(sentences)
        self.probe = _normalize(embeddings[0])
        self._set_vectors(truncate_normalize(embeddings, dim))
        self.faiss_index = self._build_faiss() if approximate else None

    def _set_vectors(self, vectors):
        self.embeddings = self.int8 = self.int8_ranges = self.bits = None
        self.dim = int(vectors.shape[1])
        if self.precision == "int8":
            self.int8_ranges = int8_ranges(vectors)
            self.int8 = quantize_int8(vectors, self.int8_ranges)
        else:
            self.embeddings = vectors  # binary: for rescoring
            if self.precision == "binary":
                self.bits = binarize(vectors)

    @property
    def searched_bytes(self):
        """Bytes of the arrays every query reads (the rescoring rows of binary not counted)."""
        arrays = {"float32": [self.embeddings], "int8": [self.int8, self.int8_ranges], "binary": [self.bits]}
        return int(sum(a.nbytes for a in arrays[self.precision]))

    @classmethod
    def build(cls, encoder, sentences, batch_size=256, model="", approximate=False, verbose=1, precision="float32",
              dim=None):
        """Encode `sentences` once with `encoder.encode(..., verbose=verbose)`.

        `verbose=1` (default): encode's progress, a bar ending at n/n on a terminal and, in a log
        file, plain lines without escape codes (a final `encoding n/n sentences ... in Xs` line,
        and one every 30 s of a long job); `0`: silent; `"auto"`: only for more than 10 batches.
        """
        sentences = [s for s in sentences]
        if not sentences:
            raise SearchError("the corpus is empty: nothing to search")
        _check_precision(precision)
        embeddings = encoder.encode(sentences, batch_size=batch_size, verbose=verbose)
        return cls(sentences, embeddings, model=model, approximate=approximate, precision=precision, dim=dim)

    def _queries(self, query_embeddings):
        queries = np.atleast_2d(np.asarray(query_embeddings, np.float32))
        if queries.shape[1] < self.dim:
            raise SearchError(f"query embeddings have dimension {queries.shape[1]}, the index {self.dim} "
                              f"(of the model's {self.model_dim}; was it built with another model?)")
        return truncate_normalize(queries, self.dim)  # a longer query (the model's full size) is cut

    def search(self, query_embeddings, top_k=10, rescore=None):
        """For each query embedding (the model's: full size, or cut to at least `dim`), the `top_k`
        `(sentence, cosine)` pairs, best first.

        `rescore` (binary only): Hamming candidates per query re-ranked by the float cosine; default
        10 x top_k; 0 keeps the Hamming order with scores 1 - 2 h / dim.
        """
        queries = self._queries(query_embeddings)
        if int(top_k) < 1:
            raise SearchError(f"top_k must be >= 1, got {top_k}")
        k = min(int(top_k), len(self.sentences))
        if rescore is not None and self.precision != "binary":
            raise SearchError(f"rescoring applies to a binary index; this one holds {self.precision} vectors")
        if self.precision == "binary":
            indices, scores = self._binary_search(queries, k, rescore)
        elif self.faiss_index is not None:
            scores, indices = self.faiss_index.search(np.ascontiguousarray(queries), k)
        elif self.precision == "int8":
            indices, scores = int8_top_k(queries, self.int8, self.int8_ranges, k)
        else:
            indices, scores = exact_top_k(queries, self.embeddings, k)
        return [[(self.sentences[i], float(s)) for i, s in zip(row_i, row_s) if i >= 0]
                for row_i, row_s in zip(indices, scores)]

    def _binary_search(self, queries, k, rescore):
        n = len(self.sentences)
        rescore = RESCORE_MULTIPLIER * k if rescore is None else int(rescore)
        if rescore < 0:
            raise SearchError(f"rescore must be >= 0 (0: no rescoring), got {rescore}")
        candidates = min(n, max(k, rescore))
        query_bits = binarize(queries)
        if self.faiss_index is not None:
            self.faiss_index.hnsw.efSearch = max(128, candidates)
            distances, indices = self.faiss_index.search(np.ascontiguousarray(query_bits), candidates)
            indices = indices.astype(np.int64)
        else:
            indices, distances = hamming_top_k(query_bits, self.bits, candidates)
        if rescore == 0:
            return indices, hamming_to_cosine(distances, self.dim)
        safe = np.where(indices >= 0, indices, 0)  # faiss pads missing hits with -1
        gathered = np.asarray(self.embeddings[safe.ravel()], np.float32).reshape(*safe.shape, self.dim)
        scores = np.where(indices >= 0, np.matmul(gathered, queries[:, :, None])[..., 0], -np.inf)
        order = np.lexsort((indices, -scores), axis=1)[:, :k]
        return np.take_along_axis(indices, order, axis=1), np.take_along_axis(scores, order, axis=1)

    # --- is it the index for this search? -------------------------------------------------
    def check(self, where, model=None, sentences=None, precision=None, dim=None):
        """Raise a one-line SearchError when the index at `where` was built with another model name,
        from another corpus, at another precision or size than given (None: not checked)."""
        fix = "rebuild it (tf-esimcse build-index)"
        if model is not None and self.model and self.model != str(model):
            raise SearchError(f"{where} was built with --model {self.model}, not {model}: pass that model, "
                              "or rebuild the index (tf-esimcse build-index)")
        if sentences is not None and corpus_sha256(sentences) != self.corpus_sha256:
            raise SearchError(f"{where} is stale: it was built from another corpus (sha256 {self.corpus_sha256[:12]}, "
                              f"the corpus now {corpus_sha256(sentences)[:12]}): rebuild it (tf-esimcse build-index)")
        if precision is not None and precision != self.precision:
            raise SearchError(f"{where} holds {self.precision} vectors, not {precision}: pass --precision "
                              f"{self.precision} (as build-index had), or {fix}")
        if dim is not None and int(dim) != self.dim:
            raise SearchError(f"{where} holds {self.dim}-dimensional vectors, not {dim}: pass --dim {self.dim} "
                              f"(as build-index had), or {fix}")

    def check_encoder(self, where, encode):
        """Raise a one-line SearchError unless `encode([first sentence])` gives back the probe
        embedding stored at build time (a model retrained or replaced at the same path)."""
        if self.probe is None:
            return
        again = np.asarray(encode([self.sentences[0]]), np.float32)[0]
        n = min(again.shape[0], self.probe.shape[0])  # either may be cut to fewer dimensions (--dim)
        if float(_normalize(again[:n]) @ _normalize(self.probe[:n])) < _PROBE_COSINE:
            raise SearchError(f"{where} was built with another model (its first sentence encodes differently "
                              "now): rebuild it (tf-esimcse build-index)")

    # --- on disk -------------------------------------------------------------------------
    def save(self, path):
        """Write the index folder at `path` atomically (a new folder renamed into place)."""
        path = pathlib.Path(path)
        with replace_directory(path) as tmp:
            arrays = {"embeddings.npy": self.embeddings, "int8.npy": self.int8, "int8_ranges.npy": self.int8_ranges,
                      "bits.npy": self.bits, "probe.npy": self.probe}
            for name, array in arrays.items():
                if array is not None:
                    np.save(tmp / name, np.asarray(array))
            (tmp / "sentences.json").write_text(json.dumps(self.sentences, ensure_ascii=False))
            meta = {"format": FORMAT, "model": self.model, "model_dim": self.model_dim, "dim": self.dim,
                    "precision": self.precision, "count": len(self.sentences), "corpus_sha256": self.corpus_sha256,
                    "approximate": self.faiss_index is not None}
            if self.faiss_index is not None:
                faiss = _import_faiss()
                write = faiss.write_index_binary if self.precision == "binary" else faiss.write_index
                write(self.faiss_index, str(tmp / "faiss.index"))
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
            fmt = meta.get("format")
            if fmt != FORMAT and fmt not in _OLD_FORMATS:
                raise SearchError(f"{path}: not a search index this version reads (format {fmt!r}); "
                                  "rebuild it (tf-esimcse build-index)")
            precision = meta.get("precision", "float32")
            if precision not in PRECISIONS:
                raise SearchError(f"{path}: unknown precision {precision!r} in index.json; rebuild it")
            sentences = json.loads((path / "sentences.json").read_text())
            arrays = {"float32": ["embeddings.npy"], "int8": ["int8.npy", "int8_ranges.npy"],
                      "binary": ["bits.npy", "embeddings.npy"]}[precision]
            # binary: the float vectors are read only for rescoring, row by row from the disk
            loaded = {name: np.load(path / name, mmap_mode="r" if precision == "binary" else None) for name in arrays}
            probe = np.load(path / "probe.npy") if (path / "probe.npy").is_file() else None
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, SearchError):
                raise
            raise SearchError(f"{path}: damaged search index ({e})") from None
        index = cls.__new__(cls)
        index.sentences, index.model, index.precision = sentences, meta.get("model", ""), precision
        index.embeddings, index.int8, index.bits = (loaded.get(n) for n in ("embeddings.npy", "int8.npy", "bits.npy"))
        index.int8_ranges = loaded.get("int8_ranges.npy")
        if index.embeddings is not None and precision == "float32":
            index.embeddings = index.embeddings.astype(np.float32)
        index.dim = int(meta.get("dim", -1))
        index.model_dim = int(meta.get("model_dim", index.dim))
        index.corpus_sha256 = meta.get("corpus_sha256") or corpus_sha256(sentences)
        index.probe = probe
        rows = {"float32": (index.embeddings, index.dim), "int8": (index.int8, index.dim),
                "binary": (index.bits, (index.dim + 7) // 8)}[precision]
        if (len(sentences) != rows[0].shape[0] or rows[0].shape[1] != rows[1]
                or (precision == "binary" and index.embeddings.shape != (len(sentences), index.dim))):
            raise SearchError(f"{path}: inconsistent search index (format {fmt!r}, {precision}, "
                              f"{len(sentences)} sentences, vectors {rows[0].shape}, dim {index.dim})")
        index.faiss_index = None
        if meta.get("approximate"):
            faiss = _import_faiss()
            read = faiss.read_index_binary if precision == "binary" else faiss.read_index
            index.faiss_index = read(str(path / "faiss.index"))
        return index

    def _build_faiss(self, neighbors=32):
        faiss = _import_faiss()
        if self.precision == "binary":
            index = faiss.IndexBinaryHNSW(8 * self.bits.shape[1], neighbors)
            index.add(np.ascontiguousarray(self.bits))
            return index
        if self.precision == "int8":
            index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, neighbors, faiss.METRIC_INNER_PRODUCT)
            storage = faiss.downcast_index(index.storage)
            # faiss's 8-bit ranges are ours: (min, max - min) per dimension; so are its codes
            low, width = self.int8_ranges[0], self.int8_ranges[1] - self.int8_ranges[0]
            faiss.copy_array_to_vector(np.concatenate([low, np.where(width > 0, width, 1.0)]).astype(np.float32),
                                       storage.sq.trained)
            storage.is_trained = index.is_trained = True
            index.hnsw.efSearch = 128
            index.add(np.ascontiguousarray(dequantize_int8(self.int8, self.int8_ranges)))  # re-encodes to the same codes
            return index
        index = faiss.IndexHNSWFlat(self.dim, neighbors, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
        index.add(np.ascontiguousarray(self.embeddings, dtype=np.float32))
        return index


def _check_precision(precision):
    try:
        return check_precision(precision)
    except ValueError as e:
        raise SearchError(str(e)) from None


def _import_faiss():
    try:
        import faiss  # optional dependency (the 'search' extra)
    except ImportError:
        raise SearchError("the approximate index needs faiss: pip install 'tf_esimcse[search]' (faiss-cpu)") from None
    return faiss


def read_corpus(path):
    """Sentences of a one-per-line text file (blank lines skipped), with clear errors."""
    sentences = read_text_lines(path)
    if not sentences:
        raise SearchError(f"{path}: the corpus is empty: nothing to search")
    return sentences
