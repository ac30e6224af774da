"""Every objective through the shared training-model check (`training_test_case.run_objective_test`),
each against its own independent NumPy loss."""
import numpy as np
import pytest

from test_case import l2_normalize_np
from test_case import numpy_info_nce
from test_case import to_numpy
from tf_esimcse.objectives import ESimCSEObjective
from tf_esimcse.objectives import Objective
from tf_esimcse.objectives import SimCSEObjective
from tf_esimcse.objectives import SupervisedSimCSEObjective
from training_test_case import MODES
from training_test_case import run_objective_test

BATCH, LENGTH, STEPS = 8, 10, 3


def _view(rng, length=LENGTH):
    ids = rng.integers(5, 30, size=(BATCH, length)).astype("int32")
    lengths = rng.integers(3, length + 1, size=BATCH)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids[:, 0] = 2
    ids[np.arange(BATCH), lengths - 1] = 3
    return {"token_ids": ids * mask, "padding_mask": mask}


def _batches(kind, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(STEPS):
        if kind == "plain":
            out.append(_view(rng))
        elif kind == "pairs":
            out.append({"anchor": _view(rng), "positive": _view(rng, LENGTH + 3)})
        else:
            out.append({"anchor": _view(rng), "positive": _view(rng), "negative": _view(rng, LENGTH - 2)})
    return out


@pytest.mark.large
@pytest.mark.parametrize("kind", ["plain", "pairs"])
def test_simcse_objective(model_dir, mirrored_strategy, kind):
    def numpy_loss(z, objective):
        return numpy_info_nce(z[0], z[1], temperature=0.1)

    # eager/XLA/two replicas on pairs; one-view batches share that step machinery
    logs = run_objective_test(model_dir, lambda: SimCSEObjective(temperature=0.1), _batches(kind), numpy_loss,
                              mirrored_strategy, modes=MODES if kind == "pairs" else ())
    assert logs[0]["contrastive_loss"] == pytest.approx(logs[0]["loss"])


@pytest.mark.large
def test_same_dropout_mask_uses_the_anchor_as_its_own_positive(model_dir, mirrored_strategy):
    """SimCSE's "fixed 0.1" row: one pass; the positive is the anchor's own embedding."""
    def numpy_loss(z, objective):
        assert len(z) == 1
        return numpy_info_nce(z[0], z[0], temperature=0.1)

    run_objective_test(model_dir, lambda: SimCSEObjective(temperature=0.1, same_dropout_mask=True),
                       _batches("plain"), numpy_loss, mirrored_strategy)
    with pytest.raises(ValueError, match="one-view"):
        SimCSEObjective(same_dropout_mask=True).views(_batches("pairs")[0])


@pytest.mark.large
@pytest.mark.parametrize("kind", ["plain", "pairs"])
def test_two_encoders_embed_positives_with_a_second_backbone(model_dir, mirrored_strategy, kind):
    """SimCSE's "two encoders" row: the positives' embeddings come from the second backbone
    (computed here by loading its weights into the encoder and calling it as a user would)."""
    def numpy_loss(z, objective, step):
        encoder, x = step["encoder"], step["x"]
        positive = x if "token_ids" in x else x["positive"]
        own = encoder.backbone.get_weights()
        encoder.backbone.set_weights(objective.positive_backbone.get_weights())
        try:
            z2 = np.asarray(to_numpy(encoder(positive, training=True)), np.float64)
        finally:
            encoder.backbone.set_weights(own)
        return numpy_info_nce(z[0], z2, temperature=0.1)

    run_objective_test(model_dir, lambda: SimCSEObjective(temperature=0.1, two_encoders=True),
                       _batches(kind), numpy_loss, mirrored_strategy, modes=MODES if kind == "plain" else ())


@pytest.mark.large
def test_two_encoders_both_train(model_dir):
    from training_test_case import _fit, _model

    model = _model(model_dir, lambda: SimCSEObjective(two_encoders=True))
    first = [np.array(w) for w in model.encoder.backbone.get_weights()]
    second = [np.array(w) for w in model.objective.positive_backbone.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))  # both start pretrained
    _fit(model, _batches("pairs"))
    after_first = model.encoder.backbone.get_weights()
    after_second = model.objective.positive_backbone.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(first, after_first))
    assert any(not np.allclose(a, b) for a, b in zip(second, after_second))
    assert any(not np.allclose(a, b) for a, b in zip(after_first, after_second))


@pytest.mark.large
def test_supervised_simcse_objective(model_dir, mirrored_strategy):
    """Paper's alpha and the official offset together: log(2) + 0.5 on each anchor's own hard negative."""

    def numpy_loss(z, objective):
        a, p, h = (l2_normalize_np(e) for e in z)
        logits = np.concatenate([a @ p.T, a @ h.T], axis=1) / 0.05
        logits[np.arange(BATCH), BATCH + np.arange(BATCH)] += np.log(2.0) + 0.5
        logits -= logits.max(axis=1, keepdims=True)
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-log_softmax[np.arange(BATCH), np.arange(BATCH)].mean())

    run_objective_test(model_dir, lambda: SupervisedSimCSEObjective(alpha=2.0, hard_negative_weight=0.5),
                       _batches("triplets"), numpy_loss, mirrored_strategy)


@pytest.mark.large
def test_esimcse_objective(model_dir, mirrored_strategy):
    """The queue (before the step) adds negatives; it fills across steps and is gathered globally."""

    def numpy_loss(z, objective):
        queue, filled = (to_numpy(t) for t in objective.queue.negatives())
        return numpy_info_nce(z[0], z[1], temperature=0.05, queue=queue, queue_mask=filled)

    logs = run_objective_test(model_dir, lambda: ESimCSEObjective(queue_size=12, momentum=0.9), _batches("pairs"),
                              numpy_loss, mirrored_strategy)
    assert [round(log["queue_fill"], 4) for log in logs] == [round(8 / 12, 4), 1.0, 1.0]


@pytest.mark.large
def test_esimcse_queue_resets_at_each_data_epoch(model_dir, mirrored_strategy):
    def numpy_loss(z, objective):
        queue, filled = (to_numpy(t) for t in objective.queue.negatives())
        return numpy_info_nce(z[0], z[1], temperature=0.05, queue=queue, queue_mask=filled)

    logs = run_objective_test(model_dir, lambda: ESimCSEObjective(queue_size=32, momentum=0.9), _batches("pairs"),
                              numpy_loss, mirrored_strategy, model_kwargs={"steps_per_data_epoch": 2},
                              modes=("xla",))  # the reset on the default path; the rest: test_esimcse_objective
    assert [log["queue_fill"] for log in logs] == pytest.approx([8 / 32, 16 / 32, 8 / 32])


def test_loss_weights_scale_the_differentiated_total():
    with pytest.raises(ValueError, match="unknown terms \\['rtd'\\]"):
        SimCSEObjective(loss_weights={"rtd": 1.0})
    assert SimCSEObjective(loss_weights={"contrastive": 0.5}).weight_of("contrastive") == 0.5
    with pytest.raises(NotImplementedError):
        Objective().loss_terms(None, None, None, None, True)
