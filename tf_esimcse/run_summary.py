"""Mean and spread of a recipe's results over several seeds: `summary.json` and `summary.md`.

Each per-seed result is the dict `tf_esimcse.training.run_training` writes to `results.json`:
`config` (with `seed`), `best_step`, `best_stsb_dev` (the model-selection score seen during
training) and, when the final evaluation ran, `test` (the dict of
`tf_esimcse.evaluation.sts.evaluate_sts`: Spearman x100 per task, "avg", "stsb_dev",
"alignment", "uniformity"; possibly a "length_split" dict as `tf-esimcse evaluate --length-split`
writes it).

For every metric the summary gives the per-seed values, their mean and their sample standard
deviation (ddof=1; 0 for a single seed, marked n=1). A non-finite value (NaN, inf) is never
averaged: the metric's mean and std are then `None` and the value is reported as "nan"/"inf".
A seed that lacks a metric (e.g. `final_eval` off) is reported as missing, and the mean is over
the seeds that have it (its `n` says how many).

Example:
```python
results = [json.loads((run / "results.json").read_text()) for run in runs]
write_summary("saved_models/unsup_esimcse", results, command=sys.argv)
```
"""
import json
import math
import pathlib
import shlex

from tf_esimcse.atomic_files import write_text_atomic

__all__ = ["summarize_seeds", "write_summary", "format_markdown"]

# (key, label, decimals): where to find the metric is in `_metric_value`.
# "best_stsb_dev" is the top-level training-time score; the others are read from `test`.
METRICS = (
    ("sts12", "STS12", 2),
    ("sts13", "STS13", 2),
    ("sts14", "STS14", 2),
    ("sts15", "STS15", 2),
    ("sts16", "STS16", 2),
    ("stsb_test", "STS-B", 2),
    ("sickr_test", "SICK-R", 2),
    ("avg", "Avg.", 2),
    ("best_stsb_dev", "STS-B dev (best, training)", 2),
    ("stsb_dev", "STS-B dev (saved model)", 2),
    ("alignment", "alignment", 4),
    ("uniformity", "uniformity", 4),
    ("length_split.short_diff", "STS-B test, length diff <= threshold", 2),
    ("length_split.long_diff", "STS-B test, length diff > threshold", 2),
    ("best_step", "best step", 0),
)
_KNOWN = {key for key, _, _ in METRICS}
# Fields of `test` that are bookkeeping, not scores.
_SKIP_TEST_KEYS = {"length_split.n_short", "length_split.n_long", "length_split.threshold"}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif _is_number(value):
            out[name] = float(value)
        elif value is None:
            out[name] = None
    return out


def _per_seed_metrics(result):
    """The metrics of one `results.json` dict, flat: {key: float or None}."""
    flat = _flatten(result.get("test") or {})
    for key in ("best_stsb_dev", "best_step"):
        value = result.get(key)
        if _is_number(value) or value is None:
            flat[key] = None if value is None else float(value)
    return flat


def _seed_of(result):
    return (result.get("config") or {}).get("seed")


def _json_value(value):
    """A float for JSON: finite as is, non-finite as the strings "nan", "inf", "-inf"."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _mean_std(values):
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def summarize_seeds(results):
    """Mean, sample std and per-seed values of every metric over runs that differ by seed.

    Args:
        results: list of dict. One `results.json` dict per seed (as written by
            `tf_esimcse.training.run_training`), in the order to report them.

    Returns:
        A JSON-serialisable dict (strict JSON: non-finite floats appear as the strings "nan",
        "inf", "-inf") with:
        - "n_seeds": int, and "seeds": the `config["seed"]` of each run (None if absent).
        - "metrics": {key: {"label", "decimals", "values" (one per seed, None if missing),
          "n" (seeds that have a value), "mean", "std" (sample std, ddof=1; 0.0 when n == 1;
          both None when n == 0 or any value is non-finite), "non_finite" (seed indices with
          a non-finite value)}}, in table order: STS12-16, STS-B, SICK-R, Avg., STS-B dev
          (training-time best, then the saved model's), alignment, uniformity, the length split,
          best step, then any other numeric field of `test`.
        - "config_differences": the config fields other than seed/output_dir/log_dir whose
          values differ between runs (empty when the runs differ only by seed).
    """
    results = list(results)
    if not results:
        raise ValueError("summarize_seeds needs at least one result")
    per_seed = [_per_seed_metrics(r) for r in results]
    present = set().union(*per_seed)
    extra = sorted(k for k in present if k not in _KNOWN and k not in _SKIP_TEST_KEYS)
    layout = [m for m in METRICS if m[0] in present] + [(k, k, 4) for k in extra]

    thresholds = {(r.get("test") or {}).get("length_split", {}).get("threshold") for r in results} - {None}
    if len(thresholds) == 1:  # name the threshold in the labels when every run used the same one
        t = thresholds.pop()
        labels = {"length_split.short_diff": f"STS-B test, length diff <= {t}",
                  "length_split.long_diff": f"STS-B test, length diff > {t}"}
        layout = [(key, labels.get(key, label), decimals) for key, label, decimals in layout]

    metrics = {}
    for key, label, decimals in layout:
        values = [seed.get(key) for seed in per_seed]
        given = [v for v in values if v is not None]
        non_finite = [i for i, v in enumerate(values) if v is not None and not math.isfinite(v)]
        mean = std = None
        if given and not non_finite:
            mean, std = _mean_std(given)
        metrics[key] = {
            "label": label,
            "decimals": decimals,
            "values": [_json_value(v) for v in values],
            "n": len(given),
            "mean": mean,
            "std": std,
            "non_finite": non_finite,
        }

    configs = [r.get("config") or {} for r in results]
    ignored = {"seed", "output_dir", "log_dir"}
    differences = sorted(
        key for key in set().union(*configs) - ignored
        if len({json.dumps(c.get(key), sort_keys=True) for c in configs}) > 1
    )
    return {
        "n_seeds": len(results),
        "seeds": [_seed_of(r) for r in results],
        "metrics": metrics,
        "config_differences": differences,
    }


def _cell(value, decimals):
    if value is None:
        return "missing"
    if isinstance(value, str):  # a non-finite value, as `_json_value` wrote it
        return value
    return f"{value:.{decimals}f}"


def format_markdown(summary, command=None):
    """Format a `summarize_seeds` summary as a Markdown report with one table.

    Args:
        summary: dict. As returned by `summarize_seeds`.
        command: str or None. The command that produced the runs, shown under the title.

    Returns:
        A str: a title, a line naming the seeds, and a table with one row per metric and the
        columns "mean ± std" then one per seed.
    """
    n = summary["n_seeds"]
    seeds = summary["seeds"]
    names = [f"seed {s}" if s is not None else f"run {i + 1}" for i, s in enumerate(seeds)]
    lines = [f"# Results over {n} seed{'s' if n != 1 else ''}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    spread = "sample std, ddof=1" if n > 1 else "n=1: one seed, std 0"
    lines += [f"Mean ± std ({spread}) over seeds {', '.join(str(s) for s in seeds)}. "
              "Spearman x100; alignment and uniformity on STS-B dev (lower is better).", ""]
    if summary.get("config_differences"):
        lines += ["**The runs differ in more than the seed:** " + ", ".join(summary["config_differences"]), ""]
    lines.append("| Metric | mean ± std | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for metric in summary["metrics"].values():
        d = metric["decimals"]
        if metric["non_finite"]:
            which = ", ".join(names[i] for i in metric["non_finite"])
            stat = f"non-finite ({which})"
        elif metric["mean"] is None:
            stat = "missing"
        else:
            stat = f"{metric['mean']:.{d}f} ± {metric['std']:.{d}f}"
            if metric["n"] == 1:
                stat += " (n=1)"
            elif metric["n"] != n:
                stat += f" (n={metric['n']} of {n})"
        cells = [_cell(v, d) for v in metric["values"]]
        lines.append(f"| {metric['label']} | {stat} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(output_dir, results, command=None):
    """Summarise per-seed results and write `summary.json` and `summary.md` to `output_dir`.

    Each file is written to a temporary file in `output_dir` and renamed into place, so a crash
    never leaves a half-written summary (nor a temporary file).

    Args:
        output_dir: str or path-like. Created if missing.
        results: list of dict. One `results.json` dict per seed; see `summarize_seeds`.
        command: str, list of str or None. The command that produced the runs (a list, such as
            `sys.argv`, is joined with shell quoting). Recorded in both files.

    Returns:
        The summary dict (as written to `summary.json`).
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if command is not None and not isinstance(command, str):
        command = shlex.join(str(part) for part in command)
    summary = summarize_seeds(results)
    summary["command"] = command
    write_text_atomic(output_dir / "summary.json",
                  json.dumps(summary, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    write_text_atomic(output_dir / "summary.md", format_markdown(summary, command))
    return summary
