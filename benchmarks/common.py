"""Helpers shared by the benchmark scripts: flags, TF threads, host facts, matmul ceiling,
FLOP formulas for a BERT encoder, peak RSS and table printing.

Benchmarks print figures; they never assert times (they are not tests). Other processes may
share the CPU: every figure is a median (or mean) over the steps or repeats of ONE run, and the
host's load average is printed before and after so a busy host shows in the log.
"""
import argparse
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

# The scripts run as `python benchmarks/<name>.py` from the repository root: make the package
# importable without installing it (it is installed editable by `make setup` anyway).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)


# ---------------------------------------------------------------------------------- flags
def default_data_dir():
    """`$TF_ESIMCSE_DATA_DIR`, else `<repo>/data` (the link `make setup` makes)."""
    return os.environ.get("TF_ESIMCSE_DATA_DIR", os.path.join(_REPO, "data"))


def add_common_flags(parser):
    """Flags every benchmark takes."""
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help="data root holding brown/ and senteval/ (default: %(default)s)")
    parser.add_argument("--model", default="default",
                        help="encoder to load (SentenceEncoder.from_pretrained source; default: %(default)s "
                             "= all-MiniLM-L6-v2, offline)")
    parser.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--max-len", type=int, default=32,
                        help="tokenizer truncation length, [CLS]/[SEP] included (default: %(default)s)")
    parser.add_argument("--intra-op", type=int, default=0,
                        help="TF intra-op threads (0 = TF's default, all cores)")
    parser.add_argument("--inter-op", type=int, default=0,
                        help="TF inter-op threads (0 = TF's default)")
    parser.add_argument("--ceiling-repeats", type=int, default=5,
                        help="timed runs of each 2048^3 matmul for the ceiling (default: %(default)s)")
    return parser


def configure_threads(args):
    """Set TF's thread pools from --intra-op/--inter-op. Must run before TF executes any op."""
    import tensorflow as tf

    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)


# ---------------------------------------------------------------------------------- host
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def print_host_info(args=None):
    import keras
    import tensorflow as tf

    try:
        import keras_hub

        hub = keras_hub.__version__
    except Exception:  # pragma: no cover - keras-hub is a dependency
        hub = "n/a"
    print(f"date:        {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"host:        {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load_average()}")
    print(f"software:    python {platform.python_version()}, tensorflow {tf.__version__}, keras "
          f"{keras.__version__} ({keras.backend.backend()}), keras-hub {hub}, numpy {np.__version__}")
    if args is not None:
        print(f"TF threads:  intra-op {args.intra_op or 'default'}, inter-op {args.inter_op or 'default'}")
    print(f"command:     {' '.join([os.path.relpath(sys.argv[0], _REPO)] + sys.argv[1:])}")
    print("note:        other processes may share this CPU; compare figures within one run, prefer medians.",
          flush=True)


def peak_rss_mib():
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


# ---------------------------------------------------------------------------------- ceiling
def _median_gflops(fn, flops, repeats):
    fn()  # warm-up (allocations, thread pool spin-up)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times) / 1e9


def matmul_ceiling(n=2048, repeats=5):
    """Median GFLOP/s of a float32 n x n x n matmul (2 n^3 FLOPs) in NumPy and in TF.

    Returns a dict {"numpy": gflops, "tf": gflops, "n": n}.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    result = {"n": n}
    result["numpy"] = _median_gflops(lambda: np.matmul(a, b), flops, repeats)
    ta, tb = tf.constant(a), tf.constant(b)
    # .numpy() waits for the result (and copies 16 MiB, ~1 % of the time at this size).
    result["tf"] = _median_gflops(lambda: tf.linalg.matmul(ta, tb).numpy(), flops, repeats)
    return result


def format_ceiling(c):
    return (f"float32 {c['n']}^3 matmul, median: NumPy {c['numpy']:.1f} GFLOP/s, "
            f"tf.linalg.matmul {c['tf']:.1f} GFLOP/s")


def ceiling_value(*ceilings):
    """The matmul ceiling used for '% of ceiling': the best median seen (NumPy or TF, any probe)."""
    return max(max(c["numpy"], c["tf"]) for c in ceilings)


def contention_note(*ceilings):
    """A warning line when the ceiling probes of one run disagree (the CPU was shared), else ''."""
    values = [v for c in ceilings for v in (c["numpy"], c["tf"])]
    if max(values) > 1.25 * min(values):
        return (f"WARNING: the matmul probes of this run range {min(values):.0f}-{max(values):.0f} GFLOP/s: the CPU "
                "was shared, so '% of ceiling' is indicative only (it can exceed 100 %); compare GFLOP/s and "
                "sentences/s within one run instead")
    return ""


# ---------------------------------------------------------------------------------- FLOPs
class BertDims:
    """The shape of a BERT encoder, read from a keras-hub `BertBackbone` (or `BertEncoder`)."""

    def __init__(self, backbone):
        self.layers = int(backbone.num_layers)
        self.hidden = int(backbone.hidden_dim)
        self.intermediate = int(backbone.intermediate_dim)
        self.heads = int(backbone.num_heads)

    @property
    def matmul_params_per_token(self):
        """Weights every token is multiplied by: per layer Q, K, V, O (4 H^2) and the
        feed-forward (2 H I). Embedding lookups, LayerNorm and biases are not matmuls."""
        return self.layers * (4 * self.hidden ** 2 + 2 * self.hidden * self.intermediate)

    def __str__(self):
        return (f"L={self.layers} layers, H={self.hidden} hidden, I={self.intermediate} intermediate, "
                f"{self.heads} heads; matmul weights per token P = L*(4H^2 + 2HI) = "
                f"{self.matmul_params_per_token / 1e6:.3f} M")


FORWARD_FORMULA = (
    "forward FLOPs per sequence of T tokens (padding included: it is computed) = "
    "2*P*T  [token x weight matmuls]  +  4*L*T^2*H  [Q.K^T and attn.V, 2*T^2*H each per layer]"
)


FIRST_TOKEN_FORMULA = (
    "with cls poolers our last layer computes only the [CLS] query (BertEncoder.first_token_output): "
    "its FLOPs are K and V for all T tokens (4*H^2*T), Q, O and the feed-forward for 1 token "
    "(4*H^2 + 4*H*I) and attention for 1 query (4*T*H), instead of a full layer; FLOPs counted accordingly"
)


def forward_flops(dims, sequences, length, first_token_only=False):
    """FLOPs of one forward pass of `sequences` sequences padded to `length` tokens.

    `first_token_only`: the last layer computes only the first query (see FIRST_TOKEN_FORMULA).
    """
    t, h = length, dims.hidden
    per_seq = 2.0 * dims.matmul_params_per_token * t + 4.0 * dims.layers * t ** 2 * h
    if first_token_only:
        full_layer = 2.0 * (4 * h ** 2 + 2 * h * dims.intermediate) * t + 4.0 * t ** 2 * h
        cls_layer = 4.0 * h ** 2 * t + 4.0 * h ** 2 + 4.0 * h * dims.intermediate + 4.0 * t * h
        per_seq += cls_layer - full_layer
    return sequences * per_seq


def training_flops(dims, sequences, length, head_rows=0, head_dim=0, first_token_only=False):
    """Forward + backward (3x forward: backward = grads w.r.t. activations and weights, each
    as large as the forward) of `sequences` x `length`, plus an optional dense head (head_dim^2
    weights) on `head_rows` pooled vectors."""
    return 3.0 * (forward_flops(dims, sequences, length, first_token_only) + 2.0 * head_rows * head_dim ** 2)


# ---------------------------------------------------------------------------------- stats/table
def summarize(values):
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "min": min(values), "max": max(values), "n": len(values)}


def print_table(headers, rows, title=None):
    """Print a GitHub-markdown table (pasteable into benchmarks/README.md)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))
    sys.stdout.flush()


def choice_list(parser, value, known, what):
    """Split a comma-separated flag value; `parser.error` on names not in `known`."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in known]
    if bad:
        parser.error(f"unknown {what} {bad}; known: {', '.join(sorted(known))}")
    return items


def make_parser(description):
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
