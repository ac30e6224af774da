"""Quiet by default: no TensorFlow C++ log lines (absl banner, oneDNN, cudart_stub,
cpu_feature_guard, cuInit) on any command unless `--verbose`, `TF_ESIMCSE_VERBOSE=1` or the
user's own `TF_CPP_MIN_LOG_LEVEL`; real errors still shown.

The filter itself is tested in a subprocess that loads `tf_esimcse/quiet.py` alone (no
TensorFlow, fast); the real commands in subprocesses (each imports TensorFlow, ~5 s or more).
"""
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from tf_esimcse import quiet

REPO = pathlib.Path(__file__).resolve().parents[1]
TF_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cpu_feature_guard|cudart_stub|cuInit", re.M)
SAMPLE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796611634.539642    5023 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1796611634.539996    5023 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796611634.647979    5023 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796611847.671927    7477 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
2024-03-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.
/x/keras/src/foo.py:12: UserWarning: something of the user's
F0000 00:00:1796611847.671927    7477 cpu_feature_guard.cc:1] The TensorFlow library was compiled to use AVX512F
Traceback (most recent call last):
"""


def clean_env(**extra):
    """The environment of a new user: none of the variables that change the logging."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ESIMCSE_QUIET", "TF_ESIMCSE_VERBOSE")}
    env.update(extra)
    return env


def test_log_lines_are_recognised():
    kept = quiet.filter_log_lines(SAMPLE)
    assert kept.splitlines() == ["/x/keras/src/foo.py:12: UserWarning: something of the user's",
                                 "F0000 00:00:1796611847.671927    7477 cpu_feature_guard.cc:1] The TensorFlow "
                                 "library was compiled to use AVX512F",
                                 "Traceback (most recent call last):"]
    assert not quiet.is_log_line("error: --steps must be a positive integer, got 0")
    assert not quiet.is_log_line("To enable the following instructions: ...")  # only right after a dropped line


def test_when_to_be_quiet():
    assert quiet.quiet_wanted([], {})
    assert not quiet.quiet_wanted(["--steps", "2", "--verbose"], {})
    assert not quiet.quiet_wanted([], {"TF_ESIMCSE_VERBOSE": "1"})
    assert not quiet.quiet_wanted([], {"TF_CPP_MIN_LOG_LEVEL": "0"})  # the user's own level: theirs
    # ... but the level this module set (a child process inherits it) still quiets the child
    assert quiet.quiet_wanted([], {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ESIMCSE_QUIET": "1"})
    assert not quiet.quiet_wanted(["--verbose"], {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ESIMCSE_QUIET": "1"})


def test_the_filter_on_file_descriptor_2():
    """C-level writes to fd 2 inside the block: log lines dropped, everything else passed on, in
    order; a partial last line kept; stderr works normally afterwards."""
    script = textwrap.dedent(f"""
        import importlib.util, os, sys
        spec = importlib.util.spec_from_file_location("quiet_alone", {str(REPO / "tf_esimcse" / "quiet.py")!r})
        quiet = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(quiet)
        with quiet._FilteredStderr():
            os.write(2, {SAMPLE.encode()!r})
            print("a python line", file=sys.stderr)
            os.write(2, b"no newline at the end")
        print("after", file=sys.stderr)
        assert "tensorflow" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "/x/keras/src/foo.py:12: UserWarning: something of the user's",
        "F0000 00:00:1796611847.671927    7477 cpu_feature_guard.cc:1] The TensorFlow library was compiled to use "
        "AVX512F",
        "Traceback (most recent call last):",
        "a python line",
        "no newline at the endafter",
    ]


def _run(argv, env=None, cwd=None, timeout=300):
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          env=env or clean_env(), cwd=cwd or REPO)


@pytest.mark.large
def test_import_is_quiet_and_errors_still_show():
    """One process: importing the package prints nothing; a Python exception afterwards still does."""
    proc = _run(["-c", "import tf_esimcse; import tensorflow as tf; tf.constant(1) + 1; "
                       "import os; assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '3'; "
                       "assert os.environ.get('TF_ENABLE_ONEDNN_OPTS') is None; raise SystemExit('boom')"])
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == "boom", proc.stderr


@pytest.mark.large
def test_verbose_and_the_users_own_level_show_tensorflow_as_it_is():
    code = "import tf_esimcse, os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    verbose = _run(["-c", code], env=clean_env(TF_ESIMCSE_VERBOSE="1"))
    assert verbose.returncode == 0 and verbose.stdout.strip() == "None"
    own = _run(["-c", code], env=clean_env(TF_CPP_MIN_LOG_LEVEL="1"))
    assert own.returncode == 0 and own.stdout.strip() == "1"


@pytest.mark.large
def test_a_short_recipe_run_prints_no_tensorflow_or_keras_noise(tmp_path):
    """A whole training run on a tiny model (2 steps, start evaluation, saving): stderr holds no
    TensorFlow C++ line and no Python warning."""
    from test_case import write_tiny_model_dir
    from test_cli import write_tiny_senteval

    model = write_tiny_model_dir(tmp_path / "tiny_hf")
    data = write_tiny_senteval(tmp_path / "data")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat sat on the mat number {i} ." for i in range(40)) + "\n")
    out = tmp_path / "out"
    proc = _run([REPO / "recipes" / "unsup_esimcse.py", "--model", model, "--corpus", corpus, "--data-dir", data,
                 "--steps", 2, "--eval-steps", 2, "--batch-size", 8, "--max-len", 16, "--queue-size", 8,
                 "--output-dir", out, "--no-final-eval"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not TF_LOG.search(proc.stderr), proc.stderr
    assert "Warning" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    assert (out / "model").is_dir()
