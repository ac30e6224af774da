"""ESimCSE (Wu et al., 2021): SimCSE + word-repetition positives + a momentum-contrast queue.

The hooks of one training step:

1. `before_step` (outside the tape): at the first step of a data epoch the queue is emptied (the
   official code builds a new queue each epoch); the momentum backbone takes its EMA step from the
   online backbone's current weights (those from before this step's optimizer update),
   theta_m <- m * theta_m + (1 - m) * theta; the momentum keys of the ORIGINAL sentences are
   computed (momentum backbone with dropout off, no gradients, then the online model's live
   pooler in training mode: its MLP head has no EMA copy, as in the official code); the queue's
   current contents are read.
2. `loss_terms` (under the tape): logits `[cos(z1, z2) | cos(z1, queue)] / temperature` with
   the anchor (original) and positive (word-repeated) views, cross-entropy against the positive.
   The queue holds the keys of earlier steps; on the first step it is empty (plain SimCSE).
3. `after_step` (after the optimizer update): the keys are enqueued (the oldest dropped first).

Deliberate differences from the official code (caskcsg/sentemb, ESimCSE/): the momentum encoder
starts as a copy of the pretrained encoder (MoCo's intent; the official copy is taken before the
checkpoint loads, so it starts random), and under `tf.distribute` the queue holds the keys of the
global batch, identical on every replica (the official code keeps one queue of local keys per
process).

The momentum backbone is `SentenceEncoder.copy_backbone()` (frozen); `ema_update` (below) moves
it towards the online backbone. In a Keras `train_step`, calling `ema_update` either before
`optimizer.apply` or at the very start of the step reproduces the official order (both read the
same online weights); pass `.weights`, not `.trainable_variables` (empty for a frozen copy): both
models list them in the same order, and Keras `weights` excludes the dropout seed states.
"""
import math

import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.distribution import gather_replicas
from tf_esimcse.layers.momentum_queue import MomentumQueue
from tf_esimcse.objectives.simcse import SimCSEObjective


def _as_list(variables, name):
    if isinstance(variables, (tf.Variable, keras.Variable)):
        raise ValueError(f"`{name}` must be a list of variables, not a single variable.")
    return list(variables)


def _check_momentum(momentum):
    if isinstance(momentum, (int, float)) and not isinstance(momentum, bool):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1]. Received: momentum={momentum!r}")


def ema_update(target_variables, source_variables, momentum):
    """Exponential moving average of one list of variables towards another, in place.

    For each pair, `target <- momentum * target + (1 - momentum) * source`. `momentum = 1` keeps
    the target, `momentum = 0` copies the source. Works eagerly, inside `tf.function`, and under a
    `tf.distribute` strategy both in the cross-replica context and in a replica context (the body
    of `train_step` or `strategy.run`): as the Keras optimizers do, it enters the cross-replica
    context and updates each replica's copy of a mirrored target from that replica's copy of its
    source, so mirrored targets stay identical across replicas whatever their `aggregation`.

    The update is not differentiated: call it outside any `tf.GradientTape`. Do not call it inside
    a layer's `call` under a mixed-precision policy (Keras autocasts variables there).

    Args:
        target_variables: list of float variables, the momentum (EMA) copy. Updated in place.
        source_variables: list of variables of the same length and shapes, the online weights,
            in the same order.
        momentum: float in `[0, 1]`, or a scalar tensor (e.g. a schedule). ESimCSE uses 0.995.

    Returns:
        None.

    Raises:
        ValueError: if the lists differ in length, a pair differs in shape, a target is not a
            floating-point variable, or a Python `momentum` is outside `[0, 1]`.
    """
    targets = _as_list(target_variables, "target_variables")
    sources = _as_list(source_variables, "source_variables")
    if len(targets) != len(sources):
        raise ValueError(
            "`target_variables` and `source_variables` must have the same length. "
            f"Received: {len(targets)} targets and {len(sources)} sources."
        )
    _check_momentum(momentum)
    for i, (target, source) in enumerate(zip(targets, sources)):
        if tuple(target.shape) != tuple(source.shape):
            raise ValueError(
                f"Shape mismatch at index {i}: target {_describe(target)} has shape "
                f"{tuple(target.shape)} but source {_describe(source)} has shape "
                f"{tuple(source.shape)}."
            )
        if not tf.as_dtype(_storage_dtype(target)).is_floating:
            raise ValueError(
                f"Target {_describe(target)} at index {i} has dtype {_storage_dtype(target)}; "
                "only floating-point variables can be averaged."
            )
    targets = [_tf_variable(v) for v in targets]
    sources = [_tf_variable(v) for v in sources]
    # Like the Keras optimizers: in a replica context, step into the cross-replica context and
    # update each replica's copy of every target from that replica's copy of its source.
    owner = _owning_strategy(targets)
    if owner is not None and not tf.distribute.has_strategy():
        # Mirrored targets updated outside `strategy.scope()`: enter their strategy.
        with owner.scope():
            _ema_update_in_context(targets, sources, momentum)
    else:
        _ema_update_in_context(targets, sources, momentum)


def _owning_strategy(variables):
    for variable in variables:
        if isinstance(variable, tf.distribute.DistributedValues):
            return getattr(variable, "distribute_strategy", None)
    return None


def _ema_update_in_context(targets, sources, momentum):
    if tf.distribute.in_cross_replica_context():
        _ema_update_cross_replica(tf.distribute.get_strategy(), targets, sources, momentum)
    else:
        tf.distribute.get_replica_context().merge_call(
            _ema_update_cross_replica, args=(targets, sources, momentum)
        )


def _ema_update_cross_replica(strategy, targets, sources, momentum):
    def update(target, source, momentum):
        m = tf.cast(momentum, target.dtype)
        s = tf.cast(tf.stop_gradient(tf.convert_to_tensor(source)), target.dtype)
        return target.assign(m * tf.convert_to_tensor(target) + (1.0 - m) * s)

    for target, source in zip(targets, sources):
        if isinstance(target, tf.distribute.DistributedValues):
            strategy.extended.update(target, update, args=(source, momentum), group=False)
        else:
            update(target, source, momentum)


def _tf_variable(variable):
    # The backing tf.Variable of a Keras variable (as the Keras TF optimizer does), so that
    # tf.distribute sees the mirrored variable itself.
    if isinstance(variable, keras.Variable):
        return variable.value
    return variable


def _storage_dtype(variable):
    # Keras variables report the autocast dtype inside an autocast scope; use the stored one.
    if isinstance(variable, keras.Variable):
        return variable.value.dtype
    return variable.dtype


def _describe(variable):
    return repr(getattr(variable, "path", None) or getattr(variable, "name", "<variable>"))


@tf_esimcse_export("objectives.ESimCSEObjective")
class ESimCSEObjective(SimCSEObjective):
    """SimCSE's InfoNCE with extra negatives from a queue of momentum-encoder keys.

    Args:
        temperature: float. Defaults to `0.05`.
        queue_size: int. Number of queued negatives; 2.5 x batch in the paper. Defaults to `160`.
        momentum: float. EMA coefficient m of the momentum encoder. Defaults to `0.995`.
        use_momentum_queue: bool. `False` turns momentum contrast off (ablation: repetition only;
            then this is `SimCSEObjective`). Defaults to `True`.
        reset_queue_each_epoch: bool. Empty the queue at the first step of each data epoch
            (official behaviour; the model's `steps_per_data_epoch` says when that is).
            Defaults to `True`.
        cross_replica_negatives: bool. See `SimCSEObjective`.
        mask_duplicates: bool. See `SimCSEObjective` (queued negatives are never masked).
            Defaults to `False`.
    """

    def __init__(self, temperature=0.05, queue_size=160, momentum=0.995, use_momentum_queue=True,
                 reset_queue_each_epoch=True, **kwargs):
        if not (isinstance(momentum, (int, float)) and math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}.")
        if isinstance(queue_size, bool) or int(queue_size) != queue_size or int(queue_size) < 1:
            raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}.")
        super().__init__(temperature=temperature, **kwargs)
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.use_momentum_queue = bool(use_momentum_queue)
        self.reset_queue_each_epoch = bool(reset_queue_each_epoch)
        self.momentum_backbone = None
        self.queue = None

    def setup(self, encoder):
        super().setup(encoder)
        if not self.use_momentum_queue:
            return
        # A frozen copy of the (pretrained) backbone: dropout off, never in the tape.
        self.momentum_backbone = encoder.copy_backbone(trainable=False)
        self.queue = MomentumQueue(self.queue_size, dim=encoder.embedding_dim, name="momentum_queue")

    def momentum_keys(self, encoder, view):
        """Momentum embeddings of `view`: EMA backbone (dropout off) + the live pooler head."""
        keys = encoder.embed(view, training=False, backbone=self.momentum_backbone, pooler_training=True,
                             normalize=False)
        return tf.stop_gradient(keys)

    def before_step(self, encoder, x, new_data_epoch):
        if not self.use_momentum_queue:
            return {}
        if self.reset_queue_each_epoch:
            self.queue.reset_if(new_data_epoch)
        ema_update(self.momentum_backbone.weights, encoder.backbone.weights, self.momentum)
        # Under a strategy every replica enqueues the keys of the global batch (identical queues;
        # gathered even with cross_replica_negatives=False, since the queue is one shared state).
        keys = gather_replicas(self.momentum_keys(encoder, self.views(x)[0]))
        negatives, filled = self.queue.negatives()
        return {"keys": keys, "negatives": negatives, "filled": filled}

    def loss_terms(self, encoder, x, embeddings, context, training):
        if not context:  # no queue (ablation, or test_step): SimCSE on the views
            return super().loss_terms(encoder, x, embeddings, context, training)
        positives = self.positives(encoder, x, embeddings, training)
        return {"contrastive": self.contrastive_loss(embeddings[0], positives, queue=context["negatives"],
                                                     queue_mask=context["filled"],
                                                     anchor_ids=self.anchor_token_ids(x))}

    def after_step(self, context):
        if context:
            self.queue.enqueue(context["keys"])

    def step_logs(self):
        return {"queue_fill": self.queue.fill} if self.queue is not None else {}

    def get_config(self):
        config = super().get_config()
        config.update({
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "use_momentum_queue": self.use_momentum_queue,
            "reset_queue_each_epoch": self.reset_queue_each_epoch,
        })
        return config
