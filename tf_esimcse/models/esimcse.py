"""ESimCSE (Wu et al., 2021): SimCSE + word-repetition positives + a momentum-contrast queue.

One training step (`ESimCSE.train_step`):

1. EMA update of the momentum backbone from the online backbone's current weights (those from
   before this step's optimizer update), theta_m <- m * theta_m + (1 - m) * theta.
2. Momentum forward of the ORIGINAL sentences: momentum backbone with dropout off, no
   gradients, then the online model's live pooler in training mode (its MLP head has no EMA
   copy, as in the official code). These are this step's keys.
3. Online forward of both views in one batch (anchor = original, positive = word-repeated),
   dropout on; logits [cos(z1, z2) | cos(z1, queue)] / temperature, cross-entropy against the
   positive. The queue holds the keys of earlier steps; on step 1 it is empty (plain SimCSE).
4. Optimizer update; then the keys are enqueued (the oldest are dropped first).

Deliberate differences from the official code (caskcsg/sentemb, ESimCSE/): the momentum
encoder starts as a copy of the pretrained encoder (MoCo's intent; the official copy is taken
before the checkpoint loads, so it starts random), and under `tf.distribute` the queue holds
the keys of the global batch, identical on every replica (the official code keeps one queue of
local keys per process).
"""
import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.momentum_queue import MomentumQueue
from tf_esimcse.models.simcse import SimCSE, gather_replicas, split_views
from tf_esimcse.momentum import clone_frozen, ema_update


class QueueResetCallback(keras.callbacks.Callback):
    """Empties the momentum queue at the start of each data epoch, as the official code does.

    Args:
        queue: the `MomentumQueue`.
        steps_per_epoch: int or None. `None`: reset at each Keras epoch. An int: reset whenever
            the optimizer's step count is a multiple of it (for runs whose Keras "epochs" are
            shorter chunks of one pass over the data, as the recipes' resumable runs are).
    """

    def __init__(self, queue, steps_per_epoch=None):
        super().__init__()
        self.queue = queue
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if self.steps_per_epoch is None:
            self.queue.reset()

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps_per_epoch is not None:
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            if step % self.steps_per_epoch == 0:
                self.queue.reset()


@tf_esimcse_export("models.ESimCSE")
class ESimCSE(SimCSE):
    """ESimCSE training model around a `SentenceEncoder`.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` (paper: `pooler_type="cls", mlp_only_train=True`).
        temperature: float. Defaults to `0.05`.
        queue_size: int. Number of queued negatives; 2.5 x batch in the paper. Defaults to `160`.
        momentum: float. EMA coefficient m of the momentum encoder. Defaults to `0.995`.
        use_momentum_queue: bool. `False` turns momentum contrast off (ablation: repetition only).
        reset_queue_each_epoch: bool. Empty the queue at each epoch start (official behaviour),
            done by a callback that `fit` adds. Defaults to `True`.

    Inputs to `fit`: `{"anchor": view, "positive": view}` int32 batches, the positive being the
    word-repeated anchor (see `tf_esimcse.data.pipeline.esimcse_dataset`). A plain view
    `{"token_ids", "padding_mask"}` trains with dropout-only positives (ablation: no repetition).

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls", mlp_only_train=True)
    model = ESimCSE(encoder, queue_size=160, momentum=0.995)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0))
    model.fit(esimcse_dataset(sentences, encoder.preprocessor), steps_per_epoch=100)
    ```
    """

    def __init__(self, encoder, temperature=0.05, queue_size=160, momentum=0.995, use_momentum_queue=True,
                 reset_queue_each_epoch=True, **kwargs):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}.")
        if isinstance(queue_size, bool) or int(queue_size) != queue_size or int(queue_size) < 1:
            raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}.")
        super().__init__(encoder, temperature=temperature, **kwargs)
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.use_momentum_queue = bool(use_momentum_queue)
        self.reset_queue_each_epoch = bool(reset_queue_each_epoch)
        self.momentum_backbone = None
        self.queue = None
        # Set by code whose Keras epochs are not data epochs (see QueueResetCallback).
        self.data_epoch_steps = None
        if self.use_momentum_queue:
            # A frozen copy of the (pretrained) backbone: dropout off, never in the tape.
            self.momentum_backbone = clone_frozen(encoder.backbone)
            self.queue = MomentumQueue(self.queue_size, dim=encoder.pooler.compute_output_shape(
                {"sequence_output": (None, None, encoder.hidden_dim)})[-1], name="momentum_queue")
        self.built = True

    def step_logs(self):
        logs = super().step_logs()
        if self.queue is not None:
            logs["queue_fill"] = self.queue.fill
        return logs

    def momentum_keys(self, view):
        """Momentum embeddings of `view`: EMA backbone (dropout off) + the live pooler head."""
        outputs = self.encoder.backbone_outputs(view, training=False, backbone=self.momentum_backbone)
        keys = self.encoder.pooler(dict(outputs, padding_mask=view["padding_mask"]), training=True)
        return tf.stop_gradient(keys)

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not self.use_momentum_queue:
            return super().train_step(data)
        anchor = split_views(x)[0]
        # 1-2: EMA update with the pre-update online weights, then this step's keys.
        ema_update(self.momentum_backbone.weights, self.encoder.backbone.weights, self.momentum)
        # Under a strategy every replica enqueues the keys of the global batch (identical queues;
        # gathered even with cross_replica_negatives=False, since the queue is one shared state).
        keys = gather_replicas(self.momentum_keys(anchor))
        negatives, filled = self.queue.negatives()
        # 3: online views and the loss against the queue as it was before this batch.
        with tf.GradientTape() as tape:
            embeddings = self.embed_views(x, training=True)
            loss = self.compute_contrastive_loss(embeddings, extra_negatives=negatives, extra_mask=filled)
            scaled = self.scale_for_replicas(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(self.clip_gradients(gradients), self.trainable_variables)
        # 4: enqueue after the loss.
        self.queue.enqueue(keys)
        self.loss_tracker.update_state(loss)
        return self._logs()

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        if self.queue is not None and self.reset_queue_each_epoch:
            callbacks.append(QueueResetCallback(self.queue, steps_per_epoch=self.data_epoch_steps))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("hard_negative_weight", None)
        config.update({
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "use_momentum_queue": self.use_momentum_queue,
            "reset_queue_each_epoch": self.reset_queue_each_epoch,
        })
        return config
