"""STS evaluation as SimCSE reports it: pure functions of an `encode_fn` and the SentEval data.

Faithfulness to the official code (princeton-nlp/SimCSE; the SentEval fork in `SentEval/`),
checked in the files named:

- Similarity (`SentEval/senteval/sts.py`, `STSEval.do_prepare`; `senteval/utils.py`): cosine of
  the two sentence embeddings, `nan_to_num`-ed so a zero embedding scores 0. `cosine_scores`
  does the same, row-wise in float64.
- Metric: `scipy.stats.spearmanr(sys_scores, gold)` (`STSEval.run`), reported x100 with two
  decimals (`evaluation.py`).
- STS12-16, "all" setting (`STSEval.run`): per-subset system and gold scores are concatenated
  over every subset of the year (`all_sys_scores.extend(...)`) and ONE Spearman is taken over the
  concatenation (`results['all']['spearman']['all']`); `evaluation.py` prints that value, not
  the mean or the size-weighted mean of per-subset correlations.
- STS-B and SICK-R: the fork evaluates them with the same unsupervised `STSEval.run`
  (`STSBenchmarkEval`, `SICKRelatednessEval` subclass `STSEval`; no regressor is trained), and
  `evaluation.py` reports `results[task]['test']['spearman'].correlation`: Spearman of cosine vs
  gold on the test split. Model selection during training uses STS-B dev the same way
  (`simcse/trainers.py`, `results['STSBenchmark']['dev']['spearman'][0]`).
- Avg. (`evaluation.py`): the mean of the seven printed ("%.2f") scores; `format_table` averages
  the rounded values the same way, so its Avg. can differ from `results["avg"]` (the unrounded
  mean) in the second decimal.
- Sentences reach the encoder whitespace-normalised (see `tf_esimcse.data.senteval`). The fork
  sorts pairs by length and encodes in batches of 128; neither changes any score, and we encode
  each task's unique sentences once.

Alignment and uniformity follow Wang & Isola (2020) on L2-normalised embeddings, as used in the
SimCSE paper (Section 5): alignment over STS-B dev pairs with gold >= 4.0 (the positive pairs),
uniformity over all (deduplicated) STS-B dev sentences.
"""
import numpy as np
import scipy.special
import scipy.stats

from tf_esimcse.data import senteval
from tf_esimcse.progress import TaskProgress

TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
RESULT_KEYS = {
    "STS12": "sts12",
    "STS13": "sts13",
    "STS14": "sts14",
    "STS15": "sts15",
    "STS16": "sts16",
    "STSBenchmark": "stsb_test",
    "SICKRelatedness": "sickr_test",
}
TABLE_COLUMNS = (
    ("STS12", "sts12"),
    ("STS13", "sts13"),
    ("STS14", "sts14"),
    ("STS15", "sts15"),
    ("STS16", "sts16"),
    ("STSB", "stsb_test"),
    ("SICKR", "sickr_test"),
)
POSITIVE_MIN_SCORE = 4.0
# How the progress lines name the tasks (the table's columns, spelled out).
DISPLAY_NAMES = {
    "STS12": "STS12", "STS13": "STS13", "STS14": "STS14", "STS15": "STS15", "STS16": "STS16",
    "STSBenchmark": "STS-B test", "SICKRelatedness": "SICK-R test",
}


def spearman(predicted, gold):
    """Spearman's rank correlation x100, via `scipy.stats.spearmanr`.

    Args:
        predicted: array-like of shape `(n,)`. System scores (e.g. cosine similarities).
        gold: array-like of shape `(n,)`. Gold scores.

    Returns:
        A Python float in [-100, 100]; NaN if either input is constant.
    """
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    gold = np.asarray(gold, dtype=np.float64).reshape(-1)
    if predicted.shape != gold.shape:
        raise ValueError(f"predicted and gold differ in length: {predicted.shape[0]} vs {gold.shape[0]}")
    if predicted.shape[0] < 2:
        return float("nan")
    return float(scipy.stats.spearmanr(predicted, gold).statistic * 100.0)


def _as_matrix(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape [n, d], got {x.shape}")
    return x


def _l2_normalize(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine_scores(emb1, emb2):
    """Row-wise cosine similarity of two embedding matrices.

    Works whether or not the rows are normalised; a zero row scores 0 (SentEval `nan_to_num`s).

    Args:
        emb1: array-like of shape `[n, d]`.
        emb2: array-like of shape `[n, d]`.

    Returns:
        `np.ndarray` of float64, shape `(n,)`.
    """
    emb1 = np.nan_to_num(_as_matrix(emb1, "emb1"))
    emb2 = np.nan_to_num(_as_matrix(emb2, "emb2"))
    if emb1.shape != emb2.shape:
        raise ValueError(f"emb1 and emb2 must have the same shape, got {emb1.shape} and {emb2.shape}")
    dots = np.einsum("ij,ij->i", emb1, emb2)
    norms = np.linalg.norm(emb1, axis=1) * np.linalg.norm(emb2, axis=1)
    out = np.zeros_like(dots)
    np.divide(dots, norms, out=out, where=norms > 0)
    return out


def alignment(z1, z2, alpha=2):
    """Alignment loss of Wang & Isola (2020): mean of `||z1_i - z2_i||_2 ** alpha`.

    Both inputs are L2-normalised row-wise first; lower is better (0 = positives coincide).

    Args:
        z1: array-like of shape `[n, d]`. Embeddings of the first sentence of positive pairs.
        z2: array-like of shape `[n, d]`. Embeddings of the second sentence.
        alpha: float. Exponent. Defaults to 2.

    Returns:
        A Python float in [0, 2 ** alpha].
    """
    z1 = _l2_normalize(_as_matrix(z1, "z1"))
    z2 = _l2_normalize(_as_matrix(z2, "z2"))
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {z1.shape} and {z2.shape}")
    if z1.shape[0] == 0:
        raise ValueError("alignment needs at least one pair")
    return float(np.mean(np.linalg.norm(z1 - z2, axis=1) ** alpha))


def uniformity(z, t=2, block_size=1024):
    """Uniformity loss of Wang & Isola (2020): `log mean_{i<j} exp(-t ||z_i - z_j||^2)`.

    Rows are L2-normalised first; lower is better (more uniform on the sphere). Computed in
    row blocks with a log-sum-exp, so memory is `O(block_size * n)` and large `t` cannot underflow.

    Args:
        z: array-like of shape `[n, d]`, `n >= 2`.
        t: float. Temperature. Defaults to 2.
        block_size: int. Rows per block. Defaults to 1024.

    Returns:
        A Python float in [-4t, 0].
    """
    z = _l2_normalize(_as_matrix(z, "z"))
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings, got {n}")
    sq = np.sum(z * z, axis=1)
    partial = []
    for start in range(0, n - 1, block_size):
        stop = min(start + block_size, n - 1)
        rows = z[start:stop]
        cols = z[start + 1 :]
        d2 = sq[start:stop, None] + sq[None, start + 1 :] - 2.0 * rows @ cols.T
        np.maximum(d2, 0.0, out=d2)
        # Row start+r pairs with columns j > start+r, i.e. column index c >= r in `cols`.
        keep = np.arange(cols.shape[0])[None, :] >= np.arange(stop - start)[:, None]
        partial.append(scipy.special.logsumexp(-t * d2[keep]))
    num_pairs = n * (n - 1) / 2.0
    return float(scipy.special.logsumexp(partial) - np.log(num_pairs))


class _Encoded:
    """Embeddings of a set of sentences, each unique sentence encoded once."""

    def __init__(self, encode_fn, sentences):
        self.sentences = list(dict.fromkeys(sentences))
        self.index = {s: i for i, s in enumerate(self.sentences)}
        emb = np.asarray(encode_fn(self.sentences))
        if emb.ndim != 2 or emb.shape[0] != len(self.sentences):
            raise ValueError(
                f"encode_fn returned shape {emb.shape} for {len(self.sentences)} sentences; "
                "expected [num_sentences, dim]"
            )
        self.embeddings = emb

    def lookup(self, sentences):
        return self.embeddings[np.fromiter((self.index[s] for s in sentences), np.int64, len(sentences))]

    def cosines(self, pairs):
        return cosine_scores(self.lookup(pairs.sentences1), self.lookup(pairs.sentences2))


def _all_sentences(*pairs_list):
    for pairs in pairs_list:
        yield from pairs.sentences1
        yield from pairs.sentences2


def pair_metrics(encode_fn, pairs, alignment_uniformity=True):
    """Spearman of cosine vs gold on one set of pairs, plus alignment and uniformity.

    This is what SimCSE monitors on STS-B dev during training; `STSEvaluationCallback` calls it.

    Args:
        encode_fn: callable. Maps a list of str to an array `[n, d]`.
        pairs: `STSPairs`.
        alignment_uniformity: bool. Also compute "alignment" (pairs with gold >= 4.0) and
            "uniformity" (all unique sentences). Defaults to True.

    Returns:
        A dict with "spearman" and, if requested, "alignment" and "uniformity" (Python floats).
    """
    encoded = _Encoded(encode_fn, _all_sentences(pairs))
    out = {"spearman": spearman(encoded.cosines(pairs), pairs.scores)}
    if alignment_uniformity:
        positive = np.asarray(pairs.scores) >= POSITIVE_MIN_SCORE
        pos1 = [s for s, keep in zip(pairs.sentences1, positive) if keep]
        pos2 = [s for s, keep in zip(pairs.sentences2, positive) if keep]
        out["alignment"] = alignment(encoded.lookup(pos1), encoded.lookup(pos2)) if pos1 else float("nan")
        out["uniformity"] = uniformity(encoded.embeddings)
    return out


def _concat(pairs_list):
    return senteval.STSPairs(
        [s for p in pairs_list for s in p.sentences1],
        [s for p in pairs_list for s in p.sentences2],
        np.concatenate([np.asarray(p.scores, dtype=np.float64) for p in pairs_list]),
    )


def evaluate_sts(encode_fn, data_dir, tasks=TASKS, include_dev=True, alignment_uniformity=True, progress=True):
    """Evaluate an embedder on the SimCSE STS suite (SentEval's unsupervised STS protocol).

    STS12-16 use the "all" setting (one Spearman over all subsets of a year concatenated);
    STS-B and SICK-R use Spearman of cosine vs gold on their test split.

    Args:
        encode_fn: callable. Maps a list of str to an array `[n, d]`; any embedder works.
        data_dir: str or path-like. See `tf_esimcse.data.senteval.resolve_senteval_dir`.
        tasks: sequence of str from `TASKS`. Defaults to all seven.
        include_dev: bool. Also report "stsb_dev" (the model-selection metric). Defaults to True.
        alignment_uniformity: bool. Also report "alignment" and "uniformity" on STS-B dev.
            Defaults to True.
        progress: bool. Say which task runs, on `sys.stdout` (`tf_esimcse.progress.TaskProgress`):
            in a log file a title line, then one line per task as it finishes
            (`  STS12         3108 pairs  Spearman  71.23  (14s)`), STS-B dev last; on a terminal
            one line redrawn in place. Defaults to True; `False` prints nothing. No number
            depends on it.

    Returns:
        A flat dict of Python floats (Spearman x100): "sts12" ... "sts16", "stsb_test",
        "sickr_test" for the requested tasks, "avg" (mean of those seven, only when all seven
        were run), "stsb_dev" if `include_dev`, "alignment" and "uniformity" if
        `alignment_uniformity`.

    Examples:
    ```python
    results = evaluate_sts(lambda s: encoder.encode(s, batch_size=128), "data")
    print(format_table(results))
    ```
    """
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"Unknown STS task(s) {unknown}; expected names from {TASKS}")
    with_dev = include_dev or alignment_uniformity
    count = sum(t in tasks for t in TASKS) + with_dev
    shown = TaskProgress(count, enabled=progress, noun="STS sets", title=f"STS evaluation ({count} sets):")
    results = {}
    with shown:
        for task in TASKS:  # fixed order: stable key order whatever order `tasks` has
            if task not in tasks:
                continue
            shown.start(DISPLAY_NAMES[task])
            if task in senteval.STS_YEARS:
                pairs = _concat(list(senteval.read_sts_year(data_dir, task).values()))
            elif task == "STSBenchmark":
                pairs = senteval.read_stsb(data_dir, "test")
            else:
                pairs = senteval.read_sick(data_dir, "test")
            results[RESULT_KEYS[task]] = pair_metrics(encode_fn, pairs, alignment_uniformity=False)["spearman"]
            shown.finish(DISPLAY_NAMES[task], len(pairs.scores), results[RESULT_KEYS[task]])
        if all(t in tasks for t in TASKS):
            results["avg"] = float(np.mean([results[RESULT_KEYS[t]] for t in TASKS]))
        if with_dev:
            shown.start("STS-B dev")
            dev_pairs = senteval.read_stsb(data_dir, "dev")
            dev = pair_metrics(encode_fn, dev_pairs, alignment_uniformity)
            shown.finish("STS-B dev", len(dev_pairs.scores), dev["spearman"])
            if include_dev:
                results["stsb_dev"] = dev["spearman"]
            if alignment_uniformity:
                results["alignment"] = dev["alignment"]
                results["uniformity"] = dev["uniformity"]
    return results


def format_table(results):
    """Format results as the 7-task table SimCSE's `evaluation.py` prints (PrettyTable style).

    Args:
        results: dict. As returned by `evaluate_sts`; missing tasks are shown as "-".

    Returns:
        A str: a bordered table with columns STS12 STS13 STS14 STS15 STS16 STSB SICKR Avg.,
        scores with 2 decimals. Avg. is the mean of the seven rounded scores (as SimCSE
        computes it), shown only when all seven are present.
    """
    headers, cells, rounded = [], [], []
    for header, key in TABLE_COLUMNS:
        headers.append(header)
        if key in results and results[key] is not None:
            cells.append(f"{results[key]:.2f}")
            rounded.append(float(cells[-1]))
        else:
            cells.append("-")
    headers.append("Avg.")
    cells.append(f"{sum(rounded) / len(rounded):.2f}" if len(rounded) == len(TABLE_COLUMNS) else "-")
    widths = [max(len(h), len(c)) + 2 for h, c in zip(headers, cells)]
    border = "+" + "+".join("-" * w for w in widths) + "+"

    def row(values):
        return "|" + "|".join(v.center(w) for v, w in zip(values, widths)) + "|"

    return "\n".join([border, row(headers), border, row(cells), border])


def format_table_rows(rows):
    """The 7-task table with one labelled row per `(label, scores)` (e.g. the start, then the
    trained model), its cells as `format_table` writes them."""
    tables = [format_table(scores).splitlines() for _, scores in rows]
    cells = [[c.strip() for c in table[3].strip("|").split("|")] for table in tables]
    headers = [h.strip() for h in tables[0][1].strip("|").split("|")]
    widths = [max(len(h), *(len(r[i]) for r in cells)) + 2 for i, h in enumerate(headers)]
    label_width = max(len(label) for label, _ in rows) + 2
    border = "+" + "-" * label_width + "+" + "+".join("-" * w for w in widths) + "+"

    def line(label, values):
        return "|" + f" {label}".ljust(label_width) + "|" + "|".join(v.center(w) for v, w in zip(values, widths)) + "|"

    return "\n".join([border, line("", headers), border, *(line(label, c) for (label, _), c in zip(rows, cells)),
                      border])


def length_split_spearman(encode_fn, count_tokens_fn, pairs, threshold=3):
    """Spearman on pairs split by the length difference of their sentences (ESimCSE v1, Table 1).

    Pairs with `|count_tokens_fn(s1) - count_tokens_fn(s2)| <= threshold` form the "short_diff"
    group, the others the "long_diff" group. A length-biased model (e.g. unsup-SimCSE) scores
    markedly lower on the "long_diff" group.

    Args:
        encode_fn: callable. Maps a list of str to an array `[n, d]`.
        count_tokens_fn: callable. Maps one str to its length (words, or sub-word tokens).
        pairs: `STSPairs`.
        threshold: int. Largest length difference counted as "short". Defaults to 3.

    Returns:
        A dict: "short_diff" and "long_diff" (Spearman x100, NaN for a group of fewer than 2
        pairs), "n_short" and "n_long" (ints).
    """
    len1 = np.array([count_tokens_fn(s) for s in pairs.sentences1], dtype=np.int64)
    len2 = np.array([count_tokens_fn(s) for s in pairs.sentences2], dtype=np.int64)
    short = np.abs(len1 - len2) <= threshold
    cos = _Encoded(encode_fn, _all_sentences(pairs)).cosines(pairs)
    gold = np.asarray(pairs.scores, dtype=np.float64)
    return {
        "short_diff": spearman(cos[short], gold[short]),
        "long_diff": spearman(cos[~short], gold[~short]),
        "n_short": int(short.sum()),
        "n_long": int((~short).sum()),
    }


def encoder_length_split(encoder, encode_fn, data_dir, threshold=3, progress=True):
    """`length_split_spearman` on STS-B test for a `SentenceEncoder`, lengths in the encoder's
    own word-piece tokens before any max_len truncation.

    Args:
        progress: bool. Say what runs, as `evaluate_sts` does (one line when done in a log).
            Defaults to True.

    Returns:
        The split's dict plus `"threshold"` and `"unit"`, as stored in `results.json`.
    """
    tokenizer = encoder.inference_preprocessor
    counts = {}

    def count_tokens(sentence):
        if sentence not in counts:
            counts[sentence] = int(tokenizer.tokenize([sentence]).row_lengths()[0])
        return counts[sentence]

    pairs = senteval.read_stsb(data_dir, "test")
    with TaskProgress(1, enabled=progress, noun="length split") as shown:
        shown.start("STS-B test by length difference")
        split = length_split_spearman(encode_fn, count_tokens, pairs, threshold=threshold)
        shown.finish("STS-B test by length difference", len(pairs.scores))
    return dict(split, threshold=int(threshold), unit="wordpiece tokens")


def format_length_split(split):
    """One line for the console: both groups' Spearman and sizes."""
    t = split["threshold"]
    return (f"STS-B test by length difference (tokens): <= {t}: {split['short_diff']:.2f} (n={split['n_short']})"
            f"   > {t}: {split['long_diff']:.2f} (n={split['n_long']})")


def sts_year_aggregations(encode_fn, data_dir, years=senteval.STS_YEARS, progress=True):
    """STS12-16 in SentEval's three aggregations side by side (papers quote different ones):
    "all" (one Spearman over the concatenated subsets: what SimCSE reports and `evaluate_sts`
    gives), "mean" (the mean of the per-subset Spearmans) and "wmean" (that mean weighted by
    the subsets' sizes), as `STSEval.run` computes them.

    Args:
        progress: bool. Say which year runs, as `evaluate_sts` does (in a log one line per year
            as it finishes, with its "all" Spearman). Defaults to True.

    Returns:
        `{year: {"all", "mean", "wmean", "subsets": {name: spearman}}}` (Spearman x100).
    """
    out = {}
    years = tuple(years)
    with TaskProgress(len(years), enabled=progress, noun="STS years") as shown:
        for year in years:
            shown.start(year)
            subsets = senteval.read_sts_year(data_dir, year)
            encoded = _Encoded(encode_fn, _all_sentences(*subsets.values()))
            per_subset = {name: spearman(encoded.cosines(p), p.scores) for name, p in subsets.items()}
            sizes = np.array([len(p.scores) for p in subsets.values()], dtype=np.float64)
            values = np.array(list(per_subset.values()))
            everything = _concat(list(subsets.values()))
            out[year] = {"all": spearman(encoded.cosines(everything), everything.scores),
                         "mean": float(np.mean(values)), "wmean": float(np.average(values, weights=sizes)),
                         "subsets": per_subset}
            shown.finish(year, len(everything.scores), out[year]["all"])
    return out


def format_aggregations(aggregations):
    """STS12-16 rows with their "all", "mean" and "wmean" Spearman x100."""
    lines = ["        all    mean   wmean"]
    for year, agg in aggregations.items():
        lines.append(f"{year}  {agg['all']:6.2f}  {agg['mean']:6.2f}  {agg['wmean']:6.2f}")
    return "\n".join(lines)
