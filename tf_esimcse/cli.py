"""The `tf-esimcse` command: evaluate | encode | export | build-index | search | plot-run | download-data.

    tf-esimcse evaluate --model M [--pooler P] [--data-dir D] [--output results.json] [--length-split]
                        [--aggregations] [--sts-file F ...] [--only-sts-files] [--plot out.png]
                        [--dim D | --dims 384,256,128,64,32]
    tf-esimcse plot-run saved_models/NAME [--output run.png]
    tf-esimcse encode   --model M [--pooler P] --input sentences.txt --output embeddings.npy
                        [--precision bfloat16]
    tf-esimcse export   --model M [--pooler P] [--max-len L] --output saved_models/NAME [--version N]
                        [--tokens-only] [--precision bfloat16]
    tf-esimcse export   --format sentence-transformers --model M --output DIR [--overwrite]
    tf-esimcse export   --format onnx|litert --model M --output DIR [--overwrite] [--quantize int8]
    tf-esimcse build-index --model M --corpus docs.txt [--output docs.txt.index] [--approximate]
                        [--precision float32|int8|binary] [--dim D]
    tf-esimcse search   --model M --corpus docs.txt --query "..." [--query ...] [--top-k 10] [--index I]
                        [--rescore K] [--precision P] [--dim D]
    tf-esimcse download-data --dest DIR [--what senteval,wiki1m,nli] [--force]
    tf-esimcse card     --model DIR   (re)write DIR/README.md, the model card, from its results

M is a directory written by this package, a training run folder (the `output_dir` of a recipe,
holding `model/` and `results.json`: its `model/` is used), a Hugging Face BERT directory, a
keras-hub preset directory or name, or "default" (the offline all-MiniLM-L6-v2).
"""
# This module is the parser; its own imports need no TensorFlow (the package's __init__ still loads
# it, quietly). What each command does is in `tf_esimcse.commands`, imported by `main` once a
# command runs. (The text above is also the epilog of `tf-esimcse --help`.)
import os
import pathlib
import sys

from tf_esimcse.config import DEFAULT_MODEL_ALIASES, POOLERS, FlagParser, HelpFormatter, default_data_dir
from tf_esimcse.data.download_sources import SOURCES
from tf_esimcse.errors import TfEsimcseError
from tf_esimcse.run_folder import MODEL_DIR

# Names `tf_esimcse.backbones.resolve_source` maps to the default encoder before looking at paths.
_DEFAULT_MODEL_ALIASES = DEFAULT_MODEL_ALIASES
MODEL_HELP = ("the encoder: a model directory, a training run folder (its model/ is used), a keras-hub preset, "
              "or 'default' (all-MiniLM-L6-v2, offline)")
RUN_MODEL_SUBDIR = MODEL_DIR  # where `tf_esimcse.training.run_training` saves the best encoder


def _is_model_dir(path):
    # What `tf_esimcse.backbones.resolve_source` accepts as a model directory.
    return (path / "config.json").is_file() or (path / "metadata.json").is_file()


def resolve_model_path(model):
    """Map a training run folder to the model saved in it; leave anything else unchanged.

    A run folder is what a recipe's `--output-dir` holds: `model/` (the best encoder, written by
    `SentenceEncoder.save_pretrained`), `results.json`, logs. Model directories, preset names,
    "default" and paths that do not exist are returned as given, for
    `SentenceEncoder.from_pretrained` to load or to reject with its own error.

    Args:
        model: str or path-like. The `--model` value.

    Returns:
        `str(model / "model")` if `model` is a directory that is not itself a model directory
        (no config.json, no metadata.json) and holds a `model/` subfolder that is one; else
        `model` unchanged.
    """
    if model is None or str(model) in _DEFAULT_MODEL_ALIASES:
        return model
    path = pathlib.Path(os.path.expanduser(str(model)))
    if not path.is_dir() or _is_model_dir(path):
        return model
    saved = path / RUN_MODEL_SUBDIR
    if saved.is_dir() and _is_model_dir(saved):
        return str(saved)
    return model


def _groups(p, *names):
    """Argument groups of a subcommand's `--help`, by name."""
    descriptions = {"model": "the encoder", "data": "the input", "evaluation": "what is measured",
                    "output": "what is written", "runtime": "speed and logs"}
    return {name: p.add_argument_group(name, descriptions[name]) for name in names}


def _add_model_flags(group, pooler_default="the model's own; SimCSE releases use cls_before_pooler",
                     max_len_default="the encoder's own length, i.e. no truncation in practice, as SimCSE evaluates"):
    group.add_argument("--model", default="default", help=MODEL_HELP + " (default: default)")
    group.add_argument("--pooler", default=None, choices=POOLERS,
                       help=f"sentence embedding: [CLS] with (cls) or without (cls_before_pooler) the MLP head, or a "
                            f"mean over layers (default: {pooler_default})")
    group.add_argument("--max-len", type=int, default=None, metavar="N",
                       help=f"truncate each sentence to N word pieces (default: {max_len_default})")
    group.add_argument("--dim", type=int, default=None, metavar="D",
                       help="embedding size: the first D coordinates, L2-normalised again (default: the model's "
                            "saved truncate_dim, else the full size)")


def _add_first_layer_flag(group):
    group.add_argument("--first-layer", type=int, default=None, metavar="N",
                       help="avg_first_last: which hidden state is 'first' (default: 1, as SimCSE's code since its "
                            "fix; 0 = the embeddings)")


def _add_batch_size_flag(group):
    group.add_argument("--batch-size", type=int, default=128, metavar="N",
                       help="sentences encoded per batch (default: 128)")


def _add_verbose_flag(group):
    group.add_argument("--verbose", action="store_true",
                       help="show TensorFlow's own log lines (default: off)")


def _add_index_flags(group, precision_default):
    # build-index and search: how the corpus vectors are stored (tf_esimcse.search, tf_esimcse.quantization)
    given = "the index's" if precision_default is None else precision_default
    group.add_argument("--precision", default=precision_default,
                       choices=["float32", "int8", "binary"], dest="index_precision",
                       help="stored vectors: float32, int8 (per-dimension ranges, 4x smaller) or binary (sign bits, "
                            f"32x smaller, Hamming search then float rescoring) (default: {given})")


def _add_precision_flag(group):
    group.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                       help="matrix products in float32 or bfloat16, the rest float32; bfloat16 is faster on CPUs "
                            "with bfloat16 units (AMX: Intel Sapphire Rapids and later; AVX-512 BF16: x1.3-1.5 measured on "
                            "an AMD EPYC), slower without them (default: float32)")


def _add_download_parser(sub):
    """The `download-data` subcommand (`tf_esimcse.data.download` does the work)."""
    p = sub.add_parser(
        "download-data", formatter_class=HelpFormatter,
        help="download SentEval, wiki1m and/or SimCSE's NLI data into DEST (resumable, verified)",
        description="Download the public data sets into the layout the readers expect: DEST/senteval/, "
                    "DEST/wiki1m_for_simcse.txt, DEST/nli_for_simcse.csv. Interrupted downloads resume; every "
                    "file is checked (size, SHA-256 where known, layout) before it is put in place.",
    )
    data = p.add_argument_group("data", "what is fetched, and where to")
    data.add_argument("--dest", required=True, metavar="DIR",
                      help="data root to fill (e.g. ./data, the --data-dir of evaluate and the recipes); created if "
                           "missing (required)")
    data.add_argument("--what", default=None, metavar="ITEMS",
                      help=f"comma-separated items to fetch, from: {','.join(SOURCES)} (default: all of them)")
    data.add_argument("--force", action="store_true",
                      help="download again even if the item is already in place and verified (default: off)")
    p.set_defaults(fn="cmd_download_data")
    _add_verbose_flag(p.add_argument_group("runtime", "logs"))
    return p


def build_parser():
    """The `tf-esimcse` parser; each subcommand's `args.fn` names its function in `tf_esimcse.commands`."""
    parser = FlagParser(prog="tf-esimcse", formatter_class=HelpFormatter,
                        description="Contrastive sentence embeddings: evaluate, encode, export, search; "
                                    "`tf-esimcse COMMAND --help` describes each command's flags.",
                        epilog=__doc__.split("\n", 2)[2].rstrip())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, fn):
        p = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                           formatter_class=HelpFormatter)
        p.set_defaults(fn=fn)  # a name in tf_esimcse.commands
        return p

    ev = command("evaluate", "STS12-16, STS-B and SICK-R (SentEval 'all' setting), alignment, uniformity",
                 "cmd_evaluate")
    g = _groups(ev, "model", "data", "evaluation", "output", "runtime")
    _add_model_flags(g["model"])
    _add_first_layer_flag(g["model"])
    g["data"].add_argument("--data-dir", default=default_data_dir(), metavar="DIR",
                           help="folder holding senteval/ (default: $TF_ESIMCSE_DATA_DIR, else ./data)")
    g["data"].add_argument("--sts-file", action="append", default=[], metavar="FILE",
                           help="your own STS-style file (TSV, or CSV by extension: sentence 1, sentence 2, score; "
                                "header optional); repeat for several (default: none)")
    g["data"].add_argument("--only-sts-files", action="store_true",
                           help="score the --sts-file files only, not SentEval (default: off)")
    g["evaluation"].add_argument("--length-split", action="store_true",
                                 help="also STS-B test Spearman split by the pair's length difference (ESimCSE's "
                                      "length bias) (default: off)")
    g["evaluation"].add_argument("--length-threshold", type=int, default=3, metavar="N",
                                 help="--length-split: pairs whose lengths differ by at most N word pieces are "
                                      "'short' (default: 3)")
    g["evaluation"].add_argument("--dims", default=None, metavar="D1,D2,...",
                                 help="the STS table at each embedding size, e.g. 384,256,128,64,32, from one "
                                      "encoding of each sentence (default: one size, see --dim)")
    g["evaluation"].add_argument("--aggregations", action="store_true",
                                 help="also STS12-16 in SentEval's 'all', 'mean' and 'wmean' aggregations side by "
                                      "side (default: off)")
    g["output"].add_argument("--output", default=None, metavar="JSON",
                             help="write the results as JSON (default: print only)")
    g["output"].add_argument("--plot", default=None, metavar="PNG",
                             help="draw the length split (with --length-split) or the 7-task table as bars "
                                  "(default: none)")
    _add_batch_size_flag(g["runtime"])
    _add_verbose_flag(g["runtime"])

    en = command("encode", "one embedding row per input line, in order, as .npy", "cmd_encode")
    g = _groups(en, "model", "data", "output", "runtime")
    _add_model_flags(g["model"])
    _add_first_layer_flag(g["model"])
    g["data"].add_argument("--input", required=True, metavar="TXT", help="text file, one sentence per line (required)")
    g["output"].add_argument("--output", required=True, metavar="NPY", help="the .npy file to write (required)")
    _add_batch_size_flag(g["runtime"])
    _add_precision_flag(g["runtime"])
    _add_verbose_flag(g["runtime"])

    ex = command("export", "a TF Serving SavedModel (strings in, embeddings out) at OUTPUT/<version>, or a "
                           "sentence-transformers, ONNX or LiteRT directory", "cmd_export")
    g = _groups(ex, "model", "output", "runtime")
    _add_model_flags(g["model"], max_len_default="the model's own, else 32")
    g["output"].add_argument("--output", required=True, metavar="DIR",
                             help="export base directory (TF Serving's --model_base_path), e.g. saved_models/NAME "
                                  "(required)")
    g["output"].add_argument("--format", default="saved_model",
                             choices=["saved_model", "sentence-transformers", "onnx", "litert"],
                             help="saved_model (TF Serving) or sentence-transformers (a Hugging Face BERT or RoBERTa "
                                  "directory with its pooling modules, for SentenceTransformer(DIR) and "
                                  "transformers); onnx (model.onnx for ONNX Runtime) or litert (model.tflite), both "
                                  "token ids in, the pooled normalised embedding out, tokenizer.json + vocab.txt "
                                  "beside (default: saved_model)")
    g["output"].add_argument("--version", type=int, default=None, metavar="N",
                             help="saved_model: the version to write; never overwrites (default: 1 + the largest "
                                  "existing)")
    g["output"].add_argument("--tokens-only", action="store_true",
                             help="saved_model: token ids in only (encode_tokens, also as serving_default), no "
                                  "TF-Text ops in the graph (default: off)")
    g["output"].add_argument("--overwrite", action="store_true",
                             help="sentence-transformers, onnx, litert: replace a non-empty OUTPUT (default: off)")
    g["output"].add_argument("--quantize", default=None, choices=["int8"],
                             help="litert: also write model_int8.tflite, dynamic-range int8 weights (default: "
                                  "float32 only)")
    _add_precision_flag(g["runtime"])
    _add_verbose_flag(g["runtime"])

    bi = command("build-index", "encode a corpus once and save its search index next to it", "cmd_build_index")
    g = _groups(bi, "model", "data", "output", "runtime")
    _add_model_flags(g["model"])
    _add_first_layer_flag(g["model"])
    g["data"].add_argument("--corpus", required=True, metavar="TXT", help="text file, one sentence per line (required)")
    g["output"].add_argument("--output", default=None, metavar="DIR", help="index folder (default: CORPUS.index)")
    g["output"].add_argument("--approximate", action="store_true",
                             help="also build a faiss HNSW index for large corpora (pip install "
                                  "'tf_esimcse[search]') (default: off, exact search)")
    _add_index_flags(g["output"], precision_default="float32")
    _add_batch_size_flag(g["runtime"])
    _add_verbose_flag(g["runtime"])

    se = command("search", "the corpus sentences nearest each query, with cosine scores", "cmd_search")
    g = _groups(se, "model", "data", "output", "runtime")
    _add_model_flags(g["model"])
    _add_first_layer_flag(g["model"])
    g["data"].add_argument("--corpus", required=True, metavar="TXT",
                           help="text file, one sentence per line; its CORPUS.index is used when present (required)")
    g["data"].add_argument("--query", action="append", default=[], metavar="TEXT",
                           help="a query sentence; repeat for several (at least one)")
    g["data"].add_argument("--index", default=None, metavar="DIR",
                           help="index folder (default: CORPUS.index if it exists, else encode the corpus now)")
    g["output"].add_argument("--top-k", type=int, default=10, metavar="K",
                             help="nearest sentences shown per query (default: 10)")
    _add_index_flags(g["output"], precision_default=None)
    g["output"].add_argument("--rescore", type=int, default=None, metavar="K",
                             help="binary index: Hamming candidates per query re-ranked by the float cosine (default: "
                                  "10 x top-k; 0: Hamming order, no rescoring)")
    _add_batch_size_flag(g["runtime"])
    _add_verbose_flag(g["runtime"])

    pr = command("plot-run", "loss, learning rate, STS-B dev and alignment/uniformity of a training run (or a "
                             "--seeds folder) as one PNG", "cmd_plot_run")
    g = _groups(pr, "data", "output", "runtime")
    g["data"].add_argument("run_dir", metavar="RUN_DIR", help="a recipe's --output-dir")
    g["output"].add_argument("--output", default=None, metavar="PNG", help="PNG path (default: RUN_DIR/run.png)")
    _add_verbose_flag(g["runtime"])

    ca = command("card", "write the model card (README.md) of a saved model, a training run, a --seeds folder or "
                         "an export again, from the results recorded with it", "cmd_card")
    g = _groups(ca, "model", "runtime")
    g["model"].add_argument("--model", required=True, metavar="DIR",
                            help="a saved model, a training run folder (its model/), a --seeds folder or an export "
                                 "(required)")
    _add_verbose_flag(g["runtime"])

    _add_download_parser(sub)
    return parser


def main(argv=None):
    """`tf-esimcse ARGV`; returns the exit code (0; 2 for a bad flag or a one-line error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2, its one line already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        if getattr(args, "model", None) is not None:  # every subcommand: a run folder -> its model/
            args.model = resolve_model_path(args.model)
        # Here, not at the top: the commands' modules (export, search, plots, ...) are loaded only once
        # a command runs, never for --help or a flag error.
        from tf_esimcse import commands

        return getattr(commands, args.fn)(args)
    except (TfEsimcseError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
