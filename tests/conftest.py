"""Shared fixtures. TensorFlow's device set-up must happen before anything initialises it."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# One XLA compilation cache for the whole run (TensorFlow's persistent cache: a folder of
# executables keyed by the program's fingerprint, written to a temporary name then renamed, so
# processes may share it). The processes the tests start (kill/resume runs, ablation rows,
# multi-worker training, fresh interpreters) compile the same programs again and again; with it
# they load them instead. The first process that imports this file (pytest-xdist's controller,
# or the only one) makes the folder; the workers and every child inherit the variable; the same
# process deletes the folder at the end. A TF_XLA_FLAGS that already names a cache is kept.
_XLA_CACHE = None
if "--tf_xla_persistent_cache_directory" not in os.environ.get("TF_XLA_FLAGS", ""):
    import tempfile

    _XLA_CACHE = tempfile.mkdtemp(prefix="tf_esimcse_tests_xla_cache_")
    os.environ["TF_XLA_FLAGS"] = (os.environ.get("TF_XLA_FLAGS", "")
                                  + f" --tf_xla_persistent_cache_directory={_XLA_CACHE}").strip()

import tensorflow as tf  # noqa: E402

# Two logical CPUs so that MirroredStrategy tests have two replicas on a one-CPU machine.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised (e.g. a plugin imported TF first)
    pass

import pathlib  # noqa: E402

import pytest  # noqa: E402

from test_case import write_tiny_model_dir  # noqa: E402

from tf_esimcse.training import freeze_imported_objects  # noqa: E402

# A test process lives for the whole run and holds over a million Python objects, most of them made
# by importing the package (TensorFlow, Keras, keras-hub). They are frozen out of the cyclic
# collector's scans (`freeze_imported_objects`, as every recipe's main_guard does): its full
# collections then scan only what the tests make. Measured on four modules on 2 workers: 12 % less
# CPU time (301 -> 266 user-s), the same peak memory. (Raising the collector's thresholds as well
# saved a little more but let garbage pile up: 7 -> 17 GB over the whole suite.)
freeze_imported_objects()

REPO = pathlib.Path(__file__).resolve().parents[1]


def _find_data_dir():
    for candidate in (os.environ.get("TF_ESIMCSE_DATA_DIR"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (pathlib.Path(candidate) / "senteval").is_dir():
            return pathlib.Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir():
    """The real data root (senteval/, brown/); tests that need it skip with a reason if absent."""
    d = _find_data_dir()
    if d is None:
        pytest.skip("SentEval data not found (set TF_ESIMCSE_DATA_DIR or run `make setup`)")
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Hugging Face BERT folder (`test_case.write_tiny_model_dir`), written once per test
    module. A module that needs another model defines its own `model_dir` (test_export.py)."""
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny_hf"))


_MIRRORED = []


@pytest.fixture(scope="session")
def mirrored_strategy():
    """ONE MirroredStrategy over the two logical CPUs for the whole session: several strategy
    objects over the same devices in one process collide in their collective-op instance keys
    ("Collective instance 100 expected type 2 ... but got type 0")."""
    if not _MIRRORED:
        _MIRRORED.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _MIRRORED[0]


def pytest_unconfigure(config):
    if _XLA_CACHE is not None:
        import shutil

        shutil.rmtree(_XLA_CACHE, ignore_errors=True)
