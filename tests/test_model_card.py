"""The model card (`tf_esimcse.model_card`): README.md in every saved model, --seeds folder and export,
rendered from the results, never by hand. Each check parses the card back and compares its numbers
with results.json's (or with a NumPy mean and sample std over the seeds' results.json)."""
import hashlib
import json
import pathlib
import re

import numpy as np
import pytest

from test_plots import runs  # noqa: F401  (fixture: a 4-step run and a 2-seed run of unsup_simcse, trained once)
from test_recipes import workspace  # noqa: F401  (fixture)
from test_case import TINY_SENTENCES
from test_st_export import _run_sentence_transformers
from tf_esimcse import cli
from tf_esimcse.errors import TfEsimcseError
from tf_esimcse.model_card import examples_sha256, render_model_card, write_model_card
from tf_esimcse.models.sentence_encoder import SentenceEncoder
from tf_esimcse.run_summary import write_summary

REPO = pathlib.Path(__file__).resolve().parents[1]
SEED_RESULTS = REPO / "docs" / "results" / "already_trained"  # three real results.json (seeds 1, 2, 3)
COLUMNS = {"STS12": ("sts12", 2), "STS13": ("sts13", 2), "STS14": ("sts14", 2), "STS15": ("sts15", 2),
           "STS16": ("sts16", 2), "STS-B": ("stsb_test", 2), "SICK-R": ("sickr_test", 2), "Avg.": ("avg", 2),
           "STS-B dev": ("stsb_dev", 2), "align": ("alignment", 4), "uniform": ("uniformity", 4)}


def _tables(card):
    """Every Markdown table of `card`: [(header cells, [row cells, ...]), ...]."""
    tables, current = [], None
    for line in card.splitlines():
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]  # an escaped pipe stays in its cell
            if current is None:
                current = (cells, [])
                tables.append(current)
            elif not set("".join(cells)) <= set("-"):
                current[1].append(cells)
        else:
            current = None
    return tables


def _results_table(card):
    """{row label: {result key: cell text}} of the card's 7-task table."""
    (header, rows), = [t for t in _tables(card) if t[0][0] == "model"]
    assert [COLUMNS[c][0] for c in header[1:]] == [k for k, _ in COLUMNS.values()]
    return {row[0]: {COLUMNS[c][0]: cell for c, cell in zip(header[1:], row[1:])} for row in rows}


def _assert_row(cells, scores):
    """Each cell equals the score rounded to the card's decimals (parsed back as a float)."""
    for column, (key, decimals) in COLUMNS.items():
        assert float(cells[key]) == round(scores[key], decimals), (column, cells[key], scores[key])
        assert len(cells[key].split(".")[1]) == decimals


def _run_folder(root, results, name="unsup_simcse"):
    """A run folder as a recipe leaves it, from a real results.json, with a stand-in model/."""
    run = root / name
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"class_name": "BertBackbone", "config": {
        "num_layers": 2, "hidden_dim": 32, "num_heads": 2, "vocabulary_size": 100, "max_sequence_length": 64}}))
    (run / "model" / "tf_esimcse.json").write_text(json.dumps({"pooler_type": "avg", "sequence_length": 32}))
    (run / "results.json").write_text(json.dumps(results))
    return run


def _seed_results():
    return [json.loads((SEED_RESULTS / f"seed_{s}.json").read_text()) for s in (1, 2, 3)]


def test_run_card_numbers_equal_results_json(tmp_path):
    results = _seed_results()[0]
    results.update(method="unsup_simcse", total_steps=150,
                   corpus={"name": "stsb_train.txt", "examples": 10518, "sha256": "ab" * 32})
    run = _run_folder(tmp_path, results)
    card = write_model_card(run / "model").read_text()
    table = _results_table(card)
    _assert_row(table["start (step 0)"], results["start"]["test"])
    _assert_row(table[f"this model (step {results['best_step']})"], results["test"])
    # Every evaluation during training, at its decimals.
    (header, rows), = [t for t in _tables(card) if t[0] == ["step", "STS-B dev", "align", "uniform"]]
    assert [[int(r[0]), float(r[1]), float(r[2]), float(r[3])] for r in rows] == [
        [e["step"], round(e["stsb_dev"], 2), round(e["alignment"], 4), round(e["uniformity"], 4)]
        for e in results["evaluations"]]
    # Method, start, corpus, steps, seed, every computing setting, the environment.
    facts = {row[0]: row[1] for header, rows in _tables(card) if header == ["", ""] for row in rows}
    assert facts["method"] == "`unsup_simcse`" and facts["starting encoder"] == "`default` (all-MiniLM-L6-v2)"
    assert facts["corpus"] == f"`stsb_train.txt`: 10,518 examples, sha256 `{'ab' * 32}`"
    assert facts["steps"] == "150 of batch 64" and facts["seed"] == "1"
    env = results["environment"]
    assert facts["command"] == f"`{env['command']}`" and env["git"]["commit"] in facts["commit"]
    assert env["cpu"]["model"] in facts["CPU"]
    assert f"tensorflow {env['packages']['tensorflow']}" in facts["packages"]
    settings = {row[0]: row[1] for header, rows in _tables(card) if header == ["setting", "value"] for row in rows}
    assert settings["`--learning-rate`"] == "`3e-05`" and settings["`--pooler`"] == '`"avg"`'
    assert "`--output-dir`" not in settings  # where the run was written is not a setting of the model
    assert f"STS-B dev ({round(results['best_stsb_dev'], 2):.2f} during training)" in card
    assert "**Below the start**" in card  # this run's own warning
    split = results["test"]["length_split"]
    assert f"{split['short_diff']:.2f} ({split['n_short']} pairs)" in card
    # How to load it, in each place the card names.
    for needle in ("SentenceEncoder.from_pretrained", "keras_hub.models.BertBackbone.from_preset",
                   "--format sentence-transformers", "tensorflow_model_server", "--format onnx", "--format litert"):
        assert needle in card, needle


def test_a_card_from_older_results_says_what_was_not_recorded(tmp_path):
    results = _seed_results()[0]  # written before method, corpus and total_steps were recorded
    card = write_model_card(_run_folder(tmp_path, results) / "model").read_text()
    assert "| method | `unsup_simcse` |" in card  # from the recipe in the recorded command
    assert "(size and hash not recorded by the tf_esimcse that trained it)" in card
    assert "| steps | 150 of batch 64 |" in card


def test_a_run_selected_on_its_own_dev_file_says_so(tmp_path):
    results = _seed_results()[0]
    results["config"]["dev_file"] = "my_pairs.tsv"
    results["dev_file"] = {"path": "my_pairs.tsv", "spearman": 71.2345}
    results["environment"]["command"] = "python recipes/unsup_simcse.py --corpus 'a|b.txt'"
    card = write_model_card(_run_folder(tmp_path, results) / "model").read_text()
    assert f"Selected at step {results['best_step']} on `my_pairs.tsv`" in card
    assert "Own dev file `my_pairs.tsv`: Spearman 71.23." in card
    assert "| model selection | `my_pairs.tsv` every 50 steps, the best kept |" in card
    facts = {row[0]: row[1] for header, rows in _tables(card) if header == ["", ""] for row in rows}
    assert facts["command"] == "`python recipes/unsup_simcse.py --corpus 'a\\|b.txt'`"  # escaped: one cell
    assert [t for t in _tables(card) if t[0] == ["step", "`my_pairs.tsv`", "align", "uniform"]]


def test_seeds_card_is_the_mean_and_sample_std_of_the_seeds(tmp_path):
    results = _seed_results()
    root = tmp_path / "seeds"
    for r in results:
        (root / f"seed_{r['config']['seed']}").mkdir(parents=True)
        (root / f"seed_{r['config']['seed']}" / "results.json").write_text(json.dumps(r))
    write_summary(root, results)
    card = write_model_card(root).read_text()
    table = _results_table(card)
    _assert_row(table["start (step 0)"], results[0]["start"]["test"])
    for r in results:
        _assert_row(table[f"seed {r['config']['seed']} (step {r['best_step']})"], r["test"])
    (mean_row,) = [cells for label, cells in table.items() if label.startswith("mean ± std")]
    for key, decimals in COLUMNS.values():
        values = np.array([r["test"][key] for r in results])
        mean, std = (float(x) for x in mean_row[key].split(" ± "))
        assert mean == round(values.mean(), decimals) and std == round(values.std(ddof=1), decimals), key
    assert "| seeds | 1, 2, 3 |" in card
    for seed in (1, 2, 3):
        assert f"from_pretrained({str(root / f'seed_{seed}' / 'model')!r})  # seed {seed}" in card


def test_minimal_card_of_a_model_without_results(tmp_path):
    model = tmp_path / "mine"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 32,
                                                    "num_attention_heads": 2, "vocab_size": 100}))
    card = write_model_card(model).read_text()
    assert "**No training results are recorded with it**" in card
    assert not [t for t in _tables(card) if t[0][0] == "model"]  # no scores at all
    facts = {row[0]: row[1] for header, rows in _tables(card) if header == ["architecture", "value"] for row in rows}
    assert facts["layers"] == "`2`" and facts["hidden size"] == "`32`" and facts["vocabulary"] == "`100`"
    assert f"SentenceEncoder.from_pretrained({str(model)!r})" in card


def test_card_command_rewrites_the_card_and_errors_in_one_line(tmp_path, capsys):
    run = _run_folder(tmp_path, _seed_results()[1])
    card = run / "model" / "README.md"
    assert cli.main(["card", "--model", str(run)]) == 0  # a run folder: its model/
    first = card.read_text()
    card.write_text("edited by hand\n")
    assert cli.main(["card", "--model", str(run / "model")]) == 0
    assert card.read_text() == first
    assert f"wrote {card}" in capsys.readouterr().out
    assert not [p for p in card.parent.iterdir() if p.name.startswith(".README.md")]  # no temporary file left
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "missing"):
        assert cli.main(["card", "--model", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {target}") and "\n" not in err, err
    with pytest.raises(TfEsimcseError, match="without a finished seed"):
        (tmp_path / "seeds").mkdir()
        (tmp_path / "seeds" / "summary.json").write_text("{}")
        write_model_card(tmp_path / "seeds")


def test_a_run_still_training_gets_a_card_of_its_settings_only(tmp_path):
    results = _seed_results()[0]
    run = _run_folder(tmp_path, results)
    (run / "results.json").unlink()
    (run / "run_config.json").write_text(json.dumps(results["config"]))  # what a run writes when it starts
    card = write_model_card(run / "model").read_text()
    assert "has not finished (no `results.json` yet)" in card
    assert not [t for t in _tables(card) if t[0][0] == "model"]  # no scores yet
    assert "| `--learning-rate` | `3e-05` |" in card


def test_front_matter_is_yaml_for_the_hub_and_records_the_source(tmp_path):
    yaml = pytest.importorskip("yaml")
    results = dict(_seed_results()[0], method="unsup_simcse")
    card = write_model_card(_run_folder(tmp_path, results) / "model").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("\n---\n", 1)[0][4:])
    assert front["pipeline_tag"] == "sentence-similarity" and "unsup_simcse" in front["tags"]
    assert front["tf_esimcse_card"] == {"model": str(tmp_path / "unsup_simcse" / "model"), "export": None}


@pytest.mark.parametrize("fmt,files,named", [("onnx", ["encoder.onnx", "tokenizer.json"], "encoder.onnx"),
                                              ("litert", ["model.tflite", "model_int8.tflite", "vocab.txt"],
                                               "model.tflite")])
def test_an_export_card_names_the_files_the_export_wrote(tmp_path, fmt, files, named):
    results = dict(_seed_results()[0], method="unsup_simcse")
    run = _run_folder(tmp_path, results)
    out = tmp_path / "export"
    out.mkdir()
    for name in files:
        (out / name).write_bytes(b"")
    card = write_model_card(out, model=run / "model", export={"format": fmt, "command": "tf-esimcse export ..."})
    card = card.read_text()
    assert f"This folder is the `{fmt}` export" in card and ", ".join(f"`{f}`" for f in files) in card
    assert f"{str(out / named)!r}" in card
    _assert_row(_results_table(card)[f"this model (step {results['best_step']})"], results["test"])
    assert write_model_card(out).read_text() == card  # the front matter's record: the same card again


def test_examples_sha256_is_the_hash_of_the_lines():
    lines = ["a first sentence", "the café, naïve"]
    assert examples_sha256(lines) == hashlib.sha256("a first sentence\nthe café, naïve\n".encode()).hexdigest()
    assert examples_sha256([("p", "h", "n")]) == hashlib.sha256(b"p\th\tn\n").hexdigest()
    assert examples_sha256({"a": ["p", "q"], "b": ["x", "y"]}) == hashlib.sha256(b"p\tx\nq\ty\n").hexdigest()


# --- cards written by training, save_pretrained and the exports (trained once, in the fixture) ----

@pytest.mark.large
def test_training_writes_the_card_of_its_model_from_results_json(runs, workspace):  # noqa: F811
    run = runs / "single"
    results = json.loads((run / "results.json").read_text())
    card = (run / "model" / "README.md").read_text()
    assert card == render_model_card(run / "model")  # the one `tf-esimcse card` would write
    table = _results_table(card)
    _assert_row(table["start (step 0)"], results["start"]["test"])
    _assert_row(table[f"this model (step {results['best_step']})"], results["test"])
    corpus = pathlib.Path(workspace["corpus"])
    lines = corpus.read_text().splitlines()
    assert results["method"] == "unsup_simcse" and results["total_steps"] == 4
    assert results["corpus"] == {"name": str(corpus), "examples": len(lines),
                                 "sha256": hashlib.sha256("".join(s + "\n" for s in lines).encode()).hexdigest(),
                                 "file_sha256": hashlib.sha256(corpus.read_bytes()).hexdigest()}
    assert f"{len(lines):,} examples, sha256 `{results['corpus']['sha256']}`" in card


@pytest.mark.large
def test_seeds_folder_and_each_seed_have_their_card(runs):  # noqa: F811
    root = runs / "seeds"
    summary = json.loads((root / "summary.json").read_text())
    table = _results_table((root / "README.md").read_text())
    (mean_row,) = [cells for label, cells in table.items() if label.startswith("mean ± std")]
    for key, decimals in COLUMNS.values():
        m = summary["metrics"][key]
        assert mean_row[key] == f"{m['mean']:.{decimals}f} ± {m['std']:.{decimals}f}", key
    for seed in (1, 2):
        results = json.loads((root / f"seed_{seed}" / "results.json").read_text())
        seed_table = _results_table((root / f"seed_{seed}" / "model" / "README.md").read_text())
        _assert_row(seed_table[f"this model (step {results['best_step']})"], results["test"])
        _assert_row(table[f"seed {seed} (step {results['best_step']})"], results["test"])


@pytest.mark.large
def test_save_pretrained_writes_a_minimal_card(runs, tmp_path):  # noqa: F811
    encoder = SentenceEncoder.from_pretrained(str(runs / "single" / "model"))
    path = encoder.save_pretrained(tmp_path / "elsewhere")
    card = (path / "README.md").read_text()
    assert "**No training results are recorded with it**" in card
    assert "| pooler type | `\"cls_before_pooler\"` |" in card or "| pooler type |" in card
    assert SentenceEncoder.from_pretrained(str(path)).pooler_type == encoder.pooler_type  # still loads


@pytest.mark.large
@pytest.mark.parametrize("fmt", ["sentence-transformers", "saved_model"])
def test_every_export_carries_the_card_of_its_model(runs, tmp_path, capsys, fmt):  # noqa: F811
    run = runs / "single"
    results = json.loads((run / "results.json").read_text())
    out = tmp_path / "export"
    argv = ["export", "--model", str(run), "--output", str(out), "--format", fmt]
    assert cli.main(argv + (["--tokens-only"] if fmt == "saved_model" else [])) == 0
    where = out / "1" if fmt == "saved_model" else out
    card = (where / "README.md").read_text()
    assert f"This folder is the `{fmt}` export of the model described below" in card
    table = _results_table(card)
    _assert_row(table[f"this model (step {results['best_step']})"], results["test"])
    assert f"wrote the model card {where / 'README.md'}" in capsys.readouterr().out
    # `tf-esimcse card` on the export writes the same card again, from the source its front matter records.
    front = card.split("\n---\n", 1)[0] + "\n---\n"  # the front matter records the export's source
    (where / "README.md").write_text(front + "stale\n")
    assert cli.main(["card", "--model", str(where)]) == 0
    assert (where / "README.md").read_text() == card
    if fmt == "sentence-transformers":  # sentence-transformers reads README.md as its card: it still loads
        info, arrays = _run_sentence_transformers(tmp_path, out, sentences=TINY_SENTENCES)
        ours = SentenceEncoder.from_pretrained(str(run / "model")).encode(TINY_SENTENCES, verbose=0)
        cosine = (arrays["embeddings"] * ours).sum(1) / np.linalg.norm(arrays["embeddings"], axis=1)
        assert cosine.min() >= 0.9999, cosine
