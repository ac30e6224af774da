"""`tf_esimcse.config`: the flags described once as field metadata, `validate()` (one-line errors
naming the flag, before any work) and `FlagParser` (one-line argparse errors with suggestions).

All in-process and fast; `tests/test_help.py` runs the real commands in subprocesses.
"""
import dataclasses
import pathlib

import pytest

from test_recipes import load_method
from tf_esimcse import config as cfg
from tf_esimcse.config import FlagParser, TrainConfig, parse_config
from tf_esimcse.training import main_guard

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPE_CONFIGS = {"unsup_simcse": "SimCSEConfig", "unsup_esimcse": "ESimCSEConfig", "sup_simcse": "SupervisedConfig",
                  "diffcse": "DiffCSEConfig", "pretrain_mlm": "PretrainConfig"}


@pytest.fixture(scope="module")
def recipes():
    return {name: load_method(name) for name in RECIPE_CONFIGS}


def _config(**changes):
    """A valid TrainConfig (the defaults) with `changes`."""
    return dataclasses.replace(TrainConfig(), **changes)


# --- every setting described once --------------------------------------------------------------


@pytest.mark.parametrize("name", RECIPE_CONFIGS)
def test_every_field_has_help_and_a_group(recipes, name):
    config_cls = getattr(recipes[name], RECIPE_CONFIGS[name])
    for field in dataclasses.fields(config_cls):
        metadata = cfg.field_metadata(config_cls, field.name)
        assert metadata.get("help", "").strip(), (name, field.name)
        assert "\n" not in metadata["help"], (name, field.name)
        assert metadata["group"] in cfg.GROUPS, (name, field.name)


def test_a_subclass_that_changes_a_default_keeps_the_description(recipes):
    esimcse = recipes["unsup_esimcse"].ESimCSEConfig
    own = {f.name: f for f in dataclasses.fields(esimcse)}["output_dir"]
    assert "help" not in own.metadata
    assert cfg.field_metadata(esimcse, "output_dir") == cfg.field_metadata(TrainConfig, "output_dir")
    # and the default shown is the subclass's
    help_text = cfg.build_config_parser(esimcse).format_help()
    assert "saved_models/unsup_esimcse" in help_text


def test_new_fields_and_steps_unset_by_default():
    config = TrainConfig()
    assert config.steps is None
    assert (config.overwrite, config.keep_start, config.verbose) == (False, False, False)
    assert cfg.field_metadata(TrainConfig, "overwrite")["group"] == "runtime"
    assert cfg.field_metadata(TrainConfig, "verbose")["group"] == "runtime"
    assert cfg.field_metadata(TrainConfig, "keep_start")["group"] == "evaluation"
    assert parse_config(TrainConfig, []).steps is None
    assert parse_config(TrainConfig, ["--steps", "7"]).steps == 7
    parsed = parse_config(TrainConfig, ["--overwrite", "--keep-start", "--verbose"])
    assert (parsed.overwrite, parsed.keep_start, parsed.verbose) == (True, True, True)


def test_help_groups_defaults_and_choices(recipes):
    text = cfg.build_config_parser(recipes["unsup_simcse"].SimCSEConfig,
                                   description=recipes["unsup_simcse"].__doc__).format_help()
    for group in cfg.GROUPS:
        assert f"\n{group}:\n" in text, group
    assert "{cls,cls_before_pooler,avg,avg_top2,avg_first_last}" in text
    assert "{auto,true,false}" in text and "{default,mirrored,multiworker}" in text
    assert "crop:K" in text and "word_deletion:K" in text  # --augmentation's forms
    flat = " ".join(text.split())  # the help is wrapped to the terminal's width
    assert "(default: 64)" in flat and "(default: unset: --epochs passes over the corpus)" in flat
    assert "run_unsup_example.sh" in text.split("options:")[0]  # whose defaults, in the description
    assert "paper's BERT-base" not in flat


@pytest.mark.parametrize("name, needle", [("unsup_simcse", "run_unsup_example.sh"),
                                          ("unsup_esimcse", "official ESimCSE code's run.sh"),
                                          ("sup_simcse", "run_sup_example.sh"),
                                          ("diffcse", "run_diffcse.sh"),
                                          ("pretrain_mlm", "this package's own")])
def test_each_recipe_says_whose_defaults_it_uses(recipes, name, needle):
    first_line = recipes[name].__doc__.split("\n")[0]
    assert needle in first_line and "defaults" in first_line
    assert "the paper's" not in first_line


def test_format_default():
    assert cfg.format_default(True) == "on" and cfg.format_default(False) == "off"
    assert cfg.format_default("") == "unset" and cfg.format_default(None) == "unset"
    assert cfg.format_default(3e-5) == "3e-05"
    assert cfg.format_default(0, {"default_text": "0 = all"}) == "0 = all"


def test_setting_rejects_an_unknown_group():
    with pytest.raises(ValueError, match="unknown flag group"):
        cfg.setting(1, help="x", group="misc")


# --- validate() -----------------------------------------------------------------------------------


def test_the_defaults_are_valid():
    assert TrainConfig().validate().batch_size == 64


@pytest.mark.parametrize("changes, needles", [
    ({"steps": 0}, ("--steps", "positive integer", "got 0", "--epochs")),
    ({"steps": -1}, ("--steps", "positive integer", "got -1")),
    ({"epochs": 0}, ("--epochs", "positive integer")),
    ({"batch_size": 1}, ("--batch-size", ">= 2", "negatives")),
    ({"mini_batch_size": -1}, ("--mini-batch-size", "[0, 64]")),
    ({"mini_batch_size": 65}, ("--mini-batch-size", "[0, 64]")),
    ({"learning_rate": 0.0}, ("--learning-rate", "positive")),
    ({"learning_rate": float("nan")}, ("--learning-rate", "finite")),
    ({"max_len": 1}, ("--max-len", ">= 2")),
    ({"temperature": 0.0}, ("--temperature", "positive")),
    ({"dropout": 1.0}, ("--dropout", "[0, 1)")),
    ({"dropout": -0.1}, ("--dropout", "[0, 1)")),
    ({"eval_steps": 0}, ("--eval-steps", "positive integer")),
    ({"backup_steps": -1}, ("--backup-steps", ">= 0")),
    ({"warmup_ratio": 1.0}, ("--warmup-ratio", "[0, 1)")),
    ({"weight_decay": -1.0}, ("--weight-decay", ">= 0")),
    ({"max_grad_norm": -1.0}, ("--max-grad-norm", ">= 0")),
    ({"max_sentences": -5}, ("--max-sentences", ">= 0")),
    ({"seeds": "1,x"}, ("--seeds", "comma-separated integers")),
    ({"seeds": "1,,2"}, ("--seeds", "comma-separated integers", "'1,,2'")),
    ({"seeds": "1,"}, ("--seeds", "comma-separated integers")),
    ({"seeds": "1,1"}, ("--seeds", "repeats")),
    ({"pooler": "mean"}, ("--pooler", "cls_before_pooler", "avg_first_last", "'mean'")),
    ({"strategy": "tpu"}, ("--strategy", "mirrored", "multiworker")),
    ({"jit_compile": "yes"}, ("--jit-compile", "auto, true, false")),
    ({"output_dir": ""}, ("--output-dir", "empty")),
])
def test_validate_names_the_flag_and_the_allowed_values(changes, needles):
    with pytest.raises(ValueError) as info:
        _config(**changes).validate()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize("changes", [{"steps": 1}, {"batch_size": 2}, {"mini_batch_size": 64}, {"dropout": 0.0},
                                     {"backup_steps": 0}, {"max_len": 2}, {"warmup_ratio": 0.0}, {"seeds": "3,1,2"},
                                     {"max_grad_norm": 0.0}, {"jit_compile": "false"}, {"pooler": "avg"}])
def test_validate_accepts_the_edges(changes):
    _config(**changes).validate()


@pytest.mark.parametrize("model", ["default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                                   "bert_base_en_uncased"])
def test_default_aliases_and_preset_names_pass(model):
    _config(model=model).validate()


def test_aliases_match_the_loader_and_the_cli():
    from tf_esimcse import backbones, cli

    assert set(cfg.DEFAULT_MODEL_ALIASES) == set(backbones._DEFAULT_ALIASES) == set(cli._DEFAULT_MODEL_ALIASES)
    from tf_esimcse.layers.pooler import POOLER_TYPES

    assert cfg.POOLERS == POOLER_TYPES


def test_model_paths(tmp_path, model_dir, monkeypatch):
    _config(model=str(model_dir)).validate()
    a_file = tmp_path / "weights.h5"
    a_file.write_text("x")
    cases = {
        str(a_file): f"--model {a_file} is a file, not a model directory",
        str(tmp_path / "missing"): f"--model {tmp_path / 'missing'}: no such directory",
        "./missing": "--model ./missing: no such directory",
        "~/surely_not_here_tf_esimcse": "no such directory",
        str(tmp_path): "is not a model directory",
    }
    for model, expected in cases.items():
        with pytest.raises(ValueError) as info:
            _config(model=model).validate()
        assert expected in str(info.value), (model, str(info.value))
    # a training run folder names its model/
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="training run folder: pass its model"):
        _config(model=str(run)).validate()
    # a bare name: a directory here, else a keras-hub preset
    monkeypatch.chdir(model_dir.parent)
    _config(model=model_dir.name).validate()
    with pytest.raises(ValueError, match="not a keras-hub preset name"):
        _config(model="no_such_model_or_preset").validate()


def test_corpus_and_dev_file_paths(tmp_path):
    _config(corpus="brown").validate()  # a name: resolved in --data-dir later
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a\n")
    _config(corpus=str(corpus)).validate()
    with pytest.raises(ValueError, match=r"--corpus .*nope\.txt: no such file or directory"):
        _config(corpus=str(tmp_path / "nope.txt")).validate()
    with pytest.raises(ValueError, match=r"--dev-file dev\.tsv: no such file"):
        _config(dev_file="dev.tsv").validate()
    with pytest.raises(ValueError, match="is a file, not a folder"):
        _config(output_dir=str(corpus)).validate()


def test_recipe_specific_checks(recipes, tmp_path):
    simcse = recipes["unsup_simcse"].SimCSEConfig
    with pytest.raises(ValueError, match="unknown augmentation 'crop'"):
        simcse(augmentation="crop").validate()
    with pytest.raises(ValueError, match="needs --augmentation-generator"):
        simcse(augmentation="mlm:15").validate()
    with pytest.raises(ValueError, match="--length-buckets works with --augmentation none only"):
        simcse(augmentation="crop:10", length_buckets=True).validate()
    with pytest.raises(ValueError, match="--augmentation-generator .*: no such directory"):
        simcse(augmentation="mlm:15", augmentation_generator=str(tmp_path / "nothing")).validate()

    esimcse = recipes["unsup_esimcse"].ESimCSEConfig
    esimcse().validate()
    with pytest.raises(ValueError, match="--repetition-mode must be one of official_subword, paper"):
        esimcse(repetition_mode="official_word").validate()
    with pytest.raises(ValueError, match=r"--dup-rate must be a number in \[0, 1\]"):
        esimcse(dup_rate=1.5).validate()
    with pytest.raises(ValueError, match="--queue-size must be a positive integer"):
        esimcse(queue_size=0).validate()
    esimcse(queue_size=0, use_momentum_queue=False).validate()
    with pytest.raises(ValueError, match="--momentum"):
        esimcse(momentum=1.5).validate()
    with pytest.raises(ValueError, match="--positive-max-len"):
        esimcse(positive_max_len=1).validate()

    sup = recipes["sup_simcse"].SupervisedConfig
    sup().validate()
    with pytest.raises(ValueError, match="--alpha must be positive"):
        sup(alpha=0.0).validate()

    diffcse = recipes["diffcse"].DiffCSEConfig
    with pytest.raises(ValueError, match="--generator is required"):
        diffcse().validate()
    with pytest.raises(ValueError, match="--generator .*nothing: no such directory"):
        diffcse(generator=str(tmp_path / "nothing")).validate()
    with pytest.raises(ValueError, match=r"--masking-ratio must be a number in \(0, 1\)"):
        diffcse(generator="g", masking_ratio=0.0).validate()
    with pytest.raises(ValueError, match="--batchnorm projects the \\[CLS\\] vector"):
        diffcse(generator="g", pooler="avg").validate()

    pretrain = recipes["pretrain_mlm"].PretrainConfig
    pretrain().validate()
    with pytest.raises(ValueError, match="--steps must be a positive integer"):
        pretrain(steps=0).validate()
    with pytest.raises(ValueError, match="not divisible by --num-heads"):
        pretrain(hidden_dim=30, num_heads=4).validate()
    with pytest.raises(ValueError, match=r"--mask-rate must be a number in \(0, 1\)"):
        pretrain(mask_rate=1.0).validate()


# --- the parser -----------------------------------------------------------------------------------


def _parse_error(capsys, argv, config_cls=TrainConfig):
    with pytest.raises(SystemExit) as info:
        parse_config(config_cls, argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("; see --help"), err
    return lines[0]


def test_unknown_flag_suggests_the_nearest(capsys):
    line = _parse_error(capsys, ["--stpes", "3"])
    assert line == "error: unrecognized arguments: --stpes (did you mean --steps?) 3; see --help"
    assert "did you mean --batch-size?" in _parse_error(capsys, ["--batchsize=8"])
    assert "did you mean" not in _parse_error(capsys, ["--zzzzzz"])
    assert "did you mean" not in _parse_error(capsys, ["--foo=2"])  # not --pooler: too far


def test_bad_types_and_choices_are_one_line(capsys):
    assert "argument --steps: invalid int value: 'x'" in _parse_error(capsys, ["--steps", "x"])
    line = _parse_error(capsys, ["--pooler", "clss"])
    assert "invalid choice 'clss' (did you mean cls?)" in line and "cls_before_pooler" in line
    assert "expected one argument" in _parse_error(capsys, ["--model"])


def test_parse_config_validates(capsys):
    with pytest.raises(ValueError, match="--steps must be a positive integer"):
        parse_config(TrainConfig, ["--steps", "0"])
    with pytest.raises(ValueError, match="--batch-size must be an integer >= 2"):
        parse_config(TrainConfig, ["--batch-size", "1"])


def test_subcommand_flags_are_suggested():
    parser = FlagParser(prog="x")
    sub = parser.add_subparsers(dest="command", required=True)
    assert isinstance(sub.add_parser("encode"), FlagParser)
    sub.choices["encode"].add_argument("--input")
    sub.add_parser("other").add_argument("--inplace")
    ns, extras = parser.parse_known_args(["encode", "--inptu", "a"])
    assert "did you mean --input?" in parser._unrecognized(extras, ns)


@pytest.mark.parametrize("flags, needle", [
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--steps", "-1"], "--steps must be a positive integer"),
    (["--batch-size", "1"], "--batch-size must be an integer >= 2"),
    (["--stpes", "5"], "did you mean --steps?"),
])
def test_recipe_flag_errors_write_nothing(recipes, capsys, tmp_path, flags, needle):
    """Through a recipe's main and main_guard, as `python recipes/unsup_esimcse.py ...` runs it."""
    output_dir = tmp_path / "fresh"
    with pytest.raises(SystemExit) as info:
        main_guard(lambda: recipes["unsup_esimcse"].main([*flags, "--output-dir", str(output_dir)]))
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], captured.err
    assert captured.out == ""
    assert not output_dir.exists()


def test_model_errors_through_a_recipe_write_nothing(recipes, capsys, tmp_path):
    a_file = tmp_path / "model.safetensors"
    a_file.write_text("x")
    for model, needle in ((a_file, "is a file, not a model directory"), (tmp_path / "gone", "no such directory")):
        output_dir = tmp_path / "fresh"
        with pytest.raises(SystemExit) as info:
            main_guard(lambda: recipes["unsup_simcse"].main(["--model", str(model), "--output-dir", str(output_dir)]))
        assert info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], lines
        assert not output_dir.exists()


@pytest.mark.parametrize("name", ["unsup_esimcse", "diffcse"])
def test_a_shared_setting_a_method_cannot_honour_is_refused(recipes, capsys, tmp_path, model_dir, name):
    """ESimCSE's and DiffCSE's views keep fixed widths: --dynamic-padding is refused at parse time
    in one line (it used to be accepted and ignored); SimCSE honours it."""
    output_dir = tmp_path / "fresh"
    extra = ["--generator", str(model_dir)] if name == "diffcse" else []
    with pytest.raises(SystemExit) as info:
        main_guard(lambda: recipes[name].main([*extra, "--dynamic-padding", "--output-dir", str(output_dir)]))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --dynamic-padding is not supported by this method: "), lines
    assert not output_dir.exists()
    assert recipes[name].METHOD.parse([*extra, "--no-dynamic-padding"]).dynamic_padding is False
    assert recipes["unsup_simcse"].METHOD.parse(["--dynamic-padding"]).dynamic_padding is True


def test_recipes_are_short_mains_over_the_methods():
    """Each recipe is a command line over `tf_esimcse.methods` (issue 27): at most ~80 lines."""
    for path in sorted((REPO / "recipes").glob("*.py")):
        assert len(path.read_text().splitlines()) <= 80, path.name
