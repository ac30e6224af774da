"""The training flow shared by the recipes: config -> data -> model -> fit -> evaluate -> save.

Library code never reads flags: recipes turn flags into a `TrainConfig`, print it (so a run can
be reproduced from its log) and call `run_training(config, build_model)`.
"""
import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import keras
import tensorflow as tf

from tf_esimcse.backup import AtomicBackupAndRestore
from tf_esimcse.data.corpus import load_sentences
from tf_esimcse.data.senteval import resolve_senteval_dir
from tf_esimcse.evaluation.callbacks import STSEvaluationCallback
from tf_esimcse.evaluation.sts import evaluate_sts, format_table
from tf_esimcse.layers.pooler import check_pooler_type
from tf_esimcse.models.sentence_encoder import SentenceEncoder


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
    learning_rate: float = 3e-5
    max_len: int = 32
    temperature: float = 0.05
    pooler: str = "cls"
    mlp_only_train: bool = True
    dropout: float = 0.1
    fast_dropout: bool = True  # dropout masks from a counter hash under XLA (Keras' Philox is slow there)
    epochs: int = 1
    steps: int = 0  # total training steps; 0 = `epochs` passes over the corpus
    eval_steps: int = 125  # STS-B dev every N steps; the best weights are kept
    max_sentences: int = 0  # use only the first N sentences of the corpus (0 = all)
    seed: int = 42
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0  # AdamW; never applied to biases and LayerNorm (as HF Trainer)
    max_grad_norm: float = 1.0  # clip the global gradient norm (HF Trainer's default, as the official runs)
    dynamic_padding: bool = False  # trim batches to their longest sentence (same loss, faster)
    jit_compile: str = "auto"  # "auto" (XLA when no strategy forbids it), "true", "false"
    strategy: str = "default"  # "default" (one device), "mirrored" (all local GPUs/CPUs), "multiworker" (TF_CONFIG)
    backup_steps: int = 200  # back up every N steps; an interrupted run resumes from the last backup
    final_eval: bool = True  # evaluate the 7 STS tasks at the end


def add_config_flags(parser, config_cls, defaults=None):
    """Add one `--flag` per dataclass field (booleans as `--flag/--no-flag`)."""
    defaults = defaults or {}
    for field in dataclasses.fields(config_cls):
        default = defaults.get(field.name, field.default if field.default is not dataclasses.MISSING else field.default_factory())
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, default=default, action=argparse.BooleanOptionalAction)
        else:
            typ = {"int": int, "float": float, "str": str}.get(field.type, field.type)
            parser.add_argument(flag, type=typ, default=default, help=f"default: {default!r}")
    return parser


def parse_config(config_cls, argv=None, defaults=None, description=None):
    parser = argparse.ArgumentParser(description=description)
    add_config_flags(parser, config_cls, defaults)
    args = parser.parse_args(argv)
    return config_cls(**vars(args))


def linear_schedule(learning_rate, total_steps, warmup_ratio=0.0):
    """HF Trainer's default: linear warm-up (none by default) then linear decay to 0."""
    warmup = int(total_steps * warmup_ratio)
    decay = keras.optimizers.schedules.PolynomialDecay(
        learning_rate, decay_steps=max(total_steps - warmup, 1), end_learning_rate=0.0, power=1.0
    )
    if warmup == 0:
        return decay
    return WarmupThen(learning_rate, warmup, decay)


@keras.saving.register_keras_serializable(package="tf_esimcse")
class WarmupThen(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then the `after` schedule."""

    def __init__(self, peak, warmup_steps, after):
        self.peak, self.warmup_steps, self.after = peak, warmup_steps, after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * step / float(self.warmup_steps)
        return tf.where(step < self.warmup_steps, warm, self.after(step - self.warmup_steps))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "after": keras.saving.serialize_keras_object(self.after)}


class StopAtStep(keras.callbacks.Callback):
    """Stop `fit` once the optimizer has taken `total_steps` steps (also after a resume)."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = int(total_steps)

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.total_steps:
            self.model.stop_training = True


def check_data_dir(data_dir, corpus):
    """Fail early, in one line, if the evaluation data (or the Brown corpus) is missing."""
    resolve_senteval_dir(data_dir)
    if corpus == "brown" and not (pathlib.Path(data_dir) / "brown").is_dir():
        from tf_esimcse.errors import DataError

        raise DataError("no brown/ folder here (the default corpus); pass --corpus FILE or fix --data-dir", path=data_dir)


def write_json_atomic(path, obj):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def resolve_jit(setting, strategy=None):
    if setting == "auto":
        # XLA on CPU fails under MirroredStrategy; only use it with the default strategy.
        strategy = strategy or tf.distribute.get_strategy()
        return strategy.num_replicas_in_sync == 1 and not isinstance(
            strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))
    return str(setting).lower() in ("1", "true", "yes")


def make_strategy(name):
    """`default` | `mirrored` (every local GPU, else the CPU) | `multiworker` (reads TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            from tf_esimcse.errors import TfEsimcseError

            raise TfEsimcseError("--strategy multiworker needs the TF_CONFIG environment variable (see README)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}: expected default, mirrored or multiworker.")


def is_chief(strategy):
    """Whether this process writes models and results (the only worker, or the chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def run_training(config, build_model, build_dataset, name="run"):
    """Train, keep the best STS-B dev weights, save the encoder, evaluate, write results.json.

    Args:
        config: a `TrainConfig` (or subclass).
        build_model: `fn(encoder, config) -> keras.Model` (a SimCSE-family training model).
        build_dataset: `fn(sentences, preprocessor, config) -> tf.data.Dataset` (repeating).

    Returns:
        dict with the results and the saved model path.
    """
    print(f"== {name} config ==\n" + json.dumps(dataclasses.asdict(config), indent=2), flush=True)
    check_pooler_type(config.pooler)
    if config.strategy not in ("default", "mirrored", "multiworker"):
        raise ValueError(f"Unknown strategy {config.strategy!r}: expected default, mirrored or multiworker.")
    check_data_dir(config.data_dir, config.corpus)
    keras.utils.set_random_seed(config.seed)

    sentences = load_sentences(config.corpus, config.data_dir, max_sentences=config.max_sentences or None)
    steps_per_epoch = len(sentences) // config.batch_size
    total_steps = config.steps or steps_per_epoch * config.epochs
    print(f"corpus: {len(sentences)} sentences, {steps_per_epoch} steps per epoch; training {total_steps} steps",
          flush=True)

    strategy = make_strategy(config.strategy)
    if strategy.num_replicas_in_sync > 1:
        print(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replicas; "
              f"global batch {config.batch_size} ({config.batch_size // strategy.num_replicas_in_sync} per replica)")
        if config.batch_size % strategy.num_replicas_in_sync:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {strategy.num_replicas_in_sync} replicas")
    with strategy.scope():
        encoder = SentenceEncoder.from_pretrained(
            config.model, pooler_type=config.pooler, sequence_length=config.max_len,
            dropout=config.dropout, mlp_only_train=config.mlp_only_train, fast_dropout=config.fast_dropout,
        )
        model = build_model(encoder, config)
        optimizer = keras.optimizers.AdamW(
            learning_rate=linear_schedule(config.learning_rate, total_steps, config.warmup_ratio),
            weight_decay=config.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
        )
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        model.max_grad_norm = config.max_grad_norm or None
        model.compile(optimizer=optimizer, jit_compile=resolve_jit(config.jit_compile, strategy))
    dataset = build_dataset(sentences, encoder.preprocessor, config)
    chief = is_chief(strategy)

    output_dir = pathlib.Path(config.output_dir)
    if not chief:  # other workers train in lock-step but write their files to a scratch dir
        import tempfile

        output_dir = pathlib.Path(tempfile.mkdtemp(prefix="tf_esimcse_worker_"))
    log_dir = pathlib.Path(config.log_dir or output_dir / "logs")
    output_dir.mkdir(parents=True, exist_ok=True)
    model_dir = output_dir / "model"
    best_file = output_dir / "best_step.json"
    backup_dir = output_dir / "backup"
    initial_best = None
    if backup_dir.is_dir() and best_file.is_file() and model_dir.is_dir():
        # Resuming an interrupted run: BackupAndRestore restores weights, optimizer and step;
        # the best model of the earlier part stays unless this part beats it.
        previous = json.loads(best_file.read_text())
        initial_best = {"step": previous["step"], "score": previous["stsb_dev"]}
        print(f"resuming from {backup_dir}; best so far: STS-B dev {previous['stsb_dev']:.2f} at step {previous['step']}")

    def save_best(callback, step, score):
        # Written atomically (a new directory renamed into place), so an interrupted save never
        # destroys the previous best.
        encoder.save_pretrained(model_dir)
        write_json_atomic(best_file, {"step": step, "stsb_dev": score})

    sts_callback = STSEvaluationCallback(
        encoder, config.data_dir, eval_every_n_steps=config.eval_steps, log_dir=str(log_dir),
        restore_best_weights=True, on_new_best=save_best, initial_best=initial_best,
    )
    callbacks = [
        # BackupAndRestore resumes at epoch boundaries, so Keras "epochs" here are chunks
        # of `backup_steps` steps, backed up at the end of each; StopAtStep ends the run exactly.
        AtomicBackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True),
        StopAtStep(total_steps),
        keras.callbacks.TensorBoard(str(log_dir), update_freq=max(1, min(50, config.eval_steps))),
        sts_callback,
    ]
    per_epoch = max(1, min(config.backup_steps or total_steps, total_steps))
    epochs = -(-total_steps // per_epoch)
    if hasattr(model, "data_epoch_steps"):
        model.data_epoch_steps = steps_per_epoch  # ESimCSE empties its queue once per data epoch
    metadata = backup_dir / "training_metadata.json"
    if metadata.is_file():
        # The pipeline is deterministic for a seed: skip the batches the interrupted part used,
        # so the resumed run sees the rest of the stream, not its beginning again.
        done_steps = int(json.loads(metadata.read_text()).get("epoch", 0)) * per_epoch
        dataset = dataset.skip(done_steps)
        print(f"skipping the {done_steps} batches already trained on")
    start = time.time()
    model.fit(dataset, epochs=epochs, steps_per_epoch=per_epoch, callbacks=callbacks,
              verbose=1 if sys.stdout.isatty() else 2,  # no progress-bar spam in log files
              shuffle=False)
    seconds = time.time() - start
    done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    print(f"trained to step {done} of {total_steps}; this session ran {seconds:.0f} s")
    if not model_dir.is_dir():  # no evaluation improved anything (e.g. NaN): keep the last weights
        encoder.save_pretrained(model_dir)

    results = {"config": dataclasses.asdict(config), "best_step": sts_callback.best_step,
               "best_stsb_dev": sts_callback.best_score, "train_seconds": seconds,
               "model_dir": str(model_dir)}
    if config.final_eval:
        # Evaluate what was saved, reloaded as a user would load it (inference pooler).
        eval_encoder = SentenceEncoder.from_pretrained(model_dir)
        scores = evaluate_sts(lambda s: eval_encoder.encode(s, batch_size=128, verbose=0), config.data_dir)
        results["test"] = scores
        print(format_table(scores))
    write_json_atomic(output_dir / "results.json", results)
    print(f"saved encoder to {model_dir}; results in {output_dir / 'results.json'}")
    return results


def main_guard(fn):
    """Run a recipe's main, turning our own errors into one-line messages (exit code 2)."""
    from tf_esimcse.errors import TfEsimcseError

    try:
        return fn()
    except (TfEsimcseError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
