"""`run_objective_test`: the shared check of every training objective (like keras-hub's
`run_task_test`).

Given a factory of the objective, fixed int32 batches and an independent NumPy loss, it checks:

1. the objective's config round-trips (`get_config` -> `from_config`, Keras serialisation), and
   so does a `ContrastiveModel` holding it;
2. the logged loss of one training step equals the NumPy loss computed on the same embeddings
   (the views encoded with the step's weights, dropout off) and the objective's state before the
   step (e.g. ESimCSE's queue), and each loss term reaches the logs under its own name;
3. `fit` gives the same losses and updated weights eagerly, as a graph and under XLA;
4. two replicas (MirroredStrategy over two logical CPUs, gathered negatives) give the same losses
   and weights as one device, to 1e-5.

Dropout is 0 in all of it, so that every mode computes the same function (the hash dropout used
under XLA draws other masks than Keras' Philox); dropout itself is tested elsewhere.

`run_replica_test` is check 4 alone (e.g. for another encoder family: tests/test_roberta.py).
Also `crash_at_step`, which makes a recipe's training crash part-way (the resume tests).
"""
import keras
import numpy as np
import tensorflow as tf

from test_case import run_serialization_test
from test_case import tiny_encoder
from test_case import to_numpy
from tf_esimcse.models.contrastive_model import ContrastiveModel


def _model(model_dir, make_objective, strategy=None, **model_kwargs):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True, dropout=0.0, fast_dropout=True)
        model = ContrastiveModel(encoder, make_objective(), max_grad_norm=1.0, **model_kwargs)
    return model


def _fit(model, batches, run_eagerly=False, jit_compile=False, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01), run_eagerly=run_eagerly,
                      jit_compile=jit_compile)
    ds = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(batch))
    logs = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None, _out=logs):
            _out.append({k: float(np.asarray(to_numpy(v)).reshape(-1)[0]) for k, v in (logs or {}).items()})

    model.fit(ds, epochs=1, steps_per_epoch=len(batches), verbose=0, shuffle=False, callbacks=[Record()])
    return logs, [np.array(to_numpy(v)) for v in model.weights]


def _assert_same_run(a, b, what, atol=1e-5):
    (logs_a, weights_a), (logs_b, weights_b) = a, b
    np.testing.assert_allclose([log["loss"] for log in logs_b], [log["loss"] for log in logs_a], rtol=1e-5,
                               atol=atol, err_msg=f"{what}: losses")
    assert len(weights_a) == len(weights_b)
    for i, (x, y) in enumerate(zip(weights_a, weights_b)):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=atol, err_msg=f"{what}: weight {i}")


MODES = ("eager", "xla", "replicas")


def run_objective_test(model_dir, make_objective, batches, numpy_loss, mirrored_strategy, model_kwargs=None,
                       modes=MODES):
    """Run the four checks of the module docstring.

    Args:
        model_dir: a tiny Hugging Face directory (`test_case.write_tiny_model_dir`).
        make_objective: `fn() -> Objective`, a fresh objective each call.
        batches: a list of at least two int32 batch dicts (the global batch; even batch size).
        numpy_loss: `fn(embeddings, objective) -> float`: the loss in NumPy (float64) from the
            views' embeddings (NumPy arrays, in the objective's `views` order) and the objective's
            state before the step (read e.g. `objective.queue.negatives()`). A third parameter,
            if it has one, gets `{"x": the batch, "encoder": the model's encoder}`.
        mirrored_strategy: the session's two-replica `MirroredStrategy` (conftest fixture).
        model_kwargs: extra `ContrastiveModel` arguments.
        modes: which of checks 3 and 4 run besides the graph-mode fit: "eager", "xla",
            "replicas" (all by default). A variant of an objective whose other variant runs them
            all (the same objective on one-view batches and on pairs) may run fewer: checks 3 and 4
            test the training step's machinery, which the variants share.

    Returns:
        The logs of the graph-mode `fit` (a list of dicts, one per step).
    """
    model_kwargs = model_kwargs or {}
    # (1) config round trips
    objective = make_objective()
    revived = run_serialization_test(objective)
    assert type(revived) is type(objective)
    model = _model(model_dir, make_objective, **model_kwargs)
    config = model.get_config()
    other = ContrastiveModel.from_config(config)
    assert type(other.objective) is type(model.objective)
    assert other.objective.get_config() == model.objective.get_config()
    assert (other.max_grad_norm, other.steps_per_data_epoch) == (model.max_grad_norm, model.steps_per_data_epoch)

    # (2) one eager step's logged loss against NumPy on the same embeddings and prior state
    model = _model(model_dir, make_objective, **model_kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    for batch in batches[:2]:
        x = tf.nest.map_structure(tf.constant, batch)
        views = model.objective.views(x)
        embeddings = [np.asarray(to_numpy(model.encoder(v, training=True)), np.float64) for v in views]
        if numpy_loss.__code__.co_argcount >= 3:  # wants the step's batch and encoder too
            expected = numpy_loss(embeddings, model.objective, {"x": batch, "encoder": model.encoder})
        else:
            expected = numpy_loss(embeddings, model.objective)
        model.reset_metrics()
        logs = model.train_step(x)
        assert float(to_numpy(logs["loss"])) == _approx(expected), (float(to_numpy(logs["loss"])), expected)
        for name in model.objective.term_names:
            assert f"{name}_loss" in logs

    # (3) eager == graph == XLA
    assert set(modes) <= set(MODES), modes
    graph = _fit(_model(model_dir, make_objective, **model_kwargs), batches)
    assert all(np.isfinite(log["loss"]) for log in graph[0])
    if "eager" in modes:
        eager = _fit(_model(model_dir, make_objective, **model_kwargs), batches, run_eagerly=True)
        _assert_same_run(graph, eager, "eager vs graph")
    if "xla" in modes:
        xla = _fit(_model(model_dir, make_objective, **model_kwargs), batches, jit_compile=True)
        _assert_same_run(graph, xla, "XLA vs graph", atol=2e-5)

    # (4) two replicas == one device
    if "replicas" in modes:
        run_replica_test(model_dir, make_objective, batches, mirrored_strategy, model_kwargs, one_device=graph)
    return graph[0]


def run_replica_test(model_dir, make_objective, batches, mirrored_strategy, model_kwargs=None, one_device=None):
    """Check 4: graph-mode `fit` on two replicas gives one device's losses and weights (1e-5).

    Args:
        model_dir: a tiny Hugging Face directory (BERT or RoBERTa), read by `tiny_encoder`.
        make_objective, batches, mirrored_strategy, model_kwargs: as `run_objective_test`'s
            (one batch is enough here).
        one_device: the `(logs, weights)` of the one-device run, if already made.

    Returns:
        The one-device run's logs (a list of dicts, one per step).
    """
    model_kwargs = model_kwargs or {}
    one_device = one_device or _fit(_model(model_dir, make_objective, **model_kwargs), batches)
    mirrored = _fit(_model(model_dir, make_objective, strategy=mirrored_strategy, **model_kwargs), batches,
                    strategy=mirrored_strategy)
    assert mirrored_strategy.num_replicas_in_sync == 2
    _assert_same_run(one_device, mirrored, "two replicas vs one")
    return one_device[0]


def _approx(expected):
    import pytest

    return pytest.approx(expected, rel=1e-4, abs=1e-5)


def crash_at_step(monkeypatch, step):
    """Make training raise `RuntimeError("simulated crash")` once the optimizer has taken `step`
    steps (in `tf_esimcse.training.StopAtStep.on_train_batch_end`, which every recipe uses);
    `monkeypatch.undo()` lets training run again."""
    import tf_esimcse.training as training

    original = training.StopAtStep.on_train_batch_end

    def crash(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= step:
            raise RuntimeError("simulated crash")
        return original(self, batch, logs)

    monkeypatch.setattr(training.StopAtStep, "on_train_batch_end", crash)
