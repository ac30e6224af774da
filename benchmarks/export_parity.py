"""Parity of the ONNX and LiteRT exports of a trained model, run as a user runs them.

    .venv/bin/python benchmarks/export_parity.py --model saved_models/unsup_esimcse

1. `tf-esimcse export --format onnx` and `--format litert --quantize int8` write the model into a
   temporary folder (the commands a user types);
2. a fresh Python process that imports neither TensorFlow nor tf_esimcse (onnxruntime,
   ai_edge_litert, Hugging Face `tokenizers`, NumPy) tokenizes the unique STS-B test sentences with
   the exported `tokenizer.json` and runs `model.onnx`, `model.tflite` and `model_int8.tflite`;
3. its embeddings are compared here with `SentenceEncoder.encode` (the model's own pooler): the
   smallest cosine over all sentences, per file.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py; also puts the repository on sys.path)

FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter
    from tokenizers import Tokenizer

    onnx_dir, litert_dir, sentences_file, out = sys.argv[1:5]
    sentences = json.loads(open(sentences_file).read())
    tokenizer = Tokenizer.from_file(onnx_dir + "/tokenizer.json")
    session = onnxruntime.InferenceSession(onnx_dir + "/model.onnx", providers=["CPUExecutionProvider"])
    runners = {name: Interpreter(model_path=litert_dir + "/" + name).get_signature_runner()
               for name in ("model.tflite", "model_int8.tflite")}
    results = {name: [] for name in ["model.onnx", *runners]}
    for start in range(0, len(sentences), 64):
        batch = tokenizer.encode_batch(sentences[start:start + 64])
        width = max(len(e.ids) for e in batch)
        ids = np.array([e.ids + [0] * (width - len(e.ids)) for e in batch], np.int64)
        mask = np.array([e.attention_mask + [0] * (width - len(e.ids)) for e in batch], np.int64)
        results["model.onnx"].append(session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})[0])
        for name, runner in runners.items():
            results[name].append(runner(input_ids=ids.astype(np.int32), attention_mask=mask.astype(np.int32))["embeddings"])
    np.savez(out, **{k: np.concatenate(v) for k, v in results.items()})
    print(json.dumps(sorted(m for m in ("tensorflow", "tf_esimcse", "keras") if m in sys.modules)))
""")


def main(argv=None):
    parser = common.make_parser(__doc__)
    parser.add_argument("--model", default="default", help="the model to export (default: %(default)s)")
    parser.add_argument("--data-dir", default="data", help="folder holding senteval/ (default: %(default)s)")
    args = parser.parse_args(argv)

    from tf_esimcse import cli
    from tf_esimcse.data.senteval import read_stsb
    from tf_esimcse.models.sentence_encoder import SentenceEncoder

    pairs = read_stsb(args.data_dir, "test")
    sentences = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    work = tempfile.mkdtemp(prefix="export_parity_")
    onnx_dir, litert_dir = os.path.join(work, "onnx"), os.path.join(work, "litert")
    assert cli.main(["export", "--format", "onnx", "--model", args.model, "--output", onnx_dir]) == 0
    assert cli.main(["export", "--format", "litert", "--quantize", "int8", "--model", args.model,
                     "--output", litert_dir]) == 0
    with open(os.path.join(work, "sentences.json"), "w") as f:
        json.dump(sentences, f)
    out = os.path.join(work, "out.npz")
    proc = subprocess.run([sys.executable, "-c", FRESH, onnx_dir, litert_dir, os.path.join(work, "sentences.json"),
                           out], capture_output=True, text=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    encoder = SentenceEncoder.from_pretrained(cli.resolve_model_path(args.model))
    expected = encoder.encode(sentences, verbose=0, batch_size=64)
    print(f"{args.model}: {len(sentences)} unique STS-B test sentences; the fresh process imported "
          f"{imported or 'neither TensorFlow nor tf_esimcse'}")
    for name, got in np.load(out).items():
        cosine = np.sum(got * expected, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
        print(f"  {name:18s} min cosine to encode {cosine.min():.7f}  mean {cosine.mean():.7f}  "
              f"max |a-b| {np.abs(got - expected).max():.2e}")


if __name__ == "__main__":
    main()
