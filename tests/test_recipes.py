"""Smoke tests of `recipes/unsup_simcse.py` and `recipes/unsup_esimcse.py` on a tiny model.

Each recipe trains 3 steps on a 200-sentence corpus with STS-B dev every 2 steps, on a tiny
synthetic SentEval directory (`test_cli.write_tiny_senteval`), and must leave a loadable
encoder, `results.json` and TensorBoard logs. Errors must be one line and exit code 2.
"""
import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from test_case import write_tiny_model_dir
from test_cli import RESULT_KEYS
from test_cli import write_tiny_senteval
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives import ESimCSEObjective
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.training import main_guard

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = ("unsup_simcse", "unsup_esimcse")
_WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox", "jumped",
          "over", "lazy", "is", "playing", "runs", ".", ","]


def load_method(name):
    """`tf_esimcse.methods.<name>`: what `recipes/<name>.py` runs (its settings, builders, `main`)."""
    return importlib.import_module(f"tf_esimcse.methods.{name}")


load_recipe = load_method  # the name other test modules import


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    rng = np.random.default_rng(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(_WORDS, size=rng.integers(3, 13))) for _ in range(200)) + "\n")
    return {
        "model": write_tiny_model_dir(root / "tiny_hf"),
        "data": write_tiny_senteval(root / "data"),
        "corpus": corpus,
        "root": root,
    }


def _argv(workspace, output_dir, **overrides):
    flags = {
        "model": workspace["model"], "corpus": workspace["corpus"], "data-dir": workspace["data"],
        "steps": 3, "eval-steps": 2, "batch-size": 8, "max-len": 16, "output-dir": output_dir,
        "jit-compile": "false",
    }
    flags.update(overrides)
    argv = []
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    return argv


def _scalars(log_dir):
    """{tag: [(step, value), ...]} from every event file under `log_dir`."""
    tags = {}
    for path in sorted(pathlib.Path(log_dir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.dtype.kind in "SUO":  # text summaries
                        continue
                    number = float(array)
                else:
                    number = value.simple_value
                tags.setdefault(value.tag, []).append((event.step, number))
    return tags


@pytest.mark.large
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_saves_evaluates_and_logs(workspace, tmp_path, name, capsys):
    output_dir = tmp_path / "out"
    results = load_recipe(name).main(_argv(workspace, output_dir))
    stdout = capsys.readouterr().out
    assert "STS12" in stdout and "Avg." in stdout  # the 7-task table

    # The encoder: loadable, saved with the inference pooler.
    model_dir = output_dir / "model"
    settings = json.loads((model_dir / "tf_esimcse.json").read_text())
    assert settings["pooler_type"] == "cls_before_pooler"
    assert settings["sequence_length"] == 16
    assert not (model_dir / "pooler.weights.h5").exists()
    encoder = SentenceEncoder.from_pretrained(str(model_dir))
    assert encoder.pooler_type == "cls_before_pooler"
    embeddings = encoder.encode(["the cat sat on the mat", "hello world"], verbose=0)
    assert embeddings.shape == (2, 32) and np.isfinite(embeddings).all()

    # results.json: the config, the best step and the test scores of the saved model.
    saved = json.loads((output_dir / "results.json").read_text())
    assert saved["config"]["steps"] == 3 and saved["config"]["batch_size"] == 8
    assert saved["config"]["max_len"] == 16 and saved["config"]["jit_compile"] == "false"
    assert saved["best_step"] in (2, 3)
    for key in RESULT_KEYS:
        assert np.isfinite(saved["test"][key]), key
    split = saved["test"].pop("length_split")
    assert split == pytest.approx(results["test"].pop("length_split"))
    assert split["n_short"] + split["n_long"] > 0
    assert saved["test"] == pytest.approx(results["test"])
    # The saved model is the best one: its STS-B dev score is the best seen during training.
    assert saved["test"]["stsb_dev"] == pytest.approx(saved["best_stsb_dev"], abs=1e-4)
    best = json.loads((output_dir / "best_step.json").read_text())
    assert best["step"] == saved["best_step"]

    # TensorBoard: training scalars, and STS-B dev at step 0 (the untrained start), 2 (every 2 steps)
    # and 3 (the end).
    logs = output_dir / "logs"
    train = _scalars(logs / "train")
    assert "batch_loss" in train
    if name == "unsup_esimcse":
        assert "batch_queue_fill" in train
    validation = _scalars(logs / "validation")
    assert [step for step, _ in validation["stsb_dev_spearman"]] == [0, 2, 3]
    assert max(v for s, v in validation["stsb_dev_spearman"] if s > 0) == pytest.approx(saved["best_stsb_dev"], abs=1e-4)
    assert {"alignment", "uniformity"} <= set(validation)
    assert not (output_dir / "backup").exists()  # BackupAndRestore cleans up after a finished run


def test_esimcse_recipe_ablation_flags(workspace):
    recipe = load_recipe("unsup_esimcse")
    encoder = SentenceEncoder.from_pretrained(str(workspace["model"]), pooler_type="cls", mlp_only_train=True,
                                              sequence_length=16)
    sentences = [f"the cat sat on mat {w}" for w in _WORDS[:16]]

    config = recipe.METHOD.parse(["--queue-size", "24", "--momentum", "0.9", "--batch-size", "8"])
    model = ContrastiveModel(encoder, recipe.METHOD.objective(config))
    assert isinstance(model.objective, ESimCSEObjective)
    assert (model.objective.queue_size, model.objective.momentum, model.objective.use_momentum_queue) == (24, 0.9, True)
    assert set(recipe.build_dataset(sentences, encoder.preprocessor, config).element_spec) == {"anchor", "positive"}

    config = recipe.METHOD.parse(["--no-use-momentum-queue", "--no-use-repetition",
                                                        "--batch-size", "8"])
    model = ContrastiveModel(encoder, recipe.METHOD.objective(config))
    assert model.objective.queue is None and model.objective.momentum_backbone is None
    assert set(recipe.build_dataset(sentences, encoder.preprocessor, config).element_spec) == {"token_ids",
                                                                                            "padding_mask"}


@pytest.mark.large
def test_simcse_recipe_length_buckets_flag(workspace, tmp_path):
    recipe = load_recipe("unsup_simcse")
    encoder = SentenceEncoder.from_pretrained(str(workspace["model"]), pooler_type="cls", mlp_only_train=True,
                                              sequence_length=16)
    sentences = [" ".join(_WORDS[: 1 + i % 12]) for i in range(96)]
    assert recipe.METHOD.parse([]).length_buckets is False
    config = recipe.METHOD.parse(["--length-buckets", "--batch-size", "8"])
    batches = list(recipe.build_dataset(sentences, encoder.preprocessor, config).take(12))
    widths = {int(b["token_ids"].shape[1]) for b in batches}
    assert len(widths) > 1 and all(b["token_ids"].shape[0] == 8 for b in batches)
    for b in batches:  # every sentence of a batch fits its bucket, and the bucket is needed
        lengths = b["padding_mask"].numpy().sum(axis=1)
        assert lengths.max() <= b["token_ids"].shape[1]
    # and a run trains with it end to end
    results = recipe.main(_argv(workspace, tmp_path / "out") + ["--length-buckets"])
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["config"]["length_buckets"] is True
    assert (tmp_path / "out" / "model").is_dir() and results is not None


def _bad(workspace, tmp_path, problem):
    if problem == "empty_corpus":
        empty = tmp_path / "empty.txt"
        empty.write_text("\n  \n")
        return {"corpus": empty}, ("empty.txt", "empty")
    if problem == "missing_corpus":
        return {"corpus": tmp_path / "nope.txt"}, ("nope.txt", "no such file")
    if problem == "missing_data_dir":
        return {"data-dir": tmp_path / "no_data"}, ("no_data", "SentEval")
    if problem == "no_brown":
        return {"corpus": "brown"}, ("brown",)
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["empty_corpus", "missing_corpus", "missing_data_dir", "no_brown"])
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_errors_are_one_line_with_exit_code_2(workspace, tmp_path, capsys, name, problem):
    overrides, needles = _bad(workspace, tmp_path, problem)
    recipe = load_recipe(name)
    output_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main_guard(lambda: recipe.main(_argv(workspace, output_dir, **overrides)))
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (output_dir / "model").exists()


@pytest.mark.large
def test_recipe_script_reports_a_missing_data_dir(workspace, tmp_path):
    """The script entry point (`python recipes/unsup_esimcse.py`) goes through main_guard."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    argv = _argv(workspace, tmp_path / "out", **{"data-dir": tmp_path / "no_data"})
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "unsup_esimcse.py"), *argv],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no_data" in errors[0], proc.stderr
    # TensorFlow's own start-up lines aside, the error is the last thing printed.
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
