"""What a run ran on: package versions, CPU, TensorFlow/XLA settings, git commit, command line.

`environment_info()` gathers it as one JSON-serialisable dict, to be stored next to a run's
results so that a number can be traced back to the code and machine that produced it. Nothing
here raises: a piece of information that cannot be read is `None`.
"""
import importlib.metadata
import os
import pathlib
import platform
import shlex
import subprocess
import sys

__all__ = ["environment_info", "cpu_info", "git_info", "package_versions", "tf_settings"]

# Distribution names, as pip knows them.
PACKAGES = ("tensorflow", "tensorflow-text", "keras", "keras-hub", "numpy", "tf_esimcse")
# CPU flags that decide which kernels TensorFlow/oneDNN can use (bfloat16 and AMX paths above all).
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
# Environment variables that change what TensorFlow and Keras do.
ENV_VARS = ("TF_XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL", "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES",
            "XLA_FLAGS", "TF_GPU_ALLOCATOR", "TF_DETERMINISTIC_OPS")
_GIT_TIMEOUT_S = 10


def package_versions(packages=PACKAGES):
    """Installed versions of `packages`.

    Args:
        packages: iterable of str. Distribution names. Defaults to TensorFlow, TensorFlow Text,
            Keras, keras-hub, NumPy and tf_esimcse.

    Returns:
        A dict {name: version str, or None when not installed}.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except Exception:  # PackageNotFoundError, or a broken install's metadata
            versions[name] = None
    return versions


def cpu_info(cpuinfo_path="/proc/cpuinfo"):
    """CPU model name, flags of interest and core counts.

    Args:
        cpuinfo_path: str or path-like. Read when present (Linux). Defaults to "/proc/cpuinfo".

    Returns:
        A dict: "model" (str or None), "flags" (the `CPU_FLAGS` the CPU has, or None when
        unknown), "logical_cores" (`os.cpu_count()`), "usable_cores" (the cores this process
        may run on, or None), "machine" (e.g. "x86_64").
    """
    model, flags = None, None
    try:
        text = pathlib.Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if model is None and key in ("model name", "Model Name", "cpu model"):
            model = value.strip()
        elif flags is None and key in ("flags", "Features"):
            have = set(value.split())
            flags = [f for f in CPU_FLAGS if f in have]
        if model is not None and flags is not None:
            break
    if model is None:
        model = platform.processor() or None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"model": model, "flags": flags, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "machine": platform.machine() or None}


def tf_settings():
    """TensorFlow's threading, XLA and device settings, plus the environment variables that set them.

    Returns:
        A dict: "env" ({name: value or None} for `ENV_VARS`), "intra_op_threads" and
        "inter_op_threads" (0 = TensorFlow picks), "jit" (`tf.config.optimizer.get_jit()`:
        global XLA auto-clustering), "devices" (physical device names), "built_with_cuda".
        Values that TensorFlow cannot give are None.
    """
    out = {"env": {name: os.environ.get(name) for name in ENV_VARS}}
    try:
        import tensorflow as tf
    except Exception:
        return dict(out, intra_op_threads=None, inter_op_threads=None, jit=None, devices=None, built_with_cuda=None)

    def read(fn):
        try:
            value = fn()
        except Exception:
            return None
        return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)

    out["intra_op_threads"] = read(tf.config.threading.get_intra_op_parallelism_threads)
    out["inter_op_threads"] = read(tf.config.threading.get_inter_op_parallelism_threads)
    out["jit"] = read(tf.config.optimizer.get_jit)
    try:
        out["devices"] = [d.name for d in tf.config.list_physical_devices()]
    except Exception:
        out["devices"] = None
    out["built_with_cuda"] = read(tf.test.is_built_with_cuda)
    return out


def _git(args, cwd):
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return proc.stdout.strip()


def git_info(path=None):
    """The git commit of the checkout holding `path`, and whether its tracked files are modified.

    Args:
        path: str, path-like or None. A directory inside the checkout. Defaults to the directory
            of the `tf_esimcse` package, so an installed (not editable) copy reports None.

    Returns:
        A dict {"commit": 40-hex str, "dirty": bool (tracked files differ from the commit;
        untracked files do not count)}, or None when `path` is not in a git checkout whose
        commit tracks it, or when git is missing or fails. Never raises.
    """
    path = pathlib.Path(path) if path is not None else pathlib.Path(__file__).resolve().parent
    try:
        # The package must be tracked by the checkout: a copy installed inside some other
        # repository (e.g. a venv in a project folder) is not "this code at that commit".
        _git(["ls-files", "--error-unmatch", "--", "."], cwd=path)
        commit = _git(["rev-parse", "HEAD"], cwd=path)
        dirty = bool(_git(["status", "--porcelain", "--untracked-files=no"], cwd=path))
    except Exception:  # git missing (FileNotFoundError), not a checkout, timeout, ...
        return None
    return {"commit": commit, "dirty": dirty}


def environment_info(argv=None):
    """Everything needed to trace a run's numbers back to its code, packages and machine.

    Args:
        argv: list of str or None. The command line; defaults to `sys.argv`.

    Returns:
        A JSON-serialisable dict: "command" (argv joined with shell quoting, so it can be pasted
        back into a shell), "argv", "cwd", "python" (version), "python_executable", "platform",
        "packages" (see `package_versions`), "cpu" (see `cpu_info`), "tensorflow" (see
        `tf_settings`), "git" (see `git_info`; None outside a git checkout).
    """
    argv = [str(a) for a in (sys.argv if argv is None else argv)]
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    return {
        "command": shlex.join(argv),
        "argv": argv,
        "cwd": cwd,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": package_versions(),
        "cpu": cpu_info(),
        "tensorflow": tf_settings(),
        "git": git_info(),
    }
