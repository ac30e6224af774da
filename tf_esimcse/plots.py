"""Figures of a training run and of evaluation results, written as PNG files.

`plot_run(run_dir)` draws what a recipe left in its output folder (`tf_esimcse.training.run_training`)
in one 2 x 2 figure, `<run_dir>/run.png` by default:

- training loss, and each `*_loss` term of the objective, against the step (the TensorBoard
  `batch_*` scalars under `logs/train`; Keras logs their running mean since the start of the
  current backup chunk of `backup_steps` steps);
- the learning rate against the step (`batch_learning_rate`);
- STS-B dev Spearman x100 against the step, the best evaluation marked with a star, and the
  untrained start (the step-0 evaluation) as a dashed line;
- alignment against uniformity on STS-B dev at every evaluation (SimCSE's Figure 2: x uniformity,
  y alignment, lower-left is better), arrows following training from the start (a star), the
  last step named.

Every figure stands alone: its title names the run folder and the model it started from
(`results.json`'s config "model"), or the evaluated model. A run from before the start was
evaluated (no step-0 record, no `results["start"]`) is drawn without the baseline.

The evaluations come from `evaluations.json`, else from `results.json`'s "evaluations", else from
the STS-B dev scalars of `STSEvaluationCallback` under `logs/validation`. A seeds folder
(`seed_<n>/` sub-folders, as `run_seeds` writes them) gives one line per seed in every panel.
The `epoch_*` scalars are not drawn: their step is the Keras epoch (a backup chunk), not the
training step. A resumed run has one event file per part, each counting batches from 1: a part is
shifted to its global step by its first epoch index x `backup_steps` (from `results.json`'s config,
or, for a run still training, from the last step logged before the first part's first epoch ended:
exact when the logging interval divides `backup_steps`, as with the defaults);
a part that cannot be placed yet is left out and the loss panel says so.

`plot_length_split(results, output)` draws ESimCSE's length-bias check (its Table 1) as grouped
bars, and `plot_sts_table(results, output)` the 7 STS tasks and, set apart, their average, for
one results dict (`tf-esimcse evaluate --output`, or a run's `results.json`, whose
`results["start"]["test"]` is drawn as grey bars beside) or several `(label, results)` pairs
side by side.

`plot_ablation_table` and `plot_ablation_trajectory` draw an ablation table's rows
(`recipes/ablations.py`: table.png, trajectory.png) against the encoder they all start from.

`plot_results_tables()` (`python -m tf_esimcse.plots`, `make figures`) redraws the figures of the
committed result tables (`docs/figures/`) from their JSON (`docs/results/<name>/table.json`).

matplotlib is imported only when a figure is drawn (`pip install "tf_esimcse[plots]"`); figures
are rendered with the Agg canvas without touching pyplot's global state, and every PNG is written
to a temporary file in the same folder and renamed into place, so a crash never leaves a
half-written image (nor a temporary file).

Example:
```python
from tf_esimcse.plots import plot_length_split, plot_run

plot_run("saved_models/unsup_esimcse")            # -> saved_models/unsup_esimcse/run.png
plot_length_split([("SimCSE", simcse), ("ESimCSE", esimcse)], "length_split.png")
```
"""
import argparse
import json
import math
import os
import pathlib
import re

from tf_esimcse.atomic_files import write_atomic
from tf_esimcse.errors import MatplotlibNotInstalled, PlotError
from tf_esimcse.evaluation.callbacks import SUMMARY_NAMES

__all__ = ["PlotError", "MatplotlibNotInstalled", "read_scalars", "read_run", "run_figure", "plot_run",
           "length_split_figure", "plot_length_split", "sts_table_figure", "plot_sts_table",
           "ablation_table_figure", "plot_ablation_table", "ablation_trajectory_figure", "plot_ablation_trajectory",
           "plot_results_tables"]

STS_TASKS = (("sts12", "STS12"), ("sts13", "STS13"), ("sts14", "STS14"), ("sts15", "STS15"),
             ("sts16", "STS16"), ("stsb_test", "STS-B"), ("sickr_test", "SICK-R"), ("avg", "Avg."))
_SEED_DIR = re.compile(r"seed_(\d+)$")
_DPI = 120
START_LABEL = "start (untrained)"  # the encoder a run starts from, evaluated before step 1
START_COLOR = "0.25"
START_BAR_COLORS = ("0.72", "0.55", "0.85")  # grey bars of untrained starts
AVG_GAP = 0.7  # extra space before the Avg. bars: a summary, not an 8th task


def _matplotlib():
    """`(Figure, FigureCanvasAgg)`, imported on first use."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MatplotlibNotInstalled(
            f'the figures need matplotlib, which is not installed ({e}): pip install "tf_esimcse[plots]"'
        ) from e
    return Figure, FigureCanvasAgg


def _new_figure(figsize):
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, for this figure only
    return fig


def _save_png(fig, path):
    """Render `fig` as a PNG at `path` atomically; creates the parent folder. Returns the path."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise PlotError(f"{path} is a folder: give a file name such as {path / 'figure.png'}")
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=_DPI))


# ---------------------------------------------------------------------------------------------
# Reading a run folder


def _read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlotError(f"{path}: cannot be read as JSON ({type(e).__name__}: {e})") from e


def _event_files(log_dir):
    return sorted(pathlib.Path(log_dir).glob("events.out.tfevents.*"))


def _file_events(path):
    """[(wall_time, step, tag, value)] of one event file's numeric summaries, in file order
    (text summaries skipped); the file's first wall time (or None for an empty file): that of its
    first summary, to the microsecond (the file-version record that opens a file has whole
    seconds only), else that of its first record."""
    import tensorflow as tf

    rows, first_time, opened = [], None, None
    try:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            if opened is None:
                opened = event.wall_time
            if first_time is None and event.summary.value:
                first_time = event.wall_time
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.dtype.kind in "SUO" or array.size != 1:  # text and non-scalar summaries
                        continue
                    number = float(array.reshape(()))
                else:
                    number = float(value.simple_value)
                rows.append((event.wall_time, int(event.step), value.tag, number))
    except tf.errors.DataLossError:  # a file still being written ends mid-record: keep what was read
        pass
    return rows, first_time if first_time is not None else opened


def _natural(name):
    """A file name's sort key with its numbers compared as numbers (writer 10 after writer 9)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _files_in_time_order(log_dir):
    files = []
    for path in _event_files(log_dir):
        rows, first_time = _file_events(path)
        files.append((first_time if first_time is not None else math.inf, _natural(path.name), rows))
    return [rows for _, _, rows in sorted(files, key=lambda f: (f[0], f[1]))]


def read_scalars(log_dir):
    """Every numeric scalar of the TensorBoard event files in `log_dir` (not its sub-folders).

    Args:
        log_dir: str or path-like, e.g. `<run_dir>/logs/validation`.

    Returns:
        {tag: [(step, value), ...]} sorted by step; for a step written more than once (a resumed
        run replays the steps after its last backup) the latest write wins. Tensor-valued scalar
        summaries (Keras 3, `tf.summary.scalar`) and `simple_value` ones are both read; text
        summaries are skipped. {} when there are no event files.
    """
    tags = {}
    for rows in _files_in_time_order(log_dir):
        for _, step, tag, value in rows:
            tags.setdefault(tag, {})[step] = value
    return {tag: sorted(points.items()) for tag, points in tags.items()}


def _chunk_steps(config):
    """Training steps per Keras epoch (backup chunk) from a run's config, or None if unknown."""
    backup, steps = int(config.get("backup_steps") or 0), int(config.get("steps") or 0)
    if backup and (not steps or backup <= steps):
        return backup
    return steps or None


def _train_curves(log_dir, chunk_steps=None):
    """The `batch_*` scalars of `log_dir`, each part of a resumed run shifted to its global steps.

    Returns:
        ({tag without "batch_": [(step, value)]}, number of parts that could not be placed).
    """
    parts = []
    for rows in _files_in_time_order(log_dir):
        batch, first_epoch, before_epoch = {}, None, 0
        for _, step, tag, value in rows:
            if tag.startswith("batch_"):
                batch.setdefault(tag[len("batch_"):], []).append((step, value))
                if first_epoch is None:
                    before_epoch = max(before_epoch, step)
            elif tag.startswith("epoch_") and first_epoch is None:
                first_epoch = step
        if batch:
            parts.append((batch, first_epoch, before_epoch))
    if chunk_steps is None:  # a run still training has no results.json: estimate from a fresh part
        fresh = [before for _, first, before in parts if first == 0 and before]
        chunk_steps = fresh[0] if fresh else None

    curves, unplaced = {}, 0
    for i, (batch, first_epoch, _) in enumerate(parts):
        if first_epoch == 0 or (first_epoch is None and i == 0):
            offset = 0
        elif first_epoch is not None and chunk_steps:
            offset = first_epoch * chunk_steps
        else:
            unplaced += 1
            continue
        for name, points in batch.items():
            # The resumed part replays the steps after the backup: its values replace the earlier ones.
            kept = [p for p in curves.get(name, []) if p[0] <= offset]
            curves[name] = kept + [(step + offset, value) for step, value in points]
    return curves, unplaced


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def read_run(run_dir):
    """What `plot_run` draws for one run folder (not a seeds folder).

    Args:
        run_dir: str or path-like. A folder written by `tf_esimcse.training.run_training`.

    Returns:
        A dict: "train" ({name: [(step, value)]} of the batch-level TensorBoard scalars, with the
        "batch_" prefix removed: "loss", "contrastive_loss", "learning_rate", ...), "unplaced"
        (event files of a resumed run that could not be placed on the step axis), "evaluations"
        (list of {"step", "stsb_dev", "alignment", "uniformity"}, sorted by step),
        "evaluations_source" ("evaluations.json", "results.json", "tensorboard" or None),
        "results" (the `results.json` dict, or None), "log_dir", "start" (the untrained encoder's
        {"step": 0, "stsb_dev", "alignment", "uniformity"}: the step-0 evaluation, else
        `results["start"]`; None for a run without one) and "model" (the model the run started
        from, `config["model"]`, or None).
    """
    run_dir = pathlib.Path(run_dir)
    results = _read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else None
    config = (results or {}).get("config") or {}
    log_dir = pathlib.Path(config["log_dir"]) if config.get("log_dir") else run_dir / "logs"
    if not log_dir.is_dir():
        log_dir = run_dir / "logs"
    train, unplaced = _train_curves(log_dir / "train", _chunk_steps(config) if config else None)

    evaluations, source = None, None
    if (run_dir / "evaluations.json").is_file():
        evaluations, source = _read_json(run_dir / "evaluations.json"), "evaluations.json"
    elif results is not None and results.get("evaluations"):
        evaluations, source = results["evaluations"], "results.json"
    else:
        scalars = read_scalars(log_dir / "validation")
        by_step = {}
        for key, tag in SUMMARY_NAMES.items():
            for step, value in scalars.get(tag, []):
                by_step.setdefault(step, {"step": step})[key] = value
        if by_step:
            evaluations, source = list(by_step.values()), "tensorboard"
    if evaluations is not None:
        if not isinstance(evaluations, list) or not all(isinstance(r, dict) and "step" in r for r in evaluations):
            raise PlotError(f"{run_dir / source}: expected a list of {{'step', 'stsb_dev', 'alignment', "
                            f"'uniformity'}} records")
        evaluations = sorted(({"step": int(r["step"]), **{k: _number(r.get(k)) for k in _EVAL_KEYS}}
                              for r in evaluations), key=lambda r: r["step"])
    evaluations = evaluations or []
    return {"train": train, "unplaced": unplaced, "evaluations": evaluations,
            "evaluations_source": source, "results": results, "log_dir": log_dir,
            "start": _start_of(evaluations, results), "model": _start_model(run_dir, results)}


_EVAL_KEYS = ("stsb_dev", "alignment", "uniformity")


def _start_of(evaluations, results):
    """The untrained encoder's evaluation: the step-0 record, else `results["start"]`; None for a
    run from before the start was evaluated."""
    for r in evaluations:
        if r["step"] == 0:
            return {"step": 0, **{k: r[k] for k in _EVAL_KEYS}}
    start = (results or {}).get("start")
    if isinstance(start, dict) and any(_finite(start.get(k)) for k in _EVAL_KEYS):
        return {"step": 0, **{k: _number(start.get(k)) for k in _EVAL_KEYS}}
    return None


def _start_model(run_dir, results):
    """The model a run started from (its config's "model"), from results.json or, for a run still
    training, run_config.json; None when neither says."""
    for config in ((results or {}).get("config"), _json_or_none(pathlib.Path(run_dir) / "run_config.json")):
        if isinstance(config, dict):
            model = config.get("model") or (config.get("config") or {}).get("model")
            if model:
                return str(model)
    return None


def _json_or_none(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _has_data(run):
    return bool(run["train"] or run["evaluations"])


def _seed_dirs(folder):
    seeds = []
    for child in folder.iterdir():
        match = _SEED_DIR.match(child.name)
        if match and child.is_dir():
            seeds.append((int(match.group(1)), child))
    return sorted(seeds)


def _read_runs(run_dir):
    """[(label or None, read_run dict)]: one per seed with data, or the single run."""
    run_dir = pathlib.Path(run_dir)
    expected = ("expected evaluations.json, or TensorBoard event files under logs/train and logs/validation "
                "(as a recipe's run leaves them), or seed_<n>/ folders of such runs")
    if not run_dir.is_dir():
        raise PlotError(f"{run_dir}: no such folder; {expected}")
    seeds = _seed_dirs(run_dir)
    if seeds:
        runs = [(f"seed {seed}", read_run(path)) for seed, path in seeds]
        runs = [(label, run) for label, run in runs if _has_data(run)]
        if not runs:
            names = ", ".join(path.name for _, path in seeds)
            raise PlotError(f"{run_dir}: none of its seed folders ({names}) has training logs or evaluations yet; "
                            f"{expected}")
        return runs
    run = read_run(run_dir)
    if not _has_data(run):
        raise PlotError(f"{run_dir}: no training logs or evaluations to plot; {expected}")
    return [(None, run)]


# ---------------------------------------------------------------------------------------------
# The run figure


def _color(i):
    return f"C{i % 10}"


def _no_data(ax, text):
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4", wrap=True)


def _loss_curves(train):
    """[(legend name, points)]: the total loss, then each `*_loss` term that differs from it (a
    single-term objective logs the same curve twice; it is drawn once, its term named)."""
    terms = sorted(n for n in train if n.endswith("_loss"))
    if "loss" not in train:
        return [(name, train[name]) for name in terms]
    same = [name for name in terms if train[name] == train["loss"]]
    total = "loss" + (f" (= {', '.join(same)})" if same else "")
    return [(total, train["loss"])] + [(name, train[name]) for name in terms if name not in same]


def _integer_steps(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_losses(ax, runs):
    styles = ("-", "--", ":", "-.")
    drawn = unplaced = 0
    for i, (label, run) in enumerate(runs):
        unplaced += run["unplaced"]
        for j, (name, points) in enumerate(_loss_curves(run["train"])):
            steps, values = zip(*points)
            if label is None:  # one run: a color per term
                ax.plot(steps, values, color=_color(j), lw=1.8 if j == 0 else 1.2, label=name)
            else:  # seeds: a color per seed, a line style per term
                ax.plot(steps, values, color=_color(i), ls=styles[j % len(styles)], lw=1.2, label=f"{label} {name}")
            drawn += 1
    ax.set_title("training loss (running mean, as logged)", fontsize=10)
    ax.set_xlabel("step")
    _integer_steps(ax)
    if unplaced:
        ax.text(0.01, 0.01, f"{unplaced} resumed part(s) not placed on the step axis yet", transform=ax.transAxes,
                fontsize=7, color="tab:red")
    if drawn:
        ax.legend(fontsize=7)
    else:
        _no_data(ax, "no batch_loss scalars under logs/train")


def _draw_learning_rate(ax, runs):
    drawn = False
    for i, (label, run) in enumerate(runs):
        points = run["train"].get("learning_rate")
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, color=_color(i), label=label)
            drawn = True
    ax.set_title("learning rate", fontsize=10)
    ax.set_xlabel("step")
    _integer_steps(ax)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if not drawn:
        _no_data(ax, "no batch_learning_rate scalars under logs/train")
    elif len(runs) > 1:
        ax.legend(fontsize=7)


def _best(run):
    """The first evaluation with the highest finite STS-B dev (the callback keeps strictly
    greater) among the trained steps; the untrained start (step 0) is the baseline, a candidate
    only when the run kept it (`--keep-start`: results.json's best_step is 0)."""
    start_counts = (run.get("results") or {}).get("best_step") == 0
    best = None
    for r in run["evaluations"]:
        candidate = (r["step"] > 0 or start_counts) and _finite(r["stsb_dev"])
        if candidate and (best is None or r["stsb_dev"] > best["stsb_dev"]):
            best = r
    return best


def _starts(runs):
    """[(run index, start)] of the runs that evaluated their start, one per distinct start (the
    seeds of a folder start from the same encoder: one baseline, not one per seed)."""
    seen, out = set(), []
    for i, (_, run) in enumerate(runs):
        start = run.get("start")
        if start is None:
            continue
        key = tuple(round(start[k], 6) if _finite(start[k]) else None for k in _EVAL_KEYS)
        if key not in seen:
            seen.add(key)
            out.append((i, start))
    return out


def _start_color(i, starts):
    return START_COLOR if len(starts) == 1 else _color(i)


def _draw_stsb(ax, runs):
    drawn = nan_marked = False
    all_steps = [r["step"] for _, run in runs for r in run["evaluations"]]
    middle = (min(all_steps) + max(all_steps)) / 2 if all_steps else 0
    starts = _starts(runs)
    for i, start in starts:
        if _finite(start["stsb_dev"]):
            ax.axhline(start["stsb_dev"], color=_start_color(i, starts), ls="--", lw=1.2, zorder=1, gid="start",
                       label=f"{START_LABEL} {start['stsb_dev']:.2f}")
            drawn = True
    for i, (label, run) in enumerate(runs):
        evaluations = run["evaluations"]
        if not evaluations:
            continue
        finite = [r for r in evaluations if _finite(r["stsb_dev"])]
        ax.plot([r["step"] for r in finite], [r["stsb_dev"] for r in finite], color=_color(i), marker="o",
                markersize=3, label=label)
        nan_steps = [r["step"] for r in evaluations if not _finite(r["stsb_dev"])]
        if nan_steps:  # collapsed embeddings: marked on the step axis
            ax.plot(nan_steps, [0.0] * len(nan_steps), transform=ax.get_xaxis_transform(), marker="x", ls="none",
                    color="tab:red", clip_on=False, label=None if nan_marked else "NaN evaluation")
            nan_marked = True
        best = _best(run)
        if best is not None:
            text = f"best {best['stsb_dev']:.2f} @ {best['step']}"
            # seeds: each best in the legend (labels beside close stars would overlap)
            ax.plot([best["step"]], [best["stsb_dev"]], marker="*", markersize=13, color=_color(i),
                    markeredgecolor="black", ls="none", zorder=3, label=None if label is None else f"{label} {text}")
            if label is None:
                right = best["step"] > middle  # the label on the inner side of the star
                ax.annotate(text, (best["step"], best["stsb_dev"]), xytext=(-6 if right else 6, 6),
                            textcoords="offset points", fontsize=7, color=_color(i), ha="right" if right else "left")
        drawn = True
    ax.set_title("STS-B dev Spearman x100 (* best" + (", -- untrained start)" if starts else ")"), fontsize=10)
    ax.set_xlabel("step")
    _integer_steps(ax)
    ax.margins(x=0.05, y=0.15)
    if not drawn:
        _no_data(ax, "no evaluations (evaluations.json or logs/validation)")
    elif len(runs) > 1 or nan_marked or starts:
        ax.legend(fontsize=7)


def _draw_alignment_uniformity(ax, runs):
    drawn = False
    for i, (label, run) in enumerate(runs):
        points = [(r["uniformity"], r["alignment"], r["step"]) for r in run["evaluations"]
                  if _finite(r["uniformity"]) and _finite(r["alignment"])]
        if not points:
            continue
        xs, ys, steps = zip(*points)
        ax.plot(xs, ys, color=_color(i), marker="o", markersize=3, lw=0.6, label=label)
        for (x0, y0, _), (x1, y1, _) in zip(points, points[1:]):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": _color(i), "lw": 0.8})
        ends = [points[0]] if len(points) == 1 else [points[0], points[-1]]
        for x, y, step in ends:
            if step == 0:
                continue  # the start's star and legend name it
            ax.annotate(f"step {step}", (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6,
                        color=_color(i))
        drawn = True
    starts = [(i, s) for i, s in _starts(runs) if _finite(s["uniformity"]) and _finite(s["alignment"])]
    for n, (i, start) in enumerate(starts):
        ax.plot([start["uniformity"]], [start["alignment"]], marker="*", markersize=14, ls="none",
                color=_start_color(i, starts), markeredgecolor="black", zorder=4, gid="start",
                label=START_LABEL if n == 0 else None)
        drawn = True
    ax.set_title("alignment vs uniformity on STS-B dev (lower-left is better)", fontsize=10)
    ax.set_xlabel("uniformity")
    ax.set_ylabel("alignment")
    ax.margins(0.12)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # readable labels even for a tiny range
    if not drawn:
        _no_data(ax, "no alignment/uniformity evaluations")
    elif len(runs) > 1 or starts:
        ax.legend(fontsize=7)


def _short_model(model, limit=60):
    """A model path short enough for a title: its last folders when the whole is longer than `limit`."""
    model = str(model)
    if len(model) <= limit:
        return model
    parts = pathlib.PurePath(model).parts
    tail = ""
    for part in reversed(parts):
        candidate = part if not tail else f"{part}/{tail}"
        if len(candidate) + 2 > limit:
            break
        tail = candidate
    return "…/" + tail if tail else model[:limit - 1] + "…"


def _folder_name(path):
    """A run folder's name; a seed's folder with its parent's (`unsup_simcse/seed_1`)."""
    path = pathlib.Path(path).resolve()
    return f"{path.parent.name}/{path.name}" if _SEED_DIR.match(path.name) and path.parent.name else path.name


def _run_name(run_dir, model):
    """`<run folder> (from <starting model>)`, the first line of a run's title."""
    name = _folder_name(run_dir)
    return f"{name} (from {_short_model(model)})" if model else name


def _run_title(run_dir, runs):
    model = next((run["model"] for _, run in runs if run.get("model")), None)
    head = _run_name(run_dir, model)
    if runs[0][0] is not None:
        return f"{head}: {len(runs)} seed{'s' if len(runs) != 1 else ''} ({', '.join(l for l, _ in runs)})"
    run = runs[0][1]
    results = run["results"] or {}
    start = run.get("start") or {}
    parts = []
    if results.get("status") == "diverged":
        parts.append(f"diverged: {results.get('reason', '')}")
    best = _best(run)
    if best is not None:
        text = f"best STS-B dev {best['stsb_dev']:.2f} at step {best['step']}"
        if best["step"] == 0:
            text += " (the untrained start, kept)"
        elif _finite(start.get("stsb_dev")):
            if best["stsb_dev"] < start["stsb_dev"]:
                text += f", below the start's {start['stsb_dev']:.2f}"
            elif best["stsb_dev"] == start["stsb_dev"]:
                text += f", no better than the start's {start['stsb_dev']:.2f}"
            else:
                text += f" (start {start['stsb_dev']:.2f})"
        parts.append(text)
    avg = (results.get("test") or {}).get("avg")
    if _finite(avg):
        start_avg = ((results.get("start") or {}).get("test") or {}).get("avg")
        parts.append(f"test Avg. {avg:.2f}" + (f" (start {start_avg:.2f})" if _finite(start_avg) else ""))
    return f"{head}\n" + "; ".join(parts) if parts else head


def run_figure(run_dir):
    """The figure `plot_run` saves, as a `matplotlib.figure.Figure` with 4 axes (see the module
    docstring): loss, learning rate, STS-B dev, alignment vs uniformity. Its title names the run
    folder and the model it started from.

    Raises:
        PlotError: the folder has no training logs nor evaluations (the message names it).
        MatplotlibNotInstalled: matplotlib is missing.
    """
    runs = _read_runs(run_dir)
    fig = _new_figure((11, 8))
    (loss, lr), (stsb, align) = fig.subplots(2, 2)
    _draw_losses(loss, runs)
    _draw_learning_rate(lr, runs)
    _draw_stsb(stsb, runs)
    _draw_alignment_uniformity(align, runs)
    fig.suptitle(_run_title(run_dir, runs), fontsize=11)
    return fig


def plot_run(run_dir, output=None):
    """Draw a training run (or a folder of seeds, one line per seed) as one PNG.

    Args:
        run_dir: str or path-like. A recipe's output folder (`results.json`, `evaluations.json`,
            `logs/`), or a seeds folder with `seed_<n>/` runs. A run still training can be drawn.
        output: str, path-like or None. Where to write the PNG. Defaults to `<run_dir>/run.png`.

    Returns:
        The `pathlib.Path` of the PNG written.

    Raises:
        PlotError: nothing to plot in `run_dir` (the message names the folder and what was expected).
        MatplotlibNotInstalled: matplotlib is missing (`pip install "tf_esimcse[plots]"`).
    """
    fig = run_figure(run_dir)
    return _save_png(fig, pathlib.Path(run_dir) / "run.png" if output is None else output)


# ---------------------------------------------------------------------------------------------
# Evaluation results


def _label_of(results):
    config = results.get("config") or {}
    if not results.get("model") and config.get("output_dir"):
        return _folder_name(config["output_dir"])  # a run's results.json
    where = results.get("model") or "model"
    return pathlib.PurePath(str(where)).name or str(where)


def _labelled(results):
    """[(label, results dict)] from one dict, a JSON path, or a list of (label, dict or path)."""
    def load(value):
        if isinstance(value, (str, os.PathLike)):
            value = _read_json(value)
        if not isinstance(value, dict):
            raise PlotError(f"expected a results dict (as `tf-esimcse evaluate --output` writes it), got "
                            f"{type(value).__name__}")
        return value

    if isinstance(results, (dict, str, os.PathLike)):
        one = load(results)
        return [(_label_of(one), one)]
    pairs = []
    for item in results:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise PlotError(f"expected (label, results) pairs, got {item!r:.80}")
        pairs.append((str(item[0]), load(item[1])))
    if not pairs:
        raise PlotError("no results to plot")
    return pairs


def _results_name(label, results):
    """A label as a title names it: a run's label with the model it started from, an evaluated
    model's with its pooler."""
    model = (results.get("config") or {}).get("model")
    name = _short_model(label)
    if model:
        return f"{name} (from {_short_model(model)})"
    if results.get("pooler"):
        return f"{name} (pooler {results['pooler']})"
    return name


def _figure_title(pairs, what):
    """`<model or run names>` then, on a second line, what the figure shows."""
    names = [_results_name(label, results) for label, results in pairs]
    return f"{' vs '.join(names)}\n{what}"


def _start_results(results):
    """The untrained start's scores of a run's results (`results["start"]["test"]`, or the scores
    at `results["start"]`'s top level), or None."""
    start = results.get("start")
    if not isinstance(start, dict):
        return None
    return start["test"] if isinstance(start.get("test"), dict) else start


def _start_series(series, baselines):
    """[(label, values, color)] of the untrained starts to draw as grey bars: one series when
    every drawn model started from the same scores (methods compared from one encoder), else one
    per model, named after it."""
    starts = [(label, values) for (label, _), values in zip(series, baselines or []) if values is not None]
    if not starts:
        return []
    def same(a, b):
        return all((not _finite(x) and not _finite(y)) or (_finite(x) and _finite(y) and abs(x - y) < 1e-9)
                   for x, y in zip(a, b))
    if all(same(values, starts[0][1]) for _, values in starts):
        return [(START_LABEL, starts[0][1], START_BAR_COLORS[0])]
    return [(f"{label}: {START_LABEL}", values, START_BAR_COLORS[i % len(START_BAR_COLORS)])
            for i, (label, values) in enumerate(starts)]


def _grouped_bars(ax, groups, series, baselines=None, apart_last=False):
    """Bars of `series` ([(label, [value per group])]) side by side in each group; NaN as "n/a".

    Args:
        baselines: None, or one entry per series: None or [value per group] of the untrained
            start, drawn as grey bars (gid "start") on the left of each group.
        apart_last: the last group is a summary (Avg.), not one more task: set apart by a gap, a
            shaded band and a dotted line, its bars hatched (gid "avg") and its tick label bold.
    """
    starts = _start_series(series, baselines)
    drawn = [(label, values, color, "start") for label, values, color in starts]
    drawn += [(label, values, _color(i), None) for i, (label, values) in enumerate(series)]
    n = len(drawn)
    width = 0.8 / n
    centers = [g + (AVG_GAP if apart_last and g == len(groups) - 1 else 0.0) for g in range(len(groups))]
    for i, (label, values, color, gid) in enumerate(drawn):
        xs = [c + (i - (n - 1) / 2) * width for c in centers]
        heights = [v if _finite(v) else 0.0 for v in values]
        bars = ax.bar(xs, heights, width=width * 0.95, color=color, label=label)
        for bar in bars:
            bar.set_gid(gid)
        if apart_last:
            bars[-1].set_hatch("///")
            bars[-1].set_edgecolor("white")
            bars[-1].set_gid(gid or "avg")
        texts = [f"{v:.2f}" if _finite(v) else "n/a" for v in values]
        ax.bar_label(bars, labels=texts, fontsize=7 if n <= 2 else 6, padding=2, rotation=0 if n <= 2 else 90)
    ax.set_xticks(centers, groups)
    if apart_last:
        left = (centers[-2] + centers[-1]) / 2
        right = 2 * centers[-1] - left  # the band centred on the Avg. bars
        # a band (a collection, not a patch: ax.patches stays the bars) and a dotted line
        ax.fill_between([left, right], 0, 1, transform=ax.get_xaxis_transform(), color="0.93", zorder=0, lw=0)
        ax.axvline(left, color="0.6", lw=0.8, ls=":", zorder=0)
        ax.get_xticklabels()[-1].set_fontweight("bold")
        ax.set_xlim(centers[0] - 0.5, right)
    ax.axhline(0, color="0.3", lw=0.6)
    ax.margins(y=0.15)
    if n > 1:  # beside the axes, never over a bar
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _length_split_of(label, results):
    split = results.get("length_split") or (results.get("test") or {}).get("length_split")
    if split is None and "short_diff" in results:
        split = results
    if not isinstance(split, dict) or not {"short_diff", "long_diff", "n_short", "n_long"} <= set(split):
        raise PlotError(f"{label}: no length split in the results: expected results['length_split'] with "
                        f"short_diff, long_diff, n_short, n_long (`tf-esimcse evaluate --length-split --output "
                        f"FILE`, or a training run's results.json)")
    return split


def _start_length_split(results):
    split = (_start_results(results) or {}).get("length_split")
    if isinstance(split, dict) and {"short_diff", "long_diff"} <= set(split):
        return [_number(split["short_diff"]), _number(split["long_diff"])]
    return None


def length_split_figure(results):
    """The figure `plot_length_split` saves (one axes), titled with the model(s) or run(s)."""
    labelled = _labelled(results)
    pairs = [(label, _length_split_of(label, r)) for label, r in labelled]
    thresholds = {s.get("threshold") for _, s in pairs}
    units = {s.get("unit") for _, s in pairs} - {None}
    t = thresholds.pop() if len(thresholds) == 1 else "t"
    same_n = len({(s["n_short"], s["n_long"]) for _, s in pairs}) == 1
    groups = [f"length diff <= {t}", f"length diff > {t}"]
    if same_n:
        groups = [f"{groups[0]}\n(n={pairs[0][1]['n_short']})", f"{groups[1]}\n(n={pairs[0][1]['n_long']})"]
    series = []
    for label, split in pairs:
        name = label
        if not same_n:
            name += f" (n = {split['n_short']} / {split['n_long']})"
        if t == "t":
            name += f" (t={split.get('threshold')})"
        series.append((name, [_number(split["short_diff"]), _number(split["long_diff"])]))

    baselines = [_start_length_split(r) for _, r in labelled]
    bars = len(series) + len(_start_series(series, baselines))
    fig = _new_figure((max(5.0, 2.0 + 1.2 * bars) + (1.8 if bars > 1 else 0), 4.4))
    ax = fig.subplots()
    _grouped_bars(ax, groups, series, baselines=baselines)
    ax.set_ylabel("STS-B test Spearman x100")
    unit = f" ({units.pop()})" if len(units) == 1 else ""
    ax.set_title(_figure_title(labelled, f"STS-B test by sentence-length difference{unit}"), fontsize=10)
    return fig


def plot_length_split(results, output):
    """Grouped bars of STS-B test Spearman for the pairs whose sentences differ in length by at
    most the threshold and by more (ESimCSE's Table 1), n in the labels; the title names the
    model(s); a run's untrained start (`results["start"]["test"]["length_split"]`), when there,
    as grey bars beside.

    Args:
        results: a results dict with "length_split" (`tf-esimcse evaluate --length-split`, or a
            run's `results.json`, where it is under "test"), a path to such a JSON file, or a
            list of `(label, results)` pairs to draw several models side by side.
        output: str or path-like. The PNG to write.

    Returns:
        The `pathlib.Path` of the PNG written.

    Raises:
        PlotError: an entry has no length split (the message names it).
        MatplotlibNotInstalled: matplotlib is missing.
    """
    return _save_png(length_split_figure(results), output)


def _sts_scores_of(label, results):
    top_level = any(key in results for key, _ in STS_TASKS)
    scores = results if top_level or not isinstance(results.get("test"), dict) else results["test"]
    missing = [key for key, _ in STS_TASKS if key not in scores]
    if missing:
        raise PlotError(f"{label}: the results lack {', '.join(missing)}: expected the 7 STS tasks and avg "
                        f"(`tf-esimcse evaluate --output FILE`, or a training run's results.json with final_eval)")
    return [_number(scores[key]) for key, _ in STS_TASKS]


def _start_sts_scores(results):
    start = _start_results(results)
    if not start or not any(_finite(start.get(key)) for key, _ in STS_TASKS):
        return None
    return [_number(start.get(key)) for key, _ in STS_TASKS]


def sts_table_figure(results):
    """The figure `plot_sts_table` saves (one axes), titled with the model(s) or run(s)."""
    pairs = _labelled(results)
    series = [(label, _sts_scores_of(label, r)) for label, r in pairs]
    baselines = [_start_sts_scores(r) for _, r in pairs]
    bars = len(series) + len(_start_series(series, baselines))
    fig = _new_figure((max(6.5, 2.5 + len(STS_TASKS) * (0.35 + 0.2 * bars)) + (1.8 if bars > 1 else 0), 4.4))
    ax = fig.subplots()
    _grouped_bars(ax, [name for _, name in STS_TASKS], series, baselines=baselines, apart_last=True)
    ax.set_ylabel("Spearman x100")
    ax.set_title(_figure_title(pairs, "STS12-16 ('all' setting), STS-B and SICK-R test; Avg. of the 7"), fontsize=10)
    return fig


def plot_sts_table(results, output):
    """Bars of the 7 STS tasks (STS12-16, STS-B test, SICK-R test) and, set apart, their average,
    for one results dict or several `(label, results)` pairs side by side; the title names the
    model(s); a run's untrained start (`results["start"]["test"]`), when there, as grey
    bars beside.

    Args:
        results: as for `plot_length_split` (the scores at the top level, as `tf-esimcse
            evaluate` writes them, or under "test" in a run's `results.json`).
        output: str or path-like. The PNG to write.

    Returns:
        The `pathlib.Path` of the PNG written.
    """
    return _save_png(sts_table_figure(results), output)


# ---------------------------------------------------------------------------------------------
# Ablation tables (recipes/ablations.py)


def _ablation_title(name, title, model):
    return f"{name}: {title}" + (f"\nevery row trained from {_short_model(model)}" if model else "")


def ablation_table_figure(rows, name, title, start_stsb_dev=None, model=None):
    """The figure `plot_ablation_table` saves (one axes)."""
    shown = [r for r in rows if r["status"] == "ok" or r.get("paper") is not None]
    fig = _new_figure((8, 0.45 * len(shown) + 2.2))
    ax = fig.subplots()
    ys = list(range(len(shown)))[::-1]
    means = [(r.get("stsb_dev") or {}).get("mean") or 0.0 for r in shown]
    stds = [(r.get("stsb_dev") or {}).get("std") or 0.0 for r in shown]
    ax.barh(ys, means, xerr=stds, color="tab:blue", alpha=0.75, capsize=3, label="ours (mean ± std)")
    papers = [(y, r["paper"]) for y, r in zip(ys, shown) if r.get("paper") is not None]
    if papers:
        ax.scatter([p for _, p in papers], [y for y, _ in papers], marker="D", color="tab:red", zorder=3,
                   label="paper")
    ax.set_yticks(ys, [r["label"] + ("" if r["status"] == "ok" else f" ({r['status']})") for r in shown])
    values = [m for m in means if m] + [p for _, p in papers]
    if _finite(start_stsb_dev):
        ax.axvline(start_stsb_dev, color="gray", linestyle="--", gid="start",
                   label=f"{START_LABEL} ({start_stsb_dev:.1f})")
        values.append(start_stsb_dev)
    if values:
        ax.set_xlim(max(0.0, min(values) - 10), min(100.0, max(values) + 5))
    ax.set_xlabel("STS-B dev Spearman x100")
    ax.set_title(_ablation_title(name, title, model), fontsize=10)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)  # never over a bar
    return fig


def plot_ablation_table(rows, output, name, title, start_stsb_dev=None, model=None):
    """Horizontal bars of each row's STS-B dev (mean, error bar = sample std over seeds), the
    paper's figure as a red diamond, the untrained start as a dashed line: an ablation table
    (`recipes/ablations.py`'s table.png).

    Args:
        rows: the table's rows as its table.json holds them: dicts with "label", "status" ("ok",
            "diverged", "unavailable"), "paper" (a number or None) and, for a trained row,
            "stsb_dev" {"mean", "std"}. A row neither trained nor with a paper figure is left out.
        output: str or path-like. The PNG to write.
        name: the table's name (e.g. "simcse-dropout"); title: what it compares. Both in the title.
        start_stsb_dev: the starting encoder's STS-B dev, untrained, or None.
        model: the encoder every row trains from, named in the title, or None.

    Returns:
        The `pathlib.Path` of the PNG written.
    """
    return _save_png(ablation_table_figure(rows, name, title, start_stsb_dev, model), output)


def ablation_trajectory_figure(trajectories, name, start=None, model=None):
    """The figure `plot_ablation_trajectory` saves (one axes)."""
    fig = _new_figure((7.5, 5.2))
    ax = fig.subplots()
    for i, (label, points) in enumerate(trajectories):
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3, color=_color(i), label=label)
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": _color(i), "lw": 0.8})
    if start is not None and all(_finite(v) for v in start):
        ax.plot([start[0]], [start[1]], marker="*", markersize=14, ls="none", color="black", zorder=4, gid="start",
                label=START_LABEL)
    ax.set_xlabel("uniformity (lower is better)")
    ax.set_ylabel("alignment (lower is better)")
    ax.margins(0.08)
    ax.set_title(_ablation_title(name, "alignment and uniformity during training", model), fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # off the curves
    return fig


def plot_ablation_trajectory(trajectories, output, name, start=None, model=None):
    """Alignment against uniformity at every evaluation of each row (SimCSE's Figure 2): lower-left
    is better; arrows follow training from the untrained start (a black star).

    Args:
        trajectories: [(row label, [(uniformity, alignment), ...] in step order)]; an empty list
            of points leaves the row out.
        output: str or path-like. The PNG to write.
        name: the table's name, in the title.
        start: (uniformity, alignment) of the untrained start, or None.
        model: the encoder every row trains from, named in the title, or None.

    Returns:
        The `pathlib.Path` of the PNG written.
    """
    return _save_png(ablation_trajectory_figure(trajectories, name, start, model), output)


# ---------------------------------------------------------------------------------------------
# The committed result tables (docs/results/<name>/table.json)


def _table_row_cells(tables, row):
    """A table.json row's cells: those of the row it is "same_as" (another table's), its own on top."""
    cells = {}
    if "same_as" in row:
        ref = row["same_as"]
        cells.update(_table_row_cells(tables, tables[ref["table"]]["rows"][ref["row"]]))
    cells.update(row.get("cells", {}))
    return cells


def _cell_mean_std(cell):
    """{"mean", "std"} of a table.json cell (std None for a single number), or None for text."""
    if isinstance(cell, dict) and "mean" in cell:
        return {"mean": float(cell["mean"]), "std": float(cell["std"])}
    if isinstance(cell, dict) and "value" in cell:
        return {"mean": float(cell["value"]), "std": None}
    return {"mean": float(cell), "std": None} if _finite(cell) else None


def _ablation_figure_rows(tables, table, figure):
    """`plot_ablation_table`'s rows and start from a table.json: its labelled rows, STS-B dev, the
    paper's figure from `figure["paper_column"]`, the start from row `figure["start_row"]`."""
    rows, start = [], None
    for i, row in enumerate(table["rows"]):
        cells = _table_row_cells(tables, row)
        if i == figure.get("start_row"):
            start = (_cell_mean_std(cells.get("stsb_dev")) or {}).get("mean")
        elif row.get("label"):
            paper = cells.get(figure.get("paper_column"))
            rows.append({"label": row["label"], "status": "ok", "stsb_dev": _cell_mean_std(cells.get("stsb_dev")),
                         "paper": float(paper) if _finite(paper) else None})
    return rows, start


def score_by_size_figure(lines, sizes, title, start=None):
    """The figure `plot_score_by_size` saves (one axes)."""
    fig = _new_figure((7.5, 4.4))
    ax = fig.subplots()
    for line in lines:
        means = [c["mean"] for c in line["cells"]]
        stds = [c["std"] or 0.0 for c in line["cells"]]
        ax.errorbar(sizes, means, yerr=stds, color=_color(line.get("color", 0)), marker="o", markersize=4,
                    capsize=3, linestyle="--" if line.get("dashed") else "-", label=line["label"])
    if start is not None:
        ax.plot(sizes, start, color=START_COLOR, linestyle=":", marker=".", label=START_LABEL)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(d) for d in sizes])
    ax.minorticks_off()
    ax.set_xlabel("dimensions kept (the first d, L2-normalised)")
    ax.set_ylabel("7-task STS average (Spearman x100)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig


def plot_score_by_size(lines, sizes, output, title, start=None):
    """Score against embedding size, one line per model (mean, error bar = sample std over seeds):
    Matryoshka against plain training, each cut to every size (`benchmarks/matryoshka_comparison.py`).

    Args:
        lines: list of dicts: "label", "cells" (one {"mean", "std"} per size, std None for one
            number), "color" (an int, the colour cycle's index) and "dashed" (bool).
        sizes: list of int, the x values (log scale, base 2).
        output: str or path-like. The PNG to write.
        title: str.
        start: list of float (one per size), the untrained start, or None.

    Returns:
        The `pathlib.Path` of the PNG written.
    """
    return _save_png(score_by_size_figure(lines, sizes, title, start), output)


def _score_by_size_lines(tables, table, figure):
    """`plot_score_by_size`'s lines and start from a table.json: the columns `d<size>` of the
    rows `figure["lines"]` names ({"row", "color", "dashed"}), the start from `figure["start_row"]`."""
    sizes = list(figure["sizes"])

    def cells(i):
        row = _table_row_cells(tables, table["rows"][i])
        return row, [_cell_mean_std(row.get(f"d{d}")) for d in sizes]

    lines = []
    for spec in figure["lines"]:
        row, values = cells(spec["row"])
        lines.append({"label": row.get("model", ""), "cells": values, "color": spec.get("color", 0),
                      "dashed": bool(spec.get("dashed"))})
    start = None
    if figure.get("start_row") is not None:
        start = [v["mean"] for v in cells(figure["start_row"])[1]]
    return lines, sizes, start


def plot_results_tables(results_dir="docs/results", figures_dir=None):
    """Draw every figure that a committed result table names, from its JSON alone
    (`python -m tf_esimcse.plots`, `make figures`).

    Each `<results_dir>/<name>/table.json` may list "figures": dicts with "file" (the PNG, relative
    to the repository that holds `results_dir/..`), "kind" and its settings. Kind
    "ablation_table": `plot_ablation_table` of the rows with a "label" (STS-B dev mean ± std, the
    paper's figure from the "paper_column" cell), the start from row "start_row", titled with
    "name", "title" and "model". Kind "score_by_size": `plot_score_by_size` of the rows and
    columns it names ("lines", "sizes", "start_row"), titled with "title".

    Args:
        results_dir: str or path-like, the folder of `<name>/table.json` files.
        figures_dir: None to write each figure to its "file"; else a folder to write them into
            under their file names.

    Returns:
        The list of `pathlib.Path` written.

    Raises:
        PlotError: a figure of an unknown kind.
    """
    results_dir = pathlib.Path(results_dir)
    tables = {p.parent.name: _read_json(p) for p in sorted(results_dir.glob("*/table.json"))}
    written = []
    for name, table in tables.items():
        for figure in table.get("figures", []):
            if figure.get("kind") not in ("ablation_table", "score_by_size"):
                raise PlotError(f"{results_dir / name / 'table.json'}: figure kind {figure.get('kind')!r} is not "
                                f"one this function draws (ablation_table, score_by_size)")
            output = (results_dir.parent.parent / figure["file"] if figures_dir is None
                      else pathlib.Path(figures_dir) / pathlib.PurePath(figure["file"]).name)
            if figure["kind"] == "score_by_size":
                lines, sizes, start = _score_by_size_lines(tables, table, figure)
                written.append(plot_score_by_size(lines, sizes, output, figure["title"], start=start))
                continue
            rows, start = _ablation_figure_rows(tables, table, figure)
            written.append(plot_ablation_table(rows, output, figure["name"], figure["title"], start_stsb_dev=start,
                                               model=figure.get("model")))
    return written


def main(argv=None):
    """`python -m tf_esimcse.plots [RESULTS_DIR] [--figures-dir DIR]`: `plot_results_tables`."""
    parser = argparse.ArgumentParser(prog="python -m tf_esimcse.plots",
                                     description="Draw the committed result tables' figures from their JSON.")
    parser.add_argument("results_dir", nargs="?", default="docs/results",
                        help="the folder of <name>/table.json files (default: docs/results)")
    parser.add_argument("--figures-dir", default=None,
                        help="write the PNGs here instead of to each figure's own file (docs/figures/...)")
    args = parser.parse_args(argv)
    for path in plot_results_tables(args.results_dir, args.figures_dir):
        print(path)


if __name__ == "__main__":
    main()
