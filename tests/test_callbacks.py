"""STSEvaluationCallback: evaluation steps, best-weight bookkeeping and restore, TensorBoard output."""
import glob
import math
import os
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse.evaluation import sts
from tf_esimcse.evaluation.callbacks import STSEvaluationCallback

NUM_DEV_PAIRS = 12


def _write_dev(root):
    """A tiny STS-B dev split: "left i" / "right i" with distinct gold scores 0..5."""
    path = root / "senteval" / "STS" / "STSBenchmark" / "sts-dev.csv"
    path.parent.mkdir(parents=True)
    gold = np.linspace(0.0, 5.0, NUM_DEV_PAIRS)
    path.write_text(
        "".join(f"g\tf\t2012\t{i:04d}\t{g:.3f}\tleft {i}\tright {i}\n" for i, g in enumerate(gold)),
        encoding="utf-8",
    )
    return root


class FakeEncoder(keras.Model):
    """Its one weight `quality` in [0, 1] sets how well cosine follows the gold order.

    "left i" embeds as e0; "right i" at angle `quality * good_i + (1 - quality) * random_i`
    from e0, where `good_i` decreases with the gold score. quality=1 gives Spearman 100.
    """

    def __init__(self):
        super().__init__()
        self.quality = self.add_weight(shape=(), initializer="zeros", trainable=False, name="quality")
        rng = np.random.default_rng(0)
        self.good = np.linspace(np.pi / 2, 0.0, NUM_DEV_PAIRS)
        self.noise = rng.uniform(0.0, np.pi / 2, NUM_DEV_PAIRS)
        self.encode_calls = 0

    def encode(self, sentences, batch_size=32):
        self.encode_calls += 1
        q = float(self.quality.numpy())
        out = []
        for s in sentences:
            side, i = s.split()
            if side == "left":
                out.append([1.0, 0.0])
            else:
                angle = q * self.good[int(i)] + (1.0 - q) * self.noise[int(i)]
                out.append([math.cos(angle), math.sin(angle)])
        return np.array(out, dtype=np.float32)


def _expected_score(quality):
    encoder = FakeEncoder()
    encoder.set_weights([np.array(quality, dtype=np.float32)])
    gold = np.linspace(0.0, 5.0, NUM_DEV_PAIRS)
    angles = [quality * encoder.good[i] + (1 - quality) * encoder.noise[i] for i in range(NUM_DEV_PAIRS)]
    return sts.spearman(np.cos(angles), gold)


def _fit(callbacks, steps_per_epoch=5, epochs=2, steps_per_execution=1):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    x = np.zeros((steps_per_epoch * 4, 3), dtype=np.float32)
    model.fit(x, np.zeros((len(x), 1)), batch_size=4, epochs=epochs, callbacks=callbacks, verbose=0)


class QualitySchedule(keras.callbacks.Callback):
    """Sets the encoder's quality after each global step from a dict (stands in for training)."""

    def __init__(self, encoder, schedule):
        super().__init__()
        self.encoder, self.schedule, self.step = encoder, schedule, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step in self.schedule:
            self.encoder.set_weights([np.array(self.schedule[self.step], dtype=np.float32)])


def test_evaluates_at_global_steps_and_restores_best(tmp_path, capsys):
    data_dir = _write_dev(tmp_path / "data")
    encoder = FakeEncoder()
    # 10 global steps over 2 epochs of 5; evaluations at 3, 6, 9 and at train end (10).
    schedule = {3: 0.3, 6: 1.0, 9: 0.6, 10: 0.0}
    new_bests = []
    callback = STSEvaluationCallback(
        encoder, data_dir, eval_every_n_steps=3, log_dir=str(tmp_path / "logs"),
        on_new_best=lambda cb, step, score: new_bests.append((step, score, float(encoder.quality.numpy()))),
    )
    _fit([QualitySchedule(encoder, schedule), callback])

    assert [h["step"] for h in callback.history] == [3, 6, 9, 10]
    for record in callback.history:
        assert record["stsb_dev"] == pytest.approx(_expected_score(schedule[record["step"]]), abs=1e-4)
        assert set(record) == {"step", "stsb_dev", "alignment", "uniformity"}
    assert callback.best_step == 6 and callback.best_score == pytest.approx(100.0)
    assert [step for step, _, _ in new_bests] == [3, 6]  # hook called on each new best, weights live
    assert new_bests[1][2] == pytest.approx(1.0)
    # Weights went to 0.0 at step 10; the best (step 6) ones are back.
    assert float(encoder.quality.numpy()) == pytest.approx(1.0)
    assert encoder.encode_calls == 4  # one encode per evaluation (unique dev sentences)
    out = capsys.readouterr().out
    assert out.count("step ") >= 4 and "best stsb_dev 100.00 at step 6" in out

    # TensorBoard event file with the three scalars at the global steps.
    files = glob.glob(os.path.join(tmp_path, "logs", "validation", "events.out.tfevents.*"))
    assert files
    seen = {}
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        for value in event.summary.value:
            seen.setdefault(value.tag, []).append(event.step)
    assert seen == {"stsb_dev_spearman": [3, 6, 9, 10], "alignment": [3, 6, 9, 10], "uniformity": [3, 6, 9, 10]}


def test_no_restore_and_no_duplicate_final_eval(tmp_path):
    data_dir = _write_dev(tmp_path / "data")
    encoder = FakeEncoder()
    callback = STSEvaluationCallback(encoder, data_dir, eval_every_n_steps=5, restore_best_weights=False,
                                     extra_metrics=False, verbose=0)
    _fit([QualitySchedule(encoder, {5: 1.0, 7: 0.2}), callback])
    assert [h["step"] for h in callback.history] == [5, 10]  # step 10 evaluated once, not twice
    assert set(callback.history[0]) == {"step", "stsb_dev"}
    assert callback.best_step == 5
    assert float(encoder.quality.numpy()) == pytest.approx(0.2)  # left as trained


def test_best_in_logs_and_steps_per_execution(tmp_path):
    data_dir = _write_dev(tmp_path / "data")
    encoder = FakeEncoder()
    encoder.set_weights([np.array(0.5, dtype=np.float32)])
    callback = STSEvaluationCallback(encoder, data_dir, eval_every_n_steps=4, verbose=0)
    history = keras.callbacks.History()
    # steps_per_execution=2: Keras reports every second batch; the step count must not halve.
    _fit([callback, history], steps_per_epoch=6, epochs=2, steps_per_execution=2)
    assert callback.global_step == 12
    assert [h["step"] for h in callback.history] == [4, 8, 12]
    assert history.history["best_stsb_dev"] == [pytest.approx(callback.best_score)] * 2


def test_rejects_bad_arguments(tmp_path):
    data_dir = _write_dev(tmp_path / "data")
    with pytest.raises(ValueError, match="monitor"):
        STSEvaluationCallback(FakeEncoder(), data_dir, monitor="loss")
    with pytest.raises(ValueError, match="eval_every_n_steps"):
        STSEvaluationCallback(FakeEncoder(), data_dir, eval_every_n_steps=0)


class BowEncoder:
    """A plain (non-Keras) encoder: bag-of-words hashing scaled by a weight."""

    def __init__(self):
        self.weights = [np.ones((1,), dtype=np.float32)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def encode(self, sentences, batch_size=128, verbose="auto"):
        self.verbose = verbose
        out = np.zeros((len(sentences), 64), dtype=np.float32)
        for i, sentence in enumerate(sentences):
            for token in sentence.split():
                out[i, zlib.crc32(token.encode()) % 64] += self.weights[0][0]
        return out


def test_real_stsb_dev_with_plain_object_encoder(data_dir):
    encoder = BowEncoder()
    callback = STSEvaluationCallback(encoder, data_dir, eval_every_n_steps=2, verbose=0)
    assert len(callback.dev_pairs.scores) == 1500
    _fit([callback], steps_per_epoch=2, epochs=1)
    (record,) = callback.history
    assert record["step"] == 2 and 10.0 < record["stsb_dev"] < 90.0
    assert 0.0 < record["alignment"] < 4.0 and -4.0 < record["uniformity"] < 0.0
    assert callback.best_step == 2
    assert encoder.verbose == 0  # no progress bar inside fit when encode() takes `verbose`


def test_resumed_run_continues_from_optimizer_step(tmp_path):
    data_dir = _write_dev(tmp_path / "data")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((12, 3), dtype=np.float32), np.zeros((12, 1))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 3 steps, e.g. restored from a backup
    callback = STSEvaluationCallback(FakeEncoder(), data_dir, eval_every_n_steps=4, verbose=0)
    model.fit(np.zeros((20, 3)), np.zeros((20, 1)), batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    assert callback.global_step == 8
    assert [h["step"] for h in callback.history] == [4, 8]


@pytest.mark.parametrize("start_is_candidate", [False, True])
def test_the_start_is_evaluated_at_step_0(tmp_path, start_is_candidate):
    """evaluate_at_start: one evaluation before step 1 (the reference). It competes for the best only
    with start_is_candidate: a start better than every trained step is then what is kept."""
    data_dir = _write_dev(tmp_path / "data")
    encoder = FakeEncoder()
    encoder.set_weights([np.array(0.9, dtype=np.float32)])  # the start is good; training makes it worse
    bests = []
    callback = STSEvaluationCallback(encoder, data_dir, eval_every_n_steps=5, extra_metrics=False, verbose=0,
                                     evaluate_at_start=True, start_is_candidate=start_is_candidate,
                                     on_new_best=lambda cb, step, score: bests.append(step))
    _fit([QualitySchedule(encoder, {1: 0.3, 7: 0.5}), callback])
    assert [h["step"] for h in callback.history] == [0, 5, 10]
    assert callback.history[0]["stsb_dev"] == pytest.approx(_expected_score(0.9))
    if start_is_candidate:
        assert bests == [0] and callback.best_step == 0
        assert float(encoder.quality.numpy()) == pytest.approx(0.9)  # the start's weights restored
    else:
        assert bests == [5, 10] and callback.best_step == 10
        assert float(encoder.quality.numpy()) == pytest.approx(0.5)


def test_a_resumed_run_does_not_evaluate_its_start_again(tmp_path):
    data_dir = _write_dev(tmp_path / "data")
    encoder = FakeEncoder()
    callback = STSEvaluationCallback(encoder, data_dir, eval_every_n_steps=5, extra_metrics=False, verbose=0,
                                     evaluate_at_start=True)
    callback.global_step = 5  # as on_train_begin finds it after a restored backup
    _fit([callback], epochs=1)
    assert [h["step"] for h in callback.history] == [10]
