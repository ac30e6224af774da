"""`ESimCSE`: a `ContrastiveModel` with the ESimCSE objective, built from flat settings.

The method itself (EMA momentum backbone, queue of momentum keys, queue reset per data epoch)
is `tf_esimcse.objectives.ESimCSEObjective`; see its module docstring for the step.
"""
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives.esimcse import ESimCSEObjective


@tf_esimcse_export("models.ESimCSE")
class ESimCSE(ContrastiveModel):
    """ESimCSE: `ContrastiveModel(encoder, ESimCSEObjective(...), ...)`, from flat settings.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` (paper: `pooler_type="cls", mlp_only_train=True`).
        temperature: float. Defaults to `0.05`.
        queue_size: int. Number of queued negatives; 2.5 x batch in the paper. Defaults to `160`.
        momentum: float. EMA coefficient m of the momentum encoder. Defaults to `0.995`.
        use_momentum_queue: bool. `False` turns momentum contrast off (ablation: repetition only).
        reset_queue_each_epoch: bool. Empty the queue at the first step of each data epoch
            (official behaviour), when `steps_per_data_epoch` says when that is. Defaults to `True`.
        cross_replica_negatives: bool. Defaults to `True`.
        max_grad_norm: float or None. See `ContrastiveModel`.
        steps_per_data_epoch: int or None. Steps per pass over the training data (the recipes pass
            `len(sentences) // batch_size`). Defaults to `None` (the queue is never emptied).
        mini_batch_size: int or None. See `ContrastiveModel`.

    The settings live on `model.objective`; `model.queue` and `model.momentum_backbone` are the
    objective's `MomentumQueue` and EMA backbone (None without momentum contrast).

    Inputs to `fit`: `{"anchor": view, "positive": view}` int32 batches, the positive being the
    word-repeated anchor (see `tf_esimcse.data.pipeline.esimcse_dataset`). A plain view
    `{"token_ids", "padding_mask"}` trains with dropout-only positives (ablation: no repetition).

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls", mlp_only_train=True)
    model = ESimCSE(encoder, queue_size=160, momentum=0.995, steps_per_data_epoch=len(sentences) // 64)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0))
    model.fit(esimcse_dataset(sentences, encoder.preprocessor, repeat=True), steps_per_epoch=100)
    ```
    """

    def __init__(self, encoder, temperature=0.05, queue_size=160, momentum=0.995, use_momentum_queue=True,
                 reset_queue_each_epoch=True, cross_replica_negatives=True, **kwargs):
        objective = ESimCSEObjective(temperature=temperature, queue_size=queue_size, momentum=momentum,
                                     use_momentum_queue=use_momentum_queue,
                                     reset_queue_each_epoch=reset_queue_each_epoch,
                                     cross_replica_negatives=cross_replica_negatives)
        super().__init__(encoder, objective, **kwargs)

    @property
    def queue(self):
        """The objective's `MomentumQueue` (None without momentum contrast)."""
        return self.objective.queue

    @property
    def momentum_backbone(self):
        """The objective's EMA copy of the backbone (None without momentum contrast)."""
        return self.objective.momentum_backbone

    def get_config(self):
        config = super().get_config()
        config.pop("objective")  # rebuilt from the flat settings
        objective = self.objective
        config.update(temperature=objective.temperature, queue_size=objective.queue_size,
                      momentum=objective.momentum, use_momentum_queue=objective.use_momentum_queue,
                      reset_queue_each_epoch=objective.reset_queue_each_epoch,
                      cross_replica_negatives=objective.cross_replica_negatives)
        return config
