"""`recipes/pretrain_mlm.py` on a tiny configuration: it trains, logs the MLM loss and masked-token
accuracy, prints and saves the held-out accuracy, resumes after a crash, and leaves a keras-hub
preset that `SentenceEncoder.from_pretrained`, `tf-esimcse evaluate` and DiffCSE's generator accept."""
import json

import keras_hub
import numpy as np
import pytest

from test_recipes import _scalars, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from training_test_case import crash_at_step


def _flags(workspace, output_dir, **extra):  # noqa: F811
    flags = {"corpus": workspace["corpus"], "output-dir": output_dir, "vocabulary": workspace["model"],
             "num-layers": 1, "hidden-dim": 16, "num-heads": 2, "intermediate-dim": 32, "max-len": 16,
             "batch-size": 8, "steps": 6, "backup-steps": 3, "held-out": 0.1, "jit-compile": "false"}
    flags.update(extra)
    return [x for k, v in flags.items() for x in (f"--{k}", str(v))]


@pytest.mark.large
def test_pretrain_saves_a_preset_every_consumer_accepts(workspace, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "mlm"
    results = load_recipe("pretrain_mlm").main(_flags(workspace, out))
    printed = capsys.readouterr().out
    assert "held-out masked-token accuracy" in printed and results["steps"] == 6
    saved = json.loads((out / "results.json").read_text())
    assert 0.0 <= saved["held_out"]["masked_accuracy"] <= 1.0 and saved["held_out"]["sentences"] == 20
    scalars = _scalars(out / "logs" / "train")
    for tag in ("batch_loss", "batch_masked_accuracy", "batch_learning_rate"):
        assert tag in scalars and len(scalars[tag]) >= 2, (tag, sorted(scalars))
    assert not (out / "backup").exists()

    # A raw encoder for the contrastive recipes ...
    encoder = SentenceEncoder.from_pretrained(str(out / "model"), pooler_type="avg")
    assert encoder.backbone.vocabulary_size == encoder.preprocessor.tokenizer.vocabulary_size()
    assert np.isfinite(encoder.encode(["a cat sat on the mat", "hello world"], verbose=0)).all()
    # ... and DiffCSE's generator, with the same vocabulary as the tiny encoder.
    generator = keras_hub.models.MaskedLM.from_preset(str(out / "model"), preprocessor=None)
    assert generator.backbone.vocabulary_size == SentenceEncoder.from_pretrained(
        str(workspace["model"])).backbone.vocabulary_size
    results = load_recipe("diffcse").main(
        ["--model", str(workspace["model"]), "--corpus", str(workspace["corpus"]), "--data-dir", str(workspace["data"]),
         "--steps", "2", "--eval-steps", "2", "--batch-size", "8", "--max-len", "16", "--jit-compile", "false",
         "--output-dir", str(tmp_path / "diffcse"), "--generator", str(out / "model")])
    assert results["status"] == "ok"


@pytest.mark.large
def test_pretrain_resumes_after_a_crash(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    out = tmp_path / "mlm"
    crash_at_step(monkeypatch, 4)
    recipe = load_recipe("pretrain_mlm")
    with pytest.raises(RuntimeError):
        recipe.main(_flags(workspace, out))
    monkeypatch.undo()
    assert (out / "backup" / "latest.weights.h5").is_file()
    capsys.readouterr()
    results = recipe.main(_flags(workspace, out))
    assert "skipping the 3 batches already trained on" in capsys.readouterr().out
    assert results["steps"] == 6


def test_bad_flags(workspace, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="not divisible"):
        load_recipe("pretrain_mlm").main(_flags(workspace, tmp_path, **{"num-heads": 3}))
