"""The cached large-batch step (`ContrastiveModel(mini_batch_size=...)`): with dropout ON, one
cached step in mini-batches gives the loss and gradients of the plain step on the same batch and
seeds (the plain step with hash dropout: inside `dropout_rows(0)` or under XLA), for every
objective, on one device and on two replicas; ESimCSE's queue and the seed generators end in the
same state; clear errors for encoders whose rows cannot be replayed."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import to_numpy
from test_case import tiny_encoder
from test_diffcse import _batches as diffcse_batches
from test_diffcse import generator_dir  # noqa: F401  (fixture)
from test_mask_duplicates import _batches as view_batches
from tf_esimcse.layers.hash_dropout import dropout_rows
from tf_esimcse.layers.hash_dropout import hash_dropout
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives import ESimCSEObjective
from tf_esimcse.objectives import SimCSEObjective
from tf_esimcse.objectives import SupervisedSimCSEObjective
from tf_esimcse.objectives.diffcse import DiffCSEObjective

DROPOUT = 0.1
TOL = 1e-5


def _model(model_dir, make_objective, mini_batch_size=None, strategy=None, sgd=False, **encoder_kwargs):
    """`sgd=True`: plain SGD without clipping, so that the weights after a step show the gradients'
    sizes (AdamW's first step and clipping would hide a wrong scale)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        kwargs = dict(pooler_type="cls", mlp_only_train=True, dropout=DROPOUT, fast_dropout=True)
        kwargs.update(encoder_kwargs)
        encoder = tiny_encoder(model_dir, **kwargs)
        model = ContrastiveModel(encoder, make_objective(), max_grad_norm=None if sgd else 1.0,
                                 mini_batch_size=mini_batch_size)
        model.compile(optimizer=keras.optimizers.SGD(0.5) if sgd else keras.optimizers.AdamW(1e-3, weight_decay=0.01))
        model.optimizer.build(model.trainable_variables)
    return model


def _numpy(values):
    return [None if v is None else np.asarray(to_numpy(tf.convert_to_tensor(v))) for v in values]


def _loss_and_gradients(model, x, hashed_plain):
    """One step's (loss, gradients) in a tf.function; the objective's pre-tape hook runs first
    (e.g. ESimCSE's EMA step and keys), as in `train_step`."""

    @tf.function
    def step(x):
        context = model.objective.before_step(model.encoder, x, tf.constant(False))
        if hashed_plain:
            with dropout_rows(0):
                loss, _, grads = model.loss_and_gradients(x, context)
        else:
            loss, _, grads = model.loss_and_gradients(x, context)
        return loss, grads

    loss, grads = step(tf.nest.map_structure(tf.constant, x))
    return float(to_numpy(loss)), _numpy(grads)


def _assert_same_gradients(plain, cached, variables):
    (loss_p, grads_p), (loss_c, grads_c) = plain, cached
    assert loss_c == pytest.approx(loss_p, rel=TOL, abs=TOL)
    assert len(grads_p) == len(grads_c)
    connected = 0
    for v, gp, gc in zip(variables, grads_p, grads_c):
        assert (gp is None) == (gc is None), v.path
        if gp is not None:
            connected += 1
            # 1e-5 of the gradient's own scale: the cached step sums mini-batch gradients in
            # another order than one full-batch matmul does
            scale = max(1.0, float(np.abs(gp).max()))
            np.testing.assert_allclose(gc, gp, rtol=TOL, atol=TOL * scale, err_msg=v.path)
    assert connected > 10


def _states(model):
    return [np.asarray(to_numpy(v)) for v in model.random_states()]


OBJECTIVES = {
    "simcse": (lambda: SimCSEObjective(temperature=0.05), "plain"),
    "simcse_pairs_mask_duplicates": (lambda: SimCSEObjective(mask_duplicates=True), "pairs"),
    "supervised_alpha": (lambda: SupervisedSimCSEObjective(alpha=2.0, hard_negative_weight=0.5), "triplets"),
    # the positives go through a second backbone inside the loss: its gradients come from the loss tape
    "simcse_two_encoders": (lambda: SimCSEObjective(two_encoders=True), "plain"),
    # positives 3 tokens wider than anchors: two width groups, each from its own seed state
    "esimcse": (lambda: ESimCSEObjective(queue_size=12, momentum=0.9), "pairs"),
}


@pytest.mark.parametrize("name,mini_batch_size", [
    ("simcse", 5),  # 32 rows: 7 mini-batches, the last padded with dummy rows
    ("simcse_pairs_mask_duplicates", 8),
    ("supervised_alpha", 8),
    ("simcse_two_encoders", 8),
    ("esimcse", 5),
])
@pytest.mark.large
def test_cached_step_equals_the_plain_step_with_dropout(model_dir, name, mini_batch_size):
    make_objective, kind = OBJECTIVES[name]
    batches = view_batches(kind)
    plain = _model(model_dir, make_objective)
    cached = _model(model_dir, make_objective, mini_batch_size=mini_batch_size)
    for a, b in zip(plain.weights, cached.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    for x in batches:  # two steps: the second starts from advanced seed states (and a filled queue)
        p = _loss_and_gradients(plain, x, hashed_plain=True)
        c = _loss_and_gradients(cached, x, hashed_plain=False)
        _assert_same_gradients(p, c, plain.trainable_variables)
        for a, b in zip(_states(plain), _states(cached)):  # the seed generators end where the plain step's do
            np.testing.assert_array_equal(a, b)
        if name == "esimcse":
            plain.objective.queue.enqueue(plain.objective.momentum_keys(plain.encoder, plain.objective.views(
                tf.nest.map_structure(tf.constant, x))[0]))
            cached.objective.queue.enqueue(cached.objective.momentum_keys(cached.encoder, cached.objective.views(
                tf.nest.map_structure(tf.constant, x))[0]))


@pytest.mark.large
def test_dropout_is_on_and_matters(model_dir):
    """Guard for the test above: with dropout, two plain steps on the same weights but other seed
    states differ, so equal gradients mean the masks were replayed, not that there were none."""
    make_objective, kind = OBJECTIVES["simcse"]
    x = view_batches(kind)[0]
    model = _model(model_dir, make_objective)
    first = _loss_and_gradients(model, x, hashed_plain=True)
    second = _loss_and_gradients(model, x, hashed_plain=True)  # seed states advanced by the first
    assert abs(first[0] - second[0]) > 1e-3


def _fit(model, batches, jit_compile, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=jit_compile)  # weights move by the gradients
    ds = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda *t: np.stack(t), *batches))
    history = model.fit(ds, epochs=1, steps_per_epoch=len(batches), verbose=0, shuffle=False)
    return history.history["loss"][-1], [np.asarray(to_numpy(v)) for v in model.weights]


def _assert_same_fit(a, b):
    assert b[0] == pytest.approx(a[0], rel=TOL, abs=TOL)
    for x, y in zip(a[1], b[1]):
        np.testing.assert_allclose(y, x, rtol=TOL, atol=2 * TOL)


@pytest.mark.large
def test_cached_fit_under_xla_equals_the_plain_fit_under_xla(model_dir):
    """Under XLA the plain step hashes its masks too: `fit` gives the same losses, weights,
    queue and seed states with and without `mini_batch_size`."""
    make_objective, kind = OBJECTIVES["esimcse"]
    batches = view_batches(kind)
    plain = _model(model_dir, make_objective, sgd=True)
    cached = _model(model_dir, make_objective, mini_batch_size=4, sgd=True)
    _assert_same_fit(_fit(plain, batches, jit_compile=True), _fit(cached, batches, jit_compile=True))
    np.testing.assert_allclose(to_numpy(cached.objective.queue.negatives()[0]),
                               to_numpy(plain.objective.queue.negatives()[0]), rtol=TOL, atol=TOL)


def _distributed_step(model, batch, strategy, hashed_plain):
    ds = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(tf.nest.map_structure(tf.constant, batch)).unbatch().batch(
            len(batch["anchor"]["token_ids"] if "anchor" in batch else batch["token_ids"])))

    @tf.function
    def step(x):
        def replica_fn(x):
            if hashed_plain:
                with dropout_rows(0):
                    return model.train_step(x)["loss"]
            return model.train_step(x)["loss"]
        return strategy.run(replica_fn, args=(x,))

    with strategy.scope():
        loss = step(next(iter(ds)))
    loss = strategy.experimental_local_results(loss)[0]
    return float(np.asarray(to_numpy(loss)).reshape(-1)[0]), [np.asarray(to_numpy(v)) for v in model.weights]


@pytest.mark.large
@pytest.mark.parametrize("name", ["supervised_alpha", "esimcse"])
def test_cached_step_on_two_replicas_equals_the_plain_step(model_dir, mirrored_strategy, name):
    """Under MirroredStrategy (gathered negatives, each replica its half of the batch): after one
    full train step (clip, AdamW), the cached model's weights equal the plain model's."""
    make_objective, kind = OBJECTIVES[name]
    batch = view_batches(kind)[0]
    plain = _model(model_dir, make_objective, strategy=mirrored_strategy, sgd=True)
    cached = _model(model_dir, make_objective, mini_batch_size=2, strategy=mirrored_strategy, sgd=True)
    before = [np.asarray(to_numpy(v)) for v in plain.weights]
    a = _distributed_step(plain, batch, mirrored_strategy, hashed_plain=True)
    b = _distributed_step(cached, batch, mirrored_strategy, hashed_plain=False)
    _assert_same_fit(a, b)
    # SGD without clipping: the step moved the weights by lr x the summed replica gradients
    moved = max(float(np.abs(w - w0).max()) for w, w0 in zip(a[1], before))
    assert moved > 1e-3


@pytest.mark.large
def test_diffcse_cached_step_equals_the_plain_step(model_dir, generator_dir):
    """DiffCSE's RTD term is per example: the discriminator and BatchNorm projection run on the
    cached embeddings of the whole batch, so the cached step matches here too. The generator keeps
    its dropout on (the default, as in the official training): it runs once per step before the
    tape, in both models from the same seed state, so both steps see the same edits."""
    batches = diffcse_batches(model_dir, n=2)

    def make():
        return DiffCSEObjective(generator_dir, rtd_weight=0.3, batchnorm=True)

    plain = _model(model_dir, make)
    cached = _model(model_dir, make, mini_batch_size=4)
    for x in batches:
        _assert_same_gradients(_loss_and_gradients(plain, x, True), _loss_and_gradients(cached, x, False),
                               plain.trainable_variables)
    # the generator's dropout is on and matters: two fills of one batch differ
    x = tf.nest.map_structure(tf.constant, batches[0])
    assert plain.objective.generator_dropout
    assert not np.array_equal(to_numpy(plain.objective.generate(x)[0]), to_numpy(plain.objective.generate(x)[0]))


def test_row_offset_masks_equal_the_full_batch_masks():
    """The mechanism: rows [r, r + k) of a full-batch hash mask equal the mask drawn for a
    k-row input at row offset r, for any trailing shape."""
    x = tf.ones([10, 3, 7])
    seed = tf.constant([5, 9])
    full = hash_dropout(x, 0.3, seed)
    for start, size in [(0, 4), (4, 4), (8, 2), (3, 5)]:
        part = hash_dropout(x[start:start + size], 0.3, seed, row_offset=start)
        np.testing.assert_array_equal(part.numpy(), full[start:start + size].numpy())


def test_encoders_whose_rows_cannot_be_replayed_are_refused(model_dir):
    with pytest.raises(ValueError, match="HashDropout.*fast_dropout=True"):
        _model(model_dir, lambda: SimCSEObjective(), mini_batch_size=4, fast_dropout=False)
    with pytest.raises(ValueError, match="mini_batch_size must be a positive integer"):
        _model(model_dir, lambda: SimCSEObjective(), mini_batch_size=0)
    # dropout 0 everywhere: nothing to replay, any encoder works
    _model(model_dir, lambda: SimCSEObjective(), mini_batch_size=4, fast_dropout=False, dropout=0.0)


def test_config_round_trip(model_dir):
    model = _model(model_dir, lambda: SimCSEObjective(), mini_batch_size=6)
    assert model.get_config()["mini_batch_size"] == 6
    assert ContrastiveModel.from_config(model.get_config()).mini_batch_size == 6
