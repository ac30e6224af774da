"""DiffCSE with RoBERTa (the paper's RoBERTa-base encoder with a DistilRoBERTa generator): a tiny
Hugging Face RoBERTa encoder (`tiny_roberta.py`) and a tiny `RobertaMaskedLM` generator that
`recipes/pretrain_mlm.py --family roberta` pretrains for two steps on the encoder's byte-level BPE
vocabulary (one per module, shared by every test).

Checked: the masked copies keep `<s>`, `</s>`, `<pad>` (and their spellings in a text) and mask
with `<mask>`; the generator's edits and "replaced" labels against keras-hub's own masked LM and
NumPy (no segment ids, start `<s>`, padding `<pad>` = 1); the loss against NumPy through the shared
objective check (eager, graph, XLA, two replicas); the recipes end to end (train, save, reload,
evaluate; the generator's encoder as `--model`); and the one-line errors for a generator of
another family or vocabulary.
"""
import json
import pathlib

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from test_case import TINY_SENTENCES, tiny_encoder, to_numpy
from test_cli import write_tiny_senteval
from test_diffcse import LAMBDA
from test_diffcse import _numpy_loss  # the same NumPy loss: the discriminator is a BertEncoder (zero segments)
from test_diffcse import write_tiny_generator
from test_recipes import load_recipe
from tiny_roberta import BOS_ID, EOS_ID, MASK_TOKEN, PAD_ID, write_roberta_tokenizer_files, write_tiny_hf_roberta
from tf_esimcse.data.diffcse_views import diffcse_views
from tf_esimcse.evaluation.sts import evaluate_sts
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.objectives.diffcse import DiffCSEObjective
from tf_esimcse.training import main_guard
from training_test_case import run_objective_test

# Sentences, two of which spell RoBERTa's special tokens (its tokenizer reads them as those tokens).
# Every test reads the module's generator, made by running recipes/pretrain_mlm.py: large.
pytestmark = pytest.mark.large

SENTENCES = TINY_SENTENCES + ["the cat <s> sat on the mat .", "hello <mask> world </s> !"]


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """{"model": a tiny HF RoBERTa folder, "generator": pretrain_mlm --family roberta's preset from
    it, "mask_id": `<mask>`'s id read from vocab.json, "corpus", "data"}."""
    root = tmp_path_factory.mktemp("diffcse_roberta")
    model = write_tiny_hf_roberta(root / "roberta")
    corpus = root / "corpus.txt"
    rng = np.random.default_rng(0)
    words = " ".join(TINY_SENTENCES).split()
    corpus.write_text("\n".join(" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(120)) + "\n")
    load_recipe("pretrain_mlm").main([
        "--family", "roberta", "--vocab-from", str(model), "--corpus", str(corpus), "--output-dir", str(root / "mlm"),
        "--num-layers", "1", "--hidden-dim", "16", "--num-heads", "2", "--intermediate-dim", "32", "--max-len", "16",
        "--batch-size", "8", "--steps", "1", "--backup-steps", "1", "--held-out", "0", "--jit-compile", "false"])
    vocab = json.loads((model / "vocab.json").read_text(encoding="utf-8"))
    return {"model": model, "generator": str(root / "mlm" / "model"), "mask_id": vocab[MASK_TOKEN],
            "vocabulary_size": len(vocab), "corpus": corpus, "data": write_tiny_senteval(root / "data"),
            "root": root}


def _batches(roberta, n=2, masking_ratio=0.5, sentences=SENTENCES):
    encoder = tiny_encoder(roberta["model"])
    ds = diffcse_views(sentences * 2, encoder.preprocessor, masking_ratio=masking_ratio, batch_size=8, seed=0,
                       shuffle=False, repeat=True)
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def test_masked_copies_keep_the_special_tokens_and_mask_with_roberta_mask(roberta):
    specials = [BOS_ID, EOS_ID, PAD_ID]
    batches = _batches(roberta, n=2, masking_ratio=1.0)  # every ordinary token selected
    for batch in batches:
        anchor = batch["anchor"]["token_ids"]
        assert anchor[:, 0].tolist() == [BOS_ID] * len(anchor)
        assert (anchor[batch["anchor"]["padding_mask"] == 0] == PAD_ID).all()
        for name in ("masked_1", "masked_2"):
            masked = batch[name]["token_ids"]
            np.testing.assert_array_equal(batch[name]["padding_mask"], batch["anchor"]["padding_mask"])
            special = np.isin(anchor, specials)
            np.testing.assert_array_equal(masked[special], anchor[special])  # <s>, </s>, <pad>, spelled ones too
            ordinary = ~special & (batch["anchor"]["padding_mask"] == 1)
            share = (masked[ordinary] == roberta["mask_id"]).mean()
            assert 0.6 < share < 0.95, share  # 80 % <mask>; the rest random or kept
    # The second batch starts with the two sentences spelling <s> and </s>: inside them, kept above.
    spelled = batches[1]["anchor"]["token_ids"][:2, 1:-1]
    assert (spelled == BOS_ID).any() and (spelled == EOS_ID).any()


def test_edits_and_replaced_labels_equal_an_independent_computation(roberta):
    encoder = tiny_encoder(roberta["model"], pooler_type="cls", mlp_only_train=True)
    objective = DiffCSEObjective(roberta["generator"], generator_dropout=False, batchnorm=False)
    ContrastiveModel(encoder, objective)
    assert (objective.cls_token_id, objective.pad_token_id) == (BOS_ID, PAD_ID)
    x = _batches(roberta, n=1)[0]
    edited, replaced, mask = (to_numpy(t) for t in objective.generate(tf.nest.map_structure(tf.constant, x)))

    # Independently: keras-hub's own RobertaMaskedLM (it declares no segment ids) on every position.
    generator = keras_hub.models.MaskedLM.from_preset(roberta["generator"], preprocessor=None)
    assert isinstance(generator, keras_hub.models.RobertaMaskedLM) and "segment_ids" not in generator.input
    original = np.concatenate([x["anchor"]["token_ids"]] * 2)
    pad = np.concatenate([x["anchor"]["padding_mask"]] * 2).astype(bool)
    masked = np.concatenate([x["masked_1"]["token_ids"], x["masked_2"]["token_ids"]])
    positions = np.tile(np.arange(masked.shape[1]), (masked.shape[0], 1))
    logits = to_numpy(generator.predict({"token_ids": masked, "padding_mask": pad, "mask_positions": positions},
                                        verbose=0))
    fill = logits.argmax(-1)
    fill[:, 0] = BOS_ID
    expected_replaced = (fill != original) & pad
    np.testing.assert_array_equal(replaced, expected_replaced.astype(np.int32))
    np.testing.assert_array_equal(edited, np.where(pad, fill, PAD_ID))
    np.testing.assert_array_equal(mask, pad.astype(np.int32))
    assert 0 < expected_replaced.sum() < pad.sum()
    # The edits start with <s>, their padding is <pad> (1, not the official code's 0, which is <s>).
    assert (edited[:, 0] == BOS_ID).all() and (edited[~pad] == PAD_ID).all() and (~pad).any()


def test_diffcse_objective_with_roberta(roberta, mirrored_strategy):
    def make():
        return DiffCSEObjective(roberta["generator"], rtd_weight=LAMBDA, batchnorm=False, generator_dropout=False)

    # XLA (the default path); eager and two replicas: BERT's DiffCSE test (the same step) and
    # test_roberta's two-replica RoBERTa step
    logs = run_objective_test(roberta["model"], make, _batches(roberta), _numpy_loss, mirrored_strategy,
                              modes=("xla",))
    assert logs[0]["rtd_loss"] > 0 and logs[0]["contrastive_loss"] > 0
    assert logs[0]["loss"] == pytest.approx(logs[0]["contrastive_loss"] + LAMBDA * logs[0]["rtd_loss"], rel=1e-5)
    assert 0 < logs[0]["replaced_fraction"] < 1


def test_recipes_end_to_end(roberta, tmp_path):
    output_dir = tmp_path / "diffcse"
    results = load_recipe("diffcse").main([
        "--model", str(roberta["model"]), "--generator", roberta["generator"], "--corpus", str(roberta["corpus"]),
        "--data-dir", str(roberta["data"]), "--steps", "2", "--eval-steps", "2", "--batch-size", "8",
        "--max-len", "16", "--jit-compile", "false", "--output-dir", str(output_dir)])
    assert results["status"] == "ok"
    # Reloaded: a RoBERTa encoder (byte-level BPE, <s> ... </s> <pad>) scoring what the run reported.
    saved = SentenceEncoder.from_pretrained(str(output_dir / "model"))
    assert isinstance(saved.preprocessor.tokenizer, keras_hub.models.RobertaTokenizer)
    assert saved.pooler_type == "cls_before_pooler"
    scores = evaluate_sts(lambda s: saved.encode(s, verbose=0), roberta["data"], progress=False)
    for key in ("stsb_dev", "avg", "sts12", "sickr_test"):
        assert scores[key] == pytest.approx(results["test"][key], abs=1e-4), key

    # pretrain_mlm --family roberta's preset is also an encoder (--model) that its generator fits.
    encoder = SentenceEncoder.from_pretrained(roberta["generator"], pooler_type="cls_before_pooler")
    assert encoder.preprocessor.tokenizer.get_vocabulary() == saved.preprocessor.tokenizer.get_vocabulary()
    assert np.isfinite(encoder.encode(["hello world", "the cat sat"], verbose=0)).all()
    ContrastiveModel(encoder, DiffCSEObjective(roberta["generator"]))


def _write_roberta_generator(path, *, vocabulary_size=None, swap=None, seed=0):
    """A tiny `RobertaMaskedLM` preset; with `swap=(a, b)` its tokenizer (saved beside it) trades
    the ids of tokens a and b."""
    files = pathlib.Path(path).with_name(pathlib.Path(path).name + "_tokenizer")
    vocab = write_roberta_tokenizer_files(files)
    if swap:
        a, b = swap
        vocab[a], vocab[b] = vocab[b], vocab[a]
        (files / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.RobertaBackbone(vocabulary_size=vocabulary_size or len(vocab), num_layers=1,
                                                num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=64)
    preprocessor = None
    if swap:
        tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=str(files / "vocab.json"),
                                                      merges=str(files / "merges.txt"))
        preprocessor = keras_hub.models.RobertaMaskedLMPreprocessor(tokenizer, sequence_length=16)
    keras_hub.models.RobertaMaskedLM(backbone, preprocessor=preprocessor).save_to_preset(str(path))
    return str(path)


def _error(encoder, generator):
    with pytest.raises(ValueError) as info:
        ContrastiveModel(encoder, DiffCSEObjective(generator))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{generator}: "), message
    return message


def test_a_generator_of_another_family_or_vocabulary_is_a_one_line_error(roberta, model_dir, tmp_path):
    encoder = tiny_encoder(roberta["model"], pooler_type="cls_before_pooler")
    # A BERT generator (even one of the same size) for a RoBERTa encoder, and the other way round.
    bert = write_tiny_generator(tmp_path / "bert", vocabulary_size=roberta["vocabulary_size"])
    assert "a BERT generator (WordPiece vocabulary) for a RoBERTa sentence encoder" in _error(encoder, bert)
    assert "--family roberta" in _error(encoder, bert)
    bert_encoder = tiny_encoder(model_dir, pooler_type="cls_before_pooler")
    message = _error(bert_encoder, roberta["generator"])
    assert "a RoBERTa generator (byte-level BPE vocabulary) for a BERT sentence encoder (WordPiece)" in message
    # Another size; the start/pad ids traded; another token behind an id.
    bigger = _write_roberta_generator(tmp_path / "bigger", vocabulary_size=roberta["vocabulary_size"] + 5)
    assert f"has {roberta['vocabulary_size'] + 5} tokens, the sentence encoder's {roberta['vocabulary_size']}" in \
        _error(encoder, bigger)
    swapped = _write_roberta_generator(tmp_path / "swapped", swap=("<s>", "<pad>"))
    assert f"the generator's start token id is {PAD_ID}, the sentence encoder's {BOS_ID}" in _error(encoder, swapped)
    other = _write_roberta_generator(tmp_path / "other", swap=("a", "b"))
    message = _error(encoder, other)
    a_id = json.loads((roberta["model"] / "vocab.json").read_text(encoding="utf-8"))["a"]
    assert f"the generator's token {a_id} is 'b', the sentence encoder's 'a'" in message, message


def test_the_recipe_stops_on_a_bert_generator_in_one_line(roberta, tmp_path, capsys):
    bert = write_tiny_generator(tmp_path / "bert", vocabulary_size=roberta["vocabulary_size"])
    argv = ["--model", str(roberta["model"]), "--generator", bert, "--corpus", str(roberta["corpus"]),
            "--data-dir", str(roberta["data"]), "--steps", "2", "--batch-size", "8", "--max-len", "16",
            "--jit-compile", "false", "--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        main_guard(lambda: load_recipe("diffcse").main(argv))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {bert}: a BERT generator (WordPiece vocabulary) for a RoBERTa sentence encoder "
                     "(byte-level BPE): the generator must share the encoder's vocabulary (a RoBERTa masked LM; "
                     "recipes/pretrain_mlm.py --family roberta makes one)"], lines
    assert not (tmp_path / "out" / "model").exists()


def test_pretrain_mlm_roberta_flags_are_checked(roberta, model_dir, tmp_path):
    recipe = load_recipe("pretrain_mlm")
    base = ["--corpus", str(roberta["corpus"]), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match="--family roberta needs --vocab-from"):
        recipe.main(base + ["--family", "roberta"])
    with pytest.raises(ValueError, match="--vocab-from is --family roberta's"):
        recipe.main(base + ["--vocab-from", str(roberta["model"])])
    with pytest.raises(ValueError, match="^--vocab-from .*not the byte-level BPE vocabulary --family roberta needs$"):
        recipe.main(base + ["--family", "roberta", "--vocab-from", str(model_dir), "--batch-size", "8"])
