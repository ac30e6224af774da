"""Help a person can read, and flag errors in one line: every recipe's and every `tf-esimcse`
subcommand's `--help` (exit 0, no TensorFlow log line, every option described with its default,
choices shown, grouped), and the flag errors of issue 25 (exit 2, one `error:` line on stderr,
no output folder created).

The parsers are checked in-process (fast); the real commands run in subprocesses, each of which
imports TensorFlow (~5 s): every one marked `large` (the fast loop starts no process).
"""
import argparse
import importlib
import pathlib
import re
import subprocess
import sys

import pytest

from test_quiet import clean_env as quiet_clean_env

from tf_esimcse import cli
from tf_esimcse import config as cfg

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = ("unsup_simcse", "unsup_esimcse", "sup_simcse", "diffcse", "pretrain_mlm")
RECIPE_CONFIGS = {"unsup_simcse": "SimCSEConfig", "unsup_esimcse": "ESimCSEConfig", "sup_simcse": "SupervisedConfig",
                  "diffcse": "DiffCSEConfig", "pretrain_mlm": "PretrainConfig"}
SUBCOMMANDS = ("evaluate", "encode", "export", "build-index", "search", "plot-run", "download-data")
TF_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog", re.M)
CHOICE_FLAGS = {"--pooler": "cls_before_pooler", "--strategy": "multiworker", "--jit-compile": "auto",
                "--repetition-mode": "official_subword", "--augmentation": "word_deletion:K"}


def clean_env(**extra):
    """test_quiet's new user's environment, with a fixed terminal width for the help layout."""
    return quiet_clean_env(**{"COLUMNS": "100", **extra})


def run(argv, cwd=None):
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env=clean_env(), cwd=cwd or REPO)


def recipe_parser(name):
    module = importlib.import_module(f"tf_esimcse.methods.{name}")  # its docstring is the recipe's --help
    return cfg.build_config_parser(getattr(module, RECIPE_CONFIGS[name]), description=module.__doc__,
                                   prog=f"{name}.py")


def subcommand_parsers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def _options(parser):
    return [a for a in parser._actions if a.option_strings and "--help" not in a.option_strings]


def assert_described(parser, where):
    for action in _options(parser):
        flag = action.option_strings[0]
        assert action.help and action.help.strip(), (where, flag)
        assert "(default: " in action.help or "(required)" in action.help or "at least one" in action.help, \
            (where, flag, action.help)
    groups = [g.title for g in parser._action_groups if g._group_actions and g.title not in ("options",)]
    assert groups, where
    for group in parser._action_groups:
        if group.title not in ("options", "positional arguments") and group._group_actions:
            assert group.title in (*cfg.GROUPS, "output"), (where, group.title)


# --- in-process: the parsers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_flag_is_described_and_grouped(name):
    parser = recipe_parser(name)
    assert_described(parser, name)
    text = " ".join(parser.format_help().split())
    present = {a.option_strings[0] for a in _options(parser)}
    for flag, choice in CHOICE_FLAGS.items():
        if flag in present:
            assert choice in text, (name, flag)
    if name != "pretrain_mlm":
        assert [g.title for g in parser._action_groups if g._group_actions][1:] == list(cfg.GROUPS)
        assert {"--steps", "--overwrite", "--keep-start", "--verbose"} <= present


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_flag_is_described_and_grouped(command):
    _, parsers = subcommand_parsers()
    sub = parsers[command]
    assert isinstance(sub, cfg.FlagParser)
    assert_described(sub, command)
    assert "--verbose" in {a.option_strings[0] for a in _options(sub)}
    pooler = next((a for a in sub._actions if "--pooler" in a.option_strings), None)
    if pooler is not None:
        assert tuple(pooler.choices) == cfg.POOLERS


def test_subcommand_errors_are_one_line_with_a_suggestion(capsys, tmp_path):
    code = cli.main(["encode", "--input", "a.txt", "--output", "b.npy", "--inptu", "c"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: unrecognized arguments: --inptu (did you mean --input?)"), err
    assert cli.main(["evalute"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice 'evalute' (did you mean evaluate?)" in err, err
    assert cli.main(["encode", "--output", "b.npy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the following arguments are required: --input" in err, err
    # argparse stops at the missing --input before looking at the typo: the typo is named first
    assert cli.main(["encode", "--inptu", "a.txt", "--output", "b.npy"]) == 2
    assert capsys.readouterr().err == ("error: unrecognized arguments: --inptu (did you mean --input?); the following "
                                       "arguments are required: --input; see --help\n")
    assert cli.main(["encode", "--help"]) == 0
    assert "usage: tf-esimcse encode" in capsys.readouterr().out


# --- subprocesses: what a user sees -----------------------------------------------------------------


def _check_recipe_help(name, proc):
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert not TF_LOG.search(proc.stdout)
    assert proc.stdout.startswith(f"usage: {name}.py [options]")
    for group in (cfg.GROUPS if name != "pretrain_mlm" else ("data", "model", "optimisation", "runtime")):
        assert f"\n{group}:\n" in proc.stdout, group
    assert "defaults:" in " ".join(proc.stdout.split("options:")[0].split())


@pytest.mark.large
def test_a_recipe_help_is_quiet_and_grouped():
    """The issue's case: `recipes/unsup_esimcse.py --help` printed the absl banner twice."""
    proc = run([REPO / "recipes" / "unsup_esimcse.py", "--help"])
    _check_recipe_help("unsup_esimcse", proc)
    text = " ".join(proc.stdout.split())
    assert "{official_subword,paper}" in text and "(default: 160)" in text


@pytest.mark.large
def test_a_flag_error_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "fresh"
    proc = run([REPO / "recipes" / "unsup_simcse.py", "--steps", "0", "--output-dir", out], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: --steps must be a positive integer, got 0 (leave it unset to train "
                                        "--epochs passes over the corpus)"], proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


# One process runs every other `--help` in turn (as its own `__main__`), with markers between
# them on both streams: TensorFlow's start-up lines would come once, at the first import.
_DRIVER = """
import runpy, sys
for label, argv in {runs!r}:
    for stream in (sys.stdout, sys.stderr):
        print("=== " + label, file=stream, flush=True)
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name="__main__") if argv[0].endswith(".py") else runpy.run_module(
            argv[0], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code
    print("=== exit", code, flush=True)
"""


def _sections(text):
    parts = re.split(r"^=== (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.large
def test_every_help_in_a_subprocess():
    runs = [(name, [str(REPO / "recipes" / f"{name}.py"), "--help"]) for name in RECIPES if name != "unsup_esimcse"]
    runs += [(command or "tf-esimcse", ["tf_esimcse.cli", *([command] if command else []), "--help"])
             for command in (None, *SUBCOMMANDS)]
    proc = run(["-c", _DRIVER.format(runs=runs)])
    assert proc.returncode == 0, proc.stderr
    assert not TF_LOG.search(proc.stderr) and not TF_LOG.search(proc.stdout), proc.stderr
    errors, outputs = _sections(proc.stderr), _sections(proc.stdout)
    assert list(outputs) == [label for label, _ in runs] == list(errors)
    for label, text in outputs.items():
        assert errors[label] == "", (label, errors[label])
        assert text.rstrip().endswith("=== exit 0"), (label, text[-200:])
        if label in RECIPES:
            _check_recipe_help(label, subprocess.CompletedProcess([], 0, text.rsplit("=== exit", 1)[0], ""))
        else:
            assert text.startswith("usage: tf-esimcse" + ("" if label == "tf-esimcse" else f" {label}")), label
            if label in ("evaluate", "encode", "build-index", "search", "export"):
                assert "{cls,cls_before_pooler,avg,avg_top2,avg_first_last}" in text
                assert "\nmodel:\n" in text and "\nruntime:\n" in text


@pytest.mark.large
@pytest.mark.parametrize("problem", ["steps -1", "batch-size 1", "model is a file", "model missing", "unknown flag"])
def test_flag_errors_in_a_subprocess(tmp_path, problem):
    a_file = tmp_path / "model.safetensors"
    a_file.write_text("x")
    flags, needle = {
        "steps -1": (["--steps", "-1"], "error: --steps must be a positive integer, got -1"),
        "batch-size 1": (["--batch-size", "1"], "error: --batch-size must be an integer >= 2, got 1"),
        "model is a file": (["--model", a_file], f"error: --model {a_file} is a file, not a model directory"),
        "model missing": (["--model", tmp_path / "no_model"], f"error: --model {tmp_path / 'no_model'}: no such "
                                                              "directory"),
        "unknown flag": (["--stpes", "20"], "error: unrecognized arguments: --stpes (did you mean --steps?) 20; "
                                            "see --help"),
    }[problem]
    out = tmp_path / "fresh"
    proc = run([REPO / "recipes" / "unsup_esimcse.py", *flags, "--output-dir", out], cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(needle), proc.stderr
    assert proc.stdout == ""
    assert not out.exists()
