"""`mask_duplicates`: a sentence that appears twice in the (global) batch does not count its copy's
positive as a negative (not in the official SimCSE/ESimCSE code, hence off by default).

Each objective runs through the shared check (`run_objective_test`: NumPy loss, eager == graph ==
XLA, two replicas == one device) on batches whose duplicated anchors span both replicas' halves,
against an independent NumPy InfoNCE that drops the duplicates' positive columns.
"""
import numpy as np
import pytest
import tensorflow as tf

from test_case import l2_normalize_np
from test_case import numpy_info_nce
from test_case import to_numpy
from tf_esimcse import losses
from tf_esimcse.distribution import gather_replicas
from tf_esimcse.distribution import replica_offset
from tf_esimcse.objectives import ESimCSEObjective
from tf_esimcse.objectives import SimCSEObjective
from tf_esimcse.objectives import SupervisedSimCSEObjective
from tf_esimcse.objectives.diffcse import DiffCSEObjective
from training_test_case import MODES
from training_test_case import run_objective_test

BATCH, LENGTH = 8, 10
# Rows made copies of another row's anchor in each batch: (copy, source). Batch 1: rows 0, 3 and 5
# are one sentence (3 in replica 0's half, 5 in replica 1's); batch 2: two pairs, 1 ~ 6 across the
# halves and 4 ~ 7 inside the second.
DUPLICATES = ([(3, 0), (5, 0)], [(6, 1), (7, 4)])


def _view(rng, length=LENGTH, copies=()):
    ids = rng.integers(5, 30, size=(BATCH, length)).astype("int32")
    lengths = rng.integers(3, length + 1, size=BATCH)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids[:, 0] = 2
    ids[np.arange(BATCH), lengths - 1] = 3
    ids, mask = ids * mask, mask
    for copy, source in copies:
        ids[copy], mask[copy] = ids[source], mask[source]
    return {"token_ids": ids, "padding_mask": mask}


def _batches(kind, seed=0, duplicates=DUPLICATES):
    """Batches whose ANCHOR views repeat rows (`duplicates`); positives and hard negatives are
    random (a duplicate's other views need not repeat)."""
    rng = np.random.default_rng(seed)
    out = []
    for copies in duplicates:
        anchor = _view(rng, copies=copies)
        if kind == "plain":
            out.append(anchor)
        elif kind == "pairs":
            out.append({"anchor": anchor, "positive": _view(rng, LENGTH + 3)})
        else:
            out.append({"anchor": anchor, "positive": _view(rng), "negative": _view(rng, LENGTH - 2)})
    return out


def _anchor_ids(x):
    return np.asarray(x["token_ids"] if "token_ids" in x else x["anchor"]["token_ids"])


def numpy_masked_info_nce(z1, z2, anchor_ids, temperature, hard_negatives=None, hard_negative_offset=0.0,
                          queue=None, queue_mask=None):
    """Independent float64 InfoNCE whose positive column j is -inf for anchor i when the anchors'
    token-id rows i and j are identical (j != i); hard-negative and queue columns kept."""
    a = l2_normalize_np(z1)
    n = a.shape[0]
    positives = a @ l2_normalize_np(z2).T / temperature
    ids = np.asarray(anchor_ids)
    duplicate = (ids[:, None, :] == ids[None, :, :]).all(axis=-1) & ~np.eye(n, dtype=bool)
    positives[duplicate] = -np.inf
    columns = [positives]
    if hard_negatives is not None:
        hard = a @ l2_normalize_np(hard_negatives).T / temperature
        hard[np.arange(n), np.arange(n)] += hard_negative_offset
        columns.append(hard)
    if queue is not None:
        queue = np.asarray(queue, np.float64)[np.asarray(queue_mask, bool)]
        columns.append(a @ l2_normalize_np(queue).T / temperature)
    logits = np.concatenate(columns, axis=1)
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(n), np.arange(n)].mean())


def _assert_masking_matters(masked, unmasked):
    """The batches' duplicates must change the loss, or the checks would not test the mask."""
    assert masked < unmasked - 1e-3, (masked, unmasked)


# --- through the shared objective check ----------------------------------------------------------

@pytest.mark.large
@pytest.mark.parametrize("kind", ["plain", "pairs"])
def test_simcse_masks_duplicates(model_dir, mirrored_strategy, kind):
    def numpy_loss(z, objective, step):
        ids = _anchor_ids(step["x"])
        masked = numpy_masked_info_nce(z[0], z[1], ids, temperature=0.1)
        _assert_masking_matters(masked, numpy_info_nce(z[0], z[1], temperature=0.1))
        return masked

    logs = run_objective_test(model_dir, lambda: SimCSEObjective(temperature=0.1, mask_duplicates=True),
                              _batches(kind), numpy_loss, mirrored_strategy, modes=MODES if kind == "pairs" else ())
    assert logs[0]["contrastive_loss"] == pytest.approx(logs[0]["loss"])


@pytest.mark.large
def test_supervised_simcse_masks_duplicates_but_not_hard_negatives(model_dir, mirrored_strategy):
    offset = np.log(2.0) + 0.5

    def numpy_loss(z, objective, step):
        ids = _anchor_ids(step["x"])
        masked = numpy_masked_info_nce(z[0], z[1], ids, temperature=0.05, hard_negatives=z[2],
                                       hard_negative_offset=offset)
        unmasked = numpy_info_nce(z[0], z[1], temperature=0.05, hard_negatives=z[2], alpha=np.exp(offset))
        _assert_masking_matters(masked, unmasked)
        return masked

    run_objective_test(
        model_dir, lambda: SupervisedSimCSEObjective(alpha=2.0, hard_negative_weight=0.5, mask_duplicates=True),
        _batches("triplets"), numpy_loss, mirrored_strategy)


@pytest.mark.large
def test_esimcse_masks_duplicates_but_not_the_queue(model_dir, mirrored_strategy):
    def numpy_loss(z, objective, step):
        ids = _anchor_ids(step["x"])
        queue, filled = (to_numpy(t) for t in objective.queue.negatives())
        masked = numpy_masked_info_nce(z[0], z[1], ids, temperature=0.05, queue=queue, queue_mask=filled)
        _assert_masking_matters(masked, numpy_info_nce(z[0], z[1], temperature=0.05, queue=queue, queue_mask=filled))
        return masked

    logs = run_objective_test(
        model_dir, lambda: ESimCSEObjective(queue_size=12, momentum=0.9, mask_duplicates=True),
        _batches("pairs"), numpy_loss, mirrored_strategy)
    assert [round(log["queue_fill"], 4) for log in logs] == [round(8 / 12, 4), 1.0]


# --- direct checks -------------------------------------------------------------------------------

def _embeddings(seed, n=BATCH, dim=16):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dim)).astype("float32") for _ in range(3)]


def _loss(objective, x, z):
    return float(to_numpy(objective.loss_terms(None, x, z, None, True)["contrastive"]))


@pytest.mark.parametrize("kind", ["plain", "pairs", "triplets"])
def test_without_duplicates_the_loss_is_the_unmasked_loss_exactly(kind):
    x = tf.nest.map_structure(tf.constant, _batches(kind, seed=3, duplicates=[()])[0])
    assert len(np.unique(_anchor_ids(x), axis=0)) == BATCH
    z = [tf.constant(e) for e in _embeddings(1)[:3 if kind == "triplets" else 2]]
    cls = SupervisedSimCSEObjective if kind == "triplets" else SimCSEObjective
    assert _loss(cls(mask_duplicates=True), x, z) == _loss(cls(), x, z)
    # The loss function itself: an all-False mask (and the helper's mask of distinct rows) is a no-op.
    ids = _anchor_ids(x)
    queue = tf.constant(_embeddings(2)[0])
    kwargs = dict(hard_negatives=z[1], hard_negative_offset=0.3, queue=queue,
                  queue_mask=tf.constant([True] * 5 + [False] * 3))
    plain = to_numpy(losses.info_nce(z[0], z[1], **kwargs))
    mask = losses.duplicate_mask(ids, ids)
    assert not np.any(to_numpy(mask))
    assert to_numpy(losses.info_nce(z[0], z[1], positive_mask=mask, **kwargs)) == plain


@pytest.mark.parametrize("kind", ["plain", "pairs", "triplets"])
def test_duplicates_are_kept_without_the_flag(kind):
    """Off (the default, official behaviour): duplicates stay negatives, the loss is InfoNCE's."""
    x = tf.nest.map_structure(tf.constant, _batches(kind)[0])
    z = [tf.constant(e) for e in _embeddings(4)[:3 if kind == "triplets" else 2]]
    cls = SupervisedSimCSEObjective if kind == "triplets" else SimCSEObjective
    assert cls().mask_duplicates is False
    off = _loss(cls(), x, z)
    hard = z[2] if kind == "triplets" else None
    assert off == float(to_numpy(losses.info_nce(z[0], z[1], hard_negatives=hard)))
    assert off == pytest.approx(numpy_info_nce(z[0], z[1], hard_negatives=hard), rel=1e-5)
    on = _loss(cls(mask_duplicates=True), x, z)
    expected = numpy_masked_info_nce(z[0], z[1], _anchor_ids(x), 0.05, hard_negatives=hard)
    assert on == pytest.approx(expected, rel=1e-5)
    assert on != pytest.approx(off, rel=1e-3)


def test_duplicate_mask_and_label_column():
    ids = np.array([[2, 7, 3, 0], [2, 8, 3, 0], [2, 7, 3, 0], [2, 7, 3, 3], [2, 7, 3, 0]], "int32")
    mask = to_numpy(losses.duplicate_mask(ids, ids))
    expected = np.zeros((5, 5), bool)
    for i, j in [(0, 2), (0, 4), (2, 4)]:
        expected[i, j] = expected[j, i] = True
    np.testing.assert_array_equal(mask, expected)  # padding counts: row 3 differs from row 0
    # Anchors 2..3 of a replica whose first row is 2 in the gathered batch: their own columns stay.
    np.testing.assert_array_equal(to_numpy(losses.duplicate_mask(ids[2:4], ids, label_offset=2)), expected[2:4])
    # The label column is never dropped, even if the mask says so: only the positive is left.
    z1, z2 = _embeddings(5)[:2]
    everything = tf.ones((BATCH, BATCH), tf.bool)
    assert float(to_numpy(losses.info_nce(z1, z2, positive_mask=everything))) == pytest.approx(0.0, abs=1e-6)


def test_duplicate_mask_across_replicas(mirrored_strategy):
    """Each replica compares its local anchors with the gathered global batch (its rows of the
    one-device mask), duplicates in the other replica's half included."""
    ids = _anchor_ids(_batches("plain")[0])
    half = BATCH // 2

    def step(local):
        gathered = gather_replicas(local)
        return losses.duplicate_mask(local, gathered, label_offset=replica_offset(tf.shape(local)[0]))

    per_replica = mirrored_strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(ids[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half]))
    result = mirrored_strategy.run(step, args=(per_replica,))
    parts = [to_numpy(t) for t in mirrored_strategy.experimental_local_results(result)]
    np.testing.assert_array_equal(np.concatenate(parts), to_numpy(losses.duplicate_mask(ids, ids)))
    assert parts[0][0, 5] and parts[1][1, 0] and parts[1][1, 3]  # row 5 copies rows 0 and 3


def test_mask_duplicates_needs_the_anchor_ids():
    z1, z2 = (tf.constant(e) for e in _embeddings(6)[:2])
    with pytest.raises(ValueError, match="anchor_ids"):
        SimCSEObjective(mask_duplicates=True).contrastive_loss(z1, z2)


def test_diffcse_forwards_the_flag():
    """DiffCSE's contrastive term (its views are the anchor twice) masks duplicates too."""
    objective = DiffCSEObjective("unused-generator", temperature=0.05, mask_duplicates=True)
    assert objective.mask_duplicates and objective.get_config()["mask_duplicates"] is True
    assert DiffCSEObjective.from_config(objective.get_config()).mask_duplicates is True
    batch = _batches("plain")[0]
    x = {"anchor": tf.nest.map_structure(tf.constant, batch)}
    z1, z2 = (tf.constant(e) for e in _embeddings(7)[:2])
    terms = objective.loss_terms(None, x, [z1, z2], None, training=False)  # no context: contrastive only
    expected = numpy_masked_info_nce(z1, z2, batch["token_ids"], 0.05)
    assert float(to_numpy(terms["contrastive"])) == pytest.approx(expected, rel=1e-5)
    off = DiffCSEObjective("unused-generator").loss_terms(None, x, [z1, z2], None, training=False)
    assert float(to_numpy(off["contrastive"])) == pytest.approx(numpy_info_nce(z1, z2), rel=1e-5)


@pytest.mark.parametrize("recipe, extra", [("unsup_simcse", []), ("unsup_esimcse", []), ("sup_simcse", []),
                                           ("diffcse", ["--generator", "unused-generator"])])
def test_recipes_pass_the_flag(recipe, extra):
    """Every method gets the flag through `Method.objective` (once, for all of them)."""
    from tf_esimcse import methods

    method = methods.get(recipe)
    assert method.parse(extra).mask_duplicates is False
    config = method.parse([*extra, "--mask-duplicates"])
    assert method.objective(config).mask_duplicates is True
