"""Peak memory and speed against batch size: the plain training step and the cached step.

    .venv/bin/python benchmarks/batch_memory.py
    .venv/bin/python benchmarks/batch_memory.py --batch-sizes 64,512,4096 --mini-batch-size 64

Unsupervised SimCSE on all-MiniLM-L6-v2 (`--model`), `--max-len` 32, dropout 0.1, AdamW, global
clipping, XLA (`--jit auto`), as `recipes/unsup_simcse.py` trains. Every (step, batch size) runs in
its own process, so each peak RSS is that process's own (`ru_maxrss`): the model, XLA's compiled
step and the step's activations. Batches are random token ids filling all `--max-len` positions
(the worst case of the real pipeline), replayed to `fit`; `--warmup` untimed steps (tracing, XLA
compilation), then `--steps` timed ones (median). The plain step stops at the first batch size
that does not fit: a process the kernel kills for memory, or one whose predicted peak (linear in
the batch from the last two sizes) exceeds the memory available now. Prints a markdown table;
asserts nothing.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import common

RESULT = "BATCH_MEMORY_RESULT "


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_flags(parser)
    parser.add_argument("--batch-sizes", default="64,128,256,512,1024,2048,4096",
                        help="comma-separated sentence batch sizes (default: %(default)s)")
    parser.add_argument("--mini-batch-size", type=int, default=64,
                        help="rows per mini-batch of the cached step (default: %(default)s)")
    parser.add_argument("--kinds", default="plain,cached", help="default: %(default)s")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps (default: %(default)s)")
    parser.add_argument("--jit", default="auto", choices=["auto", "true", "false"], help="default: %(default)s")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)  # "kind:batch": run one measurement
    return parser.parse_args(argv)


def child(args):
    """One measurement in this process; prints one RESULT line of JSON."""
    kind, batch = args.child.split(":")
    batch = int(batch)
    common.configure_threads(args)
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_esimcse.models.contrastive_model import ContrastiveModel
    from tf_esimcse.models.sentence_encoder import SentenceEncoder
    from tf_esimcse.objectives import SimCSEObjective
    from tf_esimcse.training import resolve_jit

    keras.utils.set_random_seed(0)
    encoder = SentenceEncoder.from_pretrained(args.model, pooler_type="cls", mlp_only_train=True,
                                              sequence_length=args.max_len, dropout=0.1, fast_dropout=True,
                                              fresh_mlp=True)
    model = ContrastiveModel(encoder, SimCSEObjective(temperature=0.05), max_grad_norm=1.0,
                             mini_batch_size=args.mini_batch_size if kind == "cached" else None)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0),
                  jit_compile=resolve_jit(args.jit, tf.distribute.get_strategy()))
    rng = np.random.default_rng(0)
    vocab = encoder.backbone.token_embedding.input_dim if hasattr(encoder.backbone, "token_embedding") else 30000
    n = args.warmup + args.steps
    ids = rng.integers(1000, min(vocab, 30000), size=(n, batch, args.max_len)).astype("int32")
    ids[:, :, 0], ids[:, :, -1] = 101, 102
    data = tf.data.Dataset.from_tensor_slices({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    baseline = common.peak_rss_mib()
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            float(np.asarray(logs["loss"]))  # wait for the step
            ends.append(time.perf_counter())

    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=n, verbose=0, callbacks=[Clock()])
    times = np.diff([start, *ends])[args.warmup:]
    step = float(np.median(times))
    print(RESULT + json.dumps({"kind": kind, "batch": batch, "baseline_mib": baseline,
                               "peak_mib": common.peak_rss_mib(), "step_s": step,
                               "sentences_per_s": batch / step, "first_step_s": float(ends[0] - start)}), flush=True)


def available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("inf")


def measure(kind, batch, argv):
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--child", f"{kind}:{batch}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    if proc.returncode in (-9, 137):
        return {"kind": kind, "batch": batch, "failed": "killed (out of memory)"}
    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return {"kind": kind, "batch": batch, "failed": f"exit {proc.returncode}: {tail[:120]}"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    common.print_host_info(args)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for kind in args.kinds.split(","):
        done = []
        for batch in batches:
            if kind == "plain" and len(done) >= 2:
                (b0, m0), (b1, m1) = done[-2:]
                predicted = m1 + (m1 - m0) / (b1 - b0) * (batch - b1)
                if predicted > 0.9 * available_mib():
                    rows.append({"kind": kind, "batch": batch,
                                 "failed": f"not run: predicted peak {predicted / 1024:.1f} GiB > "
                                           f"{available_mib() / 1024:.1f} GiB available"})
                    print(rows[-1], flush=True)
                    break
            result = measure(kind, batch, argv)
            rows.append(result)
            print(result, flush=True)
            if "failed" in result:
                break
            done.append((batch, result["peak_mib"]))
    table = []
    for r in rows:
        label = r["kind"] if r["kind"] == "plain" else f"cached (mini-batch {args.mini_batch_size} rows)"
        if "failed" in r:
            table.append([label, r["batch"], "-", "-", "-", r["failed"]])
        else:
            table.append([label, r["batch"], f"{r['peak_mib'] / 1024:.2f}", f"{r['sentences_per_s']:.1f}",
                          f"{r['step_s']:.2f}", f"first step {r['first_step_s']:.0f} s"])
    common.print_table(["step", "batch (sentences)", "peak RSS (GiB)", "sentences/s", "s/step", "note"], table,
                       title=f"Unsupervised SimCSE, {args.max_len} tokens, {common.cpu_model()}, load {common.load_average()}")


if __name__ == "__main__":
    main()
