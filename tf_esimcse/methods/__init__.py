"""The training methods, one module each, registered by name.

Each module holds a method's settings (a `TrainConfig` subclass), its objective builder and its
dataset builder, registered as a `Method` (`tf_esimcse.methods.method`); `recipes/<name>.py` is
its command line, and benchmarks and tests import the module like any other:

    from tf_esimcse import methods

    method = methods.get("unsup_esimcse")
    config = method.parse(["--steps", "20"])
    objective = method.objective(config)

`pretrain_mlm` (the masked LM behind DiffCSE's generator and a raw encoder) lives here too, with
its own run loop; it is not a contrastive method and is not registered.
"""
from tf_esimcse.methods import diffcse, sup_simcse, unsup_esimcse, unsup_simcse  # noqa: F401 (they register)
from tf_esimcse.methods.method import REGISTRY, Method, get, register, shared_objective_settings  # noqa: F401
