"""Tests for `tf_esimcse.export` (TF Serving SavedModels) and the `tf-esimcse export` command.

A tiny random BERT (`tiny_hf.write_tiny_hf_bert`) is exported; the SavedModel is reloaded in a
fresh Python process (only TensorFlow + TF-Text: neither tf_esimcse nor keras-hub) and its
three signatures are compared with `SentenceEncoder.encode` here. `saved_model_cli` and a TF
Serving `PredictRequest` are checked against the signatures; a real `tensorflow_model_server`
is queried over REST and gRPC when one is on PATH.
"""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import types
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from tf_esimcse import cli
from tf_esimcse.export import ExportError
from tf_esimcse.export import VersionExistsError
from tf_esimcse.export import describe_signatures
from tf_esimcse.export import existing_versions
from tf_esimcse.export import export_for_serving
from tf_esimcse.export import next_version
from tf_esimcse.export import read_signatures
from tf_esimcse.export import resolve_version
from tf_esimcse.export import serving_functions
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tiny_hf import write_tiny_hf_bert

HIDDEN = 32
MODEL_NAME = "tiny_encoder"
# In-vocabulary, out-of-vocabulary, empty, and longer than max-len (truncated) sentences.
SENTENCES = [
    "the cat sat on the mat .",
    "hello world !",
    "the quick brown fox jumped over the lazy dog .",
    "",
    "zebra xylophone",
    " ".join(["a lazy dog"] * 20),
]
SENTENCES_B = ["a cat sat on a mat", "hello", "the lazy dog is playing", "", "a dog", "quick fox"]
TF_TEXT_OPS = {"CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets", "FastWordpieceTokenizeWithOffsets"}
SUBPROCESS_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
# `saved_model_cli` itself has no flag to load custom ops (`--tf_debug` is the debugger); this
# runs the very same CLI after `import tensorflow_text` has registered the TF-Text ops.
SAVED_MODEL_CLI_WITH_TF_TEXT = (
    "import sys, tensorflow_text; from tensorflow.python.tools.saved_model_cli import main; "
    "sys.argv[0] = 'saved_model_cli'; sys.exit(main())"
)


def _cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _run(cmd, timeout=180):
    return subprocess.run(cmd, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=timeout)


def _saved_model_cli():
    path = pathlib.Path(sys.executable).with_name("saved_model_cli")
    return str(path) if path.exists() else shutil.which("saved_model_cli")


def _graph_ops(version_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((pathlib.Path(version_dir) / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for fn in graph.library.function:
        ops |= {node.op for node in fn.node_def}
    return ops


def _saved_variable_shapes(version_dir):
    names = tf.train.list_variables(str(pathlib.Path(version_dir) / "variables" / "variables"))
    return sorted(tuple(shape) for name, shape in names if name != "_CHECKPOINTABLE_OBJECT_GRAPH")


def _printed_array(text):
    """The numbers of a NumPy array printed by `saved_model_cli run`."""
    body = text.split("Result for output key embeddings:", 1)[1]
    return np.array([float(x) for x in re.findall(r"-?\d+\.\d*(?:e[-+]?\d+)?", body)], dtype=np.float32)


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_hf_bert(tmp_path_factory.mktemp("export_hf") / "tiny", num_layers=2, hidden=HIDDEN, heads=2)


@pytest.fixture(scope="module")
def encoder(model_dir):
    return SentenceEncoder.from_pretrained(str(model_dir), pooler_type="avg")


@pytest.fixture(scope="module")
def expected(encoder):
    emb = encoder.encode(SENTENCES, verbose=0)
    emb_b = encoder.encode(SENTENCES_B, verbose=0)
    return {"embeddings": emb, "scores": _cosine(emb, emb_b)}


@pytest.fixture(scope="module")
def exported(encoder, tmp_path_factory):
    """The default (TF-Text) export: `<base>/1`."""
    return export_for_serving(encoder, tmp_path_factory.mktemp("serving") / MODEL_NAME)


@pytest.fixture(scope="module")
def tokens_only(model_dir, tmp_path_factory):
    """A `text_ops=False` export of a `cls` encoder whose MLP head is training-only."""
    enc = SentenceEncoder.from_pretrained(str(model_dir), pooler_type="cls", mlp_only_train=True)
    path = export_for_serving(enc, tmp_path_factory.mktemp("serving_tokens") / MODEL_NAME, text_ops=False)
    return enc, path


RELOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow_text  # noqa: F401  registers the TF-Text ops before the graph is loaded
    import tensorflow as tf

    path, inputs_json, out = sys.argv[1:4]
    inputs = json.loads(open(inputs_json).read())
    model = tf.saved_model.load(path)
    sigs = model.signatures
    specs = {
        key: {
            "inputs": {n: [s.dtype.name, s.shape.as_list()] for n, s in fn.structured_input_signature[1].items()},
            "outputs": {n: [s.dtype.name, s.shape.as_list()] for n, s in fn.structured_outputs.items()},
        }
        for key, fn in sigs.items()
    }
    results = {
        "serving_default": sigs["serving_default"](sentences=tf.constant(inputs["sentences"]))["embeddings"],
        "encode_tokens": sigs["encode_tokens"](
            token_ids=tf.constant(inputs["token_ids"], tf.int32),
            padding_mask=tf.constant(inputs["padding_mask"], tf.int32),
        )["embeddings"],
        "similarity": sigs["similarity"](
            sentences_a=tf.constant(inputs["sentences"]), sentences_b=tf.constant(inputs["sentences_b"])
        )["scores"],
        "empty": sigs["serving_default"](sentences=tf.constant([], tf.string))["embeddings"],
    }
    np.savez(out, **{k: v.numpy() for k, v in results.items()})
    loaded = sorted(m for m in ("tf_esimcse", "keras_hub") if m in sys.modules)
    open(out + ".json", "w").write(json.dumps({"specs": specs, "modules": loaded}))
    """
)


@pytest.fixture(scope="module")
def reloaded(exported, encoder, tmp_path_factory):
    """Outputs of the three signatures and their loaded specs, from a fresh process."""
    work = tmp_path_factory.mktemp("reload")
    packed = encoder.inference_preprocessor(tf.constant(SENTENCES))
    inputs = {
        "sentences": SENTENCES,
        "sentences_b": SENTENCES_B,
        "token_ids": packed["token_ids"].numpy().tolist(),
        "padding_mask": packed["padding_mask"].numpy().tolist(),
    }
    (work / "inputs.json").write_text(json.dumps(inputs))
    (work / "reload.py").write_text(RELOAD_SCRIPT)
    out = str(work / "out.npz")
    proc = _run([sys.executable, str(work / "reload.py"), str(exported), str(work / "inputs.json"), out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads(pathlib.Path(out + ".json").read_text())
    return dict(np.load(out), **meta)


# ---------------------------------------------------------------------------------- layout
@pytest.mark.large
def test_versions_increment_conflict_and_no_temp_dirs(encoder, tmp_path):
    base = tmp_path / "saved_models" / MODEL_NAME  # parents are created
    first = export_for_serving(encoder, base, text_ops=False)
    second = export_for_serving(encoder, base, text_ops=False)
    assert first == base.resolve() / "1" and second == base.resolve() / "2"
    for version_dir in (first, second):
        assert (version_dir / "saved_model.pb").is_file()
        assert (version_dir / "variables" / "variables.index").is_file()
        # Readable by a server running as another user (not mkdtemp's 0700).
        umask = os.umask(0)
        os.umask(umask)
        assert version_dir.stat().st_mode & 0o777 == 0o777 & ~umask

    before = (second / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(VersionExistsError, match="version 2 already exists"):
        export_for_serving(encoder, base, version=2, text_ops=False)
    assert (second / "saved_model.pb").stat().st_mtime_ns == before

    assert export_for_serving(encoder, base, version=7, text_ops=False) == base.resolve() / "7"
    assert next_version(base) == 8
    assert sorted(os.listdir(base)) == ["1", "2", "7"]  # no temporary directories left


def test_version_rules(tmp_path):
    base = tmp_path / "m"
    assert next_version(base) == 1 and existing_versions(base) == {}
    for name in ("3", "010", "abc", ".tmp-export-99-x"):
        (base / name).mkdir(parents=True)
    (base / "42").write_text("a file, not a version")
    assert existing_versions(base) == {3: "3", 10: "010"}
    assert next_version(base) == 11 and resolve_version(base) == 11
    assert resolve_version(base, 4) == 4 and resolve_version(base, np.int64(5)) == 5
    with pytest.raises(VersionExistsError, match="010"):  # TF Serving reads "010" as version 10
        resolve_version(base, 10)
    for bad in (-1, "2", 2.0, True):
        with pytest.raises(ValueError, match="non-negative int"):
            resolve_version(base, bad)
    with pytest.raises(ExportError, match="not a directory"):
        resolve_version(base / "42")


@pytest.mark.large
def test_export_is_atomic_and_cleans_up_on_failure(encoder, tmp_path, monkeypatch):
    base = tmp_path / "m"
    real_save = tf.saved_model.save
    seen = []

    def observing_save(obj, export_dir, **kwargs):
        seen.append(pathlib.Path(export_dir))
        real_save(obj, export_dir, **kwargs)
        assert not (base / "1").exists()  # the version appears only once complete

    monkeypatch.setattr(tf.saved_model, "save", observing_save)
    export_for_serving(encoder, base, text_ops=False)
    assert seen[0].parent == base.resolve() and seen[0].name.startswith(".")  # a hidden sibling
    assert sorted(os.listdir(base)) == ["1"]

    def crashing_save(obj, export_dir, **kwargs):
        (pathlib.Path(export_dir) / "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crashing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_for_serving(encoder, base, text_ops=False)
    assert sorted(os.listdir(base)) == ["1"]


def test_refuses_training_models_and_encoders_without_preprocessor(encoder, tmp_path):
    with pytest.raises(TypeError, match="model.encoder"):
        export_for_serving(types.SimpleNamespace(encoder=encoder), tmp_path / "m")
    bare = SentenceEncoder(encoder.backbone, pooler_type="avg")
    with pytest.raises(ValueError, match="no preprocessor"):
        export_for_serving(bare, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------- graph semantics
@pytest.mark.large
def test_serving_functions_match_encode_in_process(encoder, expected):
    fns = serving_functions(encoder)
    out = fns["serving_default"](tf.constant(SENTENCES))["embeddings"].numpy()
    np.testing.assert_allclose(out, expected["embeddings"], atol=1e-5, rtol=0)
    scores = fns["similarity"](tf.constant(SENTENCES), tf.constant(SENTENCES_B))["scores"].numpy()
    np.testing.assert_allclose(scores, expected["scores"], atol=1e-5, rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same length"):
        fns["similarity"](tf.constant(SENTENCES), tf.constant(SENTENCES_B[:2]))


@pytest.mark.large
def test_unnormalised_encoder_is_served_normalised(model_dir):
    raw = SentenceEncoder.from_pretrained(str(model_dir), pooler_type="avg", normalize=False)
    out = serving_functions(raw)["serving_default"](tf.constant(SENTENCES[:3]))["embeddings"].numpy()
    ref = raw.encode(SENTENCES[:3], verbose=0)
    np.testing.assert_allclose(out, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------- reload
@pytest.mark.large
def test_fresh_process_matches_encode(reloaded, expected):
    # The SavedModel is self-contained: TensorFlow and TF-Text only (no tf_esimcse, no keras-hub).
    assert reloaded["modules"] == []
    np.testing.assert_allclose(reloaded["serving_default"], expected["embeddings"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(reloaded["encode_tokens"], expected["embeddings"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(reloaded["similarity"], expected["scores"], atol=1e-5, rtol=0)
    assert reloaded["serving_default"].dtype == np.float32 and reloaded["similarity"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(reloaded["serving_default"], axis=1), 1.0, atol=1e-5)
    assert reloaded["empty"].shape == (0, HIDDEN)
    # Distinct sentences get distinct vectors, so the comparisons mean something.
    assert np.abs(expected["embeddings"][0] - expected["embeddings"][1]).max() > 1e-2


@pytest.mark.large
def test_loaded_signatures(reloaded, exported):
    specs = reloaded["specs"]
    assert specs == {
        "serving_default": {
            "inputs": {"sentences": ["string", [None]]},
            "outputs": {"embeddings": ["float32", [None, HIDDEN]]},
        },
        "encode_tokens": {
            "inputs": {"token_ids": ["int32", [None, None]], "padding_mask": ["int32", [None, None]]},
            "outputs": {"embeddings": ["float32", [None, HIDDEN]]},
        },
        "similarity": {
            "inputs": {"sentences_a": ["string", [None]], "sentences_b": ["string", [None]]},
            "outputs": {"scores": ["float32", [None]]},
        },
    }
    # `read_signatures` (from saved_model.pb, no loading) agrees with the loaded model.
    for key, sig in read_signatures(exported).items():
        for side in ("inputs", "outputs"):
            assert {n: (d, [None if x < 0 else x for x in s]) for n, (d, s) in sig[side].items()} == {
                n: (d, s) for n, (d, s) in specs[key][side].items()
            }
    table = describe_signatures(exported)
    assert "serving_default  sentences: string [?]" in table and "scores: float32 [?]" in table


@pytest.mark.large
def test_only_inference_weights_and_no_tf_text_ops_in_tokens_only_export(tokens_only, encoder, exported):
    enc, path = tokens_only
    assert set(read_signatures(path)) == {"serving_default", "encode_tokens"}
    assert not _graph_ops(path) & TF_TEXT_OPS
    assert _graph_ops(exported) >= TF_TEXT_OPS  # the default export tokenizes in the graph
    # The training-only MLP head (cls + mlp_only_train) is not exported, nor BERT's own tanh
    # pooler (cls poolers read [CLS] of the last layer: BertEncoder.first_token_output);
    # everything else once.
    head = {id(v) for v in enc.pooler.weights}
    assert head and len(enc.pooler.weights) == 2
    assert enc.uses_first_token_only
    unused = head | {id(v) for v in enc.backbone.pooled_dense.weights}
    assert _saved_variable_shapes(path) == sorted(tuple(v.shape) for v in enc.weights if id(v) not in unused)
    assert _saved_variable_shapes(exported) == sorted(tuple(v.shape) for v in encoder.weights)


# ---------------------------------------------------------------------------------- saved_model_cli
def _signature_blocks(show_output):
    blocks = {}
    for chunk in show_output.split("signature_def['")[1:]:
        key = chunk.split("'", 1)[0]
        entries = re.findall(
            r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\)|unknown_rank)", chunk
        )
        method = re.search(r"Method name is: (\S*)", chunk)
        blocks[key] = (set(entries), method.group(1) if method else "")
    return blocks


@pytest.mark.large
def test_saved_model_cli_show_lists_the_signatures(exported):
    proc = _run([_saved_model_cli(), "show", "--all", "--dir", str(exported)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = _signature_blocks(proc.stdout)
    predict = "tensorflow/serving/predict"
    dim = f"(-1, {HIDDEN})"
    assert blocks["serving_default"] == (
        {("inputs", "sentences", "DT_STRING", "(-1)"), ("outputs", "embeddings", "DT_FLOAT", dim)}, predict)
    assert blocks["encode_tokens"] == (
        {("inputs", "token_ids", "DT_INT32", "(-1, -1)"), ("inputs", "padding_mask", "DT_INT32", "(-1, -1)"),
         ("outputs", "embeddings", "DT_FLOAT", dim)}, predict)
    assert blocks["similarity"] == (
        {("inputs", "sentences_a", "DT_STRING", "(-1)"), ("inputs", "sentences_b", "DT_STRING", "(-1)"),
         ("outputs", "scores", "DT_FLOAT", "(-1)")}, predict)


@pytest.mark.large
def test_saved_model_cli_run(exported, tokens_only, encoder):
    run_args = ["run", "--tag_set", "serve"]
    # 1. The default export, with the TF-Text ops registered first (see SAVED_MODEL_CLI_WITH_TF_TEXT).
    proc = _run([sys.executable, "-c", SAVED_MODEL_CLI_WITH_TF_TEXT, *run_args, "--dir", str(exported),
                 "--signature_def", "serving_default", "--input_exprs", 'sentences=["a b c", "d e"]'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(_printed_array(proc.stdout).reshape(2, HIDDEN),
                               encoder.encode(["a b c", "d e"], verbose=0), atol=1e-5)

    # 2. The stock `saved_model_cli` cannot register TF-Text ops, so it cannot import the default
    #    export's graph at all -- not even to run `encode_tokens`: ops are resolved for the whole
    #    graph at load time. This is why `text_ops=False` exists.
    proc = _run([_saved_model_cli(), *run_args, "--dir", str(exported), "--signature_def", "encode_tokens",
                 "--input_exprs", "token_ids=[[2, 6, 3]];padding_mask=[[1, 1, 1]]"])
    assert proc.returncode != 0 and "Op type not registered" in proc.stderr

    # 3. ...while the tokens-only export runs in the stock tool (a binary without TF-Text ops).
    enc, path = tokens_only
    packed = {k: v.numpy() for k, v in enc.inference_preprocessor(tf.constant(["a b c", "d e"])).items()}
    input_exprs = f"token_ids={packed['token_ids'].tolist()};padding_mask={packed['padding_mask'].tolist()}"
    proc = _run([_saved_model_cli(), *run_args, "--dir", str(path), "--signature_def", "encode_tokens",
                 "--input_exprs", input_exprs])
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(_printed_array(proc.stdout).reshape(2, HIDDEN),
                               enc.encode(["a b c", "d e"], verbose=0), atol=1e-5)


# ---------------------------------------------------------------------------------- TF Serving
def _predict_request(signature_name, inputs):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def _request_matches(request, spec):
    """Input names, dtypes and ranks/sizes of a PredictRequest against a loaded signature spec."""
    if set(request.inputs) != set(spec["inputs"]):
        return False
    for name, (dtype, shape) in spec["inputs"].items():
        tensor = request.inputs[name]
        dims = [d.size for d in tensor.tensor_shape.dim]
        if tf.dtypes.as_dtype(tensor.dtype).name != dtype or len(dims) != len(shape):
            return False
        if any(s is not None and s != d for s, d in zip(shape, dims)):
            return False
    return True


@pytest.mark.large
def test_predict_requests_match_the_loaded_signatures(reloaded, encoder):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    specs = reloaded["specs"]
    packed = {k: v.numpy() for k, v in encoder.inference_preprocessor(tf.constant(SENTENCES[:2])).items()}
    requests = {
        "serving_default": _predict_request("serving_default", {"sentences": SENTENCES[:2]}),
        "encode_tokens": _predict_request("encode_tokens", packed),
        "similarity": _predict_request("similarity", {"sentences_a": SENTENCES[:2], "sentences_b": SENTENCES_B[:2]}),
    }
    for key, request in requests.items():
        assert request.model_spec.name == MODEL_NAME and request.model_spec.signature_name == key
        assert _request_matches(request, specs[key]), (key, request)
    # The checks have teeth: wrong names or dtypes are caught.
    misnamed = _predict_request("serving_default", {"sentence": SENTENCES[:2]})
    assert not _request_matches(misnamed, specs["serving_default"])
    wrong_dtype = {k: v.astype(np.int64) for k, v in packed.items()}
    assert not _request_matches(_predict_request("encode_tokens", wrong_dtype), specs["encode_tokens"])


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_json(url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.large
def test_tensorflow_model_server_rest_and_grpc(exported, expected, encoder, tmp_path):
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        pytest.skip("tensorflow_model_server not on PATH (not obtainable on this machine)")
    grpc = pytest.importorskip("grpc")
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    grpc_port, rest_port = _free_port(), _free_port()
    log = open(tmp_path / "model_server.log", "w")
    server = subprocess.Popen(
        [binary, f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={MODEL_NAME}",
         f"--model_base_path={exported.parent}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    rest = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "model_server.log").read_text()[-3000:]
            try:
                status = _http_json(rest, timeout=5)
                if status["model_version_status"][0]["state"] == "AVAILABLE":
                    break
            except (OSError, KeyError, IndexError, ValueError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "model_server.log").read_text()[-3000:]
            time.sleep(0.5)

        # REST, row format.
        out = _http_json(f"{rest}:predict", {"signature_name": "serving_default", "instances": SENTENCES})
        np.testing.assert_allclose(np.array(out["predictions"], np.float32), expected["embeddings"], atol=1e-5)
        pairs = [{"sentences_a": a, "sentences_b": b} for a, b in zip(SENTENCES, SENTENCES_B)]
        out = _http_json(f"{rest}:predict", {"signature_name": "similarity", "instances": pairs})
        np.testing.assert_allclose(np.array(out["predictions"], np.float32), expected["scores"], atol=1e-5)

        # gRPC.
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            packed = {k: v.numpy() for k, v in encoder.inference_preprocessor(tf.constant(SENTENCES)).items()}
            for request in (_predict_request("serving_default", {"sentences": SENTENCES}),
                            _predict_request("encode_tokens", packed)):
                response = stub.Predict(request, timeout=60)
                vectors = tf.make_ndarray(response.outputs["embeddings"])
                np.testing.assert_allclose(vectors, expected["embeddings"], atol=1e-5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# ---------------------------------------------------------------------------------- CLI
@pytest.mark.large
def test_cli_export_writes_the_layout(model_dir, tmp_path, capsys):
    base = tmp_path / "saved_models" / MODEL_NAME
    rc = cli.main(["export", "--model", str(model_dir), "--pooler", "avg", "--max-len", "16", "--output", str(base)])
    out = capsys.readouterr().out
    assert rc == 0
    assert (base / "1" / "saved_model.pb").is_file() and (base / "1" / "variables").is_dir()
    assert str(base.resolve() / "1") in out
    for key in ("serving_default", "encode_tokens", "similarity", "sentences_a: string [?]",
                "embeddings: float32 [?, 32]"):
        assert key in out
    assert f"--model_base_path={base.resolve()} --model_name={MODEL_NAME}" in out

    # An existing version: exit 2 with one line, before the model is loaded.
    rc = cli.main(["export", "--model", str(model_dir), "--output", str(base), "--version", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "already exists" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(base)) == ["1"]


def test_cli_export_bad_model_path(tmp_path, capsys):
    base = tmp_path / "out"
    rc = cli.main(["export", "--model", str(tmp_path / "no_such_model"), "--output", str(base)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "no_such_model" in err and len(err.splitlines()) == 1
    assert not base.exists()


@pytest.mark.large
def test_cli_export_bad_model_path_exit_status(tmp_path):
    proc = _run([sys.executable, "-m", "tf_esimcse.cli", "export", "--model", str(tmp_path / "no_such_model"),
                 "--output", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")  # TF's own C++ start-up logs may precede it


@pytest.mark.large
def test_bfloat16_precision_export(encoder, expected, tmp_path):
    """precision='bfloat16': the saved graph multiplies in bfloat16, takes and returns the same
    dtypes, and reloads to embeddings within bfloat16 rounding of the float32 ones."""
    path = export_for_serving(encoder, tmp_path / MODEL_NAME, text_ops=False, precision="bfloat16")
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    matmul_dtypes = {
        node.attr["T"].type
        for fn in proto.meta_graphs[0].graph_def.library.function
        for node in fn.node_def
        if node.op in ("MatMul", "BatchMatMulV2")
    }
    assert tf.bfloat16.as_datatype_enum in matmul_dtypes
    assert read_signatures(path) == read_signatures(export_for_serving(encoder, tmp_path / "f32", text_ops=False))
    loaded = tf.saved_model.load(str(path))
    packed = encoder.inference_preprocessor(tf.constant(SENTENCES))
    out = loaded.signatures["encode_tokens"](
        token_ids=packed["token_ids"], padding_mask=packed["padding_mask"])["embeddings"].numpy()
    assert out.dtype == np.float32
    assert _cosine(out, expected["embeddings"]).min() >= 0.9999  # the cosine docs/performance.md states
    with pytest.raises(ValueError, match="precision"):
        export_for_serving(encoder, tmp_path / "bad", precision="float16")


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


@pytest.mark.large
def test_serving_survives_hostile_sentences(loaded):
    """Empty strings, a 10,000-word string, invalid UTF-8, control characters, batches of 0 and
    10,000: no crash, finite unit vectors (the tokenizer replaces what it cannot read)."""
    serve = loaded.signatures["serving_default"]
    cases = {
        "empty": [b""],
        "10,000 words": [" ".join(["word"] * 10000).encode()],
        "invalid UTF-8": [b"\xff\xfe bad \xc3\x28 bytes"],
        "control characters": ["\x00\x01\x07 tab\t newline\n \x1b[31m red".encode()],
        "batch of 10,000": [b"a short sentence"] * 10000,
    }
    for name, sentences in cases.items():
        out = serve(sentences=tf.constant(sentences))["embeddings"].numpy()
        assert out.shape == (len(sentences), HIDDEN), name
        assert np.isfinite(out).all(), name
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5, err_msg=name)
    assert serve(sentences=tf.constant([], tf.string))["embeddings"].shape == (0, HIDDEN)


@pytest.mark.parametrize("ids,mask,message", [
    ([[2, 10 ** 6, 3]], [[1, 1, 1]], "token ids must be < the vocabulary size"),
    ([[2, -5, 3]], [[1, 1, 1]], "negative token ids"),
    ([[2, 5, 3]], [[1, 1]], "must have the same shape"),
    ([[2] + [5] * 600 + [3]], [[1] * 602], "sequences longer than"),
])
def test_encode_tokens_rejects_bad_ids_with_a_clear_error(loaded, ids, mask, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["encode_tokens"](token_ids=tf.constant(ids, tf.int32), padding_mask=tf.constant(mask, tf.int32))
