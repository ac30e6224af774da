"""A masked-LM generator against the sentence encoder: the same family and vocabulary, and its inputs.

DiffCSE's generator (and the `mlm:K` augmentation's) reads the encoder's token ids and writes ids
the encoder reads back, so both must use one vocabulary: the same family of tokenizer (WordPiece for
BERT, byte-level BPE for RoBERTa), the same number of ids, the same start, end, padding and mask ids
and, where both tokenizers are at hand, the same token behind every id. `check_generator_vocabulary`
refuses anything else in one line naming the generator's files. A keras-hub preset saved without its
preprocessor has no tokenizer: then its backbone class gives the family and only the size and the
family are compared.

keras-hub's masked LMs take different inputs (`BertMaskedLM` also `segment_ids`; `RobertaMaskedLM`
and `DistilBertMaskedLM` only `token_ids`, `padding_mask`, `mask_positions`): `model_inputs` gives a
model exactly the inputs it declares.
"""
import pathlib

import keras
import keras_hub

from tf_esimcse.layers.sentence_preprocessor import start_end_pad_ids

# keras-hub backbones by the vocabulary they are built for (a generator saved without a tokenizer).
_BACKBONE_FAMILIES = (
    (keras_hub.models.BertBackbone, "BERT"),
    (keras_hub.models.DistilBertBackbone, "BERT"),
)
_TOKENIZER_KINDS = {"BERT": "WordPiece", "RoBERTa": "byte-level BPE"}
_SPECIAL_NAMES = ("start", "end", "pad", "mask")


def model_inputs(model, token_ids, padding_mask, **extra):
    """`{token_ids, padding_mask, **extra}` plus zero `segment_ids` when `model` declares that input
    (keras-hub's `BertMaskedLM`, tf_esimcse's `BertEncoder`); a model without it (RoBERTa) gets none."""
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    names = model.input.keys() if isinstance(getattr(model, "input", None), dict) else ()
    if "segment_ids" in names:
        inputs["segment_ids"] = keras.ops.zeros_like(token_ids)
    inputs.update(extra)
    return inputs


def tokenizer_family(tokenizer):
    """"BERT" (a WordPiece tokenizer), "RoBERTa" (byte-level BPE), or None for another kind."""
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        return "BERT"
    if isinstance(tokenizer, keras_hub.tokenizers.BytePairTokenizer):
        return "RoBERTa"
    return None


def generator_family(generator, tokenizer=None):
    """The generator's family from its tokenizer, else from its backbone's class (None if unknown)."""
    if tokenizer is not None:
        return tokenizer_family(tokenizer)
    backbone = generator.backbone
    if type(backbone) is keras_hub.models.RobertaBackbone:  # not XLM-RoBERTa, a SentencePiece subclass
        return "RoBERTa"
    return next((family for cls, family in _BACKBONE_FAMILIES if isinstance(backbone, cls)), None)


def special_ids(tokenizer):
    """`{"start", "end", "pad", "mask"}` ids of a tokenizer with its vocabulary, or None when it has
    none (a tokenizer rebuilt from a config alone)."""
    try:
        start, end, pad = start_end_pad_ids(tokenizer)
        mask = getattr(tokenizer, "mask_token_id", None)
    except (ValueError, AttributeError):
        return None
    return dict(zip(_SPECIAL_NAMES, (start, end, pad, None if mask is None else int(mask))))


def generator_tokenizer(generator, source=None):
    """The generator's tokenizer: its preprocessor's, else the one saved in its preset directory
    `source` (None when there is neither)."""
    tokenizer = getattr(getattr(generator, "preprocessor", None), "tokenizer", None)
    if tokenizer is None and source and (pathlib.Path(str(source)) / "tokenizer.json").is_file():
        tokenizer = keras_hub.models.Tokenizer.from_preset(str(source))
    return tokenizer


def tokens_by_id(tokenizer):
    """`{id: token}` of a keras-hub tokenizer (a byte-level BPE one keeps `{token: id}`, a WordPiece
    one a list in id order)."""
    vocabulary = getattr(tokenizer, "vocabulary", None)
    if isinstance(vocabulary, dict):
        return {int(i): token for token, i in vocabulary.items()}
    return dict(enumerate(tokenizer.get_vocabulary()))


def check_generator_vocabulary(generator, encoder_tokenizer, encoder_vocabulary_size, source=None):
    """Raise a one-line `ValueError` naming `source` (the generator's preset directory) when the
    generator does not share the sentence encoder's vocabulary (module docstring).

    Args:
        generator: a keras-hub `MaskedLM`.
        encoder_tokenizer: the encoder's tokenizer, or None (then only the sizes are compared).
        encoder_vocabulary_size: int. The encoder's token embedding rows.
        source: str or None. The generator's preset directory (named in the errors; its
            `tokenizer.json`, when there is one, is compared with the encoder's tokenizer).
    """
    where = str(source) if source else f"the generator {generator.name!r}"
    ours = special_ids(encoder_tokenizer) if encoder_tokenizer is not None else None
    theirs_tokenizer = generator_tokenizer(generator, source)
    theirs = special_ids(theirs_tokenizer) if theirs_tokenizer is not None else None
    family = generator_family(generator, theirs_tokenizer if theirs is not None else None)
    encoder_family = tokenizer_family(encoder_tokenizer) if ours is not None else None
    if family and encoder_family and family != encoder_family:
        raise ValueError(
            f"{where}: a {family} generator ({_TOKENIZER_KINDS[family]} vocabulary) for a {encoder_family} sentence "
            f"encoder ({_TOKENIZER_KINDS[encoder_family]}): the generator must share the encoder's vocabulary (a "
            f"{encoder_family} masked LM; recipes/pretrain_mlm.py --family {encoder_family.lower()} makes one)")
    size = int(generator.backbone.vocabulary_size)
    if size != int(encoder_vocabulary_size):
        raise ValueError(f"{where}: the generator's vocabulary has {size} tokens, the sentence encoder's "
                         f"{int(encoder_vocabulary_size)}: they must share one vocabulary")
    if ours is None or theirs is None:
        return
    for name in _SPECIAL_NAMES:
        if ours[name] != theirs[name]:
            raise ValueError(f"{where}: the generator's {name} token id is {theirs[name]}, the sentence encoder's "
                             f"{ours[name]}: they must share one vocabulary")
    mine, other = tokens_by_id(encoder_tokenizer), tokens_by_id(theirs_tokenizer)
    differ = next((i for i in sorted(set(mine) | set(other)) if mine.get(i) != other.get(i)), None)
    if differ is not None:
        raise ValueError(f"{where}: the generator's token {differ} is {other.get(differ)!r}, the sentence encoder's "
                         f"{mine.get(differ)!r}: they must share one vocabulary")
