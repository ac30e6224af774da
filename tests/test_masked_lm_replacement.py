"""SimCSE's "MLM 15 %" positive (`MaskedLMReplacement`, `--augmentation mlm:K`): which tokens are
replaced and by what, against an independent computation with the same generator."""
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from test_case import TINY_SENTENCES, tiny_encoder, to_numpy
from test_diffcse import write_tiny_generator
from tf_esimcse.data.augmentations import augmentation_dataset
from tf_esimcse.layers.masked_lm_replacement import MaskedLMReplacement

MASK, CLS, SEP = 4, 2, 3
SPECIAL = [0, 1, CLS, SEP, MASK]


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = write_tiny_generator(tmp_path_factory.mktemp("generator") / "mlm")
    return keras_hub.models.MaskedLM.from_preset(path, preprocessor=None)


def _batch():
    ids = np.array([[CLS, 10, 11, 12, 13, 14, 15, 16, 17, 18, SEP, 0],
                    [CLS, 20, 21, SEP, 0, 0, 0, 0, 0, 0, 0, 0],
                    [CLS, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, SEP]], "int32")
    return {"token_ids": ids, "padding_mask": (ids > 0).astype("int32")}


@pytest.mark.parametrize("rate", [0.15, 0.3, 1.0])
def test_replacements_against_an_independent_computation(generator, rate):
    batch = _batch()
    layer = MaskedLMReplacement(generator, MASK, unselectable_token_ids=SPECIAL, rate=rate)
    out, chosen = (to_numpy(t) for t in layer(tf.nest.map_structure(tf.constant, batch), seed=tf.constant([7, 1])))
    ids, pad = batch["token_ids"], batch["padding_mask"]
    for r in range(len(ids)):
        ordinary = [j for j in range(ids.shape[1]) if pad[r, j] and ids[r, j] not in SPECIAL]
        expected_count = max(1, int(np.round(rate * len(ordinary))))
        changed = [j for j in range(ids.shape[1]) if out[r, j] != ids[r, j]]
        assert sorted(np.flatnonzero(chosen[r]).tolist()) == changed  # every chosen token changed
        assert len(changed) == expected_count and set(changed) <= set(ordinary)  # never a special or padding
    # Independently: the generator on the [MASK]ed sentence, best id other than the original and specials.
    masked = np.where(chosen, MASK, ids)
    for r in range(len(ids)):
        positions = np.flatnonzero(chosen[r])
        logits = to_numpy(generator({"token_ids": masked[r:r + 1], "padding_mask": pad[r:r + 1],
                                     "segment_ids": np.zeros_like(masked[r:r + 1]),
                                     "mask_positions": positions[None].astype("int32")}))[0]
        logits[np.arange(len(positions)), ids[r, positions]] = -np.inf
        logits[:, SPECIAL] = -np.inf
        np.testing.assert_array_equal(out[r, positions], logits.argmax(-1))


def test_the_same_seed_gives_the_same_positives_and_another_seed_others(generator):
    batch = tf.nest.map_structure(tf.constant, _batch())
    layer = MaskedLMReplacement(generator, MASK, unselectable_token_ids=SPECIAL, rate=0.3)
    a = to_numpy(layer(batch, seed=tf.constant([1, 2]))[1])
    b = to_numpy(layer(batch, seed=tf.constant([1, 2]))[1])
    others = [to_numpy(layer(batch, seed=tf.constant([1, s]))[1]) for s in range(3, 8)]
    np.testing.assert_array_equal(a, b)
    assert any((a != o).any() for o in others)


def test_dataset_anchor_is_the_sentence_and_positive_is_replaced(model_dir, generator):
    pre = tiny_encoder(model_dir).preprocessor
    ds = augmentation_dataset(TINY_SENTENCES * 2, pre, "mlm:30", batch_size=4, shuffle=False, generator=generator)
    plain = augmentation_dataset(TINY_SENTENCES * 2, pre, "crop:0", batch_size=4, shuffle=False)
    for batch, reference in zip(ds.take(2), plain.take(2)):
        anchor, positive = (to_numpy(batch[v]["token_ids"]) for v in ("anchor", "positive"))
        np.testing.assert_array_equal(anchor, to_numpy(reference["anchor"]["token_ids"]))
        np.testing.assert_array_equal(to_numpy(batch["positive"]["padding_mask"]),
                                      to_numpy(batch["anchor"]["padding_mask"]))
        assert ((anchor != positive).sum(axis=1) >= 1).all()
    again = augmentation_dataset(TINY_SENTENCES * 2, pre, "mlm:30", batch_size=4, shuffle=False, generator=generator)
    for x, y in zip(ds.take(2), again.take(2)):  # one stateless key per batch: the same stream every time
        np.testing.assert_array_equal(to_numpy(x["positive"]["token_ids"]), to_numpy(y["positive"]["token_ids"]))


def test_clear_errors(model_dir, tmp_path):
    pre = tiny_encoder(model_dir).preprocessor
    with pytest.raises(ValueError, match="--augmentation-generator"):
        augmentation_dataset(TINY_SENTENCES, pre, "mlm:15", batch_size=4)
    other = write_tiny_generator(tmp_path / "other", vocabulary_size=50)
    with pytest.raises(ValueError, match="share one vocabulary"):
        augmentation_dataset(TINY_SENTENCES, pre, "mlm:15", batch_size=4, generator=other)
    with pytest.raises(ValueError, match="rate must be in"):
        MaskedLMReplacement(None, MASK, rate=1.5)


def test_a_roberta_encoder_with_a_roberta_generator_keeps_s_and_pad(tmp_path):
    """RoBERTa: a `RobertaMaskedLM` (no segment ids) on `<s> ... </s> <pad>` batches; at rate 1
    every ordinary token is replaced and `<s>` (0), `<pad>` (1) and `</s>` (2) never are."""
    import keras

    from tiny_roberta import BOS_ID, EOS_ID, PAD_ID, write_tiny_hf_roberta

    pre = tiny_encoder(write_tiny_hf_roberta(tmp_path / "roberta")).preprocessor
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.RobertaBackbone(vocabulary_size=pre.tokenizer.vocabulary_size(), num_layers=1,
                                                num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=64)
    generator = keras_hub.models.RobertaMaskedLM(backbone)
    ds = augmentation_dataset(TINY_SENTENCES * 2, pre, "mlm:100", batch_size=4, shuffle=False, generator=generator)
    specials = [BOS_ID, PAD_ID, EOS_ID, pre.tokenizer.mask_token_id]
    for batch in ds.take(2):
        anchor, positive = (to_numpy(batch[v]["token_ids"]) for v in ("anchor", "positive"))
        special = np.isin(anchor, specials)
        np.testing.assert_array_equal(positive[special], anchor[special])
        assert (positive[~special] != anchor[~special]).all() and not np.isin(positive[~special], specials).any()
        assert (anchor == EOS_ID).sum() == len(anchor)  # one </s> per row, kept above
