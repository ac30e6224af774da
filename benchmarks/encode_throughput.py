"""Encoding throughput of `SentenceEncoder.encode` on the STS-B test sentences.

    .venv/bin/python benchmarks/encode_throughput.py                      # defaults below
    .venv/bin/python benchmarks/encode_throughput.py --variants encode,fixed,fixed-xla

Default workload: the default encoder (all-MiniLM-L6-v2, offline) with the "avg" pooler,
max_len 32, batch 64, on the unique sentences of both columns of STS-B test. Every variant goes
from strings to embeddings (tokenization included) and runs once untimed (warm-up), then
--repeats timed times; the median is reported.

Variants:
  encode     `encoder.encode(sentences, batch_size)`: the library's path (sorted by length, each
             batch padded to its longest sentence, a graph-mode tf.function).
  fixed      the same tokens, every batch padded to max_len and to batch_size rows (the shape
             MEASURED.md's training figures use), through a graph-mode tf.function.
  fixed-xla  as `fixed`, the tf.function compiled with XLA (jit_compile=True).

GFLOP/s use the forward formula of common.py over the shapes actually computed (padding
included); "forward only" subtracts the median time of tokenization alone.
"""
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py; also puts the repository on sys.path)

VARIANTS = ("encode", "fixed", "fixed-xla")


def parse_args(argv=None):
    parser = common.make_parser(__doc__)
    common.add_common_flags(parser)
    parser.add_argument("--pooler", default="avg", help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant (default: %(default)s)")
    parser.add_argument("--variants", default="encode,fixed",
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: %(default)s)")
    parser.add_argument("--split", default="test", help="STS-B split (default: %(default)s)")
    parser.add_argument("--max-sentences", type=int, default=0, help="use only the first N unique sentences")
    args = parser.parse_args(argv)
    args.variants = common.choice_list(parser, args.variants, VARIANTS, "variant(s)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def tokenize(encoder, sentences):
    """Strings -> int32 (n, max_len) token ids and padding mask, as `encode()` tokenizes."""
    import tensorflow as tf

    ids, masks = [], []
    for start in range(0, len(sentences), 1024):
        batch = encoder.preprocessor(tf.constant(sentences[start:start + 1024]))
        ids.append(batch["token_ids"].numpy())
        masks.append(batch["padding_mask"].numpy())
    return np.concatenate(ids), np.concatenate(masks)


def make_fixed_encode(encoder, batch_size, length, jit):
    import tensorflow as tf

    spec = tf.TensorSpec([batch_size, length], tf.int32)

    @tf.function(input_signature=[spec, spec], jit_compile=jit)
    def forward(token_ids, padding_mask):
        return encoder({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

    def run(sentences):
        ids, mask = tokenize(encoder, sentences)
        n = len(ids)
        total = -(-n // batch_size) * batch_size
        if total > n:  # fill the last batch with copies of the first row (results dropped)
            ids = np.concatenate([ids, np.repeat(ids[:1], total - n, axis=0)])
            mask = np.concatenate([mask, np.repeat(mask[:1], total - n, axis=0)])
        out = np.zeros((total, encoder.hidden_dim), np.float32)
        for start in range(0, total, batch_size):
            sl = slice(start, start + batch_size)
            out[sl] = forward(tf.constant(ids[sl]), tf.constant(mask[sl])).numpy()
        return out[:n]

    return run


def encode_shapes(lengths, batch_size):
    """The (rows, T) of each batch `encode()` runs: sorted by length (descending, stable),
    each batch padded to its longest sentence."""
    order = np.argsort(-lengths, kind="stable")
    shapes = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        shapes.append((len(idx), int(lengths[idx].max())))
    return shapes


def timed(fn, repeats):
    fn()  # warm-up: tracing, XLA compilation, oneDNN primitive caches
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main(argv=None):
    args = parse_args(argv)
    common.configure_threads(args)
    import tensorflow as tf  # noqa: F401  (after the thread settings)

    from tf_esimcse.data.senteval import read_stsb
    from tf_esimcse.models.sentence_encoder import SentenceEncoder

    print("== encode_throughput ==")
    common.print_host_info(args)
    pairs = read_stsb(args.data_dir, args.split)
    sentences = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    if args.max_sentences:
        sentences = sentences[: args.max_sentences]
    n = len(sentences)
    print(f"data:        STS-B {args.split}: {len(pairs.sentences1)} pairs, {n} unique sentences")
    print(f"settings:    encoder {args.model}, pooler {args.pooler}, batch {args.batch_size}, max_len "
          f"{args.max_len}; variants {','.join(args.variants)}; 1 warm-up + {args.repeats} timed passes each",
          flush=True)

    ceiling_before = common.matmul_ceiling(2048, args.ceiling_repeats)
    print(f"ceiling:     {common.format_ceiling(ceiling_before)} (before)", flush=True)

    t0 = time.perf_counter()
    encoder = SentenceEncoder.from_pretrained(args.model, pooler_type=args.pooler, sequence_length=args.max_len,
                                              inference_length=args.max_len)
    print(f"load:        {time.perf_counter() - t0:.1f} s", flush=True)
    dims = common.BertDims(encoder.backbone)
    print(f"encoder:     {dims}")

    tok_times, (ids, mask) = timed(lambda: tokenize(encoder, sentences), args.repeats)
    tok_s = statistics.median(tok_times)
    lengths = mask.sum(axis=1)
    print(f"tokens:      mean length {lengths.mean():.1f} ([CLS]/[SEP] included), {np.mean(lengths == args.max_len):.0%} "
          f"reach {args.max_len}; tokenization alone {tok_s:.2f} s (median), {n / tok_s:.0f} sentences/s", flush=True)

    shapes = {
        "encode": encode_shapes(lengths, args.batch_size),
        "fixed": [(args.batch_size, args.max_len)] * (-(-n // args.batch_size)),
    }
    shapes["fixed-xla"] = shapes["fixed"]
    runners = {
        "encode": lambda: encoder.encode(sentences, batch_size=args.batch_size, verbose=0),
    }
    if "fixed" in args.variants:
        runners["fixed"] = make_fixed_encode(encoder, args.batch_size, args.max_len, jit=False)
    if "fixed-xla" in args.variants:
        runners["fixed-xla"] = make_fixed_encode(encoder, args.batch_size, args.max_len, jit=True)

    results, reference = [], None
    for variant in args.variants:
        fn = runners[variant]
        call = (lambda f=fn: f(sentences)) if variant != "encode" else fn
        times, out = timed(call, args.repeats)
        flops = sum(common.forward_flops(dims, rows, t) for rows, t in shapes[variant])
        real_tokens = int(lengths.sum())
        computed_tokens = sum(rows * t for rows, t in shapes[variant])
        med = statistics.median(times)
        fwd = max(med - tok_s, 1e-9)
        if reference is None:
            reference = out
        diff = float(np.max(np.abs(out - reference)))
        r = {
            "variant": variant, "times": times, "median": med, "mean": statistics.fmean(times),
            "sent_s": n / med, "sent_s_mean": n / statistics.fmean(times), "gflops": flops / med / 1e9,
            "gflops_fwd": flops / fwd / 1e9, "flops": flops, "padding": 1 - real_tokens / computed_tokens,
            "diff": diff, "rss": common.peak_rss_mib(),
        }
        results.append(r)
        print(f"\n-- {variant} --")
        print("timed passes: " + ", ".join(f"{t:.2f}" for t in times) + " s")
        print(f"sentences/s: {r['sent_s']:.1f} (median pass), {r['sent_s_mean']:.1f} (mean)")
        print(f"forward FLOPs per pass: {flops / 1e9:.1f} GFLOP over {len(shapes[variant])} batches; padding is "
              f"{r['padding']:.0%} of the tokens computed")
        print(f"achieved: {r['gflops']:.1f} GFLOP/s end to end, {r['gflops_fwd']:.1f} GFLOP/s forward only "
              f"(median pass minus tokenization)")
        print(f"max |embedding - {args.variants[0]}'s|: {diff:.2e}")
        print(f"peak RSS of the process so far: {r['rss']:.0f} MiB", flush=True)

    ceiling_after = common.matmul_ceiling(2048, args.ceiling_repeats)
    print(f"\nceiling:     {common.format_ceiling(ceiling_after)} (after)")
    ceiling = common.ceiling_value(ceiling_before, ceiling_after)
    print("FLOP model:  " + common.FORWARD_FORMULA + "; pooling and normalisation ignored")
    print(f"% of ceiling uses the best matmul median above: {ceiling:.1f} GFLOP/s")
    note = common.contention_note(ceiling_before, ceiling_after)
    if note:
        print(note)
    print(f"load average at the end: {common.load_average()}")
    rows = [[r["variant"], f"{r['sent_s']:.1f}", f"{r['median']:.2f}", f"{r['padding']:.0%}", f"{r['gflops']:.1f}",
             f"{r['gflops_fwd']:.1f}", f"{100 * r['gflops_fwd'] / ceiling:.0f} %", f"{r['rss']:.0f}"] for r in results]
    common.print_table(["variant", "sentences/s (median)", "s/pass", "padding", "GFLOP/s", "GFLOP/s fwd only",
                        "% of matmul ceiling (fwd)", "peak RSS MiB"], rows,
                       title=f"== results ({n} sentences, batch {args.batch_size}, max_len {args.max_len}) ==")


if __name__ == "__main__":
    main()
