"""Tests for `tf_esimcse.models.sentence_encoder.SentenceEncoder`: outputs against a NumPy BERT,
`encode` (order, length sorting, dynamic padding), saving and loading in every format."""
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import TINY_HIDDEN
from test_case import TINY_SENTENCES
from test_case import l2_normalize_np
from test_case import run_model_saving_test
from test_case import run_serialization_test
from test_case import tiny_backbone
from test_case import tiny_encoder
from test_case import to_numpy
from test_case import write_tiny_model_dir
from tf_esimcse.backbones import ENCODER_CONFIG_FILE
from tf_esimcse.backbones import to_keras_hub_backbone
from tf_esimcse.encoder_files import POOLER_WEIGHTS_FILE
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.models.simcse import SimCSE
from tiny_hf import numpy_bert_forward


@pytest.fixture(scope="module")
def avg_encoder(model_dir):
    return tiny_encoder(model_dir, pooler_type="avg")


def _batch(encoder, sentences=TINY_SENTENCES):
    return {k: to_numpy(v) for k, v in encoder.preprocessor(tf.constant(sentences)).items()}


def _numpy_pool(model_dir, batch, pooler_type):
    ref = numpy_bert_forward(model_dir, batch["token_ids"], batch["padding_mask"])
    h = ref["hidden_states"]
    m = batch["padding_mask"][..., None].astype("float64")

    def mean(states):
        return (states * m).sum(axis=1) / m.sum(axis=1)

    return l2_normalize_np(
        {
            "cls_before_pooler": lambda: ref["sequence_output"][:, 0],
            "avg": lambda: mean(ref["sequence_output"]),
            "avg_top2": lambda: mean((h[-1] + h[-2]) / 2),
            "avg_first_last": lambda: mean((h[1] + h[-1]) / 2),  # first_layer=1 (SimCSE since its fix)
        }[pooler_type]()
    )


@pytest.mark.parametrize("pooler_type", ["cls_before_pooler", "avg", "avg_top2", "avg_first_last"])
def test_embeddings_match_numpy_bert(model_dir, pooler_type):
    encoder = tiny_encoder(model_dir, pooler_type=pooler_type)
    batch = _batch(encoder)
    out = to_numpy(encoder(batch, training=False))
    assert out.shape == (len(TINY_SENTENCES), TINY_HIDDEN)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, _numpy_pool(model_dir, batch, pooler_type), atol=1e-4)


def test_normalize_false_returns_raw_pooled(model_dir):
    encoder = tiny_encoder(model_dir, pooler_type="avg", normalize=False)
    out = to_numpy(encoder(_batch(encoder), training=False))
    assert np.abs(np.linalg.norm(out, axis=1) - 1.0).max() > 1e-2
    np.testing.assert_allclose(l2_normalize_np(out), _numpy_pool(model_dir, _batch(encoder), "avg"), atol=1e-4)


def test_encode_matches_single_sentence_calls_in_input_order(avg_encoder):
    sentences = TINY_SENTENCES * 2  # lengths vary; batch_size 3 mixes them after sorting
    expected = np.concatenate(
        [to_numpy(avg_encoder(avg_encoder.preprocessor(tf.constant([s])), training=False)) for s in sentences]
    )
    for sort_by_length in (True, False):
        out = avg_encoder.encode(sentences, batch_size=3, verbose=0, sort_by_length=sort_by_length)
        assert out.shape == (len(sentences), TINY_HIDDEN) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    # Distinct sentences really get distinct vectors (so the order check means something).
    assert np.abs(expected[0] - expected[1]).max() > 1e-2


def test_encode_empty_and_bad_inputs(avg_encoder, model_dir):
    empty = avg_encoder.encode([])
    assert empty.shape == (0, TINY_HIDDEN) and empty.dtype == np.float32
    with pytest.raises(TypeError, match="list of strings"):
        avg_encoder.encode("the cat sat")
    bare = SentenceEncoder(avg_encoder.backbone, pooler_type="avg")
    with pytest.raises(ValueError, match="no preprocessor"):
        bare.encode(["the cat sat"])


def test_encode_progress_bar(avg_encoder, capsys):
    avg_encoder.encode(TINY_SENTENCES, batch_size=2, verbose=0)
    assert capsys.readouterr().out == ""
    avg_encoder.encode(TINY_SENTENCES, batch_size=2)  # "auto": only above 10 batches
    assert capsys.readouterr().out == ""
    avg_encoder.encode(TINY_SENTENCES, batch_size=2, verbose=1)
    assert f"{len(TINY_SENTENCES)}/{len(TINY_SENTENCES)}" in capsys.readouterr().out


def test_similarity(avg_encoder):
    a, b = TINY_SENTENCES[:4], TINY_SENTENCES[4:]
    sims = avg_encoder.similarity(a, b)
    expected = np.sum(avg_encoder.encode(a, verbose=0) * avg_encoder.encode(b, verbose=0), axis=1)
    np.testing.assert_allclose(sims, expected, atol=1e-6)
    np.testing.assert_allclose(avg_encoder.similarity(a, a), 1.0, atol=1e-5)


def test_pooler_needing_hidden_states_rebuilds_backbone():
    backbone = tiny_backbone()
    encoder = SentenceEncoder(backbone, pooler_type="avg_top2")
    assert encoder.backbone.output_hidden_states
    assert not backbone.output_hidden_states
    for a, b in zip(encoder.backbone.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unknown_pooler_type_raises(model_dir):
    with pytest.raises(ValueError, match="'max'"):
        SentenceEncoder(tiny_backbone(), pooler_type="max")
    with pytest.raises(ValueError, match="'max'"):
        tiny_encoder(model_dir, pooler_type="max")


# --- save_pretrained / from_pretrained ---


def _perturb(encoder, seed=0):
    """Move every weight away from the checkpoint's, so a reload that read the original
    checkpoint (instead of the save) would be caught."""
    rng = np.random.default_rng(seed)
    encoder.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in encoder.get_weights()])
    return encoder


def _assert_same_vectors(a, b, atol=1e-6):
    np.testing.assert_allclose(
        a.encode(TINY_SENTENCES, verbose=0), b.encode(TINY_SENTENCES, verbose=0), atol=atol, rtol=0
    )


@pytest.mark.parametrize(
    "pooler_type",
    [
        "avg",
        "cls_before_pooler",
        "avg_first_last",
        "cls",
    ],
)
@pytest.mark.large
def test_save_pretrained_round_trip(model_dir, tmp_path, pooler_type):
    encoder = _perturb(tiny_encoder(model_dir, pooler_type=pooler_type, sequence_length=12))
    saved = encoder.save_pretrained(tmp_path / "saved")
    settings = json.loads((saved / ENCODER_CONFIG_FILE).read_text())
    assert settings["pooler_type"] == pooler_type
    assert settings["sequence_length"] == 12
    assert (saved / POOLER_WEIGHTS_FILE).is_file() == (pooler_type == "cls")
    reloaded = SentenceEncoder.from_pretrained(str(saved))  # the pooler comes from the save
    assert reloaded.pooler_type == pooler_type
    assert reloaded.preprocessor.sequence_length == 12
    _assert_same_vectors(encoder, reloaded)
    if pooler_type == "cls":
        for a, b in zip(encoder.pooler.get_weights(), reloaded.pooler.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.large
def test_mlp_only_train_saves_as_cls_before_pooler(model_dir, tmp_path):
    encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True)
    batch = _batch(encoder)
    # Train it a little (two eager SimCSE steps), as unsupervised SimCSE does.
    fresh = encoder.encode(TINY_SENTENCES, verbose=0)
    trainer = SimCSE(encoder)
    trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    for _ in range(2):
        trainer.train_step(batch)
    assert np.abs(encoder.encode(TINY_SENTENCES, verbose=0) - fresh).max() > 1e-3
    # The head is used in training only...
    assert np.abs(to_numpy(encoder(batch, training=True)) - to_numpy(encoder(batch, training=False))).max() > 1e-3
    assert encoder.inference_settings() == "cls_before_pooler"
    saved = encoder.save_pretrained(tmp_path / "saved")
    # ...so the release is cls_before_pooler, without the head's weights.
    assert json.loads((saved / ENCODER_CONFIG_FILE).read_text())["pooler_type"] == "cls_before_pooler"
    assert not (saved / POOLER_WEIGHTS_FILE).exists()
    reloaded = SentenceEncoder.from_pretrained(str(saved))
    assert reloaded.pooler_type == "cls_before_pooler"
    assert len(reloaded.pooler.weights) == 0
    _assert_same_vectors(encoder, reloaded)


@pytest.mark.large
def test_save_pretrained_replaces_existing_directory(model_dir, tmp_path):
    target = tmp_path / "models" / "encoder"
    first = tiny_encoder(model_dir, pooler_type="cls_before_pooler")
    first.save_pretrained(target)
    (target / "stale.txt").write_text("from an older save")
    second = _perturb(tiny_encoder(model_dir, pooler_type="avg"))
    assert second.save_pretrained(target) == target.resolve()
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["encoder"]  # no temp or .old dirs
    reloaded = SentenceEncoder.from_pretrained(str(target))
    assert reloaded.pooler_type == "avg"
    _assert_same_vectors(second, reloaded)


@pytest.mark.large
def test_saved_directory_is_a_standard_keras_hub_preset(model_dir, tmp_path):
    """What save_pretrained writes loads with keras-hub alone, in a process without tf_esimcse:
    the same weights (keras-hub's order) and the same tokenizer ids."""
    encoder = _perturb(tiny_encoder(model_dir, pooler_type="avg"))
    saved = encoder.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "config.json").read_text())["registered_name"] == "keras_hub>BertBackbone"
    assert json.loads((saved / "tokenizer.json").read_text())["registered_name"] == "keras_hub>BertTokenizer"
    assert json.loads((saved / ENCODER_CONFIG_FILE).read_text())["activation"] == "gelu"
    np.savez(tmp_path / "expected.npz", *to_keras_hub_backbone(encoder.backbone).get_weights())
    ids = to_numpy(encoder.preprocessor.tokenizer(tf.constant(TINY_SENTENCES[0])))
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import numpy as np, keras_hub
        backbone = keras_hub.models.BertBackbone.from_preset({str(saved)!r})
        tokenizer = keras_hub.models.BertTokenizer.from_preset({str(saved)!r})
        assert "tf_esimcse" not in sys.modules, "tf_esimcse was imported"
        expected = np.load({str(tmp_path / "expected.npz")!r})
        got = backbone.get_weights()
        assert len(got) == len(expected.files)
        for i, w in enumerate(got):
            np.testing.assert_array_equal(w, expected[f"arr_{{i}}"])
        print(np.asarray(tokenizer({TINY_SENTENCES[0]!r})).tolist())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str([int(i) for i in ids])


def test_directory_saved_by_an_earlier_version_loads(model_dir, tmp_path):
    """A directory written before the backbone was rebuilt (config.json names
    `tf_esimcse>BertEncoder`, the tokenizer `tf_esimcse>BertEncoderTokenizer`) still loads."""
    encoder = _perturb(tiny_encoder(model_dir, pooler_type="cls", sequence_length=12))
    saved = encoder.save_pretrained(tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    config.update(module="tf_esimcse.backbones", class_name="BertEncoder", registered_name="tf_esimcse>BertEncoder")
    config["config"].update(activation="gelu", output_hidden_states=False, fast_dropout=True)
    (saved / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((saved / "tokenizer.json").read_text())
    tokenizer.update(module="tf_esimcse.backbones", class_name="BertEncoderTokenizer",
                     registered_name="tf_esimcse>BertEncoderTokenizer")
    (saved / "tokenizer.json").write_text(json.dumps(tokenizer))
    reloaded = SentenceEncoder.from_pretrained(str(saved))
    assert reloaded.pooler_type == "cls" and reloaded.backbone.activation == "gelu"
    _assert_same_vectors(encoder, reloaded)


def test_backbone_outputs_with_another_backbone(model_dir):
    """ESimCSE's momentum pass: `backbone_outputs(..., backbone=copy)` runs the copy."""
    encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True, dropout=0.0)
    batch = _batch(encoder)
    copy = encoder.copy_backbone()
    np.testing.assert_array_equal(
        to_numpy(encoder.backbone_outputs(batch, backbone=copy)["sequence_output"]),
        to_numpy(encoder.backbone_outputs(batch)["sequence_output"]),
    )
    copy.set_weights([w * 1.1 for w in copy.get_weights()])
    assert np.abs(to_numpy(encoder.backbone_outputs(batch, backbone=copy)["sequence_output"])
                  - to_numpy(encoder.backbone_outputs(batch)["sequence_output"])).max() > 1e-3


def test_embed_options_are_the_forward_pass_with_changes(model_dir):
    """`embed` is `call`; `normalize=False` gives the raw pooled vectors, `pooler_training` sets
    the head's mode alone, `backbone=` runs another backbone; `embedding_dim` is the output
    width; `copy_backbone` copies (frozen, or trainable without BERT's own pooler)."""
    encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True, dropout=0.0)
    batch = _batch(encoder)
    np.testing.assert_array_equal(to_numpy(encoder.embed(batch)), to_numpy(encoder(batch)))
    raw = to_numpy(encoder.embed(batch, training=True, normalize=False))
    np.testing.assert_allclose(l2_normalize_np(raw), to_numpy(encoder(batch, training=True)), atol=1e-6)
    assert encoder.embedding_dim == raw.shape[1] == TINY_HIDDEN
    # mlp_only_train: the head runs only in training mode, whatever the backbone's mode
    head = to_numpy(encoder.embed(batch, training=False, pooler_training=True))
    np.testing.assert_allclose(head, to_numpy(encoder(batch, training=True)), atol=1e-6)
    assert np.abs(head - to_numpy(encoder(batch))).max() > 1e-3
    frozen, trained = encoder.copy_backbone(), encoder.copy_backbone(trainable=True)
    assert not frozen.trainable and frozen.trainable_weights == []
    assert trained.trainable and not trained.pooled_dense.trainable
    assert len(trained.trainable_weights) == len(encoder.backbone.trainable_weights) - 2
    np.testing.assert_array_equal(to_numpy(encoder.embed(batch, backbone=frozen)), to_numpy(encoder(batch)))
    frozen.set_weights([w * 1.1 for w in frozen.get_weights()])
    assert np.abs(to_numpy(encoder.embed(batch, backbone=frozen)) - to_numpy(encoder(batch))).max() > 1e-4


@pytest.mark.large
def test_saved_cls_without_pooler_weights_fails_clearly(model_dir, tmp_path):
    saved = tiny_encoder(model_dir, pooler_type="cls_before_pooler").save_pretrained(tmp_path / "saved")
    settings = json.loads((saved / ENCODER_CONFIG_FILE).read_text())
    (saved / ENCODER_CONFIG_FILE).write_text(json.dumps(dict(settings, pooler_type="cls")))
    with pytest.raises(ModelLoadError, match=POOLER_WEIGHTS_FILE):
        SentenceEncoder.from_pretrained(str(saved))


@pytest.mark.parametrize(
    "pooling, expected",
    [
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "avg"),
        ({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}, "cls_before_pooler"),
        (None, "cls_before_pooler"),
    ],
)
def test_from_pretrained_reads_sentence_transformers_pooling(tmp_path, pooling, expected):
    st_dir = write_tiny_model_dir(tmp_path / "st")
    if pooling is not None:
        (st_dir / "1_Pooling").mkdir()
        (st_dir / "1_Pooling" / "config.json").write_text(json.dumps(dict(pooling, word_embedding_dimension=32)))
    encoder = SentenceEncoder.from_pretrained(str(st_dir))
    assert encoder.pooler_type == expected
    # An explicit pooler_type wins over the directory's.
    assert SentenceEncoder.from_pretrained(str(st_dir), pooler_type="avg_top2").pooler_type == "avg_top2"


# --- Keras serialization and .keras files ---


def test_serialization(avg_encoder):
    revived = run_serialization_test(avg_encoder)
    assert revived.pooler_type == "avg"
    assert isinstance(revived.preprocessor, type(avg_encoder.preprocessor))
    for a, b in zip(revived.backbone.get_weights(), avg_encoder.backbone.get_weights()):
        assert a.shape == b.shape


@pytest.mark.parametrize(
    "pooler_type, mlp_only_train", [("avg", False), ("cls", False), ("cls", True), ("avg_first_last", False)]
)
def test_keras_file_round_trip(model_dir, tmp_path, pooler_type, mlp_only_train):
    encoder = tiny_encoder(model_dir, pooler_type=pooler_type, mlp_only_train=mlp_only_train)
    batch = _batch(encoder)
    restored = run_model_saving_test(encoder, batch, tmp_path)
    assert restored.pooler_type == pooler_type and restored.mlp_only_train == mlp_only_train
    # The MLP head (used in training even with mlp_only_train) comes back with its weights.
    assert len(restored.pooler.weights) == len(encoder.pooler.weights)
    for a, b in zip(restored.pooler.get_weights(), encoder.pooler.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_file_restores_working_preprocessor(avg_encoder, tmp_path):
    path = tmp_path / "encoder.keras"
    avg_encoder.save(path)
    restored = keras.saving.load_model(path)
    sentences = tf.constant(TINY_SENTENCES)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(
            to_numpy(restored.preprocessor(sentences)[key]), to_numpy(avg_encoder.preprocessor(sentences)[key])
        )
    np.testing.assert_allclose(
        restored.encode(TINY_SENTENCES, verbose=0), avg_encoder.encode(TINY_SENTENCES, verbose=0), atol=1e-6
    )


def test_keras_model_with_backbone_only(tmp_path):
    encoder = SentenceEncoder(tiny_backbone(), pooler_type="avg", name="bare_encoder")
    batch = {"token_ids": np.array([[2, 5, 6, 3, 0]], "int32"), "padding_mask": np.array([[1, 1, 1, 1, 0]], "int32")}
    restored = run_model_saving_test(encoder, batch, tmp_path)
    assert restored.preprocessor is None
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(encoder)),
                      SentenceEncoder)


def test_first_token_path_is_the_full_forward_at_cls(model_dir):
    """cls poolers skip the last layer's non-[CLS] positions: same outputs and gradients."""
    encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=False, dropout=0.0)
    assert encoder.uses_first_token_only
    assert not tiny_encoder(model_dir, pooler_type="avg").uses_first_token_only
    batch = _batch(encoder)  # mixed lengths: padding inside the batch
    inputs = dict(batch, segment_ids=np.zeros_like(batch["token_ids"]))
    backbone = encoder.backbone
    full = to_numpy(backbone(inputs, training=False)["sequence_output"])[:, :1]
    short = to_numpy(backbone.first_token_output(inputs, training=False))
    assert short.shape == (len(TINY_SENTENCES), 1, TINY_HIDDEN)
    np.testing.assert_allclose(short, full, atol=1e-5)

    def grads(first_token_only):
        with tf.GradientTape() as tape:
            if first_token_only:
                seq = backbone.first_token_output(inputs, training=True)
            else:
                seq = backbone(inputs, training=True)["sequence_output"]
            pooled = encoder.pooler({"sequence_output": seq, "padding_mask": batch["padding_mask"]}, training=True)
            loss = tf.reduce_sum(tf.sin(pooled))
        variables = encoder.trainable_variables
        return [tf.convert_to_tensor(g) if g is not None else tf.zeros_like(v) for g, v in
                zip(tape.gradient(loss, variables), variables)]

    for a, b in zip(grads(True), grads(False)):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)
    # and under XLA, as SimCSE's train step runs it
    xla = tf.function(lambda x: encoder(x, training=False), jit_compile=True)
    np.testing.assert_allclose(to_numpy(xla(batch)), to_numpy(encoder(batch, training=False)), atol=1e-5)


def test_encode_bfloat16_precision(avg_encoder):
    exact = avg_encoder.encode(TINY_SENTENCES, verbose=0)
    fast = avg_encoder.encode(TINY_SENTENCES, verbose=0, precision="bfloat16")
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert not np.array_equal(fast, exact)
    assert np.sum(fast * exact, axis=1).min() >= 0.9999  # unit vectors: the cosine docs/performance.md states
    # the float32 function is unchanged by having traced the bfloat16 one
    np.testing.assert_array_equal(avg_encoder.encode(TINY_SENTENCES, verbose=0), exact)
    with pytest.raises(ValueError, match="matmul precision"):
        avg_encoder.encode(TINY_SENTENCES, precision="float16")


def test_trained_cls_head_starts_fresh_but_released_checkpoints_keep_their_pooler(model_dir, tmp_path):
    """SimCSE's training code initialises its MLP head N(0, 0.02) with zero bias; BERT's
    pretrained tanh pooler is only the head of released checkpoints evaluated as they are."""
    evaluated = tiny_encoder(model_dir, pooler_type="cls")
    bert_pooler = [to_numpy(w) for w in evaluated.backbone.pooled_dense.weights]
    for got, want in zip(evaluated.pooler.mlp.get_weights(), bert_pooler):
        np.testing.assert_array_equal(got, want)

    keras.utils.set_random_seed(7)
    trained = tiny_encoder(model_dir, pooler_type="cls", fresh_mlp=True)
    kernel, bias = trained.pooler.mlp.get_weights()
    assert not np.allclose(kernel, bert_pooler[0])
    np.testing.assert_array_equal(bias, np.zeros_like(bias))
    assert abs(kernel.mean()) < 0.005 and 0.015 < kernel.std() < 0.025  # N(0, 0.02), H^2 draws

    # Our own saves keep the trained head; fresh_mlp discards it.
    trained.pooler.mlp.set_weights([kernel + 1.0, bias + 1.0])
    trained.save_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(tiny_encoder(tmp_path / "saved", pooler_type="cls").pooler.mlp.get_weights()[1], 1.0)
    again = tiny_encoder(tmp_path / "saved", pooler_type="cls", fresh_mlp=True)
    np.testing.assert_array_equal(again.pooler.mlp.get_weights()[1], 0.0)
