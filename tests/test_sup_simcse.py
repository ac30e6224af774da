"""Supervised SimCSE: the SNLI reader (grouped by premise, bad rows named) and the recipe end to end
on a tiny model (one objective file + one recipe on the shared training step)."""
import json

import numpy as np
import pytest

from test_recipes import _argv, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse.data.corpus import load_nli, read_snli_triplets
from tf_esimcse.errors import DataError
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.objectives import SupervisedSimCSEObjective

_WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox", "lazy", "is"]


def write_snli(folder, n=40, seed=0, split="dev"):
    """`n` premises, each with an entailment, a neutral and a contradiction hypothesis."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    s1, s2, labels = [], [], []
    for i in range(n):
        premise = " ".join(rng.choice(_WORDS, size=rng.integers(3, 9))) + f" {i}"
        for label in ("neutral", "entailment", "contradiction"):
            s1.append(premise)
            s2.append(" ".join(rng.choice(_WORDS, size=rng.integers(2, 7))))
            labels.append(label)
    for name, lines in (("s1", s1), ("s2", s2), ("labels", labels)):
        (folder / f"{name}.{split}").write_text("\n".join(lines) + "\n")
    return folder


def test_snli_triplets_are_grouped_by_premise(tmp_path):
    folder = write_snli(tmp_path / "SNLI", n=5)
    write_snli(folder, n=3, seed=1, split="test")
    triplets = read_snli_triplets(folder)
    s1 = (folder / "s1.dev").read_text().splitlines()
    s2 = (folder / "s2.dev").read_text().splitlines()
    assert len(triplets) == 8
    assert triplets[0] == (s1[0], s2[1], s2[2])  # entailment then contradiction of premise 0
    assert load_nli(str(folder)) == triplets


def test_neutral_hypotheses_as_second_hard_negatives(tmp_path):
    folder = write_snli(tmp_path / "SNLI", n=5)
    write_snli(folder, n=3, seed=1, split="test")
    s2 = (folder / "s2.dev").read_text().splitlines()
    quads = read_snli_triplets(folder, neutral=True)
    assert len(quads) == 8 and quads[0][1:] == (s2[1], s2[2], s2[0])  # entailment, contradiction, neutral
    assert [q[:3] for q in quads] == read_snli_triplets(folder)
    # the recipe's flag reads them and feeds a "neutral" view
    recipe = load_recipe("sup_simcse")
    config = recipe.METHOD.parse(["--corpus", str(folder), "--use-neutral-negatives"])
    assert recipe.load_examples(config) == quads
    csv = tmp_path / "nli.csv"
    csv.write_text("sent0,sent1,hard_neg\na,b,c\n")
    with pytest.raises(DataError, match="nli.csv: neutral hard negatives need an SNLI folder"):
        load_nli(str(csv), neutral=True)


@pytest.mark.parametrize("problem, needle", [("label", "labels.dev:4: unknown label 'maybe'"),
                                             ("length", "differ in length"), ("missing", "s2.dev: no such file")])
def test_snli_errors_name_the_file_and_line(tmp_path, problem, needle):
    folder = write_snli(tmp_path / "SNLI", n=3)
    write_snli(folder, n=3, split="test")
    if problem == "label":
        lines = (folder / "labels.dev").read_text().splitlines()
        lines[3] = "maybe"
        (folder / "labels.dev").write_text("\n".join(lines) + "\n")
    elif problem == "length":
        (folder / "s2.dev").write_text("one line\n")
    else:
        (folder / "s2.dev").unlink()
    with pytest.raises(DataError, match=needle.replace(".", "\\.").replace("(", "\\(")):
        read_snli_triplets(folder)


@pytest.mark.large
@pytest.mark.parametrize("neutral", [False, True], ids=["contradiction", "contradiction+neutral"])
def test_sup_simcse_recipe_trains_and_keeps_the_mlp_head(workspace, tmp_path, neutral):  # noqa: F811
    folder = write_snli(tmp_path / "SNLI", n=40)
    write_snli(folder, n=8, seed=2, split="test")
    recipe = load_recipe("sup_simcse")
    config = recipe.METHOD.parse([])
    assert (config.batch_size, config.learning_rate, config.epochs, config.mlp_only_train) == (512, 5e-5, 3, False)
    objective = recipe.METHOD.objective(recipe.METHOD.parse(["--alpha", "2"]))
    assert isinstance(objective, SupervisedSimCSEObjective) and objective.alpha == 2.0

    output_dir = tmp_path / "out"
    # through the cached large-batch step (3 x 8 rows in mini-batches of 5: the last one padded)
    results = recipe.main(_argv(workspace, output_dir, corpus=folder, **{"learning-rate": 1e-4,
                                                                          "mini-batch-size": 5})
                          + (["--use-neutral-negatives"] if neutral else []))
    saved = json.loads((output_dir / "results.json").read_text())
    assert saved["status"] == "ok" and saved["config"]["corpus"] == str(folder)
    assert saved["config"]["use_neutral_negatives"] is neutral
    assert saved["config"]["mini_batch_size"] == 5
    assert np.isfinite(saved["test"]["avg"]) and results["best_step"] in (2, 3)
    # The MLP head is part of the supervised model at test time, saved beside the backbone.
    settings = json.loads((output_dir / "model" / "tf_esimcse.json").read_text())
    assert settings["pooler_type"] == "cls"
    # the batches it trained on: the neutral hypothesis is a fourth view
    config = recipe.METHOD.parse(["--corpus", str(folder), "--batch-size", "4"]
                                 + (["--use-neutral-negatives"] if neutral else []))
    encoder = SentenceEncoder.from_pretrained(str(output_dir / "model"))
    batch = next(iter(recipe.build_dataset(recipe.load_examples(config), encoder.preprocessor, config)))
    assert sorted(batch) == sorted(["anchor", "positive", "negative"] + (["neutral"] if neutral else []))
    assert (output_dir / "model" / "pooler.weights.h5").is_file()
    encoder = SentenceEncoder.from_pretrained(str(output_dir / "model"))
    assert encoder.pooler_type == "cls" and np.isfinite(encoder.encode(["the cat sat"], verbose=0)).all()

    views = recipe.build_dataset(read_snli_triplets(folder), encoder.preprocessor,
                                 recipe.METHOD.parse(["--batch-size", "8"]))
    assert set(views.element_spec) == {"anchor", "positive", "negative"}
    pairs = recipe.build_dataset(read_snli_triplets(folder), encoder.preprocessor,
                                 recipe.METHOD.parse(["--batch-size", "8",
                                                                               "--no-use-hard-negatives"]))
    assert set(pairs.element_spec) == {"anchor", "positive"}
