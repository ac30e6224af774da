"""Settings of a training run (`TrainConfig`) and their command-line flags.

Library code never reads flags: recipes turn flags into a `TrainConfig` (or a subclass with the
method's own fields), print it (so a run can be reproduced from its log) and hand it to
`tf_esimcse.training.run_training`.

Each setting is described once, beside its default, as dataclass field metadata
(`setting(default, help=..., group=..., choices=...)`); `add_config_flags` builds the `--flags`
and their `--help` from it, grouped (data, model, method, optimisation, evaluation, runtime).
A subclass that only changes a default (`output_dir: str = "saved_models/x"`) keeps the base
class's description. `TrainConfig.validate()` (subclasses extend it) checks the values before any
work, raising `ValueError` with one line naming the flag; `parse_config` calls it.
"""
import argparse
import dataclasses
import difflib
import os
import pathlib
import re
import sys
import textwrap
import typing

# The argument groups of `--help`, in order, with the line shown under each title.
GROUPS = {
    "data": "what the run trains on",
    "model": "the encoder it starts from",
    "method": "the training objective and its views",
    "optimisation": "batches, optimizer and schedule",
    "evaluation": "model selection and the final evaluation",
    "runtime": "output, devices, compilation, resuming",
}

# `--model` values that name the default encoder (`tf_esimcse.backbones.resolve_source`).
DEFAULT_MODEL_ALIASES = ("default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
POOLERS = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")  # tf_esimcse.layers.pooler.POOLER_TYPES
STRATEGIES = ("default", "mirrored", "multiworker")
JIT_SETTINGS = ("auto", "true", "false")


def default_data_dir():
    """`$TF_ESIMCSE_DATA_DIR`, else `./data` (which `make setup` links to the shared data)."""
    return os.environ.get("TF_ESIMCSE_DATA_DIR", "data")


def setting(default=dataclasses.MISSING, *, help, group, choices=None, default_text=None,
            default_factory=dataclasses.MISSING, metavar=None):
    """A dataclass field carrying its flag's description.

    Args:
        default / default_factory: as `dataclasses.field`.
        help: one line: what the setting does (no trailing period; the default is appended).
        group: one of `GROUPS`.
        choices: the allowed values (checked by the parser and by `validate`), shown in `--help`.
        default_text: how `--help` shows the default when its value says little ("" or None).
        metavar: the value's name in `--help` (default: the choices, else the flag's name).
    """
    if group not in GROUPS:
        raise ValueError(f"unknown flag group {group!r}: expected one of {', '.join(GROUPS)}")
    metadata = {"help": help, "group": group}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if default_text is not None:
        metadata["default_text"] = default_text
    if metavar is not None:
        metadata["metavar"] = metavar
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run. Defaults: the official SimCSE code's `run_unsup_example.sh`
    (BERT-base: batch 64, lr 3e-5, max_len 32, temperature 0.05, `cls` + `mlp_only_train`, STS-B
    dev every 125 steps), except the encoder and corpus, which are offline ones.

    A method's subclass names the shared settings it cannot honour in `unsupported`
    (`{field: why}`); `validate` refuses them when set, rather than ignore them.
    """

    unsupported: typing.ClassVar[dict] = {}

    # data
    corpus: str = setting(
        "brown", group="data",
        help='training sentences: "brown" (in --data-dir), a text file (one sentence per line) or a folder of '
             "them; the official runs use wiki1m_for_simcse.txt")
    data_dir: str = setting(
        default_factory=default_data_dir, group="data", default_text="$TF_ESIMCSE_DATA_DIR, else ./data",
        help="folder holding senteval/ (the STS evaluation) and brown/")
    max_sentences: int = setting(
        0, group="data", default_text="0 = all",
        help="use only the first N examples of the corpus")
    max_len: int = setting(32, group="data", help="truncate each sentence to N word pieces")
    dynamic_padding: bool = setting(
        False, group="data", help="trim each batch to its longest sentence (same loss, faster)")

    # model
    model: str = setting(
        "default", group="model",
        help="encoder to start from: 'default' (all-MiniLM-L6-v2, offline), a Hugging Face BERT directory, a "
             "keras-hub preset directory or name, or a model directory saved by this package")
    pooler: str = setting(
        "cls", group="model", choices=POOLERS,
        help="sentence embedding: the [CLS] vector through an MLP head (cls) or without it (cls_before_pooler), "
             "or the mean of the last, last two, or first and last layers")
    mlp_only_train: bool = setting(
        True, group="model",
        help="--pooler cls: use the MLP head in training only; evaluate and save as cls_before_pooler "
             "(unsupervised SimCSE)")
    dropout: float = setting(
        0.1, group="model", help="dropout rate of the encoder (the two views of a sentence differ by dropout)")

    # method
    temperature: float = setting(0.05, group="method", help="temperature of the contrastive softmax")
    mask_duplicates: bool = setting(
        False, group="method",
        help="drop in-batch duplicates of a sentence from its negatives (not in the official code)")
    matryoshka_dims: str = setting(
        "", group="method", default_text="none: the full embedding only", metavar="D,D,...",
        help="Matryoshka training: the contrastive loss on each prefix of the embedding of these sizes, largest "
             "first, e.g. 384,256,128,64,32 (each prefix usable alone after training)")
    matryoshka_weights: str = setting(
        "", group="method", default_text="1 each", metavar="W,W,...",
        help="weight of each --matryoshka-dims prefix's loss (the contrastive loss is their weighted sum)")

    # optimisation
    batch_size: int = setting(
        64, group="optimisation",
        help="sentences per batch; each sentence's negatives are the other sentences of its batch")
    mini_batch_size: int = setting(
        0, group="optimisation", default_text="0 = the whole batch at once",
        help="embed each batch in mini-batches of N rows (the cached step: same gradients, flat memory)")
    learning_rate: float = setting(3e-5, group="optimisation", help="peak learning rate (AdamW, linear decay)")
    epochs: int = setting(1, group="optimisation", help="passes over the corpus when --steps is unset")
    steps: typing.Optional[int] = setting(
        None, group="optimisation", default_text="unset: --epochs passes over the corpus",
        help="total optimizer steps (a positive integer)")
    warmup_ratio: float = setting(
        0.0, group="optimisation", help="share of the steps with a linear warm-up, from 0 to 1 (exclusive)")
    weight_decay: float = setting(
        0.0, group="optimisation", help="AdamW weight decay (never applied to biases and LayerNorm, as HF Trainer)")
    max_grad_norm: float = setting(
        1.0, group="optimisation", default_text="1.0, HF Trainer's, as the official runs; 0 = no clipping",
        help="clip the global gradient norm to this")
    seed: int = setting(42, group="optimisation", help="random seed (data order, dropout, initialisation)")

    # evaluation
    eval_steps: int = setting(
        125, group="evaluation", help="evaluate STS-B dev every N steps; the best weights are kept")
    dev_file: str = setting(
        "", group="evaluation", default_text="none: STS-B dev",
        help="select the best model on your own STS-style file (TSV/CSV: sentence 1, sentence 2, score)")
    final_eval: bool = setting(True, group="evaluation", help="evaluate the 7 STS tasks at the end")
    keep_start: bool = setting(
        False, group="evaluation",
        help="when no evaluation beats the untrained start, save the start as the run's model")

    # runtime
    output_dir: str = setting(
        "saved_models/unsup_simcse", group="runtime",
        help="run folder: the best encoder (model/), results.json, logs/, backups")
    log_dir: str = setting("", group="runtime", default_text="<output-dir>/logs", help="TensorBoard logs")
    seeds: str = setting(
        "", group="runtime", default_text="none: one run with --seed", metavar="N,N,...",
        help="one run per seed under <output-dir>/seed_<n>, then the mean ± std in summary.json/.md")
    overwrite: bool = setting(
        False, group="runtime",
        help="replace a run folder that holds a finished run or a run with other settings")
    backup_steps: int = setting(
        200, group="runtime", default_text="200; 0 = only at the end",
        help="back up every N steps; an interrupted run started again resumes from the last backup")
    jit_compile: str = setting(
        "auto", group="runtime", choices=JIT_SETTINGS,
        help="XLA compilation of the training step (auto: on unless the strategy forbids it)")
    strategy: str = setting(
        "default", group="runtime", choices=STRATEGIES,
        help="one device (default), every local GPU or the CPU (mirrored), or the cluster of TF_CONFIG "
             "(multiworker)")
    fast_dropout: bool = setting(
        True, group="runtime", help="dropout masks from a counter hash under XLA (Keras' Philox is slow there)")
    verbose: bool = setting(False, group="runtime", help="show TensorFlow's own log lines")

    def seed_list(self):
        """The seeds of `--seeds` as ints (empty: one run with `seed`)."""
        return parse_seeds(self.seeds)

    def validate(self):
        """Check every setting; raise `ValueError` with one line naming the flag. Returns self.

        Subclasses extend it (call `super().validate()` first). Runs before any work: nothing is
        loaded or written when it fails.
        """
        check_choices(self)
        check_supported(self)
        if self.steps is not None:
            check_int(self, "steps", low=1, hint="leave it unset to train --epochs passes over the corpus")
        check_int(self, "epochs", low=1)
        check_int(self, "batch_size", low=2, hint="each sentence's negatives are the other sentences of its batch")
        check_int(self, "mini_batch_size", low=0, high=self.batch_size, hint="0 = the whole batch at once")
        check_range(self, "learning_rate", low=0, low_open=True)
        check_int(self, "max_len", low=2, hint="[CLS] and [SEP] take two")
        check_range(self, "temperature", low=0, low_open=True)
        check_range(self, "dropout", low=0, high=1, high_open=True)
        check_int(self, "eval_steps", low=1)
        check_int(self, "backup_steps", low=0)
        check_int(self, "max_sentences", low=0, hint="0 = all")
        check_range(self, "warmup_ratio", low=0, high=1, high_open=True)
        check_range(self, "weight_decay", low=0)
        check_range(self, "max_grad_norm", low=0, hint="0 = no clipping")
        check_int(self, "seed")
        self.seed_list()
        if self.matryoshka_list() and self.pooler == "cls" and self.mlp_only_train:
            raise ValueError("--matryoshka-dims trains prefixes of the vectors the loss sees, here the training-only "
                             "MLP head's (--pooler cls --mlp-only-train), which the saved model drops: use --pooler "
                             "cls_before_pooler or avg, or --no-mlp-only-train")
        check_model_path("--model", self.model)
        check_input_path("--corpus", self.corpus)
        if self.dev_file:
            check_input_path("--dev-file", self.dev_file, always=True)
        check_output_dir("--output-dir", self.output_dir)
        return self

    def matryoshka_list(self):
        """`(dims, weights)` of `--matryoshka-dims` / `--matryoshka-weights` (weights None when
        unset), or None when Matryoshka training is off. Raises a one-line `ValueError`."""
        return parse_matryoshka(self.matryoshka_dims, self.matryoshka_weights)


def parse_matryoshka(dims_text, weights_text=""):
    """`--matryoshka-dims` ("384,256,128") and `--matryoshka-weights` ("1,1,0.5") as
    `(dims, weights or None)`, or None when the dims are empty: positive integers, strictly
    descending, one finite weight >= 0 per size (not all 0). The embedding size bounds the
    largest when the encoder is loaded (`tf_esimcse.objectives.MatryoshkaObjective.setup`)."""
    if not str(dims_text).strip():
        if str(weights_text).strip():
            raise ValueError("--matryoshka-weights needs --matryoshka-dims")
        return None
    try:
        dims = [int(d) for d in str(dims_text).split(",")]
    except ValueError:
        raise ValueError(f"--matryoshka-dims must be comma-separated integers, got {dims_text!r}") from None
    if min(dims) < 1 or any(a <= b for a, b in zip(dims, dims[1:])):
        raise ValueError(f"--matryoshka-dims must be positive and strictly descending (largest first), "
                         f"got {dims_text!r}")
    if not str(weights_text).strip():
        return dims, None
    try:
        weights = [float(w) for w in str(weights_text).split(",")]
    except ValueError:
        raise ValueError(f"--matryoshka-weights must be comma-separated numbers, got {weights_text!r}") from None
    if len(weights) != len(dims):
        raise ValueError(f"--matryoshka-weights has {len(weights)} weights for the {len(dims)} sizes of "
                         f"--matryoshka-dims {dims_text}")
    if any(not (0 <= w < float("inf")) for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(f"--matryoshka-weights must be finite numbers >= 0, not all 0, got {weights_text!r}")
    return dims, weights


def parse_seeds(text):
    """`--seeds` ("1,2,3") as a list of distinct ints; empty text gives []."""
    if not str(text).strip():
        return []
    try:
        seeds = [int(s) for s in str(text).split(",")]  # an empty item ("1,,2", "1,") is not an integer
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}.") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {text!r}.")
    return seeds


# --------------------------------------------------------------------------------------------
# Checks used by `validate` (one-line ValueErrors naming the flag)


def flag_name(name):
    """The `--flag` of a field name."""
    return "--" + name.replace("_", "-")


def check_int(config, name, low=None, high=None, hint=None):
    """`config.<name>` is an int (not a bool) within [low, high]."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{flag_name(name)} must be an integer, got {value!r}")
    _check_bounds(name, value, low, high, False, False, hint, "an integer")


def check_range(config, name, low=None, high=None, low_open=False, high_open=False, hint=None):
    """`config.<name>` is a finite number within the interval (open ends as given)."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        raise ValueError(f"{flag_name(name)} must be a finite number, got {value!r}")
    _check_bounds(name, value, low, high, low_open, high_open, hint, "a number")


def _check_bounds(name, value, low, high, low_open, high_open, hint, kind):
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not (below or above):
        return
    if low is not None and high is not None:
        allowed = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        what = f"{kind} in {allowed}"
    elif low == 0 and low_open:
        what = "positive"
    elif low == 1 and kind == "an integer":
        what = "a positive integer"
    elif low is not None:
        what = f"{kind} {'>' if low_open else '>='} {low}"
    else:
        what = f"{kind} {'<' if high_open else '<='} {high}"
    message = f"{flag_name(name)} must be {what}, got {value!r}"
    raise ValueError(message + (f" ({hint})" if hint else ""))


def check_supported(config):
    """No setting in `config.unsupported` differs from its shared default."""
    for name, why in getattr(config, "unsupported", {}).items():
        field = TrainConfig.__dataclass_fields__[name]
        if getattr(config, name) != _field_default(field, {}):
            raise ValueError(f"{flag_name(name)} is not supported by this method: {why}")


def check_choices(config):
    """Every field with `choices` metadata holds one of them."""
    for field in dataclasses.fields(config):
        choices = field_metadata(type(config), field.name).get("choices")
        value = getattr(config, field.name)
        if choices and value not in choices:
            raise ValueError(f"{flag_name(field.name)} must be one of {', '.join(map(str, choices))}; got {value!r}")


def looks_like_path(value):
    """A value meant as a path (not a name): it has a slash or starts with '.' or '~'."""
    text = str(value)
    return "/" in text or os.sep in text or text.startswith((".", "~"))


def _is_model_dir(path):
    # What `tf_esimcse.backbones.resolve_source` accepts as a model directory.
    return (path / "config.json").is_file() or (path / "metadata.json").is_file()


def _keras_hub_presets():
    try:
        import keras_hub

        return keras_hub.models.Backbone.presets
    except Exception:  # keras-hub missing or broken: leave the name to the loader
        return None


def check_model_path(flag, value, presets=True):
    """A model flag's value: "default" (or an alias), a model directory, or a keras-hub preset name.

    A file, a missing path, or a directory that is no model directory fail in one line (a
    training run folder names its `model/`); with `presets`, a bare name must be a keras-hub
    preset (else the loader would reject it after the data was read).
    """
    text = str(value)
    if not text:
        raise ValueError(f"{flag} is empty: give a model directory, a keras-hub preset name, or 'default'")
    if text in DEFAULT_MODEL_ALIASES:
        return
    path = pathlib.Path(os.path.expanduser(text))
    if path.is_file():
        raise ValueError(f"{flag} {text} is a file, not a model directory")
    if path.is_dir():
        if _is_model_dir(path):
            return
        if _is_model_dir(path / "model"):
            raise ValueError(f"{flag} {text} is a training run folder: pass its model, {flag} {path / 'model'}")
        raise ValueError(f"{flag} {text} is not a model directory (no config.json or metadata.json in it)")
    if looks_like_path(text):
        raise ValueError(f"{flag} {text}: no such directory")
    if presets:
        known = _keras_hub_presets()
        if known is not None and text not in known:
            raise ValueError(f"{flag} {text}: no such directory, and not a keras-hub preset name "
                             "(e.g. bert_base_en_uncased); 'default' is the offline all-MiniLM-L6-v2")


def check_input_path(flag, value, always=False):
    """A data flag's value: a path-like value (or any value when `always`) must exist."""
    text = str(value)
    if not text.strip():
        raise ValueError(f"{flag} is empty")
    if (always or looks_like_path(text)) and not pathlib.Path(os.path.expanduser(text)).exists():
        raise ValueError(f"{flag} {text}: no such file or directory")


def check_output_dir(flag, value):
    """An output folder's value: not empty, not an existing file."""
    text = str(value)
    if not text.strip():
        raise ValueError(f"{flag} is empty")
    if pathlib.Path(os.path.expanduser(text)).is_file():
        raise ValueError(f"{flag} {text} is a file, not a folder")


# --------------------------------------------------------------------------------------------
# The parser


class FlagParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line on stderr (exit code 2):

        error: unrecognized arguments: --stpes (did you mean --steps?); see --help

    instead of the usage dump. Subcommand parsers (`add_subparsers().add_parser`) are of the
    same class, and an unknown flag after a subcommand is matched against that subcommand's flags.
    """

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras, namespace))
        return namespace

    def parse_known_args(self, args=None, namespace=None):
        self._seen_args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _option_strings(self, namespace):
        options = []
        for action in self._actions:
            options += [o for o in action.option_strings if o.startswith("--")]
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None) or "")
                if isinstance(chosen, FlagParser):
                    options += chosen._option_strings(namespace)
        return options

    def _unrecognized(self, extras, namespace):
        options = {o.lstrip("-"): o for o in self._option_strings(namespace)}
        words = []
        for token in extras:
            name = token.split("=", 1)[0]
            match = (difflib.get_close_matches(name.lstrip("-"), options, n=1, cutoff=0.7)
                     if name.startswith("-") else [])
            words.append(f"{token} (did you mean {options[match[0]]}?)" if match else token)
        return "unrecognized arguments: " + " ".join(words)

    def error(self, message):
        if message.startswith("the following arguments are required"):
            # argparse stops at a missing argument before it reports unknown ones: a mistyped
            # `--inptu` is more likely the cause, so name it first.
            known = set(self._option_strings(argparse.Namespace()))
            unknown = [t for t in getattr(self, "_seen_args", []) if t.startswith("--") and t.split("=", 1)[0] not in
                       known and not any(isinstance(a, argparse._SubParsersAction) for a in self._actions)]
            if unknown:
                message = self._unrecognized(unknown, argparse.Namespace()) + "; " + message
        choice = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            choices = re.findall(r"'([^']*)'", choice.group(3))
            match = difflib.get_close_matches(choice.group(2), choices, n=1, cutoff=0.6)
            message = (f"argument {choice.group(1)}: invalid choice {choice.group(2)!r}"
                       + (f" (did you mean {match[0]}?)" if match else "") + f"; choose from {', '.join(choices)}")
        self.exit(2, f"error: {message}; see --help\n")


class HelpFormatter(argparse.HelpFormatter):
    """Wraps the description's and epilog's prose paragraphs, keeps their indented blocks (the
    example commands of a recipe's docstring) as written; a wider option column."""

    def __init__(self, prog, **kwargs):
        kwargs.setdefault("max_help_position", 34)
        super().__init__(prog, **kwargs)

    def _fill_text(self, text, width, indent):
        paragraphs = re.split(r"\n\s*\n", text.strip("\n"))
        out = []
        for paragraph in paragraphs:
            lines = paragraph.split("\n")
            if any(line.startswith((" ", "\t")) for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(line.strip() for line in lines), width,
                                         initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


def field_metadata(config_cls, name):
    """The metadata of field `name`: the first class in `config_cls`'s MRO that describes it (a
    subclass that only changes a default keeps its base class's description)."""
    for cls in getattr(config_cls, "__mro__", ()):
        fields = cls.__dict__.get("__dataclass_fields__", {})
        if name in fields and "help" in fields[name].metadata:
            return fields[name].metadata
    return {}


def _field_default(field, defaults):
    if field.name in defaults:
        return defaults[field.name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _value_type(field):
    """int / float / str for a field annotated as such (or Optional of it)."""
    typ = field.type
    if isinstance(typ, str):
        bare = typ.replace("typing.Optional[", "").rstrip("]")
        typ = {"int": int, "float": float, "str": str, "bool": bool}.get(bare, str)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if typing.get_origin(typ) is typing.Union and len(args) == 1:
        typ = args[0]
    return typ


def format_default(value, metadata=None):
    """How `--help` shows a default: the field's `default_text`, on/off, or the value."""
    if metadata and "default_text" in metadata:
        return metadata["default_text"]
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == "":
        return "unset"
    return str(value)


def add_config_flags(parser, config_cls, defaults=None):
    """Add one `--flag` per dataclass field (booleans as `--flag/--no-flag`), with its help
    (from the field's metadata, "(default: X)" appended) in its argument group."""
    defaults = defaults or {}
    groups = {}
    for name, description in GROUPS.items():
        groups[name] = parser.add_argument_group(name, description)
    for field in dataclasses.fields(config_cls):
        metadata = field_metadata(config_cls, field.name)
        default = _field_default(field, defaults)
        text = metadata.get("help", "")
        help_text = f"{text} (default: {format_default(default, metadata)})".replace("%", "%%").strip()
        target = groups.get(metadata.get("group"), parser)
        flag = flag_name(field.name)
        typ = _value_type(field)
        if typ is bool:
            target.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kwargs = {}
            if metadata.get("choices"):
                kwargs["choices"] = metadata["choices"]
                kwargs["metavar"] = "{" + ",".join(map(str, metadata["choices"])) + "}"
            elif metadata.get("metavar"):
                kwargs["metavar"] = metadata["metavar"]
            else:
                kwargs["metavar"] = {int: "N", float: "X"}.get(typ, field.name.upper())
            target.add_argument(flag, type=typ, default=default, help=help_text, **kwargs)
    # Leave out the groups no field uses.
    parser._action_groups = [g for g in parser._action_groups if g._group_actions or g not in groups.values()]
    return parser


def build_config_parser(config_cls, defaults=None, description=None, prog=None):
    """The `FlagParser` of `config_cls`: the first paragraph of `description` (a recipe's
    module docstring) as the description, the rest as the epilog."""
    head, _, tail = (description or "").strip().partition("\n\n")
    parser = FlagParser(prog=prog, description=head or None, epilog=tail or None,
                        usage="%(prog)s [options]", formatter_class=HelpFormatter)
    return add_config_flags(parser, config_cls, defaults)


def given_settings(config_cls, argv=None):
    """The names of the settings `argv` (default: `sys.argv[1:]`) sets explicitly, whatever
    their values (so a paper's per-model default never overrides a flag the user gave)."""
    parser = build_config_parser(config_cls)
    for action in parser._actions:
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return set(vars(parser.parse_known_args(args)[0]))


def parse_config(config_cls, argv=None, defaults=None, description=None):
    """Parse `argv` (default: `sys.argv[1:]`) into a `config_cls` instance and `validate()` it
    (a bad value raises a one-line `ValueError`, before anything is loaded or written)."""
    parser = build_config_parser(config_cls, defaults, description)
    args = parser.parse_args(sys.argv[1:] if argv is None else [str(a) for a in argv])
    config = config_cls(**vars(args))
    if hasattr(config, "validate"):
        config.validate()
    return config
