"""Tests for `tf_esimcse.litert_export` and `tf-esimcse export --format litert`.

A tiny random BERT (`tiny_hf.write_tiny_hf_bert`) is exported (float32 and dynamic-range int8);
a fresh Python process that imports neither TensorFlow nor tf_esimcse runs the flatbuffers in the
LiteRT interpreter of `ai_edge_litert` (which has no select-TF-ops, so loading proves the graph is
builtin ops only), and its embeddings are compared here with `SentenceEncoder.encode`.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

from test_case import rowwise_cosine
from tf_esimcse import cli
from tf_esimcse import litert_export
from tf_esimcse.errors import ExportError
from tf_esimcse.layers.transformer_layer import gelu_exact
from tf_esimcse.layers.transformer_layer import portable_gelu
from tf_esimcse.litert_export import export_litert
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tiny_hf import write_tiny_hf_bert

pytest.importorskip("ai_edge_litert")

HIDDEN = 32
DIM = 8  # the --dim export
SENTENCES = [
    "the cat sat on the mat .",
    "Hello World!",
    "café naïve résumé",
    "zebra xylophone",
    "",
    " ".join(["the quick brown fox jumped over a lazy dog ."] * 10),
]
SUBPROCESS_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")

RUN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    out, inputs_json, files_json = sys.argv[1:4]
    inputs = json.loads(open(inputs_json).read())
    ids = np.array(inputs["ids"], dtype=np.int32)
    mask = np.array(inputs["mask"], dtype=np.int32)
    results, meta = {}, {}
    for name, path in json.loads(open(files_json).read()).items():
        interpreter = Interpreter(model_path=path)
        runner = interpreter.get_signature_runner()
        results[name] = runner(input_ids=ids, attention_mask=mask)["embeddings"]
        n = int(mask[1].sum())  # another batch size and length in the same interpreter
        results[name + "/one"] = runner(input_ids=ids[1:2, :n], attention_mask=mask[1:2, :n])["embeddings"]
        meta[name] = {"signatures": interpreter.get_signature_list(),
                      "ops": sorted({op["op_name"] for op in interpreter._get_ops_details()})}
    np.savez(out, **results)
    meta["modules"] = sorted(m for m in ("tensorflow", "tf_esimcse", "keras") if m in sys.modules)
    open(out + ".json", "w").write(json.dumps(meta))
    """
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_hf_bert(tmp_path_factory.mktemp("litert_hf") / "tiny", num_layers=2, hidden=HIDDEN, heads=2)


@pytest.fixture(scope="module")
def encoders(model_dir):
    return {
        "avg": SentenceEncoder.from_pretrained(str(model_dir), pooler_type="avg"),
        "cls_before_pooler": SentenceEncoder.from_pretrained(str(model_dir), pooler_type="cls_before_pooler"),
    }


@pytest.fixture(scope="module")
def exported(model_dir, encoders, tmp_path_factory):
    """`avg` with its int8 variant through the command line, `cls_before_pooler` through
    `export_litert` (float32 only)."""
    base = tmp_path_factory.mktemp("litert_out")
    assert cli.main(["export", "--format", "litert", "--quantize", "int8", "--model", str(model_dir),
                     "--pooler", "avg", "--output", str(base / "avg")]) == 0
    export_litert(encoders["cls_before_pooler"], base / "cls_before_pooler")
    # --dim: the first DIM coordinates, normalised again (encode(dim=DIM))
    assert cli.main(["export", "--format", "litert", "--model", str(model_dir), "--pooler", "avg", "--dim", str(DIM),
                     "--output", str(base / "avg_dim")]) == 0
    return {"avg": base / "avg", "cls_before_pooler": base / "cls_before_pooler", "avg_dim": base / "avg_dim"}


@pytest.fixture(scope="module")
def fresh_run(exported, encoders, tmp_path_factory):
    work = tmp_path_factory.mktemp("litert_run")
    packed = encoders["avg"].inference_preprocessor(tf.constant(SENTENCES))
    (work / "inputs.json").write_text(json.dumps({"ids": packed["token_ids"].numpy().tolist(),
                                                  "mask": packed["padding_mask"].numpy().tolist()}))
    files = {"avg": exported["avg"] / "model.tflite", "avg/int8": exported["avg"] / "model_int8.tflite",
             "cls_before_pooler": exported["cls_before_pooler"] / "model.tflite",
             "avg_dim": exported["avg_dim"] / "model.tflite"}
    (work / "files.json").write_text(json.dumps({k: str(v) for k, v in files.items()}))
    (work / "run.py").write_text(RUN_SCRIPT)
    out = str(work / "out.npz")
    proc = subprocess.run([sys.executable, str(work / "run.py"), out, str(work / "inputs.json"),
                           str(work / "files.json")], capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out)), json.loads(pathlib.Path(out + ".json").read_text())


@pytest.mark.large
def test_fresh_interpreter_without_tensorflow_matches_encode(fresh_run, encoders):
    results, meta = fresh_run
    assert meta["modules"] == []
    for name, encoder in encoders.items():
        expected = encoder.encode(SENTENCES, verbose=0)
        assert results[name].dtype == np.float32 and results[name].shape == expected.shape
        assert rowwise_cosine(results[name], expected).min() >= 0.99999, name
        np.testing.assert_allclose(np.linalg.norm(results[name], axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(results[f"{name}/one"][0], expected[1], atol=1e-5)
    # Dynamic-range int8 weights: close, not equal (measured 0.9998 on this random model).
    expected = encoders["avg"].encode(SENTENCES, verbose=0)
    assert 0.99 <= rowwise_cosine(results["avg/int8"], expected).min() < 0.999999
    truncated = encoders["avg"].encode(SENTENCES, verbose=0, dim=DIM)
    assert results["avg_dim"].shape == truncated.shape
    assert rowwise_cosine(results["avg_dim"], truncated).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(results["avg_dim"], axis=1), 1.0, atol=1e-5)


@pytest.mark.large
def test_signature_builtin_ops_and_layout(fresh_run, exported):
    _, meta = fresh_run
    for name in ("avg", "avg/int8", "cls_before_pooler"):
        assert meta[name]["signatures"] == {
            "serving_default": {"inputs": ["attention_mask", "input_ids"], "outputs": ["embeddings"]}}
        assert "GELU" in meta[name]["ops"]
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in meta[name]["ops"])
    tokenizer_files = ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert sorted(p.name for p in exported["avg"].iterdir()) == sorted(  # + the command line's model card
        ["README.md", "model.tflite", "model_int8.tflite"] + tokenizer_files)
    assert sorted(p.name for p in exported["cls_before_pooler"].iterdir()) == sorted(["model.tflite"] + tokenizer_files)
    float32, int8 = ((exported["avg"] / f).stat().st_size for f in ("model.tflite", "model_int8.tflite"))
    assert int8 < 0.8 * float32


@pytest.mark.large
def test_without_the_portable_gelu_the_converter_refuses_in_one_line(encoders, tmp_path, monkeypatch):
    """The exact GELU as training traces it leaves a bare Erf, which LiteRT has no builtin for:
    the export says so in one line and writes nothing (select-TF-ops are never switched on)."""
    monkeypatch.setattr(litert_export, "portable_gelu", lambda: __import__("contextlib").nullcontext())
    with pytest.raises(ExportError) as raised:
        export_litert(encoders["avg"], tmp_path / "out")
    message = str(raised.value)
    assert message.startswith("the LiteRT converter cannot take this encoder with builtin ops only")
    assert "Erf" in message and len(message.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_portable_gelu_is_the_exact_gelu():
    x = np.linspace(-6, 6, 101).astype("float32")
    reference = x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
    with portable_gelu():
        portable = keras.ops.convert_to_numpy(gelu_exact(keras.ops.convert_to_tensor(x)))
    plain = keras.ops.convert_to_numpy(gelu_exact(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(portable, reference, atol=1e-6)
    np.testing.assert_allclose(plain, reference, atol=1e-6)


def test_bad_quantize_and_existing_output(model_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="quantize must be None"):
        litert_export.check_quantize("int4")
    rc = cli.main(["export", "--format", "litert", "--quantize", "int4", "--model", str(model_dir),
                   "--output", str(tmp_path / "out")])
    assert rc == 2 and "invalid choice 'int4'" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    rc = cli.main(["export", "--format", "litert", "--model", str(model_dir), "--output", str(tmp_path / "full")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "--overwrite" in err and len(err.splitlines()) == 1
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
