"""The `tf_esimcse_export` decorator: public name plus Keras serialization registration.

Modelled on keras-hub's `keras_hub_export`: every public Keras object is registered under the
package name ``tf_esimcse`` (written into saved files as ``tf_esimcse>ClassName``), so a saved
model reloads without `custom_objects`. Never rename the package string.
"""
import keras

PACKAGE = "tf_esimcse"
_EXPORTED = {}


def tf_esimcse_export(name):
    """Register `obj` as ``tf_esimcse.<name>`` and, for classes, as Keras-serializable."""

    def decorator(obj):
        _EXPORTED[name] = obj
        if isinstance(obj, type):
            keras.saving.register_keras_serializable(package=PACKAGE, name=obj.__name__)(obj)
        return obj

    return decorator


def exported_symbols():
    return dict(_EXPORTED)


def lazy_namespace(package, names):
    """`(__getattr__, __dir__, __all__)` for a package whose public `names` ({name: submodule})
    are imported from `package.<submodule>` on first access (PEP 562)."""
    import importlib

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__, sorted(names)
