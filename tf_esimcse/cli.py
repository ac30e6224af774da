"""The `tf-esimcse` command: evaluate | encode | export | build-index | search.

    tf-esimcse evaluate --model M [--pooler P] [--data-dir D] [--output results.json] [--length-split]
                        [--aggregations] [--sts-file F ...] [--only-sts-files] [--plot out.png]
    tf-esimcse plot-run saved_models/NAME [--output run.png]
    tf-esimcse encode   --model M [--pooler P] --input sentences.txt --output embeddings.npy
                        [--precision bfloat16]
    tf-esimcse export   --model M [--pooler P] [--max-len L] --output saved_models/NAME [--version N]
                        [--tokens-only] [--precision bfloat16]
    tf-esimcse export   --format sentence-transformers --model M --output DIR [--overwrite]
    tf-esimcse build-index --model M --corpus docs.txt [--output docs.txt.index] [--approximate]
    tf-esimcse search   --model M --corpus docs.txt --query "..." [--query ...] [--top-k 10] [--index I]
    tf-esimcse download-data --dest DIR [--what senteval,wiki1m,nli] [--force]

M is a directory written by this package, a training run folder (the `output_dir` of a recipe,
holding `model/` and `results.json`: its `model/` is used), a Hugging Face BERT directory, a
keras-hub preset directory or name, or "default" (the offline all-MiniLM-L6-v2).
"""
import argparse
import os
import pathlib
import sys

# Names `tf_esimcse.backbones.resolve_source` maps to the default encoder before looking at paths.
_DEFAULT_MODEL_ALIASES = ("default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MODEL_HELP = "model directory, training run folder (uses its model/), preset, or 'default'"
RUN_MODEL_SUBDIR = "model"  # where `tf_esimcse.training.run_training` saves the best encoder


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


def _add_model_flags(p):
    p.add_argument("--model", default="default", help=MODEL_HELP)
    p.add_argument("--pooler", default=None,
                   help="cls | cls_before_pooler | avg | avg_top2 | avg_first_last "
                        "(default: the model's own; SimCSE releases use cls_before_pooler)")
    p.add_argument("--max-len", type=int, default=None,
                   help="truncation in word pieces (default: the encoder's max length, i.e. none in practice, as SimCSE evaluates)")
    p.add_argument("--first-layer", type=int, default=None,
                   help="avg_first_last: which hidden state is 'first' (default 1, as SimCSE's code since its fix; 0 = embeddings)")
    p.add_argument("--batch-size", type=int, default=128)


def _load_encoder(args):
    from tf_esimcse.layers.pooler import check_pooler_type
    from tf_esimcse.models.sentence_encoder import SentenceEncoder

    if args.pooler is not None:
        check_pooler_type(args.pooler)
    return SentenceEncoder.from_pretrained(args.model, pooler_type=args.pooler, inference_length=args.max_len,
                                           first_layer=getattr(args, "first_layer", None))


def cmd_evaluate(args):
    from tf_esimcse.atomic_files import write_json_atomic
    from tf_esimcse.data.senteval import read_sts_file, resolve_senteval_dir
    from tf_esimcse.evaluation.sts import (encoder_length_split, evaluate_sts, format_aggregations,
                                           format_length_split, format_table, pair_metrics, sts_year_aggregations)

    # Fail on missing or malformed data before loading a model.
    files = {str(f): read_sts_file(f) for f in args.sts_file}
    use_senteval = not args.only_sts_files
    if use_senteval:
        resolve_senteval_dir(args.data_dir)
    elif not files:
        raise ValueError("--only-sts-files needs at least one --sts-file")
    encoder = _load_encoder(args)

    def encode(sentences):
        return encoder.encode(sentences, batch_size=args.batch_size, verbose=0)

    results = {"pooler": encoder.pooler_type, "model": str(args.model)}
    if use_senteval:
        results.update(evaluate_sts(encode, args.data_dir))
        print(format_table(results))
        print(f"STS-B dev {results['stsb_dev']:.2f}  alignment {results['alignment']:.4f}  "
              f"uniformity {results['uniformity']:.4f}   (STS-B dev selects models; STSB above is its test split)")
        if args.aggregations:
            results["sts_aggregations"] = sts_year_aggregations(encode, args.data_dir)
            print("STS12-16 in SentEval's three aggregations (SimCSE reports 'all'):")
            print(format_aggregations(results["sts_aggregations"]))
        if args.length_split:
            results["length_split"] = encoder_length_split(encoder, encode, args.data_dir,
                                                           threshold=args.length_threshold)
            print(format_length_split(results["length_split"]))
    if files:
        results["sts_files"] = {}
        for name, pairs in files.items():
            metrics = pair_metrics(encode, pairs)
            results["sts_files"][name] = dict(metrics, pairs=len(pairs.scores))
            print(f"{name}: Spearman {metrics['spearman']:.2f} ({len(pairs.scores)} pairs)  "
                  f"alignment {metrics['alignment']:.4f}  uniformity {metrics['uniformity']:.4f}")
    if args.output:
        write_json_atomic(args.output, results)
        print(f"wrote {args.output}")
    if args.plot:
        from tf_esimcse import plots

        if "length_split" in results:
            path = plots.plot_length_split([(str(args.model), results)], args.plot)
        elif "avg" in results:
            path = plots.plot_sts_table([(str(args.model), results)], args.plot)
        else:
            raise ValueError("--plot draws the SentEval table or (with --length-split) the length split")
        print(f"wrote {path}")
    return 0


def cmd_plot_run(args):
    from tf_esimcse import plots

    path = plots.plot_run(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0


def cmd_encode(args):
    import numpy as np

    from tf_esimcse.data.corpus import _read_text

    out = pathlib.Path(args.output)
    if out.is_dir():
        from tf_esimcse.errors import DataError

        raise DataError("--output is a directory; give a file name such as embeddings.npy", path=out)
    text = _read_text(args.input)
    sentences = text.splitlines()
    if not sentences:
        from tf_esimcse.errors import DataError

        raise DataError("no lines to encode", path=args.input)
    encoder = _load_encoder(args)
    embeddings = encoder.encode(sentences, batch_size=args.batch_size, precision=args.precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npy")
    np.save(tmp, embeddings)
    os.replace(tmp, out)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out}")
    return 0


def cmd_export(args):
    if args.format == "sentence-transformers":
        from tf_esimcse.st_export import export_sentence_transformers

        encoder = _load_encoder(args)
        path = export_sentence_transformers(encoder, pathlib.Path(args.output).expanduser(), overwrite=args.overwrite)
        print(f"wrote a sentence-transformers / Hugging Face BERT directory to {path}")
        print(f"load: SentenceTransformer({str(path)!r}) or transformers.AutoModel.from_pretrained({str(path)!r})")
        return 0
    from tf_esimcse.export import describe_signatures, export_for_serving, resolve_version

    base = pathlib.Path(args.output).expanduser().resolve()
    resolve_version(base, args.version)  # a version conflict fails before the model loads
    encoder = _load_encoder(args)
    path = export_for_serving(encoder, base, version=args.version, text_ops=not args.tokens_only,
                              precision=args.precision)
    print(f"wrote SavedModel version {path.name} to {path}")
    print(describe_signatures(path))
    print(f"serve: tensorflow_model_server --model_base_path={base} --model_name={base.name} --rest_api_port=8501")
    return 0


def _default_index_path(corpus):
    return pathlib.Path(str(corpus) + ".index")


def cmd_build_index(args):
    from tf_esimcse.search import SearchIndex, read_corpus

    sentences = read_corpus(args.corpus)
    encoder = _load_encoder(args)
    index = SearchIndex.build(encoder, sentences, batch_size=args.batch_size, model=str(args.model),
                              approximate=args.approximate)
    path = index.save(args.output or _default_index_path(args.corpus))
    print(f"indexed {len(sentences)} sentences ({index.dim}-dimensional, "
          f"{'approximate (faiss HNSW)' if args.approximate else 'exact'}) in {path}")
    return 0


def cmd_search(args):
    from tf_esimcse.search import SearchError, SearchIndex, read_corpus

    if not args.query:
        raise SearchError("give at least one --query")
    index_path = pathlib.Path(args.index) if args.index else _default_index_path(args.corpus)
    encoder = _load_encoder(args)
    if index_path.is_dir():
        index = SearchIndex.load(index_path)
        if index.model and index.model != str(args.model):
            raise SearchError(f"{index_path} was built with --model {index.model}, not {args.model}: pass that model, "
                              "or rebuild the index (tf-esimcse build-index)")
        print(f"loaded the index of {len(index.sentences)} sentences from {index_path}")
    elif args.index:
        raise SearchError(f"{index_path}: no search index here; build one with tf-esimcse build-index")
    else:
        index = SearchIndex.build(encoder, read_corpus(args.corpus), batch_size=args.batch_size, model=str(args.model))
    for query, hits in zip(args.query, index.search(encoder.encode(args.query, verbose=0), top_k=args.top_k)):
        print(f"\nquery: {query}")
        for rank, (sentence, score) in enumerate(hits, 1):
            print(f"{rank:3d}. {score:.4f}  {sentence}")
    return 0


def _add_precision_flag(p):
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="matrix products in float32 (default) or bfloat16, the rest float32; bfloat16 is "
                        "faster on CPUs with AMX units (Sapphire Rapids and later), slower elsewhere")


def build_parser():
    from tf_esimcse.training import default_data_dir

    parser = argparse.ArgumentParser(prog="tf-esimcse", description="Contrastive sentence embeddings: evaluate, encode and export.")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="STS12-16, STS-B and SICK-R (SentEval 'all' setting), alignment, uniformity")
    _add_model_flags(ev)
    ev.add_argument("--data-dir", default=default_data_dir(), help="folder holding senteval/ (default: $TF_ESIMCSE_DATA_DIR or ./data)")
    ev.add_argument("--output", default=None, help="write the results as JSON")
    ev.add_argument("--length-split", action="store_true",
                    help="also report STS-B test Spearman split by the pair's length difference (ESimCSE's length bias)")
    ev.add_argument("--length-threshold", type=int, default=3)
    ev.add_argument("--sts-file", action="append", default=[], metavar="FILE",
                    help="your own STS-style file (TSV, or CSV by extension: sentence 1, sentence 2, score; header "
                         "optional); repeat for several")
    ev.add_argument("--only-sts-files", action="store_true", help="score the --sts-file files only, not SentEval")
    ev.add_argument("--plot", default=None, metavar="PNG",
                    help="draw the length split (with --length-split) or the 7-task table as bars")
    ev.add_argument("--aggregations", action="store_true",
                    help="also STS12-16 in SentEval's 'all', 'mean' and 'wmean' aggregations side by side")
    ev.set_defaults(fn=cmd_evaluate)

    en = sub.add_parser("encode", help="one embedding row per input line, in order, as .npy")
    _add_model_flags(en)
    en.add_argument("--input", required=True, help="text file, one sentence per line")
    en.add_argument("--output", required=True, help="output .npy path")
    _add_precision_flag(en)
    en.set_defaults(fn=cmd_encode)

    ex = sub.add_parser("export", help="a TF Serving SavedModel (strings in, embeddings out) at OUTPUT/<version>")
    ex.add_argument("--model", default="default", help=MODEL_HELP)
    ex.add_argument("--pooler", default=None, help="as for evaluate (default: the model's own)")
    ex.add_argument("--max-len", type=int, default=None, help="tokenizer truncation (default: the model's, else 32)")
    ex.add_argument("--output", required=True,
                    help="export base directory (TF Serving's --model_base_path), e.g. saved_models/NAME")
    ex.add_argument("--version", type=int, default=None,
                    help="version to write (default: 1 + the largest existing); never overwrites")
    ex.add_argument("--format", default="saved_model", choices=["saved_model", "sentence-transformers"],
                    help="saved_model (TF Serving, default) or sentence-transformers (a Hugging Face BERT directory "
                         "with its pooling modules, for SentenceTransformer(DIR) and transformers)")
    ex.add_argument("--overwrite", action="store_true", help="sentence-transformers: replace a non-empty OUTPUT")
    ex.add_argument("--tokens-only", action="store_true",
                    help="token ids in only (encode_tokens, also as serving_default): no TF-Text ops in the graph")
    _add_precision_flag(ex)
    ex.set_defaults(fn=cmd_export)

    bi = sub.add_parser("build-index", help="encode a corpus once and save its search index next to it")
    _add_model_flags(bi)
    bi.add_argument("--corpus", required=True, help="text file, one sentence per line")
    bi.add_argument("--output", default=None, help="index folder (default: CORPUS.index)")
    bi.add_argument("--approximate", action="store_true",
                    help="also build a faiss HNSW index for large corpora (pip install 'tf_esimcse[search]')")
    bi.set_defaults(fn=cmd_build_index)

    se = sub.add_parser("search", help="the corpus sentences nearest each query, with cosine scores")
    _add_model_flags(se)
    se.add_argument("--corpus", required=True, help="text file, one sentence per line (its CORPUS.index is used "
                                                    "when present)")
    se.add_argument("--query", action="append", default=[], help="a query sentence (repeat for several)")
    se.add_argument("--top-k", type=int, default=10)
    se.add_argument("--index", default=None, help="index folder (default: CORPUS.index if it exists, else encode "
                                                  "the corpus now)")
    se.set_defaults(fn=cmd_search)

    pr = sub.add_parser("plot-run", help="loss, learning rate, STS-B dev and alignment/uniformity of a training "
                                          "run (or a --seeds folder) as one PNG")
    pr.add_argument("run_dir", help="a recipe's --output-dir")
    pr.add_argument("--output", default=None, help="PNG path (default: RUN_DIR/run.png)")
    pr.set_defaults(fn=cmd_plot_run)

    from tf_esimcse.data.download import add_download_parser

    add_download_parser(sub)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_esimcse.errors import TfEsimcseError

    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "model", None) is not None:  # every subcommand: a run folder -> its model/
            args.model = resolve_model_path(args.model)
        return args.fn(args)
    except (TfEsimcseError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
