"""Keras models: `tf_esimcse.models.<Name>` for every model registered as ``models.<Name>``.

Names resolve on first use (PEP 562), so importing one model's module does not import them all
(and `backbones` can import `models.bert_encoder` without the training models).
"""
from tf_esimcse.api_export import lazy_namespace

__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    "ContrastiveModel": "contrastive_model",
    "DiffCSE": "diffcse",
    "ESimCSE": "esimcse",
    "SimCSE": "simcse",
    "SupervisedSimCSE": "simcse",
})
del lazy_namespace
