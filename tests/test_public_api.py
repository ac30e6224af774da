"""Every object registered with `tf_esimcse_export("<name>")` is reachable as `tf_esimcse.<name>`
(`tf_esimcse.layers.MaskedLMReplacement`, `tf_esimcse.models.SimCSE`, ...), and classes reload
through Keras' registry as `tf_esimcse>ClassName`."""
import functools
import importlib
import pkgutil

import keras
import pytest

import tf_esimcse
from tf_esimcse.api_export import exported_symbols


def _import_every_module():
    for info in pkgutil.walk_packages(tf_esimcse.__path__, prefix="tf_esimcse."):
        importlib.import_module(info.name)
    return exported_symbols()


def test_every_exported_name_resolves_to_its_object():
    exported = _import_every_module()
    assert {"layers.MaskedLMReplacement", "models.SimCSE", "objectives.DiffCSEObjective", "SentenceEncoder"} <= set(exported)
    for name, obj in exported.items():
        assert functools.reduce(getattr, name.split("."), tf_esimcse) is obj, name
        if isinstance(obj, type):
            assert keras.saving.get_registered_object(f"tf_esimcse>{obj.__name__}") is obj, name


@pytest.mark.parametrize("package", ["layers", "models"])
def test_lazy_namespaces_list_exactly_the_registered_names(package):
    exported = _import_every_module()
    registered = sorted(n.split(".", 1)[1] for n in exported if n.startswith(package + "."))
    namespace = importlib.import_module(f"tf_esimcse.{package}")
    assert dir(namespace) == registered
    star = {}
    exec(f"from tf_esimcse.{package} import *", star)  # noqa: S102
    assert sorted(k for k in star if not k.startswith("__")) == registered
    with pytest.raises(AttributeError, match="no attribute 'NotALayer'"):
        namespace.NotALayer  # noqa: B018
