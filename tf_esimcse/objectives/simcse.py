"""Unsupervised SimCSE (Gao et al., 2021): InfoNCE between two views, in-batch negatives.

Each sentence is encoded twice in one forward pass of a 2N batch; dropout is sampled per row, so
the two copies get independent masks and form the positive pair; the other sentences of the
(global) batch are the negatives. Batches are either one view `{"token_ids", "padding_mask"}`
(the sentence twice, dropout being the only augmentation) or `{"anchor", "positive"}` views (any
augmentation made in tf.data, e.g. ESimCSE's word repetition or a crop).

With `mask_duplicates=True` (not in the official code), a sentence that appears more than once in
the global batch (identical anchor token ids) does not count its copies' positives as negatives.
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
        same_dropout_mask: bool. SimCSE's "fixed 0.1" ablation: both copies of a sentence get
            the same dropout mask, so the positive is the anchor itself (it is encoded once and
            used twice). Only for one-view batches. Defaults to `False`.
        two_encoders: bool. SimCSE's "two encoders" ablation: positives go through a second
            backbone, a trainable copy of the pretrained one made at `setup` (the pooler head is
            shared). Defaults to `False` (one encoder, as the method).
        mask_duplicates: bool. Drop, from anchor i's negatives, the in-batch positive of every other
            example j whose anchor view has the same token ids as i's (row for row, padding
            included): a duplicate sentence's positive is a false negative. Compared over the
            global batch (the anchors' ids are all-gathered as the positives are); hard-negative
            and queue columns are untouched. Defaults to `False` (the official code keeps them).
        loss_weights: see `Objective`.

    Returns (from `loss_terms`): `{"contrastive": loss}`.
    """

    #: The loss of the gathered vectors that `contrastive_loss` returns (`losses.info_nce`'s
    #: arguments); `MatryoshkaObjective` sets it to its sum over embedding prefixes.
    contrastive_fn = staticmethod(losses.info_nce)

    def __init__(self, temperature=0.05, cross_replica_negatives=True, same_dropout_mask=False, two_encoders=False,
                 mask_duplicates=False, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        self.temperature = float(temperature)
        self.cross_replica_negatives = bool(cross_replica_negatives)
        self.same_dropout_mask = bool(same_dropout_mask)
        self.two_encoders = bool(two_encoders)
        self.mask_duplicates = bool(mask_duplicates)
        if self.same_dropout_mask and self.two_encoders:
            raise ValueError("same_dropout_mask and two_encoders exclude each other (two encoders share no mask).")
        self.positive_backbone = None

    def setup(self, encoder):
        if self.two_encoders:
            self.positive_backbone = encoder.copy_backbone(trainable=True)

    def views(self, x):
        views = named_views(x, optional=())
        if self.same_dropout_mask:
            if "token_ids" not in x:
                raise ValueError("same_dropout_mask needs one-view batches ({'token_ids', 'padding_mask'}); "
                                 f"got views {sorted(x)}.")
            return views[:1]
        if self.two_encoders:
            return views[:1]  # the positives go through the second encoder in `positives`
        return views

    def positives(self, encoder, x, embeddings, training):
        """The positives' embeddings: the second view's, the anchors themselves (same mask), or
        the second encoder's embedding of the second view."""
        if self.same_dropout_mask:
            return embeddings[0]
        if self.two_encoders:
            return encoder.embed(named_views(x, optional=())[1], training=training, backbone=self.positive_backbone)
        return embeddings[1]

    def anchor_token_ids(self, x):
        """The token ids of batch `x`'s anchor view (the first of `views`), or `None` when
        `mask_duplicates` is off: what `contrastive_loss` compares to find duplicates."""
        if not self.mask_duplicates:
            return None
        return self.views(x)[0]["token_ids"]

    def contrastive_loss(self, z1, z2, hard_negatives=None, hard_negative_offset=0.0, queue=None, queue_mask=None,
                         anchor_ids=None):
        """InfoNCE of anchors `z1` against the (gathered) positives `z2`, optional hard negatives
        (gathered too) whose own column gets `hard_negative_offset` added, and queued negatives.
        With `mask_duplicates`, `anchor_ids` (the local anchors' token ids, `anchor_token_ids(x)`)
        are gathered like `z2` and every other example with the same ids loses its positive
        column from the anchor's negatives."""
        if self.mask_duplicates and anchor_ids is None:
            raise ValueError("mask_duplicates=True needs the anchors' token ids: pass "
                             "anchor_ids=self.anchor_token_ids(x) to contrastive_loss.")
        offset = 0
        example_ids = anchor_ids
        if self.cross_replica_negatives and num_replicas() > 1:
            z2 = gather_replicas(z2)
            if isinstance(hard_negatives, (list, tuple)):
                hard_negatives = [gather_replicas(block) for block in hard_negatives]
            elif hard_negatives is not None:
                hard_negatives = gather_replicas(hard_negatives)
            if self.mask_duplicates:
                example_ids = gather_replicas(anchor_ids)
            offset = replica_offset(tf.shape(z1)[0])
        kwargs = {}
        if self.mask_duplicates:
            kwargs["positive_mask"] = losses.duplicate_mask(anchor_ids, example_ids, label_offset=offset)
        return self.contrastive_fn(
            z1, z2, temperature=self.temperature, hard_negatives=hard_negatives,
            hard_negative_offset=hard_negative_offset, queue=queue, queue_mask=queue_mask, label_offset=offset,
            **kwargs,
        )

    def loss_terms(self, encoder, x, embeddings, context, training):
        return {"contrastive": self.contrastive_loss(embeddings[0], self.positives(encoder, x, embeddings, training),
                                                     anchor_ids=self.anchor_token_ids(x))}

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "cross_replica_negatives": self.cross_replica_negatives,
                       "same_dropout_mask": self.same_dropout_mask, "two_encoders": self.two_encoders,
                       "mask_duplicates": self.mask_duplicates})
        return config
