"""Tests for `tf_esimcse.schedules`: linear decay clamped at 0, warm-up shape, config round trip."""
import json

import keras
import numpy as np
import pytest

from test_case import run_serialization_test
from tf_esimcse import schedules
from tf_esimcse.schedules import LinearDecay, WarmupThen, linear_schedule

# Until training.py imports these classes from `schedules`, it registers its own "WarmupThen"
# under the same name; name ours explicitly so the round trips test this module's classes.
CUSTOM_OBJECTS = {"tf_esimcse>WarmupThen": WarmupThen, "tf_esimcse>LinearDecay": LinearDecay}


def lr_at(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def hf_linear_with_warmup(step, peak, total, warmup):
    """Hugging Face `get_linear_schedule_with_warmup`, in plain Python."""
    if step < warmup:
        return peak * step / max(1, warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def test_linear_decay_values_and_clamp():
    schedule = linear_schedule(3e-5, 100)
    assert isinstance(schedule, LinearDecay)
    steps = [0, 1, 25, 50, 99, 100, 101, 150, 10_000]
    np.testing.assert_allclose(
        lr_at(schedule, steps), [3e-5, 3e-5 * 0.99, 3e-5 * 0.75, 1.5e-5, 3e-7, 0.0, 0.0, 0.0, 0.0],
        rtol=1e-5, atol=1e-12)
    assert float(schedule(100)) == 0.0  # exactly 0 at the last step, not a rounding residue
    assert (lr_at(schedule, range(0, 400, 7)) >= 0.0).all()


def test_linear_decay_large_step_counts_stay_non_negative():
    schedule = linear_schedule(5e-5, 7, warmup_ratio=0.3)  # warm-up 2 steps, decay over 5
    values = lr_at(schedule, list(range(0, 12)) + [2**31 - 1])
    assert (values >= 0.0).all()
    assert values[7:].max() == 0.0


@pytest.mark.parametrize("total,ratio", [(100, 0.1), (1000, 0.06), (7, 0.3), (10, 1.0)])
def test_warmup_matches_hugging_face(total, ratio):
    peak = 3e-5
    warmup = int(total * ratio)
    schedule = linear_schedule(peak, total, warmup_ratio=ratio)
    assert isinstance(schedule, WarmupThen) and schedule.warmup_steps == warmup
    steps = list(range(0, total + 3))
    expected = [hf_linear_with_warmup(s, peak, total, warmup) for s in steps]
    np.testing.assert_allclose(lr_at(schedule, steps), expected, rtol=1e-5, atol=1e-12)


def test_warmup_shape():
    schedule = linear_schedule(1e-3, 100, warmup_ratio=0.1)  # 10 warm-up steps, 90 of decay
    values = lr_at(schedule, range(0, 101))
    assert values[0] == 0.0
    np.testing.assert_allclose(values[5], 5e-4, rtol=1e-6)
    np.testing.assert_allclose(values[10], 1e-3, rtol=1e-6)  # the peak, at the end of the warm-up
    assert np.argmax(values) == 10
    assert (np.diff(values[:11]) > 0).all() and (np.diff(values[10:]) < 0).all()
    np.testing.assert_allclose(values[55], 5e-4, rtol=1e-5)  # half-way through the decay
    assert values[100] == 0.0


def test_zero_decay_steps_is_zero_everywhere():
    np.testing.assert_array_equal(lr_at(LinearDecay(1e-3, 0), [0, 1, 5]), [0.0, 0.0, 0.0])


def test_zero_warmup_ratio_has_no_warmup():
    assert isinstance(linear_schedule(1e-3, 5, warmup_ratio=0.0), LinearDecay)
    assert isinstance(linear_schedule(1e-3, 5, warmup_ratio=0.1), LinearDecay)  # int(0.5) == 0 steps


def test_invalid_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        LinearDecay(1e-3, -1)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupThen(1e-3, 0, LinearDecay(1e-3, 10))
    with pytest.raises(ValueError, match="warmup_ratio"):
        linear_schedule(1e-3, 10, warmup_ratio=1.5)


def test_schedule_inside_a_tf_function():
    import tensorflow as tf

    schedule = linear_schedule(2e-5, 20, warmup_ratio=0.25)
    step = tf.Variable(0, dtype=tf.int64)
    fn = tf.function(lambda: schedule(step))
    for s in (0, 3, 5, 12, 20, 40):
        step.assign(s)
        np.testing.assert_allclose(float(fn()), hf_linear_with_warmup(s, 2e-5, 20, 5), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("ratio", [0.0, 0.2])
def test_config_round_trip_gives_the_same_values(ratio):
    schedule = linear_schedule(4e-5, 50, warmup_ratio=ratio)
    steps = [0, 3, 10, 11, 25, 49, 50, 51, 80]
    expected = lr_at(schedule, steps)

    revived = type(schedule).from_config(schedule.get_config())
    np.testing.assert_array_equal(lr_at(revived, steps), expected)

    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    with keras.saving.custom_object_scope(CUSTOM_OBJECTS):  # scoped objects win over global ones
        deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is type(schedule)
    np.testing.assert_array_equal(lr_at(deserialized, steps), expected)
    if ratio:
        assert isinstance(revived.after, LinearDecay) and isinstance(deserialized.after, LinearDecay)


def test_warmup_then_from_config_restores_after():
    schedule = WarmupThen(1e-3, 4, LinearDecay(1e-3, 6))
    config = schedule.get_config()
    assert isinstance(config["after"], dict)  # serialised ...
    revived = WarmupThen.from_config(config)
    assert isinstance(revived.after, LinearDecay)  # ... and deserialised (it once stayed a dict)
    assert revived.after.get_config() == schedule.after.get_config()
    with keras.saving.custom_object_scope(CUSTOM_OBJECTS):
        run_serialization_test(schedule)


def test_warmup_then_keras_schedule_after():
    after = keras.optimizers.schedules.PolynomialDecay(1e-3, 6, end_learning_rate=0.0)
    schedule = WarmupThen(1e-3, 4, after)
    revived = WarmupThen.from_config(schedule.get_config())
    assert isinstance(revived.after, keras.optimizers.schedules.PolynomialDecay)
    np.testing.assert_allclose(lr_at(revived, range(12)), lr_at(schedule, range(12)))


def test_registered_names():
    assert keras.saving.get_registered_name(WarmupThen) == "tf_esimcse>WarmupThen"
    assert keras.saving.get_registered_name(LinearDecay) == "tf_esimcse>LinearDecay"
    assert set(schedules.__all__) == {"LinearDecay", "WarmupThen", "linear_schedule"}


def test_optimizer_with_the_schedule_round_trips():
    optimizer = keras.optimizers.AdamW(learning_rate=linear_schedule(3e-5, 40, warmup_ratio=0.1))
    with keras.saving.custom_object_scope(CUSTOM_OBJECTS):
        revived = keras.optimizers.AdamW.from_config(optimizer.get_config())
    assert isinstance(revived._learning_rate, WarmupThen)
    np.testing.assert_allclose(float(revived._learning_rate(2)), 1.5e-5, rtol=1e-6)
