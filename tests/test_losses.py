"""Tests for `tf_esimcse.losses` against an independent NumPy InfoNCE (`test_case.numpy_info_nce`)."""
import numpy as np
import pytest
import tensorflow as tf

from test_case import numpy_info_nce
from test_case import to_numpy
from tf_esimcse.losses import contrastive_logits
from tf_esimcse.losses import info_nce

N, D, T = 4, 8, 0.05


def _embeddings(*shapes, seed=0):
    """Fixed, NOT normalised embeddings (scales 0.1 to 10) so the loss must normalise itself."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        x = rng.standard_normal(shape) * rng.uniform(0.1, 10.0, size=(shape[0], 1))
        out.append(x.astype("float32"))
    return out


def _approx(expected, rel=1e-5):
    # float32 logits of up to 1/T = 20: relative 1e-5, plus an absolute floor for tiny losses.
    return pytest.approx(expected, rel=rel, abs=1e-5)


def _loss(*args, **kwargs):
    return float(to_numpy(info_nce(*args, **kwargs)))


def test_plain_matches_numpy():
    z1, z2 = _embeddings((N, D), (N, D))
    expected = numpy_info_nce(z1, z2, temperature=T)
    assert _loss(z1, z2, temperature=T) == _approx(expected, rel=1e-5)
    # Changing the temperature changes the loss (so the temperature is really used).
    assert _loss(z1, z2, temperature=1.0) == _approx(numpy_info_nce(z1, z2, temperature=1.0), rel=1e-5)
    assert abs(expected - numpy_info_nce(z1, z2, temperature=1.0)) > 0.1


def test_invariant_to_scale_of_inputs():
    z1, z2 = _embeddings((N, D), (N, D))
    assert _loss(z1, z2) == _approx(_loss(3.0 * z1, 0.01 * z2), rel=1e-5)


def test_identical_views_match_numpy():
    (z,) = _embeddings((N, D))
    loss = _loss(z, z, temperature=T)
    assert loss == _approx(numpy_info_nce(z, z, temperature=T), rel=1e-5)


def test_logits_and_labels():
    z1, z2 = _embeddings((N, D), (N, D))
    logits, labels = contrastive_logits(z1, z2, temperature=T)
    assert logits.dtype == tf.float32 and labels.dtype == tf.int32
    assert to_numpy(labels).tolist() == list(range(N))
    cos = (z1 / np.linalg.norm(z1, axis=1, keepdims=True)) @ (z2 / np.linalg.norm(z2, axis=1, keepdims=True)).T
    np.testing.assert_allclose(to_numpy(logits), cos / T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_hard_negatives_with_weight_match_numpy(alpha):
    z1, z2, zh = _embeddings((N, D), (N, D), (N, D), seed=1)
    expected = numpy_info_nce(z1, z2, temperature=T, hard_negatives=zh, alpha=alpha)
    got = _loss(z1, z2, temperature=T, hard_negatives=zh, hard_negative_offset=np.log(alpha))
    assert got == _approx(expected, rel=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_two_hard_negative_blocks_match_numpy(alpha):
    """Contradiction + neutral: each block of hard columns, own column offset by log(alpha)."""
    z1, z2, zc, zn = _embeddings((N, D), (N, D), (N, D), (N, D), seed=3)
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (z1, z2, zc, zn)]
    expected = 0.0
    for i in range(N):  # row by row, float64
        row = [unit[0][i] @ unit[1][j] / T for j in range(N)]
        for block in (unit[2], unit[3]):
            row += [unit[0][i] @ block[j] / T + (np.log(alpha) if j == i else 0.0) for j in range(N)]
        row = np.array(row, dtype=np.float64)
        expected += (np.log(np.exp(row - row.max()).sum()) + row.max() - row[i]) / N
    got = _loss(z1, z2, temperature=T, hard_negatives=[zc, zn], hard_negative_offset=np.log(alpha))
    assert got == _approx(expected, rel=1e-5)
    logits, _ = contrastive_logits(z1, z2, temperature=T, hard_negatives=[zc, zn])
    assert tuple(logits.shape) == (N, 3 * N)
    # one block alone is the single-tensor form
    assert _loss(z1, z2, hard_negatives=[zc]) == _approx(_loss(z1, z2, hard_negatives=zc))


def test_hard_negative_weight_only_on_matching_column():
    z1, z2, zh = _embeddings((N, D), (N, D), (N, D), seed=1)
    plain, _ = contrastive_logits(z1, z2, temperature=T, hard_negatives=zh)
    weighted, _ = contrastive_logits(z1, z2, temperature=T, hard_negatives=zh, hard_negative_offset=np.log(3.0))
    diff = to_numpy(weighted) - to_numpy(plain)
    expected = np.zeros((N, 2 * N))
    expected[np.arange(N), N + np.arange(N)] = np.log(3.0)
    np.testing.assert_allclose(diff, expected, atol=1e-4)


def test_hard_negatives_raise_the_loss():
    z1, z2 = _embeddings((N, D), (N, D), seed=2)
    assert _loss(z1, z2, hard_negatives=z1 + 0.01 * z2) > _loss(z1, z2)


def test_queue_matches_numpy():
    z1, z2, queue = _embeddings((N, D), (N, D), (6, D), seed=3)
    expected = numpy_info_nce(z1, z2, temperature=T, queue=queue)
    assert _loss(z1, z2, temperature=T, queue=queue) == _approx(expected, rel=1e-5)


def test_queue_mask_excludes_unfilled_slots():
    z1, z2, queue = _embeddings((N, D), (N, D), (6, D), seed=4)
    mask = np.array([True, False, True, True, False, False])
    got = _loss(z1, z2, temperature=T, queue=queue, queue_mask=tf.constant(mask))
    only_filled = _loss(z1, z2, temperature=T, queue=queue[mask])
    assert got == _approx(only_filled, rel=1e-5)
    assert got == _approx(numpy_info_nce(z1, z2, temperature=T, queue=queue, queue_mask=mask), rel=1e-5)
    # Garbage in the unfilled slots (e.g. a copy of the positives) changes nothing.
    garbage = queue.copy()
    garbage[~mask] = z1[: (~mask).sum()]
    assert _loss(z1, z2, temperature=T, queue=garbage, queue_mask=tf.constant(mask)) == _approx(got, rel=1e-6)
    # An empty queue (nothing filled) equals no queue.
    empty = _loss(z1, z2, temperature=T, queue=queue, queue_mask=tf.zeros(6, tf.bool))
    assert empty == _approx(_loss(z1, z2, temperature=T), rel=1e-5)


def test_hard_negatives_and_queue_together():
    z1, z2, zh, queue = _embeddings((N, D), (N, D), (N, D), (5, D), seed=5)
    mask = np.array([True, True, False, True, False])
    expected = numpy_info_nce(z1, z2, temperature=T, hard_negatives=zh, alpha=2.0, queue=queue,
                              queue_mask=mask)
    got = _loss(z1, z2, temperature=T, hard_negatives=zh, hard_negative_offset=np.log(2.0), queue=queue,
                queue_mask=tf.constant(mask))
    assert got == _approx(expected, rel=1e-5)


@pytest.mark.parametrize("offset", [0, 3, 8])
def test_label_offset_with_larger_positive_set(offset):
    """z1 is one replica's slice of a global batch z2 (12 rows); its positives start at `offset`."""
    (z2,) = _embeddings((12, D), seed=6)
    z1 = z2[offset: offset + N] + 0.3 * _embeddings((N, D), seed=7)[0]
    expected = numpy_info_nce(z1, z2, temperature=T, label_offset=offset)
    assert _loss(z1, z2, temperature=T, label_offset=offset) == _approx(expected, rel=1e-5)
    assert _loss(z1, z2, temperature=T, label_offset=tf.constant(offset)) == _approx(expected, rel=1e-5)
    _, labels = contrastive_logits(z1, z2, label_offset=offset)
    assert to_numpy(labels).tolist() == list(range(offset, offset + N))


def test_label_offset_with_hard_negatives():
    (z2,) = _embeddings((12, D), seed=8)
    z1, zh = _embeddings((N, D), (12, D), seed=9)
    expected = numpy_info_nce(z1, z2, temperature=T, hard_negatives=zh, alpha=2.0, label_offset=4)
    got = _loss(z1, z2, temperature=T, hard_negatives=zh, hard_negative_offset=np.log(2.0), label_offset=4)
    assert got == _approx(expected, rel=1e-5)


def test_gradient_is_finite_for_zero_vector():
    z1, z2 = _embeddings((N, D), (N, D))
    z1[0] = 0.0
    z1 = tf.Variable(z1)
    with tf.GradientTape() as tape:
        loss = info_nce(z1, z2)
    assert np.isfinite(to_numpy(loss))
    assert np.all(np.isfinite(to_numpy(tape.gradient(loss, z1))))
