"""DiffCSE's batches: each sentence, plus two independently masked copies of it.

The objective (`tf_esimcse.objectives.diffcse.DiffCSEObjective`) reads the views by these names.
"""
from tf_esimcse.data.views import View, views_dataset
from tf_esimcse.layers.sentence_preprocessor import start_end_pad_ids
from tf_esimcse.layers.token_masking import TokenMasking

MASKED_VIEWS = ("masked_1", "masked_2")


def diffcse_views(sentences, preprocessor, masking_ratio=0.30, batch_size=64, shuffle=True, seed=42, repeat=False):
    """DiffCSE batches: `{"anchor"}` plus `{"masked_1", "masked_2"}`, two independently masked
    copies of each sentence (`TokenMasking`: 80 % the tokenizer's mask token, [MASK] or RoBERTa's
    `<mask>`, 10 % random, 10 % kept).

    The masking runs on the tokenized sentence before the start and end tokens and the padding are
    added, and the start, end, padding and mask ids are never selected: a sentence whose text holds
    a special token's spelling (RoBERTa's tokenizer reads `<s>` or `<mask>` in a text as that token)
    keeps it, as the official data collator's special-tokens mask does."""
    tokenizer = preprocessor.tokenizer
    vocabulary_size = int(tokenizer.vocabulary_size())
    mask_token_id = int(tokenizer.mask_token_id)
    specials = sorted(set(start_end_pad_ids(tokenizer)) | {mask_token_id})
    views = {"anchor": View(0)}
    for i, name in enumerate(MASKED_VIEWS):
        views[name] = View(0, transform=TokenMasking(vocabulary_size, mask_token_id, rate=masking_ratio,
                                                     unselectable_token_ids=specials, seed=seed + 1000 * (i + 1)))
    return views_dataset(list(sentences), preprocessor, views, batch_size=batch_size, shuffle=shuffle, seed=seed,
                         repeat=repeat)
