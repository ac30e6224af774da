"""`SimCSE` and `SupervisedSimCSE`: `ContrastiveModel`s with the SimCSE objectives, built from flat
settings (the API of docs/python-api.md: `SimCSE(encoder, temperature=0.05)` then `model.fit(dataset)`)."""

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives.simcse import SimCSEObjective
from tf_esimcse.objectives.supervised_simcse import SupervisedSimCSEObjective


class _FlatSettingsModel(ContrastiveModel):
    """A `ContrastiveModel` whose config is its objective's settings, flat (subclasses name
    `objective_class` and the objective's settings)."""

    objective_class = None
    objective_settings = ()

    def __init__(self, encoder, max_grad_norm=None, steps_per_data_epoch=None, mini_batch_size=None, name=None,
                 **settings):
        unknown = sorted(set(settings) - set(self.objective_settings))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {unknown}.")
        objective = self.objective_class(**settings)
        super().__init__(encoder, objective, max_grad_norm=max_grad_norm, steps_per_data_epoch=steps_per_data_epoch,
                         mini_batch_size=mini_batch_size, name=name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The objective's settings read as the model's (model.temperature, model.queue_size).
        for setting in cls.objective_settings:
            if setting not in cls.__dict__:
                setattr(cls, setting, property(lambda self, _s=setting: getattr(self.objective, _s)))

    def compute_contrastive_loss(self, embeddings):
        """The objective's contrastive term on already computed view embeddings (no queue)."""
        return self.objective.loss_terms(self.encoder, None, embeddings, None, training=False)["contrastive"]

    def get_config(self):
        config = super().get_config()
        config.pop("objective")  # rebuilt from the flat settings
        objective = self.objective.get_config()
        config.update({k: objective[k] for k in self.objective_settings})
        return config


@tf_esimcse_export("models.SimCSE")
class SimCSE(_FlatSettingsModel):
    """Unsupervised SimCSE around a `SentenceEncoder` (`ContrastiveModel` + `SimCSEObjective`).

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

    objective_class = SimCSEObjective
    objective_settings = ("temperature", "cross_replica_negatives")

    def __init__(self, encoder, temperature=0.05, cross_replica_negatives=True, **kwargs):
        super().__init__(encoder, temperature=temperature, cross_replica_negatives=cross_replica_negatives, **kwargs)


@tf_esimcse_export("models.SupervisedSimCSE")
class SupervisedSimCSE(_FlatSettingsModel):
    """Supervised SimCSE (`ContrastiveModel` + `SupervisedSimCSEObjective`).

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` (the paper: `pooler_type="cls"`, MLP kept).
        temperature: float. Defaults to `0.05`.
        alpha: float > 0. The paper's hard-negative weight (log(alpha) added to each anchor's own
            hard-negative logit). Defaults to `1.0`.
        hard_negative_weight: float. The official code's logit offset. Defaults to `0.0`.
        cross_replica_negatives: bool. Defaults to `True`.
        max_grad_norm, steps_per_data_epoch: see `ContrastiveModel`.

    Inputs to `fit`: `{"anchor", "positive", "negative"}` (or `{"anchor", "positive"}`) views.
    """

    objective_class = SupervisedSimCSEObjective
    objective_settings = ("temperature", "alpha", "hard_negative_weight", "cross_replica_negatives")

    def __init__(self, encoder, temperature=0.05, alpha=1.0, hard_negative_weight=0.0, cross_replica_negatives=True,
                 **kwargs):
        super().__init__(encoder, temperature=temperature, alpha=alpha, hard_negative_weight=hard_negative_weight,
                         cross_replica_negatives=cross_replica_negatives, **kwargs)
