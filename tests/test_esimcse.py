"""Tests for `tf_esimcse.models.esimcse.ESimCSE`: EMA, the momentum queue, the loss, `fit`.

Every number is checked against a computation made outside the train step: NumPy for the EMA
and the loss, `tiny_hf.numpy_bert_forward` (plain NumPy BERT) or an independent `BertEncoder`
copy for the momentum keys. The mechanics tests call `train_step` eagerly (fast on a tiny
model); the `fit` test trains on the compiled graph (eager, graph, XLA and two replicas against each
other: tests/test_objectives.py).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import l2_normalize_np
from test_case import numpy_info_nce
from test_case import run_serialization_test
from test_case import tiny_encoder
from test_case import to_numpy
from tiny_hf import numpy_bert_forward
from tf_esimcse.backbones import BertEncoder
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.data.pipeline import esimcse_dataset
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor
from tf_esimcse.models.esimcse import ESimCSE
from tf_esimcse.models.simcse import SimCSE

SEQ_LEN = 16
BATCH = 8
HIDDEN = 32
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox", "jumped",
         "over", "lazy", "is", "play", "run", "cafe", "naive", "resume"]


def make_sentences(n, seed=0, min_words=3, max_words=12):
    """`n` distinct random sentences over the tiny vocabulary."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        sentence = " ".join(rng.choice(WORDS, size=rng.integers(min_words, max_words + 1)))
        if sentence not in out:
            out.append(sentence)
    return out


@pytest.fixture(scope="module")
def batches(model_dir):
    """Three fixed {"anchor", "positive"} batches of 8 (positive = word-repeated anchor)."""
    preprocessor = SentencePreprocessor(load_tokenizer(str(model_dir)), sequence_length=SEQ_LEN)
    ds = esimcse_dataset(make_sentences(3 * BATCH), preprocessor, batch_size=BATCH, shuffle=False, seed=1)
    out = list(ds)
    assert len(out) == 3
    return out


def _encoder(model_dir, dropout=0.0):
    return tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True, dropout=dropout, sequence_length=SEQ_LEN)


def _esimcse(model_dir, dropout=0.0, learning_rate=0.05, jit_compile=False, encoder=None, **kwargs):
    model = ESimCSE(encoder or _encoder(model_dir, dropout), **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), jit_compile=jit_compile)
    return model


def _numpy(variables):
    return [np.array(to_numpy(v)) for v in variables]


def _step(model, batch):
    """One eager train step from a fresh loss tracker; returns the step's loss."""
    model.loss_tracker.reset_state()
    return float(to_numpy(model.train_step(batch)["loss"]))


def _train_embeddings(encoder, batch):
    """z1, z2 as the train step sees them (training=True: dropout and the MLP head)."""
    z1 = to_numpy(encoder(batch["anchor"], training=True))
    z2 = to_numpy(encoder(batch["positive"], training=True))
    return z1, z2


def _mlp(encoder):
    kernel, bias = _numpy(encoder.pooler.mlp.weights)
    return kernel.astype(np.float64), bias.astype(np.float64)


def _twin_encoder(model_dir, encoder, dropout=0.0):
    """A second encoder with the same weights (the MLP head is randomly initialised)."""
    twin = _encoder(model_dir, dropout)
    twin.set_weights(encoder.get_weights())
    return twin


# --- (1) EMA ------------------------------------------------------------------------------------


@pytest.mark.large
@pytest.mark.parametrize("momentum", [0.0, 0.7, 1.0])
def test_ema_uses_online_weights_from_before_the_update(model_dir, batches, momentum):
    model = _esimcse(model_dir, momentum=momentum, queue_size=16)
    online = model.encoder.backbone.weights
    target = model.momentum_backbone.weights
    assert [w.path for w in target] == [w.path for w in online]
    assert len(target) == len(online) > 0
    assert not model.momentum_backbone.trainable
    assert model.momentum_backbone.trainable_weights == []
    # The momentum backbone starts as a copy of the (pretrained) online backbone ...
    for t, o in zip(_numpy(target), _numpy(online)):
        np.testing.assert_array_equal(t, o)
    # ... with variables of its own.
    assert {id(v) for v in target}.isdisjoint(id(v) for v in online)

    # Make the two differ, so that the EMA is visible.
    rng = np.random.default_rng(0)
    for v in target:
        v.assign(to_numpy(v) + rng.normal(scale=0.05, size=v.shape).astype("float32"))
    old_target, old_online = _numpy(target), _numpy(online)

    _step(model, batches[0])
    new_target, new_online = _numpy(target), _numpy(online)

    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(old_online, new_online)), "the optimizer did not update"
    for path, new, t, o in zip([w.path for w in target], new_target, old_target, old_online):
        expected = momentum * t.astype(np.float64) + (1.0 - momentum) * o.astype(np.float64)
        np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-6, err_msg=path)
    if momentum == 0.0:
        for new, o in zip(new_target, old_online):
            np.testing.assert_array_equal(new, o)  # a copy of the pre-update online weights
    if momentum == 1.0:
        for new, t in zip(new_target, old_target):
            np.testing.assert_array_equal(new, t)  # frozen
    if 0.0 < momentum < 1.0:
        # The post-update online weights would give a different result.
        post = [momentum * t + (1.0 - momentum) * o for t, o in zip(old_target, new_online)]
        assert max(np.abs(n - p).max() for n, p in zip(new_target, post)) > 1e-5


# --- (2) queue ----------------------------------------------------------------------------------


@pytest.mark.large
@pytest.mark.parametrize("momentum", [1.0, 0.5])
def test_queue_holds_momentum_keys_of_each_batch_fifo(model_dir, batches, momentum):
    """Keys = momentum backbone (dropout off) + the live MLP head (before the optimizer update),
    written FIFO into a ring of 20 slots; computed here without the model's own key code."""
    size = 20
    # Online dropout on: keys must still be deterministic (momentum backbone in inference mode).
    model = _esimcse(model_dir, dropout=0.1, momentum=momentum, queue_size=size)
    queue = model.queue
    embeddings, mask = (to_numpy(t) for t in queue.negatives())
    assert embeddings.shape == (size, HIDDEN)
    assert int(to_numpy(queue.count)) == 0 and not mask.any()
    assert float(to_numpy(queue.fill)) == 0.0

    expected_rows = np.zeros((size, HIDDEN))
    momentum_weights = _numpy(model.momentum_backbone.weights)
    independent = BertEncoder.from_config(model.momentum_backbone.get_config())
    for k, batch in enumerate(batches, start=1):
        anchor = {key: to_numpy(v) for key, v in batch["anchor"].items()}
        kernel, bias = _mlp(model.encoder)
        online_before = _numpy(model.encoder.backbone.weights)
        if momentum == 1.0:
            # The momentum backbone never moves: plain NumPy BERT on the checkpoint's weights.
            cls = numpy_bert_forward(model_dir, anchor["token_ids"], anchor["padding_mask"])["sequence_output"][:, 0]
        else:
            momentum_weights = [momentum * m + (1.0 - momentum) * o for m, o in zip(momentum_weights, online_before)]
            independent.set_weights(momentum_weights)
            outputs = independent(
                {"token_ids": anchor["token_ids"], "segment_ids": np.zeros_like(anchor["token_ids"]),
                 "padding_mask": anchor["padding_mask"]},
                training=False,
            )
            cls = to_numpy(outputs["sequence_output"])[:, 0].astype(np.float64)
        keys = np.tanh(cls @ kernel + bias)
        # What the online backbone (not the momentum one) would give; differs from step 2 on.
        online_keys = np.tanh(
            to_numpy(model.encoder.backbone(
                {"token_ids": anchor["token_ids"], "segment_ids": np.zeros_like(anchor["token_ids"]),
                 "padding_mask": anchor["padding_mask"]}, training=False)["sequence_output"])[:, 0] @ kernel + bias
        )

        _step(model, batch)

        slots = ((k - 1) * BATCH + np.arange(BATCH)) % size
        expected_rows[slots] = keys
        count = min(k * BATCH, size)
        assert int(to_numpy(queue.count)) == count
        assert int(to_numpy(queue.pointer)) == (k * BATCH) % size
        assert float(to_numpy(queue.fill)) == pytest.approx(count / size)
        embeddings, mask = (to_numpy(t) for t in queue.negatives())
        np.testing.assert_array_equal(mask, np.arange(size) < count)
        # Compared as directions: the loss L2-normalises the queue, so the scale is free.
        np.testing.assert_allclose(
            l2_normalize_np(embeddings[mask]), l2_normalize_np(expected_rows[mask]), atol=2e-4,
            err_msg=f"queue after step {k}",
        )
        np.testing.assert_array_equal(embeddings[~mask], 0.0)
        if k >= 2:
            assert np.abs(l2_normalize_np(online_keys) - l2_normalize_np(keys)).max() > 1e-3
    # Step 3 wrapped around: slots 16..19 and 0..3 hold batch 3, slots 4..7 the last rows of batch 1.
    assert int(to_numpy(queue.pointer)) == 4


def _numpy_cls_states(model_dir, view):
    view = {key: to_numpy(v) for key, v in view.items()}
    return numpy_bert_forward(model_dir, view["token_ids"], view["padding_mask"])["sequence_output"], view


def test_queue_smaller_than_the_batch_keeps_the_newest_keys(model_dir, batches):
    model = _esimcse(model_dir, momentum=1.0, queue_size=5)
    kernel, bias = _mlp(model.encoder)
    states, _ = _numpy_cls_states(model_dir, batches[0]["anchor"])
    keys = np.tanh(states[:, 0] @ kernel + bias)
    _step(model, batches[0])
    embeddings, mask = (to_numpy(t) for t in model.queue.negatives())
    assert mask.all() and int(to_numpy(model.queue.count)) == 5
    # The last 5 of the batch's 8 keys, as if written one after the other into 5 slots.
    slots = (3 + np.arange(5)) % 5
    np.testing.assert_allclose(l2_normalize_np(embeddings[slots]), l2_normalize_np(keys[3:]), atol=2e-4)


def test_keys_use_the_encoders_own_pooler(model_dir, batches):
    """With an `avg` encoder the keys are the masked mean of the momentum states (no MLP)."""
    encoder = tiny_encoder(model_dir, pooler_type="avg", dropout=0.1, sequence_length=SEQ_LEN)
    model = _esimcse(model_dir, encoder=encoder, momentum=1.0, queue_size=8)
    states, view = _numpy_cls_states(model_dir, batches[0]["anchor"])
    mask = view["padding_mask"][:, :, None].astype(np.float64)
    keys = (states * mask).sum(axis=1) / mask.sum(axis=1)
    _step(model, batches[0])
    embeddings, _ = (to_numpy(t) for t in model.queue.negatives())
    np.testing.assert_allclose(l2_normalize_np(embeddings), l2_normalize_np(keys), atol=2e-4)


def test_queue_is_filled_by_plain_views_too(model_dir, batches):
    """A plain {"token_ids", "padding_mask"} batch (dropout-only positives) still enqueues keys."""
    model = _esimcse(model_dir, dropout=0.1, queue_size=12)
    loss = _step(model, batches[0]["anchor"])
    assert np.isfinite(loss)
    assert int(to_numpy(model.queue.count)) == BATCH
    _step(model, batches[1]["anchor"])
    assert int(to_numpy(model.queue.count)) == 12


# --- (3) loss -----------------------------------------------------------------------------------


@pytest.mark.large
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_loss_is_info_nce_over_positive_and_filled_queue(model_dir, batches, temperature):
    model = _esimcse(model_dir, dropout=0.0, temperature=temperature, queue_size=20, momentum=0.9)
    simcse = SimCSE(_twin_encoder(model_dir, model.encoder), temperature=temperature)
    simcse.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=False)

    # Step 1: the queue is empty -> plain SimCSE on (anchor, word-repeated positive).
    z1, z2 = _train_embeddings(model.encoder, batches[0])
    expected = numpy_info_nce(z1, z2, temperature=temperature)
    loss = _step(model, batches[0])
    assert loss == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert _step(simcse, batches[0]) == pytest.approx(loss, rel=1e-5, abs=1e-5)

    # Steps 2 and 3: the queue (8, then 16 of 20 slots filled) adds negative columns.
    for batch in batches[1:]:
        queue, mask = (to_numpy(t) for t in model.queue.negatives())
        assert 0 < mask.sum() < len(mask)
        z1, z2 = _train_embeddings(model.encoder, batch)
        expected = numpy_info_nce(z1, z2, temperature=temperature, queue=queue, queue_mask=mask)
        loss = _step(model, batch)
        assert loss == pytest.approx(expected, rel=1e-5, abs=1e-5)
        if temperature >= 0.5:
            # The check is sensitive (at T=0.05 a tiny random model's queue columns are ~exp(-20),
            # numerically invisible): without the queue the loss is another number ...
            assert abs(expected - numpy_info_nce(z1, z2, temperature=temperature)) > 1e-4
            # ... and so is it with the empty (zero) slots counted as negatives.
            unmasked = numpy_info_nce(z1, z2, temperature=temperature, queue=queue)
            assert abs(expected - unmasked) > 1e-3


# --- (4) use_momentum_queue=False ----------------------------------------------------------------


@pytest.mark.large
def test_without_momentum_queue_it_is_simcse_on_the_views(model_dir, batches):
    model = _esimcse(model_dir, use_momentum_queue=False, queue_size=16)
    assert model.momentum_backbone is None
    assert model.queue is None
    assert len(model.weights) == len(model.encoder.weights)
    simcse = SimCSE(_twin_encoder(model_dir, model.encoder))
    simcse.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=False)
    for batch in batches[:2]:
        assert _step(model, batch) == pytest.approx(_step(simcse, batch), rel=1e-5, abs=1e-5)

    before = _numpy(model.encoder.trainable_weights)
    ds = tf.data.Dataset.from_tensors(batches[0]).repeat()
    history = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert "queue_fill" not in history.history
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, _numpy(model.encoder.trainable_weights)))


# --- (5) queue reset per epoch -------------------------------------------------------------------


class _CountRecorder(keras.callbacks.Callback):
    def __init__(self, queue):
        super().__init__()
        self.queue = queue
        self.counts = []

    def on_train_batch_end(self, batch, logs=None):
        self.counts.append(int(to_numpy(self.queue.count)))


def _two_batch_dataset(batches):
    return tf.data.Dataset.from_tensors(batches[0]).concatenate(tf.data.Dataset.from_tensors(batches[1])).repeat()


@pytest.mark.large
@pytest.mark.parametrize("reset", [True, False])
def test_fit_empties_the_queue_at_each_epoch_start(model_dir, batches, reset):
    # The data epoch is the two batches: the model empties its queue when the step counter says so.
    model = _esimcse(model_dir, queue_size=64, momentum=0.9, reset_queue_each_epoch=reset, steps_per_data_epoch=2)
    recorder = _CountRecorder(model.queue)
    history = model.fit(_two_batch_dataset(batches), epochs=2, steps_per_epoch=2, callbacks=[recorder], verbose=0,
                        shuffle=False)
    if reset:
        assert recorder.counts == [8, 16, 8, 16]
        assert int(to_numpy(model.queue.count)) == 16  # only epoch 2's steps
        assert history.history["queue_fill"] == pytest.approx([16 / 64, 16 / 64])
    else:
        assert recorder.counts == [8, 16, 24, 32]
        assert int(to_numpy(model.queue.count)) == 32
        assert history.history["queue_fill"] == pytest.approx([16 / 64, 32 / 64])


def test_queue_reset_empties_the_queue(model_dir, batches):
    model = _esimcse(model_dir, queue_size=16)
    _step(model, batches[0])
    assert int(to_numpy(model.queue.count)) == BATCH
    model.queue.reset_if(False)
    assert int(to_numpy(model.queue.count)) == BATCH
    model.queue.reset_if(True)
    embeddings, mask = (to_numpy(t) for t in model.queue.negatives())
    assert int(to_numpy(model.queue.count)) == 0 and int(to_numpy(model.queue.pointer)) == 0
    assert not mask.any() and not embeddings.any()


# --- (6) training with fit ----------------------------------------------------------------------
# (Graph, eager, XLA and two replicas give the same losses and weights, queue and momentum encoder
# included: tests/test_objectives.py's test_esimcse_objective, through run_objective_test.)


def _three_batch_dataset(batches):
    ds = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(batch))
    return ds


@pytest.mark.large
def test_fit_lowers_the_loss_on_fixed_data(model_dir, batches):
    """30 steps over 3 fixed batches (a queue of 2 batches never holds the current sentences).

    Dropout is 0 here: the positives come from word repetition alone. (On this tiny random
    model the inference-mode loss, which has neither the queue nor the training-only MLP head,
    need not fall while the training objective does; the real-model runs in README do both.)
    """
    keras.utils.set_random_seed(0)
    model = _esimcse(model_dir, dropout=0.0, queue_size=16, momentum=0.995, learning_rate=0.003,
                     reset_queue_each_epoch=False)
    data = _three_batch_dataset(batches)
    # The training objective (with the queue's negatives and the training-only MLP head) is what
    # fit optimizes; compare its mean over the first and the last 6 steps.
    history = model.fit(data.repeat(), epochs=5, steps_per_epoch=6, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert history.history["queue_fill"][-1] == 1.0
    # A wide margin (1.78 -> 0.19 here): a loss that barely moves would be at the mercy of
    # thread scheduling in the float reductions.
    assert losses[-1] < 0.5 * losses[0], losses


# --- (7) config and weights round trips -----------------------------------------------------------


def test_get_config_round_trip(model_dir):
    model = ESimCSE(_encoder(model_dir), temperature=0.1, queue_size=24, momentum=0.99, reset_queue_each_epoch=False)
    config = model.get_config()
    assert config["temperature"] == 0.1
    assert config["queue_size"] == 24
    assert config["momentum"] == 0.99
    assert config["use_momentum_queue"] is True
    assert config["reset_queue_each_epoch"] is False
    assert "hard_negative_weight" not in config  # not an ESimCSE setting
    revived = run_serialization_test(model)
    for other in (revived, ESimCSE.from_config(model.get_config())):
        assert type(other) is ESimCSE
        settings = other.objective
        assert (settings.temperature, settings.queue_size, settings.momentum) == (0.1, 24, 0.99)
        assert settings.use_momentum_queue and not settings.reset_queue_each_epoch
        assert other.queue.size == 24 and other.queue.dim == HIDDEN
        assert other.momentum_backbone is not None
        assert other.encoder.pooler_type == "cls" and other.encoder.mlp_only_train


def test_get_config_round_trip_without_momentum_queue(model_dir):
    model = ESimCSE(_encoder(model_dir), use_momentum_queue=False)
    revived = ESimCSE.from_config(model.get_config())
    assert revived.objective.use_momentum_queue is False
    assert revived.queue is None and revived.momentum_backbone is None


def test_save_and_load_weights_restore_queue_and_momentum_backbone(model_dir, batches, tmp_path):
    model = _esimcse(model_dir, momentum=0.5, queue_size=20)
    _step(model, batches[0])
    _step(model, batches[1])
    path = str(tmp_path / "esimcse.weights.h5")
    model.save_weights(path)

    other = _esimcse(model_dir, momentum=0.5, queue_size=20)  # empty queue, another MLP head
    assert int(to_numpy(other.queue.count)) == 0
    other.load_weights(path)
    assert int(to_numpy(other.queue.count)) == 16
    assert int(to_numpy(other.queue.pointer)) == 16
    np.testing.assert_array_equal(to_numpy(other.queue.queue), to_numpy(model.queue.queue))
    for a, b in zip(_numpy(other.momentum_backbone.weights), _numpy(model.momentum_backbone.weights)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_numpy(other.weights), _numpy(model.weights)):
        np.testing.assert_array_equal(a, b)
    # The momentum backbone is its own state (not the online weights again).
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(_numpy(model.momentum_backbone.weights),
                                                          _numpy(model.encoder.backbone.weights)))
    # Training goes on identically from the restored state (SGD has no slots to restore).
    assert _step(other, batches[2]) == pytest.approx(_step(model, batches[2]), rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(to_numpy(other.queue.queue), to_numpy(model.queue.queue), atol=1e-6)


# --- (8) invalid settings --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_encoder(model_dir):
    return _encoder(model_dir)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": 1.5}, "momentum"),
        ({"momentum": float("nan")}, "momentum"),
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": -4}, "queue_size"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_invalid_settings_raise_value_error(shared_encoder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ESimCSE(shared_encoder, **kwargs)
