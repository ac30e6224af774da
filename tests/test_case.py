"""Shared test helpers, in the spirit of keras-hub's `keras_hub/src/tests/test_case.py`.

Every test module reuses the same few checks instead of re-writing them:

- `run_serialization_test(obj)`: `get_config()` is JSON-serialisable, `from_config(get_config())`
  gives the same config back, and `serialize_keras_object` / `deserialize_keras_object`
  round-trip to the same class and config.
- `run_model_saving_test(model, input_data, path)`: a `.keras` save and load returns the same
  class with the same outputs.
- `tiny_backbone(**overrides)`: a tiny random `tf_esimcse.backbones.BertEncoder`.
- `write_tiny_model_dir(path, **overrides)` and `tiny_encoder(model_dir, **kwargs)`: a tiny
  random Hugging Face BERT directory (`tiny_hf.write_tiny_hf_bert`) and a `SentenceEncoder`
  loaded from it with `SentenceEncoder.from_pretrained`.
- `numpy_info_nce(...)`: an independent NumPy (float64) InfoNCE, the reference of the loss tests.
- `rowwise_cosine(a, b)`: the cosine of each row pair (float64), for comparing exports with `encode`.
- `side_env_python(what)`: the interpreter of the `.venv-st` side environment (real PyTorch,
  sentence-transformers, transformers), skipped without it except under CI=true (a failure there).

Sizes are tiny (hidden 32, 2 layers, 2 heads, vocabulary of `tiny_hf.DEFAULT_WORDS`) so that the
whole suite runs in seconds on two CPU cores.
"""
import json
import os
import pathlib

import keras
import numpy as np
import pytest

from tiny_hf import DEFAULT_WORDS
from tiny_hf import SPECIAL_TOKENS
from tiny_hf import write_tiny_hf_bert

TINY_VOCAB_SIZE = len(SPECIAL_TOKENS) + len(DEFAULT_WORDS)
TINY_HIDDEN = 32

# Sentences made only of words in the tiny vocabulary, of different lengths (in tokens).
TINY_SENTENCES = [
    "the cat sat on the mat .",
    "hello world !",
    "the quick brown fox jumped over the lazy dog .",
    "a dog",
    "the cat is playing .",
    "hello",
    "a lazy cat sat on a dog , hello world ?",
    "quick fox",
]


def to_numpy(x):
    """A tensor, NumPy array or list -> NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def _json_config(obj):
    config = obj.get_config()
    # Catches live layers, NumPy scalars and other non-JSON values in the config.
    return json.loads(json.dumps(config, sort_keys=True))


def run_serialization_test(obj, expected_cls=None):
    """Check that `obj`'s config is JSON and that it round-trips through `from_config` and
    through Keras' `serialize_keras_object`/`deserialize_keras_object`.

    Returns the object rebuilt by `deserialize_keras_object` (for further checks).
    """
    cls = expected_cls or type(obj)
    config = _json_config(obj)

    revived = cls.from_config(obj.get_config())
    assert type(revived) is cls
    assert _json_config(revived) == config

    serialized = keras.saving.serialize_keras_object(obj)
    json.dumps(serialized)  # the full serialized form must be JSON too
    deserialized = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(deserialized) is cls
    assert _json_config(deserialized) == config
    return deserialized


def run_model_saving_test(model, input_data, path, atol=1e-6, call_kwargs=None):
    """Save `model` as `.keras` under `path`, load it back, and compare class and outputs.

    Returns the reloaded model.
    """
    call_kwargs = call_kwargs or {"training": False}
    filepath = str(path / f"{model.name}.keras")
    model.save(filepath)
    restored = keras.saving.load_model(filepath)
    assert type(restored) is type(model)
    expected = keras.tree.map_structure(to_numpy, model(input_data, **call_kwargs))
    actual = keras.tree.map_structure(to_numpy, restored(input_data, **call_kwargs))
    keras.tree.map_structure(lambda a, e: np.testing.assert_allclose(a, e, atol=atol, rtol=0), actual, expected)
    return restored


def tiny_backbone(**overrides):
    """A tiny random `BertEncoder` (hidden 32, 2 layers, 2 heads); keyword arguments override."""
    from tf_esimcse.models.bert_encoder import BertEncoder

    kwargs = dict(
        vocabulary_size=TINY_VOCAB_SIZE,
        num_layers=2,
        num_heads=2,
        hidden_dim=TINY_HIDDEN,
        intermediate_dim=64,
        max_sequence_length=64,
    )
    kwargs.update(overrides)
    return BertEncoder(**kwargs)


def write_tiny_model_dir(path, **overrides):
    """A tiny random Hugging Face BERT directory (hidden 32, 2 layers, 2 heads) at `path`."""
    kwargs = dict(num_layers=2, hidden=TINY_HIDDEN, heads=2, intermediate=64, max_position=64, seed=0)
    kwargs.update(overrides)
    return write_tiny_hf_bert(path, **kwargs)


def tiny_encoder(model_dir, pooler_type="avg", **kwargs):
    """`SentenceEncoder.from_pretrained(model_dir, ...)`; `model_dir` from `write_tiny_model_dir`."""
    from tf_esimcse.models.sentence_encoder import SentenceEncoder

    return SentenceEncoder.from_pretrained(str(model_dir), pooler_type=pooler_type, **kwargs)


def l2_normalize_np(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def rowwise_cosine(a, b):
    """The cosine of each pair of rows of `a` and `b` (float64)."""
    return np.sum(l2_normalize_np(a) * l2_normalize_np(b), axis=-1)


def side_env_python(what="sentence-transformers", skip_note=""):
    """The side environment's interpreter: $TF_ESIMCSE_ST_PYTHON, else `.venv-st` (make setup-st).
    Skipped where there is none, except under CI=true (.ci/run's `make test` builds it): then a
    failure. `what` names the library the caller needs; `skip_note` is added to the skip reason."""
    repo = pathlib.Path(__file__).resolve().parents[1]
    path = pathlib.Path(os.environ.get("TF_ESIMCSE_ST_PYTHON") or repo / ".venv-st" / "bin" / "python")
    if not path.exists():
        message = f"no {what} side environment at {path}: `make setup-st` builds it (or set TF_ESIMCSE_ST_PYTHON)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message + skip_note)
    return path


def numpy_info_nce(z1, z2, temperature=0.05, hard_negatives=None, alpha=1.0, queue=None,
                   queue_mask=None, label_offset=0):
    """Independent NumPy (float64) InfoNCE: mean over anchors of
    `-log softmax(cos(z1_i, [z2 | hard | queue]) / temperature)[label_offset + i]`, with
    `log(alpha)` added to the hard-negative logit of the anchor's own triplet only, and the
    queue restricted to its filled slots (`queue_mask`)."""
    a = l2_normalize_np(z1)
    columns = [a @ l2_normalize_np(z2).T / temperature]
    n = a.shape[0]
    labels = np.arange(n) + int(label_offset)
    if hard_negatives is not None:
        hard = a @ l2_normalize_np(hard_negatives).T / temperature
        hard[np.arange(n), labels] += np.log(alpha)
        columns.append(hard)
    if queue is not None:
        queue = np.asarray(queue, dtype=np.float64)
        if queue_mask is not None:
            queue = queue[np.asarray(queue_mask, dtype=bool)]
        columns.append(a @ l2_normalize_np(queue).T / temperature)
    logits = np.concatenate(columns, axis=1)
    top = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_z - logits[np.arange(n), labels]))
