"""RoBERTa (issue 28): Hugging Face ``model_type: roberta`` folders in the same `BertEncoder`, with
keras-hub's byte-level BPE `RobertaTokenizer` inside the `SentencePreprocessor`.

Checked against the real library: in the side environment (`.venv-st`: transformers + PyTorch,
tests/hf_side.py), `transformers` builds a tiny random `RobertaModel` and `BertModel` with its own
classes and saves them; our loader reads those folders and its hidden states and pooled outputs
equal transformers' to 1e-5, and our token ids equal `RobertaTokenizerFast`'s / `BertTokenizerFast`'s
(leading and trailing spaces, accents, emoji, CJK, numbers, control and unseen bytes). Like
tests/test_st_export.py, these skip without the side environment except under CI=true, where they
fail. The rest runs on a RoBERTa folder written here with NumPy (tests/tiny_roberta.py).
"""
import json
import os
import pathlib
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from test_case import side_env_python
from tf_esimcse import ESimCSE, SentenceEncoder
from tf_esimcse.backbones import load_backbone
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.data.pipeline import esimcse_dataset
from tf_esimcse.errors import ModelLoadError
from tf_esimcse.export import export_for_serving
from tf_esimcse.objectives import SimCSEObjective
from tiny_hf import write_tiny_hf_bert
from tiny_roberta import BOS_ID, EOS_ID, PAD_ID
from tiny_roberta import write_roberta_tokenizer_files
from tiny_roberta import write_tiny_hf_roberta
from training_test_case import run_replica_test

_REPO = pathlib.Path(__file__).resolve().parents[1]
_SIDE_SCRIPT = pathlib.Path(__file__).resolve().with_name("hf_side.py")

SENTENCES = [
    "Hello world.",
    "  leading and trailing spaces  ",
    "Café naïve résumé, Ångström",
    "emoji 😀 👍🏽 ok",
    "中文 字符 and 日本語",
    "numbers 12345 and 3.14159, 2026",
    "control \x07 and unseen \u00ff \ud7ff bytes\ttab",
    "it's   multiple   spaces\nand a newline",
    "",
    "the quick brown fox jumped over the lazy dog.",
]
TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
        "hidden_act": "gelu", "initializer_range": 0.2}




@pytest.fixture(scope="module")
def transformers_models(tmp_path_factory):
    """A tiny random RoBERTa and BERT made and saved by `transformers` itself, with its outputs
    and its tokenizers' ids on SENTENCES (tests/hf_side.py in the side environment), run once."""
    st_python = side_env_python("transformers")
    root = tmp_path_factory.mktemp("hf_side")
    roberta_dir, bert_dir = root / "roberta", root / "bert"
    vocab = write_roberta_tokenizer_files(roberta_dir)
    write_tiny_hf_bert(bert_dir)  # its vocab.txt and tokenizer_config.json; transformers replaces the weights
    roberta_config = dict(TINY, vocab_size=len(vocab), max_position_embeddings=66, type_vocab_size=1,
                          layer_norm_eps=1e-5, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    bert_size = len((bert_dir / "vocab.txt").read_text().split())
    bert_config = dict(TINY, vocab_size=bert_size, max_position_embeddings=64, type_vocab_size=2,
                       layer_norm_eps=1e-12, pad_token_id=0)
    job = {"models": [{"family": "roberta", "dir": str(roberta_dir), "config": roberta_config, "seed": 1},
                      {"family": "bert", "dir": str(bert_dir), "config": bert_config, "seed": 2}],
           "sentences": SENTENCES, "output": str(root / "out.npz")}
    (root / "job.json").write_text(json.dumps(job))
    done = subprocess.run([str(st_python), str(_SIDE_SCRIPT), str(root / "job.json")], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(root / "out.npz") as arrays:
        outputs = {k: arrays[k] for k in arrays.files}
    return {"info": info, "dirs": [roberta_dir, bert_dir], "outputs": outputs}


@pytest.mark.large
@pytest.mark.parametrize("index, family", [(0, "roberta"), (1, "bert")])
def test_hidden_states_and_pooled_output_equal_transformers(transformers_models, index, family):
    """Every layer's hidden states on every real token, and the pooled output, equal
    `transformers`' `RobertaModel` / `BertModel` on the same right-padded batch to 1e-5."""
    location = transformers_models["dirs"][index]
    assert json.loads((location / "config.json").read_text())["model_type"] == family
    out = transformers_models["outputs"]
    backbone, _ = load_backbone(str(location), output_hidden_states=True)
    ids, mask = out[f"token_ids_{index}"], out[f"padding_mask_{index}"]
    ours = backbone({"token_ids": ids.astype("int32"), "segment_ids": np.zeros_like(ids, "int32"),
                     "padding_mask": mask.astype("int32")})
    hidden = keras.ops.convert_to_numpy(ours["hidden_states"])
    theirs = out[f"hidden_states_{index}"]
    assert hidden.shape == theirs.shape
    real = mask.astype(bool)
    assert np.abs(theirs).max() > 1.0  # large enough weights for the comparison to mean something
    np.testing.assert_allclose(hidden[:, real], theirs[:, real], atol=1e-5, rtol=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours["pooled_output"]), out[f"pooled_{index}"],
                               atol=1e-5, rtol=0)


@pytest.mark.large
@pytest.mark.parametrize("index, family", [(0, "roberta"), (1, "bert")])
def test_token_ids_equal_transformers_fast_tokenizers(transformers_models, index, family):
    """`SentencePreprocessor`'s ids (tokenizer + `<s>`/`</s>` or `[CLS]`/`[SEP]`) equal
    `RobertaTokenizerFast`'s / `BertTokenizerFast`'s, sentence by sentence."""
    location = transformers_models["dirs"][index]
    encoder = SentenceEncoder.from_pretrained(str(location), pooler_type="avg", sequence_length=64)
    packed = encoder.preprocessor(SENTENCES)
    for k, sentence in enumerate(SENTENCES):
        length = int(packed["padding_mask"][k].numpy().sum())
        ours = packed["token_ids"][k, :length].numpy().tolist()
        assert ours == transformers_models["outputs"][f"ids_{index}_{k}"].tolist(), (family, sentence)
    if family == "roberta":
        assert any(len(transformers_models["outputs"][f"ids_0_{k}"]) > len(s.encode()) // 2 for k, s in
                   enumerate(SENTENCES) if "😀" in s)  # emoji come out as byte pieces


# --- a RoBERTa folder written with NumPy (no side environment) ---


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    return write_tiny_hf_roberta(tmp_path_factory.mktemp("tiny_roberta") / "model")


def _copy_dir(source, target):
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_preprocessor_packs_s_and_slash_s(roberta_dir):
    """`<s> pieces </s> <pad>...`, the specials never from the text; `<s>` is position 0, the
    first token the `cls` poolers read."""
    encoder = SentenceEncoder.from_pretrained(str(roberta_dir), pooler_type="cls_before_pooler", sequence_length=8)
    assert type(encoder.preprocessor.tokenizer).__name__ == "RobertaTokenizer"
    assert encoder.preprocessor.special_token_ids == [BOS_ID, PAD_ID, EOS_ID]
    batch = encoder.preprocessor(["Hello world.", "the quick brown fox jumped over the lazy dog again and again"])
    ids, mask = batch["token_ids"].numpy(), batch["padding_mask"].numpy()
    assert ids.shape == (2, 8) and (ids[:, 0] == BOS_ID).all()
    first = int(mask[0].sum())
    assert ids[0, first - 1] == EOS_ID and (ids[0, first:] == PAD_ID).all() and (mask[0, first:] == 0).all()
    assert ids[1, -1] == EOS_ID and mask[1].all()  # truncated to 6 pieces, </s> kept
    assert encoder.backbone.layer_norm_epsilon == 1e-5 and encoder.backbone.num_segments == 1
    assert encoder.backbone.max_sequence_length == 64  # 66 position rows less padding_idx + 1


def test_word_repetition_repeats_bpe_pieces_never_specials(roberta_dir):
    """ESimCSE's positive on BPE ids: the anchor's pieces in order, some twice; `<s>` once at the
    start, `</s>` once at the end, never repeated (as the official code's `dup_type="bpe"`)."""
    encoder = SentenceEncoder.from_pretrained(str(roberta_dir), pooler_type="avg", sequence_length=16)
    sentences = ["the cat sat on the mat, and the dog sat on the log!", "Hello world, hello there."] * 4
    batches = esimcse_dataset(sentences, encoder.preprocessor, dup_rate=1.0, batch_size=8, shuffle=False)
    batch = next(iter(batches))
    repeated_any = False
    views = [batch[name][key].numpy() for name in ("anchor", "positive") for key in ("token_ids", "padding_mask")]
    for anchor_ids, anchor_mask, ids, mask in zip(*views):
        anchor = anchor_ids[: anchor_mask.sum()].tolist()
        positive = ids[: mask.sum()].tolist()
        assert positive[0] == BOS_ID and positive[-1] == EOS_ID
        assert positive.count(BOS_ID) == 1 and positive.count(EOS_ID) == 1 and PAD_ID not in positive
        repeated_any |= len(positive) > len(anchor)
        assert len(positive) >= len(anchor)
        assert _is_repetition(anchor, positive)
    assert repeated_any


def _is_repetition(anchor, positive):
    """Whether `positive` is `anchor` with some of its tokens emitted twice in place."""
    states, seen = [(0, 0)], set()
    while states:
        i, j = states.pop()
        if (i, j) == (len(anchor), len(positive)):
            return True
        if (i, j) in seen or i == len(anchor) or j == len(positive) or anchor[i] != positive[j]:
            continue
        seen.add((i, j))
        states.append((i + 1, j + 1))
        if j + 1 < len(positive) and positive[j + 1] == anchor[i]:
            states.append((i + 1, j + 2))
    return False


def test_unsupported_model_type_is_one_line_naming_config(tmp_path, roberta_dir):
    location = _copy_dir(roberta_dir, tmp_path / "xlnet")
    config = json.loads((location / "config.json").read_text())
    (location / "config.json").write_text(json.dumps(dict(config, model_type="xlnet")))
    with pytest.raises(ModelLoadError, match=r"config\.json: model_type 'xlnet' is not supported") as info:
        SentenceEncoder.from_pretrained(str(location))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change, message", [
    ({"vocab_size": 300}, r"vocab\.json: 381 tokens but config\.json's vocab_size is 300"),
    ({"bos_token_id": 3}, r"vocab\.json: <s> has id 0 but config\.json's bos_token_id is 3"),
    ({"eos_token_id": 0}, r"vocab\.json: </s> has id 2 but config\.json's eos_token_id is 0"),
])
def test_tokenizer_that_does_not_match_the_weights(tmp_path, roberta_dir, change, message):
    """A vocabulary larger than the embedding, or other special ids than the config's: one line
    naming vocab.json (the tokenizer alone, so the weights' shapes do not get in first)."""
    location = _copy_dir(roberta_dir, tmp_path / "mismatch")
    config = json.loads((location / "config.json").read_text())
    (location / "config.json").write_text(json.dumps(dict(config, **change)))
    with pytest.raises(ModelLoadError, match=message) as info:
        load_tokenizer(str(location))
    assert "\n" not in str(info.value)


def test_missing_merges_and_foreign_weights(tmp_path, roberta_dir):
    location = _copy_dir(roberta_dir, tmp_path / "no_merges")
    (location / "merges.txt").unlink()
    with pytest.raises(ModelLoadError, match=r"merges\.txt: missing"):
        load_tokenizer(str(location))
    location = _copy_dir(roberta_dir, tmp_path / "wrong_size")
    config = json.loads((location / "config.json").read_text())
    (location / "config.json").write_text(json.dumps(dict(config, hidden_size=48, num_attention_heads=4)))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: 'embeddings\.word_embeddings\.weight' has shape"):
        load_backbone(str(location))


def test_masked_lm_checkpoint_without_pooler(tmp_path):
    """`roberta.`-prefixed weights with an `lm_head` and no pooler (RobertaForMaskedLM, SimCSE's
    saves) load; the encoder's outputs do not depend on the pooler."""
    plain = write_tiny_hf_roberta(tmp_path / "plain", seed=3)
    mlm = write_tiny_hf_roberta(tmp_path / "mlm", seed=3, key_prefix="roberta.", with_pooler=False)
    ids = np.array([[BOS_ID, 40, 41, 42, EOS_ID], [BOS_ID, 50, EOS_ID, PAD_ID, PAD_ID]], "int32")
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids != PAD_ID).astype("int32")}
    a = load_backbone(str(plain))[0](inputs)["sequence_output"]
    b = load_backbone(str(mlm))[0](inputs)["sequence_output"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.large
def test_keras_hub_roberta_preset_equals_keras_hub(tmp_path):
    """A keras-hub RoBERTa preset (a `RobertaBackbone` + `RobertaTokenizer` saved by keras-hub)
    loads into the same encoder: its sequence output equals keras-hub's own `RobertaBackbone` to
    1e-5, and the tokenizer is keras-hub's `RobertaTokenizer` from the preset."""
    vocab = write_roberta_tokenizer_files(tmp_path / "tok")
    keras.utils.set_random_seed(4)
    theirs = keras_hub.models.RobertaBackbone(vocabulary_size=len(vocab), num_layers=2, num_heads=4, hidden_dim=32,
                                              intermediate_dim=64, max_sequence_length=24)
    for variable in theirs.weights:  # away from the initialisation (LayerNorm 1/0, small kernels)
        variable.assign(variable + np.random.default_rng(5).normal(0, 0.2, variable.shape).astype("float32"))
    theirs.save_to_preset(str(tmp_path / "preset"))
    tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=str(tmp_path / "tok" / "vocab.json"),
                                                  merges=str(tmp_path / "tok" / "merges.txt"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))
    encoder = SentenceEncoder.from_pretrained(str(tmp_path / "preset"), pooler_type="avg", sequence_length=24)
    assert type(encoder.preprocessor.tokenizer).__name__ == "RobertaTokenizer"
    batch = encoder.preprocessor(SENTENCES[:4])
    ours = encoder.backbone({"token_ids": batch["token_ids"], "segment_ids": tf.zeros_like(batch["token_ids"]),
                             "padding_mask": batch["padding_mask"]})["sequence_output"]
    expected = theirs({"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]})
    real = batch["padding_mask"].numpy().astype(bool)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours)[real], keras.ops.convert_to_numpy(expected)[real],
                               atol=1e-5, rtol=0)


# --- training, saving, reloading and exporting from the tiny RoBERTa ---


@pytest.fixture(scope="module")
def trained(roberta_dir, tmp_path_factory):
    """A few ESimCSE steps (word repetition on BPE pieces, momentum encoder, queue; Keras' default
    XLA step) from the tiny RoBERTa, saved. SimCSE's steps are `test_two_replicas_equal_one_device`'s."""
    keras.utils.set_random_seed(0)
    encoder = SentenceEncoder.from_pretrained(str(roberta_dir), pooler_type="cls", mlp_only_train=True,
                                              fresh_mlp=True, sequence_length=16)
    sentences = ["the cat sat on the mat.", "Hello world, hello there.", "A man is playing a guitar.",
                 "numbers 12345 and 2026", "Café naïve résumé", "emoji 😀 ok", "中文 字符", "the lazy dog."]
    model = ESimCSE(encoder, temperature=0.05, queue_size=8, momentum=0.9, max_grad_norm=1.0)
    data = esimcse_dataset(sentences, encoder.preprocessor, batch_size=4, repeat=True)
    before = encoder.encode(sentences, verbose=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0))
    history = model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("esimcse") / "model"
    encoder.save_pretrained(str(path))
    return {"encoder": encoder, "sentences": sentences, "before": before, "loss": history.history["loss"],
            "path": path, "momentum_epsilon": model.momentum_backbone.layer_norm_epsilon}


@pytest.mark.large
def test_trains_saves_reloads_and_exports(trained, tmp_path):
    """ESimCSE from RoBERTa: the loss is finite and the weights moved; the saved folder reloads to
    the same vectors (the BPE tokenizer and epsilon 1e-5 included); the SavedModel, loaded in a fresh
    interpreter with TensorFlow and TF-Text only, tokenizes in the graph and gives `encode`'s
    vectors."""
    encoder, sentences = trained["encoder"], trained["sentences"]
    assert np.isfinite(trained["loss"]).all()
    assert trained["momentum_epsilon"] == 1e-5  # the EMA copy is a RoBERTa too
    after = encoder.encode(sentences, verbose=0)
    assert np.abs(after - trained["before"]).max() > 1e-3
    settings = json.loads((trained["path"] / "tf_esimcse.json").read_text())
    assert settings["layer_norm_epsilon"] == 1e-5 and settings["pooler_type"] == "cls_before_pooler"
    reloaded = SentenceEncoder.from_pretrained(str(trained["path"]))
    assert type(reloaded.preprocessor.tokenizer).__name__ == "RobertaTokenizer"
    assert reloaded.backbone.layer_norm_epsilon == 1e-5
    np.testing.assert_allclose(reloaded.encode(sentences, verbose=0), after, atol=1e-6)
    path = export_for_serving(reloaded, tmp_path / "export")
    # A fresh interpreter with TensorFlow and TF-Text only: the BPE tables travel in the SavedModel.
    code = ("import json, sys\nimport numpy as np\nimport tensorflow as tf\nimport tensorflow_text\n"
            "embed = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
            "np.save(sys.argv[3], embed(sentences=tf.constant(json.loads(sys.argv[2])))['embeddings'].numpy())\n"
            "assert 'keras_hub' not in sys.modules and 'tf_esimcse' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(sentences), str(tmp_path / "served.npy")],
                          capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), after, atol=1e-5)


@pytest.mark.large
def test_two_replicas_equal_one_device(roberta_dir, mirrored_strategy):
    """SimCSE from RoBERTa (`cls` pooler with its MLP in training, dropout 0): two graph-mode steps
    on two replicas (gathered negatives) give one device's losses and every weight to 1e-5
    (`training_test_case.run_replica_test`, the check every objective's tests run on BERT)."""
    rng = np.random.default_rng(0)
    token_ids = np.full((8, 12), PAD_ID, "int32")
    for row, length in enumerate(rng.integers(1, 11, size=8)):  # <s>, 1-10 BPE pieces, </s>, <pad>...
        token_ids[row, : length + 2] = [BOS_ID, *rng.integers(4, 380, size=length), EOS_ID]
    batches = [{"token_ids": ids, "padding_mask": (ids != PAD_ID).astype("int32")} for ids in np.split(token_ids, 2)]
    logs = run_replica_test(roberta_dir, lambda: SimCSEObjective(temperature=0.05), batches, mirrored_strategy)
    assert len(logs) == 2 and np.isfinite([log["loss"] for log in logs]).all()
    assert logs[0]["loss"] > 0.1  # negatives close enough to the positive for the step to move weights
