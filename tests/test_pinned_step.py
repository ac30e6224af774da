"""The training step gives the numbers it gave before the training core was reshaped.

`tests/data/pinned_step.npz` was written by `tests/pinned_step.py` with the code of commit
53c12c1 (SimCSE and ESimCSE each with their own `train_step`). Three steps of unsupervised
SimCSE, supervised SimCSE (alpha 2) and ESimCSE (queue 12, momentum 0.9) on fixed batches, with
AdamW (weight decay, bias/LayerNorm excluded) and global clipping at 1.0, must give the same
per-step losses, the same updated weights and (ESimCSE) the same queue.
"""
import pathlib

import numpy as np
import pytest

import pinned_step

REFERENCE = pathlib.Path(__file__).resolve().parent / "data" / "pinned_step.npz"


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    return pinned_step.compute(pinned_step.current_models, str(tmp_path_factory.mktemp("pinned")))


@pytest.mark.parametrize("method", ["simcse", "supervised", "esimcse"])
def test_losses_and_weights_equal_the_pinned_step(computed, method):
    reference = np.load(REFERENCE)
    keys = sorted(k for k in reference.files if k.startswith(method + "/"))
    assert f"{method}/losses" in keys and len(keys) > 10
    for key in keys:
        assert key in computed, key
        np.testing.assert_allclose(computed[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
