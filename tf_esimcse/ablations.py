"""The SimCSE and ESimCSE papers' ablation tables, each one command.

    python recipes/ablations.py --list
    python recipes/ablations.py --table esimcse-components --steps 300 --seeds 1,2,3
    python recipes/ablations.py --table simcse-dropout --steps 300 --seeds 1,2,3 --trajectory 25
    python recipes/ablations.py --table simcse-augmentation --rows "crop 10 %,delete one word"
    # SimCSE vs ESimCSE vs DiffCSE, from the raw encoder pretrained by recipes/pretrain_mlm.py:
    python recipes/ablations.py --table methods --model saved_models/mlm/model --generator saved_models/mlm/model --steps 500 --seeds 1,2,3

Every row is one recipe run with one or two flags (shown in the table: run it alone with
`python recipes/<recipe>.py <flags>`); every row trains from the same encoder with the same seeds
into `<output-dir>/<table>/<row>/seed_<n>/`. A killed table run started again picks up where it
stopped: finished seeds are skipped, an interrupted one resumes from its backup; a row folder
holding runs of other settings is refused (its recipe's run-folder rules) unless `--overwrite` is
given, which every row then receives. Each row trains
in its own Python process (TensorFlow frees compiled steps only when a process ends). Written to
`<output-dir>/<table>/` after every row: `table.json`, `table.md` (our STS-B dev mean ± std
beside the paper's figure for that row, Avg. of the 7 test tasks, alignment, uniformity; first,
the starting encoder evaluated untrained, `start.json`) and
`table.png` (bars with error bars, the paper's figures as markers); with `--trajectory K`, STS-B
dev, alignment and uniformity every K steps and `trajectory.png` (alignment against uniformity
during training, as SimCSE's Figure 2).

Any other flag (`--model`, `--corpus`, `--max-len`, `--eval-steps`, `--batch-size`, ...) is passed
to every row; a row's own flags win. The paper's figures are BERT-base on its own data (wiki1M
or NLI) and budget: compare orderings, not values, and keep in mind that the default encoder
(all-MiniLM-L6-v2) is already contrastively trained.
"""
import argparse
import dataclasses
import json
import math
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import threading

from tf_esimcse import plots
from tf_esimcse.atomic_files import write_json_atomic, write_text_atomic
from tf_esimcse.config import FlagParser, HelpFormatter, default_data_dir, parse_seeds
from tf_esimcse.data.senteval import resolve_senteval_dir
from tf_esimcse.errors import DataError, TfEsimcseError
from tf_esimcse.evaluation.sts import evaluate_sts
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.run_summary import summarize_seeds

#: Where the rows' recipes are (`<recipes_dir>/<recipe>.py`, run in child processes): the
#: repository's recipes/ folder, unless `main` is given another.
RECIPES_DIR = pathlib.Path(__file__).resolve().parents[1] / "recipes"

SIMCSE_PAPER = "SimCSE (Gao et al., 2021), BERT-base, STS-B dev"
ESIMCSE_PAPER = "ESimCSE (Wu et al., 2021), BERT-base, STS-B dev"


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    recipe: str
    flags: tuple = ()
    paper: float = None  # the paper's figure for this row (None: not reported / not transcribed)
    unavailable: str = None  # why this row cannot run here (it is listed, not trained)
    requires: str = None  # a flag the table command must pass for this row to run (else it is listed, not trained)


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    paper_source: str
    rows: tuple


#: Batch sizes from this one on train with the cached step (`--mini-batch-size MINI_BATCH`): on a
#: 23 GiB machine the plain step's peak memory is 13.4 GiB at 1024 sentences (unsupervised MiniLM,
#: 32 tokens) and would be ~25 GiB at 2048; the cached one stays at 3 GiB (benchmarks/README.md).
CACHED_FROM, MINI_BATCH = 1024, 64


def _batch_flags(batch):
    flags = ["--batch-size", str(batch)]
    return flags + ["--mini-batch-size", str(MINI_BATCH)] if batch >= CACHED_FROM else flags


def _rows(recipe, specs):
    return tuple(Row(label, recipe, tuple(flags), paper) for label, flags, paper in specs)


TABLES = {
    "simcse-augmentation": Table(
        "Positives: dropout against discrete augmentations and next sentences", SIMCSE_PAPER + " (Tables 1, 2)",
        _rows("unsup_simcse", [
            ("none (dropout only)", [], 82.5),
            ("crop 10 %", ["--augmentation", "crop:10"], 77.8),
            ("crop 20 %", ["--augmentation", "crop:20"], 71.4),
            ("crop 30 %", ["--augmentation", "crop:30"], 63.6),
            ("word deletion 10 %", ["--augmentation", "word_deletion:10"], 75.9),
            ("word deletion 20 %", ["--augmentation", "word_deletion:20"], 72.2),
            ("word deletion 30 %", ["--augmentation", "word_deletion:30"], 68.2),
            ("delete one word", ["--augmentation", "delete_one_word"], 75.9),
            ("delete one word, w/o dropout", ["--augmentation", "delete_one_word", "--dropout", "0"], 74.2),
            ("next sentence", ["--augmentation", "next_sentence"], None),
            ("next 3 sentences", ["--augmentation", "next_3_sentences"], None),
        ]) + (
            Row("synonym replacement", "unsup_simcse", (), 77.4, unavailable="needs WordNet (not installed offline)"),
            Row("MLM 15 %", "unsup_simcse", ("--augmentation", "mlm:15"), 62.2,
                requires="--augmentation-generator"),
        )),
    "simcse-dropout": Table(
        "Dropout probability p; fixed mask = the same mask for both copies", SIMCSE_PAPER + " (Table 3)",
        _rows("unsup_simcse", [
            ("p = 0.0", ["--dropout", "0"], 71.1),
            ("p = 0.01", ["--dropout", "0.01"], 72.6),
            ("p = 0.05", ["--dropout", "0.05"], 81.1),
            ("p = 0.1", ["--dropout", "0.1"], 82.5),
            ("p = 0.15", ["--dropout", "0.15"], 81.4),
            ("p = 0.2", ["--dropout", "0.2"], 80.5),
            ("p = 0.5", ["--dropout", "0.5"], 71.0),
            ("fixed 0.1", ["--dropout", "0.1", "--same-dropout-mask"], 43.6),
        ])),
    "simcse-encoders": Table(
        "One encoder against two independent encoders", SIMCSE_PAPER + " (Table 2)",
        _rows("unsup_simcse", [
            ("one encoder", [], 82.5),
            ("two encoders", ["--two-encoders"], 80.7),
        ])),
    "simcse-pooler": Table(
        "Poolers", SIMCSE_PAPER,
        _rows("unsup_simcse", [
            ("[CLS] + MLP", ["--pooler", "cls", "--no-mlp-only-train"], None),
            ("[CLS] + MLP (train only)", ["--pooler", "cls", "--mlp-only-train"], None),
            ("[CLS] w/o MLP", ["--pooler", "cls_before_pooler"], None),
            ("first-last avg.", ["--pooler", "avg_first_last"], None),
            ("avg.", ["--pooler", "avg"], None),
        ])),
    "simcse-temperature": Table(
        "Softmax temperature", SIMCSE_PAPER,
        _rows("unsup_simcse", [(f"temperature {t}", ["--temperature", str(t)], None)
                               for t in (0.001, 0.01, 0.05, 0.1, 1.0)])),
    "sup-hard-negative": Table(
        "Supervised SimCSE: hard-negative weight alpha", SIMCSE_PAPER + ", supervised (NLI)",
        _rows("sup_simcse", [
            ("no hard negatives", ["--no-use-hard-negatives"], None),
            ("alpha = 0.5", ["--alpha", "0.5"], 86.1),
            ("alpha = 1", ["--alpha", "1"], 86.2),
            ("alpha = 2", ["--alpha", "2"], 86.2),
            ("contradiction + neutral", ["--use-neutral-negatives"], 85.3),
        ])),
    "esimcse-components": Table(
        "ESimCSE's two components", ESIMCSE_PAPER,
        _rows("unsup_esimcse", [
            ("SimCSE (neither)", ["--no-use-repetition", "--no-use-momentum-queue"], None),
            ("repetition only", ["--no-use-momentum-queue"], None),
            ("momentum queue only", ["--no-use-repetition"], None),
            ("ESimCSE (both)", [], None),
        ])),
    "esimcse-dup-rate": Table(
        "Word repetition rate", ESIMCSE_PAPER,
        _rows("unsup_esimcse", [(f"dup_rate {r}", ["--dup-rate", str(r)], None) for r in (0.1, 0.2, 0.32, 0.4, 0.5)])),
    "esimcse-queue": Table(
        "Queue size as a multiple of the batch (64)", ESIMCSE_PAPER,
        _rows("unsup_esimcse", [
            ("queue 1 x batch", ["--queue-size", "64"], 83.83),
            ("queue 1.5 x batch", ["--queue-size", "96"], 83.81),
            ("queue 2 x batch", ["--queue-size", "128"], 83.03),
            ("queue 2.5 x batch", ["--queue-size", "160"], 84.85),
            ("queue 3 x batch", ["--queue-size", "192"], 82.66),
        ])),
    "esimcse-momentum": Table(
        "Momentum of the momentum encoder", ESIMCSE_PAPER,
        _rows("unsup_esimcse", [(f"momentum {m}", ["--momentum", str(m)], None) for m in (0.9, 0.99, 0.995, 0.999)])),
    "methods": Table(
        "SimCSE, ESimCSE and DiffCSE at equal steps, each with its official settings (DiffCSE: lr 7e-6, "
        "masking 0.30, lambda 0.005, BatchNorm projection)", SIMCSE_PAPER,
        (Row("unsup SimCSE", "unsup_simcse", (), 82.5),
         Row("ESimCSE", "unsup_esimcse", ()),
         Row("DiffCSE", "diffcse", (), requires="--generator"))),
    "batch-size": Table(
        f"Batch size, unsupervised and supervised SimCSE (from {CACHED_FROM} on, the cached step in "
        f"mini-batches of {MINI_BATCH}: the same gradients in the memory of one mini-batch)", SIMCSE_PAPER,
        _rows("unsup_simcse", [(f"unsup batch {b}", _batch_flags(b), None) for b in (32, 64, 128, 256, 512, 1024, 2048)])
        + _rows("sup_simcse", [(f"sup batch {b}", _batch_flags(b), None) for b in (64, 128, 256, 512, 1024)])),
}


def slug(label):
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _metric(summary, key):
    m = (summary.get("metrics") or {}).get(key)
    if not m or not m.get("n"):
        return None
    values = [v if isinstance(v, (int, float)) else float("nan") for v in m["values"] if v is not None]
    return {"mean": _finite(m["mean"]), "std": _finite(m["std"]), "values": values, "n": m["n"]}


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _seed_results(row_dir, seeds):
    """{seed: its results.json} for the seeds of `seeds` that have one."""
    paths = {seed: pathlib.Path(row_dir) / f"seed_{seed}" / "results.json" for seed in seeds}
    return {seed: json.loads(path.read_text()) for seed, path in paths.items() if path.is_file()}


def _diverged_seed(results):
    for data in results.values():
        if data.get("status") == "diverged":
            return data.get("reason", "diverged")
    return None


def row_flags(row, common_flags, table):
    """`common_flags` as this row receives them: a flag some row of the table `requires` (e.g.
    DiffCSE's `--generator`) goes only to the rows that require it (the other recipes do not
    know it)."""
    required = {r.requires for r in table.rows if r.requires} - {row.requires}
    out, skip = [], False
    for flag in common_flags:
        name = flag.split("=", 1)[0]
        if skip:
            skip = False
            continue
        if name in required:
            skip = "=" not in flag
            continue
        out.append(flag)
    return out


def _train_in_own_process(recipe, flags, recipes_dir=RECIPES_DIR):
    """Run `recipes/<recipe>.py flags` in a child Python, its output streamed through ours; the exit
    code. One process per row, because TensorFlow keeps every compiled step (XLA executables,
    graph functions) until its process ends: measured here, ~150 MB more per seed trained in one
    process even with a 2-layer model, and a 24-run table in one process outgrew 23 GiB."""
    command = [sys.executable, "-u", str(pathlib.Path(recipes_dir) / f"{recipe}.py"), *flags]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    previous = None
    try:
        if threading.current_thread() is threading.main_thread():
            # killed with SIGTERM, stop the child too (it would go on training, unwatched)
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        for line in child.stdout:
            print(line, end="", flush=True)
        return child.wait()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        child.stdout.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_description(code):
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"stopped with exit code {code} (its error is printed above)"


def _finished_row(row_dir, seeds, results):
    """`{"summary", "runs"}` when every seed's `results` (from `_seed_results`) says "status": "ok",
    else None."""
    runs = [results.get(seed, {}) for seed in seeds]
    if any(run.get("status") != "ok" for run in runs):
        return None
    # from the seeds asked for, not the row's summary.json (it may cover other seeds)
    return {"summary": summarize_seeds(runs), "runs": runs}


def run_row(row, row_dir, common_flags, seeds, recipes_dir=RECIPES_DIR):
    """Train one row (all seeds; resumable; in its own process) and return its table entry."""
    flags = [*common_flags, "--output-dir", str(row_dir), *row.flags]
    entry = {"label": row.label, "recipe": row.recipe, "flags": list(row.flags), "paper": row.paper,
             "command": " ".join(["python", f"recipes/{row.recipe}.py", *map(shlex.quote, [*common_flags, *row.flags])]),
             "output_dir": str(row_dir)}
    if row.unavailable:
        return dict(entry, status="unavailable", reason=row.unavailable)
    if row.requires and not any(f == row.requires or f.startswith(row.requires + "=") for f in common_flags):
        return dict(entry, status="unavailable",
                    reason=f"needs {row.requires} <keras-hub MaskedLM preset> on the table command "
                           "(e.g. saved_models/mlm/model from python recipes/pretrain_mlm.py)")
    # The row's recipe applies the run-folder rules to each seed: a finished seed of the same
    # settings is skipped, an unfinished one resumes, a diverged one exits 3, other settings are
    # refused (exit 2) unless --overwrite is among the table's flags.
    print(f"\n=== {row.label}: {entry['command']} ===", flush=True)
    code = _train_in_own_process(row.recipe, flags, recipes_dir)
    results = _seed_results(row_dir, seeds)
    reason = _diverged_seed(results) or (f"exit code {code}" if code == 3 else None)
    if reason is None and code != 0:
        raise TfEsimcseError(f"row {row.label!r}: `{entry['command']}` {_exit_description(code)}; "
                             "run the table command again to resume")
    if reason is not None:
        print(f"=== {row.label}: diverged ({reason}) ===", flush=True)
        return dict(entry, status="diverged", reason=reason)
    out = _finished_row(row_dir, seeds, results)
    if out is None:
        raise TfEsimcseError(f"row {row.label!r}: training ended, but {row_dir} lacks a finished results.json "
                             f"for every seed of {seeds}")
    summary, runs = out["summary"], out["runs"]
    return dict(entry, status="ok", stsb_dev=_metric(summary, "best_stsb_dev"), avg=_metric(summary, "avg"),
                alignment=_metric(summary, "alignment"), uniformity=_metric(summary, "uniformity"),
                trajectories=[run.get("evaluations", []) for run in runs],
                eval_pooler=_eval_pooler(runs[0].get("config", {})))


def _eval_pooler(config):
    """The pooler a row's evaluations used: `cls` with an MLP trained only is evaluated without it."""
    pooler = config.get("pooler", START_POOLER)
    return START_POOLER if pooler == "cls" and config.get("mlp_only_train") else pooler


START_POOLER = "cls_before_pooler"


def evaluate_start(common_flags, out_dir):
    """The encoder every row starts from, evaluated untrained ([CLS] before any pooler head, as
    the trained rows are saved), so that each row reads against where it began. Cached in
    `<out_dir>/start.json` per (model, data dir); `None` without SentEval data."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data-dir", default=default_data_dir())
    known, _ = parser.parse_known_args(common_flags)
    path = pathlib.Path(out_dir) / "start.json"
    key = {"model": known.model, "data_dir": known.data_dir, "pooler": START_POOLER}
    if path.is_file():
        cached = json.loads(path.read_text())
        if all(cached.get(k) == v for k, v in key.items()):
            return cached
    try:
        resolve_senteval_dir(known.data_dir)
    except DataError as e:
        print(f"no start row: {e}", flush=True)
        return None
    print(f"\n=== start: {known.model} untrained, {START_POOLER} ===", flush=True)
    encoder = SentenceEncoder.from_pretrained(known.model, pooler_type=START_POOLER)
    scores = evaluate_sts(lambda sentences: encoder.encode(sentences, verbose=0), known.data_dir)
    start = dict(key, scores=scores, command=f"tf-esimcse evaluate --model {shlex.quote(known.model)} "
                                            f"--pooler {START_POOLER} --data-dir {shlex.quote(known.data_dir)}")
    write_json_atomic(path, start)
    return start


def _start_metric(start, key):
    value = _finite((start or {}).get("scores", {}).get(key))
    return None if value is None else {"mean": value, "std": None, "values": [value], "n": 1}


def _fmt(metric, decimals=2):
    if not metric or metric["mean"] is None:
        return "n/a"
    if metric["n"] < 2:
        return f"{metric['mean']:.{decimals}f}"
    return f"{metric['mean']:.{decimals}f} ± {metric['std']:.{decimals}f}"


def format_markdown(name, table, entries, command, seeds, start=None):
    lines = [f"# {name}: {table.title}", "",
             f"Command: `{command}`", "",
             f"Ours: mean ± sample std over seeds {seeds}, STS-B dev of the best evaluation (Spearman x100); "
             f"Avg. = the 7 STS test tasks of the saved model; alignment/uniformity on STS-B dev (lower is better). "
             f"Paper: {table.paper_source} (its own encoder, data and budget).", "",
             "| row | flags | STS-B dev (ours) | paper | Avg. (ours) | alignment | uniformity |",
             "|---|---|---|---|---|---|---|"]
    if start:
        lines.append(f"| start: `{start['model']}` untrained, `{START_POOLER}` | `{start['command']}` | "
                     f"{_fmt(_start_metric(start, 'stsb_dev'))} | – | {_fmt(_start_metric(start, 'avg'))} | "
                     f"{_fmt(_start_metric(start, 'alignment'), 4)} | {_fmt(_start_metric(start, 'uniformity'), 4)} |")
    for e in entries:
        paper = "–" if e["paper"] is None else f"{e['paper']:g}"
        flags = "`" + " ".join(e["flags"]) + "`" if e["flags"] else "(defaults)"
        if e["status"] != "ok":
            lines.append(f"| {e['label']} | {flags} | {e['status']}: {e['reason']} | {paper} | | | |")
            continue
        lines.append(f"| {e['label']} | {flags} | {_fmt(e['stsb_dev'])} | {paper} | {_fmt(e['avg'])} | "
                     f"{_fmt(e['alignment'], 4)} | {_fmt(e['uniformity'], 4)} |")
    return "\n".join(lines) + "\n"


def trajectory_points(entry, start=None):
    """(uniformity, alignment) at every evaluation of the row's first seed, in step order, from the
    untrained start (as in SimCSE's Figure 2): the row's own step-0 evaluation, or for rows trained
    before runs evaluated their start, the table's `start` when it has both and was evaluated with
    the row's pooler."""
    records = (entry.get("trajectories") or [[]])[0]
    points = [(r["uniformity"], r["alignment"]) for r in records
              if _finite(r.get("uniformity")) is not None and _finite(r.get("alignment")) is not None]
    origin = _start_point(start)
    same_pooler = entry.get("eval_pooler", START_POOLER) == (start or {}).get("pooler", START_POOLER)
    has_own_start = bool(records) and records[0].get("step") == 0
    if points and origin is not None and same_pooler and not has_own_start:
        points.insert(0, origin)
    return points


def _start_point(start):
    """(uniformity, alignment) of the untrained start, or None when it lacks either."""
    scores = (start or {}).get("scores", {})
    point = (_finite(scores.get("uniformity")), _finite(scores.get("alignment")))
    return None if None in point else point


def write_outputs(out_dir, name, table, entries, command, seeds, trajectory, start=None):
    write_json_atomic(out_dir / "table.json", {"table": name, "title": table.title, "paper_source": table.paper_source,
                                               "command": command, "seeds": seeds, "start": start, "rows": entries})
    markdown = format_markdown(name, table, entries, command, seeds, start=start)
    write_text_atomic(out_dir / "table.md", markdown)
    model = (start or {}).get("model")
    try:
        plots.plot_ablation_table(entries, out_dir / "table.png", name, table.title, model=model,
                                  start_stsb_dev=(_start_metric(start, "stsb_dev") or {}).get("mean"))
        if trajectory:
            plots.plot_ablation_trajectory([(e["label"], trajectory_points(e, start)) for e in entries],
                                           out_dir / "trajectory.png", name, _start_point(start), model=model)
    except plots.MatplotlibNotInstalled as e:
        print(f"{e}: no PNG written", flush=True)
    return markdown


def parse_args(argv):
    parser = FlagParser(description=__doc__, formatter_class=HelpFormatter,
                        epilog="Any other flag is passed to every row's recipe (see its --help).")
    parser.add_argument("--table", choices=sorted(TABLES), help="the table to train")
    parser.add_argument("--list", action="store_true", help="list the tables and their rows, then exit")
    parser.add_argument("--rows", default="", help="comma-separated row labels to run (default: all)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default: %(default)s)")
    parser.add_argument("--seeds", default="1,2,3", help="the seeds every row trains (default: %(default)s)")
    parser.add_argument("--output-dir", default="saved_models/ablations",
                        help="tables go to OUTPUT_DIR/<table>/ (default: %(default)s)")
    parser.add_argument("--trajectory", type=int, default=0, metavar="K",
                        help="evaluate every K steps and plot alignment/uniformity (sets --eval-steps K)")
    args, passthrough = parser.parse_known_args(argv)
    if not args.list and not args.table:
        parser.error("--table is required (or --list)")
    if args.trajectory < 0:
        parser.error("--trajectory must be >= 0")
    return args, passthrough


def main(argv=None, recipes_dir=RECIPES_DIR):
    """What `python recipes/ablations.py ...` runs; each row's recipe is `<recipes_dir>/<recipe>.py`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, passthrough = parse_args(argv)
    if args.list:
        for name, table in TABLES.items():
            print(f"{name}: {table.title}")
            for row in table.rows:
                extra = f"  [not run: {row.unavailable}]" if row.unavailable else ""
                extra = f"  [needs {row.requires} on the table command]" if row.requires else extra
                paper = "" if row.paper is None else f"  paper {row.paper}"
                print(f"    {row.label}: python recipes/{row.recipe}.py {' '.join(row.flags)}{paper}{extra}")
        return {}
    table = TABLES[args.table]
    rows = table.rows
    if args.rows.strip():
        wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = sorted(set(wanted) - {r.label for r in rows})
        if unknown:
            raise ValueError(f"--rows: unknown rows {unknown}; {args.table} has {[r.label for r in rows]}")
        rows = tuple(r for r in rows if r.label in wanted)
    out_dir = pathlib.Path(args.output_dir) / args.table
    seeds = parse_seeds(args.seeds)
    if not seeds:
        raise ValueError(f"--seeds must name at least one seed, got {args.seeds!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    common = [*passthrough, "--steps", str(args.steps), "--seeds", args.seeds]
    if args.trajectory:
        common += ["--eval-steps", str(args.trajectory)]
    command = " ".join(["python", "recipes/ablations.py", *map(shlex.quote, argv)])
    start = evaluate_start(common, out_dir)
    entries = []
    for row in rows:
        entries.append(run_row(row, out_dir / slug(row.label), row_flags(row, common, table), seeds, recipes_dir))
        markdown = write_outputs(out_dir, args.table, table, entries, command, args.seeds, args.trajectory,
                                 start=start)
    print("\n" + markdown)
    print(f"table in {out_dir}: table.md, table.json, table.png" + (", trajectory.png" if args.trajectory else ""))
    return {"rows": entries, "output_dir": str(out_dir)}

