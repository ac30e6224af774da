"""Tests for `tf_esimcse.models.simcse.SimCSE`: dropout views, the loss against NumPy, `fit`."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import TINY_SENTENCES
from test_case import numpy_info_nce
from test_case import run_serialization_test
from test_case import tiny_encoder
from test_case import to_numpy
from tf_esimcse.data.pipeline import unsup_dataset
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tf_esimcse.models.simcse import SimCSE
from tf_esimcse.models.simcse import SupervisedSimCSE

# Keras warns for datasets of unknown length (ours: tokenized once, then unbatched); harmless here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning"),
    pytest.mark.filterwarnings("ignore:Your input ran out of data:UserWarning"),
]

SEQ_LEN = 16
N = len(TINY_SENTENCES)


def _simcse(model_dir, dropout=0.1, pooler_type="cls", mlp_only_train=True, **kwargs):
    encoder = tiny_encoder(model_dir, pooler_type=pooler_type, mlp_only_train=mlp_only_train, dropout=dropout,
                           sequence_length=SEQ_LEN)
    # Hard negatives (alpha) belong to supervised SimCSE, its own model class.
    return (SupervisedSimCSE if "alpha" in kwargs else SimCSE)(encoder, **kwargs)


def _batch(model, sentences=TINY_SENTENCES):
    return trim_to_longest(model.encoder.preprocessor(tf.constant(sentences)))


def _embed(model, view, training=False):
    return to_numpy(model.encoder(view, training=training))


@pytest.fixture(scope="module")
def simcse(model_dir):
    return _simcse(model_dir)


def test_views_get_different_dropout_masks(simcse):
    batch = _batch(simcse)
    z1, z2 = (to_numpy(z) for z in simcse.embed_views(batch, training=True))
    assert z1.shape == z2.shape == (N, 32)
    assert np.abs(z1 - z2).max() > 1e-3  # two masks, one forward pass of 2N rows
    # Without dropout (inference) the two halves are the same sentences, so the same vectors.
    e1, e2 = (to_numpy(z) for z in simcse.embed_views(batch, training=False))
    np.testing.assert_allclose(e1, e2, atol=1e-6)


def test_without_dropout_views_are_identical_and_loss_matches_numpy(model_dir):
    model = _simcse(model_dir, dropout=0.0)
    batch = _batch(model)
    embeddings = model.embed_views(batch, training=True)
    z1, z2 = (to_numpy(z) for z in embeddings)
    np.testing.assert_allclose(z1, z2, atol=1e-6)
    # training=True still applies the mlp_only_train head: z equals the encoder's training output.
    np.testing.assert_allclose(z1, _embed(model, batch, training=True), atol=1e-5)
    loss = float(to_numpy(model.objective.contrastive_loss(*embeddings)))
    assert loss == pytest.approx(numpy_info_nce(z1, z1, temperature=0.05), rel=1e-4, abs=1e-5)


def test_test_step_loss_matches_numpy(simcse):
    simcse.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = _batch(simcse)
    logs = simcse.evaluate(tf.data.Dataset.from_tensors(batch), return_dict=True, verbose=0)
    e = _embed(simcse, batch)  # training=False: no dropout, no mlp_only_train head
    assert logs["loss"] == pytest.approx(numpy_info_nce(e, e, temperature=0.05), rel=1e-4, abs=1e-5)


def test_supervised_test_step_matches_numpy(model_dir):
    model = _simcse(model_dir, temperature=0.1, alpha=2.0)
    model.compile(optimizer="adam")
    # Three views of different widths: one forward pass per width (see embed_views).
    views = {
        "anchor": _batch(model, TINY_SENTENCES[:4]),
        "positive": _batch(model, TINY_SENTENCES[4:]),
        "negative": _batch(model, TINY_SENTENCES[2:6][::-1]),
    }
    assert len({int(v["token_ids"].shape[1]) for v in views.values()}) > 1
    loss = float(to_numpy(model.test_step(views)["loss"]))
    za, zp, zn = (_embed(model, views[k]) for k in ("anchor", "positive", "negative"))
    expected = numpy_info_nce(za, zp, temperature=0.1, hard_negatives=zn, alpha=2.0)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_views_of_different_widths_are_not_padded_to_the_longest(model_dir):
    model = _simcse(model_dir, alpha=1.0)
    short = _batch(model, TINY_SENTENCES[:4])
    width = int(short["token_ids"].shape[1])
    long = {k: tf.pad(v, [[0, 0], [0, 5]]) for k, v in _batch(model, TINY_SENTENCES[4:8]).items()}
    seen = []
    embed = model.encoder.embed  # the encoder's forward pass (`call` is `embed`)

    def spy(inputs, *args, **kwargs):
        seen.append(tuple(inputs["token_ids"].shape))
        return embed(inputs, *args, **kwargs)

    model.encoder.embed = spy
    try:
        za, zp, zn = model.embed_views({"anchor": short, "positive": long, "negative": short}, training=False)
    finally:
        del model.encoder.embed
    # anchor and negative share one pass at their own width; the wider positive gets its own.
    assert sorted(seen) == sorted([(8, width), (4, int(long["token_ids"].shape[1]))])
    np.testing.assert_allclose(to_numpy(za), _embed(model, short), atol=1e-5)
    np.testing.assert_allclose(to_numpy(zp), _embed(model, long), atol=1e-5)
    np.testing.assert_allclose(to_numpy(zn), _embed(model, short), atol=1e-5)


@pytest.fixture(scope="module")
def trained(model_dir):
    """30 seeded steps of Adam(1e-3) on one fixed batch, as 3 epochs of 10 steps."""
    keras.utils.set_random_seed(0)
    model = _simcse(model_dir)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = {v.path: to_numpy(v).copy() for v in model.encoder.weights}
    ds = tf.data.Dataset.from_tensors(_batch(model)).repeat()
    history = model.fit(ds, epochs=3, steps_per_epoch=10, verbose=0)
    return model, history.history, before


@pytest.mark.large
def test_fit_lowers_the_loss(trained):
    _, history, _ = trained
    losses = history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    assert history["learning_rate"][-1] == pytest.approx(1e-3)


def test_fit_trains_encoder_but_not_bert_pooled_dense(trained):
    model, _, before = trained
    pooled_dense = model.encoder.backbone.pooled_dense
    assert not pooled_dense.trainable
    assert not any(v.path.startswith(pooled_dense.path) for v in model.trainable_variables)
    for v in pooled_dense.weights:
        np.testing.assert_array_equal(to_numpy(v), before[v.path])
    changed = {v.path for v in model.encoder.weights if not np.array_equal(to_numpy(v), before[v.path])}
    # The SimCSE pooler's MLP head and the transformer are trained.
    assert any("pooler" in p for p in changed)
    assert any("token_embedding" in p for p in changed)
    assert any("transformer_layer_1" in p for p in changed)


@pytest.mark.large
def test_fit_on_unsup_dataset(model_dir):
    model = _simcse(model_dir, pooler_type="avg", mlp_only_train=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    ds = unsup_dataset(TINY_SENTENCES, model.encoder.preprocessor, batch_size=4, seed=1, dynamic_padding=True)
    steps = []
    count = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch))
    history = model.fit(ds, epochs=2, verbose=0, callbacks=[count])
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
    assert steps == [0, 1, 0, 1]  # 8 sentences / batch 4, per epoch


@pytest.mark.large
def test_supervised_triplets_train(model_dir):
    model = _simcse(model_dir, alpha=1.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    pre = model.encoder.preprocessor
    triplets = {
        "anchor": pre(tf.constant(TINY_SENTENCES)),
        "positive": pre(tf.constant(TINY_SENTENCES[1:] + TINY_SENTENCES[:1])),
        "negative": pre(tf.constant(TINY_SENTENCES[::-1])),
    }
    ds = tf.data.Dataset.from_tensor_slices(triplets).batch(4, drop_remainder=True)
    before = to_numpy(model.encoder.backbone.token_embedding.embeddings).copy()
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(to_numpy(model.encoder.backbone.token_embedding.embeddings), before)


def test_bad_batch_format_raises(simcse):
    batch = _batch(simcse)
    with pytest.raises(ValueError, match="'anchor', 'positive'.*got keys \\['query'\\]"):
        simcse.embed_views({"query": batch})
    with pytest.raises(ValueError, match="got keys \\['anchor', 'negative'\\]"):
        simcse.embed_views({"anchor": batch, "negative": batch})
    model = SimCSE(simcse.encoder)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="Training batches must be"):
        model.fit(tf.data.Dataset.from_tensors({"query": batch}), epochs=1, verbose=0)


def test_invalid_settings_raise(simcse):
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        SimCSE(simcse.encoder, temperature=0)
    with pytest.raises(ValueError, match="alpha must be > 0, got -1"):
        SupervisedSimCSE(simcse.encoder, alpha=-1)


def test_serialization(model_dir):
    model = _simcse(model_dir, temperature=0.07, alpha=2.0)
    revived = run_serialization_test(model)
    assert revived.objective.temperature == 0.07 and revived.objective.alpha == 2.0
    assert revived.encoder.pooler_type == "cls" and revived.encoder.mlp_only_train
    assert not revived.encoder.backbone.pooled_dense.trainable
