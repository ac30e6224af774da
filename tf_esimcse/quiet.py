"""TensorFlow without its start-up log lines, unless asked for.

Importing TensorFlow 2.21 prints, on stderr, lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796611634.539642    5023 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1796611634.539996    5023 cudart_stub.cc:31] Could not find cuda drivers on your machine, ...
    I0000 00:00:1796611634.647979    5023 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...

(twice: two of its shared libraries carry their own copy of absl's logging), and its first
operation on a machine with CUDA libraries but no GPU adds

    E0000 00:00:1796611847.671927    7477 cuda_platform.cc:52] failed call to cuInit: ... (303)

What hides which:

- `TF_CPP_MIN_LOG_LEVEL=3` (set here, before TensorFlow is imported) hides the lines logged once
  TensorFlow has read it: `cpu_feature_guard`, `cuInit`, and every later C++ INFO, WARNING and
  ERROR line. It does not reach the lines logged while the libraries load (the absl banner,
  `port.cc`'s oneDNN note, `cudart_stub`).
- Those are written while `import tensorflow` runs: `quiet_tensorflow()` imports TensorFlow with
  file descriptor 2 sent through a pipe, drops the lines in TensorFlow's log format and the absl
  banner, and passes everything else (a Python warning, a FATAL line) on to the real stderr.

`TF_ENABLE_ONEDNN_OPTS` is left alone: it changes the numerics; only its message is hidden.
Nothing is hidden when the command line holds `--verbose`, when `TF_ESIMCSE_VERBOSE=1`, or when
the user set `TF_CPP_MIN_LOG_LEVEL` themselves (then TensorFlow behaves as they asked). Python
exceptions are never hidden. Child processes inherit the setting (`TF_ESIMCSE_QUIET=1` marks a
`TF_CPP_MIN_LOG_LEVEL` set here, so that a child quiets its own import too).
"""
import os
import re
import sys
import threading
import warnings

# A line of TensorFlow's C++ log ("I0000 00:00:1796611634.539642    5023 port.cc:153] ..."), or
# absl's banner before its log is initialised.
LOG_LINE = re.compile(r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:]+:\d+\] "
                      r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "  # TensorFlow < 2.16
                      r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")
# The second line of cpu_feature_guard's message.
_CONTINUATION = re.compile(r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate "
                           r"compiler flags\.$")
_MARK = "TF_ESIMCSE_QUIET"


def verbose_requested(argv=None, environ=None):
    """Whether TensorFlow's own log lines are wanted: `--verbose` among the arguments (default:
    `sys.argv`) or `TF_ESIMCSE_VERBOSE` set to 1/true/yes."""
    environ = os.environ if environ is None else environ
    if str(environ.get("TF_ESIMCSE_VERBOSE", "")).strip().lower() in ("1", "true", "yes", "on"):
        return True
    argv = sys.argv[1:] if argv is None else argv
    return "--verbose" in list(argv)


def quiet_wanted(argv=None, environ=None):
    """Whether to hide the log lines: not verbose, and `TF_CPP_MIN_LOG_LEVEL` unset (or set by us)."""
    environ = os.environ if environ is None else environ
    if verbose_requested(argv, environ):
        return False
    return "TF_CPP_MIN_LOG_LEVEL" not in environ or environ.get(_MARK) == "1"


def is_log_line(line):
    """Whether `line` (text, no newline) is one of TensorFlow's C++ log lines or absl's banner."""
    return bool(LOG_LINE.match(line))


def filter_log_lines(text):
    """`text` without TensorFlow's C++ log lines (and their known continuation lines)."""
    kept, dropped = [], False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if is_log_line(bare) or (dropped and _CONTINUATION.match(bare)):
            dropped = True
            continue
        dropped = False
        kept.append(line)
    return "".join(kept)


class _FilteredStderr:
    """File descriptor 2 through a pipe while the block runs; a thread forwards every line that is
    not a TensorFlow log line to the real stderr as it comes (so nothing is lost if the process
    aborts, beyond what the pipe holds)."""

    def __enter__(self):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        self._saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        self._thread = threading.Thread(target=self._forward, args=(read_fd, os.dup(self._saved)), daemon=True)
        self._thread.start()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        return self

    @staticmethod
    def _forward(read_fd, out_fd):
        dropped = False

        def keep(raw):
            nonlocal dropped
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if is_log_line(line) or (dropped and _CONTINUATION.match(line)):
                dropped = True
                return b""
            dropped = False
            return raw

        pending = b""
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            _write(out_fd, b"".join(keep(line + b"\n") for line in lines))
        _write(out_fd, keep(pending) if pending else b"")
        os.close(read_fd)
        os.close(out_fd)

    def __exit__(self, *exc):
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the thread reads to its end
        os.close(self._saved)
        self._thread.join(timeout=10)
        return False


def _write(fd, data):
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:
            return


def quiet_tensorflow(argv=None):
    """Import TensorFlow without its start-up log lines (see the module docstring); returns
    whether it quieted. Call before anything imports TensorFlow (`tf_esimcse/__init__` does)."""
    if not quiet_wanted(argv):
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_MARK] = "1"
    if "tensorflow" not in sys.modules:
        try:
            with _FilteredStderr():
                import tensorflow  # noqa: F401
        except OSError:  # no usable fd 2 (a detached process): import as is
            import tensorflow  # noqa: F401
    quiet_python_warnings()
    return True


def quiet_python_warnings():
    """Python-side TensorFlow/absl messages below ERROR off, as `TF_CPP_MIN_LOG_LEVEL` does for C++."""
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except Exception:
        pass
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # TensorFlow's own deprecation notes about its internals (not about this package's calls).
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"tensorflow(\.|$)")
    # Keras 3 warns on every `fit(tf.data.Dataset)` left at its default `shuffle=True` (as in
    # `model.fit(esimcse_dataset(...))`); this package's datasets are shuffled by their pipeline.
    warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed, but will be ignored", category=UserWarning)
