"""Training throughput of contrastive sentence-embedding models (unsupervised SimCSE so far).

    .venv/bin/python benchmarks/train_throughput.py                       # defaults below
    .venv/bin/python benchmarks/train_throughput.py --warmup 2 --steps 5 --jit false
    .venv/bin/python benchmarks/train_throughput.py --models simcse,esimcse
    .venv/bin/python benchmarks/train_throughput.py --models simcse,simcse_roberta   # BERT vs RoBERTa, one size

Default workload: the default encoder (all-MiniLM-L6-v2, offline), unsupervised SimCSE on Brown
sentences, batch 64, max_len 32 (fixed padding), pooler "cls" with the MLP head in training only,
dropout 0.1, AdamW lr 3e-5, `model.compile(jit_compile=...)` + `model.fit` exactly as the recipes.

How a step is timed: the batches of the run (--warmup + --steps of them) are drawn from the
library's own tf.data pipeline first (tokenization is not timed) and replayed to `model.fit` with
the pipeline's element spec; a callback timestamps `on_train_batch_end` (after reading the loss,
so the step has finished). Step time = interval between consecutive batch ends. The first
--warmup steps (tracing, XLA compilation) are excluded. Printed: sentences/s from the median and
the mean step time, achieved GFLOP/s (analytic FLOPs, formula printed), the same as a share of a
measured float32 2048^3 matmul ceiling, and the process's peak RSS.

Adding a model kind: write `build_<kind>(encoder, sentences, args) -> Workload` (through its
method in `tf_esimcse.methods`, `_recipe_workload`)
and register it in `MODELS`; `--models simcse,<kind>` then times both in one run, in the same
process and conditions, and prints the ratios to the first.
"""
import argparse
import dataclasses
import statistics
import os
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py; also puts the repository on sys.path)


@dataclasses.dataclass
class Workload:
    """What a model kind contributes to the benchmark.

    Attributes:
        model: the (uncompiled) training `keras.Model`.
        dataset: its training batches as the recipe feeds them to `fit` (a repeating tf.data).
        sentences: `fn(batch) -> int`, training sentences in one batch (throughput unit).
        flops: `fn(batch) -> float`, training FLOPs of one step on this batch.
        formula: one line saying how `flops` is counted.
    """

    model: object
    dataset: object
    sentences: Callable
    flops: Callable
    formula: str


def _view_shape(view):
    return int(view["token_ids"].shape[0]), int(view["token_ids"].shape[1])


def _recipe_workload(recipe_name, encoder, sentences, args, extra_flags=()):
    """The training model and batches exactly as `recipes/<recipe_name>.py` builds them: its
    method's config (defaults, with this benchmark's batch size, seed, temperature and padding),
    objective and dataset (`tf_esimcse.methods`), and `ContrastiveModel` with the config's clipping
    (`--max-grad-norm`, the recipes' 1.0 by default; 0 turns clipping off). `--dynamic-padding`
    reaches only the methods that support it (ESimCSE's views keep fixed widths)."""
    from tf_esimcse import methods
    from tf_esimcse.models.contrastive_model import ContrastiveModel

    method = methods.get(recipe_name)
    padding = [] if "dynamic_padding" in method.config_cls.unsupported else [
        "--dynamic-padding" if args.dynamic_padding else "--no-dynamic-padding"]
    config = method.parse([
        "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--temperature", str(args.temperature),
        "--max-len", str(args.max_len), "--max-grad-norm", str(args.max_grad_norm), *padding, *extra_flags,
    ])
    model = ContrastiveModel(encoder, method.objective(config), max_grad_norm=config.max_grad_norm or None)
    return model, method.build_dataset(sentences, encoder.preprocessor, config)


def build_simcse(encoder, sentences, args):
    """Unsupervised SimCSE: each sentence twice in one 2N-row forward (two dropout masks)."""
    model, dataset = _recipe_workload("unsup_simcse", encoder, sentences, args)
    dims = common.BertDims(encoder.backbone)
    head_dim = encoder.hidden_dim if encoder.pooler_type == "cls" else 0

    first = encoder.uses_first_token_only

    def flops(batch):
        n, t = _view_shape(batch)
        return common.training_flops(dims, 2 * n, t, head_rows=2 * n, head_dim=head_dim, first_token_only=first)

    formula = ("3 x forward(2N sequences x T)" + (" + 3 x 2*(2N)*H^2 MLP head" if head_dim else "")
               + "; the N x N similarity/softmax loss (2*N^2*H) is ignored")
    return Workload(model, dataset, lambda batch: _view_shape(batch)[0], flops, formula)


def build_esimcse(encoder, sentences, args, extra_flags=()):
    """ESimCSE: anchor + word-repeated positive (one 2N-row forward/backward when both views have
    one width, else one pass per width), plus the momentum encoder's forward of the N anchors
    (no backward) and the queue's extra logits."""
    model, dataset = _recipe_workload("unsup_esimcse", encoder, sentences, args, extra_flags)
    dims = common.BertDims(encoder.backbone)
    head_dim = encoder.hidden_dim if encoder.pooler_type == "cls" else 0

    first = encoder.uses_first_token_only

    def flops(batch):
        n, t_anchor = _view_shape(batch["anchor"])
        _, t_pos = _view_shape(batch["positive"])
        online = (common.training_flops(dims, n, t_anchor, head_rows=n, head_dim=head_dim, first_token_only=first)
                  + common.training_flops(dims, n, t_pos, head_rows=n, head_dim=head_dim, first_token_only=first))
        momentum = common.forward_flops(dims, n, t_anchor, first_token_only=first) + 2.0 * n * head_dim ** 2
        return online + momentum

    formula = ("3 x forward(N x T_anchor + N x T_positive) + MLP head, plus 1 x forward(N x T_anchor) of the "
               "momentum encoder (no backward); similarity/queue logits ignored")
    return Workload(model, dataset, lambda batch: _view_shape(batch["anchor"])[0], flops, formula)


def build_esimcse_official(encoder, sentences, args):
    """ESimCSE with the official code's repetition: sub-word rule, positives kept up to
    max_len + 9 tokens (not re-truncated), so the positive view is wider than the anchor."""
    return build_esimcse(encoder, sentences, args, extra_flags=(
        "--repetition-mode", "official_subword", "--positive-max-len", str(args.max_len + 9)))


def build_simcse_roberta(encoder, sentences, args):
    """Unsupervised SimCSE on a RoBERTa of the `--model` encoder's size (all-MiniLM-L6-v2's by
    default: 6 layers x 384, 12 heads, 1536, the same 30,522-row vocabulary; random weights, since
    the step time, not the scores, is measured): a keras-hub `RobertaBackbone` of those sizes
    through the package's RoBERTa loading (`roberta_checkpoint.from_keras_hub_roberta`: one token
    type, LayerNorm epsilon 1e-5) into the same encoder class and speed paths, fed the same token
    ids as `simcse` (the `--model` encoder's tokenizer draws the batches)."""
    import keras_hub

    from tf_esimcse.models.sentence_encoder import SentenceEncoder
    from tf_esimcse.roberta_checkpoint import from_keras_hub_roberta

    sizes = {k: encoder.backbone.get_config()[k] for k in (
        "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length")}
    roberta = keras_hub.models.RobertaBackbone(**sizes, dropout=args.dropout)
    roberta_encoder = SentenceEncoder(from_keras_hub_roberta(roberta, dropout=args.dropout),
                                      pooler_type=encoder.pooler_type, mlp_only_train=encoder.mlp_only_train,
                                      preprocessor=encoder.preprocessor)
    assert roberta_encoder.backbone.layer_norm_epsilon == 1e-5
    return build_simcse(roberta_encoder, sentences, args)


# name -> build function; `--models simcse,esimcse` times both in one run and prints the ratio.
MODELS = {"simcse": build_simcse, "esimcse": build_esimcse, "esimcse_official": build_esimcse_official,
          "simcse_roberta": build_simcse_roberta}


def parse_args(argv=None):
    parser = common.make_parser(__doc__)
    common.add_common_flags(parser)
    parser.add_argument("--models", default="simcse,esimcse",
                        help=f"comma-separated model kinds, timed one after the other in this process; "
                             f"ratios are to the first (known: {', '.join(MODELS)}; default: %(default)s)")
    parser.add_argument("--jit", default="auto", choices=["auto", "true", "false"],
                        help="model.compile(jit_compile=...); auto = XLA unless a tf.distribute strategy "
                             "is active (as the recipes; default: %(default)s)")
    parser.add_argument("--dynamic-padding", action="store_true",
                        help="trim each batch to its longest sentence (the recipes' --dynamic-padding)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=3e-5, help="AdamW (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.05, help="default: %(default)s")
    parser.add_argument("--max-grad-norm", type=float, default=1.0,
                        help="global gradient clipping as the recipes (0: none) (default: %(default)s)")
    parser.add_argument("--pooler", default="cls", help="training pooler (default: %(default)s)")
    parser.add_argument("--mlp-only-train", default=True, action=argparse.BooleanOptionalAction,
                        help="cls pooler: MLP head in training only (default: on)")
    parser.add_argument("--dropout", type=float, default=0.1, help="default: %(default)s")
    parser.add_argument("--corpus", default="brown",
                        help="'brown' (<data-dir>/brown) or a text file, one sentence a line (default: brown)")
    parser.add_argument("--max-sentences", type=int, default=0,
                        help="use only the first N corpus sentences (0 = all; the shuffle spans the corpus)")
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    args = parser.parse_args(argv)
    args.models = common.choice_list(parser, args.models, MODELS, "model kind(s)")
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


class StepTimer:
    """Keras callback: wall-clock time at the start of fit and at each batch end (after the
    step's loss is read back, so the step has finished)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.begins, self.ends, self.losses = [], [], []

            def on_train_batch_begin(self, batch, logs=None):
                self.begins.append(time.perf_counter())

            def on_train_batch_end(self, batch, logs=None):
                loss = float(logs["loss"]) if logs and "loss" in logs else float("nan")
                self.ends.append(time.perf_counter())
                self.losses.append(loss)

        return _Timer()


def run_one(kind, sentences, jit, args):
    import keras
    import tensorflow as tf

    from tf_esimcse.models.sentence_encoder import SentenceEncoder

    keras.utils.set_random_seed(args.seed)
    t0 = time.perf_counter()
    encoder = SentenceEncoder.from_pretrained(
        args.model, pooler_type=args.pooler, sequence_length=args.max_len, dropout=args.dropout,
        mlp_only_train=args.mlp_only_train,
    )
    workload = MODELS[kind](encoder, sentences, args)
    model = workload.model
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.learning_rate,
                                                   weight_decay=args.weight_decay),
                  jit_compile=jit)
    load_s = time.perf_counter() - t0

    n = args.warmup + args.steps
    t0 = time.perf_counter()
    batches = list(workload.dataset.take(n))
    data_s = time.perf_counter() - t0
    spec = workload.dataset.element_spec
    replay = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=spec)

    timer = StepTimer()
    t0 = time.perf_counter()
    model.fit(replay, epochs=1, steps_per_epoch=n, callbacks=[timer], verbose=0, shuffle=False)
    fit_s = time.perf_counter() - t0
    if len(timer.ends) != n:
        raise RuntimeError(f"expected {n} batch ends, got {len(timer.ends)}")

    # step i = end[i] - end[i-1] (the time a training run spends per step); step 0 from its begin.
    step_s = [timer.ends[0] - timer.begins[0]] + [b - a for a, b in zip(timer.ends, timer.ends[1:])]
    timed = range(args.warmup, n)
    times = [step_s[i] for i in timed]
    flops = [workload.flops(batches[i]) for i in timed]
    sents = [workload.sentences(batches[i]) for i in timed]
    lengths = sorted({int(batches[i]["token_ids"].shape[1]) for i in timed}) if "token_ids" in batches[0] else []
    stats = common.summarize(times)
    gflops_per_step = [f / t / 1e9 for f, t in zip(flops, times)]
    result = {
        "kind": kind,
        "jit": jit,
        "padding": "dynamic" if args.dynamic_padding else f"fixed {args.max_len}",
        "lengths": lengths,
        "load_s": load_s,
        "data_s": data_s,
        "fit_s": fit_s,
        "warmup_s": step_s[: args.warmup],
        "times": times,
        "step": stats,
        "sent_per_s_median": sents[0] / stats["median"] if len(set(sents)) == 1 else sum(sents) / sum(times),
        "sent_per_s_mean": sum(sents) / sum(times),
        "gflops_median": statistics.median(gflops_per_step),
        "gflops_mean": sum(flops) / sum(times) / 1e9,
        "flops_per_step": statistics.median(flops),
        "formula": workload.formula,
        "losses": timer.losses,
        "rss_mib": common.peak_rss_mib(),
        "dims": str(common.BertDims(encoder.backbone)),
    }
    return result


def main(argv=None):
    args = parse_args(argv)
    common.configure_threads(args)
    import tensorflow as tf  # noqa: F401  (after the thread settings)

    from tf_esimcse.data.corpus import load_sentences
    from tf_esimcse.training import resolve_jit

    print("== train_throughput ==")
    common.print_host_info(args)
    for var in ("XLA_FLAGS", "TF_XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS"):
        if os.environ.get(var):
            print(f"env:         {var}={os.environ[var]}")
    jit = resolve_jit(args.jit)
    print(f"settings:    models {','.join(args.models)}; encoder {args.model}; batch {args.batch_size} x "
          f"max_len {args.max_len}; {'dynamic' if args.dynamic_padding else 'fixed'} padding; jit_compile="
          f"{jit} (--jit {args.jit}); pooler {args.pooler} (mlp_only_train={args.mlp_only_train}); dropout "
          f"{args.dropout}; AdamW lr {args.learning_rate} wd {args.weight_decay}; {args.warmup} warm-up + "
          f"{args.steps} timed steps", flush=True)

    ceiling_before = common.matmul_ceiling(2048, args.ceiling_repeats)
    print(f"ceiling:     {common.format_ceiling(ceiling_before)} (before training)", flush=True)

    sentences = load_sentences(args.corpus, args.data_dir, max_sentences=args.max_sentences or None)
    print(f"corpus:      {args.corpus}: {len(sentences)} sentences", flush=True)

    results = []
    for kind in args.models:
        print(f"\n-- {kind} --", flush=True)
        r = run_one(kind, sentences, jit, args)
        results.append(r)
        s = r["step"]
        print(f"load+build {r['load_s']:.1f} s; drawing {args.warmup + args.steps} batches from the pipeline "
              f"(tokenizes the corpus once) {r['data_s']:.1f} s; fit {r['fit_s']:.1f} s")
        print("warm-up steps (excluded): " + ", ".join(f"{t:.2f}" for t in r["warmup_s"]) + " s")
        print("timed steps: " + ", ".join(f"{t:.2f}" for t in r["times"]) + " s")
        print(f"batch lengths T in timed steps: {r['lengths']}")
        print(f"s/step: median {s['median']:.3f}, mean {s['mean']:.3f}, min {s['min']:.3f}, max {s['max']:.3f} "
              f"(n={s['n']})")
        print(f"sentences/s: {r['sent_per_s_median']:.2f} (median step), {r['sent_per_s_mean']:.2f} (mean step)")
        print(f"encoder: {r['dims']}")
        print(f"FLOPs/step: {r['flops_per_step'] / 1e9:.1f} GFLOP = {r['formula']}")
        print(f"achieved: {r['gflops_median']:.1f} GFLOP/s (median step), {r['gflops_mean']:.1f} GFLOP/s (mean)")
        print(f"loss: first {r['losses'][0]:.4f}, last {r['losses'][-1]:.4f}")
        print(f"peak RSS of the process so far: {r['rss_mib']:.0f} MiB", flush=True)

    ceiling_after = common.matmul_ceiling(2048, args.ceiling_repeats)
    print(f"\nceiling:     {common.format_ceiling(ceiling_after)} (after training)")
    ceiling = common.ceiling_value(ceiling_before, ceiling_after)

    print("FLOP model:  " + common.FIRST_TOKEN_FORMULA)
    print("FLOP model:  " + common.FORWARD_FORMULA + "; training = 3 x forward; unsupervised SimCSE encodes "
          "2N sequences per step (N = batch size)")
    print(f"% of ceiling uses the best matmul median above: {ceiling:.1f} GFLOP/s")
    note = common.contention_note(ceiling_before, ceiling_after)
    if note:
        print(note)
    print(f"load average at the end: {common.load_average()}")

    rows = []
    for r in results:
        rows.append([
            r["kind"], str(r["jit"]).lower(), r["padding"], f"{r['sent_per_s_median']:.2f}",
            f"{r['step']['median']:.3f}", f"{r['gflops_median']:.1f}", f"{100 * r['gflops_median'] / ceiling:.0f} %",
            f"{r['rss_mib']:.0f}",
        ])
    common.print_table(["model", "jit", "padding", "sentences/s (median)", "s/step (median)", "GFLOP/s",
                        "% of matmul ceiling", "peak RSS MiB"], rows, title="== results ==")
    if len(results) > 1:
        base = results[0]
        print(f"\nratios to {base['kind']} (same process, same conditions):")
        for r in results[1:]:
            print(f"  {r['kind']}: s/step x{r['step']['median'] / base['step']['median']:.2f}, "
                  f"sentences/s x{r['sent_per_s_median'] / base['sent_per_s_median']:.2f}")
        print("  (peak RSS is the process's running maximum: later rows include the earlier ones)")


if __name__ == "__main__":
    main()
