"""Plain against Matryoshka training, each model cut to several sizes: issue 29's comparison.

    python benchmarks/matryoshka_comparison.py --dry-run      # the training commands, nothing run
    python benchmarks/matryoshka_comparison.py                # SimCSE and ESimCSE, 500 steps x seeds 1,2,3
    python benchmarks/matryoshka_comparison.py --methods unsup_esimcse --seeds 1 --steps 50

For each method of --methods it trains, from --model, --steps steps for each seed of --seeds:
a plain run and one with `--matryoshka-dims <--dims>`, both with `--pooler <--pooler>` (default
cls_before_pooler: Matryoshka cannot train through the unsupervised recipes' training-only MLP
head, and both arms must save the same pooler). Each is `recipes/<method>.py` in its own process,
in <output-dir>/<method>_plain and <output-dir>/<method>_matryoshka (run folders: a finished run
is skipped, an interrupted one resumes). Then it evaluates the start and each seed's model at every
size of --dims (each sentence encoded once, cut to its first d numbers and L2-normalised, so the
plain models are cut exactly as the Matryoshka ones): the 7 STS tasks, their average and STS-B
dev. It writes:

    <results-dir>/runs.json          every evaluation (model, seed, size: the 7 tasks, Avg., STS-B dev)
    <results-dir>/table.json         the 7-task average per size, mean ± std over the seeds
    <results-dir>/score_by_size.png  that table as a figure (its "figures" entry: `make figures`
                                     draws it again from the JSON, `tf_esimcse.plots`)
    <results-dir>_dev/table.json     STS-B dev per size, the same way

and prints both tables in markdown, the per-size differences (Matryoshka - plain) and the answer
at 64 dimensions. Paste the tables into docs/results.md (each table.json's "shown_in") and fill
"commits" with the commit that adds them (tests/test_committed_results.py checks all of it).
Training runs `recipes/<method>.py` with the flags printed by --dry-run; evaluations already in
runs.json are not repeated.
"""
import argparse
import datetime
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from tf_esimcse.atomic_files import write_json_atomic  # noqa: E402
from tf_esimcse.config import default_data_dir  # noqa: E402
from tf_esimcse.environment import environment_info  # noqa: E402
from tf_esimcse.evaluation.sts import evaluate_sts  # noqa: E402
from tf_esimcse.models.sentence_encoder import SentenceEncoder  # noqa: E402
from tf_esimcse.plots import MatplotlibNotInstalled, plot_score_by_size  # noqa: E402
from tf_esimcse.training import main_guard  # noqa: E402

NAMES = {"unsup_simcse": "unsup SimCSE", "unsup_esimcse": "ESimCSE", "sup_simcse": "sup SimCSE"}
ARMS = ("plain", "matryoshka")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.strip().partition("\n\n")[2])
    parser.add_argument("--methods", default="unsup_simcse,unsup_esimcse",
                        help="recipes to compare (default: %(default)s)")
    parser.add_argument("--dims", default="384,256,128,64,32", help="sizes, largest first (default: %(default)s)")
    parser.add_argument("--seeds", default="1,2,3", help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=500, help="(default: %(default)s)")
    parser.add_argument("--pooler", default="cls_before_pooler", choices=("cls_before_pooler", "avg"),
                        help="training and saved pooler of both arms (default: %(default)s)")
    parser.add_argument("--model", default="default", help="the start (default: all-MiniLM-L6-v2)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="(default: %(default)s)")
    parser.add_argument("--output-dir", default="saved_models/matryoshka", help="run folders (default: %(default)s)")
    parser.add_argument("--results-dir", default="docs/results/matryoshka_minilm",
                        help="where the JSON and the plot go (default: %(default)s)")
    parser.add_argument("--extra", default="",
                        help="more recipe flags for every run, one string (e.g. '--eval-steps 50')")
    parser.add_argument("--dry-run", action="store_true", help="print the training commands and stop")
    args = parser.parse_args(argv)
    args.dims = [int(d) for d in args.dims.split(",")]
    if any(a <= b for a, b in zip(args.dims, args.dims[1:])) or min(args.dims) < 1:
        raise ValueError(f"--dims must be positive and strictly descending, got {args.dims}")
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if not (RECIPES / f"{m}.py").is_file()]
    if unknown:
        raise ValueError(f"--methods: no recipe {unknown} in {RECIPES}")
    return args


def run_dir(args, method, arm):
    return pathlib.Path(args.output_dir) / f"{method}_{arm}"


def train_command(args, method, arm):
    """The recipe's flags for one arm (after `python recipes/<method>.py`)."""
    command = ["--model", args.model, "--data-dir", str(args.data_dir),
               "--steps", str(args.steps), "--seeds", args.seeds, "--pooler", args.pooler,
               "--output-dir", str(run_dir(args, method, arm)), *shlex.split(args.extra)]
    if arm == "matryoshka":
        command += ["--matryoshka-dims", ",".join(map(str, args.dims))]
    return command


def cut_encoders(encoder, dims):
    """{d: encode_fn}: one `encoder.encode` per distinct sentence, every size cut from it and
    L2-normalised again."""
    cache = {}

    def full(sentences):
        missing = [s for s in dict.fromkeys(sentences) if s not in cache]
        if missing:
            cache.update(zip(missing, encoder.encode(missing, batch_size=128, verbose=0)))
        return np.stack([cache[s] for s in sentences])

    def cut(d):
        def encode(sentences):
            v = full(sentences)[:, :d].astype(np.float64)
            return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return encode

    return {d: cut(d) for d in dims}


def evaluate_sizes(encoder, args):
    if encoder.embedding_dim < args.dims[0]:
        raise ValueError(f"--dims {args.dims[0]} exceeds the encoder's embedding size {encoder.embedding_dim}")
    results = {}
    for d, encode in cut_encoders(encoder, args.dims).items():
        scores = evaluate_sts(encode, args.data_dir, alignment_uniformity=False, progress=False)
        results[str(d)] = {k: round(float(v), 4) for k, v in scores.items()}
        print(f"  {d:4d} dims: Avg. {scores['avg']:.2f}  STS-B dev {scores['stsb_dev']:.2f}", flush=True)
    return results


def _cell(values):
    if len(values) == 1:
        return {"mean": round(values[0], 2), "std": 0.0, "values": [round(v, 2) for v in values]}
    return {"mean": round(statistics.mean(values), 2), "std": round(statistics.stdev(values), 2),
            "values": [round(v, 2) for v in values]}


def make_table(name, title, metric, runs, args, env, commands, figure=False):
    seeds = [int(s) for s in args.seeds.split(",")]
    columns = [{"key": "model", "header": "model"}] + [
        {"key": f"d{d}", "header": f"{d} dims", "decimals": 2} for d in args.dims]
    rows = [{"cells": {"model": f"start, `{args.pooler}`", **{f"d{d}": runs["start"][str(d)][metric]
                                                               for d in args.dims}}}]
    lines = []
    for i, method in enumerate(args.methods):
        for arm in ARMS:
            lines.append({"row": len(rows), "color": i, "dashed": arm == "plain"})
            per_seed = [runs[f"{method}_{arm}"][str(s)] for s in seeds]
            label = f"+ {NAMES.get(method, method)}" + (" + Matryoshka" if arm == "matryoshka" else "")
            cells = {"model": f"{label}, {len(seeds)} seeds"}
            cells.update({f"d{d}": _cell([r[str(d)][metric] for r in per_seed]) for d in args.dims})
            rows.append({"cells": cells, "seeds": seeds})
    commit = (env.get("git") or {}).get("commit", "")
    date = subprocess.run(["git", "show", "-s", "--format=%cI", commit], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() if commit else ""
    table = {
        "table": name, "title": title, "shown_in": ["docs/results.md"], "columns": columns, "rows": rows,
        "source": {
            "origin": "measured",
            "raw_files": "runs.json beside this file: every evaluation of every seed at every size",
            "statistics": f"trained rows: mean ± sample std (ddof 1) over seeds {args.seeds}; Spearman x100; each "
                          "sentence encoded once, cut to its first d numbers and L2-normalised",
            "measured": datetime.date.today().isoformat(),
            "environment": {"cpu": env["cpu"]["model"], "cores": env["cpu"]["usable_cores"],
                            "packages": env["packages"]},
            "commits": [{"commit": commit, "date": date,
                         "what": "measured at this commit; replace with the commit that adds the table"}],
            "commands": commands,
        },
    }
    if figure:
        table["figures"] = [{"file": str(pathlib.Path(args.results_dir) / "score_by_size.png"), "kind": "score_by_size",
                             "title": title, "sizes": list(args.dims), "start_row": 0, "lines": lines}]
    return table


def markdown(table):
    def cell(c, column):
        if isinstance(c, dict):
            return f"{c['mean']:.2f} ± {c['std']:.2f}"
        return c if isinstance(c, str) else f"{c:.{column['decimals']}f}"

    cols = table["columns"]
    lines = ["| " + " | ".join(c["header"] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in table["rows"]:
        lines.append("| " + " | ".join(cell(row["cells"][c["key"]], c) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    commands = [shlex.join(["python", f"recipes/{m}.py", *train_command(args, m, arm)])
                for m in args.methods for arm in ARMS]
    if args.dry_run:
        print("\n".join(commands))
        return None
    for m in args.methods:
        for arm in ARMS:
            print(f"== {m}, {arm} ==", flush=True)
            subprocess.run([sys.executable, str(RECIPES / f"{m}.py"), *train_command(args, m, arm)], check=True,
                           env=dict(os.environ))
    results_dir = pathlib.Path(args.results_dir)
    runs_file = results_dir / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else {}  # resumable: evaluated entries kept
    if "start" not in runs:
        print("== the start ==", flush=True)
        runs["start"] = evaluate_sizes(SentenceEncoder.from_pretrained(args.model, pooler_type=args.pooler), args)
        write_json_atomic(runs_file, runs)
    for m in args.methods:
        for arm in ARMS:
            for seed in args.seeds.split(","):
                if seed in runs.get(f"{m}_{arm}", {}):
                    continue
                model_dir = run_dir(args, m, arm) / f"seed_{seed}" / "model"
                print(f"== {m}, {arm}, seed {seed}: {model_dir} ==", flush=True)
                runs.setdefault(f"{m}_{arm}", {})[seed] = evaluate_sizes(SentenceEncoder.from_pretrained(
                    str(model_dir)), args)
                write_json_atomic(runs_file, runs)
    env = environment_info()
    commands.append(env["command"])
    name = results_dir.name
    tables = [make_table(name, f"Plain and Matryoshka training, cut to each size: 7-task STS average, {args.steps} "
                               f"steps, seeds {args.seeds}", "avg", runs, args, env, commands, figure=True),
              make_table(f"{name}_dev", "The same models: STS-B dev at each size", "stsb_dev", runs, args, env,
                         commands)]
    write_json_atomic(results_dir / "table.json", tables[0])
    write_json_atomic(results_dir.parent / f"{name}_dev" / "table.json", tables[1])
    figure = tables[0]["figures"][0]
    lines = [{"label": tables[0]["rows"][line["row"]]["cells"]["model"], "color": line["color"],
              "dashed": line["dashed"], "cells": [tables[0]["rows"][line["row"]]["cells"][f"d{d}"] for d in args.dims]}
             for line in figure["lines"]]
    try:
        plot_score_by_size(lines, args.dims, results_dir / "score_by_size.png", figure["title"],
                           start=[runs["start"][str(d)]["avg"] for d in args.dims])
    except MatplotlibNotInstalled as e:
        print(f"no figure: {e}")
    for table in tables:
        print(f"\n{table['title']}\n\n{markdown(table)}")
    print("\nMatryoshka - plain, 7-task average (mean over seeds):")
    seeds = args.seeds.split(",")
    for m in args.methods:
        diffs = {d: np.mean([runs[f"{m}_matryoshka"][s][str(d)]["avg"] for s in seeds])
                 - np.mean([runs[f"{m}_plain"][s][str(d)]["avg"] for s in seeds]) for d in args.dims}
        print(f"  {NAMES.get(m, m)}: " + ", ".join(f"{d}: {v:+.2f}" for d, v in diffs.items()))
        if 64 in diffs:
            print(f"    at 64 dims Matryoshka is {'higher' if diffs[64] > 0 else 'NOT higher'} than plain cut to 64")
    return runs


if __name__ == "__main__":
    main_guard(main)
