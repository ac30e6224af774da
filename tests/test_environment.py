"""Tests for `tf_esimcse.environment`: keys, JSON, git present/absent, /proc/cpuinfo parsing."""
import json
import pathlib
import shlex
import subprocess
import sys

import pytest

from tf_esimcse import environment
from tf_esimcse.environment import environment_info

REPO = pathlib.Path(__file__).resolve().parents[1]


def _git_available():
    try:
        subprocess.run(["git", "--version"], capture_output=True, check=True, timeout=10)
    except Exception:
        return False
    return True


def test_keys_present_and_json_serialisable():
    info = environment_info(["python", "-m", "recipes.unsup_esimcse", "--output-dir", "runs/a b", "--seed", "3"])
    for key in ("command", "argv", "cwd", "python", "python_executable", "platform", "packages", "cpu",
                "tensorflow", "git"):
        assert key in info, key
    assert json.loads(json.dumps(info, allow_nan=False)) == info
    assert set(info["packages"]) == {"tensorflow", "tensorflow-text", "keras", "keras-hub", "numpy", "tf_esimcse"}
    import keras
    import numpy as np
    import tensorflow as tf

    assert info["packages"]["tensorflow"] == tf.__version__
    assert info["packages"]["keras"] == keras.__version__
    assert info["packages"]["numpy"] == np.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    for key in ("model", "flags", "logical_cores", "usable_cores"):
        assert key in info["cpu"]
    assert info["cpu"]["logical_cores"] >= 1
    tf_info = info["tensorflow"]
    for key in ("intra_op_threads", "inter_op_threads", "jit", "devices"):
        assert key in tf_info
    assert "TF_XLA_FLAGS" in tf_info["env"] and "TF_ENABLE_ONEDNN_OPTS" in tf_info["env"]
    assert tf_info["intra_op_threads"] == tf.config.threading.get_intra_op_parallelism_threads()
    assert tf_info["jit"] == tf.config.optimizer.get_jit()


def test_command_is_shell_quoted_and_round_trips():
    argv = ["python", "-m", "recipes.unsup_esimcse", "--output-dir", "runs/a b", "--note", "it's"]
    info = environment_info(argv)
    assert info["command"] == "python -m recipes.unsup_esimcse --output-dir 'runs/a b' --note 'it'\"'\"'s'"
    assert shlex.split(info["command"]) == argv
    assert info["argv"] == argv


def test_default_argv_is_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "--seed", "1"])
    assert environment_info()["command"] == "train.py --seed 1"


def test_environment_variables_are_recorded(monkeypatch):
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    env = environment_info([])["tensorflow"]["env"]
    assert env["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=2" and env["TF_ENABLE_ONEDNN_OPTS"] == "0"


@pytest.mark.skipif(not _git_available() or not (REPO / ".git").exists(), reason="needs git and a checkout")
def test_git_commit_of_this_checkout():
    info = environment.git_info()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert info is not None and info["commit"] == head
    assert isinstance(info["dirty"], bool)


def test_git_missing_gives_none(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory: 'git'")

    monkeypatch.setattr(environment.subprocess, "run", no_git)
    assert environment.git_info() is None
    info = environment_info(["x"])
    assert info["git"] is None
    json.dumps(info)


def test_git_timeout_gives_none(monkeypatch):
    def slow_git(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(environment.subprocess, "run", slow_git)
    assert environment.git_info() is None


@pytest.mark.skipif(not _git_available(), reason="needs git")
def test_not_a_checkout_gives_none(tmp_path):
    assert environment.git_info(tmp_path) is None


@pytest.mark.skipif(not _git_available(), reason="needs git")
def test_untracked_folder_of_a_checkout_gives_none(tmp_path):
    """A folder inside some repository but not tracked by it (e.g. a venv's site-packages)."""
    repo = tmp_path / "project"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run(git + ["add", "a.txt"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "a"], cwd=repo, check=True)
    untracked = repo / "venv" / "tf_esimcse"
    untracked.mkdir(parents=True)
    (untracked / "__init__.py").write_text("")
    assert environment.git_info(untracked) is None
    info = environment.git_info(repo)
    assert info is not None and len(info["commit"]) == 40 and info["dirty"] is False
    (repo / "a.txt").write_text("changed\n")
    assert environment.git_info(repo)["dirty"] is True


def test_cpuinfo_parsing(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_vnni\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n"
    )
    info = environment.cpu_info(cpuinfo)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["flags"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                             "amx_bf16", "amx_int8"]


def test_cpuinfo_missing(tmp_path):
    info = environment.cpu_info(tmp_path / "no_such_file")
    assert info["flags"] is None
    assert info["logical_cores"] >= 1
    json.dumps(info)


def test_missing_package_is_none():
    versions = environment.package_versions(["numpy", "surely-not-an-installed-package-xyz"])
    assert versions["numpy"] is not None and versions["surely-not-an-installed-package-xyz"] is None
