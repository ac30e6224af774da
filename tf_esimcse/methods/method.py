"""`Method`: one training method's parts under its name, and the registry the recipes read.

A method module (`tf_esimcse.methods.unsup_simcse`, ...) defines its settings (a `TrainConfig`
subclass), `build_objective(config, **shared)` and `build_dataset(examples, preprocessor, config)`,
and registers them with `register(Method(...))`. The settings every method shares (the
temperature, `--mask-duplicates`) reach the objective through `Method.objective`, once, not in
each module; a shared setting a method cannot honour is listed in its config's `unsupported`
and refused by `validate` at parse time (`tf_esimcse.config.TrainConfig`).
"""
import dataclasses
import typing

from tf_esimcse.config import given_settings, parse_config
from tf_esimcse.objectives.matryoshka import MatryoshkaObjective
from tf_esimcse.paper_settings import apply_paper_defaults
from tf_esimcse.training import load_corpus, run_seeds


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method, as a recipe runs it.

    Args:
        name: str. The registry key, the recipe's file name (`recipes/<name>.py`) and the run's name.
        config_cls: type. Its settings: a `tf_esimcse.config.TrainConfig` subclass.
        build_objective: `fn(config, **shared) -> Objective`; `shared` holds the settings every
            objective takes (`shared_objective_settings`).
        build_dataset: `fn(examples, preprocessor, config) -> tf.data.Dataset` (repeating).
        load_examples: `fn(config) -> examples`. Defaults to the corpus's sentences.
        prepare: `fn(config) -> config` applied after parsing (e.g. DiffCSE's pooler), or None.
        description: str. The `--help` text (the module's docstring).
    """

    name: str
    config_cls: type
    build_objective: typing.Callable
    build_dataset: typing.Callable
    load_examples: typing.Callable = load_corpus
    prepare: typing.Optional[typing.Callable] = None
    description: typing.Optional[str] = None

    def parse(self, argv=None):
        """The flags (default `sys.argv[1:]`) as a checked config: a bad value is a one-line
        `ValueError` before anything is loaded or written. Where `--model` is a BERT or RoBERTa
        of base or large size, the paper's settings for it replace the recipe's defaults (not the
        flags given; `tf_esimcse.paper_settings`), said in one line."""
        config = parse_config(self.config_cls, argv, description=self.description)
        config, message = apply_paper_defaults(self.name, config, given_settings(self.config_cls, argv))
        if message:
            print(message, flush=True)
            config.validate()
        return self.prepare(config) if self.prepare is not None else config

    def objective(self, config):
        """The method's objective for `config` (wrapped in a `MatryoshkaObjective` when
        `--matryoshka-dims` is set)."""
        objective = self.build_objective(config, **shared_objective_settings(config))
        matryoshka = config.matryoshka_list()
        if matryoshka:
            objective = MatryoshkaObjective(objective, dims=matryoshka[0], dim_weights=matryoshka[1])
        return objective

    def train(self, config):
        """Every seed of `config` trained (`tf_esimcse.training.run_seeds`)."""
        return run_seeds(config, self.objective, self.build_dataset, load_examples=self.load_examples, name=self.name)

    def main(self, argv=None):
        """What `python recipes/<name>.py ...` runs."""
        return self.train(self.parse(argv))


def shared_objective_settings(config):
    """The objective arguments every method takes from the shared settings."""
    return {"temperature": config.temperature, "mask_duplicates": config.mask_duplicates}


REGISTRY = {}


def register(method):
    """Add `method` to the registry under its name; returns it."""
    if method.name in REGISTRY:
        raise ValueError(f"a method named {method.name!r} is registered already")
    REGISTRY[method.name] = method
    return method


def get(name):
    """The registered method called `name`."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}: expected one of {', '.join(sorted(REGISTRY))}") from None
