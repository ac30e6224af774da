"""`TokenMasking`: BERT's 80/10/10 corruption, checked by counting on many tokens."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tf_esimcse.layers.token_masking import TokenMasking

CLS, SEP, MASK, VOCAB = 2, 3, 4, 1000


def test_rates_lengths_and_specials():
    rng = np.random.default_rng(0)
    rows = [[CLS] + list(rng.integers(10, VOCAB, size=n)) + [SEP] for n in rng.integers(0, 40, size=2000)]
    layer = TokenMasking(VOCAB, MASK, rate=0.3, unselectable_token_ids=[CLS, SEP], seed=5)
    out = layer(tf.ragged.constant(rows, dtype=tf.int64), seed=(1, 2)).to_list()
    masked = replaced = kept_selected_upper_bound = body = 0
    for row, new in zip(rows, out):
        assert len(new) == len(row) and new[0] == CLS and new[-1] == SEP
        for a, b in zip(row[1:-1], new[1:-1]):
            body += 1
            masked += b == MASK
            replaced += b not in (a, MASK)
    # selected ~ 0.3: 80 % masked, ~10 % random (a random id equal to the original counts as kept)
    assert stats.binomtest(masked, body, 0.3 * 0.8).pvalue > 1e-3
    assert stats.binomtest(replaced, body, 0.3 * 0.1 * (1 - 1 / VOCAB)).pvalue > 1e-3
    again = layer(tf.ragged.constant(rows, dtype=tf.int64), seed=(1, 2)).to_list()
    assert again == out  # stateless: same call seed, same masks
    other = layer(tf.ragged.constant(rows, dtype=tf.int64), seed=(1, 3)).to_list()
    assert other != out


def test_config_and_errors():
    layer = TokenMasking(VOCAB, MASK, rate=0.3, seed=1)
    assert TokenMasking.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="mask_token_id"):
        TokenMasking(10, 12)
    with pytest.raises(ValueError, match="<= 1"):
        TokenMasking(VOCAB, MASK, mask_token_rate=0.8, random_token_rate=0.3)
