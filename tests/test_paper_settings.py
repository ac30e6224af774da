"""Per-family defaults: a BERT or RoBERTa of base or large size gets its paper's settings in place
of the recipe's (BERT-base) defaults; a flag given on the command line always wins."""
import json

import pytest

from tf_esimcse.methods import method as methods
from tf_esimcse.paper_settings import SETTINGS, family_and_size

import tf_esimcse.methods.diffcse  # noqa: F401 (registers the methods)
import tf_esimcse.methods.sup_simcse  # noqa: F401
import tf_esimcse.methods.unsup_esimcse  # noqa: F401
import tf_esimcse.methods.unsup_simcse  # noqa: F401


def _hf_dir(path, model_type, hidden, layers):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(
        {"model_type": model_type, "hidden_size": hidden, "num_hidden_layers": layers}))
    (path / "model.safetensors").write_bytes(b"")  # only the config is read here
    return str(path)


def _preset_dir(path, backbone, hidden, layers):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(
        {"registered_name": f"keras_hub>{backbone}", "config": {"hidden_dim": hidden, "num_layers": layers}}))
    (path / "metadata.json").write_text("{}")
    return str(path)


def test_family_and_size_from_every_kind_of_source(tmp_path):
    assert family_and_size(_hf_dir(tmp_path / "rb", "roberta", 768, 12)) == ("roberta", "base")
    assert family_and_size(_hf_dir(tmp_path / "bl", "bert", 1024, 24)) == ("bert", "large")
    assert family_and_size(_hf_dir(tmp_path / "tiny", "roberta", 32, 2)) == ("roberta", None)
    assert family_and_size(_preset_dir(tmp_path / "kl", "RobertaBackbone", 1024, 24)) == ("roberta", "large")
    assert family_and_size("roberta_base_en") == ("roberta", "base")
    assert family_and_size("bert_large_en_uncased") == ("bert", "large")
    assert family_and_size("default") == ("bert", None)  # all-MiniLM-L6-v2: 384 wide, 6 layers
    assert family_and_size(str(tmp_path / "missing")) == (None, None)


def test_roberta_base_gets_the_simcse_tables_settings(tmp_path, capsys):
    model = _hf_dir(tmp_path / "rb", "roberta", 768, 12)
    config = methods.get("unsup_simcse").parse(["--model", model])
    assert (config.batch_size, config.learning_rate) == (512, 1e-5)
    out = capsys.readouterr().out
    assert "RoBERTa-base: --batch-size 512, --learning-rate 1e-05" in out and "Table A.1" in out


def test_a_given_flag_wins_even_at_the_recipes_default_value(tmp_path, capsys):
    model = _hf_dir(tmp_path / "rb", "roberta", 768, 12)
    config = methods.get("unsup_simcse").parse(["--model", model, "--learning-rate", "3e-5"])
    assert (config.batch_size, config.learning_rate) == (512, 3e-5)
    assert "--learning-rate" not in capsys.readouterr().out
    config = methods.get("unsup_simcse").parse(["--model", model, "--batch-size=32", "--learning-rate", "3e-5"])
    assert (config.batch_size, config.learning_rate) == (32, 3e-5)
    assert capsys.readouterr().out == ""  # nothing left to change: no line


def test_esimcse_roberta_large_from_a_keras_hub_preset(tmp_path):
    model = _preset_dir(tmp_path / "kl", "RobertaBackbone", 1024, 24)
    config = methods.get("unsup_esimcse").parse(["--model", model])
    assert (config.batch_size, config.dup_rate, config.queue_size) == (64, 0.28, 128)


def test_other_sizes_keep_the_recipes_defaults(tmp_path, capsys):
    for name in ("unsup_simcse", "unsup_esimcse", "sup_simcse"):
        method = methods.get(name)
        plain = method.parse([])
        tiny = method.parse(["--model", _hf_dir(tmp_path / name, "roberta", 32, 2)])
        assert (tiny.batch_size, tiny.learning_rate) == (plain.batch_size, plain.learning_rate)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_rows_settings_are_real_flags_and_cite_a_source(name):
    config = methods.get(name).config_cls
    fields = {f.name for f in __import__("dataclasses").fields(config)}
    for (family, size), (settings, source) in SETTINGS[name].items():
        assert family in ("bert", "roberta") and size in ("base", "large")
        assert set(settings) <= fields, set(settings) - fields
        assert source.strip()


def test_bert_base_rows_are_the_recipes_own_defaults():
    """The recipes' defaults are their papers' BERT-base settings: the BERT-base rows change nothing."""
    for name, rows in SETTINGS.items():
        settings, _ = rows[("bert", "base")]
        defaults = methods.get(name).config_cls
        for key, value in settings.items():
            assert getattr(defaults, key) == value, (name, key)


def test_the_docs_table_shows_every_setting():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "recipes.md").read_text()
    columns = [("bert", "base"), ("bert", "large"), ("roberta", "base"), ("roberta", "large")]
    for name, rows in SETTINGS.items():
        line = next(l for l in text.splitlines() if l.startswith(f"| {name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:5]
        for column, cell in zip(columns, cells):
            settings = rows.get(column, ({}, ""))[0]
            numbers = sorted(float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e-\d+)?", cell))
            assert numbers == sorted(float(v) for v in settings.values()), (name, column, cell)
