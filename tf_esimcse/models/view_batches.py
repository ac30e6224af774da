"""View batches as the training step feeds them to the encoder: grouped by width, concatenated
along the batch axis, padded and cut into mini-batches.

Each view is a `{"token_ids", "padding_mask"}` dict of shape (rows, width). The plain step
(`ContrastiveModel.embed_views`) embeds each width group of views in one forward pass
(`width_groups`, `concat_views`); the cached step (`tf_esimcse.models.cached_step`) also pads a
group to whole mini-batches (`pad_rows`) and slices them out (`chunk`).
"""
import tensorflow as tf


def width_groups(views):
    """Lists of view indices embedded in one forward pass each: one list when every view has
    the same static width (or a width is unknown), else one per static width, in first-seen order."""
    groups = {}
    for i, view in enumerate(views):
        groups.setdefault(view["token_ids"].shape[1], []).append(i)
    if len(groups) == 1 or None in groups:
        return [list(range(len(views)))]
    return list(groups.values())


def concat_views(views):
    """Concatenate several {token_ids, padding_mask} batches along the batch axis, padding
    them to a common length first (padding changes nothing for the encoder)."""
    if len(views) == 1:
        return views[0]
    length = tf.reduce_max([tf.shape(v["token_ids"])[1] for v in views])
    out = {}
    for key in ("token_ids", "padding_mask"):
        parts = [tf.pad(v[key], [[0, 0], [0, length - tf.shape(v[key])[1]]]) for v in views]
        out[key] = tf.concat(parts, axis=0)
    return out


def rows_of(batch):
    """The number of rows of a view batch: a Python int when static, else a scalar tensor."""
    static = batch["token_ids"].shape[0]
    return static if static is not None else tf.shape(batch["token_ids"])[0]


def pad_rows(batch, rows, padded_rows):
    """Pad a {token_ids, padding_mask} batch of `rows` rows to `padded_rows` with dummy rows
    (one real token each, so that no row is empty)."""
    extra = padded_rows - rows
    width = tf.shape(batch["token_ids"])[1]
    ids = tf.concat([batch["token_ids"], tf.zeros([extra, width], batch["token_ids"].dtype)], axis=0)
    dummy_mask = tf.cast(tf.one_hot(tf.zeros([extra], tf.int32), width), batch["padding_mask"].dtype)
    mask = tf.concat([batch["padding_mask"], dummy_mask], axis=0)
    return {"token_ids": ids, "padding_mask": mask}


def chunk(batch, start, size):
    """Rows `[start, start + size)` of every tensor of `batch`."""
    return {k: tf.slice(v, tf.stack([start, 0]), tf.stack([size, tf.shape(v)[1]])) for k, v in batch.items()}
