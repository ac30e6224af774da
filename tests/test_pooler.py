"""Tests for `tf_esimcse.layers.pooler.Pooler` against NumPy, on fixed random padded inputs."""
import keras
import numpy as np
import pytest

from test_case import run_model_saving_test
from test_case import run_serialization_test
from test_case import to_numpy
from tf_esimcse.layers.pooler import POOLER_TYPES
from tf_esimcse.layers.pooler import Pooler

BATCH, LENGTH, DIM, NUM_LAYERS = 3, 6, 8, 2
LENGTHS = np.array([6, 3, 1])  # full, padded, only [CLS]


def _inputs(seed=0, pad_value=None):
    rng = np.random.default_rng(seed)
    mask = (np.arange(LENGTH)[None, :] < LENGTHS[:, None]).astype("int32")
    hidden = rng.standard_normal((NUM_LAYERS + 1, BATCH, LENGTH, DIM)).astype("float32")
    if pad_value is not None:
        # Same real positions, different (large) values at the padding positions.
        hidden = np.where(mask[None, :, :, None] > 0, hidden, np.float32(pad_value))
        hidden = hidden.astype("float32")
    return {"sequence_output": hidden[-1], "padding_mask": mask, "hidden_states": hidden}


def _masked_mean(states, mask):
    m = mask[..., None].astype("float64")
    return (states.astype("float64") * m).sum(axis=1) / m.sum(axis=1)


def _numpy_pool(pooler_type, inputs, first_layer=0):
    h, mask = inputs["hidden_states"], inputs["padding_mask"]
    if pooler_type == "cls_before_pooler":
        return inputs["sequence_output"][:, 0, :]
    if pooler_type == "avg":
        return _masked_mean(inputs["sequence_output"], mask)
    if pooler_type == "avg_top2":
        return _masked_mean((h[-1] + h[-2]) / 2.0, mask)
    if pooler_type == "avg_first_last":
        return _masked_mean((h[first_layer] + h[-1]) / 2.0, mask)
    raise AssertionError(pooler_type)


def _numpy_mlp(pooler, x):
    kernel, bias = (to_numpy(w).astype("float64") for w in pooler.mlp.weights)
    return np.tanh(x.astype("float64") @ kernel + bias)


@pytest.mark.parametrize(
    "pooler_type, first_layer",
    [("cls_before_pooler", 0), ("avg", 0), ("avg_top2", 0), ("avg_first_last", 0), ("avg_first_last", 1)],
)
def test_pooling_matches_numpy(pooler_type, first_layer):
    inputs = _inputs()
    out = to_numpy(Pooler(pooler_type, first_layer=first_layer)(inputs))
    assert out.shape == (BATCH, DIM)
    np.testing.assert_allclose(out, _numpy_pool(pooler_type, inputs, first_layer), atol=1e-6)


@pytest.mark.parametrize("pooler_type", ["avg", "avg_top2", "avg_first_last"])
def test_padding_positions_do_not_affect_averages(pooler_type):
    pooler = Pooler(pooler_type)
    reference = to_numpy(pooler(_inputs()))
    for pad_value in (0.0, 1e4, -7.5):
        np.testing.assert_array_equal(to_numpy(pooler(_inputs(pad_value=pad_value))), reference)


def test_avg_first_last_layer_choice_matters():
    inputs = _inputs()
    first0 = to_numpy(Pooler("avg_first_last", first_layer=0)(inputs))
    first1 = to_numpy(Pooler("avg_first_last", first_layer=1)(inputs))
    assert np.abs(first0 - first1).max() > 1e-3


def test_cls_applies_dense_tanh_mlp():
    inputs = _inputs()
    pooler = Pooler("cls")
    out = to_numpy(pooler(inputs))
    assert out.shape == (BATCH, DIM)
    expected = _numpy_mlp(pooler, inputs["sequence_output"][:, 0, :])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Without mlp_only_train the head applies in training and in inference alike.
    np.testing.assert_allclose(to_numpy(pooler(inputs, training=True)), expected, atol=1e-6)


def test_mlp_only_train_applies_head_only_in_training():
    inputs = _inputs()
    pooler = Pooler("cls", hidden_dim=DIM, mlp_only_train=True)
    cls_state = inputs["sequence_output"][:, 0, :]
    np.testing.assert_array_equal(to_numpy(pooler(inputs, training=False)), cls_state)
    np.testing.assert_array_equal(to_numpy(pooler(inputs)), cls_state)
    np.testing.assert_allclose(to_numpy(pooler(inputs, training=True)), _numpy_mlp(pooler, cls_state), atol=1e-6)


@pytest.mark.parametrize(
    "pooler_type, hidden_dim, expected",
    [("avg", None, 0), ("cls_before_pooler", None, 0), ("avg_top2", None, 0), ("cls", None, 2), ("cls", DIM, 2)],
)
def test_weight_counts(pooler_type, hidden_dim, expected):
    pooler = Pooler(pooler_type, hidden_dim=hidden_dim)
    pooler(_inputs())
    assert len(pooler.weights) == expected
    assert len(pooler.trainable_weights) == expected
    if expected:
        assert [tuple(w.shape) for w in pooler.weights] == [(DIM, DIM), (DIM,)]


def test_unknown_pooler_type_raises_naming_it():
    with pytest.raises(ValueError, match="'cls_after_pooler'"):
        Pooler("cls_after_pooler")


@pytest.mark.parametrize("pooler_type", ["avg_top2", "avg_first_last"])
def test_missing_hidden_states_raises_clear_error(pooler_type):
    inputs = _inputs()
    del inputs["hidden_states"]
    with pytest.raises(ValueError, match=f"{pooler_type}.*hidden_states.*output_hidden_states=True"):
        Pooler(pooler_type)(inputs)


@pytest.mark.parametrize("pooler_type", POOLER_TYPES)
@pytest.mark.parametrize("mlp_only_train", [False, True])
@pytest.mark.parametrize("first_layer", [0, 1])
def test_serialization(pooler_type, mlp_only_train, first_layer):
    pooler = Pooler(pooler_type, hidden_dim=DIM, mlp_only_train=mlp_only_train, first_layer=first_layer)
    revived = run_serialization_test(pooler)
    assert revived.get_config()["pooler_type"] == pooler_type
    assert revived.get_config()["mlp_only_train"] is mlp_only_train
    assert revived.get_config()["first_layer"] == first_layer


def test_config_records_inferred_hidden_dim():
    pooler = Pooler("cls")
    pooler(_inputs())
    assert pooler.get_config()["hidden_dim"] == DIM
    run_serialization_test(pooler)


def _model_with_pooler(pooler):
    sequence = keras.Input((None, DIM), name="sequence_output")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    outputs = pooler({"sequence_output": sequence, "padding_mask": mask})
    return keras.Model({"sequence_output": sequence, "padding_mask": mask}, outputs, name="pooled")


@pytest.mark.parametrize("pooler_type", ["cls", "avg"])
def test_keras_model_with_pooler_saves_and_loads(pooler_type, tmp_path):
    model = _model_with_pooler(Pooler(pooler_type, hidden_dim=DIM, mlp_only_train=False, name="pooler"))
    inputs = _inputs()
    data = {"sequence_output": inputs["sequence_output"], "padding_mask": inputs["padding_mask"]}
    restored = run_model_saving_test(model, data, tmp_path)
    pooler = restored.get_layer("pooler")
    assert isinstance(pooler, Pooler)
    assert pooler.pooler_type == pooler_type
    assert len(pooler.weights) == (2 if pooler_type == "cls" else 0)
