"""SimCSE's Table 1 positives as tf.data views, named by one string (`--augmentation`).

The SimCSE paper compares dropout (its method: the same sentence twice, `none` here) with
discrete augmentations that make the positive from the sentence: crop k % (keep a contiguous
span), word deletion k %, delete one word, and with "next sentence(s)" positives (Table 2's
objectives; Brown keeps its sentences in order). The anchor is always the sentence itself; the
augmentation makes the positive, and dropout stays on for both unless `--dropout 0` (the paper's
"w/o dropout" row is delete one word without dropout). Augmentations act on word pieces, before
[CLS]/[SEP] are added (the paper's act on words).

    spec                  positive
    none                  the sentence itself (unsupervised SimCSE: dropout is the augmentation)
    crop:K                a contiguous span of 100 - K % of the tokens (`RandomCrop`)
    word_deletion:K       K % of the tokens deleted (`WordDeletion`)
    delete_one_word       one token deleted (`WordDeletion(count=1)`)
    next_sentence         the next sentence of the corpus
    next_3_sentences      one of the next three sentences, drawn at random (once per sentence, from
                          the seed), as SimCSE's Table 2 describes it
    mlm:K                 K % of the tokens replaced by a masked LM's best other token
                          (`MaskedLMReplacement`; needs `generator`, e.g. `--augmentation-generator`
                          saved_models/mlm/model from `recipes/pretrain_mlm.py`)
"""
import random

import tensorflow as tf

from tf_esimcse.backbones import load_generator
from tf_esimcse.data.views import View, views_dataset
from tf_esimcse.generator_vocabulary import check_generator_vocabulary
from tf_esimcse.layers.sentence_preprocessor import start_end_pad_ids
from tf_esimcse.layers.masked_lm_replacement import MaskedLMReplacement
from tf_esimcse.layers.random_crop import RandomCrop
from tf_esimcse.layers.word_deletion import WordDeletion

SPECS = ("none", "crop:K", "word_deletion:K", "delete_one_word", "next_sentence", "next_3_sentences", "mlm:K")


def parse_augmentation(spec):
    """`(kind, value)` of an augmentation string: value is the fraction for crop/word_deletion,
    the number of sentences for next_*, else None. Raises ValueError naming the valid forms."""
    spec = str(spec or "none").strip().lower()
    kind, _, value = spec.partition(":")
    try:
        if kind in ("crop", "word_deletion", "mlm") and value:
            percent = float(value)
            if 0 <= percent <= 100:
                return kind, percent / 100.0
        elif kind == "none" and not value:
            return "none", None
        elif kind == "delete_one_word" and not value:
            return kind, 1
        elif kind == "next_sentence" and not value:
            return "next_sentences", 1
        elif kind == "next_3_sentences" and not value:
            return "next_sentences", 3
    except ValueError:
        pass
    raise ValueError(f"unknown augmentation {spec!r}: expected one of {', '.join(SPECS)} (K a percentage, 0-100)")


def next_sentence_pairs(sentences, count=1, seed=0):
    """`(sentence i, one of sentences i+1 .. i+count)` for every i with `count` successors; with
    count > 1 the successor is drawn uniformly, once, from a `random.Random(seed)`."""
    sentences = list(sentences)
    rng = random.Random(seed)
    return [(sentences[i], sentences[i + 1 + (rng.randrange(count) if count > 1 else 0)])
            for i in range(len(sentences) - count)]


def augmentation_dataset(sentences, preprocessor, spec="none", batch_size=64, shuffle=True, seed=42, repeat=False,
                         dynamic_padding=False, generator=None):
    """Batches for SimCSE with the positive made by `spec` (see the module docstring).

    `none` gives one-view batches (`{"token_ids", "padding_mask"}`: the model encodes each
    sentence twice); the others `{"anchor", "positive"}` views. Transforms draw per batch from
    `seed`, as every view transform does (`views_dataset`). `generator`: the masked LM of `mlm:K`
    (a keras-hub `MaskedLM` or a preset path).
    """
    kind, value = parse_augmentation(spec)
    common = dict(batch_size=batch_size, shuffle=shuffle, seed=seed, repeat=repeat, dynamic_padding=dynamic_padding)
    if kind == "none":
        return views_dataset(list(sentences), preprocessor, None, **common)
    if kind == "next_sentences":
        return views_dataset(next_sentence_pairs(sentences, value, seed=seed), preprocessor,
                             {"anchor": View(0), "positive": View(1)}, **common)
    if kind == "mlm":
        return mlm_replacement_dataset(sentences, preprocessor, value, generator, seed=seed, **{
            k: v for k, v in common.items() if k != "seed"})
    if kind == "crop":
        transform = RandomCrop(rate=value, seed=seed)
    elif kind == "word_deletion":
        transform = WordDeletion(rate=value, seed=seed)
    else:
        transform = WordDeletion(count=value, seed=seed)
    return views_dataset(list(sentences), preprocessor, {"anchor": View(0), "positive": View(0, transform=transform)},
                         **common)


def mlm_replacement_dataset(sentences, preprocessor, rate, generator, batch_size=64, shuffle=True, seed=42,
                            repeat=False, dynamic_padding=False):
    """`{"anchor", "positive"}` batches whose positive has `rate` of its tokens replaced by
    `generator`'s best other token (`MaskedLMReplacement`), one stateless key per batch
    (`(seed, batch index)`), so the stream is the same on every run and after a resume."""
    if generator is None or generator == "":
        raise ValueError("--augmentation mlm:K needs a masked-LM generator sharing the encoder's vocabulary: "
                         "--augmentation-generator <keras-hub MaskedLM preset> (e.g. saved_models/mlm/model from "
                         "python recipes/pretrain_mlm.py)")
    source = None
    if isinstance(generator, str) or hasattr(generator, "__fspath__"):
        source = str(generator)
        generator = load_generator(source)
    tokenizer = preprocessor.tokenizer
    check_generator_vocabulary(generator, tokenizer, int(tokenizer.vocabulary_size()), source=source)
    # [CLS]/<s>, [SEP]/</s>, the padding, mask and unknown ids: never replaced, never predicted.
    special = list(start_end_pad_ids(tokenizer)) + [getattr(tokenizer, f"{name}_token_id", None)
                                                    for name in ("mask", "unk")]
    layer = MaskedLMReplacement(generator, int(tokenizer.mask_token_id),
                                unselectable_token_ids=[0] + [int(i) for i in special if i is not None], rate=rate)
    base = views_dataset(list(sentences), preprocessor, {"anchor": View(0), "positive": View(0)},
                         batch_size=batch_size, shuffle=shuffle, seed=seed, repeat=repeat,
                         dynamic_padding=dynamic_padding)

    def replace(index, batch):
        positive, _ = layer(batch["positive"], seed=tf.stack([tf.cast(seed, tf.int64), index]))
        return {"anchor": batch["anchor"], "positive": dict(batch["positive"], token_ids=positive)}

    # stateless keys per batch: parallel calls keep the stream deterministic
    return base.enumerate().map(replace, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
