"""Shorter embeddings: keep the first `dim` coordinates of each vector, then L2-normalise again.

A model trained with a Matryoshka objective puts most of its meaning in the first coordinates, so
a prefix is a usable, cheaper embedding (index memory, search time, bandwidth); any other model can
be truncated the same way, at some cost in quality. This module is the one place the rule is
written: `SentenceEncoder.encode(dim=d)` and its saved `truncate_dim`, `tf-esimcse evaluate
--dims`, and the checks of every exported format against `encode(dim=d)` use it.

    check_dim(64, 384)                        # 64, or a one-line ValueError
    truncate(vectors, 64)                     # float32 [n, 64], unit rows
    parse_dims("384,256,128")                 # (384, 256, 128): the --dims flag's value
    sizes = SharedEncoding(encoder.encode)    # every sentence encoded once at full size ...
    sizes.encode_fn(64)(sentences)            # ... and truncated per size
"""
import numbers

import numpy as np


def check_dim(dim, embedding_dim, name="dim"):
    """`dim` as an int, if it is a size the embeddings can be truncated to: 1 <= dim <=
    `embedding_dim` (equal means no truncation). Otherwise a one-line `ValueError` naming `name`
    (the argument or flag) and the allowed range.

    Args:
        dim: int. The size asked for.
        embedding_dim: int. The full width of the model's embeddings.
        name: str. What to call `dim` in the error (`"--dim"`, `"truncate_dim"`). Defaults to
            `"dim"`.

    Returns:
        `int(dim)`.
    """
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise ValueError(f"{name} must be an integer between 1 and the embedding dimension {embedding_dim}, "
                         f"got {dim!r}")
    if not 1 <= int(dim) <= int(embedding_dim):
        raise ValueError(f"{name} must be between 1 and the embedding dimension {embedding_dim}, got {int(dim)}")
    return int(dim)


def truncate(embeddings, dim, normalize=True):
    """The first `dim` columns of `embeddings` (float32), each row L2-normalised again
    (`normalize=True`, the default); `dim=None` keeps every column (normalising only if asked).

    Rows of zeros stay zeros (the norm is clamped at 1e-12, as `keras.ops.normalize` does).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if dim is not None:
        x = x[..., :check_dim(dim, x.shape[-1])]
    if not normalize:
        return np.array(x, copy=True)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def parse_dims(text, name="--dims"):
    """`"384,256,128"` -> `(384, 256, 128)`: comma-separated positive integers, each once, in the
    order given; a one-line `ValueError` naming `name` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers such as 384,256,128,64,32, got {text!r}") from None
    bad = [d for d in dims if d < 1]
    if bad:
        raise ValueError(f"{name}: every size must be >= 1, got {bad[0]} in {text!r}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"{name}: a size is listed twice in {text!r}")
    return dims


class SharedEncoding:
    """Encode each sentence once, at full size, for evaluations at several sizes.

    `encode_fn(dim)` returns a function (list of str -> array) for `dim`; every such function reads
    one cache of full-size vectors, filled by `full_encode` on sentences it has not seen, and
    returns `truncate(vectors, dim)`. Evaluating five sizes thus costs one encoding, and each size
    gets exactly the vectors `encode(dim=d)` gives (the same forward pass, then the same rule).

    Args:
        full_encode: callable. Maps a list of str to full-size embeddings `[n, embedding_dim]`
            (`lambda s: encoder.encode(s, dim=encoder.embedding_dim)`).
    """

    def __init__(self, full_encode):
        self.full_encode = full_encode
        self._rows = {}

    @property
    def encoded(self):
        """How many distinct sentences have been encoded."""
        return len(self._rows)

    def full(self, sentences):
        """Full-size embeddings of `sentences` (list of str), from the cache where possible."""
        sentences = [str(s) for s in sentences]
        missing = [s for s in dict.fromkeys(sentences) if s not in self._rows]
        if missing:
            vectors = np.asarray(self.full_encode(missing), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(missing):
                raise ValueError(f"the encode function returned shape {vectors.shape} for {len(missing)} sentences")
            self._rows.update(zip(missing, vectors))
        if not sentences:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._rows[s] for s in sentences])

    def encode_fn(self, dim):
        """A function mapping a list of str to `truncate(full vectors, dim)`."""

        def encode(sentences):
            return truncate(self.full(sentences), dim)

        return encode
