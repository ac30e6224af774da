"""Encoding speed and parity of every export, alternately, in ONE process.

    .venv/bin/python benchmarks/export_speed.py                    # all-MiniLM-L6-v2, STS-B test
    .venv/bin/python benchmarks/export_speed.py --int8-sts         # + the 7 STS tasks: LiteRT int8 vs float32

Each system turns the unique STS-B test sentences (strings) into embeddings, batch 64,
tokenization included, and is compared with `SentenceEncoder.encode`:

  ours              `SentenceEncoder.encode(batch_size=64)` (TF-Text tokenization, sorted by length,
                    padded per batch), float32
  ours-bf16         the same with `precision="bfloat16"` (bfloat16 matrix products; faster only on
                    CPUs with AMX units)
  saved-model       `export_for_serving`'s SavedModel, `serving_default` (strings in), batches of
                    64 sorted by characters
  onnxruntime       `export_onnx`'s model.onnx in ONNX Runtime (CPU provider, intra-op threads =
                    CPUs), tokenized by its tokenizer.json (Hugging Face `tokenizers`), sorted by
                    token length, padded per batch
  litert            `export_litert`'s model.tflite in `ai_edge_litert`'s interpreter (XNNPACK,
                    threads = CPUs), the same tokenization, int32 ids
  litert-int8       model_int8.tflite (dynamic-range int8 weights)
  sentence-transformers  only when `sentence_transformers` imports (the `bench` extra), its
                    `encode(batch_size=64)` on the same model directory

After one warm-up pass each, --rounds rounds run one pass of every system, the order flipped
every round; figures are medians of pass times. "cosine to ours": min over the sentences of the
cosine to `encode`'s float32 embedding. With --int8-sts the 7 STS tasks (STS12-16, STS-B,
SICK-R) are also scored with LiteRT int8 and LiteRT float32 embeddings (`evaluate_sts`), for the
int8 variant's loss in Avg.
"""
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py; also puts the repository on sys.path)


def parse_args(argv=None):
    parser = common.make_parser(__doc__)
    common.add_common_flags(parser)
    parser.add_argument("--rounds", type=int, default=5, help="timed passes of each system (default: %(default)s)")
    parser.add_argument("--int8-sts", action="store_true",
                        help="also score the 7 STS tasks with LiteRT int8 and float32 embeddings")
    parser.add_argument("--skip", default="", help="comma-separated systems not to run (e.g. ours-bf16)")
    return parser.parse_args(argv)


def token_batches(tokenizer, sentences, batch_size, dtype):
    """Tokenize with a Hugging Face `tokenizers.Tokenizer`; yield (indices, ids, mask) per batch of
    sentences sorted by token length, each padded to its longest."""
    encodings = tokenizer.encode_batch(sentences)
    lengths = np.array([len(e.ids) for e in encodings])
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(sentences), batch_size):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        ids = np.zeros((len(idx), width), dtype)
        mask = np.zeros((len(idx), width), dtype)
        for row, i in enumerate(idx):
            ids[row, :lengths[i]] = encodings[i].ids
            mask[row, :lengths[i]] = 1
        yield idx, ids, mask


def main(argv=None):
    args = parse_args(argv)
    common.configure_threads(args)
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tokenizers import Tokenizer

    from tf_esimcse.data.senteval import read_stsb
    from tf_esimcse.evaluation.sts import evaluate_sts
    from tf_esimcse.export import export_for_serving
    from tf_esimcse.litert_export import export_litert
    from tf_esimcse.models.sentence_encoder import SentenceEncoder
    from tf_esimcse.onnx_export import export_onnx

    print("== export_speed: encode, SavedModel, ONNX Runtime, LiteRT ==")
    common.print_host_info(args)
    print(f"runtimes:    onnxruntime {onnxruntime.__version__}; ai_edge_litert "
          f"{__import__('importlib.metadata').metadata.version('ai-edge-litert')}")
    skip = set(filter(None, args.skip.split(",")))
    encoder = SentenceEncoder.from_pretrained(args.model)
    pairs = read_stsb(args.data_dir, "test")
    sentences = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    n, bs, threads = len(sentences), args.batch_size, os.cpu_count()
    print(f"model:       {args.model} (pooler {encoder.inference_settings()}, dim {encoder.hidden_dim}); "
          f"STS-B test: {n} unique sentences; batch {bs}", flush=True)

    work = tempfile.TemporaryDirectory(prefix="export-speed-")
    t0 = time.perf_counter()
    saved = tf.saved_model.load(str(export_for_serving(encoder, os.path.join(work.name, "saved_model"))))
    serve = saved.signatures["serving_default"]
    t1 = time.perf_counter()
    onnx_dir = export_onnx(encoder, os.path.join(work.name, "onnx"))
    t2 = time.perf_counter()
    litert_dir = export_litert(encoder, os.path.join(work.name, "litert"), quantize="int8")
    t3 = time.perf_counter()
    sizes = {name: os.path.getsize(path) / 2 ** 20 for name, path in (
        ("onnx", onnx_dir / "model.onnx"), ("litert", litert_dir / "model.tflite"),
        ("litert-int8", litert_dir / "model_int8.tflite"))}
    print(f"exports:     SavedModel {t1 - t0:.1f} s; ONNX {t2 - t1:.1f} s ({sizes['onnx']:.1f} MiB); LiteRT float32 + "
          f"int8 {t3 - t2:.1f} s ({sizes['litert']:.1f} + {sizes['litert-int8']:.1f} MiB)", flush=True)

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
    runners = {name: Interpreter(model_path=str(litert_dir / f), num_threads=threads).get_signature_runner()
               for name, f in (("litert", "model.tflite"), ("litert-int8", "model_int8.tflite"))}
    char_order = np.argsort([-len(s) for s in sentences], kind="stable")
    outputs = {}

    def run_onnx(batch_sentences):
        out = np.zeros((len(batch_sentences), encoder.hidden_dim), np.float32)
        for idx, ids, mask in token_batches(tokenizer, batch_sentences, bs, np.int64):
            out[idx] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def litert_fn(name):
        def run(batch_sentences):
            out = np.zeros((len(batch_sentences), encoder.hidden_dim), np.float32)
            for idx, ids, mask in token_batches(tokenizer, batch_sentences, bs, np.int32):
                out[idx] = runners[name](input_ids=ids, attention_mask=mask)["embeddings"]
            return out
        return run

    def run_saved_model(_):
        out = np.zeros((n, encoder.hidden_dim), np.float32)
        for start in range(0, n, bs):
            idx = char_order[start:start + bs]
            out[idx] = serve(sentences=tf.constant([sentences[i] for i in idx]))["embeddings"].numpy()
        return out

    systems = {
        "ours": lambda s: encoder.encode(s, batch_size=bs, verbose=0),
        "ours-bf16": lambda s: encoder.encode(s, batch_size=bs, verbose=0, precision="bfloat16"),
        "saved-model": run_saved_model,
        "onnxruntime": run_onnx,
        "litert": litert_fn("litert"),
        "litert-int8": litert_fn("litert-int8"),
    }
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        st = SentenceTransformer(args.model, device="cpu") if os.path.isdir(args.model) else None
        if st is not None:
            systems["sentence-transformers"] = lambda s: st.encode(s, batch_size=bs, show_progress_bar=False)
        else:
            print("sentence-transformers: needs --model DIR (a local model directory); row left out")
    except ImportError:
        print("sentence-transformers: not installed here (the bench extra); row left out")
    systems = {k: v for k, v in systems.items() if k not in skip}

    for name, fn in systems.items():  # warm-up
        outputs[name] = fn(sentences)
    times = {name: [] for name in systems}
    names = list(systems)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            outputs[name] = systems[name](sentences)
            times[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}/{args.rounds} (load {common.load_average()}): "
              + "; ".join(f"{k} {times[k][-1]:.2f} s" for k in names), flush=True)

    ref = outputs["ours"]
    rows = []
    ours_med = statistics.median(times["ours"])
    for name in names:
        med = statistics.median(times[name])
        e = outputs[name]
        cos = np.sum(e * ref, axis=1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1))
        rows.append([name, f"{n / med:.1f}", f"{med:.2f}", f"x{ours_med / med:.2f}", f"{cos.min():.6f}",
                     f"{cos.mean():.7f}"])
    common.print_table(["system", "sentences/s (median)", "s/pass", "speed vs ours", "cosine to ours: min", "mean"],
                       rows, title="== results ==")
    if args.int8_sts:
        scores = {}
        for name in ("litert", "litert-int8"):
            t = time.perf_counter()
            scores[name] = evaluate_sts(systems[name], args.data_dir, progress=False)
            print(f"7 STS tasks with {name}: Avg. {scores[name]['avg']:.2f} (STS-B dev {scores[name]['stsb_dev']:.2f}); "
                  + ", ".join(f"{k} {scores[name][k]:.2f}" for k in ("sts12", "sts13", "sts14", "sts15", "sts16",
                                                                     "stsb_test", "sickr_test"))
                  + f" ({time.perf_counter() - t:.0f} s)", flush=True)
        print(f"int8 - float32 Avg.: {scores['litert-int8']['avg'] - scores['litert']['avg']:+.2f}")
    print(f"load average at the end: {common.load_average()}; peak RSS {common.peak_rss_mib():.0f} MiB")
    work.cleanup()


if __name__ == "__main__":
    main()
