"""Supervised SimCSE (Gao et al., 2021): NLI (premise, entailment, contradiction) triplets.

Logits are `[cos(h_i, h_j^+) | cos(h_i, h_j^-)] / temperature` over the global batch: the
entailments are the positives, every contradiction is a negative for every anchor, and each
anchor's own contradiction is its hard negative. The paper weights it with alpha (Eq. 6: the
anchor's own hard-negative term is multiplied by alpha inside the softmax, i.e. log(alpha) added
to that logit); the official code (`simcse/models.py`, `--hard_negative_weight`) adds its
`hard_negative_weight` to that logit directly, default 0. Both are settings here, under their own
names: the offset added is `log(alpha) + hard_negative_weight`.

Batches: `{"anchor", "positive", "negative"}` views (or `{"anchor", "positive"}`: pairs with
in-batch negatives only); an optional `"neutral"` view is a second hard negative per anchor (the
paper's "contradiction + neutral" row: one more block of columns, gathered and offset
like the contradictions').
"""
import math

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.objectives.objective import named_views
from tf_esimcse.objectives.simcse import SimCSEObjective


@tf_esimcse_export("objectives.SupervisedSimCSEObjective")
class SupervisedSimCSEObjective(SimCSEObjective):
    """SimCSE with hard negatives.

    Args:
        temperature: float. Defaults to `0.05`.
        alpha: float > 0. The paper's hard-negative weight: log(alpha) is added to each anchor's
            own hard-negative logit(s). Defaults to `1.0` (no change).
        hard_negative_weight: float. The official code's `--hard_negative_weight`: added to each
            anchor's own hard-negative logit. Defaults to `0.0` (no change).
        cross_replica_negatives: bool. See `SimCSEObjective`; hard negatives are gathered too.
        mask_duplicates: bool. See `SimCSEObjective` (duplicates are found by the anchors, the
            premises; only entailment columns are dropped). Defaults to `False`.
    """

    def __init__(self, temperature=0.05, alpha=1.0, hard_negative_weight=0.0, **kwargs):
        super().__init__(temperature=temperature, **kwargs)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}.")
        if not math.isfinite(hard_negative_weight):
            raise ValueError(f"hard_negative_weight must be finite, got {hard_negative_weight!r}.")
        self.alpha = float(alpha)
        self.hard_negative_weight = float(hard_negative_weight)

    @property
    def hard_negative_offset(self):
        return math.log(self.alpha) + self.hard_negative_weight

    def views(self, x):
        return named_views(x, optional=("negative", "neutral"))

    def loss_terms(self, encoder, x, embeddings, context, training):
        hard = list(embeddings[2:]) or None
        return {"contrastive": self.contrastive_loss(embeddings[0], embeddings[1], hard_negatives=hard,
                                                     hard_negative_offset=self.hard_negative_offset,
                                                     anchor_ids=self.anchor_token_ids(x))}

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "hard_negative_weight": self.hard_negative_weight})
        return config
