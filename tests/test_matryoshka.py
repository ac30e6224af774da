"""`MatryoshkaObjective`: the inner objective's InfoNCE on each embedding prefix, against an
independent NumPy computation for SimCSE, supervised SimCSE, ESimCSE (the queue cut per prefix)
and DiffCSE (its RTD term once); through the training step: graph == XLA and one device == two
replicas (ESimCSE, with `training_test_case`'s helpers), the cached large-batch step equal to
the plain one; `--matryoshka-dims` on the recipes (parsing, one-line errors, a run of a few steps)."""
import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import numpy_info_nce
from test_case import run_serialization_test
from test_case import to_numpy
from test_cached_step import _assert_same_gradients
from test_cached_step import _loss_and_gradients
from test_cached_step import _model as cached_step_model
from test_diffcse import LAMBDA
from test_diffcse import _batches as diffcse_batches
from test_diffcse import _numpy_loss as diffcse_numpy_loss
from test_diffcse import generator_dir  # noqa: F401  (fixture)
from test_mask_duplicates import _batches as view_batches
from test_objectives import _batches as objective_batches
from test_recipes import _argv, _scalars, load_method, workspace  # noqa: F401  (fixture)
from tf_esimcse import methods
from tf_esimcse.objectives import DiffCSEObjective
from tf_esimcse.objectives import ESimCSEObjective
from tf_esimcse.objectives import MatryoshkaObjective
from tf_esimcse.objectives import Objective
from tf_esimcse.objectives import SimCSEObjective
from tf_esimcse.objectives import SupervisedSimCSEObjective
from tf_esimcse.objectives.matryoshka import check_dims
from training_test_case import _assert_same_run
from training_test_case import _fit
from training_test_case import _model as training_model

DIM = 32  # the tiny encoder's embedding size
DIMS, WEIGHTS = (32, 16, 8), (1.0, 0.5, 2.0)
N = 6


def numpy_matryoshka(z1, z2, dims=DIMS, weights=WEIGHTS, hard_negatives=None, queue=None, **kwargs):
    """sum_d w_d * InfoNCE of the first d columns (each prefix normalised by `numpy_info_nce`)."""
    return sum(w * numpy_info_nce(np.asarray(z1)[:, :d], np.asarray(z2)[:, :d],
                                  hard_negatives=None if hard_negatives is None else np.asarray(hard_negatives)[:, :d],
                                  queue=None if queue is None else np.asarray(queue)[:, :d], **kwargs)
               for d, w in zip(dims, weights))


def _one_view(n=N):
    return {"token_ids": np.arange(n * 5, dtype="int32").reshape(n, 5), "padding_mask": np.ones((n, 5), "int32")}


def _case(name, rng):
    """(inner objective, batch, embeddings, context, NumPy loss)."""
    z = [rng.normal(size=(N, DIM)).astype("float32") * 3.0 for _ in range(3)]
    if name == "simcse":
        return SimCSEObjective(temperature=0.1), _one_view(), z[:2], None, numpy_matryoshka(z[0], z[1], temperature=0.1)
    if name == "supervised":
        x = {"anchor": _one_view(), "positive": _one_view(), "negative": _one_view()}
        expected = numpy_matryoshka(z[0], z[1], hard_negatives=z[2], alpha=2.0)
        return SupervisedSimCSEObjective(alpha=2.0), x, z, None, expected
    if name == "esimcse":
        # unnormalised full-size keys, 7 of 10 slots filled: each prefix against the same prefix of the queue
        queue = rng.normal(size=(10, DIM)).astype("float32") * 5.0
        filled = np.arange(10) < 7
        context = {"keys": z[2], "negatives": tf.constant(queue), "filled": tf.constant(filled)}
        expected = numpy_matryoshka(z[0], z[1], queue=queue, queue_mask=filled)
        x = {"anchor": _one_view(), "positive": _one_view()}
        return ESimCSEObjective(queue_size=10), x, z[:2], context, expected
    if name == "diffcse":  # its contrastive term; the RTD term (0 without the step's edits) in the test below
        objective = DiffCSEObjective("unused-generator", batchnorm=False)
        return objective, {"anchor": _one_view()}, z[:2], None, numpy_matryoshka(z[0], z[1])
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["simcse", "supervised", "esimcse", "diffcse"])
def test_loss_against_numpy(name):
    inner, x, embeddings, context, expected = _case(name, np.random.default_rng(0))
    objective = MatryoshkaObjective(inner, dims=DIMS, dim_weights=WEIGHTS)
    terms = objective.loss_terms(None, tf.nest.map_structure(tf.constant, x), [tf.constant(e) for e in embeddings],
                                 context, training=True)
    assert set(terms) == set(inner.term_names)
    assert float(terms["contrastive"]) == pytest.approx(expected, rel=1e-5)
    # each prefix's term is logged under its own name, unweighted
    logged = {m.name: float(to_numpy(m.result())) for m in objective.metrics}
    for d, w in zip(DIMS, WEIGHTS):
        single = MatryoshkaObjective(_case(name, np.random.default_rng(0))[0], dims=(d,))
        alone = single.loss_terms(None, tf.nest.map_structure(tf.constant, x), [tf.constant(e) for e in embeddings],
                                  context, training=True)["contrastive"]
        assert logged[f"contrastive_{d}_loss"] == pytest.approx(float(alone), rel=1e-5)
    if name == "diffcse":
        assert float(terms["rtd"]) == 0.0


def test_the_full_prefix_alone_is_the_plain_objective():
    rng = np.random.default_rng(1)
    z1, z2 = (tf.constant(rng.normal(size=(N, DIM)).astype("float32")) for _ in range(2))
    plain = SimCSEObjective().loss_terms(None, _one_view(), [z1, z2], None, True)["contrastive"]
    wrapped = MatryoshkaObjective(SimCSEObjective(), dims=(DIM,)).loss_terms(None, _one_view(), [z1, z2], None, True)
    assert float(wrapped["contrastive"]) == float(plain)


@pytest.mark.parametrize("make_inner", [
    lambda: SimCSEObjective(mask_duplicates=True),
    lambda: SupervisedSimCSEObjective(alpha=2.0, hard_negative_weight=0.5),
    lambda: ESimCSEObjective(queue_size=12, momentum=0.9),
    lambda: DiffCSEObjective("some/generator", rtd_weight=0.3, batchnorm=False),
])
def test_config_round_trip(make_inner):
    objective = MatryoshkaObjective(make_inner(), dims=DIMS, dim_weights=WEIGHTS)
    revived = run_serialization_test(objective)
    assert type(revived.inner) is type(objective.inner)
    assert (revived.dims, revived.dim_weights) == (DIMS, WEIGHTS)
    assert revived.term_names == objective.inner.term_names
    assert revived.inner.contrastive_fn == revived.prefix_info_nce  # the revived wrapper drives its own inner


def test_bad_settings_are_one_line_errors():
    for dims, weights, needle in [((), None, "empty"), ((16, 32), None, "strictly descending"),
                                  ((16, 16), None, "strictly descending"), ((16, 0), None, "positive integers"),
                                  ((16, 8), (1.0,), "2 sizes"), ((16, 8), (1.0, -1.0), ">= 0"),
                                  ((16, 8), (0.0, 0.0), "at least one weight")]:
        with pytest.raises(ValueError, match=needle) as info:
            check_dims(dims, weights)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="SimCSE's InfoNCE"):
        MatryoshkaObjective(Objective(), dims=(8,))
    inner = SimCSEObjective()
    MatryoshkaObjective(inner, dims=(8,))
    with pytest.raises(ValueError, match="already wrapped"):
        MatryoshkaObjective(inner, dims=(4,))
    with pytest.raises(ValueError, match=r"the largest, 64, exceeds the encoder's embedding dimension 32"):
        MatryoshkaObjective(SimCSEObjective(), dims=(64, 8)).setup(types.SimpleNamespace(embedding_dim=32))


def test_recipe_flags(tmp_path):
    esimcse = methods.get("unsup_esimcse")
    config = esimcse.parse(["--matryoshka-dims", "384,128,32", "--matryoshka-weights", "1,1,0.5", "--pooler", "avg",
                            "--queue-size", "24"])
    objective = esimcse.objective(config)
    assert isinstance(objective, MatryoshkaObjective) and isinstance(objective.inner, ESimCSEObjective)
    assert (objective.dims, objective.dim_weights, objective.inner.queue_size) == ((384, 128, 32), (1.0, 1.0, 0.5), 24)
    assert not isinstance(esimcse.objective(esimcse.parse([])), MatryoshkaObjective)  # off by default
    sup = methods.get("sup_simcse")  # keeps its MLP head at test time: the defaults train the saved vectors
    assert isinstance(sup.objective(sup.parse(["--matryoshka-dims", "64,32"])).inner, SupervisedSimCSEObjective)
    generator = tmp_path / "mlm"
    generator.mkdir()
    (generator / "metadata.json").write_text("{}")
    diffcse = methods.get("diffcse")
    objective = diffcse.objective(diffcse.parse(["--generator", str(generator), "--no-batchnorm", "--pooler", "avg",
                                                 "--matryoshka-dims", "64,32"]))
    assert isinstance(objective.inner, DiffCSEObjective) and objective.term_names == ("contrastive", "rtd")

    for method, argv, needle in [
        (esimcse, ["--matryoshka-dims", "32,64", "--pooler", "avg"], "strictly descending"),
        (esimcse, ["--matryoshka-dims", "64,x", "--pooler", "avg"], "comma-separated integers"),
        (esimcse, ["--matryoshka-dims", "64,32", "--pooler", "avg", "--matryoshka-weights", "1"],
         "1 weights for the 2"),
        (esimcse, ["--matryoshka-weights", "1"], "needs --matryoshka-dims"),
        (esimcse, ["--matryoshka-dims", "64,32"], "training-only MLP head"),  # the default pooler: refused
        (methods.get("unsup_simcse"), ["--matryoshka-dims", "64,32"], "--no-mlp-only-train"),
        (diffcse, ["--generator", str(generator), "--matryoshka-dims", "64,32"], "BatchNorm projection"),
    ]:
        with pytest.raises(ValueError, match=needle) as info:
            method.parse(argv)
        assert "\n" not in str(info.value)


# --- through the training step (large) --------------------------------------------------------


@pytest.mark.large
def test_esimcse_training_step(model_dir, mirrored_strategy):
    """The logged loss of two steps against NumPy (the queue before each step: it fills in
    between), then graph == XLA == two replicas over three steps (gathered negatives and keys).
    `run_objective_test`'s checks less its eager `fit` and model config (the config round trip
    is above), to keep this module's time down."""

    def make():
        return MatryoshkaObjective(ESimCSEObjective(queue_size=12, momentum=0.9), dims=DIMS, dim_weights=WEIGHTS)

    batches = objective_batches("pairs")
    model = training_model(model_dir, make)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    for batch in batches[:2]:
        x = tf.nest.map_structure(tf.constant, batch)
        z = [np.asarray(to_numpy(model.encoder(v, training=True)), np.float64) for v in model.objective.views(x)]
        queue, filled = (to_numpy(t) for t in model.objective.inner.queue.negatives())
        expected = numpy_matryoshka(z[0], z[1], queue=queue, queue_mask=filled)
        model.reset_metrics()
        logs = {k: float(np.asarray(to_numpy(v)).reshape(-1)[0]) for k, v in model.train_step(x).items()}
        assert logs["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        total = sum(w * logs[f"contrastive_{d}_loss"] for d, w in zip(DIMS, WEIGHTS))
        assert logs["contrastive_loss"] == pytest.approx(total, rel=1e-5)
    assert logs["queue_fill"] == 1.0 and filled.sum() == 8  # the second step saw the first one's keys

    graph = _fit(training_model(model_dir, make), batches)
    xla = _fit(training_model(model_dir, make), batches, jit_compile=True)
    _assert_same_run(graph, xla, "XLA vs graph", atol=2e-5)
    mirrored = _fit(training_model(model_dir, make, strategy=mirrored_strategy), batches, strategy=mirrored_strategy)
    _assert_same_run(graph, mirrored, "two replicas vs one")
    assert all(np.isfinite(log["contrastive_8_loss"]) for log in graph[0])


@pytest.mark.large
def test_diffcse_training_step_adds_its_rtd_term_once(model_dir, generator_dir):  # noqa: F811
    model = training_model(model_dir, lambda: MatryoshkaObjective(
        DiffCSEObjective(generator_dir, rtd_weight=LAMBDA, batchnorm=False, generator_dropout=False),
        dims=DIMS, dim_weights=WEIGHTS))
    model.compile(optimizer="sgd")
    for batch in diffcse_batches(model_dir, n=2):
        x = tf.nest.map_structure(tf.constant, batch)
        z = [np.asarray(to_numpy(model.encoder(v, training=True)), np.float64) for v in model.objective.views(x)]
        step = {"x": batch, "encoder": model.encoder}
        # test_diffcse's NumPy loss is InfoNCE + LAMBDA x RTD: keep its RTD part, Matryoshka's contrastive part
        rtd = diffcse_numpy_loss(z, model.objective.inner, step) - numpy_info_nce(z[0], z[1], temperature=0.05)
        model.reset_metrics()
        logs = {k: float(np.asarray(to_numpy(v)).reshape(-1)[0]) for k, v in model.train_step(x).items()}
        assert logs["loss"] == pytest.approx(numpy_matryoshka(z[0], z[1]) + rtd, rel=1e-4, abs=1e-5)
        assert logs["rtd_loss"] * LAMBDA == pytest.approx(rtd, rel=1e-4, abs=1e-6)
        assert {f"contrastive_{d}_loss" for d in DIMS} <= set(logs) and "rtd_accuracy_kept" in logs


@pytest.mark.large
def test_cached_step_equals_the_plain_step(model_dir):
    """With dropout on, mini-batches of 5 rows (two width groups, padded), a queue holding
    earlier keys: the same loss and gradients as the plain step."""

    def make():
        return MatryoshkaObjective(ESimCSEObjective(queue_size=12, momentum=0.9), dims=DIMS, dim_weights=WEIGHTS)

    plain, cached = cached_step_model(model_dir, make), cached_step_model(model_dir, make, mini_batch_size=5)
    first, second = view_batches("pairs")
    for model in (plain, cached):  # a queue holding the first batch's keys, as after one step
        inner = model.objective.inner
        anchors = inner.views(tf.nest.map_structure(tf.constant, first))[0]
        inner.queue.enqueue(inner.momentum_keys(model.encoder, anchors))
    _assert_same_gradients(_loss_and_gradients(plain, second, hashed_plain=True),
                           _loss_and_gradients(cached, second, hashed_plain=False), plain.trainable_variables)


@pytest.mark.large
def test_recipe_runs_with_matryoshka_dims(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    argv = _argv(workspace, output_dir, **{"matryoshka-dims": "32,16,8", "pooler": "avg", "steps": 2})
    load_method("unsup_esimcse").main(argv + ["--no-final-eval"])
    saved = json.loads((output_dir / "run_config.json").read_text())
    assert saved["matryoshka_dims"] == "32,16,8"
    train = _scalars(output_dir / "logs" / "train")
    for d in DIMS:
        assert np.isfinite([v for _, v in train[f"batch_contrastive_{d}_loss"]]).all()
    assert (output_dir / "model").is_dir()


def test_score_by_size_figure_is_drawn_from_its_table_json(tmp_path):
    """The comparison's figure (benchmarks/matryoshka_comparison.py writes its table.json):
    `plot_results_tables` draws it from the JSON alone, as `make figures` does."""
    pytest.importorskip("matplotlib")
    from tf_esimcse.plots import plot_results_tables

    def row(model, means):
        return {"cells": {"model": model, **{f"d{d}": {"mean": m, "std": 0.5} for d, m in zip(DIMS, means)}}}

    table = {"table": "mrl", "rows": [{"cells": {"model": "start", "d32": 70.0, "d16": 60.0, "d8": 50.0}},
                                      row("plain", [75.0, 65.0, 55.0]), row("Matryoshka", [74.5, 70.0, 65.0])],
             "figures": [{"file": "docs/figures/mrl.png", "kind": "score_by_size", "title": "t", "sizes": list(DIMS),
                          "start_row": 0, "lines": [{"row": 1, "color": 0, "dashed": True}, {"row": 2, "color": 0}]}]}
    (tmp_path / "results" / "mrl").mkdir(parents=True)
    (tmp_path / "results" / "mrl" / "table.json").write_text(json.dumps(table))
    written = plot_results_tables(tmp_path / "results", tmp_path / "figures")
    assert [p.name for p in written] == ["mrl.png"] and written[0].stat().st_size > 1000
