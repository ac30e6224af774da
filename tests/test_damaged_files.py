"""Damaged files get a clear error naming the file, and nothing already saved is lost: truncated
or hand-edited model directories, weights of the wrong shape, a tokenizer from another model, a
full disk while saving the model or a backup, a damaged backup on resume."""
import errno
import json
import shutil

import keras
import numpy as np
import pytest

import tf_esimcse.training as training
from test_case import tiny_encoder, write_tiny_model_dir
from test_recipes import _argv, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse.backup import AtomicBackupAndRestore
from tf_esimcse.errors import ModelLoadError, ModelSaveError, TfEsimcseError
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from training_test_case import crash_at_step


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    encoder = tiny_encoder(write_tiny_model_dir(root / "hf"), pooler_type="cls")
    encoder.save_pretrained(root / "good")
    return root / "good"


def _copy(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage,file,message", [
    (lambda d: _truncate(d / "model.weights.h5"), "model.weights.h5", "damaged or truncated"),
    (lambda d: _truncate(d / "pooler.weights.h5"), "pooler.weights.h5", "damaged or truncated"),
    (lambda d: (d / "tf_esimcse.json").write_text('{"pooler_type": "cls",'), "tf_esimcse.json", "not valid JSON"),
    (lambda d: (d / "config.json").write_text("{ hand edited"), "config.json", "not valid JSON"),
    (lambda d: (d / "model.weights.h5").unlink(), "model.weights.h5", "missing"),
])
def test_damaged_model_directory_names_the_file(saved, tmp_path, damage, file, message):
    model = _copy(saved, tmp_path)
    damage(model)
    before = _snapshot(model)
    with pytest.raises(ModelLoadError, match=message) as raised:
        SentenceEncoder.from_pretrained(str(model))
    assert str(model / file) in str(raised.value)
    assert _snapshot(model) == before  # nothing rewritten or removed


def test_weights_of_the_wrong_shape(saved, tmp_path):
    model = _copy(saved, tmp_path)
    config = json.loads((model / "config.json").read_text())
    config["config"]["hidden_dim"] *= 2
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="do not fit the architecture in config.json") as raised:
        SentenceEncoder.from_pretrained(str(model))
    assert str(model / "model.weights.h5") in str(raised.value)


def test_tokenizer_of_another_model(saved, tmp_path):
    model = _copy(saved, tmp_path)
    vocab = next(model.rglob("vocabulary.txt"))
    lines = vocab.read_text().splitlines()
    vocab.write_text("\n".join(lines + [f"extra{i}" for i in range(7)]) + "\n")
    with pytest.raises(ModelLoadError, match=r"tokenizer has \d+ tokens but the weights have \d+ embedding rows"):
        SentenceEncoder.from_pretrained(str(model))


def test_full_disk_while_saving_keeps_the_previous_model(saved, tmp_path, monkeypatch):
    model = _copy(saved, tmp_path)
    before = _snapshot(model)
    encoder = SentenceEncoder.from_pretrained(str(model))
    original = [w.copy() for w in encoder.backbone.get_weights()]
    encoder.backbone.set_weights([w + 1.0 for w in original])

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.saving, "save_weights", full_disk)  # the pooler head, after the backbone
    with pytest.raises(ModelSaveError, match="No space left on device.*the model saved there before is untouched"):
        encoder.save_pretrained(model)
    monkeypatch.undo()
    assert _snapshot(model) == before
    assert sorted(p.name for p in model.parent.iterdir()) == ["model"]  # no temporary directory left behind
    reloaded = SentenceEncoder.from_pretrained(str(model))
    for got, want in zip(reloaded.backbone.get_weights(), original):
        np.testing.assert_array_equal(got, want)


def test_full_disk_while_writing_a_backup_keeps_the_previous_backup(tmp_path, monkeypatch):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    backup = AtomicBackupAndRestore(str(tmp_path), save_freq="epoch", delete_checkpoint=False)
    backup.set_model(model)
    backup._current_epoch = 2
    backup._save_model()
    before = _snapshot(tmp_path)

    def full_disk(filepath, overwrite=True):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n")  # a few bytes made it, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save_weights", full_disk)
    backup._current_epoch = 3
    with pytest.raises(ModelSaveError, match="previous backup there is untouched"):
        backup._save_model()
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "incomplete" not in str(k)} == before


@pytest.mark.large
def test_a_damaged_backup_stops_the_resume_with_its_name(workspace, tmp_path, monkeypatch, capsys):  # noqa: F811
    output_dir = tmp_path / "out"
    argv = _argv(workspace, output_dir, steps=6, **{"eval-steps": 2, "backup-steps": 2})
    recipe = load_recipe("unsup_simcse")
    crash_at_step(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        recipe.main(argv)
    monkeypatch.undo()
    weights = output_dir / "backup" / "latest.weights.h5"
    _truncate(weights)
    damaged = weights.read_bytes()
    with pytest.raises(TfEsimcseError, match="the backup cannot be restored.*nothing was changed") as raised:
        recipe.main(argv)
    assert str(output_dir / "backup") in str(raised.value)
    assert weights.read_bytes() == damaged  # left for the user to inspect or restore
    with pytest.raises(SystemExit) as exited:
        training.main_guard(lambda: recipe.main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "backup cannot be restored" in err[0]
