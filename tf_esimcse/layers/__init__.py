"""Keras layers: `tf_esimcse.layers.<Name>` for every layer registered as ``layers.<Name>``.

Names resolve on first use (PEP 562), so importing one layer's module does not import them all.
"""
from tf_esimcse.api_export import lazy_namespace

__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    "BertSelfAttention": "transformer_layer",
    "BertTransformerLayer": "transformer_layer",
    "FlatDense": "flat_dense",
    "FlatEinsumDense": "flat_dense",
    "HashDropout": "hash_dropout",
    "MaskedLMReplacement": "masked_lm_replacement",
    "MomentumQueue": "momentum_queue",
    "Pooler": "pooler",
    "RandomCrop": "random_crop",
    "SentencePreprocessor": "sentence_preprocessor",
    "TokenAugmentation": "token_augmentation",
    "TokenMasking": "token_masking",
    "WordDeletion": "word_deletion",
    "WordRepetition": "word_repetition",
})
del lazy_namespace
