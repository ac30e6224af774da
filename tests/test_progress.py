"""Progress in a log file and on a terminal: training lines, echo, the STS evaluation, encode."""
import io
import re
import sys
import zlib

import keras
import numpy as np
import pytest

from test_case import TINY_SENTENCES, tiny_encoder, write_tiny_model_dir
from tf_esimcse import progress
from tf_esimcse.evaluation import sts
from tf_esimcse.schedules import LinearDecay
from tf_esimcse.search import SearchIndex

ESCAPE = "\x1b"


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress, "_clock", fake)
    return fake


@pytest.fixture(autouse=True)
def no_status_line_left():
    yield
    leftover = list(progress._ACTIVE)
    progress.close_all()
    assert not leftover, f"status lines left on screen: {leftover}"


class FakeOptimizer:
    def __init__(self, step, schedule):
        self.iterations = step
        self._schedule = schedule

    @property
    def learning_rate(self):  # as Keras 3: the schedule at the current step
        return self._schedule(self.iterations)


class FakeModel:
    def __init__(self, step=0, schedule=None):
        self.optimizer = FakeOptimizer(step, schedule or LinearDecay(1e-3, 500))
        self.stop_training = False


def drive(callback, model, clock, steps, steps_per_epoch, step_losses, compile_seconds=10.0, step_seconds=0.5,
          between_seconds=0.1, echo_at=()):
    """Runs the callback as `fit` would: Keras epochs of `steps_per_epoch` batches whose logs hold
    the epoch's running mean of the loss (as `ContrastiveModel`'s `Mean` tracker reports it)."""
    callback.set_model(model)
    callback.on_train_begin()
    done, epoch = 0, 0
    while done < steps:
        callback.on_epoch_begin(epoch)
        epoch_losses = []
        for batch in range(steps_per_epoch):
            if done >= steps:
                break
            callback.on_train_batch_begin(batch)
            clock.now += compile_seconds if done == 0 else step_seconds
            model.optimizer.iterations += 1
            epoch_losses.append(step_losses(model.optimizer.iterations))
            callback.on_train_batch_end(batch, {"loss": np.float32(np.mean(epoch_losses))})
            clock.now += between_seconds
            done += 1
            if model.optimizer.iterations in echo_at:
                progress.echo(f"step {model.optimizer.iterations}: stsb_dev 80.00")
        epoch += 1
    callback.on_train_end()


def step_lines(text):
    return [line for line in text.splitlines() if line.startswith("step ")]


def step_of(line):
    return int(re.match(r"step (\d+)/", line).group(1))


def field(line, name):
    return re.search(rf"{name} (\S+)", line).group(1)


# --- training progress in a log -----------------------------------------------------------------

def test_log_lines_every_n_steps_first_and_last(clock):
    stream = io.StringIO()
    callback = progress.TrainingProgress(500, batch_size=16, every_seconds=None, stream=stream)
    assert callback.every_steps == 10  # 1, 2, 5, 10, ...: 50 lines for 500 steps
    drive(callback, FakeModel(), clock, 500, steps_per_epoch=30, step_losses=float)
    text = stream.getvalue()
    assert ESCAPE not in text and "\r" not in text
    lines = step_lines(text)
    assert [step_of(line) for line in lines] == [1] + list(range(10, 501, 10))
    assert lines == callback.lines
    assert text.splitlines()[0].startswith("training from step 0 to 500: a line every 10 steps")
    # The first line: no rate or ETA yet (the first step compiled); the others have both.
    assert "sent/s" not in lines[0] and "ETA" not in lines[0]
    line = lines[2]  # step 20
    assert line.startswith("step 20/500 (4%)  loss 15.5000  lr 9.60e-04  ")  # mean of steps 11..20
    assert field(line, "loss") == "15.5000"
    assert "32.0 sent/s" in line  # 16 sentences in 0.5 s, the compile step left out
    assert field(line, "elapsed") == "21s"  # 10 + 0.1 + 19 x 0.6, compilation included
    assert field(line, "ETA") == "4m48s"  # 480 steps at 0.6 s (wall clock since the first step)
    # Across the Keras epochs' metric resets (every 30 steps) the loss stays the window's mean.
    for previous, line in zip(lines, lines[1:]):
        first, last = step_of(previous) + 1, step_of(line)
        assert float(field(line, "loss")) == pytest.approx((first + last) / 2, abs=2e-3), line
    assert lines[-1].startswith("step 500/500 (100%)") and field(lines[-1], "ETA") == "0s"
    assert field(lines[-1], "lr") == "0.00e+00"


def test_log_lines_also_every_n_seconds(clock):
    stream = io.StringIO()
    callback = progress.TrainingProgress(1000, batch_size=8, every_steps=100, every_seconds=30, stream=stream)
    drive(callback, FakeModel(), clock, 150, steps_per_epoch=1000, step_losses=lambda s: 1.0,
          compile_seconds=1.0, step_seconds=0.9, between_seconds=0.1)
    steps = [step_of(line) for line in step_lines(stream.getvalue())]
    # The first step, then every 30 s (1 s a step) or every 100 steps, and the last step.
    assert steps == [1, 31, 61, 91, 100, 130, 150]


def test_resumed_run_counts_from_its_restored_step(clock):
    stream = io.StringIO()
    callback = progress.TrainingProgress(500, batch_size=16, every_steps=50, every_seconds=None, stream=stream)
    drive(callback, FakeModel(step=300), clock, 200, steps_per_epoch=50, step_losses=lambda s: 0.25)
    text = stream.getvalue()
    assert text.splitlines()[0].startswith("training from step 300 to 500")
    lines = step_lines(text)
    assert [step_of(line) for line in lines] == [301, 350, 400, 450, 500]
    assert lines[0].startswith("step 301/500 (60%)")
    assert "ETA" in lines[1] and field(lines[1], "loss") == "0.2500"
    assert "Epoch" not in text


def test_run_stopped_early_prints_its_last_step(clock):
    stream = io.StringIO()
    callback = progress.TrainingProgress(500, batch_size=4, every_seconds=None, stream=stream)
    drive(callback, FakeModel(), clock, 37, steps_per_epoch=100, step_losses=lambda s: 2.0)
    assert [step_of(line) for line in step_lines(stream.getvalue())] == [1, 10, 20, 30, 37]


def test_echo_in_a_log_is_a_plain_line(clock, capsys):
    callback = progress.TrainingProgress(20, batch_size=4, every_seconds=None)  # sys.stdout (captured)
    drive(callback, FakeModel(), clock, 20, steps_per_epoch=20, step_losses=lambda s: 1.0, echo_at=(5,))
    out = capsys.readouterr().out
    assert ESCAPE not in out and "\r" not in out
    lines = out.splitlines()
    assert lines[lines.index("step 5: stsb_dev 80.00") - 1].startswith("step 5/20")


def test_default_every_steps_gives_20_to_50_lines():
    for total in (50, 51, 99, 100, 120, 500, 879, 1000, 1001, 4000, 12345, 10**6):
        every = progress.default_every_steps(total)
        assert 20 <= total / every <= 50, (total, every)
        assert every <= total / 10
    assert progress.default_every_steps(7) == 1


def test_with_keras_fit_the_loss_is_the_mean_of_the_window():
    """A real `fit`: steps from the optimizer, and the loss of a window of one whole Keras epoch
    equals Keras' own mean of that epoch (its History)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(LinearDecay(0.05, 20)), loss="mse")
    stream = io.StringIO()
    callback = progress.TrainingProgress(20, batch_size=8, every_steps=5, every_seconds=None, stream=stream)
    history = model.fit(x, y, batch_size=8, epochs=4, steps_per_epoch=5, verbose=0, callbacks=[callback])
    text = stream.getvalue()
    assert ESCAPE not in text and "\r" not in text
    lines = step_lines(text)
    assert [step_of(line) for line in lines] == [1, 5, 10, 15, 20]
    for line, epoch_loss in zip(lines[2:], history.history["loss"][1:]):
        assert float(field(line, "loss")) == pytest.approx(epoch_loss, rel=1e-3), line
    assert field(lines[1], "lr") == f"{0.05 * (1 - 5 / 20):.2e}"
    # The same callback again (a second fit, as a resumed run): it starts at the optimizer's step.
    model.optimizer.learning_rate = LinearDecay(0.05, 30)
    stream.seek(0)
    stream.truncate()
    callback.total_steps = 30
    model.fit(x, y, batch_size=8, epochs=2, steps_per_epoch=5, verbose=0, callbacks=[callback])
    assert [step_of(line) for line in step_lines(stream.getvalue())][:2] == [21, 25]


# --- on a terminal ----------------------------------------------------------------------------------

def _segments(text):
    """What stays on screen of each line: the part after its last carriage return."""
    return [line.split("\r")[-1] for line in text.split("\n")]


def test_terminal_one_redrawn_line_and_echo_on_its_own_line(clock):
    stream = FakeTTY()
    callback = progress.TrainingProgress(100, batch_size=16, stream=stream)
    assert callback.tty
    drive(callback, FakeModel(schedule=LinearDecay(1e-3, 100)), clock, 100, steps_per_epoch=40,
          step_losses=lambda s: 1.0, echo_at=(50,))
    text = stream.getvalue()
    assert ESCAPE not in text
    assert text.endswith("\n") and text.count("\n") == 2  # the echoed line and the end of training
    screen = _segments(text)
    assert screen[0].strip() == "step 50: stsb_dev 80.00"
    assert screen[1].startswith("step 100/100 [") and " 100%  loss 1.0000" in screen[1]
    assert screen[1].endswith("  32.0 sent/s  in 1m09s")  # at the end: how long it took
    assert screen[2] == ""
    # Redrawn in place: many carriage returns, every drawn state narrower than the terminal.
    draws = [part for line in text.split("\n") for part in line.split("\r") if part.strip()]
    assert len(draws) > 20
    assert all(len(part) < progress._columns() for part in draws)
    assert any("ETA" in part and "step 60/100" in part for part in draws)
    # The bar came back below the echoed line.
    after_echo = text.split("step 50: stsb_dev 80.00\n")[1]
    assert after_echo.startswith("\rstep 50/100 [")


def test_close_all_ends_a_bar_left_by_an_error(clock):
    stream = FakeTTY()
    callback = progress.TrainingProgress(10, batch_size=2, stream=stream)
    callback.set_model(FakeModel())
    callback.on_train_begin()
    assert progress._ACTIVE == [callback]
    progress.close_all()
    assert progress._ACTIVE == [] and stream.getvalue().endswith("\n")
    progress.echo("error: something", stream=stream)
    assert stream.getvalue().endswith("\nerror: something\n")


def test_echo_without_a_bar_prints_a_line(capsys):
    progress.echo("plain")
    assert capsys.readouterr().out == "plain\n"


# --- ProgressBar (encode's) -----------------------------------------------------------------------

def test_progress_bar_in_a_log_short_job_silent_long_job_few_lines(clock):
    stream = io.StringIO()
    with progress.ProgressBar(300, stream=stream) as bar:
        for _ in range(5):
            clock.now += 1
            bar.update(64)
    assert stream.getvalue() == ""  # short: nothing
    with progress.ProgressBar(300, stream=stream, final_line=True) as bar:
        bar.update(256)
    assert stream.getvalue().startswith("encoding 300/300 sentences  (100%)")
    stream = io.StringIO()
    with progress.ProgressBar(10_000, stream=stream) as bar:
        for _ in range(100):
            clock.now += 1
            bar.update(100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60 and 90 s, and the end
    assert lines[0].startswith("encoding 3000/10000 sentences  (30%)") and "ETA 1m10s" in lines[0]
    assert lines[-1].startswith("encoding 10000/10000 sentences  (100%)") and "in 1m40s" in lines[-1]
    assert ESCAPE not in stream.getvalue() and "\r" not in stream.getvalue()


def test_progress_bar_on_a_terminal_ends_at_n_of_n(clock):
    stream = FakeTTY()
    with progress.ProgressBar(300, stream=stream) as bar:
        clock.now += 1
        bar.update(256)
    text = stream.getvalue()
    assert ESCAPE not in text and text.count("\n") == 1 and text.endswith("\n")
    assert re.match(r"encoding \[#+\] 300/300 sentences", _segments(text)[0])


# --- encode and build-index ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_encoder(write_tiny_model_dir(tmp_path_factory.mktemp("tiny_hf")), pooler_type="avg")


def test_encode_in_a_log_no_escape_codes_and_n_of_n(encoder, capsys):
    sentences = TINY_SENTENCES * 5
    n = len(sentences)
    quiet = encoder.encode(sentences, batch_size=4, verbose=0)
    assert capsys.readouterr().out == ""
    shown = encoder.encode(sentences, batch_size=4, verbose=1)
    out = capsys.readouterr().out
    assert ESCAPE not in out and "\r" not in out
    assert out.startswith(f"encoding {n}/{n} sentences") and out.count("\n") == 1
    np.testing.assert_array_equal(shown, quiet)
    encoder.encode(sentences, batch_size=4)  # "auto", 9 batches: nothing
    assert capsys.readouterr().out == ""


def test_encode_on_a_terminal_ends_at_n_of_n(encoder, monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    n = 300
    sentences = [TINY_SENTENCES[i % len(TINY_SENTENCES)] + f" {i}" for i in range(n)]
    encoder.encode(sentences, batch_size=128, verbose=1)  # 128, 256, 300: the old bar stopped at 256
    monkeypatch.undo()
    text = tty.getvalue()
    assert ESCAPE not in text and text.endswith("\n") and text.count("\n") == 1
    assert f" {n}/{n} sentences" in _segments(text)[0]


def test_build_index_in_a_log(encoder, capsys):
    sentences = [f"sentence number {i}" for i in range(300)]
    SearchIndex.build(encoder, sentences, batch_size=128)
    out = capsys.readouterr().out
    assert ESCAPE not in out and "\r" not in out
    assert out.startswith("encoding 300/300 sentences") and out.count("\n") == 1


# --- the STS evaluation ------------------------------------------------------------------------------

def bow_encode(sentences, dim=64):
    """Hashed bag of words: a cheap, deterministic stand-in for an encoder."""
    out = np.zeros((len(sentences), dim), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        for token in sentence.lower().split():
            out[i, zlib.crc32(token.encode("utf-8")) % dim] += 1.0
    return out


EXPECTED_NAMES = ["STS12", "STS13", "STS14", "STS15", "STS16", "STS-B test", "SICK-R test", "STS-B dev"]


def test_evaluate_sts_says_which_task_and_numbers_do_not_change(data_dir, capsys):
    quiet = sts.evaluate_sts(bow_encode, data_dir, progress=False)
    assert capsys.readouterr().out == ""
    shown = sts.evaluate_sts(bow_encode, data_dir)  # the default: progress
    out = capsys.readouterr().out
    assert shown == quiet
    assert ESCAPE not in out and "\r" not in out
    title, *lines = out.splitlines()
    assert title == "STS evaluation (8 sets):"
    assert [line.split()[0] if not line.split()[0].startswith(("STS-B", "SICK-R")) else " ".join(line.split()[:2])
            for line in lines] == EXPECTED_NAMES
    keys = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb_test", "sickr_test", "stsb_dev"]
    for line, key in zip(lines, keys):
        match = re.fullmatch(r"  (\S+(?: \S+)?) +(\d+) pairs  Spearman +(-?\d+\.\d\d)  \((\d+s)\)", line)
        assert match, line
        assert float(match.group(3)) == pytest.approx(shown[key], abs=0.005)
    assert re.search(r"STS12 +3108 pairs", lines[0])
    assert re.search(r"STS-B test +1379 pairs", lines[5]) and re.search(r"STS-B dev +1500 pairs", lines[7])


def test_evaluate_sts_on_a_terminal_is_one_line(data_dir, monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    sts.evaluate_sts(bow_encode, data_dir, tasks=("STS12", "STSBenchmark"), include_dev=False,
                     alignment_uniformity=False)
    monkeypatch.undo()
    text = tty.getvalue()
    assert ESCAPE not in text and text.count("\n") == 1 and text.endswith("\n")
    assert "evaluating STS12 (1/2)" in text and "evaluating STS-B test (2/2)" in text
    assert "STS12 (2/2)" not in text  # the line names the task that runs
    assert _segments(text)[0].startswith("  evaluated 2 STS sets in ")


class WordCounter:
    """What `encoder_length_split` reads of an encoder (its tokenizer), counting words: fast."""

    class inference_preprocessor:  # noqa: N801
        @staticmethod
        def tokenize(sentences):
            class Ragged:
                def row_lengths(self):
                    return np.array([len(s.split()) for s in sentences])

            return Ragged()


def test_length_split_and_aggregations_progress(data_dir, capsys):
    encoder = WordCounter()
    split = sts.encoder_length_split(encoder, bow_encode, data_dir)
    out = capsys.readouterr().out
    assert re.fullmatch(r"  STS-B test by length difference +1379 pairs  \(\d+s\)\n", out)
    assert sts.encoder_length_split(encoder, bow_encode, data_dir, progress=False) == split
    assert capsys.readouterr().out == ""
    aggregations = sts.sts_year_aggregations(bow_encode, data_dir, years=("STS12", "STS13"))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["STS12", "STS13"]
    assert f"Spearman {aggregations['STS12']['all']:6.2f}" in lines[0]


def test_an_encode_bar_inside_the_evaluation_line_hands_it_back(data_dir, monkeypatch):
    """An encode_fn with its own bar (e.g. `encoder.encode` with verbose=1) draws over the
    evaluation's line and leaves nothing behind: still one line on a terminal."""
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)

    def encode_with_a_bar(sentences):
        with progress.ProgressBar(len(sentences)) as bar:
            bar.update(len(sentences))
        return bow_encode(sentences)

    sts.evaluate_sts(encode_with_a_bar, data_dir, tasks=("STS16",), include_dev=False, alignment_uniformity=False)
    monkeypatch.undo()
    text = tty.getvalue()
    assert text.count("\n") == 1 and "encoding [" in text
    assert _segments(text)[0].startswith("  STS16 ")  # one task: its line stays
