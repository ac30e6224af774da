"""Helpers for exact training under `tf.distribute`: gathered negatives, global clipping, logs.

Every function works unchanged without a strategy (one replica), so the training step calls them
unconditionally.
"""
import tensorflow as tf

from tf_esimcse import private_apis


def num_replicas():
    """Replicas in sync in the current replica context (1 outside any strategy)."""
    ctx = tf.distribute.get_replica_context()
    return ctx.num_replicas_in_sync if ctx is not None else 1


def gather_replicas(tensor):
    """All-gather `tensor` over the replicas in sync (concatenated in replica order; the gather's
    gradient hands each replica its slice of the summed upstream gradient); identity on one."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensor
    return ctx.all_gather(tensor, axis=0)


def replica_offset(local_batch):
    """This replica's first row in a gathered batch: `replica_id * local_batch` (0 on one)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return 0
    return tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.cast(local_batch, tf.int32)


def scale_for_replicas(loss):
    """The optimizer sums replica gradients: scale each replica's loss by 1 / replicas."""
    replicas = num_replicas()
    return loss / replicas if replicas > 1 else loss


def _scale(gradient, factor):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):  # embedding gradients
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def clip_global_norm(gradients, max_norm):
    """Clip by the norm of the GLOBAL gradient (summed over replicas), as one device would.

    Keras' own `global_clipnorm` clips each replica's partial gradient before the optimizer sums
    them; here the replicas' gradients are summed first, clipped, and handed back divided by the
    replica count so that the optimizer's sum is the clipped global gradient. `max_norm=None`
    returns the gradients unchanged.
    """
    if max_norm is None:
        return gradients
    # Dense first: an embedding's IndexedSlices repeat an index once per occurrence of a token
    # (and once per replica after the all-reduce), so their `values` norm is not the gradient's.
    gradients = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    if replicas > 1:
        present = [i for i, g in enumerate(gradients) if g is not None]  # all_reduce takes no None
        summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [gradients[i] for i in present])
        gradients = list(gradients)
        for i, g in zip(present, summed):
            gradients[i] = g
    gradients, _ = tf.clip_by_global_norm(gradients, max_norm)
    if replicas > 1:
        gradients = [_scale(g, 1.0 / replicas) for g in gradients]
    return gradients


def reducible_logs(logs):
    """Keras' TF trainer reduces step outputs across workers with `reduce(MEAN, axis=0)`, which
    rejects scalars under MultiWorkerMirroredStrategy: give them a leading axis of 1 there."""
    if not private_apis.in_multi_worker_mode():
        return logs
    return {k: tf.reshape(tf.cast(v, tf.float32), [1]) for k, v in logs.items()}
