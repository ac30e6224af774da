"""Contrastive losses as pure functions of embeddings (shared by every training model).

`info_nce` is SimCSE's objective: for anchors z1 and positives z2 (row i of each is a pair),
logits[i, j] = cos(z1_i, z2_j) / temperature, cross-entropy against the diagonal. Extra negative
columns come from supervised SimCSE's hard negatives (each anchor's own hard-negative logit can
be shifted by an offset: log(alpha) in the paper, `hard_negative_weight` in the official code)
and from ESimCSE's momentum queue.
"""
import tensorflow as tf


def l2_normalize(x):
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


def contrastive_logits(z1, z2, temperature=0.05, hard_negatives=None, hard_negative_offset=0.0,
                       queue=None, queue_mask=None, label_offset=0):
    """Build the logits matrix and labels.

    Args:
        z1: (n, d) anchors. z2: (m, d) positives and in-batch negatives (m >= n; anchor i's
            positive is row `label_offset + i`, e.g. a replica's offset into the global batch).
        hard_negatives: (m, d) or None. Supervised SimCSE's contradiction sentences.
        hard_negative_offset: float. Added to each anchor's own hard-negative logit (column
            `label_offset + i` of the hard block): log(alpha) for the paper's alpha, or the
            official code's `--hard_negative_weight`. Defaults to `0.0`.
        queue: (q, d) or None. ESimCSE's queued negatives. queue_mask: (q,) bool, filled slots.
        label_offset: int or scalar tensor.

    Returns:
        (logits (n, m [+ m] [+ q]) float32, labels (n,) int32)
    """
    z1 = l2_normalize(tf.cast(z1, tf.float32))
    z2 = l2_normalize(tf.cast(z2, tf.float32))
    n = tf.shape(z1)[0]
    blocks = [tf.matmul(z1, z2, transpose_b=True) / temperature]
    labels = tf.range(n, dtype=tf.int32) + tf.cast(label_offset, tf.int32)
    if hard_negatives is not None:
        zh = l2_normalize(tf.cast(hard_negatives, tf.float32))
        hard = tf.matmul(z1, zh, transpose_b=True) / temperature
        if hard_negative_offset != 0.0:
            weight = tf.one_hot(labels, tf.shape(zh)[0], on_value=float(hard_negative_offset), off_value=0.0)
            hard = hard + weight
        blocks.append(hard)
    if queue is not None:
        zq = l2_normalize(tf.cast(queue, tf.float32))
        qlogits = tf.matmul(z1, zq, transpose_b=True) / temperature
        if queue_mask is not None:
            # Unfilled slots must never act as negatives: push them to -inf (exp -> 0).
            qlogits = tf.where(queue_mask[tf.newaxis, :], qlogits, tf.fill(tf.shape(qlogits), -1e9))
        blocks.append(qlogits)
    logits = tf.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return logits, labels


def info_nce(z1, z2, temperature=0.05, **kwargs):
    """Mean InfoNCE loss (cross-entropy against the positive column). See `contrastive_logits`."""
    logits, labels = contrastive_logits(z1, z2, temperature=temperature, **kwargs)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per_example)
