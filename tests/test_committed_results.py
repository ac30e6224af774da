"""Every measured table of README.md and docs/*.md rebuilt from the JSON committed beside it, so
that text and data cannot drift.

`docs/results/<name>/table.json` holds one table: its columns, its rows (numbers, mean ± std,
or a cell's "format" with named fields), the files that show it ("shown_in") and where it comes
from ("source": the measuring machine, package versions, the commits that added it, the
commands; "origin": "transcribed" when the run files were not kept and the JSON holds the
published numbers). `docs/results/already_trained/` holds its per-seed results.json files
themselves (test_training_an_already_trained_encoder). A table that reports no measurement
(flags, commands, files, pages) is listed in NOT_MEASUREMENTS by its header.
"""
import json
import pathlib
import re
import statistics

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Headers of the tables that report no measurement: command maps, flag lists, file layouts.
NOT_MEASUREMENTS = {
    "| command | what it does | more |", "| page | what is in it |", "| recipe | what | whose defaults |",
    "| flag | what |", "| file | what |", "| folder | what | where it comes from |",
    "| signature | inputs | outputs |", "| table | rows |", "| where | written by | rendered from |",
    "| file | inputs | output |",
    "| recipe | BERT-base | BERT-large | RoBERTa-base | RoBERTa-large | source |",  # settings (test_paper_settings)
    "| machine | CPU | memory | dates | what was measured there |",  # the machines, not figures
    "| family | loads from | objectives | speed paths, cached step | exports |",  # what each family supports
}
ALREADY_TRAINED_HEADER = "| step | 0 (the start) | 50 | 100 | 150 |"  # rebuilt from per-seed files below


def load_tables(folder=RESULTS):
    """{name: table dict} of every docs/results/<name>/table.json."""
    return {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*/table.json"))}


def render_cell(cell, column):
    """A cell's text: a string as written, None as empty, a number at its column's decimals,
    {"mean", "std"} as 'mean ± std', {"value"} with its own decimals, {"format", ...} through
    str.format with its own fields."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, (int, float)):
        return f"{cell:.{column['decimals']}f}"
    if "format" in cell:
        return cell["format"].format(**cell)
    if "mean" in cell:
        d = cell.get("decimals", column.get("decimals_with_std", column.get("decimals")))
        return f"{cell['mean']:.{d}f} ± {cell['std']:.{d}f}"
    return f"{cell['value']:.{cell.get('decimals', column.get('decimals'))}f}"


def row_cells(row, tables):
    """A row's cells: those of the row it is "same_as" (another table's, by index), its own on top."""
    cells = {}
    if "same_as" in row:
        ref = row["same_as"]
        cells.update(row_cells(tables[ref["table"]]["rows"][ref["row"]], tables))
    cells.update(row.get("cells", {}))
    return cells


def render_table(table, tables):
    """The markdown of one table.json."""
    def line(texts):
        return "|" + "".join(f" {text} |" if text else " |" for text in texts)
    columns = table["columns"]
    lines = [line(c["header"] for c in columns), "|" + "---|" * len(columns)]
    for row in table["rows"]:
        cells = row_cells(row, tables)
        lines.append(line(render_cell(cells.get(c["key"]), c) for c in columns))
    return "\n".join(lines)


def markdown_tables(text):
    """[(first line number, markdown of the table)] of every table in a page (outside code blocks)."""
    tables, current, start, fenced = [], [], None, False
    for number, line in enumerate(text.splitlines() + [""], 1):
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("|") and not fenced:
            start = start or number
            current.append(line)
        elif current:
            tables.append((start, "\n".join(current)))
            current, start = [], None
    return tables


TABLES = load_tables()


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_table_is_its_json(name):
    table = TABLES[name]
    text = render_table(table, TABLES)
    assert table["shown_in"]
    for page in table["shown_in"]:
        assert text in (REPO / page).read_text(encoding="utf-8"), f"{page}: the table of {name}/table.json differs"


def test_every_measured_table_has_its_json():
    rendered = {render_table(t, TABLES) for t in TABLES.values()}
    missing = []
    for page in PAGES:
        for line, table in markdown_tables(page.read_text(encoding="utf-8")):
            header = table.splitlines()[0]
            if table not in rendered and header not in NOT_MEASUREMENTS and header != ALREADY_TRAINED_HEADER:
                missing.append(f"{page.relative_to(REPO)}:{line}: {header}")
    assert not missing, "tables without a docs/results/<name>/table.json (or not equal to it):\n" + "\n".join(missing)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_table_says_where_it_comes_from(name):
    source = TABLES[name]["source"]
    assert source["measured"] and source["commands"] and source["environment"]
    environments = source["environment"].values() if "cpu" not in source["environment"] else [source["environment"]]
    for environment in environments:
        assert environment["cpu"] and environment["packages"]["tensorflow"] and environment["packages"]["keras"]
    for commit in source["commits"]:
        assert re.fullmatch(r"[0-9a-f]{40}", commit["commit"]) and commit["date"] and commit["what"]
    if source["origin"] == "transcribed":  # the published numbers: no per-seed value may appear from nowhere
        assert "not kept" in source["raw_files"]
        for row in TABLES[name]["rows"]:
            for cell in row.get("cells", {}).values():
                assert not (isinstance(cell, dict) and ("values" in cell or "per_seed" in cell)), (name, cell)
    for row in TABLES[name]["rows"]:
        if "same_as" in row:
            assert row["same_as"]["table"] in TABLES


def test_the_figures_are_drawn_from_the_json(tmp_path):
    pytest.importorskip("matplotlib")
    from tf_esimcse.plots import plot_results_tables

    written = plot_results_tables(RESULTS, tmp_path)
    committed = [figure["file"] for t in TABLES.values() for figure in t.get("figures", [])]
    assert sorted(p.name for p in written) == sorted(pathlib.Path(f).name for f in committed)
    for f in committed:
        assert (REPO / f).is_file(), f"{f}: drawn by `make figures` from docs/results, but not committed"


def _mean_std(values):
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_training_an_already_trained_encoder():
    folder = REPO / "docs" / "results" / "already_trained"
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("seed_*.json"))]
    assert [r["config"]["seed"] for r in runs] == [1, 2, 3] and all(r["status"] == "ok" for r in runs)
    assert {(r["config"]["pooler"], r["config"]["learning_rate"], r["config"]["steps"]) for r in runs} == {("avg", 3e-5, 150)}
    readme = (REPO / "README.md").read_text()
    dev = {step: [next(e["stsb_dev"] for e in r["evaluations"] if e["step"] == step) for r in runs]
           for step in (0, 50, 100, 150)}
    assert len({round(v, 6) for v in dev[0]}) == 1  # one start for every seed
    row = f"| STS-B dev | {dev[0][0]:.2f} | " + " | ".join(_mean_std(dev[s]) for s in (50, 100, 150)) + " |"
    assert row in readme
    # each run said it ended below its start, and saved its best trained step
    assert all(r["below_start"] and "below the start's" in r["below_start"] for r in runs)
    assert {r["best_step"] for r in runs} == {50}
    start = runs[0]["start"]["test"]
    assert f"7-task Avg. is {_mean_std([r['test']['avg'] for r in runs])} against the start's {start['avg']:.2f}" \
        in " ".join(readme.split())
    assert (f"SICK-R down from {start['sickr_test']:.2f} to {_mean_std([r['test']['sickr_test'] for r in runs])}"
            in " ".join(readme.split()))
    assert runs[0]["environment"]["cpu"]["model"] in readme


def test_the_untrained_minilm_rows_equal_their_raw_evaluations():
    """The two untrained all-MiniLM-L6-v2 rows (the start, `cls_before_pooler`, and its own `avg`
    pooling) were evaluated again and their `tf-esimcse evaluate --output` files committed in
    docs/results/minilm_start/: the published rows are those files at the printed decimals."""
    folder = RESULTS / "minilm_start"
    for row, pooler in ((0, "cls_before_pooler"), (3, "avg")):
        raw = json.loads((folder / f"evaluate_{pooler}.json").read_text(encoding="utf-8"))
        assert raw["model"] == "default" and raw["pooler"] == pooler
        for name, raw_values in (("main_minilm", raw), ("length_split_minilm", raw["length_split"])):
            cells = row_cells(TABLES[name]["rows"][row], TABLES)
            for column in TABLES[name]["columns"][1:]:
                expected = f"{raw_values[column['key']]:.{column['decimals']}f}"
                assert render_cell(cells[column["key"]], column) == expected, (name, pooler, column["key"])
    source = json.loads((folder / "source.json").read_text(encoding="utf-8"))
    assert source["environment"]["cpu"]["model"] and source["commands"]


def test_the_matryoshka_rows_equal_their_raw_evaluations():
    """benchmarks/matryoshka_comparison.py keeps every evaluation (model, seed, size) in
    docs/results/matryoshka_minilm/runs.json: both tables (7-task average, STS-B dev) are those
    values, the start's at the printed decimals and each trained row's mean ± sample std over its
    seeds; docs/results.md's answer at 64 dimensions is the same numbers."""
    runs = json.loads((RESULTS / "matryoshka_minilm" / "runs.json").read_text(encoding="utf-8"))
    arms = [(method, arm) for method in ("unsup_simcse", "unsup_esimcse") for arm in ("plain", "matryoshka")]
    for name, metric in (("matryoshka_minilm", "avg"), ("matryoshka_minilm_dev", "stsb_dev")):
        table = TABLES[name]
        sizes = [column["key"] for column in table["columns"][1:]]
        assert sizes == ["d384", "d256", "d128", "d64", "d32"]
        start = table["rows"][0]["cells"]
        assert start["model"].startswith("start")
        for column in table["columns"][1:]:
            assert render_cell(start[column["key"]], column) == f"{runs['start'][column['key'][1:]][metric]:.2f}"
        assert len(table["rows"]) == 1 + len(arms)
        for row, (method, arm) in zip(table["rows"][1:], arms):
            assert row["seeds"] == [1, 2, 3] and ("Matryoshka" in row["cells"]["model"]) == (arm == "matryoshka")
            per_seed = runs[f"{method}_{arm}"]
            for column in table["columns"][1:]:
                values = [per_seed[str(seed)][column["key"][1:]][metric] for seed in row["seeds"]]
                cell = row["cells"][column["key"]]
                assert render_cell(cell, column) == _mean_std(values), (name, method, arm, column["key"])
                assert cell["values"] == [round(v, 2) for v in values]
    at_64 = {f"{method}_{arm}": statistics.mean(runs[f"{method}_{arm}"][str(seed)]["64"]["avg"] for seed in (1, 2, 3))
             for method, arm in arms}
    page = " ".join((REPO / "docs" / "results.md").read_text(encoding="utf-8").split())
    for method in ("unsup_simcse", "unsup_esimcse"):
        plain, matryoshka = at_64[f"{method}_plain"], at_64[f"{method}_matryoshka"]
        assert f"{matryoshka:.2f} against {plain:.2f}" in page, method
