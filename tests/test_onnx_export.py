"""Tests for `tf_esimcse.onnx_export` and `tf-esimcse export --format onnx`.

Tiny random BERTs (`tiny_hf.write_tiny_hf_bert`) are exported; a fresh Python process that
imports neither TensorFlow nor tf_esimcse (only onnxruntime, Hugging Face `tokenizers` and NumPy)
tokenizes the sentences with the exported ``tokenizer.json``, runs ``model.onnx`` in ONNX Runtime,
and its embeddings are compared here with `SentenceEncoder.encode`.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from test_case import rowwise_cosine
from tf_esimcse import cli
from tf_esimcse.errors import ExportError
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.onnx_export import export_onnx
from tiny_hf import write_tiny_hf_bert

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

HIDDEN = 32
DIM = 8  # the --dim export
# In-vocabulary, accented, out-of-vocabulary, empty, and longer than the 64 positions (truncated).
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
    import onnxruntime
    from tokenizers import Tokenizer

    out = sys.argv[1]
    sentences = json.loads(open(sys.argv[2]).read())
    results, meta = {}, {}
    for name, directory in json.loads(open(sys.argv[3]).read()).items():
        tokenizer = Tokenizer.from_file(directory + "/tokenizer.json")
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        batch = tokenizer.encode_batch(sentences)
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        session = onnxruntime.InferenceSession(directory + "/model.onnx", providers=["CPUExecutionProvider"])
        results[name] = session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})[0]
        # Extra padding columns (on the short sentences: 64 positions at most) and one sentence
        # alone change nothing.
        short = int(mask[:-1].sum(axis=1).max())
        wide = np.pad(ids[:-1, :short], ((0, 0), (0, 3))), np.pad(mask[:-1, :short], ((0, 0), (0, 3)))
        results[name + "/padded"] = session.run(None, {"input_ids": wide[0], "attention_mask": wide[1]})[0]
        results[name + "/one"] = session.run(None, {"input_ids": ids[:1, :int(mask[0].sum())],
                                                    "attention_mask": mask[:1, :int(mask[0].sum())]})[0]
        results[name + "/ids"] = ids
        meta[name] = {
            "inputs": [[i.name, i.type, len(i.shape)] for i in session.get_inputs()],
            "outputs": [[o.name, o.type, o.shape[-1]] for o in session.get_outputs()],
            "metadata": session.get_modelmeta().custom_metadata_map,
        }
    np.savez(out, **results)
    meta["modules"] = sorted(m for m in ("tensorflow", "tf_esimcse", "keras") if m in sys.modules)
    open(out + ".json", "w").write(json.dumps(meta))
    """
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_hf_bert(tmp_path_factory.mktemp("onnx_hf") / "tiny", num_layers=2, hidden=HIDDEN, heads=2)


@pytest.fixture(scope="module")
def encoders(model_dir):
    """`avg` (mean pooling) and `cls` with its MLP head at inference ([CLS]-only last layer + tanh)."""
    return {
        "avg": SentenceEncoder.from_pretrained(str(model_dir), pooler_type="avg"),
        "cls": SentenceEncoder.from_pretrained(str(model_dir), pooler_type="cls"),
    }


@pytest.fixture(scope="module")
def exported(model_dir, encoders, tmp_path_factory):
    """`avg` through the command line, `cls` through `export_onnx`."""
    base = tmp_path_factory.mktemp("onnx_out")
    assert cli.main(["export", "--format", "onnx", "--model", str(model_dir), "--pooler", "avg",
                     "--output", str(base / "avg")]) == 0
    export_onnx(encoders["cls"], base / "cls")
    # --dim: the graph ends in the first DIM coordinates, normalised again (encode(dim=DIM))
    assert cli.main(["export", "--format", "onnx", "--model", str(model_dir), "--pooler", "avg", "--dim", str(DIM),
                     "--output", str(base / "avg_dim")]) == 0
    return {"avg": base / "avg", "cls": base / "cls", "avg_dim": base / "avg_dim"}


@pytest.fixture(scope="module")
def fresh_run(exported, tmp_path_factory):
    work = tmp_path_factory.mktemp("onnx_run")
    (work / "run.py").write_text(RUN_SCRIPT)
    (work / "sentences.json").write_text(json.dumps(SENTENCES))
    (work / "dirs.json").write_text(json.dumps({k: str(v) for k, v in exported.items()}))
    out = str(work / "out.npz")
    proc = subprocess.run([sys.executable, str(work / "run.py"), out, str(work / "sentences.json"),
                           str(work / "dirs.json")], capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out)), json.loads(pathlib.Path(out + ".json").read_text())


@pytest.mark.large
def test_fresh_process_without_tensorflow_matches_encode(fresh_run, encoders):
    results, meta = fresh_run
    assert meta["modules"] == []  # neither TensorFlow nor tf_esimcse (nor Keras) was imported
    for name, encoder in encoders.items():
        expected = encoder.encode(SENTENCES, verbose=0)
        for key, rows in ((name, len(SENTENCES)), (f"{name}/padded", len(SENTENCES) - 1)):
            assert results[key].dtype == np.float32 and results[key].shape == expected[:rows].shape
            assert rowwise_cosine(results[key], expected[:rows]).min() >= 0.99999, key
            np.testing.assert_allclose(np.linalg.norm(results[key], axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(results[f"{name}/one"][0], expected[0], atol=1e-5)
        # tokenizer.json gives the ids our preprocessor gives (the long sentence truncated to 64).
        ours = encoder.inference_preprocessor(tf.constant(SENTENCES))
        length = results[f"{name}/ids"].shape[1]
        np.testing.assert_array_equal(results[f"{name}/ids"], ours["token_ids"].numpy()[:, :length])
        assert length == 64
    truncated = encoders["avg"].encode(SENTENCES, verbose=0, dim=DIM)
    assert results["avg_dim"].shape == truncated.shape
    assert rowwise_cosine(results["avg_dim"], truncated).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(results["avg_dim"], axis=1), 1.0, atol=1e-5)
    assert meta["avg_dim"]["outputs"][0][2] == DIM and meta["avg_dim"]["metadata"]["embedding_dim"] == str(DIM)


@pytest.mark.large
def test_graph_inputs_outputs_and_metadata(fresh_run, exported):
    _, meta = fresh_run
    for name in ("avg", "cls"):
        assert meta[name]["inputs"] == [["input_ids", "tensor(int64)", 2], ["attention_mask", "tensor(int64)", 2]]
        assert meta[name]["outputs"] == [["embeddings", "tensor(float)", HIDDEN]]
        assert meta[name]["metadata"] == {
            "producer": "tf_esimcse", "pooler": name, "embedding_dim": str(HIDDEN), "max_length": "64",
            "normalized": "true", "inputs": "input_ids,attention_mask", "outputs": "embeddings",
        }
        card = ["README.md"] if name == "avg" else []  # the command line writes the model card (tf_esimcse.model_card)
        assert sorted(p.name for p in exported[name].iterdir()) == sorted(card + [
            "model.onnx", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"])


@pytest.mark.large
def test_cli_refuses_an_existing_output_then_overwrites(model_dir, exported, capsys):
    out = exported["avg"]
    before = (out / "model.onnx").read_bytes()
    assert cli.main(["export", "--format", "onnx", "--model", str(model_dir), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "model.onnx").read_bytes() == before
    assert cli.main(["export", "--format", "onnx", "--model", str(model_dir), "--pooler", "cls_before_pooler",
                     "--output", str(out), "--overwrite"]) == 0
    assert "wrote model.onnx" in capsys.readouterr().out
    assert (out / "model.onnx").read_bytes() != before


def test_cli_flag_errors_are_one_line(tmp_path, capsys):
    for extra, words in ((["--quantize", "int8"], "--quantize applies to --format litert"),
                         (["--precision", "bfloat16"], "--format onnx is float32")):
        rc = cli.main(["export", "--format", "onnx", "--model", str(tmp_path / "none"),
                       "--output", str(tmp_path / "out")] + extra)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("error: ") and words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_graph_the_converter_cannot_take_is_one_error_and_writes_nothing(model_dir, tmp_path, monkeypatch):
    import tf2onnx

    def refuse(*args, **kwargs):
        raise ValueError("tf2onnx: unsupported op FancyOp\nmore detail")

    monkeypatch.setattr(tf2onnx.convert, "from_function", refuse)
    encoder = SentenceEncoder.from_pretrained(str(model_dir), pooler_type="avg")
    with pytest.raises(ExportError, match=r"^tf2onnx could not convert this encoder to ONNX \(opset 17\): "
                                          r"tf2onnx: unsupported op FancyOp$"):
        export_onnx(encoder, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder is left
    with pytest.raises(TypeError, match="takes a SentenceEncoder"):
        export_onnx(object(), tmp_path / "out")
