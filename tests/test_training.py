"""The run loop: several seeds with one summary, the environment in results.json, TensorBoard
curves on short runs, and a diverged run that fails loudly instead of passing as a model."""
import json

import numpy as np
import pytest

from test_recipes import _argv, _scalars, load_recipe, workspace  # noqa: F401  (fixture)
from tf_esimcse.training import main_guard


@pytest.mark.large
def test_two_seeds_give_two_runs_and_one_summary(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    recipe = load_recipe("unsup_simcse")
    out = recipe.main(_argv(workspace, output_dir, **{"seeds": "3,4", "steps": 2}))
    assert [run["config"]["seed"] for run in out["runs"]] == [3, 4]
    for seed in (3, 4):
        saved = json.loads((output_dir / f"seed_{seed}" / "results.json").read_text())
        assert saved["status"] == "ok" and saved["config"]["seed"] == seed
        assert (output_dir / f"seed_{seed}" / "model").is_dir()
        env = saved["environment"]
        assert {"packages", "cpu", "tensorflow", "git", "command"} <= set(env)
        assert env["packages"]["tensorflow"] and env["command"]  # sys.argv of the process
    summary = json.loads((output_dir / "summary.json").read_text())
    assert summary["n_seeds"] == 2 and summary["seeds"] == [3, 4]
    avg = [m for m in summary["metrics"].values() if m["label"] == "Avg."][0] if isinstance(
        summary["metrics"], dict) else [m for m in summary["metrics"] if m["label"] == "Avg."][0]
    per_seed = [json.loads((output_dir / f"seed_{s}" / "results.json").read_text())["test"]["avg"] for s in (3, 4)]
    assert avg["mean"] == pytest.approx(np.mean(per_seed), abs=1e-6)
    assert avg["std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-6)
    assert "Avg." in (output_dir / "summary.md").read_text()
    # Every run carries ESimCSE's length split, and the summary averages it.
    split = json.loads((output_dir / "seed_3" / "results.json").read_text())["test"]["length_split"]
    assert split["n_short"] + split["n_long"] > 0 and split["unit"] == "wordpiece tokens"
    assert "length diff" in (output_dir / "summary.md").read_text()

    # A second call skips the finished seeds and rewrites the same summary.
    again = recipe.main(_argv(workspace, output_dir, **{"seeds": "3,4", "steps": 2}))
    assert [run["best_stsb_dev"] for run in again["runs"]] == [run["best_stsb_dev"] for run in out["runs"]]


@pytest.mark.large
@pytest.mark.parametrize("name", ["unsup_simcse", "unsup_esimcse"])
def test_a_short_run_logs_loss_and_learning_rate(workspace, tmp_path, name):  # noqa: F811
    output_dir = tmp_path / "out"
    load_recipe(name).main(_argv(workspace, output_dir, **{"steps": 4, "eval-steps": 4}))
    train = _scalars(output_dir / "logs" / "train")
    for tag in ("batch_loss", "batch_learning_rate", "batch_contrastive_loss"):
        assert tag in train and len(train[tag]) >= 2, (tag, sorted(train))
    assert all(value >= 0 for _, value in train["batch_learning_rate"])


@pytest.mark.large
def test_a_diverged_run_exits_non_zero_and_saves_no_model(workspace, tmp_path, capsys):  # noqa: F811
    output_dir = tmp_path / "out"
    argv = _argv(workspace, output_dir, **{"steps": 6, "eval-steps": 2, "learning-rate": 1e6,
                                            "max-grad-norm": 1e12, "backup-steps": 2})
    with pytest.raises(SystemExit) as info:
        main_guard(lambda: load_recipe("unsup_simcse").main(argv))
    assert info.value.code == 3
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: training diverged: ")
    saved = json.loads((output_dir / "results.json").read_text())
    assert saved["status"] == "diverged" and saved["reason"]
    assert "test" not in saved
    if (output_dir / "model").is_dir():  # only a model saved before the divergence, never after
        assert saved["best_stsb_dev"] is not None and np.isfinite(saved["best_stsb_dev"])
    for path in (output_dir / "backup").glob("*.h5"):
        import h5py

        with h5py.File(path) as f:
            def check(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                    assert np.isfinite(obj[()]).all(), name
            f.visititems(check)




def test_loss_collapse_warning(tmp_path, capsys):
    """A training loss collapsing towards 0 while STS-B dev falls is flagged on the console and in
    TensorBoard; a loss that falls while STS-B dev rises is normal training."""
    from tf_esimcse.training import LossCollapseWatch

    def window(watch, losses, step, dev, best):
        for loss in losses:
            watch.on_train_batch_end(0, {"loss": loss})
        return watch.check({"step": step, "stsb_dev": dev}, best)

    healthy = LossCollapseWatch()
    assert window(healthy, [4.0] * 5, 10, 70.0, 70.0) is None
    assert window(healthy, [0.5] * 5, 20, 80.0, 80.0) is None  # loss falls, dev rises
    assert window(healthy, [0.01] * 5, 30, 81.0, 81.0) is None

    watch = LossCollapseWatch(log_dir=str(tmp_path))
    window(watch, [4.0] * 5, 10, 80.0, 80.0)
    assert window(watch, [2.0] * 5, 20, 82.0, 82.0) is None
    assert window(watch, [0.5] * 5, 30, 81.5, 82.0) is None  # dev only 0.5 below the best
    message = window(watch, [0.01] * 5, 40, 75.0, 82.0)
    assert message and "step 40" in message and "75.00" in message and "best 82.00" in message
    assert "warning: step 40" in capsys.readouterr().out
    assert watch.warnings == [message]
    from test_recipes import _scalars

    assert _scalars(tmp_path)["warnings/loss_collapse"] == [(40, 1.0)]


def test_weight_decay_skips_biases_and_layer_norm(tmp_path):
    """With zero gradients AdamW's update is the decay alone: every kernel and embedding shrinks
    by lr x weight_decay, no bias and no LayerNorm gamma/beta moves (the HF Trainer's rule)."""
    import dataclasses

    import keras

    from test_case import tiny_encoder, write_tiny_model_dir
    from tf_esimcse.config import TrainConfig
    from tf_esimcse.training import make_optimizer

    encoder = tiny_encoder(write_tiny_model_dir(tmp_path / "tiny"), pooler_type="cls")
    config = dataclasses.replace(TrainConfig(), learning_rate=0.1, weight_decay=0.5, warmup_ratio=0.0)
    optimizer = make_optimizer(config, total_steps=10)
    variables = encoder.trainable_variables
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
    optimizer.apply([keras.ops.zeros_like(v) for v in variables], variables)
    decayed = kept = 0
    for v, old in zip(variables, before):
        new = np.array(keras.ops.convert_to_numpy(v))
        name = v.path.split("/")[-1]
        if name in ("bias", "gamma", "beta"):
            np.testing.assert_array_equal(new, old, err_msg=v.path)
            kept += 1
        else:
            np.testing.assert_allclose(new, old * (1 - 0.1 * 0.5), rtol=1e-6, err_msg=v.path)
            decayed += 1
    assert decayed > 5 and kept > 5


def test_clipping_gives_exactly_the_max_global_norm():
    import tensorflow as tf

    from tf_esimcse.distribution import clip_global_norm

    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=s).astype("float32")) for s in [(3, 4), (5,), (2, 2, 2)]]
    norm = np.sqrt(sum(float(np.sum(np.square(g.numpy()))) for g in grads))
    for max_norm in (0.5 * norm, 2.0 * norm):
        clipped = clip_global_norm(grads, max_norm)
        got = np.sqrt(sum(float(np.sum(np.square(c.numpy()))) for c in clipped))
        assert got == pytest.approx(min(norm, max_norm), rel=1e-6)
        for g, c in zip(grads, clipped):  # the direction is kept
            np.testing.assert_allclose(c.numpy(), g.numpy() * min(1.0, max_norm / norm), rtol=1e-5)
    # Embedding-style sparse gradients count by their dense value (a repeated index sums).
    sparse = tf.IndexedSlices(tf.constant([[3.0, 0.0], [3.0, 0.0]]), tf.constant([1, 1]), tf.constant([4, 2]))
    (clipped,) = clip_global_norm([sparse], 3.0)
    np.testing.assert_allclose(tf.convert_to_tensor(clipped).numpy(), [[0, 0], [3.0, 0], [0, 0], [0, 0]], rtol=1e-6)


@pytest.mark.large
def test_a_nonfinite_gradient_never_reaches_the_weights(tmp_path):
    """A finite loss with NaN gradients (sqrt at 0): the step applies zero gradients (at the first
    step, with no momentum yet and no weight decay, every weight stays as it was), logs the count,
    and the guard stops the run naming the gradient and the step."""
    import keras
    import tensorflow as tf

    from test_case import TINY_SENTENCES, tiny_encoder, write_tiny_model_dir
    from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
    from tf_esimcse.models.contrastive_model import ContrastiveModel
    from tf_esimcse.objectives import SimCSEObjective
    from tf_esimcse.training import NonFiniteGuard

    class NaNGradient(SimCSEObjective):
        def loss_terms(self, encoder, x, embeddings, context, training):
            terms = super().loss_terms(encoder, x, embeddings, context, training)
            # value 0, gradient inf * 0 = NaN
            return {"contrastive": terms["contrastive"] + tf.reduce_sum(tf.sqrt(0.0 * embeddings[0]))}

    encoder = tiny_encoder(write_tiny_model_dir(tmp_path / "tiny"), pooler_type="cls", mlp_only_train=True)
    model = ContrastiveModel(encoder, NaNGradient(), max_grad_norm=1.0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0))
    before = [w.copy() for w in model.encoder.get_weights()]
    batch = trim_to_longest(encoder.preprocessor(tf.constant(TINY_SENTENCES)))
    guard = NonFiniteGuard()
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=3, epochs=1, verbose=0,
                        callbacks=[guard])
    assert np.isfinite(history.history["loss"][0])
    assert guard.diverged == (1, "gradient")
    for a, b in zip(before, model.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
