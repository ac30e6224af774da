"""The model card: `README.md` in every saved model, `--seeds` folder and export, rendered from its results.

A card is never written by hand. It is rendered from what the run recorded:

* a recipe's `model/`: its run folder's `results.json` (settings, method, corpus, steps, seed, the
  7-task table, STS-B dev, alignment/uniformity, the start's row, the environment); while the run
  is still training, `run_config.json` (settings only: the run has not finished);
* a `--seeds` folder: `summary.json` (mean ± sample std per metric) and each `seed_N/results.json`;
* any other `save_pretrained` directory: a minimal card (the architecture and pooler from its own
  files), which says that no training results are recorded with it;
* an export (`tf-esimcse export`, any format): the card of the model it was exported from, plus
  what the export holds and how to load it.

The first line of a card is an HTML comment recording what it was rendered from, so that
`tf-esimcse card --model DIR` can render it again (`write_model_card(DIR)`).

Example:
```python
write_model_card("saved_models/unsup_esimcse/model")   # after editing nothing: the same card again
```
"""
import hashlib
import json
import math
import pathlib
import re

from tf_esimcse.atomic_files import write_text_atomic
from tf_esimcse.config import DEFAULT_MODEL_ALIASES
from tf_esimcse.environment import environment_info
from tf_esimcse.errors import TfEsimcseError
from tf_esimcse.run_folder import MODEL_DIR, RUN_CONFIG, RUNTIME_FIELDS
from tf_esimcse.run_summary import summarize_seeds

__all__ = ["CARD_FILE", "render_model_card", "write_model_card", "examples_sha256"]

CARD_FILE = "README.md"
RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.json"
# The file names of the ONNX and LiteRT exports (`tf-esimcse export --format onnx|litert`).
ONNX_FILE = "model.onnx"
LITERT_FILE = "model.tflite"
# The card's front matter (YAML, as the Hugging Face Hub reads a README) records what it was rendered
# from, as one JSON line (JSON is YAML): `write_model_card(DIR)` reads it to render the card again.
_SOURCE_KEY = "tf_esimcse_card"
_SOURCE_RE = re.compile(r"^tf_esimcse_card: (\{.*\})$")
# The results table: (key in results["test"], column, decimals).
COLUMNS = (
    ("sts12", "STS12", 2), ("sts13", "STS13", 2), ("sts14", "STS14", 2), ("sts15", "STS15", 2),
    ("sts16", "STS16", 2), ("stsb_test", "STS-B", 2), ("sickr_test", "SICK-R", 2), ("avg", "Avg.", 2),
    ("stsb_dev", "STS-B dev", 2), ("alignment", "align", 4), ("uniformity", "uniform", 4),
)
_PACKAGES = ("tensorflow", "tensorflow-text", "keras", "keras-hub", "numpy", "tf_esimcse")


def examples_sha256(examples):
    """The SHA-256 of a corpus as training read it: one line per example (the fields of a pair or
    triplet joined by a tab; a dict of equal-length lists read row by row), each ending in "\\n",
    UTF-8. Two runs with the same value trained on the same examples in the same order."""
    if isinstance(examples, dict):
        examples = list(zip(*examples.values()))
    digest = hashlib.sha256()
    for example in examples:
        line = example if isinstance(example, str) else "\t".join(str(field) for field in example)
        digest.update((line + "\n").encode("utf-8"))
    return digest.hexdigest()


def _read_json(path):
    try:
        value = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, (dict, list)) else None


def _is_model_dir(path):
    return (path / "config.json").is_file() or (path / "metadata.json").is_file()


def _run_dir_of(model):
    """The run folder whose `model/` `model` is (it holds results.json or run_config.json), or None."""
    if model.name != MODEL_DIR:
        return None
    run = model.parent
    return run if (run / RESULTS_FILE).is_file() or (run / RUN_CONFIG).is_file() else None


def _recorded_source(directory):
    """What an existing card says it was rendered from ({"model": ..., "export": ...}), or None."""
    try:
        lines = (directory / CARD_FILE).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        return None
    match = next((m for m in map(_SOURCE_RE.match, lines[1:lines.index("---", 1)]) if m), None)
    if not match:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


# --- formatting ----------------------------------------------------------------------------------

def _number(value, decimals):
    if value is None:
        return "n/a"
    if isinstance(value, str):  # "nan" / "inf" as run_summary writes them
        return value
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{decimals}f}"


def _row(label, scores):
    return f"| {label} | " + " | ".join(_number((scores or {}).get(k), d) for k, _, d in COLUMNS) + " |"


def _table_header():
    return ["| model | " + " | ".join(c for _, c, _ in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]


def _code(text):
    """`text` as inline code in a table cell ("|" escaped, so that it stays one cell)."""
    return f"`{str(text).replace('|', chr(92) + '|')}`" if text not in (None, "") else "n/a"


def _settings_table(config):
    lines = ["| setting | value |", "|---|---|"]
    for key in sorted(config):
        if key in RUNTIME_FIELDS:
            continue
        lines.append(f"| `--{key.replace('_', '-')}` | {_code(json.dumps(config[key]))} |")
    return lines


def _model_files_facts(files):
    """Architecture and pooler read from a model directory's own files (best effort)."""
    facts = {}
    if files is None or not files.is_dir():
        return facts
    ours = _read_json(files / "tf_esimcse.json") or {}
    for key in ("pooler_type", "sequence_length", "normalize", "activation"):
        if key in ours:
            facts[key] = ours[key]
    config = _read_json(files / "config.json") or {}
    inner = config.get("config", config) if isinstance(config, dict) else {}
    for ours_name, names in (("layers", ("num_layers", "num_hidden_layers")),
                             ("hidden size", ("hidden_dim", "hidden_size")),
                             ("attention heads", ("num_heads", "num_attention_heads")),
                             ("vocabulary", ("vocabulary_size", "vocab_size")),
                             ("positions", ("max_sequence_length", "max_position_embeddings"))):
        for name in names:
            if isinstance(inner, dict) and name in inner:
                facts[ours_name] = inner[name]
                break
    if isinstance(config, dict) and config.get("class_name"):
        facts["class"] = config["class_name"]
    facts["keras_hub_task"] = (files / "task.json").is_file()
    return facts


def _facts_lines(facts):
    order = ("class", "layers", "hidden size", "attention heads", "vocabulary", "positions", "pooler_type",
             "sequence_length", "normalize", "activation")
    if not any(key in facts for key in order):
        return []
    lines = ["| architecture | value |", "|---|---|"]
    lines += [f"| {key.replace('_', ' ')} | {_code(json.dumps(facts[key]))} |" for key in order if key in facts]
    return lines


def _environment_lines(env, what):
    if not env:
        return [f"No environment was recorded ({what})."]
    packages = env.get("packages") or {}
    cpu = env.get("cpu") or {}
    tf = env.get("tensorflow") or {}
    git = env.get("git") or None
    devices = tf.get("devices") or []
    accelerators = [d for d in devices if "CPU" not in d]
    lines = [f"Recorded {what}.", "", "| | |", "|---|---|"]
    lines.append("| packages | " + ", ".join(f"{name} {packages.get(name) or 'not installed'}"
                                          for name in _PACKAGES if name in packages) + " |")
    lines.append(f"| python | {env.get('python') or 'n/a'} ({env.get('platform') or 'n/a'}) |")
    cores = cpu.get("usable_cores") or cpu.get("logical_cores")
    lines.append(f"| CPU | {cpu.get('model') or 'n/a'}, {cores or '?'} cores usable |")
    lines.append(f"| GPU / accelerators | {', '.join(accelerators) if accelerators else 'none (CPU only)'} |")
    if git:
        lines.append(f"| commit | `{git.get('commit')}`{' (with uncommitted changes)' if git.get('dirty') else ''} |")
    else:
        lines.append("| commit | n/a (not run from a git checkout) |")
    lines.append(f"| command | {_code(env.get('command'))} |")
    return lines


# --- how to load it ------------------------------------------------------------------------------

def _found(directory, pattern, default):
    """The first file in `directory` matching `pattern` (what the export wrote), else `default`."""
    found = sorted(p.name for p in directory.glob(pattern))
    return found[0] if found else default


def _load_lines(directory, facts, export=None):
    """How to load the model whose card is in `directory` (an export's own format first)."""
    d = str(directory)
    fmt = (export or {}).get("format")
    lines = ["## Use it", ""]
    if fmt == "saved_model":
        lines += ["This folder is a TF Serving SavedModel version (strings in, normalised embeddings out):", "",
                  "```", f"tensorflow_model_server --model_base_path={directory.parent} "
                  f"--model_name={directory.parent.name} --rest_api_port=8501", "```", "",
                  "or in Python (TensorFlow and TF-Text only):", "", "```python", "import tensorflow as tf",
                  "import tensorflow_text  # noqa: F401 (registers the tokenizer's ops)",
                  f"embed = tf.saved_model.load({d!r}).signatures['serving_default']",
                  "vectors = embed(sentences=tf.constant(['A man is playing a guitar.']))['embeddings']", "```"]
        return lines
    if fmt == "sentence-transformers":
        lines += ["This folder is a sentence-transformers / Hugging Face BERT or RoBERTa directory:", "", "```python",
                  "from sentence_transformers import SentenceTransformer",
                  f"vectors = SentenceTransformer({d!r}).encode(['A man is playing a guitar.'])", "```"]
        return lines
    if fmt == "onnx":
        onnx_file = _found(directory, "*.onnx", ONNX_FILE)
        lines += ["This folder holds the ONNX graph (token ids and mask in, the pooled, normalised embedding out) "
                  "and `tokenizer.json`; neither needs this package:", "", "```python",
                  "import numpy as np", "import onnxruntime as ort", "from tokenizers import Tokenizer", "",
                  f"tokenizer = Tokenizer.from_file({d + '/tokenizer.json'!r})",
                  "tokenizer.enable_padding(pad_id=tokenizer.token_to_id('[PAD]'), pad_token='[PAD]')",
                  "batch = tokenizer.encode_batch(['A man is playing a guitar.', 'Someone plays music.'])",
                  "ids = np.array([e.ids for e in batch], dtype=np.int64)",
                  "mask = np.array([e.attention_mask for e in batch], dtype=np.int64)",
                  f"session = ort.InferenceSession({d + '/' + onnx_file!r})",
                  "vectors = session.run(['embeddings'], {'input_ids': ids, 'attention_mask': mask})[0]  # unit rows",
                  "```", "", "See docs/serving.md (ONNX Runtime and LiteRT) for more."]
        return lines
    if fmt == "litert":
        litert_file = _found(directory, "*.tflite", LITERT_FILE)
        lines += ["This folder holds a LiteRT (TensorFlow Lite) flatbuffer (token ids in, the normalised embedding "
                  "out) with its vocabulary beside it:", "", "```python",
                  "from ai_edge_litert.interpreter import Interpreter  # or tf.lite.Interpreter", "",
                  f"runner = Interpreter(model_path={d + '/' + litert_file!r}).get_signature_runner()",
                  "# ids, mask: int32 [batch, len] from tokenizer.json (as for ONNX Runtime)",
                  "vectors = runner(input_ids=ids, attention_mask=mask)['embeddings']", "```", "",
                  "See docs/serving.md (ONNX Runtime and LiteRT) for the int8 variant (`--quantize int8`)."]
        return lines
    if fmt is not None:
        return lines + [f"This folder is a `{fmt}` export; see docs/serving.md."]
    lines += ["In this package (`pip install tf_esimcse`):", "", "```python",
              "from tf_esimcse import SentenceEncoder",
              f"encoder = SentenceEncoder.from_pretrained({d!r})",
              "vectors = encoder.encode(['A man is playing a guitar.'])  # unit-length rows", "```", ""]
    if facts.get("keras_hub_task"):
        lines += ["In keras-hub alone (its `TextEmbedder` pools and normalises as this package does):", "",
                  "```python", "import keras_hub",
                  f"embedder = keras_hub.models.TextEmbedder.from_preset({d!r})",
                  "vectors = embedder.predict(['A man is playing a guitar.'])", "```", ""]
    else:
        lines += [f"In keras-hub alone: `keras_hub.models.BertBackbone.from_preset({d!r})` loads the transformer; "
                  f"its pooler (`{facts.get('pooler_type', '?')}`) has no keras-hub task, so pool as this package "
                  "does.", ""]
    lines += ["Exports (each writes this card beside its files):", "",
              "| target | command |", "|---|---|",
              f"| sentence-transformers | `tf-esimcse export --format sentence-transformers --model {d} --output DIR`"
              ", then `SentenceTransformer(DIR)` |",
              f"| TF Serving | `tf-esimcse export --model {d} --output serving/NAME`, then "
              "`tensorflow_model_server --model_base_path=$PWD/serving/NAME --model_name=NAME --rest_api_port=8501` |",
              f"| ONNX Runtime | `tf-esimcse export --format onnx --model {d} --output DIR`, then "
              f"`onnxruntime.InferenceSession(\"DIR/{ONNX_FILE}\")` with `DIR/tokenizer.json` |",
              f"| LiteRT | `tf-esimcse export --format litert --model {d} --output DIR`, then "
              f"`Interpreter(model_path=\"DIR/{LITERT_FILE}\")` |"]
    return lines


# --- the sections of a run -----------------------------------------------------------------------

def _method(results):
    if results.get("method"):
        return results["method"]
    argv = ((results.get("environment") or {}).get("argv")) or []
    recipe = next((pathlib.Path(a).stem for a in argv if str(a).endswith(".py") and "recipes" in str(a)), None)
    return recipe or "unknown (not recorded)"


def _dev_name(config):
    return f"`{config['dev_file']}`" if config.get("dev_file") else "STS-B dev"


def _corpus_line(results, config):
    corpus = results.get("corpus")
    if not corpus:
        return f"{_code(config.get('corpus'))} (size and hash not recorded by the tf_esimcse that trained it)"
    text = f"{_code(corpus.get('name'))}: {corpus.get('examples'):,} examples, sha256 `{corpus.get('sha256')}`"
    if corpus.get("file_sha256"):
        text += f" (the file's sha256 `{corpus['file_sha256']}`)"
    return text


def _training_lines(results, config, seeds=None):
    steps = results.get("total_steps") or config.get("steps") or f"{config.get('epochs')} epoch(s)"
    lines = ["## Training", "", "| | |", "|---|---|",
             f"| method | `{_method(results)}` |",
             f"| starting encoder | {_code(config.get('model'))}"
             f"{' (all-MiniLM-L6-v2)' if config.get('model') in DEFAULT_MODEL_ALIASES else ''} |",
             f"| corpus | {_corpus_line(results, config)} |",
             f"| steps | {steps} of batch {config.get('batch_size')} |",
             f"| seed{'s' if seeds else ''} | {', '.join(str(s) for s in seeds) if seeds else config.get('seed')} |",
             f"| model selection | {_dev_name(config)} every {config.get('eval_steps')} steps, the best kept"
             f"{' (or the start, --keep-start)' if config.get('keep_start') else ''} |", "",
             "Settings (the recipe's flags):", ""]
    return lines + _settings_table(config)


def _run_result_lines(results):
    lines = ["## Results", ""]
    if results.get("status") == "diverged":
        return lines + [f"**Training diverged**: {results.get('reason')}. The model here is the best one saved "
                        "before that; no final evaluation was run."]
    start = results.get("start") or {}
    test = results.get("test")
    best_dev = results.get("best_stsb_dev")
    lines.append(f"Selected at step {results.get('best_step')} on {_dev_name(results.get('config') or {})} "
                 f"({_number(best_dev, 2)} during training).")
    if test is None:
        lines += ["", "No 7-task evaluation was run (final evaluation off, or no SentEval data)."]
    else:
        lines += ["", "Spearman x100 (SentEval's \"all\" setting); alignment and uniformity on STS-B dev "
                  "(lower is better). The start is the untrained encoder, evaluated before step 1.", ""]
        lines += _table_header()
        if start.get("test"):
            lines.append(_row("start (step 0)", start["test"]))
        lines.append(_row(f"this model (step {results.get('best_step')})", test))
        split = test.get("length_split")
        if isinstance(split, dict):
            lines += ["", f"STS-B test by length difference (<= {split.get('threshold')} {split.get('unit', 'tokens')}):"
                      f" {_number(split.get('short_diff'), 2)} ({split.get('n_short')} pairs), longer: "
                      f"{_number(split.get('long_diff'), 2)} ({split.get('n_long')} pairs)."]
    if results.get("dev_file"):
        dev = results["dev_file"]
        lines += ["", f"Own dev file `{dev.get('path')}`: Spearman {_number(dev.get('spearman'), 2)}."]
    if results.get("below_start"):
        lines += ["", f"**Below the start**: {results['below_start']}."]
    for warning in results.get("warnings") or []:
        lines += ["", f"Warning during training: {warning}"]
    evaluations = results.get("evaluations") or []
    if evaluations:
        lines += ["", "Every evaluation during training:", "",
                  f"| step | {_dev_name(results.get('config') or {})} | align | uniform |",
                  "|---|---|---|---|"]
        lines += [f"| {r.get('step')} | {_number(r.get('stsb_dev'), 2)} | {_number(r.get('alignment'), 4)} | "
                  f"{_number(r.get('uniformity'), 4)} |" for r in evaluations]
    return lines


def _seeds_result_lines(summary, runs):
    n = summary["n_seeds"]
    metrics = summary["metrics"]
    lines = ["## Results", "",
             f"Mean ± sample std (ddof=1) over {n} seed{'s' if n != 1 else ''}, then each seed. Spearman x100 "
             "(SentEval's \"all\" setting); alignment and uniformity on STS-B dev (lower is better).", ""]
    lines += _table_header()
    start = next((r.get("start") for r in runs if (r.get("start") or {}).get("test")), None)
    if start:
        lines.append(_row("start (step 0)", start["test"]))

    def cell(key, decimals):
        m = metrics.get(key)
        if m is None or m["mean"] is None:
            return "n/a"
        return f"{m['mean']:.{decimals}f} ± {m['std']:.{decimals}f}"

    lines.append(f"| mean ± std ({n} seeds) | " + " | ".join(cell(k, d) for k, _, d in COLUMNS) + " |")
    for seed, run in zip(summary["seeds"], runs):
        lines.append(_row(f"seed {seed} (step {run.get('best_step')})", run.get("test")))
    if summary.get("config_differences"):
        lines += ["", "**The runs differ in more than the seed:** " + ", ".join(summary["config_differences"])]
    return lines


# --- the cards -----------------------------------------------------------------------------------

def _header(title, source, kind_line, method=None):
    library = "sentence-transformers" if (source.get("export") or {}).get("format") == "sentence-transformers" else None
    tags = ["sentence-similarity", "feature-extraction", "tf_esimcse"] + ([method] if method else [])
    front = ["---", "pipeline_tag: sentence-similarity", f"tags: {json.dumps(tags)}"]
    front += [f"library_name: {library}"] if library else []
    front += [f"{_SOURCE_KEY}: {json.dumps(source, sort_keys=True)}", "---"]
    return front + [f"# {title}", "", kind_line, "",
            "This card was generated by `tf_esimcse.model_card` from the files named above, not by hand; "
            "`tf-esimcse card --model DIR` writes it again.", ""]


def _export_lines(export, directory):
    if not export:
        return []
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir()
                   if p.name != CARD_FILE and not p.name.startswith("."))
    return [f"This folder is the `{export.get('format')}` export of the model described below, written by "
            f"{_code(export.get('command'))}. It holds: {', '.join(f'`{f}`' for f in files) or 'nothing else'}.", ""]


def _run_card(directory, run_dir, facts, export, source):
    results = _read_json(run_dir / RESULTS_FILE)
    name = run_dir.name
    if results is None:  # still training: only the settings are known
        config = _read_json(run_dir / RUN_CONFIG) or {}
        lines = _header(name, source, f"A sentence encoder being trained by tf_esimcse: the run in `{run_dir}` has "
                                      f"not finished (no `{RESULTS_FILE}` yet). This is the best model on STS-B dev "
                                      "so far; the card is written again with the results when the run ends.")
        lines += _export_lines(export, directory)
        lines += _training_lines({}, config) + [""] + _facts_lines(facts) + [""]
        lines += ["## Environment", ""] + _environment_lines(environment_info(), "when this card was written")
        return lines + [""] + _load_lines(directory, facts, export)
    config = results.get("config") or {}
    lines = _header(name, source, f"A sentence encoder trained with `{_method(results)}` by tf_esimcse (status: "
                                  f"{results.get('status', 'unknown')}), from `{run_dir / RESULTS_FILE}`.",
                    method=results.get("method"))
    lines += _export_lines(export, directory)
    lines += _training_lines(results, config) + [""] + _facts_lines(facts) + [""]
    lines += _run_result_lines(results) + [""]
    lines += ["## Environment", ""] + _environment_lines(results.get("environment"), "when the run trained")
    return lines + [""] + _load_lines(directory, facts, export)


def _seeds_card(directory, source):
    runs, seeds = [], []
    for path in sorted(directory.glob("seed_*/" + RESULTS_FILE), key=lambda p: (len(p.parent.name), p.parent.name)):
        results = _read_json(path)
        if isinstance(results, dict) and results.get("status") == "ok":
            runs.append(results)
            seeds.append(path.parent)
    if not runs:
        raise TfEsimcseError(f"{directory}: a --seeds folder without a finished seed_N/{RESULTS_FILE}: nothing to "
                             "write a card from")
    summary = summarize_seeds(runs)
    first = runs[0]
    config = {k: v for k, v in (first.get("config") or {}).items() if k != "seed"}
    lines = _header(directory.name, source,
                    f"Sentence encoders trained with `{_method(first)}` by tf_esimcse, one per seed, summarised from "
                    f"`{directory / SUMMARY_FILE}` and each `seed_N/{RESULTS_FILE}`. Each seed's model is its "
                    "`seed_N/model/` (with its own card).", method=first.get("method"))
    lines += _training_lines(first, config, seeds=summary["seeds"]) + [""]
    lines += _seeds_result_lines(summary, runs) + [""]
    lines += ["## Environment", ""] + _environment_lines(first.get("environment"), "when the first seed trained")
    lines += ["", "## Use it", "", "Each seed's model loads on its own and has its own card with the other ways to "
              "load and export it:", "", "```python", "from tf_esimcse import SentenceEncoder"]
    lines += [f"encoder = SentenceEncoder.from_pretrained({str(path / MODEL_DIR)!r})  # seed {seed}"
              for seed, path in zip(summary["seeds"], seeds)]
    lines += ["```"]
    return lines


def _minimal_card(directory, model, facts, export, source):
    shown = str(model) if model is not None else str(directory)
    lines = _header(pathlib.Path(shown).name or shown, source,
                    f"A sentence encoder saved by tf_esimcse (`{shown}`). **No training results are recorded with "
                    f"it**: it was not saved by a recipe run (no run folder with `{RESULTS_FILE}`), so this card has "
                    "no scores, corpus, steps or seeds; it lists what the model's own files say.")
    lines += _export_lines(export, directory) + _facts_lines(facts) + [""]
    lines += ["## Environment", ""] + _environment_lines(environment_info(), "when this card was written")
    return lines + [""] + _load_lines(directory, facts, export)


def render_model_card(directory, model=None, export=None, model_files=None):
    """The model card (Markdown) for `directory`, rendered from the results recorded with the model.

    Args:
        directory: str or path. Where the card will be (its "Use it" lines name it): a model
            directory, a `--seeds` folder (holding summary.json) or an export.
        model: str, path or None. The model the card describes, when it is not `directory` (an
            export's source: a model directory, a run's `model/`, or a name such as "default").
            Defaults to `directory`.
        export: dict or None. For an export: {"format": ..., "command": ...}.
        model_files: str, path or None. Where the model's files are read (architecture, pooler),
            when not yet in place (`save_pretrained` renders the card before its rename).
            Defaults to `model`.

    Returns:
        The card's text.
    """
    directory = pathlib.Path(directory).expanduser().absolute()
    if model is None and export is None and (directory / SUMMARY_FILE).is_file() and not _is_model_dir(directory):
        return "\n".join(_seeds_card(directory, {"model": str(directory), "export": None})) + "\n"
    model_path = directory if model is None else pathlib.Path(str(model)).expanduser()
    if model is not None and model_path.is_dir():
        model_path = model_path.absolute()
    files = pathlib.Path(model_files) if model_files is not None else model_path
    facts = _model_files_facts(files)
    source = {"model": str(model_path), "export": export}
    run_dir = _run_dir_of(model_path) if model_path.is_dir() or model_files is not None else None
    if run_dir is not None:
        lines = _run_card(directory, run_dir, facts, export, source)
    else:
        lines = _minimal_card(directory, model_path if model is not None else None, facts, export, source)
    return "\n".join(lines) + "\n"


def write_model_card(directory, model=None, export=None, model_files=None):
    """Render the card (`render_model_card`) and write it atomically to `directory/README.md`.

    Called with a directory alone, an existing card's own record of its source (an export's
    model and format) is used, so `write_model_card(DIR)` writes any card again.

    Returns:
        The `pathlib.Path` of the card.

    Raises:
        TfEsimcseError: `directory` is not a directory, or a `--seeds` folder with no finished seed.
    """
    directory = pathlib.Path(directory).expanduser()
    if not directory.is_dir():
        raise TfEsimcseError(f"{directory}: not a directory; a model card is written into a saved model, a --seeds "
                             "folder or an export")
    if model is None and export is None and model_files is None:
        recorded = _recorded_source(directory)
        if recorded and recorded.get("export"):
            model, export = recorded.get("model"), recorded["export"]
        elif not _is_model_dir(directory) and not (directory / SUMMARY_FILE).is_file():
            raise TfEsimcseError(f"{directory}: neither a saved model (config.json) nor a --seeds folder "
                                 f"({SUMMARY_FILE}) nor an export with a card: nothing to write a card from")
    text = render_model_card(directory, model=model, export=export, model_files=model_files)
    path = directory / CARD_FILE
    write_text_atomic(path, text)
    return path
