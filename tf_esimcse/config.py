"""Settings of a training run (`TrainConfig`) and their command-line flags.

Library code never reads flags: recipes turn flags into a `TrainConfig` (or a subclass with the
method's own fields), print it (so a run can be reproduced from its log) and hand it to
`tf_esimcse.training.run_training`.
"""
import argparse
import dataclasses
import os


def default_data_dir():
    """`$TF_ESIMCSE_DATA_DIR`, else `./data` (which `make setup` links to the shared data)."""
    return os.environ.get("TF_ESIMCSE_DATA_DIR", "data")


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run. Defaults are SimCSE's unsupervised BERT-base recipe."""

    model: str = "default"  # encoder to start from (HF dir, keras-hub preset dir or name, our save)
    corpus: str = "brown"  # "brown", a text file (one sentence per line) or a folder of them
    data_dir: str = dataclasses.field(default_factory=default_data_dir)  # holds senteval/ and brown/
    output_dir: str = "saved_models/unsup_simcse"  # best encoder + results.json land here
    log_dir: str = ""  # TensorBoard logs; default <output_dir>/logs
    batch_size: int = 64
    mini_batch_size: int = 0  # >0: the cached step embeds each batch in mini-batches of this many rows (same gradients, flat memory)
    learning_rate: float = 3e-5
    max_len: int = 32
    temperature: float = 0.05
    mask_duplicates: bool = False  # drop in-batch duplicates of a sentence from its negatives (not in the official code)
    pooler: str = "cls"
    mlp_only_train: bool = True
    dropout: float = 0.1
    fast_dropout: bool = True  # dropout masks from a counter hash under XLA (Keras' Philox is slow there)
    epochs: int = 1
    steps: int = 0  # total training steps; 0 = `epochs` passes over the corpus
    eval_steps: int = 125  # STS-B dev every N steps; the best weights are kept
    dev_file: str = ""  # select the best model on your own STS-style file (TSV/CSV: s1, s2, score) instead of STS-B dev
    max_sentences: int = 0  # use only the first N examples of the corpus (0 = all)
    seed: int = 42
    seeds: str = ""  # e.g. "1,2,3": one run per seed under <output_dir>/seed_<n>, then summary.json/.md
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0  # AdamW; never applied to biases and LayerNorm (as HF Trainer)
    max_grad_norm: float = 1.0  # clip the global gradient norm (HF Trainer's default, as the official runs)
    dynamic_padding: bool = False  # trim batches to their longest sentence (same loss, faster)
    jit_compile: str = "auto"  # "auto" (XLA when no strategy forbids it), "true", "false"
    strategy: str = "default"  # "default" (one device), "mirrored" (all local GPUs/CPUs), "multiworker" (TF_CONFIG)
    backup_steps: int = 200  # back up every N steps; an interrupted run resumes from the last backup
    final_eval: bool = True  # evaluate the 7 STS tasks at the end

    def seed_list(self):
        """The seeds of `--seeds` as ints (empty: one run with `seed`)."""
        return parse_seeds(self.seeds)


def parse_seeds(text):
    """`--seeds` ("1,2,3") as a list of distinct ints; empty text gives []."""
    if not str(text).strip():
        return []
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}.") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {text!r}.")
    return seeds


def add_config_flags(parser, config_cls, defaults=None):
    """Add one `--flag` per dataclass field (booleans as `--flag/--no-flag`)."""
    defaults = defaults or {}
    for field in dataclasses.fields(config_cls):
        if field.name in defaults:
            default = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, default=default, action=argparse.BooleanOptionalAction)
        else:
            typ = {"int": int, "float": float, "str": str}.get(field.type, field.type)
            parser.add_argument(flag, type=typ, default=default, help=f"default: {default!r}")
    return parser


def parse_config(config_cls, argv=None, defaults=None, description=None):
    """Parse `argv` (default: `sys.argv[1:]`) into a `config_cls` instance."""
    parser = argparse.ArgumentParser(description=description)
    add_config_flags(parser, config_cls, defaults)
    args = parser.parse_args(argv)
    return config_cls(**vars(args))
