"""Unsupervised SimCSE (Gao et al., 2021): InfoNCE between two views, in-batch negatives.

Each sentence is encoded twice in one forward pass of a 2N batch; dropout is sampled per row, so
the two copies get independent masks and form the positive pair; the other sentences of the
(global) batch are the negatives. Batches are either one view `{"token_ids", "padding_mask"}`
(the sentence twice, dropout being the only augmentation) or `{"anchor", "positive"}` views (any
augmentation made in tf.data, e.g. ESimCSE's word repetition or a crop).
"""
import tensorflow as tf

from tf_esimcse import losses
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.distribution import gather_replicas, num_replicas, replica_offset
from tf_esimcse.objectives.objective import Objective, named_views


@tf_esimcse_export("objectives.SimCSEObjective")
class SimCSEObjective(Objective):
    """InfoNCE over `[cos(z1, z2) | extra negatives] / temperature` against the diagonal.

    Args:
        temperature: float. Softmax temperature. Defaults to `0.05`.
        cross_replica_negatives: bool. Under a `tf.distribute` strategy, all-gather the positives
            (and hard negatives) of every replica, so that negatives span the global batch as on
            one device. Each replica keeps its own anchors; its labels are offset by
            `replica_id * local_batch`. Defaults to `True`.
        loss_weights: see `Objective`.

    Returns (from `loss_terms`): `{"contrastive": loss}`.
    """

    def __init__(self, temperature=0.05, cross_replica_negatives=True, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        self.temperature = float(temperature)
        self.cross_replica_negatives = bool(cross_replica_negatives)

    def views(self, x):
        return named_views(x, optional=())

    def contrastive_loss(self, z1, z2, hard_negatives=None, hard_negative_offset=0.0, queue=None, queue_mask=None):
        """InfoNCE of anchors `z1` against the (gathered) positives `z2`, optional hard negatives
        (gathered too) whose own column gets `hard_negative_offset` added, and queued negatives."""
        offset = 0
        if self.cross_replica_negatives and num_replicas() > 1:
            z2 = gather_replicas(z2)
            if hard_negatives is not None:
                hard_negatives = gather_replicas(hard_negatives)
            offset = replica_offset(tf.shape(z1)[0])
        return losses.info_nce(
            z1, z2, temperature=self.temperature, hard_negatives=hard_negatives,
            hard_negative_offset=hard_negative_offset, queue=queue, queue_mask=queue_mask, label_offset=offset,
        )

    def loss_terms(self, encoder, x, embeddings, context, training):
        return {"contrastive": self.contrastive_loss(embeddings[0], embeddings[1])}

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "cross_replica_negatives": self.cross_replica_negatives})
        return config
