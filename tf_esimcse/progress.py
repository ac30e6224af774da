"""Progress that reads well on a terminal and in a log file (`... | tee run.log`).

Two kinds of output, chosen per stream (a TTY or not), never with colour or escape codes:

- On a terminal: ONE status line, redrawn in place with a carriage return (`\\r`) and ended with
  a newline when the work is done. Lines printed meanwhile go through `echo`, which clears the
  status line, prints the message on its own line and redraws the status line below it.
- In a log (a file, a pipe, a notebook): plain, complete lines, a few of them: never a `\\r`.

What is here:

- `TrainingProgress`: a Keras callback for `model.fit` counting the optimizer's real steps
  (resume-aware), with loss, learning rate, sentences/s, elapsed time and ETA.
- `ProgressBar`: a counter (e.g. sentences encoded) with a bar on a terminal and, in a log, a line
  every `every_seconds` (none for a short job).
- `TaskProgress`: one line per finished task of a sequence (the STS evaluation's tasks).
- `echo(message)`: print a full line without breaking whatever status line is on screen.
- `close_all()`: end every status line on screen (e.g. before an error message).

Everything writes to `sys.stdout` unless given a stream.
"""
import math
import shutil
import sys
import time

import keras

__all__ = ["TrainingProgress", "ProgressBar", "TaskProgress", "echo", "close_all", "format_duration",
           "default_every_steps"]

# The status lines drawn on a terminal now, innermost last (an encode bar inside an evaluation's
# line draws over it and hands the line back when it ends). `echo` finds the active one here.
_ACTIVE = []
# Characters of the status line now on screen, per stream (to blank it out before a shorter one).
_DRAWN = {}

_clock = time.monotonic  # tests replace it
REDRAW_SECONDS = 0.1  # a terminal line is redrawn at most this often (and always at the end)


def _is_tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _columns():
    return max(20, shutil.get_terminal_size((80, 24)).columns)


def _write(stream, text):
    try:
        stream.write(text)
        stream.flush()
    except (ValueError, OSError):  # a closed or broken stream must not stop training
        pass


def format_duration(seconds):
    """`42s`, `1m02s`, `2h05m`: a duration for progress lines (`--` when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _format_rate(per_second):
    if per_second >= 100:
        return f"{per_second:.0f}"
    if per_second >= 10:
        return f"{per_second:.1f}"
    return f"{per_second:.2f}"


def default_every_steps(total_steps):
    """Steps between two lines in a log: the smallest of 1, 2, 5, 10, 20, 50, 100, ... that gives
    at most 50 lines, hence 20 to 50 lines for a run of 50 steps or more (at least one every 5 %),
    a line per step for a run of up to 50."""
    total_steps = max(1, int(total_steps))
    scale = 1
    while True:
        for every in (scale, 2 * scale, 5 * scale):
            if total_steps / every <= 50:
                return every
        scale *= 10


def _bar(fraction, width):
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class _StatusLine:
    """A line redrawn in place on a terminal; the base of the displays below.

    Subclasses set `self.stream` and `self.tty` and implement `_text()` (the line now)."""

    stream = None
    tty = False

    def _fit(self, text):
        limit = _columns() - 1  # a line as wide as the terminal wraps, and `\r` then misses its start
        return text if len(text) <= limit else text[:limit - 3] + "..."

    def _draw(self, text=None):
        text = self._fit(self._text() if text is None else text)
        previous = _DRAWN.get(id(self.stream), 0)
        _write(self.stream, "\r" + text + " " * max(0, previous - len(text)))
        _DRAWN[id(self.stream)] = len(text)

    def _clear(self):
        previous = _DRAWN.pop(id(self.stream), 0)
        if previous:
            _write(self.stream, "\r" + " " * previous + "\r")

    def _open(self):
        if self.tty and self not in _ACTIVE:
            _ACTIVE.append(self)

    def _close(self, final_text=None):
        """Ends the line: on a terminal its last state (or `final_text`) stays, with a newline;
        an enclosing line on the same stream (if any) is then drawn again below it."""
        if self not in _ACTIVE:
            return
        _ACTIVE.remove(self)
        self._draw(final_text)
        _write(self.stream, "\n")
        _DRAWN.pop(id(self.stream), None)
        outer = _active_on(self.stream)
        if outer is not None:
            outer._draw()

    def _close_quietly(self):
        """Ends the line and leaves nothing of it on screen (the enclosing line is redrawn)."""
        if self not in _ACTIVE:
            return
        _ACTIVE.remove(self)
        self._clear()
        outer = _active_on(self.stream)
        if outer is not None:
            outer._draw()

    def _text(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError


def _active_on(stream):
    for display in reversed(_ACTIVE):
        if display.stream is stream:
            return display
    return None


def echo(message, stream=None):
    """Print `message` as a full line while a status line may be on screen.

    On a terminal with a status line drawn (a `TrainingProgress` bar, an encode bar), the status
    line is blanked (`\\r` and spaces), the message printed on its own line, and the status line
    drawn again below it. Otherwise it is a plain `print` (with a flush). Callbacks that print
    during `fit` (evaluations, warnings) use this.

    Args:
        message: str. One or more lines (a trailing newline is added).
        stream: a text stream or None. None: the stream of the status line on screen, else
            `sys.stdout`.
    """
    if stream is None:
        active = _ACTIVE[-1] if _ACTIVE else None
        stream = active.stream if active is not None else sys.stdout
    else:
        active = _active_on(stream)
    message = str(message)
    if active is None:
        _write(stream, message + "\n")
        return
    active._clear()
    _write(stream, message + "\n")
    active._draw()


def close_all():
    """End every status line on screen with a newline (innermost first), e.g. when `fit` was
    interrupted by an error, so that the error message starts on its own line."""
    while _ACTIVE:
        _ACTIVE[-1]._close()


def _to_float(value):
    if value is None:
        return None
    try:
        value = keras.ops.convert_to_numpy(value)
        return float(value.reshape(-1)[0]) if getattr(value, "ndim", 0) else float(value)
    except (TypeError, ValueError, AttributeError, IndexError):
        return None


def _current_learning_rate(optimizer):
    """The optimizer's rate now: its schedule at the optimizer's current step (what Keras'
    `optimizer.learning_rate` and the logged/TensorBoard `learning_rate` give: the rate of the
    next update), or its constant rate."""
    try:
        rate = optimizer.learning_rate
    except (AttributeError, TypeError, ValueError):
        return None
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):  # optimizer-like objects
        rate = rate(optimizer.iterations)
    elif callable(rate) and not hasattr(rate, "numpy"):
        try:
            rate = rate()
        except TypeError:
            return None
    return _to_float(rate)


class TrainingProgress(keras.callbacks.Callback, _StatusLine):
    """Training progress for `model.fit` counted in the optimizer's real steps.

    The step shown is `model.optimizer.iterations`, so a run resumed from a backup starts at its
    restored step ("step 301/500") and Keras epochs are ignored entirely: pass `verbose=0` to
    `fit` and this callback instead of Keras' progress bar.

    On a terminal: one line redrawn in place (`\\r`, at most every 0.1 s), as wide as the
    terminal allows (the bar goes first when it is narrow), e.g.

        step 40/500 [##.................] 8%  loss 0.8123  lr 2.76e-05  412 sent/s  ETA 12m10s

    which training's end leaves as `step 500/500 [...] 100%  ...  in 14m05s` with a newline.
    Lines printed meanwhile through `echo` appear above it. In a log (no TTY): a line saying what
    to expect, then a complete line for the first step of this session, every `every_steps`
    steps or `every_seconds` seconds (whichever comes first), and the last step:

        training from step 0 to 500: a line every 10 steps or 30s; loss = the mean since the ...
        step 1/500 (0%)  loss 0.9012  lr 3.00e-05  elapsed 48s
        step 10/500 (2%)  loss 0.8741  lr 2.95e-05  412 sent/s  elapsed 50s  ETA 12m30s

    Fields:
        loss: the mean training loss of the steps since the previous line (in a log), or of the
            last `every_steps` steps (on a terminal): the per-step losses are recovered from
            Keras' running mean of the epoch (`logs["loss"]`, which `ContrastiveModel` reports as
            `Mean` of its steps' losses), so it is neither one noisy batch nor a stale mean of the
            whole epoch. Absent when the logs have no "loss".
        lr: the optimizer's learning rate now (its schedule at the current step, as TensorBoard's
            `learning_rate`: the rate of the next update; 0 at the end of a linear decay).
        sent/s: training throughput, `batch_size` x steps / the seconds those steps took, measured
            from each step's start to its end, leaving out the first step of the session (tracing
            and XLA compilation) and the time of other callbacks (evaluations, backups): what the
            model trains at. Absent until a second step ran.
        elapsed: wall-clock time since this session's `fit` began (compilation included).
        ETA: the remaining steps at the wall-clock pace since the first step ended, periodic
            evaluations and backups included. Absent until a second step ran.

    Put it before the evaluation callback in the callback list, so that an evaluation after a
    step is not counted in that step's time.

    Args:
        total_steps: int. The optimizer step at which the run ends (not the steps left).
        batch_size: int. Training examples per step (the global batch), for the rate.
        every_steps: int or None. Steps between two lines in a log; None (default): 1, 2, 5, 10,
            20, 50, ... chosen so that a run prints 20 to 50 lines (`default_every_steps`). On a
            terminal, the loss is averaged over this many steps.
        every_seconds: float or None. Also print a line in a log when this many seconds passed
            since the previous one (default 30); None: by steps only.
        stream: a text stream or None. Where to write; None (default): `sys.stdout` (as it is
            when the callback is made).
        tty: bool or None. Redraw one line (True) or print plain lines (False); None (default):
            whether `stream` is a terminal (`stream.isatty()`).
        unit: str. The rate's unit: "sent" (default: one sentence per example, as unsupervised
            training); e.g. "ex" where an example is several sentences (supervised triplets).

    Attributes:
        lines: the lines printed in a log, or the last text drawn on a terminal (for tests).
    """

    def __init__(self, total_steps, batch_size, every_steps=None, every_seconds=30, stream=None, tty=None,
                 unit="sent"):
        super().__init__()
        if isinstance(total_steps, bool) or int(total_steps) < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        if every_steps is not None and int(every_steps) < 1:
            raise ValueError(f"every_steps must be a positive integer or None, got {every_steps!r}")
        self.total_steps = int(total_steps)
        self.batch_size = int(batch_size)
        self.unit = str(unit)
        self.every_steps = int(every_steps) if every_steps is not None else default_every_steps(self.total_steps)
        self.every_seconds = None if every_seconds is None else float(every_seconds)
        self.stream = stream if stream is not None else sys.stdout
        self.tty = _is_tty(self.stream) if tty is None else bool(tty)
        self.lines = []
        self._reset(0)

    def _reset(self, step):
        now = _clock()
        self._session_start = now
        self._start_step = step  # the optimizer's step when this session began
        self._step = step
        self._first_end = None  # (time, step) at the end of this session's first step
        self._step_began = None
        self._train_seconds = 0.0  # time inside steps, first step left out
        self._train_steps = 0
        # Loss: the epoch's running mean (Keras resets it each epoch) -> per-update sums.
        self._epoch_count, self._epoch_mean = 0, 0.0
        self._since_line = [0.0, 0]  # loss sum and steps since the last printed line
        self._recent = []  # (steps, loss sum) of the latest updates, for the terminal's window
        self._last_line_step = step
        self._last_line_time = now
        self._last_draw = None
        self._has_loss = False
        # Room for the widest line expected, so that the bar keeps one width as fields appear.
        self._widest = len(f"step {self.total_steps}/{self.total_steps}100%  loss 0.0000  lr 0.00e+00  "
                           f"0000 {self.unit}/s  ETA 00m00s")

    # --- Keras hooks -----------------------------------------------------------------------------
    def _optimizer_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        value = _to_float(getattr(optimizer, "iterations", None))
        return int(value) if value is not None else self._step

    def on_train_begin(self, logs=None):
        if self in _ACTIVE:  # the same callback in a new `fit`: a clean slate
            _ACTIVE.remove(self)
        self._reset(self._optimizer_step())
        if self.tty:
            self._open()
            self._draw()  # on screen while the first step compiles
        elif self._step < self.total_steps:
            every = (f"every {self.every_steps} steps" if self.every_steps > 1 else "every step") + (
                f" or {format_duration(self.every_seconds)}" if self.every_seconds is not None else "")
            _write(self.stream, f"training from step {self._step} to {self.total_steps}: a line {every}; loss = the "
                                "mean since the previous line; the first step also traces and compiles the model\n")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_count, self._epoch_mean = 0, 0.0  # Keras reset its metrics for this epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._step_began = _clock()

    def on_train_batch_end(self, batch, logs=None):
        now = _clock()
        previous, step = self._step, self._optimizer_step()
        self._step = step
        done = max(step - previous, 0)
        self._add_loss(batch, logs)
        if self._first_end is None:
            self._first_end = (now, step)
        elif self._step_began is not None and done:
            self._train_seconds += now - self._step_began
            self._train_steps += done
        if self.tty:
            if self._last_draw is None or now - self._last_draw >= REDRAW_SECONDS or step >= self.total_steps:
                self._draw()
                self._last_draw = now
            return
        first = previous == self._start_step and step > previous
        by_steps = step // self.every_steps > self._last_line_step // self.every_steps
        by_time = self.every_seconds is not None and now - self._last_line_time >= self.every_seconds
        if step > self._last_line_step and (first or by_steps or by_time or step >= self.total_steps):
            self._print_line(now)

    def on_train_end(self, logs=None):
        if self.tty:
            if self in _ACTIVE:
                self._close()
            return
        if self._step > self._last_line_step:
            self._print_line(_clock())

    def close(self):
        """End the terminal line now (e.g. `fit` raised); `close_all()` does it for every line."""
        self._close()

    # --- numbers -------------------------------------------------------------------------------
    def _add_loss(self, batch, logs):
        mean = _to_float((logs or {}).get("loss"))
        if mean is None:
            return
        self._has_loss = True
        count = int(batch) + 1  # batches of this epoch so far (Keras' running mean is over them)
        if count <= self._epoch_count:  # not a running mean after all (a restart): take it as is
            self._epoch_count, self._epoch_mean = 0, 0.0
        steps = count - self._epoch_count
        total = mean * count - self._epoch_mean * self._epoch_count
        self._epoch_count, self._epoch_mean = count, mean
        self._since_line[0] += total
        self._since_line[1] += steps
        self._recent.append((steps, total))
        while sum(s for s, _ in self._recent) - self._recent[0][0] >= self.every_steps:
            self._recent.pop(0)

    def _loss(self):
        if not self._has_loss:
            return None
        if self.tty:
            steps = sum(s for s, _ in self._recent)
            return sum(t for _, t in self._recent) / steps if steps else None
        total, steps = self._since_line
        return total / steps if steps else None

    def _fields(self, now):
        parts = []
        loss = self._loss()
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        lr = _current_learning_rate(getattr(self.model, "optimizer", None))
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        if self._train_steps and self._train_seconds > 0:
            parts.append(f"{_format_rate(self.batch_size * self._train_steps / self._train_seconds)} {self.unit}/s")
        parts.append(f"elapsed {format_duration(now - self._session_start)}")
        eta = self._eta(now)
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return parts

    def _eta(self, now):
        if self._first_end is None:
            return None
        began, first_step = self._first_end
        if self._step >= self.total_steps:
            return 0.0
        if self._step <= first_step or now <= began:
            return None
        return (self.total_steps - self._step) * (now - began) / (self._step - first_step)

    def _percent(self):
        return int(100 * min(self._step, self.total_steps) / self.total_steps)

    def _print_line(self, now):
        line = "  ".join([f"step {self._step}/{self.total_steps} ({self._percent()}%)"] + self._fields(now))
        self.lines.append(line)
        _write(self.stream, line + "\n")
        self._last_line_step, self._last_line_time = self._step, now
        self._since_line = [0.0, 0]

    def _text(self):
        now = _clock()
        fields = self._fields(now)
        if self in _ACTIVE and self._step < self.total_steps:
            fields = [f for f in fields if not f.startswith("elapsed ")]  # the ETA is what one watches
        else:  # the end: how long it took
            fields = [f"in {f[len('elapsed '):]}" if f.startswith("elapsed ") else f
                      for f in fields if not f.startswith("ETA ")]
        head = f"step {self._step}/{self.total_steps}"
        tail = f"{self._percent()}%  " + "  ".join(fields)
        # The bar's width only shrinks (to what the longest line so far leaves), so that it does
        # not come and go as fields appear.
        self._widest = max(getattr(self, "_widest", 0), len(head) + len(tail))
        width = min(30, _columns() - 1 - self._widest - 4)
        text = f"{head} {_bar(self._step / self.total_steps, width)} {tail}" if width >= 6 else f"{head}  {tail}"
        self.lines[:] = [text]
        return text


class ProgressBar(_StatusLine):
    """A counter towards `total` (e.g. sentences encoded).

    On a terminal: a bar redrawn in place (`encoding [#####.....] 256/300 sentences  85 sent/s
    ETA 1s`), ended at `total/total` with a newline by `close()` (or leaving a `with` block). In a
    log: a plain line every `every_seconds` while it runs, and at the end a final line if any was
    printed or `final_line=True`; nothing at all for a short job.

    Args:
        total: int. The count at the end.
        description: str. What is counted, leading the line. Defaults to "encoding".
        unit: str. The unit after the counts. Defaults to "sentences".
        stream: a text stream or None (`sys.stdout`).
        tty: bool or None. None: whether `stream` is a terminal.
        every_seconds: float. In a log, seconds between two lines. Defaults to 30.
        final_line: bool. In a log, always print the final line (e.g. a progress bar asked for
            explicitly). Defaults to False.
    """

    def __init__(self, total, description="encoding", unit="sentences", stream=None, tty=None, every_seconds=30,
                 final_line=False):
        self.total = max(0, int(total))
        self.description, self.unit = description, unit
        self.stream = stream if stream is not None else sys.stdout
        self.tty = _is_tty(self.stream) if tty is None else bool(tty)
        self.every_seconds = float(every_seconds)
        self.final_line = bool(final_line)
        self.count = 0
        self.lines = []
        self._start = self._last_line = _clock()
        self._last_draw = None
        self._closed = False
        self._widest = len(f"{description}{self.total}/{self.total} {unit}  0000 {unit[:4]}/s  ETA 00m00s")
        self._open()
        if self.tty:
            self._draw()
            self._last_draw = self._start

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            self._close()  # what was done stays visible above the error
        return False

    def update(self, n=1):
        """Count `n` more."""
        self.count = min(self.total, self.count + int(n)) if self.total else self.count + int(n)
        now = _clock()
        if self.tty:
            if now - self._last_draw >= REDRAW_SECONDS:
                self._draw()
                self._last_draw = now
        elif now - self._last_line >= self.every_seconds and self.count < self.total:
            self._print(now)

    def close(self):
        """Finish at `total/total` (the count is complete when this is called)."""
        if self._closed:
            return
        self._closed = True
        self.count = self.total
        if self.tty:
            if any(d.stream is self.stream for d in _ACTIVE if d is not self):
                self._close_quietly()  # inside another line (an evaluation's): leave that one alone
            else:
                self._close()
        elif self.lines or self.final_line:
            self._print(_clock())

    def _line(self, now, bar=False):
        elapsed = now - self._start
        counts = f"{self.count}/{self.total} {self.unit}"
        fields = [f"({int(100 * self.count / self.total)}%)"] if self.total and not bar else []
        if elapsed > 0 and self.count:
            fields.append(f"{_format_rate(self.count / elapsed)} {self.unit[:4]}/s")
        if self.count >= self.total:
            fields.append(f"in {format_duration(elapsed)}")
        elif self.count and elapsed > 0:
            fields.append(f"ETA {format_duration((self.total - self.count) * elapsed / self.count)}")
        tail = "  ".join([counts] + fields)
        if not bar:
            return f"{self.description} {tail}"
        self._widest = max(self._widest, len(self.description) + len(tail))
        width = min(30, _columns() - 1 - self._widest - 4)
        if width >= 6 and self.total:
            return f"{self.description} {_bar(self.count / self.total, width)} {tail}"
        return f"{self.description} {tail}"

    def _print(self, now):
        line = self._line(now)
        self.lines.append(line)
        _write(self.stream, line + "\n")
        self._last_line = now

    def _text(self):
        return self._line(_clock(), bar=True)


class TaskProgress(_StatusLine):
    """Progress through a known sequence of tasks (e.g. the STS evaluation's 7 tasks + STS-B dev).

    In a log: one line per finished task, `  STS12        3108 pairs  Spearman 71.23  (14s)`. On a
    terminal: one line, `  evaluating STS13 (2/8)  elapsed 15s`, and when all are done
    `  evaluated 8 sets in 1m52s` with a newline. Disabled (`enabled=False`): prints nothing.

    Args:
        total: int. Number of tasks.
        enabled: bool. Defaults to True.
        stream: a text stream or None (`sys.stdout`, read when made).
        tty: bool or None. None: whether `stream` is a terminal.
        noun: str. What the final terminal line calls the tasks. Defaults to "tasks".
        title: str or None. In a log, a line printed when the first task starts (what follows).
    """

    def __init__(self, total, enabled=True, stream=None, tty=None, noun="tasks", title=None):
        self.total, self.enabled, self.noun, self.title = int(total), bool(enabled), noun, title
        self.stream = stream if stream is not None else sys.stdout
        self.tty = _is_tty(self.stream) if tty is None else bool(tty)
        self.done = 0
        self.lines = []
        self._current = ""
        self._titled = False
        self._start = self._task_start = _clock()

    def start(self, name):
        """Task `name` begins."""
        self._current, self._task_start = name, _clock()
        if self.enabled and self.tty:
            self._open()
            self._draw()
        elif self.enabled and self.title and not self._titled:
            _write(self.stream, self.title + "\n")  # in a log: what the lines below are, at once
        self._titled = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._close()  # a terminal line left unfinished (an error, fewer tasks) ends with a newline
        return False

    def finish(self, name, pairs=None, spearman=None):
        """Task `name` ended: in a log, its line (pairs, Spearman x100, seconds)."""
        self.done += 1
        seconds = _clock() - self._task_start
        if not self.enabled:
            return
        parts = [f"  {name:<11}"]
        if pairs is not None:
            parts.append(f"{pairs:>5} pairs")
        if spearman is not None:
            parts.append(f"Spearman {spearman:6.2f}")
        parts.append(f"({format_duration(seconds)})")
        line = "  ".join(parts)
        if self.tty:
            if self.done >= self.total:
                total_time = format_duration(_clock() - self._start)
                self._close(line if self.total == 1 else f"  evaluated {self.total} {self.noun} in {total_time}")
            return  # the next task's start redraws the line
        self.lines.append(line)
        _write(self.stream, line + "\n")

    def _text(self):
        return (f"  evaluating {self._current} ({min(self.done + 1, self.total)}/{self.total})  "
                f"elapsed {format_duration(_clock() - self._start)}")
