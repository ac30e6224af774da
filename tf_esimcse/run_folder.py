"""The rules of a run folder (a recipe's `--output-dir`): what running a command again does.

- The same settings, finished (`results.json` says `"status": "ok"`): skipped, with one line
  naming its results.
- The same settings, not finished: resumed from its last backup.
- Other settings (finished or not): refused in one line naming the settings that differ, unless
  `--overwrite`, which removes the run's own files (and nothing else) and trains afresh.
- A folder in use by a running process: refused in one line naming that process. The lock is an
  `flock` on `<folder>/.lock`, which the kernel releases when its process dies, so a killed run
  never leaves it stuck.

A run's settings are recorded in `<folder>/run_config.json` when it starts (runs written before
that file existed are read from their `results.json`).
"""
import dataclasses
import errno
import fcntl
import json
import os
import pathlib
import shutil

from tf_esimcse.atomic_files import write_json_atomic
from tf_esimcse.errors import RunFolderError

RUN_CONFIG = "run_config.json"
MODEL_DIR = "model"  # the best encoder (SentenceEncoder.save_pretrained); `tf-esimcse --model RUN` loads it
LOCK_FILE = ".lock"
# What a run writes into its folder; --overwrite removes these and nothing else.
RUN_FILES = ("model", "backup", "logs", "results.json", "evaluations.json", "best_step.json", RUN_CONFIG,
             "run.png", "start.json")
# Settings that say where or how verbosely a run works, not what it computes: they may differ
# between the parts of one run.
RUNTIME_FIELDS = frozenset({"output_dir", "log_dir", "data_dir", "overwrite", "verbose", "backup_steps", "seeds"})


@dataclasses.dataclass
class RunFolderState:
    """What `inspect` found in a run folder.

    Attributes:
        kind: "fresh" (nothing of a run here), "finished", "diverged", "unfinished" (a backup or a
            started run with the same settings) or "other" (a run of other settings).
        results: the earlier `results.json` (finished or diverged runs), else None.
        differences: for "other", `[(name, theirs, ours), ...]`.
    """

    kind: str
    path: pathlib.Path
    results: dict = None
    differences: list = dataclasses.field(default_factory=list)


def settings_of(config):
    """The settings that decide what a run computes, as a JSON-ready dict."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {k: v for k, v in values.items() if k not in RUNTIME_FIELDS}


def _normalise(name, value):
    if name == "steps" and value in (0, None):
        return None  # runs written before --steps had to be positive used 0 for "epochs"
    return value


def differences(recorded, config):
    """`[(name, recorded value, value now), ...]` for every setting that differs. A setting the
    recorded run did not know counts as its default (`config`'s class default)."""
    ours = settings_of(config)
    defaults = {}
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    theirs = {k: v for k, v in recorded.items() if k not in RUNTIME_FIELDS}
    diff = []
    for name in sorted(set(ours) | set(theirs)):
        a = _normalise(name, theirs.get(name, defaults.get(name)))
        b = _normalise(name, ours.get(name, defaults.get(name)))
        if a != b:
            diff.append((name, a, b))
    return diff


def format_differences(diff, limit=4):
    parts = [f"--{name.replace('_', '-')} {theirs!r} there, {ours!r} here" for name, theirs, ours in diff[:limit]]
    if len(diff) > limit:
        parts.append(f"and {len(diff) - limit} more")
    return "; ".join(parts)


def read_json(path):
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def holder(path):
    """`"process PID (COMMAND)"` of the process holding `path`'s lock, or None when it is free.
    Writes nothing: a folder without a lock file is free."""
    lock = pathlib.Path(path) / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            return _describe_holder(lock)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe_holder(lock):
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another process"
    try:
        command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = ""
    return f"process {pid}" + (f" ({command.strip()})" if command.strip() else "")


def inspect(path, config):
    """Read a run folder and say what it holds relative to `config`. Writes nothing.

    Raises:
        RunFolderError: the folder is in use by a running process.
    """
    path = pathlib.Path(path)
    taken = holder(path)
    if taken:
        raise RunFolderError(f"{path} is in use by {taken}: wait for it to end, or choose another --output-dir")
    results = read_json(path / "results.json")
    recorded = read_json(path / RUN_CONFIG)
    if recorded is None and isinstance(results, dict):
        recorded = results.get("config")
    started = (path / "backup").is_dir() or (path / RUN_CONFIG).is_file() or results is not None
    if not started:
        return RunFolderState("fresh", path)
    if recorded is None:  # a backup written before run_config.json existed: resume as before
        return RunFolderState("unfinished", path)
    diff = differences(recorded, config)
    if diff:
        return RunFolderState("other", path, results=results, differences=diff)
    status = results.get("status") if isinstance(results, dict) else None
    if status == "ok":
        return RunFolderState("finished", path, results=results)
    if status == "diverged":
        return RunFolderState("diverged", path, results=results)
    return RunFolderState("unfinished", path)


def refusal(state):
    """The one-line message for a folder holding a run of other settings."""
    finished = "a finished run" if (state.results or {}).get("status") == "ok" else "a run"
    return (f"{state.path} holds {finished} with other settings ({format_differences(state.differences)}): "
            f"pass --overwrite to replace it, or choose another --output-dir")


def finished_line(state):
    """The one line a skipped, finished run prints."""
    results = state.results or {}
    best, step = results.get("best_stsb_dev"), results.get("best_step")
    score = f" (STS-B dev {best:.2f} at step {step})" if isinstance(best, (int, float)) else ""
    return (f"already finished: {state.path}{score}; results in {state.path / 'results.json'}; "
            f"pass --overwrite to train again")


def remove_run_files(path):
    """Remove what a run wrote into `path` (RUN_FILES), nothing else."""
    for name in RUN_FILES:
        remove_path(pathlib.Path(path) / name)


def remove_path(target):
    """Remove a file or a folder (not what a link points to); nothing if it is not there."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


class RunLock:
    """An exclusive `flock` on `<folder>/.lock` for the life of a run (a context manager). The
    file holds the PID, so that a second run can name the process that holds it."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._fd = None

    def acquire(self):
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_FILE
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunFolderError(f"{self.path} is in use by {_describe_holder(lock)}: wait for it to end, or choose "
                                 "another --output-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def record_settings(path, config):
    """Write `run_config.json` (every setting, runtime ones included, for the reader)."""
    write_json_atomic(pathlib.Path(path) / RUN_CONFIG, dataclasses.asdict(config))
