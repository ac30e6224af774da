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
"""
import math

import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.distribution import gather_replicas
from tf_esimcse.layers.momentum_queue import MomentumQueue
from tf_esimcse.momentum import clone_frozen, ema_update
from tf_esimcse.objectives.simcse import SimCSEObjective


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
        self.momentum_backbone = clone_frozen(encoder.backbone)
        dim = encoder.pooler.compute_output_shape({"sequence_output": (None, None, encoder.hidden_dim)})[-1]
        self.queue = MomentumQueue(self.queue_size, dim=dim, name="momentum_queue")

    def momentum_keys(self, encoder, view):
        """Momentum embeddings of `view`: EMA backbone (dropout off) + the live pooler head."""
        outputs = encoder.backbone_outputs(view, training=False, backbone=self.momentum_backbone)
        keys = encoder.pooler(dict(outputs, padding_mask=view["padding_mask"]), training=True)
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
