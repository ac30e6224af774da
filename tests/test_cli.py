"""Tests for the `tf-esimcse` command (`tf_esimcse.cli.main`), run in-process on a tiny model.

`write_tiny_senteval(root)` (also used by `test_recipes.py`) writes a tiny SentEval-layout data
directory: `root/senteval/STS/STS12-en-test ... STS16-en-test`, `STSBenchmark/sts-{dev,test}.csv`
and `SICK/SICK_test_annotated.txt`, a few pairs each, over the tiny vocabulary.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from tiny_hf import numpy_bert_forward
from tf_esimcse import cli
from tf_esimcse.models.sentence_encoder import SentenceEncoder

_WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox", "jumped",
          "over", "lazy", "is", "playing", "runs"]
RESULT_KEYS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test", "avg", "stsb_dev",
               "alignment", "uniformity")


def _pairs(rng, n):
    """`n` (sentence1, sentence2, score) with varied scores (some >= 4) and length differences."""
    out = []
    for i in range(n):
        len1 = int(rng.integers(2, 8))
        len2 = len1 + (int(rng.integers(0, 3)) if i % 2 == 0 else int(rng.integers(5, 9)))
        s1 = " ".join(rng.choice(_WORDS, size=len1))
        s2 = " ".join(rng.choice(_WORDS, size=len2))
        score = [4.6, 0.4, 3.1, 4.2, 1.7, 2.5, 0.9, 3.8][i % 8] + 0.01 * i
        out.append((s1, s2, round(min(score, 5.0), 2)))
    return out


def write_tiny_senteval(root, seed=0, pairs_per_file=8):
    """Write a tiny SentEval-layout data root (`root/senteval/...`) and return `root`."""
    rng = np.random.default_rng(seed)
    sts = pathlib.Path(root) / "senteval" / "STS"
    for year in ("STS12", "STS13", "STS14", "STS15", "STS16"):
        year_dir = sts / f"{year}-en-test"
        year_dir.mkdir(parents=True)
        for subset in ("alpha", "beta"):
            pairs = _pairs(rng, pairs_per_file // 2)
            (year_dir / f"STS.input.{subset}.txt").write_text("".join(f"{a}\t{b}\n" for a, b, _ in pairs))
            (year_dir / f"STS.gs.{subset}.txt").write_text("".join(f"{s}\n" for _, _, s in pairs))
    stsb = sts / "STSBenchmark"
    stsb.mkdir(parents=True)
    for split in ("dev", "test"):
        pairs = _pairs(rng, pairs_per_file)
        (stsb / f"sts-{split}.csv").write_text(
            "".join(f"main-captions\tMSRvid\t2012test\t{i:04d}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(pairs))
        )
    sick = pathlib.Path(root) / "senteval" / "SICK"
    sick.mkdir(parents=True)
    pairs = _pairs(rng, pairs_per_file)
    (sick / "SICK_test_annotated.txt").write_text(
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
        + "".join(f"{i}\t{a}\t{b}\t{1.0 + 0.8 * s:.2f}\tNEUTRAL\n" for i, (a, b, s) in enumerate(pairs))
    )
    return pathlib.Path(root)


def _read_pairs(path, idx1, idx2, idx_score=None):
    rows = [line.split("\t") for line in pathlib.Path(path).read_text().splitlines()]
    gold = None if idx_score is None else np.array([float(r[idx_score]) for r in rows])
    return [r[idx1] for r in rows], [r[idx2] for r in rows], gold


def _spearman_of(encoder, s1, s2, gold):
    a, b = encoder.encode(s1, verbose=0), encoder.encode(s2, verbose=0)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 100.0 * scipy.stats.spearmanr(cos, gold).statistic


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_senteval(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference_encoder(model_dir):
    return SentenceEncoder.from_pretrained(str(model_dir))


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- encode -------------------------------------------------------------------------------------

LINES = ["the cat sat on the mat .", "hello world", "a quick brown fox jumped over the lazy dog",
         "the cat sat on the mat .", "dog", "the lazy cat is playing"]


@pytest.mark.large
@pytest.mark.parametrize("pooler", [None, "avg"])
def test_encode_writes_one_row_per_line_in_order(capsys, tmp_path, model_dir, reference_encoder, pooler):
    src = tmp_path / "sentences.txt"
    src.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "sub" / "embeddings.npy"
    argv = ["encode", "--model", model_dir, "--input", src, "--output", out, "--batch-size", "4"]
    if pooler:
        argv += ["--pooler", pooler]
    code, stdout, err = _run(capsys, *argv)
    assert code == 0, err
    embeddings = np.load(out)
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(LINES), 32)
    encoder = reference_encoder
    if pooler is not None:
        encoder = SentenceEncoder.from_pretrained(str(model_dir), pooler_type=pooler)
    np.testing.assert_allclose(embeddings, encoder.encode(LINES, verbose=0), atol=1e-5)
    np.testing.assert_allclose(embeddings[0], embeddings[3], atol=1e-6)  # same line, same row
    assert not np.allclose(embeddings[0], embeddings[1], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert f"{len(LINES)} x 32" in stdout
    assert [p.name for p in out.parent.iterdir()] == ["embeddings.npy"]  # no temporary file left


@pytest.mark.large
def test_encode_cls_pooler_uses_the_checkpoint_pooler(capsys, tmp_path, model_dir):
    src = tmp_path / "sentences.txt"
    src.write_text("\n".join(LINES) + "\n")
    rows = []
    for run in range(2):
        out = tmp_path / f"run{run}.npy"
        code, stdout, err = _run(capsys, "encode", "--model", model_dir, "--pooler", "cls", "--input", src,
                                 "--output", out)
        assert code == 0, err
        rows.append(np.load(out))
    encoder = SentenceEncoder.from_pretrained(str(model_dir))
    batch = encoder.preprocessor(LINES)
    pooled = numpy_bert_forward(model_dir, np.asarray(batch["token_ids"]), np.asarray(batch["padding_mask"]))
    expected = pooled["pooled_output"] / np.linalg.norm(pooled["pooled_output"], axis=1, keepdims=True)
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-6)  # reproducible
    np.testing.assert_allclose(rows[0], expected, atol=1e-4)


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_prints_table_and_writes_json(capsys, tmp_path, model_dir, data_root, reference_encoder):
    output = tmp_path / "results.json"
    code, out, err = _run(capsys, "evaluate", "--model", model_dir, "--data-dir", data_root, "--output", output)
    assert code == 0, err
    for header in ("STS12", "STS16", "STSB", "SICKR", "Avg."):
        assert header in out
    assert "STS-B dev" in out and "alignment" in out
    results = json.loads(output.read_text())
    for key in RESULT_KEYS:
        assert isinstance(results[key], float) and np.isfinite(results[key]), key
    assert "length_split" not in results
    assert results["pooler"] == "cls_before_pooler"  # a Hugging Face directory: SimCSE's release pooler
    assert results["avg"] == pytest.approx(np.mean([results[k] for k in RESULT_KEYS[:7]]))
    # Independent check of two scores: Spearman x100 of cosines vs gold.
    senteval = data_root / "senteval"
    s1, s2, gold = _read_pairs(senteval / "STS" / "STSBenchmark" / "sts-test.csv", 5, 6, 4)
    assert results["stsb_test"] == pytest.approx(_spearman_of(reference_encoder, s1, s2, gold), abs=1e-6)
    a1, a2, _ = _read_pairs(senteval / "STS" / "STS12-en-test" / "STS.input.alpha.txt", 0, 1)
    b1, b2, _ = _read_pairs(senteval / "STS" / "STS12-en-test" / "STS.input.beta.txt", 0, 1)
    gold12 = np.concatenate(
        [np.loadtxt(senteval / "STS" / "STS12-en-test" / f"STS.gs.{s}.txt") for s in ("alpha", "beta")])
    assert results["sts12"] == pytest.approx(_spearman_of(reference_encoder, a1 + b1, a2 + b2, gold12), abs=1e-6)


def test_evaluate_length_split(capsys, tmp_path, model_dir, data_root, reference_encoder):
    output = tmp_path / "results.json"
    code, out, err = _run(capsys, "evaluate", "--model", model_dir, "--data-dir", data_root, "--output", output,
                          "--length-split")
    assert code == 0, err
    assert "length difference" in out
    results = json.loads(output.read_text())
    for key in RESULT_KEYS:
        assert key in results
    split = results["length_split"]
    assert split["threshold"] == 3
    s1, s2, gold = _read_pairs(data_root / "senteval" / "STS" / "STSBenchmark" / "sts-test.csv", 5, 6, 4)
    tokenize = reference_encoder.preprocessor.tokenize
    diff = np.array([abs(len(tokenize([a]).to_list()[0]) - len(tokenize([b]).to_list()[0])) for a, b in zip(s1, s2)])
    short = diff <= 3
    assert (split["n_short"], split["n_long"]) == (int(short.sum()), int((~short).sum()))
    assert split["n_short"] >= 2 and split["n_long"] >= 2
    s1, s2 = np.array(s1), np.array(s2)
    assert split["short_diff"] == pytest.approx(
        _spearman_of(reference_encoder, list(s1[short]), list(s2[short]), gold[short]), abs=1e-6)
    assert split["long_diff"] == pytest.approx(
        _spearman_of(reference_encoder, list(s1[~short]), list(s2[~short]), gold[~short]), abs=1e-6)


# --- errors: exit code 2 and one line naming the problem ------------------------------------------


def _assert_one_line_error(code, err, *needles):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("model", ["tiny", "missing"])
def test_evaluate_missing_data_dir(capsys, tmp_path, model_dir, model):
    missing = tmp_path / "no_data_here"
    # Checked before any model is loaded: a bad model path too still reports the data first.
    model = model_dir if model == "tiny" else tmp_path / "no_such_model"
    code, out, err = _run(capsys, "evaluate", "--model", model, "--data-dir", missing)
    _assert_one_line_error(code, err, str(missing), "SentEval")


@pytest.mark.parametrize("command", ["evaluate", "encode"])
def test_unknown_pooler(capsys, tmp_path, model_dir, data_root, command):
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    if command == "evaluate":
        argv = ["evaluate", "--data-dir", data_root]
    else:
        argv = ["encode", "--input", src, "--output", tmp_path / "out.npy"]
    code, out, err = _run(capsys, *argv, "--model", model_dir, "--pooler", "foo")
    _assert_one_line_error(code, err, "'foo'", "cls_before_pooler")
    assert not (tmp_path / "out.npy").exists()


_IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
_NOBODY = 65534


def _encode_unreadable_as_nobody(model_dir):
    """The "unreadable" case as root: a child process imports the CLI as root, then drops to
    nobody (uid/gid 65534, no supplementary groups) and runs the same encode command, so the
    kernel refuses the chmod-000 file for real. Everything else it needs is world-readable in a
    fresh folder (the tiny model copied there), so the only thing it cannot read is the input."""
    import shutil
    import tempfile

    folder = pathlib.Path(tempfile.mkdtemp(prefix="tf_esimcse_unreadable_"))
    try:
        folder.chmod(0o755)
        model = pathlib.Path(shutil.copytree(model_dir, folder / "model"))
        for item in [model, *model.rglob("*")]:
            item.chmod(0o755 if item.is_dir() else 0o644)
        path, needle = _bad_input(folder, "unreadable")
        out = folder / "out.npy"
        code = (
            "import importlib, importlib.util, os, sys\n"
            "for name in ('tf_esimcse.cli', 'tf_esimcse.commands', 'tf_esimcse.data.corpus'):  # while root\n"
            "    if importlib.util.find_spec(name): importlib.import_module(name)\n"
            f"os.setgroups([]); os.setgid({_NOBODY}); os.setuid({_NOBODY})\n"
            "assert os.geteuid() != 0 and not os.access(sys.argv[1], os.R_OK)\n"
            f"sys.exit(sys.modules['tf_esimcse.cli'].main(['encode', '--model', {str(model)!r}, "
            f"'--input', sys.argv[1], '--output', {str(out)!r}]))\n"
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                              timeout=300, cwd=folder)
        # TF's C++ start-up lines may precede it: the CLI's own lines start "error" (or a traceback).
        err = "\n".join(line for line in done.stderr.splitlines() if line.startswith(("error", "Traceback")))
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        _assert_one_line_error(done.returncode, err or done.stderr, str(path), needle, "Permission denied")
        assert not out.exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _bad_input(tmp_path, kind):
    path = tmp_path / "input.txt"
    if kind == "missing":
        return path, "no such file"
    if kind == "directory":
        path.mkdir()
        return path, "directory"
    if kind == "not_utf8":
        path.write_bytes(b"hello world\nthe caf\xe9\n")
        return path, "UTF-8"
    if kind == "unreadable":
        path.write_text("hello world\n")
        path.chmod(0)
        return path, "cannot read"
    if kind == "empty":
        path.write_text("")
        return path, "no lines"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "not_utf8",
        # As root (how CI runs) the command runs in a child that drops to nobody: root reads a chmod-000 file.
        pytest.param("unreadable", marks=[pytest.mark.large] if _IS_ROOT else []),
        "empty",
    ],
)
def test_encode_bad_input_file(capsys, tmp_path, model_dir, kind):
    if kind == "unreadable" and _IS_ROOT:
        return _encode_unreadable_as_nobody(model_dir)
    path, needle = _bad_input(tmp_path, kind)
    out = tmp_path / "out.npy"
    code, stdout, err = _run(capsys, "encode", "--model", model_dir, "--input", path, "--output", out)
    _assert_one_line_error(code, err, str(path), needle)
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "encode"])
def test_nonexistent_model_path(capsys, tmp_path, data_root, command):
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    missing = tmp_path / "no_such_model"
    if command == "evaluate":
        argv = ["evaluate", "--data-dir", data_root]
    else:
        argv = ["encode", "--input", src, "--output", tmp_path / "out.npy"]
    code, out, err = _run(capsys, *argv, "--model", missing)
    _assert_one_line_error(code, err, "no_such_model")


def test_directory_that_is_not_a_model(capsys, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    not_a_model = tmp_path / "just_a_folder"
    not_a_model.mkdir()
    code, out, err = _run(capsys, "encode", "--model", not_a_model, "--input", src, "--output", tmp_path / "o.npy")
    _assert_one_line_error(code, err, "just_a_folder", "not a model directory")


def test_unknown_model_name_gives_one_line(capsys, tmp_path, monkeypatch):
    """A bare name that is neither a directory here nor a keras-hub preset (keras-hub's own
    message is 7 lines long; it must not reach the user whole)."""
    monkeypatch.chdir(tmp_path)  # "no_such_model" is not a directory here
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    code, out, err = _run(capsys, "encode", "--model", "no_such_model", "--input", src, "--output", tmp_path / "o.npy")
    _assert_one_line_error(code, err, "no_such_model")


def test_encode_output_is_a_directory(capsys, tmp_path, model_dir):
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    out_dir = tmp_path / "outdir"
    out_dir.mkdir()
    code, out, err = _run(capsys, "encode", "--model", model_dir, "--input", src, "--output", out_dir)
    _assert_one_line_error(code, err, "outdir", "directory")
    assert list(out_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "outdir"]  # no temporary file left


# --- a training run folder as --model --------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model_dir):
    """A run folder as `run_training` leaves it: `model/` (a `save_pretrained` directory),
    `results.json`, `best_step.json`, `logs/`."""
    run = tmp_path_factory.mktemp("runs") / "unsup_esimcse"
    SentenceEncoder.from_pretrained(str(model_dir)).save_pretrained(run / "model")
    (run / "results.json").write_text(json.dumps({"best_step": 125, "model_dir": str(run / "model")}))
    (run / "best_step.json").write_text(json.dumps({"step": 125, "stsb_dev": 80.0}))
    (run / "logs").mkdir()
    return run


def test_resolve_model_path(tmp_path, run_dir, model_dir):
    assert cli.resolve_model_path(str(run_dir)) == str(run_dir / "model")
    assert cli.resolve_model_path(run_dir) == str(run_dir / "model")
    assert cli.resolve_model_path(str(run_dir / "model")) == str(run_dir / "model")  # a model dir stays
    assert cli.resolve_model_path(str(model_dir)) == str(model_dir)  # a Hugging Face dir stays
    for unchanged in ("default", "bert_base_en_uncased", str(tmp_path / "missing"), None):
        assert cli.resolve_model_path(unchanged) == unchanged
    (tmp_path / "not_a_run" / "model").mkdir(parents=True)  # a model/ subfolder that is not a model
    assert cli.resolve_model_path(str(tmp_path / "not_a_run")) == str(tmp_path / "not_a_run")


def test_default_aliases_match_the_loader():
    from tf_esimcse import backbones

    assert set(cli._DEFAULT_MODEL_ALIASES) == set(backbones._DEFAULT_ALIASES)


@pytest.mark.large
def test_encode_from_a_run_folder(capsys, tmp_path, run_dir):
    src = tmp_path / "sentences.txt"
    src.write_text("\n".join(LINES) + "\n")
    rows = {}
    for name, model in (("run", run_dir), ("model", run_dir / "model")):
        code, stdout, err = _run(capsys, "encode", "--model", model, "--input", src, "--output", tmp_path / f"{name}.npy")
        assert code == 0, err
        rows[name] = np.load(tmp_path / f"{name}.npy")
    np.testing.assert_array_equal(rows["run"], rows["model"])
    assert rows["run"].shape == (len(LINES), 32)


def test_evaluate_from_a_run_folder_records_the_model_dir(capsys, tmp_path, run_dir, data_root):
    output = tmp_path / "results.json"
    code, out, err = _run(capsys, "evaluate", "--model", run_dir, "--data-dir", data_root, "--output", output)
    assert code == 0, err
    results = json.loads(output.read_text())
    assert results["model"] == str(run_dir / "model")
    assert np.isfinite(results["avg"])


@pytest.mark.parametrize("command", ["evaluate", "encode", "export"])
def test_every_subcommand_resolves_a_run_folder(capsys, tmp_path, monkeypatch, run_dir, data_root, command):
    seen = []

    def fake_from_pretrained(source, **kwargs):
        seen.append(source)
        raise ValueError("stop here")

    monkeypatch.setattr(SentenceEncoder, "from_pretrained", staticmethod(fake_from_pretrained))
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    argv = {"evaluate": ["evaluate", "--data-dir", data_root],
            "encode": ["encode", "--input", src, "--output", tmp_path / "o.npy"],
            "export": ["export", "--output", tmp_path / "export"]}[command]
    code, out, err = _run(capsys, *argv, "--model", run_dir)
    _assert_one_line_error(code, err, "stop here")
    assert seen == [str(run_dir / "model")]


def test_folder_with_results_but_no_model_keeps_the_error(capsys, tmp_path):
    run = tmp_path / "interrupted_run"
    (run / "logs").mkdir(parents=True)
    (run / "results.json").write_text("{}")
    src = tmp_path / "in.txt"
    src.write_text("hello world\n")
    code, out, err = _run(capsys, "encode", "--model", run, "--input", src, "--output", tmp_path / "o.npy")
    _assert_one_line_error(code, err, "interrupted_run", "not a model directory")


# --- the console script ----------------------------------------------------------------------------


@pytest.mark.large
def test_console_script_prints_help():
    script = pathlib.Path(sys.executable).parent / "tf-esimcse"
    if not script.is_file():
        pytest.skip(f"console script not installed next to {sys.executable}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tf-esimcse")
    assert "evaluate" in proc.stdout and "encode" in proc.stdout


@pytest.mark.large
def test_export_sentence_transformers_format(model_dir, tmp_path, capsys, reference_encoder):
    out = tmp_path / "st"
    assert cli.main(["export", "--format", "sentence-transformers", "--model", str(model_dir), "--output", str(out)]) == 0
    assert "SentenceTransformer(" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "vocab.txt", "modules.json"} <= {p.name for p in out.iterdir()}
    again = SentenceEncoder.from_pretrained(str(out))
    sentences = ["a cat sat on the mat", "hello world"]
    np.testing.assert_allclose(again.encode(sentences, verbose=0), reference_encoder.encode(sentences, verbose=0),
                               atol=1e-5)
    assert cli.main(["export", "--format", "sentence-transformers", "--model", str(model_dir), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", "--format", "sentence-transformers", "--model", str(model_dir), "--output", str(out),
                 "--overwrite"]) == 0
