"""A chosen embedding size travels with the model (issue 29).

`encode(dim=d)` is the first `d` coordinates normalised again, checked against NumPy; the
`truncate_dim` a model is saved with is what `encode`, `get_config`/`from_config`,
`save_pretrained`/`from_pretrained`, the SavedModel's signatures, the keras-hub preset and the
sentence-transformers export (run by the real sentence-transformers in the side environment) give,
each compared with `encode(dim=d)`; `tf-esimcse encode/evaluate/build-index/search --dim` and
`evaluate --dims` (one encoding of each sentence, scores checked against SciPy) too.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from test_case import TINY_HIDDEN, TINY_SENTENCES, side_env_python, tiny_encoder, write_tiny_model_dir
from test_cli import write_tiny_senteval
from tf_esimcse import cli
from tf_esimcse.export import describe_signatures, export_for_serving
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.st_export import export_sentence_transformers
from tf_esimcse.truncation import SharedEncoding, check_dim, parse_dims, truncate

SENTENCES = TINY_SENTENCES + ["the café is naïve", ""]
DIM = 8  # of TINY_HIDDEN = 32


def numpy_truncate(x, d):
    """The rule, written independently: first d columns, each row divided by its float64 norm."""
    x = np.asarray(x, np.float64)[:, :d]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gelu_new_dir(tmp_path_factory):
    """A tiny BERT with the tanh GELU, which keras-hub's BertBackbone computes too (exact keras-hub check)."""
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny_gelu_new"), hidden_act="gelu_new", seed=3)


@pytest.fixture(scope="module")
def encoder(gelu_new_dir):
    return tiny_encoder(gelu_new_dir, pooler_type="avg")


@pytest.fixture(scope="module")
def full(encoder):
    return encoder.encode(SENTENCES, verbose=0)


# ---------------------------------------------------------------------------------- the rule
def test_truncate_equals_numpy_and_checks_the_size():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 12)).astype(np.float32)
    for d in (1, 5, 12):
        got = truncate(x, d)
        assert got.dtype == np.float32 and got.shape == (6, d)
        np.testing.assert_allclose(got, numpy_truncate(x, d), atol=1e-6)
    np.testing.assert_array_equal(truncate(x, 3, normalize=False), x[:, :3])
    assert np.all(truncate(np.zeros((2, 4)), 2) == 0)  # zero rows stay zero, no NaN
    assert check_dim(np.int64(4), 12) == 4
    for bad, message in ((0, "got 0"), (13, "got 13"), (-1, "got -1"), (True, "integer"), (2.0, "integer")):
        with pytest.raises(ValueError, match=message) as e:
            check_dim(bad, 12, name="--dim")
        assert str(e.value).startswith("--dim ") and "between 1 and the embedding dimension 12" in str(e.value)
        assert "\n" not in str(e.value)


def test_parse_dims():
    assert parse_dims("384,256, 128,64,32") == (384, 256, 128, 64, 32)
    assert parse_dims("7") == (7,)
    for bad, message in (("384,x", "comma-separated integers"), ("", "comma-separated integers"),
                         ("64,0", ">= 1"), ("64,64", "twice")):
        with pytest.raises(ValueError, match=message):
            parse_dims(bad)


def test_shared_encoding_encodes_each_sentence_once(full):
    calls = []
    table = dict(zip(SENTENCES, full))

    def encode(sentences):
        calls.append(list(sentences))
        return np.stack([table[s] for s in sentences])

    shared = SharedEncoding(encode)
    for d in (32, 16, 8, 4):
        np.testing.assert_allclose(shared.encode_fn(d)(SENTENCES), numpy_truncate(full, d), atol=1e-6)
        np.testing.assert_allclose(shared.encode_fn(d)(SENTENCES[::-1][:3]), numpy_truncate(full[::-1][:3], d),
                                   atol=1e-6)
    assert [s for call in calls for s in call] == SENTENCES  # each once, in the first order asked
    assert shared.encoded == len(SENTENCES)


# ---------------------------------------------------------------------------------- the encoder
def test_encode_dim_equals_numpy_truncation(encoder, full):
    assert encoder.embedding_dim == TINY_HIDDEN and encoder.truncate_dim is None
    for d in (1, DIM, 31):
        got = encoder.encode(SENTENCES, verbose=0, dim=d)
        assert got.shape == (len(SENTENCES), d) and got.dtype == np.float32
        np.testing.assert_allclose(got, numpy_truncate(full, d), atol=1e-6)
    np.testing.assert_array_equal(encoder.encode(SENTENCES, verbose=0, dim=TINY_HIDDEN), full)  # untouched
    assert encoder.encode([], dim=DIM).shape == (0, DIM)
    a, b = SENTENCES[:4], SENTENCES[4:8]
    want = np.sum(numpy_truncate(full[:4], DIM) * numpy_truncate(full[4:8], DIM), axis=1)
    np.testing.assert_allclose(encoder.similarity(a, b, dim=DIM), want, atol=1e-6)
    for bad in (0, TINY_HIDDEN + 1):
        with pytest.raises(ValueError, match=f"dim must be between 1 and the embedding dimension {TINY_HIDDEN}"):
            encoder.encode(SENTENCES, dim=bad)


def test_truncate_dim_is_the_default_and_survives_get_config(encoder, full):
    config = encoder.get_config()
    assert config["truncate_dim"] is None
    config["truncate_dim"] = DIM
    # JSON round trip; the tokenizer's vocabulary is an asset, not config, so it is passed back.
    small = SentenceEncoder.from_config(dict(json.loads(json.dumps(config)), preprocessor=encoder.preprocessor))
    small.set_weights(encoder.get_weights())
    assert small.truncate_dim == DIM and small.get_config()["truncate_dim"] == DIM
    np.testing.assert_allclose(small.encode(SENTENCES, verbose=0), numpy_truncate(full, DIM), atol=1e-6)
    np.testing.assert_allclose(small.encode(SENTENCES, verbose=0, dim=TINY_HIDDEN), full, atol=1e-6)  # dim= wins
    # The forward pass (what training uses) keeps the full vector.
    batch = small.inference_preprocessor(tf.constant(SENTENCES[:2]))
    assert small(batch).shape[-1] == TINY_HIDDEN
    for bad in (0, TINY_HIDDEN + 1):
        config["truncate_dim"] = bad
        with pytest.raises(ValueError, match="truncate_dim must be between 1"):
            SentenceEncoder.from_config(config)


# ---------------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_senteval(tmp_path_factory.mktemp("data"))


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _read_pairs(path, idx1, idx2, idx_score):
    rows = [line.split("\t") for line in pathlib.Path(path).read_text().splitlines()]
    return [r[idx1] for r in rows], [r[idx2] for r in rows], np.array([float(r[idx_score]) for r in rows])


def test_cli_evaluate_dims_one_encoding_per_sentence(capsys, tmp_path, gelu_new_dir, encoder, data_root,
                                                     monkeypatch):
    calls = []
    real_encode = SentenceEncoder.encode

    def counting_encode(self, sentences, *args, **kwargs):
        calls.append((len(sentences), kwargs.get("dim")))
        return real_encode(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceEncoder, "encode", counting_encode)
    output = tmp_path / "dims.json"
    code, out, err = _run(capsys, "evaluate", "--model", gelu_new_dir, "--pooler", "avg", "--data-dir", data_root,
                          "--dims", "32,16,4", "--output", output)
    assert code == 0, err
    results = json.loads(output.read_text())
    assert sorted(results["dims"], key=int) == ["4", "16", "32"]
    # Every encode call is at full size, and no sentence is encoded twice.
    assert {d for _, d in calls} == {TINY_HIDDEN}
    assert f"each of the {sum(n for n, _ in calls)} sentences encoded once" in out
    for label in ("32 dims", "16 dims", "4 dims", "STS12", "Avg."):
        assert label in out
    s1, s2, gold = _read_pairs(data_root / "senteval" / "STS" / "STSBenchmark" / "sts-test.csv", 5, 6, 4)
    monkeypatch.undo()
    for d in (32, 16, 4):
        a, b = encoder.encode(s1, verbose=0, dim=d), encoder.encode(s2, verbose=0, dim=d)
        want = 100 * scipy.stats.spearmanr(np.sum(a * b, axis=1), gold).statistic
        assert results["dims"][str(d)]["stsb_test"] == pytest.approx(want, abs=1e-6)
        assert results["dims"][str(d)]["dim"] == d
    # One size with --dim: the same scores as that size's row, and the size recorded.
    code, out, err = _run(capsys, "evaluate", "--model", gelu_new_dir, "--pooler", "avg", "--data-dir", data_root,
                          "--dim", "16", "--output", tmp_path / "one.json")
    assert code == 0 and "the first 16 of 32 dimensions" in out, err
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["dim"] == 16
    for key in ("sts12", "stsb_test", "avg", "stsb_dev", "alignment", "uniformity"):
        assert one[key] == pytest.approx(results["dims"]["16"][key], abs=1e-6), key


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "--dims", "16,64"], "--dims must be between 1 and the embedding dimension 32, got 64"),
    (["evaluate", "--dims", "16,x"], "--dims must be comma-separated integers"),
    (["evaluate", "--dims", "16,8", "--dim", "8"], "give --dim or --dims, not both"),
    (["evaluate", "--dims", "16,8", "--length-split"], "--length-split is not available with --dims"),
    (["encode", "--dim", "0"], "--dim must be between 1 and the embedding dimension 32, got 0"),
    (["encode", "--dim", "33"], "--dim must be between 1 and the embedding dimension 32, got 33"),
])
def test_cli_size_errors_are_one_line(capsys, tmp_path, gelu_new_dir, data_root, argv, needle):
    (tmp_path / "in.txt").write_text("hello world\n")
    extra = (["--data-dir", data_root] if argv[0] == "evaluate"
             else ["--input", tmp_path / "in.txt", "--output", tmp_path / "out.npy"])
    code, out, err = _run(capsys, *argv, "--model", gelu_new_dir, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


@pytest.mark.large
def test_cli_encode_build_index_search_at_a_size(capsys, tmp_path, gelu_new_dir, encoder):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(s for s in SENTENCES if s) + "\n")
    code, out, err = _run(capsys, "encode", "--model", gelu_new_dir, "--pooler", "avg", "--dim", DIM,
                          "--input", corpus, "--output", tmp_path / "e.npy")
    assert code == 0, err
    docs = [s for s in SENTENCES if s]
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), encoder.encode(docs, verbose=0, dim=DIM), atol=1e-6)

    code, out, err = _run(capsys, "build-index", "--model", gelu_new_dir, "--pooler", "avg", "--dim", DIM,
                          "--corpus", corpus)
    assert code == 0 and f"({DIM}-dimensional" in out, err
    code, out, err = _run(capsys, "search", "--model", gelu_new_dir, "--pooler", "avg", "--dim", 16,
                          "--corpus", corpus, "--query", "a lazy dog")
    assert code == 2 and f"pass --dim {DIM}" in err and len(err.strip().splitlines()) == 1, err
    scores = numpy_truncate(encoder.encode(docs, verbose=0), DIM) @ numpy_truncate(
        encoder.encode(["a lazy dog"], verbose=0), DIM)[0]
    best = np.argsort(-scores, kind="stable")[:3]
    for size in (["--dim", DIM], []):  # without --dim the queries take the index's size
        code, out, err = _run(capsys, "search", "--model", gelu_new_dir, "--pooler", "avg", *size,
                              "--corpus", corpus, "--query", "a lazy dog", "--top-k", "3")
        assert code == 0, err
        hits = [line.split(None, 2) for line in out.splitlines() if line[:4].strip().rstrip(".").isdigit()]
        assert [h[2] for h in hits] == [docs[i] for i in best]
        np.testing.assert_allclose([float(h[1]) for h in hits], scores[best], atol=1e-4)

    code, out, err = _run(capsys, "export", "--format", "sentence-transformers", "--model", gelu_new_dir,
                          "--pooler", "avg", "--dim", DIM, "--output", tmp_path / "st")
    assert code == 0, err
    assert json.loads((tmp_path / "st" / "config_sentence_transformers.json").read_text())["truncate_dim"] == DIM


# ---------------------------------------------------------------------------------- on disk
@pytest.fixture(scope="module")
def saved(encoder, tmp_path_factory):
    """`encoder` with truncate_dim=DIM, saved by save_pretrained."""
    small = SentenceEncoder.from_config(dict(encoder.get_config(), truncate_dim=DIM, preprocessor=encoder.preprocessor))
    small.set_weights(encoder.get_weights())
    return small.save_pretrained(tmp_path_factory.mktemp("saved") / "small")


@pytest.mark.large
def test_save_pretrained_round_trip(saved, full, encoder, tmp_path):
    assert json.loads((saved / "tf_esimcse.json").read_text())["truncate_dim"] == DIM
    reloaded = SentenceEncoder.from_pretrained(str(saved))
    assert reloaded.truncate_dim == DIM
    np.testing.assert_allclose(reloaded.encode(SENTENCES, verbose=0), numpy_truncate(full, DIM), atol=1e-6)
    assert SentenceEncoder.from_pretrained(str(saved), truncate_dim=16).encode(SENTENCES[:2], verbose=0).shape[1] == 16
    # An untruncated save writes no truncate_dim (its files are as before).
    plain = encoder.save_pretrained(tmp_path / "plain")
    assert "truncate_dim" not in json.loads((plain / "tf_esimcse.json").read_text())
    settings = json.loads((plain / "tf_esimcse.json").read_text())
    (plain / "tf_esimcse.json").write_text(json.dumps(dict(settings, truncate_dim=99)))
    with pytest.raises(ValueError, match=r"tf_esimcse\.json: truncate_dim must be between 1 and the embedding "
                                         r"dimension 32, got 99"):
        SentenceEncoder.from_pretrained(str(plain))


@pytest.mark.large
def test_evaluate_shows_the_full_size_start_only_beside_a_full_size_model(saved, data_root, tmp_path, capsys):
    """A training run's model/ is shown beside its untrained start's row, which was evaluated at full
    size: not when the model is evaluated truncated (its saved truncate_dim, or --dim)."""
    import shutil

    start = {"test": {"sts12": 1.0, "sts13": 2.0, "sts14": 3.0, "sts15": 4.0, "sts16": 5.0, "stsb_test": 6.0,
                      "sickr_test": 7.0, "avg": 4.0}}
    for name, truncated in (("full", False), ("small", True)):
        run = tmp_path / name
        shutil.copytree(saved, run / "model")
        (run / "results.json").write_text(json.dumps({"start": start}))
        if not truncated:
            settings = json.loads((run / "model" / "tf_esimcse.json").read_text())
            del settings["truncate_dim"]
            (run / "model" / "tf_esimcse.json").write_text(json.dumps(settings))
        code, out, err = _run(capsys, "evaluate", "--model", run / "model", "--data-dir", data_root)
        assert code == 0, err
        assert ("start (untrained)" in out) == (not truncated), out
        assert (f"the first {DIM} of {TINY_HIDDEN} dimensions" in out) == truncated, out


@pytest.mark.large
def test_keras_hub_preset_truncated_equals_encode(saved, full):
    """keras-hub's TextEmbedder has no truncation setting: its full vectors, cut to the saved
    truncate_dim (tf_esimcse.json) and normalised, are `encode(dim=d)`."""
    import keras_hub

    embedder = keras_hub.models.TextEmbedder.from_preset(str(saved))
    theirs = np.asarray(embedder.predict(SENTENCES, verbose=0))
    assert theirs.shape == (len(SENTENCES), TINY_HIDDEN)
    size = json.loads((saved / "tf_esimcse.json").read_text())["truncate_dim"]
    np.testing.assert_allclose(numpy_truncate(theirs, size), numpy_truncate(full, DIM), atol=1e-5)


@pytest.mark.large
def test_saved_model_signatures_give_the_chosen_size(saved, encoder, full, tmp_path):
    import tensorflow_text  # noqa: F401  registers the TF-Text ops before the graph is loaded

    small = SentenceEncoder.from_pretrained(str(saved))
    path = export_for_serving(small, tmp_path / "serving")  # the saved truncate_dim
    assert f"embeddings: float32 [?, {DIM}]" in describe_signatures(path)
    model = tf.saved_model.load(str(path))
    want = numpy_truncate(full, DIM)
    by_text = model.signatures["serving_default"](sentences=tf.constant(SENTENCES))["embeddings"].numpy()
    np.testing.assert_allclose(by_text, want, atol=1e-5)
    batch = small.inference_preprocessor(tf.constant(SENTENCES))
    by_tokens = model.signatures["encode_tokens"](token_ids=batch["token_ids"], padding_mask=batch["padding_mask"])
    np.testing.assert_allclose(by_tokens["embeddings"].numpy(), want, atol=1e-5)
    scores = model.signatures["similarity"](sentences_a=tf.constant(SENTENCES[:5]),
                                            sentences_b=tf.constant(SENTENCES[5:10]))["scores"].numpy()
    np.testing.assert_allclose(scores, np.sum(want[:5] * want[5:10], axis=1), atol=1e-5)
    # dim= overrides the model's size; a size the model does not have is refused before writing.
    other = export_for_serving(encoder, tmp_path / "serving16", dim=16, text_ops=False)
    got = tf.saved_model.load(str(other)).signatures["encode_tokens"](
        token_ids=batch["token_ids"], padding_mask=batch["padding_mask"])["embeddings"].numpy()
    np.testing.assert_allclose(got, numpy_truncate(full, 16), atol=1e-5)
    with pytest.raises(ValueError, match="dim must be between 1"):
        export_for_serving(encoder, tmp_path / "never", dim=TINY_HIDDEN + 1)
    assert not (tmp_path / "never").exists()


_SIDE_SCRIPT = pathlib.Path(__file__).resolve().with_name("st_side.py")




@pytest.mark.large
def test_sentence_transformers_export_keeps_the_size(saved, full, tmp_path):
    small = SentenceEncoder.from_pretrained(str(saved))
    out = export_sentence_transformers(small, tmp_path / "st")
    assert json.loads((out / "config_sentence_transformers.json").read_text())["truncate_dim"] == DIM
    again = SentenceEncoder.from_pretrained(str(out))  # our loader reads it back
    assert again.truncate_dim == DIM
    np.testing.assert_allclose(again.encode(SENTENCES, verbose=0), numpy_truncate(full, DIM), atol=1e-5)

    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": str(out), "output": str(tmp_path / "st.npz"), "sentences": SENTENCES}))
    done = subprocess.run([str(side_env_python()), str(_SIDE_SCRIPT), str(job)], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["sentence_transformers"] == "6.2.0" and info["truncate_dim"] == DIM, info
    with np.load(tmp_path / "st.npz") as arrays:
        theirs, similarity = arrays["embeddings"], arrays["similarity"]
    assert theirs.shape == (len(SENTENCES), DIM)
    # sentence-transformers truncates after its Normalize module: prefixes of unit vectors, whose
    # direction (and so every cosine) is encode(dim=d)'s.
    np.testing.assert_allclose(numpy_truncate(theirs, DIM), numpy_truncate(full, DIM), atol=1e-5)
    want = numpy_truncate(full, DIM)
    np.testing.assert_allclose(similarity, want[:4] @ want.T, atol=1e-5)


# ---------------------------------------------------------------------------------- the docs' numbers
def test_the_truncated_minilm_table_is_its_raw_evaluation():
    """docs/serving.md's table of all-MiniLM-L6-v2 cut to each size: its rows are the committed
    `evaluate --dims --output` file at the printed decimals, its full-size row is the plain
    `evaluate` of the same model (docs/results/minilm_start), and the drops the text states are
    the file's."""
    repo = pathlib.Path(__file__).resolve().parents[1]
    folder = repo / "docs" / "results" / "minilm_truncated"
    raw = json.loads((folder / "evaluate_dims.json").read_text())
    table = json.loads((folder / "table.json").read_text())
    assert raw["model"] == "default" and raw["pooler"] == "avg"
    sizes = [int(row["cells"]["size"].split()[0]) for row in table["rows"]]
    assert sizes == [384, 256, 128, 64, 32] and sorted(raw["dims"], key=int) == ["32", "64", "128", "256", "384"]
    for size, row in zip(sizes, table["rows"]):
        for column in table["columns"][1:]:
            got = f"{row['cells'][column['key']]:.{column['decimals']}f}"
            assert got == f"{raw['dims'][str(size)][column['key']]:.{column['decimals']}f}", (size, column["key"])
    plain = json.loads((repo / "docs" / "results" / "minilm_start" / "evaluate_avg.json").read_text())
    for key in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test", "avg", "stsb_dev"):
        assert f"{raw['dims']['384'][key]:.2f}" == f"{plain[key]:.2f}", key
    avg = {int(d): r["avg"] for d, r in raw["dims"].items()}
    drops = [f"{avg[384] - avg[d]:.2f}" for d in (256, 128, 64, 32)]
    text = " ".join((repo / "docs" / "serving.md").read_text().split())
    assert (f"Down to 256 dimensions the 7-task average moves by {drops[0]}, at 128 by {drops[1]}, at 64 by "
            f"{drops[2]} and at 32 by {drops[3]} points") in text
