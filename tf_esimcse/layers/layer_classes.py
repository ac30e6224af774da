"""Swap the classes of layers that keras-hub builds inside its own blocks.

keras-hub's `TransformerEncoder` creates its `EinsumDense`, `Dense` and `Dropout` sublayers
itself (they cannot be passed in). To compute them differently (`flat_dense`, `hash_dropout`)
`BertEncoder` changes their class in place: a subclass with the same `__init__`, variables,
config and state, so checkpoints and presets load unchanged.
"""


def swap_layer_classes(layer, mapping):
    """Give every layer under `layer` (itself included) whose exact type is a key of `mapping`
    the class `mapping[type]`, in place. Returns how many layers changed.

    Exact types only: subclasses (and layers already swapped) are left alone. Use the reverse
    mapping to swap back.
    """
    count = 0
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        new_class = mapping.get(type(sub))
        if new_class is not None:
            sub.__class__ = new_class
            count += 1
    return count
