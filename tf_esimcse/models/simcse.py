"""`SimCSE` and `SupervisedSimCSE`: `ContrastiveModel` with the SimCSE objectives, built from flat
settings (the API of docs/python-api.md: `SimCSE(encoder, temperature=0.05)` then `model.fit(dataset)`).

These classes only build the objective from their arguments and write those arguments back in
`get_config` (so that a saved config reads like the constructor call); everything else is
`ContrastiveModel`'s, and the settings live on `model.objective`.
"""
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives.simcse import SimCSEObjective
from tf_esimcse.objectives.supervised_simcse import SupervisedSimCSEObjective


@tf_esimcse_export("models.SimCSE")
class SimCSE(ContrastiveModel):
    """Unsupervised SimCSE: `ContrastiveModel(encoder, SimCSEObjective(...), ...)`.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` (SimCSE's unsupervised recipe:
            `pooler_type="cls", mlp_only_train=True`).
        temperature: float. Softmax temperature. Defaults to `0.05`.
        cross_replica_negatives: bool. Negatives span the global batch under a strategy.
            Defaults to `True`.
        max_grad_norm: float or None. Global gradient clipping (see `ContrastiveModel`).
        steps_per_data_epoch: int or None. See `ContrastiveModel`.
        mini_batch_size: int or None. The cached large-batch step (see `ContrastiveModel`).

    Inputs to `fit`: int32 batches `{"token_ids", "padding_mask"}` (each sentence is used twice,
    with two dropout masks) or `{"anchor": view, "positive": view}` (an augmented positive).

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls", mlp_only_train=True)
    model = SimCSE(encoder, temperature=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0))
    model.fit(unsup_dataset(sentences, encoder.preprocessor, repeat=True), steps_per_epoch=100)
    ```
    """

    def __init__(self, encoder, temperature=0.05, cross_replica_negatives=True, **kwargs):
        objective = SimCSEObjective(temperature=temperature, cross_replica_negatives=cross_replica_negatives)
        super().__init__(encoder, objective, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("objective")  # rebuilt from the flat settings
        config.update(temperature=self.objective.temperature,
                      cross_replica_negatives=self.objective.cross_replica_negatives)
        return config


@tf_esimcse_export("models.SupervisedSimCSE")
class SupervisedSimCSE(ContrastiveModel):
    """Supervised SimCSE: `ContrastiveModel(encoder, SupervisedSimCSEObjective(...), ...)`.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` (the paper: `pooler_type="cls"`, MLP kept).
        temperature: float. Defaults to `0.05`.
        alpha: float > 0. The paper's hard-negative weight (log(alpha) added to each anchor's own
            hard-negative logit). Defaults to `1.0`.
        hard_negative_weight: float. The official code's logit offset. Defaults to `0.0`.
        cross_replica_negatives: bool. Defaults to `True`.
        max_grad_norm, steps_per_data_epoch, mini_batch_size: see `ContrastiveModel`.

    Inputs to `fit`: `{"anchor", "positive", "negative"}` (or `{"anchor", "positive"}`) views.
    """

    def __init__(self, encoder, temperature=0.05, alpha=1.0, hard_negative_weight=0.0, cross_replica_negatives=True,
                 **kwargs):
        objective = SupervisedSimCSEObjective(temperature=temperature, alpha=alpha,
                                              hard_negative_weight=hard_negative_weight,
                                              cross_replica_negatives=cross_replica_negatives)
        super().__init__(encoder, objective, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("objective")  # rebuilt from the flat settings
        objective = self.objective
        config.update(temperature=objective.temperature, alpha=objective.alpha,
                      hard_negative_weight=objective.hard_negative_weight,
                      cross_replica_negatives=objective.cross_replica_negatives)
        return config
