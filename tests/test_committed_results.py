"""README's numbers rebuilt from the JSON committed beside them, so that text and data cannot drift."""
import json
import pathlib
import statistics

REPO = pathlib.Path(__file__).resolve().parents[1]


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
