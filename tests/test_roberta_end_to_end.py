"""RoBERTa end to end (issue 28's "done when"): SimCSE, ESimCSE and supervised SimCSE each train
from a tiny random RoBERTa in Hugging Face format AND from a keras-hub RoBERTa preset saved here,
save, reload, evaluate and export (keras-hub preset, SavedModel, sentence-transformers).

The six recipe runs are in-process (`tf_esimcse.methods.<name>.main`, as tests/test_recipes.py
runs them), 2 steps of batch 8 on a tiny corpus and a tiny SentEval (`test_cli.write_tiny_senteval`),
shared by the whole module. Each saved model is checked against something computed apart from the
run: its weights against the checkpoint it started from (they moved), its STS-B dev score against a
Spearman of cosines recomputed here with SciPy, the keras-hub preset against keras-hub's own
loaders, the SavedModel against `encode`, and the sentence-transformers folders with the real
`SentenceTransformer` (tests/st_side.py in the side environment, one interpreter for all six;
skipped without it except under CI=true, where it fails). DiffCSE is left to its own tests.
"""
import json
import os
import subprocess

import keras
import keras_hub
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from test_case import side_env_python
from test_cli import write_tiny_senteval
from test_recipes import load_method
from test_st_export import _SIDE_SCRIPT
from tf_esimcse.data.senteval import read_stsb
from tf_esimcse.export import export_for_serving
from tf_esimcse.models.bert_encoder import to_keras_hub_backbone
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.st_export import export_sentence_transformers
from tiny_roberta import write_roberta_tokenizer_files
from tiny_roberta import write_tiny_hf_roberta

pytestmark = pytest.mark.large

METHODS = ("unsup_simcse", "unsup_esimcse", "sup_simcse")
SOURCES = ("hf", "keras_hub")
RUNS = [(method, source) for source in SOURCES for method in METHODS]
# Leading and trailing spaces, accents, emoji, CJK, numbers, an empty and a long sentence.
SENTENCES = ["Hello world.", "  leading and trailing spaces  ", "Café naïve résumé, Ångström",
             "emoji 😀 👍🏽 ok", "中文 字符 and 日本語", "numbers 12345 and 3.14159, 2026", "",
             "the quick brown fox jumped over the lazy dog. " * 3]
_WORDS = ["the", "cat", "sat", "on", "mat", "Café", "naïve", "😀", "中文", "12345", "hello", "world", "dog", "lazy",
          "quick", "fox", "and", "is", "playing", "."]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The two starting checkpoints, the corpora and the tiny SentEval."""
    root = tmp_path_factory.mktemp("roberta_e2e")
    vocab = write_roberta_tokenizer_files(root / "tokenizer")
    keras.utils.set_random_seed(7)
    backbone = keras_hub.models.RobertaBackbone(vocabulary_size=len(vocab), num_layers=2, num_heads=4, hidden_dim=32,
                                                intermediate_dim=64, max_sequence_length=64)
    noise = np.random.default_rng(8)
    for variable in backbone.weights:  # away from the initialisation (LayerNorm 1/0, small kernels)
        variable.assign(variable + noise.normal(0, 0.2, variable.shape).astype("float32"))
    backbone.save_to_preset(str(root / "keras_hub_preset"))
    keras_hub.models.RobertaTokenizer(vocabulary=str(root / "tokenizer" / "vocab.json"),
                                      merges=str(root / "tokenizer" / "merges.txt")).save_to_preset(
        str(root / "keras_hub_preset"))
    rng = np.random.default_rng(0)

    def sentence():
        return " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 10))))

    (root / "corpus.txt").write_text("\n".join(sentence() for _ in range(48)) + "\n", encoding="utf-8")
    (root / "nli.csv").write_text("sent0,sent1,hard_neg\n" + "".join(
        f"{sentence()},{sentence()},{sentence()}\n" for _ in range(24)), encoding="utf-8")
    return {"root": root, "hf": write_tiny_hf_roberta(root / "hf", seed=5), "keras_hub": root / "keras_hub_preset",
            "corpus.txt": root / "corpus.txt", "nli.csv": root / "nli.csv", "data": write_tiny_senteval(root / "data")}


@pytest.fixture(scope="module")
def runs(workspace):
    """Each method from each source: 2 steps, STS-B dev at steps 0 and 2, the best saved and
    reloaded; the reloaded model's vectors of SENTENCES and of STS-B dev's pairs (one `encode`), and
    under "start" each source's weights before training."""
    dev = read_stsb(workspace["data"], "dev")
    texts = SENTENCES + list(dev.sentences1) + list(dev.sentences2)
    out = {"start": {source: _backbone_weights(SentenceEncoder.from_pretrained(str(workspace[source])).backbone)
                     for source in SOURCES}}
    for method, source in RUNS:
        output_dir = workspace["root"] / f"{method}-{source}"
        corpus = workspace["nli.csv" if method == "sup_simcse" else "corpus.txt"]
        argv = ["--model", workspace[source], "--corpus", corpus,
                "--data-dir", workspace["data"], "--steps", 2, "--eval-steps", 2, "--batch-size", 8, "--max-len", 16,
                "--output-dir", output_dir, "--jit-compile", "false", "--no-final-eval"]
        load_method(method).main([str(a) for a in argv])
        encoder = SentenceEncoder.from_pretrained(str(output_dir / "model"))
        vectors = encoder.encode(texts, verbose=0)
        n, pairs = len(SENTENCES), len(dev.scores)
        out[method, source] = {"dir": output_dir, "encoder": encoder, "embeddings": vectors[:n],
                               "dev": (vectors[n:n + pairs], vectors[n + pairs:], dev.scores)}
    return out


def _read_json(path):
    return json.loads(path.read_text())


def _ids(tokenizer, sentence):
    return np.asarray(keras.ops.convert_to_numpy(tokenizer(sentence))).tolist()


def _backbone_weights(backbone):
    return {w.path: keras.ops.convert_to_numpy(w) for w in backbone.weights}


@pytest.mark.parametrize("method, source", RUNS)
def test_trains_saves_reloads_and_evaluates(workspace, runs, method, source):
    """The run trained from its source (every encoder weight moved from the checkpoint's), saved a
    RoBERTa (BPE tokenizer, epsilon 1e-5) with the method's inference pooler, and the reloaded
    model's STS-B dev Spearman, recomputed here from its cosines, is the run's best."""
    run = runs[method, source]
    results = _read_json(run["dir"] / "results.json")
    assert results["config"]["model"] == str(workspace[source]) and results["config"]["steps"] == 2
    evaluations = _read_json(run["dir"] / "evaluations.json")
    assert [e["step"] for e in evaluations] == [0, 2] and np.isfinite([e["stsb_dev"] for e in evaluations]).all()
    encoder = run["encoder"]
    assert type(encoder.preprocessor.tokenizer).__name__ == "RobertaTokenizer"
    assert encoder.backbone.layer_norm_epsilon == 1e-5 and encoder.backbone.max_sequence_length == 64
    assert encoder.pooler_type == ("cls" if method == "sup_simcse" else "cls_before_pooler")
    before, after = runs["start"][source], _backbone_weights(encoder.backbone)
    assert sorted(before) == sorted(after)
    still = {name for name in after if np.abs(after[name] - before[name]).max() < 1e-7}
    # Only what no loss reaches: BERT's tanh pooler (the `cls` head is the pooler's own MLP) and
    # the key biases (softmax is invariant to them).
    assert still <= {"pooled_dense/kernel", "pooled_dense/bias", "transformer_layer_0/self_attention_layer/key/bias",
                     "transformer_layer_1/self_attention_layer/key/bias"}, sorted(still)

    a, b, scores = run["dev"]
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.ptp(cosines) > 1e-3  # distinct vectors, not a collapsed encoder
    spearman = 100 * scipy.stats.spearmanr(cosines, scores).statistic
    assert spearman == pytest.approx(results["best_stsb_dev"], abs=1e-3)


@pytest.mark.parametrize("method, source", RUNS)
def test_saved_folder_is_a_keras_hub_preset(workspace, runs, method, source):
    """keras-hub alone reads the saved folder: a `BertBackbone` with the encoder's weights and the
    `RobertaTokenizer` with the source's vocabulary and our ids."""
    run = runs[method, source]
    backbone = keras_hub.models.Backbone.from_preset(str(run["dir"] / "model"))
    assert type(backbone) is keras_hub.models.BertBackbone
    expected = to_keras_hub_backbone(run["encoder"].backbone).get_weights()
    for theirs, ours in zip(backbone.get_weights(), expected, strict=True):
        np.testing.assert_array_equal(theirs, ours)
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(run["dir"] / "model"))
    assert type(tokenizer) is keras_hub.models.RobertaTokenizer
    assert dict(tokenizer.vocabulary) == _read_json(workspace["root"] / "tokenizer" / "vocab.json")
    ours = run["encoder"].preprocessor.tokenizer
    for sentence in SENTENCES:
        assert _ids(tokenizer, sentence) == _ids(ours, sentence), sentence


def test_saved_model_export(runs, tmp_path):
    """The SavedModel (BPE tokenizer in the graph) of supervised SimCSE from the keras-hub preset
    (the `cls` head with its MLP) gives `encode`'s vectors. (tests/test_roberta.py exports ESimCSE
    from a Hugging Face folder and runs it in a fresh TensorFlow + TF-Text interpreter.)"""
    run = runs["sup_simcse", "keras_hub"]
    path = export_for_serving(run["encoder"], tmp_path / "serving")
    embed = tf.saved_model.load(str(path)).signatures["serving_default"]
    np.testing.assert_allclose(embed(sentences=tf.constant(SENTENCES))["embeddings"].numpy(), run["embeddings"],
                               atol=1e-5, rtol=0)


def test_sentence_transformers_exports(runs, tmp_path):
    """All six exported for sentence-transformers: `SentenceTransformer(path)` (one side interpreter)
    builds `RobertaModel`, our ids and our vectors to 1e-5 (supervised SimCSE's MLP as a Dense)."""
    st_python = side_env_python()  # before any work: skip (or fail in CI) at once
    jobs = []
    for i, key in enumerate(RUNS):
        out = export_sentence_transformers(runs[key]["encoder"], tmp_path / f"st_{i}")
        jobs.append({"model": str(out), "output": str(tmp_path / f"st_{i}.npz"), "sentences": SENTENCES})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run([str(st_python), str(_SIDE_SCRIPT), str(tmp_path / "jobs.json")], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    infos = [json.loads(line) for line in done.stdout.strip().splitlines() if line.startswith("{")]
    assert len(infos) == len(RUNS)
    for i, ((method, source), info) in enumerate(zip(RUNS, infos)):
        assert info["auto_model"] == "RobertaModel" and info["tokenizer_is_fast"], info
        assert info["modules"] == ["Transformer", "Pooling"] + ["Dense"] * (method == "sup_simcse") + ["Normalize"]
        tokenizer = runs[method, source]["encoder"].preprocessor.tokenizer
        with np.load(tmp_path / f"st_{i}.npz") as theirs:
            for k, sentence in enumerate(SENTENCES):  # <s> pieces </s>, none truncated at 64
                ours = [tokenizer.start_token_id, *_ids(tokenizer, sentence), tokenizer.end_token_id]
                assert theirs[f"ids_{k}"].tolist() == ours, (method, source, sentence)
            np.testing.assert_allclose(theirs["embeddings"], runs[method, source]["embeddings"], atol=1e-5, rtol=0,
                                       err_msg=f"{method} from {source}")
