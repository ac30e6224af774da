"""DiffCSE's batches: each sentence, plus two independently masked copies of it.

The objective (`tf_esimcse.objectives.diffcse.DiffCSEObjective`) reads the views by these names.
"""
from tf_esimcse.data.views import View, views_dataset
from tf_esimcse.layers.token_masking import TokenMasking

MASKED_VIEWS = ("masked_1", "masked_2")


def diffcse_views(sentences, preprocessor, masking_ratio=0.30, batch_size=64, shuffle=True, seed=42, repeat=False):
    """DiffCSE batches: `{"anchor"}` plus `{"masked_1", "masked_2"}`, two independently masked
    copies of each sentence (`TokenMasking`: 80 % [MASK], 10 % random, 10 % kept)."""
    tokenizer = preprocessor.tokenizer
    vocabulary_size = int(tokenizer.vocabulary_size())
    views = {"anchor": View(0)}
    for i, name in enumerate(MASKED_VIEWS):
        views[name] = View(0, transform=TokenMasking(vocabulary_size, int(tokenizer.mask_token_id), rate=masking_ratio,
                                                     seed=seed + 1000 * (i + 1)))
    return views_dataset(list(sentences), preprocessor, views, batch_size=batch_size, shuffle=shuffle, seed=seed,
                         repeat=repeat)
