"""DiffCSE: the generator's edits and "replaced" labels against an independent computation, the
loss against NumPy through the shared objective check (eager, graph, XLA, two replicas), the RTD
gradient reaching the sentence encoder, a frozen generator, and a saved encoder without the
generator or the discriminator."""
import json

import keras
import keras_hub
import numpy as np
import pytest
import scipy.special
import tensorflow as tf

from test_case import TINY_SENTENCES, TINY_VOCAB_SIZE, numpy_info_nce, tiny_encoder, to_numpy
from test_recipes import _argv, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.data.diffcse_views import diffcse_views
from tf_esimcse.objectives.diffcse import DiffCSEObjective
from training_test_case import run_objective_test

LAMBDA = 0.3  # large, so that the RTD term matters in the checks


def write_tiny_generator(path, vocabulary_size=TINY_VOCAB_SIZE, seed=3):
    """A tiny random keras-hub BertMaskedLM preset (1 layer, hidden 16) sharing the tiny vocabulary."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=vocabulary_size, num_layers=1, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32, max_sequence_length=64)
    keras_hub.models.BertMaskedLM(backbone, preprocessor=None).save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    return write_tiny_generator(tmp_path_factory.mktemp("generator") / "mlm")


def _batches(model_dir, n=3, seed=0):
    encoder = tiny_encoder(model_dir)
    ds = diffcse_views(TINY_SENTENCES * 2, encoder.preprocessor, masking_ratio=0.5, batch_size=8, seed=seed,
                       shuffle=False, repeat=True)
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


@pytest.mark.large
def test_views_are_the_sentence_and_two_masked_copies(model_dir):
    batch = _batches(model_dir, n=1)[0]
    anchor, m1, m2 = batch["anchor"], batch["masked_1"], batch["masked_2"]
    assert anchor["token_ids"].shape == m1["token_ids"].shape == m2["token_ids"].shape
    np.testing.assert_array_equal(anchor["padding_mask"], m1["padding_mask"])  # aligned, same lengths
    assert (m1["token_ids"] != anchor["token_ids"]).any() and (m1["token_ids"] != m2["token_ids"]).any()
    first = anchor["token_ids"][:, 0]
    np.testing.assert_array_equal(m1["token_ids"][:, 0], first)  # [CLS] never masked


@pytest.mark.large
def test_replaced_labels_equal_an_independent_computation(model_dir, generator_dir):
    encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True)
    objective = DiffCSEObjective(generator_dir, generator_dropout=False, batchnorm=False)
    ContrastiveModel(encoder, objective)
    x = _batches(model_dir, n=1)[0]
    edited, replaced, mask = (to_numpy(t) for t in objective.generate(tf.nest.map_structure(tf.constant, x)))

    # Independently: keras-hub's own masked LM on every position, argmax in NumPy.
    generator = keras_hub.models.MaskedLM.from_preset(generator_dir, preprocessor=None)
    original = np.concatenate([x["anchor"]["token_ids"]] * 2)
    pad = np.concatenate([x["anchor"]["padding_mask"]] * 2).astype(bool)
    masked = np.concatenate([x["masked_1"]["token_ids"], x["masked_2"]["token_ids"]])
    positions = np.tile(np.arange(masked.shape[1]), (masked.shape[0], 1))
    logits = to_numpy(generator.predict({"token_ids": masked, "padding_mask": pad, "segment_ids": 0 * masked,
                                         "mask_positions": positions}, verbose=0))
    fill = logits.argmax(-1)
    fill[:, 0] = encoder.preprocessor.tokenizer.cls_token_id
    expected_replaced = (fill != original) & pad
    np.testing.assert_array_equal(replaced, expected_replaced.astype(np.int32))
    np.testing.assert_array_equal(edited, np.where(pad, fill, 0))
    np.testing.assert_array_equal(mask, pad.astype(np.int32))
    assert 0 < expected_replaced.sum() < pad.sum()


def _numpy_loss(z, objective, step):
    """InfoNCE in NumPy plus lambda x the RTD cross-entropy in NumPy over non-padding tokens, from
    the discriminator's logits on the generator's edits, conditioned on the unnormalised
    embeddings (computed here from the encoder's backbone and pooler)."""
    encoder, x = step["encoder"], tf.nest.map_structure(tf.constant, step["x"])
    anchor = x["anchor"]
    outputs = encoder.backbone_outputs(anchor, training=True)
    pooled = to_numpy(encoder.pooler(dict(outputs, padding_mask=anchor["padding_mask"]), training=True))
    contrastive = numpy_info_nce(z[0], z[1], temperature=0.05)
    edited, replaced, mask = objective.generate(x)
    first = np.concatenate([pooled, pooled]).astype(np.float32)
    out = objective.discriminator.call_with_first_token_embedding(
        {"token_ids": edited, "padding_mask": mask, "segment_ids": tf.zeros_like(edited)}, first, training=True)
    logits = np.asarray(to_numpy(objective.rtd_head(out["sequence_output"])), np.float64)
    log_probs = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    labels, weights = to_numpy(replaced), to_numpy(mask).astype(np.float64)
    nll = -np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    return contrastive + LAMBDA * (nll * weights).sum() / weights.sum()


@pytest.mark.large
def test_diffcse_objective(model_dir, generator_dir, mirrored_strategy):
    # Deterministic generator and no BatchNorm, so that every mode and two replicas compute the same.
    def make():
        return DiffCSEObjective(generator_dir, rtd_weight=LAMBDA, batchnorm=False, generator_dropout=False)

    logs = run_objective_test(model_dir, make, _batches(model_dir), _numpy_loss, mirrored_strategy)
    assert logs[0]["rtd_loss"] > 0 and logs[0]["contrastive_loss"] > 0
    assert logs[0]["loss"] == pytest.approx(logs[0]["contrastive_loss"] + LAMBDA * logs[0]["rtd_loss"], rel=1e-5)
    assert 0 < logs[0]["replaced_fraction"] < 1
    assert 0 <= logs[0]["rtd_accuracy_replaced"] <= 1 and 0 <= logs[0]["rtd_accuracy_kept"] <= 1


@pytest.mark.large
def test_flat_diffcse_model_is_the_contrastive_model_with_the_objective(model_dir, generator_dir):
    """`DiffCSE(encoder, generator, ...)` builds `DiffCSEObjective` from its arguments, writes
    them back flat in `get_config`, and trains as `ContrastiveModel` + that objective does."""
    from tf_esimcse import DiffCSE
    from test_case import run_serialization_test

    def build(flat):
        keras.utils.set_random_seed(0)
        encoder = tiny_encoder(model_dir, pooler_type="cls_before_pooler", dropout=0.0)
        settings = dict(rtd_weight=LAMBDA, batchnorm=False, generator_dropout=False)
        if flat:
            return DiffCSE(encoder, generator_dir, max_grad_norm=1.0, **settings)
        return ContrastiveModel(encoder, DiffCSEObjective(generator_dir, **settings), max_grad_norm=1.0)

    model = build(flat=True)
    config = model.get_config()
    assert "objective" not in config and config["generator"] == generator_dir and config["rtd_weight"] == LAMBDA
    revived = run_serialization_test(model)
    assert revived.objective.rtd_weight == LAMBDA and not revived.objective.batchnorm
    x = tf.nest.map_structure(tf.constant, _batches(model_dir, n=1)[0])
    losses = []
    for m in (model, build(flat=False)):
        m.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
        losses.append(m.train_on_batch(x, return_dict=True)["loss"])
    assert losses[0] == losses[1]


@pytest.mark.large
def test_rtd_gradient_reaches_the_encoder_and_the_generator_stays_frozen(model_dir, generator_dir):
    keras.utils.set_random_seed(0)
    encoder = tiny_encoder(model_dir, pooler_type="cls_before_pooler", dropout=0.1)
    objective = DiffCSEObjective(generator_dir, loss_weights={"contrastive": 0.0, "rtd": 1.0})
    model = ContrastiveModel(encoder, objective, max_grad_norm=1.0)
    x = tf.nest.map_structure(tf.constant, _batches(model_dir, n=1)[0])
    context = objective.before_step(encoder, x, tf.constant(False))
    with tf.GradientTape() as tape:
        terms = objective.loss_terms(encoder, x, model.embed_views(x, training=True), context, training=True)
    grads = tape.gradient(terms["rtd"], encoder.backbone.trainable_variables)
    assert all(g is not None for g in grads)
    assert sum(float(tf.norm(tf.convert_to_tensor(g))) for g in grads) > 0  # through the [CLS] input

    generator_before = [w.copy() for w in objective.generator.get_weights()]
    assert not any(v is w for v in model.trainable_variables for w in objective.generator.weights)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    ds = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda *t: np.stack(t), *_batches(model_dir, 2)))
    model.fit(ds, epochs=1, verbose=0)
    for before, after in zip(generator_before, objective.generator.get_weights()):
        np.testing.assert_array_equal(before, after)
    # BatchNorm statistics of the projection head moved (it is used in training).
    assert objective.projection is not None and any(
        not np.allclose(w, 0.0) for w in objective.projection.layers[-1].get_weights())


@pytest.mark.large
def test_recipe_saves_an_encoder_without_generator_or_discriminator(workspace, generator_dir, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    results = load_recipe("diffcse").main(_argv(workspace, output_dir, steps=2, generator=generator_dir))
    assert results["status"] == "ok"
    saved = SentenceEncoder.from_pretrained(str(output_dir / "model"))
    plain = tiny_encoder(workspace["model"], pooler_type="cls_before_pooler")
    assert len(saved.weights) == len(plain.weights)
    assert json.loads((output_dir / "model" / "tf_esimcse.json").read_text())["pooler_type"] == "cls_before_pooler"
    assert results["config"]["batchnorm"] is True and results["config"]["rtd_weight"] == 0.005


def test_missing_generator_is_a_clear_error(workspace, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="--generator is required"):
        load_recipe("diffcse").main(_argv(workspace, tmp_path / "out"))
    with pytest.raises(Exception, match="could not load a masked-LM generator"):
        load_recipe("diffcse").main(_argv(workspace, tmp_path / "out", generator=tmp_path / "nothing"))
