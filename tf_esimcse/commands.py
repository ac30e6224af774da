"""What each `tf-esimcse` subcommand does, for the arguments `tf_esimcse.cli` parsed.

`tf_esimcse.cli` holds the parser and imports this module only once a command runs (the modules
below are not needed for `--help` or a flag error). Each `cmd_NAME(args)` returns the exit code;
errors are raised for `tf_esimcse.cli.main` to print in one line.
"""
import functools
import json
import os
import pathlib

import numpy as np

from tf_esimcse import plots
from tf_esimcse.atomic_files import write_json_atomic
from tf_esimcse.data.corpus import read_text
from tf_esimcse.data.download import download
from tf_esimcse.data.senteval import read_sts_file, resolve_senteval_dir
from tf_esimcse.environment import environment_info
from tf_esimcse.errors import DataError
from tf_esimcse.evaluation.sts import (encoder_length_split, evaluate_sts, format_aggregations, format_length_split,
                                       format_table, format_table_rows, pair_metrics, sts_year_aggregations)
from tf_esimcse.export import describe_signatures, export_for_serving, resolve_version
from tf_esimcse.layers.pooler import check_pooler_type
from tf_esimcse.litert_export import export_litert
from tf_esimcse.model_card import write_model_card
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.onnx_export import export_onnx
from tf_esimcse.run_folder import MODEL_DIR
from tf_esimcse.search import SearchError, SearchIndex, read_corpus
from tf_esimcse.st_export import export_sentence_transformers
from tf_esimcse.truncation import SharedEncoding, check_dim, parse_dims


def _load_encoder(args):
    if args.pooler is not None:
        check_pooler_type(args.pooler)
    encoder = SentenceEncoder.from_pretrained(args.model, pooler_type=args.pooler, inference_length=args.max_len,
                                              first_layer=getattr(args, "first_layer", None))
    if getattr(args, "dim", None) is not None:  # --dim: the size encode, the index and the exports use
        encoder.truncate_dim = check_dim(args.dim, encoder.embedding_dim, name="--dim")
    return encoder


def _run_start(args):
    """`results["start"]` of the training run whose `model/` is being evaluated (with its
    7-task row), when the model is evaluated with the pooler it was saved with; else None."""
    model = pathlib.Path(str(args.model))
    if model.name != MODEL_DIR or args.pooler is not None or args.max_len is not None:
        return None
    try:
        start = json.loads((model.parent / "results.json").read_text()).get("start")
    except (OSError, ValueError):
        return None
    return start if isinstance(start, dict) and isinstance(start.get("test"), dict) else None


def cmd_evaluate(args):
    # Fail on missing or malformed data before loading a model.
    files = {str(f): read_sts_file(f) for f in args.sts_file}
    use_senteval = not args.only_sts_files
    if use_senteval:
        resolve_senteval_dir(args.data_dir)
    elif not files:
        raise ValueError("--only-sts-files needs at least one --sts-file")
    if args.dims is not None:
        return _evaluate_dims(args, files, use_senteval)
    encoder = _load_encoder(args)

    def encode(sentences):
        return encoder.encode(sentences, batch_size=args.batch_size, verbose=0)

    results = {"pooler": encoder.pooler_type, "model": str(args.model)}
    if encoder.truncate_dim is not None:  # --dim, or the model's own truncate_dim
        results["dim"] = encoder.truncate_dim
        print(f"embeddings: the first {encoder.truncate_dim} of {encoder.embedding_dim} dimensions, normalised again")
    start = _run_start(args) if encoder.truncate_dim is None else None  # the start's row is full-size
    if use_senteval:
        results.update(evaluate_sts(encode, args.data_dir))
        if start is not None:  # a training run's model: its untrained start beside it
            results["start"] = start
            print(format_table_rows([("start (untrained)", start["test"]), ("this model", results)]))
        else:
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
        if "length_split" in results:
            path = plots.plot_length_split([(str(args.model), results)], args.plot)
        elif "avg" in results:
            path = plots.plot_sts_table([(str(args.model), results)], args.plot)
        else:
            raise ValueError("--plot draws the SentEval table or (with --length-split) the length split")
        print(f"wrote {path}")
    return 0


def _evaluate_dims(args, files, use_senteval):
    """`evaluate --dims`: the STS table at every size, each sentence encoded once at full size
    and truncated per size (`tf_esimcse.truncation.SharedEncoding`)."""
    dims = parse_dims(args.dims)
    if args.dim is not None:
        raise ValueError("give --dim or --dims, not both")
    for flag, on in (("--length-split", args.length_split), ("--aggregations", args.aggregations),
                     ("--plot", args.plot)):
        if on:
            raise ValueError(f"{flag} is not available with --dims; run it with --dim D for one size")
    encoder = _load_encoder(args)
    dims = tuple(check_dim(d, encoder.embedding_dim, name="--dims") for d in dims)
    shared = SharedEncoding(
        lambda sentences: encoder.encode(sentences, batch_size=args.batch_size, verbose=0, dim=encoder.embedding_dim))
    results = {"pooler": encoder.pooler_type, "model": str(args.model), "dims": {}}
    for i, dim in enumerate(dims):
        scores = {"dim": dim}
        if use_senteval:
            scores.update(evaluate_sts(shared.encode_fn(dim), args.data_dir, progress=i == 0))
        if files:
            scores["sts_files"] = {}
            for name, pairs in files.items():
                metrics = pair_metrics(shared.encode_fn(dim), pairs)
                scores["sts_files"][name] = dict(metrics, pairs=len(pairs.scores))
        results["dims"][str(dim)] = scores
    if use_senteval:
        print(format_table_rows([(f"{dim} dims", results["dims"][str(dim)]) for dim in dims]))
        for dim in dims:
            r = results["dims"][str(dim)]
            print(f"{dim:>5} dims: STS-B dev {r['stsb_dev']:.2f}  alignment {r['alignment']:.4f}  "
                  f"uniformity {r['uniformity']:.4f}")
    for name in files:
        for dim in dims:
            m = results["dims"][str(dim)]["sts_files"][name]
            print(f"{name} at {dim} dims: Spearman {m['spearman']:.2f} ({m['pairs']} pairs)")
    print(f"(each of the {shared.encoded} sentences encoded once at {encoder.embedding_dim} dims, then truncated "
          "and normalised per size)")
    if args.output:
        write_json_atomic(args.output, results)
        print(f"wrote {args.output}")
    return 0


def cmd_plot_run(args):
    path = plots.plot_run(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0


def cmd_encode(args):
    out = pathlib.Path(args.output)
    if out.is_dir():
        raise DataError("--output is a directory; give a file name such as embeddings.npy", path=out)
    text = read_text(args.input)
    sentences = text.splitlines()
    if not sentences:
        raise DataError("no lines to encode", path=args.input)
    encoder = _load_encoder(args)
    embeddings = encoder.encode(sentences, batch_size=args.batch_size, precision=args.precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npy")
    np.save(tmp, embeddings)
    os.replace(tmp, out)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out}")
    return 0


def _export_portable(args):
    """`--format onnx|litert`: token ids in, embeddings out, the tokenizer files beside."""
    if args.quantize is not None and args.format != "litert":
        raise ValueError(f"--quantize applies to --format litert, not {args.format}")
    if args.precision != "float32":
        raise ValueError(f"--precision {args.precision} applies to the SavedModel; --format {args.format} is float32")
    out = pathlib.Path(args.output).expanduser()
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:  # before the model loads
        raise FileExistsError(f"{out.resolve()}: directory exists and is not empty; pass --overwrite to replace it")
    encoder = _load_encoder(args)
    if args.format == "onnx":
        path = export_onnx(encoder, out, overwrite=args.overwrite)
        print(f"wrote model.onnx and its tokenizer to {path}")
        print(f"run: onnxruntime.InferenceSession({str(path / 'model.onnx')!r}) with input_ids, attention_mask "
              f"(int64) from tokenizers.Tokenizer.from_file({str(path / 'tokenizer.json')!r}) -> embeddings")
    else:
        path = export_litert(encoder, out, overwrite=args.overwrite, quantize=args.quantize)
        files = "model.tflite" + (" and model_int8.tflite" if args.quantize else "")
        print(f"wrote {files} and the tokenizer to {path}")
        print(f"run: ai_edge_litert.interpreter.Interpreter(model_path={str(path / 'model.tflite')!r})"
              ".get_signature_runner()(input_ids=..., attention_mask=...) (int32) -> embeddings")
    return 0


def _writes_model_card(export_fn):
    """`cmd_export` for every `--format`: after the export, its model card (`README.md`, from the
    exported model's results) is written into what was written: the SavedModel's version folder,
    else the `--output` folder."""

    @functools.wraps(export_fn)
    def cmd(args):
        base = pathlib.Path(args.output).expanduser().resolve()
        version = resolve_version(base, args.version) if args.format == "saved_model" else None
        code = export_fn(args)
        target = base / str(version) if version is not None else base
        if code == 0 and target.is_dir():
            export = {"format": args.format, "command": environment_info()["command"]}
            path = write_model_card(target, model=args.model, export=export)
            print(f"wrote the model card {path}")
        return code

    return cmd


def cmd_card(args):
    """`tf-esimcse card --model DIR`: (re)write DIR/README.md from the results recorded with it."""
    path = write_model_card(pathlib.Path(str(args.model)).expanduser())
    print(f"wrote {path}")
    return 0


@_writes_model_card
def cmd_export(args):
    if args.format in ("onnx", "litert"):
        return _export_portable(args)
    if args.format == "sentence-transformers":
        encoder = _load_encoder(args)
        path = export_sentence_transformers(encoder, pathlib.Path(args.output).expanduser(), overwrite=args.overwrite)
        family = "RoBERTa" if json.loads((path / "config.json").read_text())["model_type"] == "roberta" else "BERT"
        print(f"wrote a sentence-transformers / Hugging Face {family} directory to {path}")
        print(f"load: SentenceTransformer({str(path)!r}) or transformers.AutoModel.from_pretrained({str(path)!r})")
        return 0
    base = pathlib.Path(args.output).expanduser().resolve()
    resolve_version(base, args.version)  # a version conflict fails before the model loads
    encoder = _load_encoder(args)
    path = export_for_serving(encoder, base, version=args.version, text_ops=not args.tokens_only,
                              precision=args.precision)  # at the encoder's size (its truncate_dim or --dim)
    print(f"wrote SavedModel version {path.name} to {path}")
    print(describe_signatures(path))
    print(f"serve: tensorflow_model_server --model_base_path={base} --model_name={base.name} --rest_api_port=8501")
    return 0


def _default_index_path(corpus):
    return pathlib.Path(str(corpus) + ".index")


def cmd_build_index(args):
    sentences = read_corpus(args.corpus)
    encoder = _load_encoder(args)
    index = SearchIndex.build(encoder, sentences, batch_size=args.batch_size, model=str(args.model),
                              approximate=args.approximate, precision=args.index_precision, dim=args.dim)
    path = index.save(args.output or _default_index_path(args.corpus))
    print(f"indexed {len(sentences)} sentences ({index.dim}-dimensional, {index.precision}, "
          f"{index.searched_bytes / 2**20:.1f} MiB searched, "
          f"{'approximate (faiss HNSW)' if args.approximate else 'exact'}) in {path}")
    return 0


def cmd_search(args):
    if not args.query:
        raise SearchError("give at least one --query")
    index_path = pathlib.Path(args.index) if args.index else _default_index_path(args.corpus)
    sentences = read_corpus(args.corpus)
    if index_path.is_dir():  # refused before the model loads when it is stale or of other settings
        index = SearchIndex.load(index_path)
        index.check(index_path, model=args.model, sentences=sentences, precision=args.index_precision, dim=args.dim)
    elif args.index:
        raise SearchError(f"{index_path}: no search index here; build one with tf-esimcse build-index")
    encoder = _load_encoder(args)
    if index_path.is_dir():
        index.check_encoder(index_path, lambda s: encoder.encode(s, verbose=0))
        print(f"loaded the index of {len(index.sentences)} sentences ({index.dim}-dimensional, {index.precision}) "
              f"from {index_path}")
    else:
        index = SearchIndex.build(encoder, sentences, batch_size=args.batch_size, model=str(args.model),
                                  precision=args.index_precision or "float32", dim=args.dim)
    query_embeddings = encoder.encode(args.query, verbose=0)
    for query, hits in zip(args.query, index.search(query_embeddings, top_k=args.top_k, rescore=args.rescore)):
        print(f"\nquery: {query}")
        for rank, (sentence, score) in enumerate(hits, 1):
            print(f"{rank:3d}. {score:.4f}  {sentence}")
    return 0


def cmd_download_data(args):
    """`download-data` for parsed `args` (dest, what, force); returns the exit code (0).

    Errors raise `DownloadError` (a `TfEsimcseError`) with a one-line message.
    """
    placed = download(what=args.what, dest=args.dest, force=args.force)
    for name, path in placed.items():
        print(f"done: {name} -> {path}", flush=True)
    return 0
