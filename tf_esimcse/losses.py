"""Contrastive losses as pure functions of embeddings (shared by every training model).

`info_nce` is SimCSE's objective: for anchors z1 and positives z2 (row i of each is a pair),
logits[i, j] = cos(z1_i, z2_j) / temperature, cross-entropy against the diagonal. Extra negative
columns come from supervised SimCSE's hard negatives (each anchor's own hard-negative logit can
be shifted by an offset: log(alpha) in the paper, `hard_negative_weight` in the official code)
and from ESimCSE's momentum queue.

Optionally (`positive_mask`, e.g. from `duplicate_mask`) some in-batch positive columns are
dropped from an anchor's negatives: when one sentence appears twice in a batch, its copy's
positive is a false negative. The official SimCSE/ESimCSE code keeps them.
"""
import tensorflow as tf


def l2_normalize(x):
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


#: The logit given to a column that must never act as a negative (exp -> 0 in the softmax).
MASKED_LOGIT = -1e9


def duplicate_mask(anchor_ids, example_ids, label_offset=0):
    """Which examples duplicate each anchor, other than the anchor's own example.

    Args:
        anchor_ids: (n, L) int. The anchors' token ids (a replica's local batch).
        example_ids: (m, L) int. The token ids of the anchor view of every example whose positive
            is a column of the logits (the global batch, gathered in replica order); same padded
            width `L` as `anchor_ids`.
        label_offset: int or scalar tensor. Row of anchor 0 in `example_ids`.

    Returns:
        (n, m) bool: True where row j of `example_ids` equals row i of `anchor_ids` exactly
        (padding included) and j != label_offset + i. Static shapes (XLA-friendly).
    """
    anchor_ids = tf.convert_to_tensor(anchor_ids)
    example_ids = tf.cast(example_ids, anchor_ids.dtype)
    same = tf.reduce_all(tf.equal(anchor_ids[:, tf.newaxis, :], example_ids[tf.newaxis, :, :]), axis=-1)
    labels = tf.range(tf.shape(anchor_ids)[0], dtype=tf.int32) + tf.cast(label_offset, tf.int32)
    own = tf.equal(tf.range(tf.shape(example_ids)[0], dtype=tf.int32)[tf.newaxis, :], labels[:, tf.newaxis])
    return tf.logical_and(same, tf.logical_not(own))


def contrastive_logits(z1, z2, temperature=0.05, hard_negatives=None, hard_negative_offset=0.0,
                       queue=None, queue_mask=None, label_offset=0, positive_mask=None):
    """Build the logits matrix and labels.

    Args:
        z1: (n, d) anchors. z2: (m, d) positives and in-batch negatives (m >= n; anchor i's
            positive is row `label_offset + i`, e.g. a replica's offset into the global batch).
        hard_negatives: (m, d), a list of (m, d) or None. Supervised SimCSE's contradiction
            sentences; a list gives one block of columns each (e.g. contradictions, then
            neutrals: the paper's "contradiction + neutral").
        hard_negative_offset: float. Added to each anchor's own hard-negative logit (column
            `label_offset + i` of every hard block): log(alpha) for the paper's alpha, or the
            official code's `--hard_negative_weight`. Defaults to `0.0`.
        queue: (q, d) or None. ESimCSE's queued negatives. queue_mask: (q,) bool, filled slots.
        label_offset: int or scalar tensor.
        positive_mask: (n, m) bool or None. In-batch positive columns to drop from each anchor's
            negatives (set to `MASKED_LOGIT`), e.g. `duplicate_mask(...)`. The label column is
            never dropped; hard-negative and queue columns are untouched. `None` (default) or
            all-False leaves the logits unchanged.

    Returns:
        (logits (n, m [+ m per hard block] [+ q]) float32, labels (n,) int32)
    """
    z1 = l2_normalize(tf.cast(z1, tf.float32))
    z2 = l2_normalize(tf.cast(z2, tf.float32))
    n = tf.shape(z1)[0]
    blocks = [tf.matmul(z1, z2, transpose_b=True) / temperature]
    labels = tf.range(n, dtype=tf.int32) + tf.cast(label_offset, tf.int32)
    if positive_mask is not None:
        drop = tf.logical_and(tf.cast(positive_mask, tf.bool),
                              tf.logical_not(tf.cast(tf.one_hot(labels, tf.shape(z2)[0]), tf.bool)))
        blocks[0] = tf.where(drop, tf.constant(MASKED_LOGIT, tf.float32), blocks[0])
    if hard_negatives is not None:
        for block in hard_negatives if isinstance(hard_negatives, (list, tuple)) else [hard_negatives]:
            zh = l2_normalize(tf.cast(block, tf.float32))
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
            qlogits = tf.where(queue_mask[tf.newaxis, :], qlogits, tf.fill(tf.shape(qlogits), MASKED_LOGIT))
        blocks.append(qlogits)
    logits = tf.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return logits, labels


def info_nce(z1, z2, temperature=0.05, **kwargs):
    """Mean InfoNCE loss (cross-entropy against the positive column). See `contrastive_logits`."""
    logits, labels = contrastive_logits(z1, z2, temperature=temperature, **kwargs)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per_example)
