"""Any keras-hub text backbone other than BERT/RoBERTa (`tf_esimcse.KerasHubEncoder`), on each
family's tiny random config: DistilBERT, ELECTRA, DeBERTa-v3 and Gemma 3 (text only, bidirectional
attention as its embedding presets).

Per family: a keras-hub preset directory loads through `SentenceEncoder.from_pretrained` into the
keras-hub backbone as it is (its outputs equal keras-hub's own backbone loaded from the same
preset), the ids equal keras-hub's own preprocessor's, every objective trains (eager and XLA;
the first step's loss equals the NumPy InfoNCE of the step's own embeddings), save -> reload gives
the same vectors (and keras-hub's `Backbone.from_preset` reads the save), the SavedModel gives
`encode`'s vectors, and the refusals (cached step, DiffCSE, hidden-state poolers, the ONNX /
LiteRT / sentence-transformers exports) are one line each.
"""
import io
import json

import keras
import keras_hub
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from test_case import numpy_info_nce
from test_case import to_numpy
from tf_esimcse import ESimCSE, KerasHubEncoder, SentenceEncoder, SimCSE, SupervisedSimCSE
from tf_esimcse.data.augmentations import augmentation_dataset
from tf_esimcse.data.pipeline import esimcse_dataset
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.export import export_for_serving
from tf_esimcse.layers.sentence_preprocessor import start_end_pad_ids
from tf_esimcse.litert_export import export_litert
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives import DiffCSEObjective, SimCSEObjective
from tf_esimcse.onnx_export import export_onnx
from tf_esimcse.st_export import export_sentence_transformers

FAMILIES = ("distil_bert", "electra", "deberta_v3", "gemma3")
WORDS = "the quick brown fox jumps over lazy dog a man is playing guitar someone plays music".split()
SENTENCES = ["the quick brown fox", "a man is playing guitar", "someone plays music", "the lazy dog",
             "a fox jumps over the dog", "music", "the man plays", "quick brown dog jumps over a lazy fox"]
SEQ_LEN = 8


def _sentence_piece(**specials):
    """A tiny SentencePiece word model over `WORDS` with the family's special pieces (as keras-hub's
    own tests build theirs)."""
    out = io.BytesIO()
    extra = specials.pop("extra", 0)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 5), model_writer=out, vocab_size=len(WORDS) + 4 + extra,
        model_type="WORD", minloglevel=2, **specials)
    return out.getvalue()


def tiny_tokenizer(family):
    if family in ("distil_bert", "electra"):
        vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
        cls = keras_hub.models.DistilBertTokenizer if family == "distil_bert" else keras_hub.models.ElectraTokenizer
        return cls(vocabulary=vocabulary)
    if family == "deberta_v3":
        return keras_hub.models.DebertaV3Tokenizer(proto=_sentence_piece(
            pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
            unk_piece="[UNK]", user_defined_symbols="[MASK]", extra=1))
    return keras_hub.models.Gemma3Tokenizer(proto=_sentence_piece(
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>"), has_vision_tokens=False)


def tiny_backbone(family, vocabulary_size):
    """2 layers, hidden 16: each family's tiny random config."""
    common = dict(num_layers=2, hidden_dim=16, intermediate_dim=32)
    if family == "distil_bert":
        return keras_hub.models.DistilBertBackbone(vocabulary_size=vocabulary_size, num_heads=2,
                                                   max_sequence_length=32, **common)
    if family == "electra":
        return keras_hub.models.ElectraBackbone(vocab_size=vocabulary_size, num_heads=2, embedding_dim=16,
                                                max_sequence_length=32, **common)
    if family == "deberta_v3":
        return keras_hub.models.DebertaV3Backbone(vocabulary_size=vocabulary_size, num_heads=2, bucket_size=8,
                                                  max_sequence_length=32, **common)
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=vocabulary_size, image_size=16, num_query_heads=2, num_key_value_heads=1, head_dim=8,
        vision_encoder=None, use_bidirectional_attention=True, dropout=0.1, **common)


def reference_preprocessor(family, tokenizer):
    """keras-hub's own preprocessing for the family (ELECTRA has no preprocessor class: the packer
    keras-hub's BERT-style ones use, with its tokenizer's ids)."""
    if family == "distil_bert":
        return keras_hub.models.DistilBertTextClassifierPreprocessor(tokenizer, sequence_length=SEQ_LEN)
    if family == "deberta_v3":
        return keras_hub.models.DebertaV3TextClassifierPreprocessor(tokenizer, sequence_length=SEQ_LEN)
    if family == "gemma3":
        return keras_hub.models.Gemma3TextEmbedderPreprocessor(tokenizer, sequence_length=SEQ_LEN)
    packer = keras_hub.layers.MultiSegmentPacker(start_value=tokenizer.cls_token_id, end_value=tokenizer.sep_token_id,
                                                 pad_value=tokenizer.pad_token_id, sequence_length=SEQ_LEN)

    def electra(sentences):
        token_ids, _ = packer(tokenizer(sentences))
        return {"token_ids": token_ids, "padding_mask": token_ids != tokenizer.pad_token_id}
    return electra


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """A keras-hub preset directory of the family's tiny random backbone and tokenizer."""
    keras.utils.set_random_seed(0)
    name = request.param
    tokenizer = tiny_tokenizer(name)
    backbone = tiny_backbone(name, tokenizer.vocabulary_size())
    path = tmp_path_factory.mktemp(name) / "preset"
    backbone.save_to_preset(str(path))
    tokenizer.save_to_preset(str(path))
    return {"name": name, "path": path, "tokenizer": tokenizer, "backbone_cls": type(backbone)}


def _encoder(family, **kwargs):
    kwargs.setdefault("pooler_type", "avg")
    return SentenceEncoder.from_pretrained(str(family["path"]), sequence_length=SEQ_LEN, **kwargs)


def test_loads_the_keras_hub_backbone_and_its_preprocessing(family):
    encoder = _encoder(family)
    assert isinstance(encoder.backbone, KerasHubEncoder)
    assert type(encoder.backbone.backbone) is family["backbone_cls"]
    assert type(encoder.preprocessor.tokenizer) is type(family["tokenizer"])
    ours = encoder.preprocessor(SENTENCES)
    theirs = reference_preprocessor(family["name"], family["tokenizer"])(tf.constant(SENTENCES))
    np.testing.assert_array_equal(to_numpy(ours["token_ids"]), to_numpy(theirs["token_ids"]))
    np.testing.assert_array_equal(to_numpy(ours["padding_mask"]), to_numpy(theirs["padding_mask"]).astype("int32"))
    # The network is keras-hub's, weights as saved: its sequence output, averaged over real tokens.
    loaded = keras_hub.models.Backbone.from_preset(str(family["path"]))
    inputs = dict(theirs, segment_ids=tf.zeros_like(theirs["token_ids"]))
    inputs = {k: inputs[k] for k in loaded.input}
    outputs = loaded(inputs)
    sequence = to_numpy(outputs["sequence_output"] if isinstance(outputs, dict) else outputs).astype("float64")
    mask = to_numpy(theirs["padding_mask"]).astype("float64")[..., None]
    mean = (sequence * mask).sum(1) / mask.sum(1)
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(to_numpy(encoder(ours)), expected, atol=1e-5)
    first = sequence[:, 0] / np.linalg.norm(sequence[:, 0], axis=1, keepdims=True)
    np.testing.assert_allclose(to_numpy(_encoder(family, pooler_type="cls_before_pooler")(ours)), first, atol=1e-5)
    # encode() pads per batch and truncates at the backbone's length, not the training one.
    assert encoder.inference_preprocessor.sequence_length == encoder.backbone.max_sequence_length
    np.testing.assert_allclose(encoder.encode(SENTENCES[:7], verbose=0), expected[:7], atol=1e-5)


def test_token_augmentations_never_touch_the_specials(family):
    """ESimCSE's word repetition, SimCSE's word deletion and crop act on the pieces between the
    family's start and end ids: each positive starts and ends with them, once each, no padding
    inside; repetition makes some positives longer, deletion and crop some shorter."""
    encoder = _encoder(family)
    start, end, pad = start_end_pad_ids(encoder.preprocessor.tokenizer)
    datasets = {
        "repetition": esimcse_dataset(SENTENCES, encoder.preprocessor, dup_rate=1.0, batch_size=8, shuffle=False),
        "deletion": augmentation_dataset(SENTENCES, encoder.preprocessor, "word_deletion:50", batch_size=8,
                                         shuffle=False),
        "crop": augmentation_dataset(SENTENCES, encoder.preprocessor, "crop:50", batch_size=8, shuffle=False),
    }
    for kind, dataset in datasets.items():
        batch = next(iter(dataset))
        changed = False
        for ids, mask, anchor_mask in zip(to_numpy(batch["positive"]["token_ids"]),
                                          to_numpy(batch["positive"]["padding_mask"]),
                                          to_numpy(batch["anchor"]["padding_mask"])):
            positive = ids[: mask.sum()].tolist()
            assert positive[0] == start and positive[-1] == end and pad not in positive, kind
            assert positive.count(start) == 1 and positive.count(end) == 1, kind
            changed |= (mask.sum() > anchor_mask.sum()) if kind == "repetition" else (mask.sum() < anchor_mask.sum())
        assert changed, kind


def _views(encoder):
    pre = encoder.preprocessor
    return {"anchor": pre(SENTENCES), "positive": pre(SENTENCES[1:] + SENTENCES[:1]), "negative": pre(SENTENCES[::-1])}


def _first_step_loss(family, kind, views, jit_compile):
    """`(loss of the first step, NumPy InfoNCE of the step's own embeddings)`, dropout off."""
    encoder = _encoder(family, dropout=0.0)
    z = {k: to_numpy(encoder(v, training=True)) for k, v in views.items()}
    if kind == "simcse":
        model, batch, expected = SimCSE(encoder), views["anchor"], numpy_info_nce(z["anchor"], z["anchor"])
    elif kind == "sup":
        model, batch = SupervisedSimCSE(encoder), views
        expected = numpy_info_nce(z["anchor"], z["positive"], hard_negatives=z["negative"])
    else:  # ESimCSE: the queue is empty at the first step
        model, batch = ESimCSE(encoder, queue_size=8), {k: views[k] for k in ("anchor", "positive")}
        expected = numpy_info_nce(z["anchor"], z["positive"])
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile, run_eagerly=not jit_compile)
    return float(model.train_on_batch(batch, return_dict=True)["loss"]), expected


@pytest.mark.large
def test_every_objective_trains(family):
    """Dropout off: each objective's first eager step (unsup SimCSE, supervised with hard
    negatives, ESimCSE with its momentum encoder and empty queue) has the NumPy InfoNCE of the
    encoder's embeddings; unsup SimCSE's XLA step too. Then steps with the backbone's own Keras
    dropout are finite and move the weights."""
    views = _views(_encoder(family))
    for kind, jit_compile in (("simcse", False), ("sup", False), ("esimcse", False), ("simcse", True)):
        loss, expected = _first_step_loss(family, kind, views, jit_compile)
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5), (kind, jit_compile)
    encoder = _encoder(family, dropout=0.1)
    before = to_numpy(encoder.backbone.weights[0]).copy()
    model = ESimCSE(encoder, queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    batch = {k: views[k] for k in ("anchor", "positive")}
    losses = [float(model.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(2)]
    assert np.isfinite(losses).all()
    assert np.abs(to_numpy(encoder.backbone.weights[0]) - before).max() > 1e-4


@pytest.mark.large
def test_save_reload_and_serving_export(family, tmp_path):
    encoder = _encoder(family)
    vectors = encoder.encode(SENTENCES, verbose=0)
    path = encoder.save_pretrained(tmp_path / "model")
    assert json.loads((path / "tf_esimcse.json").read_text())["pooler_type"] == "avg"
    reloaded = SentenceEncoder.from_pretrained(str(path))
    assert type(reloaded.backbone.backbone) is family["backbone_cls"]
    np.testing.assert_allclose(reloaded.encode(SENTENCES, verbose=0), vectors, atol=1e-6)
    theirs = keras_hub.models.Backbone.from_preset(str(path))  # keras-hub alone reads the save
    for ours, their in zip(reloaded.backbone.backbone.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(ours, their)
    served = tf.saved_model.load(str(export_for_serving(reloaded, tmp_path / "export")))
    embeddings = served.signatures["serving_default"](sentences=tf.constant(SENTENCES))["embeddings"]
    np.testing.assert_allclose(embeddings.numpy(), vectors, atol=1e-5)


def test_refusals_are_one_line(family, tmp_path):
    encoder = _encoder(family)
    label = family["backbone_cls"].__name__
    with pytest.raises(ValueError, match=rf"mini_batch_size \(the cached step\) cannot train a keras-hub {label}: its "
                                         "Keras dropout masks cannot be replayed") as info:
        ContrastiveModel(encoder, SimCSEObjective(), mini_batch_size=2)
    assert "\n" not in str(info.value)
    uncut = _encoder(family)
    uncut.backbone.encoding_model = None  # as for a backbone without `transformer_layers`
    with pytest.raises(ValueError, match=rf"DiffCSE's discriminator replaces the first token's embedding, which this "
                                         rf"encoder's backbone \(KerasHubEncoder\({label}\)\) does not expose"):
        ContrastiveModel(uncut, DiffCSEObjective(generator="unused"))
    with pytest.raises(ModelLoadError, match=rf"{label}: the poolers that read every layer's hidden states"):
        _encoder(family, pooler_type="avg_first_last")
    exports = ((export_onnx, "ONNX export"), (export_litert, "LiteRT export"),
               (export_sentence_transformers, "sentence-transformers export"))
    for export, what in exports:
        with pytest.raises(ValueError, match=rf"the {what} supports BERT and RoBERTa encoders only, not a keras-hub "
                                             rf"{label}; use the SavedModel export"):
            export(encoder, tmp_path / "out")


def test_first_token_embedding_input(family):
    """DiffCSE's discriminator input: the backbone cut at its first transformer layer. Given the
    embedding block's own first row it is the plain forward pass; another vector changes the
    outputs and receives gradients."""
    encoder = _encoder(family)
    backbone, batch = encoder.backbone, encoder.preprocessor(SENTENCES)
    plain = to_numpy(backbone(batch)["sequence_output"])
    hidden = backbone.embedding_model(backbone.backbone_inputs(batch))
    same = backbone.call_with_first_token_embedding(batch, hidden[:, 0])["sequence_output"]
    np.testing.assert_allclose(to_numpy(same), plain, atol=1e-6)
    vector = tf.Variable(tf.random.stateless_normal((len(SENTENCES), backbone.hidden_dim), seed=(0, 1)))
    with tf.GradientTape() as tape:
        other = backbone.call_with_first_token_embedding(batch, vector)["sequence_output"]
        loss = tf.reduce_sum(other[:, 1:] * tf.random.stateless_normal(tf.shape(other[:, 1:]), seed=(0, 2)))
    assert np.abs(to_numpy(other) - plain).max() > 1e-3
    assert np.abs(to_numpy(tape.gradient(loss, vector))).max() > 0


@pytest.mark.large
@pytest.mark.parametrize("name", ["distil_bert", "deberta_v3"])
def test_diffcse_with_a_masked_lm_of_the_family(name, tmp_path):
    """DiffCSE: a keras-hub masked LM of the family (same vocabulary) as the generator; each eager
    step's loss equals test_diffcse's NumPy loss (InfoNCE + lambda x the RTD cross-entropy from
    the discriminator's logits on the generator's edits), as `run_objective_test`'s check 2."""
    from test_diffcse import LAMBDA, _numpy_loss
    from tf_esimcse.data.diffcse_views import diffcse_views

    keras.utils.set_random_seed(0)
    tokenizer = tiny_tokenizer(name)
    model_dir, generator_dir = tmp_path / "model", tmp_path / "generator"
    tiny_backbone(name, tokenizer.vocabulary_size()).save_to_preset(str(model_dir))
    tokenizer.save_to_preset(str(model_dir))
    masked_lm = (keras_hub.models.DistilBertMaskedLM if name == "distil_bert" else keras_hub.models.DebertaV3MaskedLM)
    masked_lm(tiny_backbone(name, tokenizer.vocabulary_size()), preprocessor=None).save_to_preset(str(generator_dir))
    tokenizer.save_to_preset(str(generator_dir))
    encoder = SentenceEncoder.from_pretrained(str(model_dir), pooler_type="cls", mlp_only_train=True, dropout=0.0,
                                              sequence_length=SEQ_LEN)
    views = diffcse_views(SENTENCES * 2, encoder.preprocessor, masking_ratio=0.5, batch_size=8, seed=0, shuffle=False,
                          repeat=True)
    model = ContrastiveModel(encoder, DiffCSEObjective(str(generator_dir), rtd_weight=LAMBDA, batchnorm=False,
                                                       generator_dropout=False), max_grad_norm=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    for batch in [tf.nest.map_structure(lambda t: t.numpy(), b) for b in views.take(2)]:
        x = tf.nest.map_structure(tf.constant, batch)
        embeddings = [np.asarray(to_numpy(encoder(v, training=True)), np.float64) for v in model.objective.views(x)]
        expected = _numpy_loss(embeddings, model.objective, {"x": batch, "encoder": encoder})
        model.reset_metrics()
        logs = model.train_step(x)
        assert float(to_numpy(logs["loss"])) == pytest.approx(expected, rel=1e-4, abs=1e-5)
        assert float(to_numpy(logs["rtd_loss"])) > 0 and 0 < float(to_numpy(logs["replaced_fraction"])) < 1


def test_tokenizer_larger_than_the_embedding_is_one_line(tmp_path):
    tokenizer = tiny_tokenizer("distil_bert")
    tiny_backbone("distil_bert", tokenizer.vocabulary_size() - 3).save_to_preset(str(tmp_path / "preset"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))
    with pytest.raises(ModelLoadError, match=r"preset: the tokenizer has 21 tokens but the weights have 18 embedding "
                                             "rows") as info:
        SentenceEncoder.from_pretrained(str(tmp_path / "preset"))
    assert "\n" not in str(info.value)


def test_hugging_face_folder_of_another_family_is_one_line_naming_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert", "dim": 16}))
    with pytest.raises(ModelLoadError, match=r"config\.json: model_type 'distilbert' is not supported; .*other "
                                             r"families: a keras-hub preset folder") as info:
        SentenceEncoder.from_pretrained(str(tmp_path))
    assert "\n" not in str(info.value)


def test_serialization_and_momentum_copy(family):
    """`get_config` -> `from_config` rebuilds the same network; `copy_backbone` (ESimCSE's momentum
    encoder) has equal, separate weights."""
    encoder = _encoder(family)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(encoder.backbone)))
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert isinstance(rebuilt, KerasHubEncoder) and len(rebuilt.weights) == len(encoder.backbone.weights)
    copy = encoder.copy_backbone()
    assert not copy.trainable and copy.weights[0] is not encoder.backbone.weights[0]
    batch = encoder.preprocessor(SENTENCES)
    np.testing.assert_allclose(to_numpy(encoder.embed(batch, backbone=copy)), to_numpy(encoder.embed(batch)), atol=1e-6)


@pytest.mark.large
def test_recipe_trains_from_a_keras_hub_preset(tmp_path, capsys):
    """What a user runs: `recipes/unsup_esimcse.py --model <a DistilBERT preset>` trains, selects on
    STS-B dev, saves a model that reloads as the same keras-hub backbone with the recipe's pooler;
    `--mini-batch-size` stops at once with the cached step's one line; a `cls` head that the
    checkpoint does not have is one line too (a random head would give meaningless vectors)."""
    from test_cli import write_tiny_senteval
    from test_recipes import load_method
    from tf_esimcse.training import main_guard

    keras.utils.set_random_seed(0)
    tokenizer = tiny_tokenizer("distil_bert")
    tiny_backbone("distil_bert", tokenizer.vocabulary_size()).save_to_preset(str(tmp_path / "preset"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))
    (tmp_path / "corpus.txt").write_text("\n".join(SENTENCES * 4) + "\n")
    argv = ["--model", tmp_path / "preset", "--corpus", tmp_path / "corpus.txt", "--data-dir",
            write_tiny_senteval(tmp_path / "data"), "--steps", 2, "--eval-steps", 2, "--batch-size", 4, "--max-len",
            SEQ_LEN, "--jit-compile", "false", "--no-final-eval"]
    load_method("unsup_esimcse").main([str(a) for a in [*argv, "--output-dir", tmp_path / "run"]])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["model"] == str(tmp_path / "preset") and results["config"]["steps"] == 2
    assert results["best_step"] in (0, 2) and np.isfinite(results["best_stsb_dev"])
    reloaded = SentenceEncoder.from_pretrained(str(tmp_path / "run" / "model"))
    assert type(reloaded.backbone.backbone) is keras_hub.models.DistilBertBackbone
    assert reloaded.pooler_type == "cls_before_pooler"  # the unsupervised recipes' inference pooler
    assert np.isfinite(reloaded.encode(SENTENCES, verbose=0)).all()

    capsys.readouterr()
    cached = [str(a) for a in [*argv, "--output-dir", tmp_path / "cached", "--batch-size", 8, "--mini-batch-size", 4]]
    with pytest.raises(SystemExit) as stopped:  # as recipes/unsup_simcse.py runs it
        main_guard(lambda: load_method("unsup_simcse").main(cached))
    out, err = capsys.readouterr()
    assert stopped.value.code == 2 and err.startswith("error: mini_batch_size (the cached step) cannot train a "
                                                      "keras-hub DistilBertBackbone") and err.count("\n") == 1, err
    assert "evaluating the starting encoder" not in out  # refused before any work
    with pytest.raises(ModelLoadError, match=r"pooler 'cls' needs a trained MLP head and this DistilBertBackbone "
                                             r"checkpoint has none: pass fresh_mlp=True"):
        SentenceEncoder.from_pretrained(str(tmp_path / "preset"), pooler_type="cls")
