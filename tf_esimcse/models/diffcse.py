"""`DiffCSE`: a `ContrastiveModel` with the DiffCSE objective, built from flat settings.

The method itself (the frozen generator's edits, the discriminator, replaced-token detection) is
`tf_esimcse.objectives.DiffCSEObjective`; see its module docstring.
"""
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives.diffcse import DiffCSEObjective


@tf_esimcse_export("models.DiffCSE")
class DiffCSE(ContrastiveModel):
    """DiffCSE: `ContrastiveModel(encoder, DiffCSEObjective(generator, ...), ...)`.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder` (the recipe: `pooler_type="cls_before_pooler"`).
        generator: str or `keras_hub.models.MaskedLM`. The frozen MLM generator (a keras-hub
            preset directory or name, e.g. what `recipes/pretrain_mlm.py` writes); its family and
            vocabulary must be the encoder's (a `RobertaMaskedLM` for a RoBERTa encoder). A ready
            model is not part of `get_config`.
        temperature: float. Defaults to `0.05`.
        rtd_weight: float. DiffCSE's lambda. Defaults to `0.005`.
        batchnorm: bool. DiffCSE's BatchNorm projection in training. Defaults to `True`.
        generator_dropout: bool. The generator runs with dropout on, as in the official training.
            Defaults to `True`.
        rtd_on_padding: bool. Average the RTD loss over every position (official) instead of the
            non-padding ones. Defaults to `False`.
        cross_replica_negatives: bool. Defaults to `True`.
        cls_token_id, pad_token_id: int or None. The start id ([CLS], RoBERTa's `<s>`) and the
            padding id ([PAD], RoBERTa's `<pad>`) of the edits; `None` reads them from the
            encoder's tokenizer (`get_config` records them, since a tokenizer rebuilt from a config
            has no vocabulary).
        max_grad_norm, steps_per_data_epoch, mini_batch_size: see `ContrastiveModel`.

    Inputs to `fit`: `{"anchor", "masked_1", "masked_2"}` batches
    (`tf_esimcse.data.diffcse_views.diffcse_views`).

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls_before_pooler")
    model = DiffCSE(encoder, "saved_models/mlm/model", rtd_weight=0.005, max_grad_norm=1.0)
    model.compile(optimizer=keras.optimizers.AdamW(7e-6, weight_decay=0.0))
    model.fit(diffcse_views(sentences, encoder.preprocessor, repeat=True), steps_per_epoch=100)
    ```
    """

    def __init__(self, encoder, generator, temperature=0.05, rtd_weight=0.005, batchnorm=True, generator_dropout=True,
                 rtd_on_padding=False, cross_replica_negatives=True, cls_token_id=None, pad_token_id=None, **kwargs):
        objective = DiffCSEObjective(generator, temperature=temperature, rtd_weight=rtd_weight, batchnorm=batchnorm,
                                     generator_dropout=generator_dropout, rtd_on_padding=rtd_on_padding,
                                     cross_replica_negatives=cross_replica_negatives, cls_token_id=cls_token_id,
                                     pad_token_id=pad_token_id)
        super().__init__(encoder, objective, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("objective")  # rebuilt from the flat settings
        objective = self.objective
        config.update(generator=objective.generator_source, temperature=objective.temperature,
                      rtd_weight=objective.rtd_weight, batchnorm=objective.batchnorm,
                      generator_dropout=objective.generator_dropout, rtd_on_padding=objective.rtd_on_padding,
                      cross_replica_negatives=objective.cross_replica_negatives, cls_token_id=objective.cls_token_id,
                      pad_token_id=objective.pad_token_id)
        return config
