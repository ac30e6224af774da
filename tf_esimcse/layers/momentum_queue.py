"""`MomentumQueue`: the fixed-size FIFO of momentum-encoder embeddings used by ESimCSE."""
import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export


@tf_esimcse_export("layers.MomentumQueue")
class MomentumQueue(keras.layers.Layer):
    """A fixed-size first-in-first-out queue of sentence embeddings.

    ESimCSE (Wu et al., 2021) adds the embeddings of the sentences of the previous few batches,
    produced by a momentum encoder, as extra negative columns of the contrastive loss. This layer
    stores them. The queue lives in three non-trainable variables, so it is saved with the model
    (`tf.train.Checkpoint` and Keras `.weights.h5` files) and is restored together with it:

    - `queue`: float32 `[size, dim]`, the stored embeddings;
    - `pointer`: int64 scalar, the next slot to write (the oldest slot once the queue is full);
    - `count`: int64 scalar, the number of filled slots, capped at `size`.

    `enqueue(keys)` writes a batch of embeddings, replacing the oldest ones first;
    `negatives()` returns the stored embeddings with a mask that is `True` only for filled
    slots, so slots never written (at the start of training, or after `reset()`) are never used
    as negatives. The official code empties the queue at the start of every epoch: call `reset()`
    from a callback's `on_epoch_begin` to do the same.

    The queue is a ring buffer and `negatives()` returns its rows in storage (slot) order, not
    by age: while the queue is filling, the filled slots are `0 .. count - 1` from oldest to
    newest; once it is full, the oldest row is at `pointer` and age increases cyclically from
    there. The order does not matter to the contrastive loss, which only uses the rows as
    additional negative columns.

    The queue always stores float32, also under a mixed-precision policy (its variable is not
    autocast); cast the returned embeddings to the dtype of the logits if needed.

    Distributed training: the variables are created with aggregation `"only_first_replica"`, so
    `enqueue()` and `reset()` may be called inside a replica context (`strategy.run`, the body of
    `train_step`), where the value computed by the first replica is written to all of them. The
    caller must give every replica the same keys (e.g. the all-gathered batch); the official
    code, which runs one process per GPU, keeps a separate queue of local embeddings per process.

    Args:
        size: int. The number of embeddings the queue holds. The paper uses 160 (2.5 times the
            batch of 64) for BERT-base, BERT-large and RoBERTa-base, and 128 for RoBERTa-large.
            Defaults to `160`.
        dim: int or `None`. The embedding size. When given, the variables are created at
            construction; otherwise they are created by `build()`, or on the first `enqueue()` or
            call, from the last dimension of the input. Defaults to `None`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`, including `name` and
            `dtype`.

    Call arguments:
        inputs: optional tensor of shape `[batch, dim]`. Only used to build the layer (its last
            dimension sets `dim`); it is not enqueued. Defaults to `None`.

    Returns:
        The tuple `(embeddings, mask)` of `negatives()`: a float32 tensor of shape `[size, dim]`
        and a boolean tensor of shape `[size]` that is `True` for filled slots.

    Examples:
    ```python
    queue = tf_esimcse.layers.MomentumQueue(size=4, dim=2)
    queue.enqueue(tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    embeddings, mask = queue.negatives()  # mask: [True, True, True, False]
    queue.enqueue(tf.constant([[2.0, 0.0], [0.0, 2.0]]))  # replaces the oldest, [1.0, 0.0]
    float(queue.fill)  # 1.0
    queue.reset()  # at the start of an epoch
    ```
    """

    def __init__(self, size=160, dim=None, **kwargs):
        super().__init__(**kwargs)

        # === Config ===
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"`size` must be a positive integer. Received: size={size!r}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"`dim` must be a positive integer or None. Received: dim={dim!r}")
        self.size = size
        self.dim = dim

        # === Variables ===
        self.queue = None
        self.pointer = None
        self.count = None
        if dim is not None:
            self.build((None, dim))

    def build(self, input_shape=None):
        if self.built:
            return
        dim = None
        if input_shape is not None and len(input_shape) > 0:
            dim = input_shape[-1]
        if dim is None:
            dim = self.dim
        if dim is None:
            raise ValueError(
                "Cannot build `MomentumQueue` without an embedding size: pass `dim` or build it "
                f"with a shape whose last dimension is known. Received: input_shape={input_shape}"
            )
        if self.dim is not None and int(dim) != self.dim:
            raise ValueError(
                f"The last dimension of the input ({dim}) does not match `dim={self.dim}` of "
                f"this MomentumQueue."
            )
        self.dim = int(dim)
        self.queue = self.add_weight(
            name="queue",
            shape=(self.size, self.dim),
            dtype="float32",
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )
        self.pointer = self.add_weight(
            name="pointer",
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.count = self.add_weight(
            name="count",
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.built = True

    def _ensure_built(self, keys):
        if not self.built:
            self.build(keys.shape)

    def enqueue(self, keys):
        """Write a batch of embeddings into the queue, replacing the oldest first.

        Works eagerly, inside `tf.function` and inside a replica context. If the batch is larger
        than the queue, only its last `size` rows are kept, exactly as if the rows had been
        written one after the other.

        Args:
            keys: float tensor of shape `[batch, dim]`; cast to float32. Gradients do not flow
                through the queue.

        Returns:
            The new `count`, an int64 scalar tensor.
        """
        keys = tf.stop_gradient(tf.cast(tf.convert_to_tensor(keys), tf.float32))
        if keys.shape.rank is not None and keys.shape.rank != 2:
            raise ValueError(f"`keys` must have shape [batch, dim]. Received: shape={keys.shape}")
        self._ensure_built(keys)
        if keys.shape[-1] is not None and keys.shape[-1] != self.dim:
            raise ValueError(
                f"`keys` must have last dimension dim={self.dim}. Received: shape={keys.shape}"
            )
        size = tf.constant(self.size, tf.int64)
        batch = tf.shape(keys, out_type=tf.int64)[0]
        # Rows that would be overwritten within this same batch are dropped up front.
        kept = keys[-self.size :]
        num_kept = tf.shape(kept, out_type=tf.int64)[0]
        pointer = tf.convert_to_tensor(self.pointer)
        start = pointer + batch - num_kept
        slots = tf.math.floormod(start + tf.range(num_kept, dtype=tf.int64), size)
        new_queue = tf.tensor_scatter_nd_update(
            tf.convert_to_tensor(self.queue), slots[:, None], kept
        )
        new_count = tf.minimum(tf.convert_to_tensor(self.count) + batch, size)
        self.queue.assign(new_queue)
        self.pointer.assign(tf.math.floormod(pointer + batch, size))
        self.count.assign(new_count)
        return new_count

    def negatives(self):
        """The stored embeddings and which of them are filled.

        Returns:
            A tuple `(embeddings, mask)`: float32 `[size, dim]` rows in storage (slot) order, and
            a boolean `[size]` mask, `True` only for slots that hold an enqueued embedding.
        """
        if not self.built:
            raise ValueError(
                "This MomentumQueue is not built yet: pass `dim`, call `build()` or `enqueue()` "
                "first."
            )
        embeddings = tf.convert_to_tensor(self.queue)
        mask = tf.range(self.size, dtype=tf.int64) < tf.convert_to_tensor(self.count)
        return embeddings, mask

    def reset(self):
        """Empty the queue (count and pointer to 0, embeddings to zeros).

        ESimCSE empties the queue at the start of each epoch.
        """
        if not self.built:
            return
        self.queue.assign(tf.zeros((self.size, self.dim), tf.float32))
        self.pointer.assign(tf.constant(0, tf.int64))
        self.count.assign(tf.constant(0, tf.int64))

    def reset_if(self, condition):
        """`reset()` where the scalar bool tensor `condition` is True, else nothing; written with
        `tf.where` (no control flow), so it runs the same eagerly, in graph mode, under XLA and
        in a `tf.distribute` replica context."""
        if not self.built:
            return
        condition = tf.convert_to_tensor(condition, tf.bool)
        self.queue.assign(tf.where(condition, tf.zeros((self.size, self.dim), tf.float32),
                                   tf.convert_to_tensor(self.queue)))
        self.pointer.assign(tf.where(condition, tf.constant(0, tf.int64), tf.convert_to_tensor(self.pointer)))
        self.count.assign(tf.where(condition, tf.constant(0, tf.int64), tf.convert_to_tensor(self.count)))

    @property
    def fill(self):
        """The filled fraction `count / size`, a float32 scalar tensor (for TensorBoard)."""
        if not self.built:
            return tf.constant(0.0, tf.float32)
        return tf.cast(tf.convert_to_tensor(self.count), tf.float32) / float(self.size)

    def call(self, inputs=None):
        return self.negatives()

    def compute_output_shape(self, input_shape=None):
        return (self.size, self.dim), (self.size,)

    def compute_output_spec(self, inputs=None):
        return (
            keras.KerasTensor((self.size, self.dim), dtype="float32"),
            keras.KerasTensor((self.size,), dtype="bool"),
        )

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "dim": self.dim})
        return config
