"""Search at scale per precision and size: index bytes, queries/s, recall@10 against exact float32
search on the full vectors (tf_esimcse.search, issue 29).

    .venv/bin/python benchmarks/search_throughput.py                       # synthetic, defaults below
    .venv/bin/python benchmarks/search_throughput.py --embeddings emb.npy  # your own vectors
    .venv/bin/python benchmarks/search_throughput.py --search exact,faiss  # faiss HNSW rows too

    # real embeddings: 20,500 SentEval sentences, the last 500 the queries (docs/results/perf_search_minilm)
    .venv/bin/python benchmarks/search_throughput.py --write-sentences s.txt --count 20500
    tf-esimcse encode --model default --input s.txt --output s.npy --batch-size 128
    .venv/bin/python benchmarks/search_throughput.py --embeddings s.npy --queries 500 --repeats 2

Vectors: by default 120,000 synthetic 384-dimensional vectors with neighbours (200 topics, each
with sub-topics of about 20 points: topic ~ N(0, I), sub-topic = topic + 0.7 N(0, I), point =
sub-topic + 0.5 N(0, I)), and --queries fresh points of random sub-topics. Or `--embeddings F.npy`:
rows of a file written by `tf-esimcse encode` (the last --queries rows are the queries). The sentence
strings play no part in search, so none are made. Synthetic vectors are not sentence embeddings: a
model's embeddings have other neighbourhoods, and so other recalls.

Rows: every precision (float32, int8, binary with each --rescore candidate count) at every --dims
size (first d dimensions, normalised). Per row: the bytes every query reads (`searched`: float32
4 d, int8 d + ranges, binary d / 8 bytes a vector; with faiss, its index file: graph and codes), the
vector files on disk (binary keeps the float vectors for rescoring; with faiss, our arrays too), queries/s over all queries in batches of --query-batch (median of
--repeats passes after one warm-up), and recall@10: the share of the exact float32 full-size top 10
found in the row's top 10.
"""
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py; also puts the repository on sys.path)

from tf_esimcse.search import SearchIndex, exact_top_k  # noqa: E402


def parse_args(argv=None):
    parser = common.make_parser(__doc__)
    parser.add_argument("--count", type=int, default=120_000, help="synthetic corpus vectors (default: %(default)s)")
    parser.add_argument("--model-dim", type=int, default=384, help="synthetic vector size (default: %(default)s)")
    parser.add_argument("--embeddings", default=None, help="an .npy of real embeddings instead of synthetic ones")
    parser.add_argument("--queries", type=int, default=1000, help="default: %(default)s")
    parser.add_argument("--query-batch", type=int, default=100, help="queries per search call (default: %(default)s)")
    parser.add_argument("--dims", default="384,256,128,64,32", help="default: %(default)s")
    parser.add_argument("--precisions", default="float32,int8,binary", help="default: %(default)s")
    parser.add_argument("--rescore", default="0,40,100", help="binary: candidates re-ranked per query, each a row "
                                                             "(default: %(default)s; 100 = the default for top 10)")
    parser.add_argument("--search", default="exact", help="exact, faiss (HNSW; slow to build) or exact,faiss "
                                                          "(default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per row (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-sentences", default=None, metavar="TXT",
                        help="only write --count real sentences (real_sentences) to TXT, one a line, and stop")
    parser.add_argument("--data-dir", default=common.default_data_dir(), help="for --write-sentences")
    return parser.parse_args(argv)


def real_sentences(data_dir, count, seed=0):
    """`count` distinct sentences of SentEval's STS12-16, STS-B, SICK and SNLI dev/test files, shuffled
    with `seed` (the corpus of docs/results/perf_search_minilm; encode them with `tf-esimcse encode`)."""
    import glob
    import random

    root, found = os.path.join(data_dir, "senteval"), []
    for f in glob.glob(os.path.join(root, "STS", "STS1*-en-test", "STS.input.*.txt")):
        for line in open(f, encoding="utf-8", errors="replace"):
            found += [x.strip() for x in line.rstrip("\n").split("\t")[:2]]
    for f in glob.glob(os.path.join(root, "STS", "STSBenchmark", "sts-*.csv")):
        for line in open(f, encoding="utf-8"):
            found += [x.strip() for x in line.rstrip("\n").split("\t")[5:7]]
    for f in glob.glob(os.path.join(root, "SICK", "SICK_*.txt")):
        for i, line in enumerate(open(f, encoding="utf-8")):
            found += [x.strip() for x in line.split("\t")[1:3]] if i else []
    for f in glob.glob(os.path.join(root, "SNLI", "s[12].*")):
        found += [line.strip() for line in open(f, encoding="utf-8")]
    unique = sorted(set(x for x in found if x))
    random.Random(seed).shuffle(unique)
    return unique[:count]


def synthetic(count, dim, queries, seed):
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(200, dim))
    n_sub = max(1, count // 20)
    subtopics = topics[rng.integers(0, 200, n_sub)] + 0.7 * rng.normal(size=(n_sub, dim))
    points = subtopics[rng.integers(0, n_sub, count + queries)] + 0.5 * rng.normal(size=(count + queries, dim))
    points = points.astype(np.float32)
    return points[:count], points[count:]


def vector_bytes(index):
    """(bytes a query reads, bytes of the vector files on disk): a faiss index's file is what its
    queries read; the exact search reads `index.searched_bytes`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = index.save(pathlib.Path(tmp) / "i")
        sizes = {f.name: f.stat().st_size for f in path.iterdir() if f.suffix in (".npy", ".index")}
    sizes.pop("probe.npy", None)
    return sizes.get("faiss.index", index.searched_bytes), sum(sizes.values())


def timed_search(index, queries, batch, repeats, **kwargs):
    def run():
        hits = []
        for start in range(0, len(queries), batch):
            hits += index.search(queries[start:start + batch], top_k=10, **kwargs)
        return hits

    hits = run()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return hits, len(queries) / statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    if args.write_sentences:
        sentences = real_sentences(args.data_dir, args.count)
        pathlib.Path(args.write_sentences).write_text("\n".join(sentences) + "\n", encoding="utf-8")
        print(f"wrote {len(sentences)} sentences to {args.write_sentences}")
        return
    common.print_host_info()
    if args.embeddings:
        vectors = np.load(args.embeddings).astype(np.float32)
        corpus, queries = vectors[:-args.queries], vectors[-args.queries:]
        source = f"{args.embeddings}"
    else:
        corpus, queries = synthetic(args.count, args.model_dim, args.queries, args.seed)
        source = "synthetic (see the docstring)"
    print(f"vectors:     {corpus.shape[0]} x {corpus.shape[1]} corpus, {len(queries)} queries, {source}")
    sentences = [str(i) for i in range(corpus.shape[0])]
    unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_top_k(q_unit, unit, 10)[0]  # exact float32, full size
    rows = []
    for approximate in [name == "faiss" for name in args.search.split(",")]:
        for dim in [int(d) for d in args.dims.split(",")]:
            for precision in args.precisions.split(","):
                t0 = time.perf_counter()
                index = SearchIndex(sentences, corpus, precision=precision, dim=dim, approximate=approximate)
                build_s = time.perf_counter() - t0
                searched, disk = vector_bytes(index)
                rescores = [int(r) for r in args.rescore.split(",")] if precision == "binary" else [None]
                for rescore in rescores:
                    kwargs = {} if rescore is None else {"rescore": rescore}
                    hits, qps = timed_search(index, queries, args.query_batch, args.repeats, **kwargs)
                    found = [[int(s) for s, _ in row] for row in hits]
                    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
                    name = precision + ("" if rescore is None else f" (rescore {rescore})")
                    rows.append(["faiss HNSW" if approximate else "exact", dim, name,
                                 f"{searched / 2**20:.1f}", f"{disk / 2**20:.1f}", f"{qps:.0f}",
                                 f"{recall:.3f}", f"{build_s:.1f}"])
                    print(" | ".join(map(str, rows[-1])), flush=True)
    common.print_table(["search", "dim", "precision", "searched MiB", "on disk MiB", "queries/s", "recall@10",
                        "build s"], rows, title=f"load average after: {common.load_average()}")


if __name__ == "__main__":
    main()
