"""Matryoshka training (Kusupati et al., 2022) around a contrastive objective.

`MatryoshkaObjective(inner, dims=(384, 256, 128, 64, 32))` trains the first d dimensions of the
sentence embedding to work on their own, for each d in `dims`, so that a model can be cut to any
of those sizes after training. The inner objective's contrastive term (SimCSE's InfoNCE with
whatever negatives the method adds) is computed on each prefix of the vectors, every prefix
L2-normalised on its own, and becomes `sum_d w_d * L_d` (summed, weights 1 by default, as
sentence-transformers' `MatryoshkaLoss`; `dim_weights=(0.2,) * 5` keeps the plain loss's scale):

- SimCSE, supervised SimCSE: anchors, positives and hard negatives are cut to d;
- ESimCSE: the queue keeps full-size momentum keys; each prefix compares against the same
  prefix of the queue (cut, then normalised);
- DiffCSE: the contrastive term per prefix; its RTD term once, unchanged (the discriminator
  reads the full vectors).

Everything else is the inner objective's: its views, its pre-tape work (ESimCSE's EMA step and
keys), its other terms and their weights, its `after_step` and logs. Under a strategy the prefixes
are cut after the all-gather (one gather of the full vectors), so two replicas compute what one
device does; the cached large-batch step and XLA need nothing more (the prefixes are static
slices of the embeddings the step hands to the loss).

How: `SimCSEObjective.contrastive_loss` (the contrastive term of every method here) passes its
gathered vectors to its `contrastive_fn`; the wrapper sets that to `prefix_info_nce` (below).

Logs: `contrastive_loss` is the weighted sum; `contrastive_<d>_loss` each prefix's term (in
TensorBoard and the progress logs like any `*_loss`).

The prefixes are those of the vectors the loss sees. With an MLP head used in training only
(SimCSE's `mlp_only_train`, DiffCSE's BatchNorm projection) those are the head's outputs, which the
saved encoder does not produce: its own prefixes would not be trained. The recipes refuse that
combination (`tf_esimcse.config.TrainConfig.validate`).
"""
import math

import keras

from tf_esimcse import losses
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.objectives.objective import Objective
from tf_esimcse.objectives.simcse import SimCSEObjective


def check_dims(dims, weights=None, what="dims"):
    """`(dims, weights)` as a tuple of ints and a tuple of floats (1.0 each when `weights` is
    None); `ValueError` (one line, naming `what`) unless the dims are positive integers, strictly
    descending, and the weights as many finite numbers >= 0, not all 0."""
    dims = tuple(dims)
    if not dims:
        raise ValueError(f"{what} is empty: give the embedding sizes to train, largest first (e.g. 384,256,128)")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"{what} must be positive integers, got {list(dims)}")
    if any(a <= b for a, b in zip(dims, dims[1:])):
        raise ValueError(f"{what} must be strictly descending (largest first, no repeats), got {list(dims)}")
    if weights is None:
        return dims, (1.0,) * len(dims)
    weights = tuple(weights)
    if len(weights) != len(dims):
        raise ValueError(f"{what}: {len(dims)} sizes {list(dims)} but {len(weights)} weights {list(weights)}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{what}: the weights must be finite numbers >= 0, got {list(weights)}")
    if not any(w > 0 for w in weights):
        raise ValueError(f"{what}: at least one weight must be > 0, got {list(weights)}")
    return dims, tuple(float(w) for w in weights)


def _cut(x, d):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return [block[:, :d] for block in x]
    return x[:, :d]


@tf_esimcse_export("objectives.MatryoshkaObjective")
class MatryoshkaObjective(Objective):
    """The inner objective's contrastive term on each embedding prefix (module docstring).

    Args:
        inner: a `SimCSEObjective` or subclass (`SupervisedSimCSEObjective`, `ESimCSEObjective`,
            `DiffCSEObjective`), or its serialized config. It is wrapped, not copied: do not use
            it elsewhere.
        dims: list of int. The prefix sizes, strictly descending; the largest must not exceed
            the encoder's embedding dimension (checked at `setup`). Include the full size to
            keep training the whole vector. Defaults to `(384, 256, 128, 64, 32)`.
        dim_weights: list of float or None. Weight of each prefix's term, one per dim (named so
            because a Keras layer's `weights` are its variables). Defaults to `None` (1.0 each).

    Returns (from `loss_terms`): the inner objective's terms, `"contrastive"` replaced by the
    weighted sum over prefixes.

    Examples:
    ```python
    objective = MatryoshkaObjective(ESimCSEObjective(queue_size=160), dims=(384, 128, 32))
    model = ContrastiveModel(encoder, objective)   # encoder: e.g. pooler_type="avg"
    ```
    """

    def __init__(self, inner, dims=(384, 256, 128, 64, 32), dim_weights=None, **kwargs):
        kwargs.pop("loss_weights", None)  # the inner objective's, never the wrapper's
        super().__init__(**kwargs)
        if isinstance(inner, dict):
            inner = keras.saving.deserialize_keras_object(inner)
        if not isinstance(inner, SimCSEObjective):
            raise ValueError("MatryoshkaObjective wraps an objective whose contrastive term is SimCSE's InfoNCE "
                             f"(SimCSEObjective or a subclass); got {type(inner).__name__}")
        if isinstance(inner, MatryoshkaObjective) or inner.contrastive_fn is not SimCSEObjective.contrastive_fn:
            raise ValueError("this objective is already wrapped by a MatryoshkaObjective")
        self.dims, self.dim_weights = check_dims(list(dims), None if dim_weights is None else list(dim_weights))
        # === Layers ===
        self.inner = inner
        inner.contrastive_fn = self.prefix_info_nce
        # === Metrics ===
        self.prefix_trackers = [keras.metrics.Mean(name=f"contrastive_{d}_loss") for d in self.dims]

    # The inner objective's parts, as they are.
    @property
    def term_names(self):
        inner = getattr(self, "inner", None)  # None inside Objective.__init__, before it is set
        return Objective.term_names if inner is None else inner.term_names

    @property
    def normalized_embeddings(self):
        return self.inner.normalized_embeddings

    @property
    def metrics(self):
        return [*getattr(self.inner, "metrics", []), *self.prefix_trackers]

    def weight_of(self, name):
        return self.inner.weight_of(name)

    def setup(self, encoder):
        dim = int(encoder.embedding_dim)
        if self.dims[0] > dim:
            raise ValueError(f"matryoshka dims {list(self.dims)}: the largest, {self.dims[0]}, exceeds the encoder's "
                             f"embedding dimension {dim} (--matryoshka-dims must be <= {dim})")
        self.inner.setup(encoder)

    def views(self, x):
        return self.inner.views(x)

    def before_step(self, encoder, x, new_data_epoch):
        return self.inner.before_step(encoder, x, new_data_epoch)

    def loss_terms(self, encoder, x, embeddings, context, training):
        return self.inner.loss_terms(encoder, x, embeddings, context, training)

    def after_step(self, context):
        self.inner.after_step(context)

    def step_logs(self):
        return self.inner.step_logs()

    # The prefixes.
    def prefix_info_nce(self, z1, z2, hard_negatives=None, queue=None, **kwargs):
        """`sum_d w_d * losses.info_nce(...)` over the first d columns of `z1`, `z2`, each hard
        negative block and the queue (each normalised inside `info_nce`); logs each term.
        Installed as the inner objective's `contrastive_fn`: the arguments are gathered already."""
        total = None
        for d, weight, tracker in zip(self.dims, self.dim_weights, self.prefix_trackers):
            term = losses.info_nce(z1[:, :d], z2[:, :d], hard_negatives=_cut(hard_negatives, d),
                                   queue=_cut(queue, d), **kwargs)
            tracker.update_state(term)
            weighted = term * weight
            total = weighted if total is None else total + weighted
        return total

    def get_config(self):
        config = super().get_config()
        config.pop("loss_weights", None)
        config.update({"inner": keras.saving.serialize_keras_object(self.inner), "dims": list(self.dims),
                       "dim_weights": list(self.dim_weights)})
        return config
