"""Where the time of one SimCSE training step goes: a TF profiler trace, summarised per XLA op.

    .venv/bin/python benchmarks/profile_step.py                       # XLA step, 64 x 32, 3 traced steps
    .venv/bin/python benchmarks/profile_step.py --jit false           # graph mode: per TF op instead
    .venv/bin/python benchmarks/profile_step.py --no-fast-dropout     # Keras' Philox dropout
    .venv/bin/python benchmarks/profile_step.py --logdir /tmp/prof    # keep the trace for TensorBoard

The step is `SimCSE.train_on_batch` (the compiled train function `fit` runs) on one fixed batch of
Brown sentences, after warm-up steps. The trace (`tf.profiler.experimental`, with XLA's per-thunk
TraceMe events switched on by `XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true`, set here before
TensorFlow loads) is read back from its `.xplane.pb` and printed as thread-seconds per step for
each op (numeric suffixes merged: `MatMul.12` -> `MatMul`), beside the step's wall time; the
difference between 2 x wall time and the summed thread time is idle time of the 2 threads.

Both fixes of this project's speed work were found this way: the per-example attention kernel
gradients (`FlatEinsumDense`) showed up as batched `dot`s with a (batch, hidden, hidden) output,
and XLA's single-threaded Philox expansion (`HashDropout`) as ~0.28 s of `call` /
`concatenate_bitcast_fusion` per step.
"""
import argparse
import collections
import glob
import os
import re
import statistics
import sys
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (also puts the repository on sys.path)


def parse_args(argv=None):
    parser = common.make_parser(__doc__)
    common.add_common_flags(parser)
    parser.add_argument("--jit", default="true", choices=["true", "false"], help="default: %(default)s")
    parser.add_argument("--pooler", default="cls", help="default: %(default)s")
    parser.add_argument("--dropout", type=float, default=0.1, help="default: %(default)s")
    parser.add_argument("--fast-dropout", action=argparse.BooleanOptionalAction, default=True,
                        help="BertEncoder fast_dropout (hash masks under XLA; default: on)")
    parser.add_argument("--warmup", type=int, default=3, help="untraced steps first (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="traced steps (default: %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="rows to print (default: %(default)s)")
    parser.add_argument("--logdir", default="", help="keep the trace here (default: a temporary directory)")
    return parser.parse_args(argv)


def summarize_xplane(path, steps):
    """{op name without numeric suffix: (thread-seconds per step, events per step)} over the
    TF/XLA worker threads of the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    seconds, counts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if "Eigen" not in line.name and "tf_" not in line.name:
                continue  # the Python thread: one enclosing event per step
            for event in line.events:
                name = re.sub(r"\.\d+$", "", names.get(event.metadata_id, "?"))
                if name.startswith(("ThunkExecutor", "end: ")):
                    continue
                seconds[name] += event.duration_ps / 1e12 / steps
                counts[name] += 1 / steps
    return seconds, counts


def main(argv=None):
    args = parse_args(argv)
    common.configure_threads(args)
    import keras
    import tensorflow as tf

    from tf_esimcse.data.corpus import load_sentences
    from tf_esimcse.models.sentence_encoder import SentenceEncoder
    from tf_esimcse.models.simcse import SimCSE

    keras.utils.set_random_seed(42)
    encoder = SentenceEncoder.from_pretrained(args.model, pooler_type=args.pooler, mlp_only_train=True,
                                              sequence_length=args.max_len, dropout=args.dropout,
                                              fast_dropout=args.fast_dropout)
    model = SimCSE(encoder, temperature=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0), jit_compile=args.jit == "true")
    sentences = load_sentences("brown", args.data_dir)[: args.batch_size]
    batch = encoder.preprocessor(tf.constant(sentences))
    batch = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    for _ in range(args.warmup):
        model.train_on_batch(batch)

    logdir = args.logdir or tempfile.mkdtemp(prefix="profile-step-")
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=3, python_tracer_level=0,
                                                       device_tracer_level=0)
    walls = []
    tf.profiler.experimental.start(logdir, options=options)
    for _ in range(args.steps):
        t0 = time.perf_counter()
        model.train_on_batch(batch)
        walls.append(time.perf_counter() - t0)
    tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise SystemExit(f"no .xplane.pb under {logdir}")
    seconds, counts = summarize_xplane(paths[-1], args.steps)

    wall = statistics.median(walls)
    busy = sum(seconds.values())
    print(f"== profile_step: SimCSE train step, batch {args.batch_size} x {args.max_len}, pooler {args.pooler}, "
          f"jit {args.jit}, dropout {args.dropout} (fast_dropout {args.fast_dropout}) ==")
    common.print_host_info(args)
    print(f"trace:       {paths[-1]}")
    print(f"wall time:   {wall:.3f} s per step (median of {args.steps} traced steps: "
          + ", ".join(f"{w:.3f}" for w in walls) + "; the tracer adds a little)")
    print(f"thread time: {busy:.3f} thread-seconds per step in the ops below "
          f"(2 threads x wall = {2 * wall:.3f}; the rest is idle or untraced)")
    rows = [(name, f"{sec:.4f}", f"{100 * sec / busy:.1f} %", f"{counts[name]:.0f}")
            for name, sec in seconds.most_common(args.top)]
    common.print_table(["op (XLA thunk / fusion, or TF op)", "thread-s per step", "share", "events per step"], rows)


if __name__ == "__main__":
    main()
