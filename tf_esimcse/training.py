"""The run loop shared by the recipes: examples -> views -> `ContrastiveModel.fit` -> evaluate -> save.

A recipe supplies a `TrainConfig` (`tf_esimcse.config`), a function building its objective and a
function building its tf.data views; `run_training` does the rest: the strategy, the encoder, the
model and optimizer, resumable backups, STS-B dev model selection, TensorBoard, the saved encoder,
the 7-task evaluation and `results.json` (with the environment it ran in). `run_seeds` repeats
it for each seed of `--seeds` and writes the mean ± std summary.
"""
import dataclasses
import gc
import hashlib
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tf_esimcse import progress, run_folder
from tf_esimcse.atomic_files import write_json_atomic  # noqa: F401 (also imported from here)
from tf_esimcse.backup import AtomicBackupAndRestore
from tf_esimcse.config import TrainConfig, add_config_flags, default_data_dir, parse_config  # noqa: F401
from tf_esimcse.data.corpus import load_sentences
from tf_esimcse.data.senteval import read_sts_file, resolve_senteval_dir
from tf_esimcse.environment import environment_info
from tf_esimcse.errors import DataError, TfEsimcseError, TrainingDiverged
from tf_esimcse.evaluation.callbacks import STSEvaluationCallback
from tf_esimcse.evaluation.sts import (encoder_length_split, evaluate_sts, format_length_split, format_table_rows,
                                       pair_metrics)
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.model_card import examples_sha256, write_model_card
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.run_summary import write_summary
from tf_esimcse.schedules import WarmupThen, linear_schedule  # noqa: F401


class StopAtStep(keras.callbacks.Callback):
    """Stop `fit` once the optimizer has taken `total_steps` steps (also after a resume)."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = int(total_steps)

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.total_steps:
            self.model.stop_training = True


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss term or gradient (a finite loss can have NaN or
    Inf gradients: `ContrastiveModel` then zeroes them, leaving the weights as they were, and logs
    `nonfinite_gradients`), and records the step and the term, so that no backup or model is
    written afterwards."""

    def __init__(self):
        super().__init__()
        self.diverged = None  # (step, term) once a non-finite value was seen

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if name == "loss" or name.endswith("_loss") or name == "nonfinite_gradients":
                number = float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(-1)[0])
                if not math.isfinite(number) or (name == "nonfinite_gradients" and number > 0):
                    step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
                    self.diverged = (step, "gradient" if name == "nonfinite_gradients" else name)
                    self.model.stop_training = True
                    return


class LossCollapseWatch(keras.callbacks.Callback):
    """Warns when the training loss collapses towards 0 while STS-B dev falls: the positives
    have become trivial to find (e.g. both views identical, as with one dropout mask for both),
    so the model learns nothing that transfers.

    It averages the training loss between evaluations; `check(record, best_score)` (called after
    each evaluation) warns, on the console and as the TensorBoard scalar `warnings/loss_collapse`,
    when that average is below `ratio` x the first window's while STS-B dev is at least
    `dev_drop` points below the best so far and below the previous evaluation.
    """

    def __init__(self, log_dir=None, ratio=0.25, dev_drop=1.0):
        super().__init__()
        self.log_dir, self.ratio, self.dev_drop = log_dir, float(ratio), float(dev_drop)
        self.first_window = None
        self.previous_dev = None
        self.warnings = []
        self._sum, self._count = 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get("loss")
        if value is not None:
            number = float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(-1)[0])
            if math.isfinite(number):
                self._sum, self._count = self._sum + number, self._count + 1

    def check(self, record, best_score):
        window = self._sum / self._count if self._count else None
        self._sum, self._count = 0.0, 0
        dev, previous = record["stsb_dev"], self.previous_dev
        self.previous_dev = dev
        if window is None:
            return None
        if self.first_window is None:
            self.first_window = window
            return None
        collapsed = (window < self.ratio * self.first_window and previous is not None and dev < previous
                     and best_score is not None and dev <= best_score - self.dev_drop)
        if not collapsed:
            return None
        message = (f"warning: step {record['step']}: the training loss fell to {window:.4g} (from {self.first_window:.4g} "
                   f"at first) while STS-B dev fell to {dev:.2f} (best {best_score:.2f}): the positives may have "
                   f"become trivial (identical views?) and the model is no longer learning what STS measures")
        progress.echo(message)
        self.warnings.append(message)
        if self.log_dir:
            writer = tf.summary.create_file_writer(str(self.log_dir))
            with writer.as_default():
                tf.summary.scalar("warnings/loss_collapse", 1.0, step=record["step"])
                tf.summary.text("warnings/message", message, step=record["step"])
            writer.flush()
        return message


def fit_closing_tensorboard(model, dataset, **fit_kwargs):
    """`model.fit`, and when it raises, the TensorBoard callbacks' writers are closed as `fit`
    would have: Keras' TensorBoard enters a process-wide `tf.summary.record_if` context in
    `on_train_begin` and leaves it only in `on_train_end`, so an interrupted `fit` would
    otherwise leave every later summary of the process filtered by a dead callback's step."""
    try:
        return model.fit(dataset, **fit_kwargs)
    except BaseException:
        progress.close_all()  # an error message starts on its own line, not after a status line
        for callback in fit_kwargs.get("callbacks") or []:
            if isinstance(callback, keras.callbacks.TensorBoard):
                try:
                    callback.on_train_end()
                except Exception:  # noqa: BLE001 (already failing: keep the original error)
                    pass
        raise


def make_optimizer(config, total_steps):
    """The Hugging Face Trainer's optimizer behind the official code: AdamW (betas 0.9/0.999,
    epsilon 1e-8) on the linear schedule (optional warm-up, decay to exactly 0), weight decay
    `config.weight_decay` on every weight except biases and LayerNorm's gamma/beta."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=linear_schedule(config.learning_rate, total_steps, config.warmup_ratio),
        weight_decay=config.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def check_data_dir(data_dir, corpus, dev_file=""):
    """Fail early, in one line, if the evaluation data (or the Brown corpus) is missing; return
    the SentEval folder (`resolve_senteval_dir`), found once here and passed down to everything
    that reads it. With a `dev_file`, SentEval is optional: `None` when it is absent (the final
    7-task table is then skipped)."""
    senteval_dir = None
    if dev_file:
        read_sts_file(dev_file)
        try:
            senteval_dir = resolve_senteval_dir(data_dir)
        except (TfEsimcseError, ValueError, OSError):
            senteval_dir = None
    else:
        senteval_dir = resolve_senteval_dir(data_dir)
    if corpus == "brown" and not (pathlib.Path(data_dir) / "brown").is_dir():
        raise DataError("no brown/ folder here (the default corpus); pass --corpus FILE or fix --data-dir", path=data_dir)
    return senteval_dir


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
            raise TfEsimcseError("--strategy multiworker needs the TF_CONFIG environment variable (see docs/recipes.md, 'Several devices and machines')")
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


def load_corpus(config):
    """The default examples: the sentences of `config.corpus` (one field)."""
    return load_sentences(config.corpus, config.data_dir, max_sentences=config.max_sentences or None)


def _num_examples(examples):
    if isinstance(examples, dict):
        return len(next(iter(examples.values()))) if examples else 0
    return len(examples)


def tensorboard_update_freq(config, total_steps):
    """Batch-level TensorBoard logging often enough that even a short run has its loss and
    learning-rate curves: every 10 steps, or every step for runs of 10 steps or fewer."""
    return max(1, min(10, int(total_steps) // 2 or 1, int(config.eval_steps) or 10))


def _check_examples(config, examples, replicas):
    """The corpus must fill at least one batch, and the batch must split across the replicas."""
    n = _num_examples(examples)
    if n < config.batch_size:
        raise DataError(f"{n} example{'s' if n != 1 else ''}, fewer than one batch of --batch-size "
                        f"{config.batch_size}: give a larger corpus or a smaller --batch-size", path=config.corpus)
    if config.batch_size % replicas:
        raise ValueError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas")


def _start_key(config):
    """What the untrained start's scores depend on (a freshly drawn MLP head in the inference
    pooler makes them depend on the seed too)."""
    key = {"model": str(config.model), "pooler": config.pooler, "mlp_only_train": bool(config.mlp_only_train),
           "max_len": config.max_len, "dev_file": config.dev_file}
    if config.pooler == "cls" and not config.mlp_only_train:
        key["seed"] = config.seed
    return key


def _start_test_scores(config, encoder, start_file, senteval_dir):
    """The starting encoder's 7-task scores (before step 1), read from `start_file` when an earlier
    run of the same start wrote them (another seed, or this run before an interruption)."""
    key = _start_key(config)
    cached = run_folder.read_json(start_file)
    if cached and cached.get("key") == key and "test" in cached:
        return cached["test"]
    print("evaluating the starting encoder on the 7 STS tasks (the reference for this run)", flush=True)
    scores = evaluate_sts(lambda s: encoder.encode(s, batch_size=128, verbose=0), senteval_dir)
    write_json_atomic(start_file, {"key": key, "test": scores})
    return scores


def below_start_message(evaluations, dev_name="STS-B dev", keep_start=False):
    """One line when no evaluation after step 0 beats the start's (step 0) dev score, else None."""
    start = next((r for r in evaluations if r["step"] == 0), None)
    if start is None or not math.isfinite(start["stsb_dev"]):
        return None
    trained = [r for r in evaluations if r["step"] > 0 and math.isfinite(r["stsb_dev"])]
    if trained and max(r["stsb_dev"] for r in trained) > start["stsb_dev"]:
        return None
    if trained:
        best = max(trained, key=lambda r: r["stsb_dev"])
        what = f"{dev_name} {best['stsb_dev']:.2f} after training (best at step {best['step']})"
    else:
        what = f"no finite {dev_name} after training"
    outcome = ("--keep-start kept the start as the model" if keep_start
               else "the saved model is the best trained one; pass --keep-start to keep the start instead")
    relation = "below" if not trained or best["stsb_dev"] < start["stsb_dev"] else "no better than"
    return f"{what}, {relation} the start's {start['stsb_dev']:.2f}: {outcome}"


def run_training(config, build_objective, build_dataset, load_examples=load_corpus, name="run", start_file=None,
                 method=None):
    """Train, keep the best STS-B dev weights, save the encoder, evaluate, write results.json.

    In three parts: `build_run` (examples, encoder, model, batches), `build_callbacks` (backups,
    model selection, logs) around `fit`, and `final_evaluation` (the saved model's scores,
    `results.json`). The SentEval folder is found once (`check_data_dir`) and passed to each.

    The run folder (`config.output_dir`) follows `tf_esimcse.run_folder`'s rules: a finished run
    of the same settings is skipped (its results are returned), one of other settings is refused
    unless `config.overwrite`, an unfinished one resumes, and one process at a time uses it.
    The starting encoder is evaluated before step 1 (step 0 of `evaluations.json`,
    `results["start"]`); when no evaluation beats it, the run says so (`results["below_start"]`)
    and, with `config.keep_start`, keeps the start as its model.

    Args:
        config: a `TrainConfig` (or subclass).
        build_objective: `fn(config) -> tf_esimcse.objectives.Objective`.
        build_dataset: `fn(examples, preprocessor, config) -> tf.data.Dataset` (repeating) of the
            views the objective reads (`tf_esimcse.data.views.views_dataset` builds any of them).
        load_examples: `fn(config) -> examples`: a list of sentences (default: the corpus), of
            tuples (pairs, triplets), or a dict of equal-length lists.
        start_file: where the start's 7-task scores are kept (default `<output_dir>/start.json`;
            `run_seeds` shares one file between seeds).
        method: str or None. The method's registry name, recorded in `results.json` and the
            model card. Defaults to `name`.

    Returns:
        dict with the results and the saved model path.

    Raises:
        RunFolderError: the output folder holds a run of other settings, or is in use.
        TrainingDiverged: a non-finite loss, or no finite STS-B dev evaluation. `results.json`
            then says `"status": "diverged"`, the last good backup is kept, and no model is
            saved as the run's result.
    """
    config.validate()  # for callers that built the config without parse_config
    senteval_dir = check_data_dir(config.data_dir, config.corpus, config.dev_file)
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    output_dir = pathlib.Path(config.output_dir)
    state = run_folder.inspect(output_dir, config) if chief else None
    if state is not None and not config.overwrite:
        if state.kind == "finished":
            print(run_folder.finished_line(state), flush=True)
            return state.results
        if state.kind == "diverged":
            raise TrainingDiverged(f"{output_dir} diverged earlier ({state.results.get('reason', 'see results.json')}); "
                                   "pass --overwrite to train again")
        if state.kind == "other":
            raise run_folder.RunFolderError(run_folder.refusal(state))

    run = build_run(config, build_objective, build_dataset, load_examples, name, strategy)
    run.method = method or name
    if not chief:  # other workers train in lock-step but write their files to a scratch dir
        output_dir = pathlib.Path(tempfile.mkdtemp(prefix="tf_esimcse_worker_"))
    lock = run_folder.RunLock(output_dir).acquire() if chief else None
    try:
        _prepare_folder(config, output_dir, state)
        return _train_in_folder(config, output_dir, run, senteval_dir,
                                start_file=pathlib.Path(start_file) if start_file else output_dir / "start.json")
    finally:
        if lock is not None:
            lock.release()


@dataclasses.dataclass
class Run:
    """What `build_run` makes: the encoder, the compiled training model, its batches, the step
    count and the progress unit ("sent" for sentences, "ex" for pairs and triplets)."""

    encoder: SentenceEncoder
    model: ContrastiveModel
    dataset: tf.data.Dataset
    total_steps: int
    unit: str
    corpus: dict = None  # name, examples, sha256 (`corpus_record`): results.json and the model card
    method: str = None


def build_run(config, build_objective, build_dataset, load_examples, name, strategy):
    """Seed, examples, encoder, model, optimizer and batches for `config` (printing the config and
    the data's size); nothing is written."""
    keras.utils.set_random_seed(config.seed)
    examples = load_examples(config)
    _check_examples(config, examples, strategy.num_replicas_in_sync)
    print(f"== {name} config ==\n" + json.dumps(dataclasses.asdict(config), indent=2), flush=True)
    steps_per_epoch = _num_examples(examples) // config.batch_size
    total_steps = config.steps or steps_per_epoch * config.epochs
    print(f"data: {_num_examples(examples)} examples, {steps_per_epoch} steps per epoch; training {total_steps} steps",
          flush=True)
    if strategy.num_replicas_in_sync > 1:
        print(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replicas; "
              f"global batch {config.batch_size} ({config.batch_size // strategy.num_replicas_in_sync} per replica)")
    with strategy.scope():
        encoder = SentenceEncoder.from_pretrained(
            config.model, pooler_type=config.pooler, sequence_length=config.max_len,
            dropout=config.dropout, mlp_only_train=config.mlp_only_train, fast_dropout=config.fast_dropout,
            fresh_mlp=True,  # a trained head starts from N(0, 0.02), as the official code's
        )
        model = ContrastiveModel(
            encoder, build_objective(config), max_grad_norm=config.max_grad_norm or None,
            steps_per_data_epoch=max(1, steps_per_epoch), mini_batch_size=config.mini_batch_size or None,
        )
        optimizer = make_optimizer(config, total_steps)
        model.compile(optimizer=optimizer, jit_compile=resolve_jit(config.jit_compile, strategy))
    dataset = build_dataset(examples, encoder.preprocessor, config)
    # examples of several sentences (pairs, NLI triplets) are counted as examples, not sentences
    unit = "sent" if isinstance(examples, list) and examples and isinstance(examples[0], str) else "ex"
    return Run(encoder, model, dataset, total_steps, unit, corpus=corpus_record(config, examples))


def corpus_record(config, examples):
    """What the run trained on, for `results.json` and the model card: the corpus's name, its
    number of examples and the SHA-256 of the examples as read (`tf_esimcse.model_card.examples_sha256`),
    plus the file's own SHA-256 when the corpus is a file."""
    record = {"name": str(config.corpus), "examples": _num_examples(examples), "sha256": examples_sha256(examples)}
    if os.path.isfile(str(config.corpus)):
        record["file_sha256"] = _file_sha256(config.corpus)
    return record


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _prepare_folder(config, output_dir, state):
    """The locked run folder made ready: an earlier run removed (--overwrite), or an attempt that
    stopped before its first backup cleared; the settings recorded."""
    if state is not None and config.overwrite and state.kind != "fresh":
        run_folder.remove_run_files(output_dir)
        print(f"--overwrite: removed the earlier run in {output_dir}", flush=True)
    elif state is not None and state.kind == "unfinished" and not (output_dir / "backup" /
                                                                   "training_metadata.json").is_file():
        # An earlier attempt stopped before its first backup: nothing to resume; its partial
        # files (a best model, evaluations) must not pass for this attempt's.
        for stale in ("model", "best_step.json", "evaluations.json"):
            run_folder.remove_path(output_dir / stale)
        print(f"starting from step 0: the earlier attempt in {output_dir} stopped before its first backup "
              f"(one is written every --backup-steps {config.backup_steps} steps)", flush=True)
    run_folder.record_settings(output_dir, config)


@dataclasses.dataclass
class RunFiles:
    """The files of a run folder that training writes."""

    output_dir: pathlib.Path
    log_dir: pathlib.Path
    model_dir: pathlib.Path
    best_file: pathlib.Path
    backup_dir: pathlib.Path
    evaluations_file: pathlib.Path

    @classmethod
    def of(cls, config, output_dir):
        return cls(output_dir, pathlib.Path(config.log_dir or output_dir / "logs"), output_dir / "model",
                   output_dir / "best_step.json", output_dir / "backup", output_dir / "evaluations.json")


def _resume_point(files, per_epoch, total_steps):
    """(steps already done, the earlier part's best `{"step", "score"}` or None) from the backup;
    (0, None) for a fresh run. Says so when resuming."""
    metadata = files.backup_dir / "training_metadata.json"
    if not metadata.is_file():
        return 0, None
    # Resuming an interrupted run: BackupAndRestore restores weights, optimizer, step and
    # random states; the best model of the earlier part stays unless this part beats it.
    done_steps = int(json.loads(metadata.read_text()).get("epoch", 0)) * per_epoch
    initial_best, best_so_far = None, ""
    if files.best_file.is_file() and files.model_dir.is_dir():
        previous = json.loads(files.best_file.read_text())
        initial_best = {"step": previous["step"], "score": previous["stsb_dev"]}
        best_so_far = f"; best so far: STS-B dev {previous['stsb_dev']:.2f} at step {previous['step']}"
    print(f"resuming from step {done_steps} of {total_steps} (backup in {files.backup_dir}){best_so_far}", flush=True)
    return done_steps, initial_best


@dataclasses.dataclass
class TrainingCallbacks:
    """`build_callbacks`' result: the list for `fit`, and the ones read after it."""

    callbacks: list
    guard: NonFiniteGuard
    sts: STSEvaluationCallback
    collapse_watch: LossCollapseWatch
    evaluations: list  # every evaluation record so far, as evaluations.json holds them


def build_callbacks(config, files, encoder, total_steps, unit, senteval_dir, dev_pairs, initial_best, resuming):
    """The callbacks of a run: progress, the non-finite guard, backups, the step limit,
    TensorBoard, the loss-collapse watch and STS-B dev model selection (the best encoder saved
    to `files.model_dir`, every evaluation to `files.evaluations_file`)."""
    guard = NonFiniteGuard()

    def save_best(callback, step, score):
        # Written atomically (a new directory renamed into place), so an interrupted save never
        # destroys the previous best.
        if guard.diverged is None:
            encoder.save_pretrained(files.model_dir)
            write_json_atomic(files.best_file, {"step": step, "stsb_dev": score})

    # Every evaluation (step, STS-B dev, alignment, uniformity) in evaluations.json: the training
    # trajectory from step 0 (the untrained start), kept across resumes (a resumed part replays
    # steps after its backup, whose evaluations replace the earlier part's).
    evaluations = (run_folder.read_json(files.evaluations_file) or []) if resuming else []

    collapse_watch = LossCollapseWatch(log_dir=files.log_dir / "train")

    def record_evaluation(record):
        evaluations[:] = [r for r in evaluations if r["step"] < record["step"]] + [record]
        write_json_atomic(files.evaluations_file, evaluations)
        best = max([r["stsb_dev"] for r in evaluations if r["step"] > 0 and math.isfinite(r["stsb_dev"])]
                   or [float("nan")])
        if record["step"] > 0:
            collapse_watch.check(record, best if math.isfinite(best) else None)

    sts_callback = STSEvaluationCallback(
        encoder, senteval_dir, eval_every_n_steps=config.eval_steps, log_dir=str(files.log_dir), dev_pairs=dev_pairs,
        restore_best_weights=True, on_new_best=save_best, initial_best=initial_best,
        on_evaluation=record_evaluation, evaluate_at_start=True, start_is_candidate=config.keep_start,
    )
    callbacks = [
        # first, so that its step times leave out the other callbacks' work
        progress.TrainingProgress(total_steps, config.batch_size, unit=unit),
        guard,  # a non-finite step stops training before anything is written
        # BackupAndRestore resumes at epoch boundaries, so Keras "epochs" here are chunks
        # of `backup_steps` steps, backed up at the end of each; StopAtStep ends the run exactly.
        # The backup is removed only once results.json is written (final_evaluation), so that an
        # interruption during the final evaluation resumes there instead of training again from step 0.
        AtomicBackupAndRestore(str(files.backup_dir), save_freq="epoch", delete_checkpoint=False,
                               skip_if=lambda: guard.diverged is not None),
        StopAtStep(total_steps),
        keras.callbacks.TensorBoard(str(files.log_dir), update_freq=tensorboard_update_freq(config, total_steps)),
        collapse_watch,  # before the evaluation, so its loss window includes the evaluated step
        sts_callback,
    ]
    return TrainingCallbacks(callbacks, guard, sts_callback, collapse_watch, evaluations)


def _train_in_folder(config, output_dir, run, senteval_dir, start_file):
    """The training run proper, in a locked run folder: callbacks, fit, then the final evaluation."""
    files = RunFiles.of(config, output_dir)
    per_epoch = max(1, min(config.backup_steps or run.total_steps, run.total_steps))
    epochs = -(-run.total_steps // per_epoch)
    done_steps, initial_best = _resume_point(files, per_epoch, run.total_steps)
    resuming = (files.backup_dir / "training_metadata.json").is_file()

    dev_name = "STS-B dev"
    dev_pairs = None
    if config.dev_file:
        dev_pairs = read_sts_file(config.dev_file)
        dev_name = f"{config.dev_file}"
        print(f"model selection on {config.dev_file} ({len(dev_pairs.scores)} pairs) instead of STS-B dev")

    start_test = None
    if config.final_eval and senteval_dir is not None:
        # The start's 7-task row, measured before step 1 (the encoder is still untrained here).
        start_test = _start_test_scores(config, run.encoder, start_file, senteval_dir)

    trained = build_callbacks(config, files, run.encoder, run.total_steps, run.unit, senteval_dir, dev_pairs,
                              initial_best, resuming)
    dataset = run.dataset
    if resuming:
        # The pipeline is deterministic for a seed: skip the batches the interrupted part used,
        # so the resumed run sees the rest of the stream, not its beginning again.
        dataset = dataset.skip(done_steps)
    start = time.time()
    fit_closing_tensorboard(run.model, dataset, epochs=epochs, steps_per_epoch=per_epoch, callbacks=trained.callbacks,
                            verbose=0, shuffle=False)
    seconds = time.time() - start
    done = int(keras.ops.convert_to_numpy(run.model.optimizer.iterations))
    print(f"trained to step {done} of {run.total_steps}; this session ran {seconds:.0f} s")
    return final_evaluation(config, files, trained, seconds, done, senteval_dir, dev_pairs, dev_name, start_test,
                            recorded={"method": run.method, "corpus": run.corpus, "total_steps": run.total_steps})


def final_evaluation(config, files, trained, seconds, done, senteval_dir, dev_pairs, dev_name, start_test,
                     recorded=None):
    """After `fit`: the results (diverged, or the saved model's 7-task table, length split and
    own dev file), `results.json` (with `recorded`: the method, corpus and steps), the model
    card in `model/`, and the backup removed. Returns the results."""
    sts_callback, evaluations = trained.sts, trained.evaluations
    output_dir, model_dir, backup_dir, log_dir = files.output_dir, files.model_dir, files.backup_dir, files.log_dir
    start_record = next((r for r in evaluations if r["step"] == 0), None)
    results = {"config": dataclasses.asdict(config), "best_step": sts_callback.best_step,
               "best_stsb_dev": sts_callback.best_score, "train_seconds": seconds,
               "model_dir": str(model_dir), "evaluations": list(evaluations),
               "warnings": list(trained.collapse_watch.warnings), "environment": environment_info()}
    results.update(recorded or {})
    if start_record is not None:
        results["start"] = {k: v for k, v in start_record.items() if k != "step"}
        if start_test is not None:
            results["start"]["test"] = start_test
    best = sts_callback.best_score
    guard = trained.guard
    if guard.diverged is not None or best is None or not math.isfinite(best):
        if guard.diverged is not None:
            step, term = guard.diverged
            reason = f"non-finite {term} at step {step}"
        else:
            reason = "no finite STS-B dev evaluation (every evaluation was NaN: the embeddings collapsed)"
        results.update({"status": "diverged", "reason": reason})
        write_json_atomic(output_dir / "results.json", results)
        _write_card(model_dir)
        kept = f"; the last good backup stays in {backup_dir}" if backup_dir.is_dir() else ""
        earlier = f"; the best model before that stays in {model_dir}" if model_dir.is_dir() else ""
        raise TrainingDiverged(f"training diverged: {reason}{kept}{earlier}; see {output_dir / 'results.json'}")

    results["status"] = "ok"
    below = below_start_message(evaluations, dev_name, keep_start=config.keep_start)
    results["below_start"] = below
    if below:
        print(f"warning: {below}", flush=True)
        _log_text(log_dir / "validation", "warnings/below_start", below, done)
    if config.final_eval:
        # Evaluate what was saved, reloaded as a user would load it (inference pooler).
        eval_encoder = SentenceEncoder.from_pretrained(model_dir)
        encode = lambda s: eval_encoder.encode(s, batch_size=128, verbose=0)  # noqa: E731
        if senteval_dir is not None:
            scores = evaluate_sts(encode, senteval_dir)
            # ESimCSE's length-bias check (its Table 1), so every run and seed summary carries it.
            scores["length_split"] = encoder_length_split(eval_encoder, encode, senteval_dir)
            results["test"] = scores
            rows = [("start (untrained)", start_test)] if start_test is not None else []
            print(format_table_rows(rows + [(f"trained (step {results['best_step']})", scores)]))
            print(format_length_split(scores["length_split"]))
        else:
            print(f"no SentEval data in {config.data_dir}: the 7-task table is skipped")
        if dev_pairs is not None:
            results["dev_file"] = dict(pair_metrics(encode, dev_pairs), path=config.dev_file)
            print(f"{config.dev_file}: Spearman {results['dev_file']['spearman']:.2f} (the saved model)")
    write_json_atomic(output_dir / "results.json", results)
    _write_card(model_dir)
    shutil.rmtree(backup_dir, ignore_errors=True)  # the run is finished: nothing left to resume
    print(f"saved encoder to {model_dir}; results in {output_dir / 'results.json'}")
    return results


def _write_card(directory):
    """The model card (`tf_esimcse.model_card`) of a run's `model/` or a `--seeds` folder, from the
    results just written; a failure to write it is reported in one line, never fatal to the run."""
    if not pathlib.Path(directory).is_dir():
        return
    try:
        write_model_card(directory)
    except (OSError, TfEsimcseError, ValueError) as e:
        print(f"warning: could not write the model card in {directory}: {e}", flush=True)


def _log_text(log_dir, tag, message, step):
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        tf.summary.text(tag, message, step=step)
    writer.flush()
    writer.close()


def run_seeds(config, build_objective, build_dataset, load_examples=load_corpus, name="run"):
    """`run_training` once per seed of `config.seeds` (or once, with `config.seed`).

    With seeds, each run lives in `<output_dir>/seed_<n>` under the run-folder rules (a finished
    seed is skipped, an unfinished one resumes, one of other settings is refused unless
    `--overwrite`); the start's 7-task scores are measured once (`<output_dir>/start.json`) and
    `summary.json` + `summary.md` (mean ± std per task) and the model card `README.md` are
    written to `output_dir` after each seed.

    Returns:
        The single run's results, or `{"runs": [...], "summary": ...}`.
    """
    seeds = config.seed_list()
    if not seeds:
        return run_training(config, build_objective, build_dataset, load_examples=load_examples, name=name)
    root = pathlib.Path(config.output_dir)
    runs = []
    for i, seed in enumerate(seeds):
        seed_config = dataclasses.replace(config, seed=seed, seeds="", output_dir=str(root / f"seed_{seed}"),
                                          log_dir=str(pathlib.Path(config.log_dir) / f"seed_{seed}") if config.log_dir else "")
        print(f"== seed {seed} ({i + 1} of {len(seeds)}) ==", flush=True)
        runs.append(run_training(seed_config, build_objective, build_dataset, load_examples=load_examples,
                                 name=f"{name} seed {seed}", start_file=root / "start.json", method=name))
        summary = write_summary(root, runs, command=environment_info()["command"])
        _write_card(root)
    print(f"summary of {len(seeds)} seeds in {root / 'summary.md'}")
    print((root / "summary.md").read_text())
    return {"runs": runs, "summary": summary}


def freeze_imported_objects():
    """Keep the objects that exist now (a recipe's imports: TensorFlow, Keras, keras-hub, over a
    million) out of the scans of Python's cyclic garbage collector (`gc.freeze`): its full
    collections then scan only what the run makes. Garbage is collected as before. Once per
    process: nothing happens when objects are frozen already (a second freeze would also keep
    whatever the process made since out of every collection)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


def main_guard(fn):
    """Run a recipe's main, turning our own errors into one-line messages (exit code 2; a
    diverged run exits with 3). First `freeze_imported_objects`."""
    freeze_imported_objects()
    try:
        try:
            return fn()
        finally:
            progress.close_all()  # the message below starts on its own line
    except KeyboardInterrupt:
        print("interrupted: the same command resumes from the run's last backup (one every --backup-steps steps)",
              file=sys.stderr)
        sys.exit(130)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except (TfEsimcseError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
