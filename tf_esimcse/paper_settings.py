"""The papers' training settings per encoder family and size, as recipe defaults.

Each recipe's own defaults are its paper's BERT-base settings. When `--model` is a BERT or
RoBERTa checkpoint of base (768 wide, 12 layers) or large (1024 wide, 24 layers) size, the
settings below replace those defaults, each with the file or table it comes from; a flag given on
the command line always wins. Other sizes (all-MiniLM-L6-v2, tiny test models) keep the recipe's
defaults. The pooler (`cls` with the MLP head, in training only for the unsupervised methods) and
the temperature (0.05) are the same for every family in all three papers, so no row changes them.

    SETTINGS[method][(family, size)] = ({setting: value}, source)
"""
import json
import pathlib

_SIMCSE_TABLE = "SimCSE paper (Gao et al., 2021), Table A.1"
_ESIMCSE_RUN = "caskcsg/sentemb ESimCSE/run.sh"
_ESIMCSE_ROBERTA_LOG = "caskcsg/sentemb ESimCSE/logs/roberta-base.log (the official run's arguments)"
_ESIMCSE_PAPER = "ESimCSE paper (Wu et al., 2022), section 4.1"
_DIFFCSE_RUN = "voidism/DiffCSE run_diffcse.sh"

SETTINGS = {
    "unsup_simcse": {
        ("bert", "base"): ({"batch_size": 64, "learning_rate": 3e-5}, _SIMCSE_TABLE + "; run_unsup_example.sh"),
        ("bert", "large"): ({"batch_size": 64, "learning_rate": 1e-5}, _SIMCSE_TABLE),
        ("roberta", "base"): ({"batch_size": 512, "learning_rate": 1e-5}, _SIMCSE_TABLE),
        ("roberta", "large"): ({"batch_size": 512, "learning_rate": 3e-5}, _SIMCSE_TABLE),
    },
    "sup_simcse": {
        ("bert", "base"): ({"batch_size": 512, "learning_rate": 5e-5}, _SIMCSE_TABLE + "; run_sup_example.sh"),
        ("bert", "large"): ({"batch_size": 512, "learning_rate": 1e-5}, _SIMCSE_TABLE),
        ("roberta", "base"): ({"batch_size": 512, "learning_rate": 5e-5}, _SIMCSE_TABLE),
        ("roberta", "large"): ({"batch_size": 512, "learning_rate": 1e-5}, _SIMCSE_TABLE),
    },
    "unsup_esimcse": {
        ("bert", "base"): ({"batch_size": 64, "learning_rate": 3e-5, "dup_rate": 0.32, "queue_size": 160},
                           _ESIMCSE_RUN),
        ("bert", "large"): ({"batch_size": 64, "dup_rate": 0.32, "queue_size": 160}, _ESIMCSE_PAPER),
        ("roberta", "base"): ({"batch_size": 64, "learning_rate": 1e-5, "dup_rate": 0.30, "queue_size": 160},
                              _ESIMCSE_ROBERTA_LOG),
        ("roberta", "large"): ({"batch_size": 64, "dup_rate": 0.28, "queue_size": 128}, _ESIMCSE_PAPER),
    },
    "diffcse": {
        ("bert", "base"): ({"batch_size": 64, "learning_rate": 7e-6, "masking_ratio": 0.30, "rtd_weight": 0.005},
                           _DIFFCSE_RUN),
    },
}

_SIZES = {(768, 12): "base", (1024, 24): "large"}
_NAMES = {"bert": "BERT", "roberta": "RoBERTa"}


def family_and_size(model):
    """`(family, size)` of the checkpoint `--model` names, e.g. `("roberta", "base")`; size is
    None for other shapes, and both are None where the files do not say (a missing path: the
    loader reports it later, in its own words)."""
    from tf_esimcse.checkpoint_sources import resolve_source

    try:
        kind, location = resolve_source(model)
    except Exception:
        return None, None
    if kind == "preset_name":
        family = location.split("_", 1)[0]
        size = next((s for s in ("base", "large") if f"_{s}_" in f"{location}_"), None)
        return (family, size) if family in _NAMES else (None, None)
    try:
        config = json.loads((pathlib.Path(location) / "config.json").read_text())
    except (OSError, ValueError):
        return None, None
    if kind == "hf_dir":
        family = config.get("model_type", "bert")
        shape = (config.get("hidden_size"), config.get("num_hidden_layers"))
    else:  # a keras-hub preset directory: {"registered_name": "keras_hub>RobertaBackbone", "config": {...}}
        name = str(config.get("registered_name", ""))
        family = {"keras_hub>RobertaBackbone": "roberta", "keras_hub>BertBackbone": "bert"}.get(name)
        inner = config.get("config", {})
        shape = (inner.get("hidden_dim"), inner.get("num_layers"))
    if family not in _NAMES:
        return None, None
    return family, _SIZES.get(shape)


def paper_defaults(method, model):
    """`(settings, source, label)` for `method` (a recipe name) starting from `model`, or None
    when no paper row matches (the recipe's own defaults stand)."""
    family, size = family_and_size(model)
    row = SETTINGS.get(method, {}).get((family, size))
    if row is None:
        return None
    settings, source = row
    return dict(settings), source, f"{_NAMES[family]}-{size}"


def apply_paper_defaults(method, config, given):
    """`config` with the paper's settings for its model's family and size in place of the
    recipe's defaults, except those in `given` (the settings set on the command line).

    Returns:
        `(config, message)`: message is one line naming what changed and where it comes from, or
        None when nothing did.
    """
    import dataclasses

    found = paper_defaults(method, config.model)
    if found is None:
        return config, None
    settings, source, label = found
    changes = {k: v for k, v in settings.items() if k not in given and getattr(config, k) != v}
    if not changes:
        return config, None
    described = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in changes.items())
    return (dataclasses.replace(config, **changes),
            f"{label}: {described} (the paper's settings for {label}: {source}; a flag overrides each)")
