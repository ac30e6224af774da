"""A Keras callback that does SimCSE's model selection: STS-B dev every N steps, keep the best.

SimCSE's trainer (princeton-nlp/SimCSE `simcse/trainers.py`, `CLTrainer.evaluate` and
`_save_checkpoint`) evaluates STS-B dev Spearman (cosine vs gold, SentEval's unsupervised
protocol, `results['STSBenchmark']['dev']['spearman'][0]`) every `--eval_steps 125`
(`run_unsup_example.sh`, with `--metric_for_best_model stsb_spearman --load_best_model_at_end`)
and saves a checkpoint only when the score is strictly greater (`np.greater`) than the best so
far. This callback does the same inside `model.fit`, on the inference encoder
(`restore_best_weights` plays the part of `--load_best_model_at_end`, `on_new_best` the part of
the checkpoint save), and additionally tracks alignment and uniformity on STS-B dev (SimCSE
paper, Section 5).
"""
import inspect
import os

import keras
import numpy as np
import tensorflow as tf

from tf_esimcse import progress
from tf_esimcse.data import senteval
from tf_esimcse.evaluation import sts

_MONITORS = {"stsb_dev": "max", "alignment": "min", "uniformity": "min"}
# TensorBoard tag of each evaluation written to the logs (tf_esimcse.plots reads them back).
SUMMARY_NAMES = {"stsb_dev": "stsb_dev_spearman", "alignment": "alignment", "uniformity": "uniformity"}


def _accepts_kwarg(fn, name):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class STSEvaluationCallback(keras.callbacks.Callback):
    """Evaluate STS-B dev every `eval_every_n_steps` batches and keep the best encoder weights.

    Steps are counted globally across epochs (and across successive `fit` calls on the same
    callback). With `steps_per_execution > 1` Keras reports batches in groups, so an evaluation
    runs at the first reported step at or past each multiple of `eval_every_n_steps`. An
    evaluation also runs at the end of training unless the last step was just evaluated. Only the STS-B dev split is read (once, at construction) and encoded, so an
    evaluation costs one pass over its ~2.9k unique sentences.

    Args:
        encoder: object with `encode(sentences, batch_size=...) -> np.ndarray [n, d]`,
            `get_weights()` and `set_weights()`, e.g. a `SentenceEncoder` sharing weights with
            the model being trained.
        data_dir: str or path-like. See `tf_esimcse.data.senteval.resolve_senteval_dir`.
        dev_pairs: `STSPairs` or None. Select on these pairs instead of STS-B dev (a user's own
            file, `tf_esimcse.data.senteval.read_sts_file`); the monitor keeps its name
            "stsb_dev". Defaults to None (STS-B dev from `data_dir`).
        eval_every_n_steps: int. Training batches between evaluations. Defaults to 125, SimCSE's
            setting.
        monitor: str. "stsb_dev" (higher is better), "alignment" or "uniformity" (lower is
            better). Defaults to "stsb_dev".
        restore_best_weights: bool. At the end of training, set the encoder back to the weights
            it had at the best evaluation. Defaults to True.
        log_dir: str or None. If set, scalars `stsb_dev_spearman`, `alignment` and `uniformity`
            are written with `tf.summary` to `log_dir/validation` at the global step. Defaults
            to None.
        extra_metrics: bool. Also compute alignment and uniformity. Defaults to True.
        verbose: int. 1 prints one line per evaluation. Defaults to 1.
        on_new_best: callable or None. Called as `on_new_best(callback, step, score)` after each
            new best, e.g. to save the encoder to disk. Defaults to None.
        batch_size: int. Passed to `encoder.encode`. Defaults to 128 (SentEval's batch size).
        on_evaluation: callable or None. Called as `on_evaluation(record)` after every
            evaluation with its `{"step", "stsb_dev", "alignment", "uniformity"}` record (e.g. to
            keep the training trajectory on disk). Defaults to None.
        initial_best: dict or None. `{"step": int, "score": float}` of the best evaluation of an
            earlier, interrupted part of the same run: only better scores count as new bests.
        evaluate_at_start: bool. Evaluate once before the first training step (step 0: the
            untrained start, the reference every later evaluation reads against), unless
            training resumes past step 0. Defaults to False.
        start_is_candidate: bool. Whether the step-0 evaluation competes for the best (then, if
            no later evaluation beats it, the start is what `restore_best_weights` and
            `on_new_best` keep). Defaults to False: the best is chosen among trained steps.

    Attributes:
        history: list of dicts, one per evaluation: {"step": int, "stsb_dev": float, and with
            `extra_metrics` "alignment" and "uniformity"}.
        best_score: float or None. Best value of `monitor` so far.
        best_step: int or None. Global step of the best evaluation.
        best_weights: list of np.ndarray or None. Copy of `encoder.get_weights()` at the best.

    Examples:
    ```python
    callback = STSEvaluationCallback(encoder, "data", eval_every_n_steps=125, log_dir="logs")
    model.fit(train_ds, epochs=1, callbacks=[callback])
    print(callback.best_score, callback.best_step)
    ```
    """

    def __init__(
        self,
        encoder,
        data_dir,
        eval_every_n_steps=125,
        monitor="stsb_dev",
        restore_best_weights=True,
        log_dir=None,
        extra_metrics=True,
        verbose=1,
        on_new_best=None,
        batch_size=128,
        initial_best=None,
        on_evaluation=None,
        dev_pairs=None,
        evaluate_at_start=False,
        start_is_candidate=False,
    ):
        super().__init__()
        if monitor not in _MONITORS:
            raise ValueError(f"Unknown monitor {monitor!r}; expected one of {tuple(_MONITORS)}")
        if monitor != "stsb_dev" and not extra_metrics:
            raise ValueError(f"monitor={monitor!r} needs extra_metrics=True")
        if int(eval_every_n_steps) < 1:
            raise ValueError(f"eval_every_n_steps must be a positive integer, got {eval_every_n_steps!r}")
        self.encoder = encoder
        self.data_dir = data_dir
        self.eval_every_n_steps = int(eval_every_n_steps)
        self.monitor = monitor
        self.restore_best_weights = restore_best_weights
        self.log_dir = log_dir
        self.extra_metrics = extra_metrics
        self.verbose = verbose
        self.on_new_best = on_new_best
        self.on_evaluation = on_evaluation
        self.batch_size = batch_size
        self.evaluate_at_start = evaluate_at_start
        self.start_is_candidate = start_is_candidate

        self.dev_pairs = dev_pairs if dev_pairs is not None else senteval.read_stsb(data_dir, "dev")
        self.history = []
        # A resumed run passes the best of its earlier part ({"step", "score"}), so that a worse
        # model never replaces the saved best. Its weights live on disk, not in `best_weights`.
        self.best_score = None if initial_best is None else float(initial_best["score"])
        self.best_step = None if initial_best is None else int(initial_best["step"])
        self.best_weights = None
        self.global_step = 0
        self._last_eval_step = None
        self._batches_seen_in_epoch = 0
        self._writer = None
        # No progress bar inside the training loop, where the encoder's encode() has one.
        self._encode_kwargs = {"verbose": 0} if _accepts_kwarg(encoder.encode, "verbose") else {}

    def _is_better(self, score):
        if score is None or np.isnan(score):
            return False
        if self.best_score is None:
            return True
        if _MONITORS[self.monitor] == "max":
            return score > self.best_score
        return score < self.best_score

    def _summary_writer(self):
        if self._writer is None and self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "validation"))
        return self._writer

    def evaluate(self):
        """Run one evaluation at the current global step and update the best.

        Returns:
            The dict of metrics for this step (also appended to `history`).
        """
        step = self.global_step
        metrics = sts.pair_metrics(
            lambda sentences: self.encoder.encode(sentences, batch_size=self.batch_size, **self._encode_kwargs),
            self.dev_pairs,
            alignment_uniformity=self.extra_metrics,
        )
        record = {"step": step, "stsb_dev": metrics["spearman"]}
        if self.extra_metrics:
            record["alignment"] = metrics["alignment"]
            record["uniformity"] = metrics["uniformity"]
        self.history.append(record)
        self._last_eval_step = step

        writer = self._summary_writer()
        if writer is not None:
            with writer.as_default():
                for key, name in SUMMARY_NAMES.items():
                    if key in record:
                        tf.summary.scalar(name, record[key], step=step)
            writer.flush()

        score = record[self.monitor]
        improved = self._is_better(score) and (step > 0 or self.start_is_candidate)
        if improved:
            self.best_score = score
            self.best_step = step
            self.best_weights = [np.array(w, copy=True) for w in self.encoder.get_weights()]
        if self.verbose:
            extra = ""
            if self.extra_metrics:
                extra = f", alignment {record['alignment']:.4f}, uniformity {record['uniformity']:.4f}"
            fmt = ".2f" if self.monitor == "stsb_dev" else ".4f"
            best = "n/a" if self.best_score is None else format(self.best_score, fmt)
            if step == 0:
                line = f"step 0 (the start, untrained): stsb_dev {record['stsb_dev']:.2f}{extra}"
            else:
                line = (f"step {step}: stsb_dev {record['stsb_dev']:.2f}{extra}; "
                        f"best {self.monitor} {best} at step {self.best_step}" + (" (new best)" if improved else ""))
            progress.echo(line)
        if self.on_evaluation is not None:
            self.on_evaluation(record)
        if improved and self.on_new_best is not None:
            self.on_new_best(self, step, score)
        return record

    def _add_to_logs(self, logs):
        if logs is not None and self.best_score is not None:
            logs[f"best_{self.monitor}"] = self.best_score

    def on_train_begin(self, logs=None):
        self._batches_seen_in_epoch = 0
        # A run resumed from a backup (e.g. keras.callbacks.BackupAndRestore) starts a fresh
        # callback; the restored optimizer step count keeps evaluation and summary steps aligned.
        optimizer = getattr(self.model, "optimizer", None) if self.model is not None else None
        iterations = getattr(optimizer, "iterations", None)
        if iterations is not None:
            try:
                self.global_step = max(self.global_step, int(keras.ops.convert_to_numpy(iterations)))
            except (TypeError, ValueError):
                pass
        if self.evaluate_at_start and self.global_step == 0 and self._last_eval_step is None:
            self.evaluate()

    def on_epoch_begin(self, epoch, logs=None):
        self._batches_seen_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the 0-based index of the last batch run; with steps_per_execution > 1 Keras
        # calls this once per execution, so advance by the number of batches actually run.
        previous = self.global_step
        self.global_step += max(int(batch) + 1 - self._batches_seen_in_epoch, 1)
        self._batches_seen_in_epoch = int(batch) + 1
        if self.global_step // self.eval_every_n_steps > previous // self.eval_every_n_steps:
            self.evaluate()
        self._add_to_logs(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._add_to_logs(logs)

    def on_train_end(self, logs=None):
        if self.global_step > 0 and self._last_eval_step != self.global_step:
            self.evaluate()
        self._add_to_logs(logs)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                progress.echo(f"Restoring encoder weights from step {self.best_step} "
                              f"({self.monitor} {self.best_score:.4f})")
            self.encoder.set_weights(self.best_weights)
        if self._writer is not None:
            self._writer.flush()
