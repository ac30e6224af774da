"""`Objective`: what a method adds to the one training step of `ContrastiveModel`.

`ContrastiveModel.train_step` is the only training step in the package. Per batch it calls the
objective's hooks in this order:

1. `before_step(encoder, x, new_data_epoch)`, outside the gradient tape: work that is not
   differentiated (an EMA update, momentum keys, a frozen generator's fill). Returns a dict, the
   step's *context*, handed to the later hooks.
2. `views(x)`: the views the sentence encoder embeds (in ONE forward pass, so every row gets its
   own dropout mask).
3. `loss_terms(encoder, x, embeddings, context, training)`, under the tape: a dict of named
   scalar losses, e.g. `{"contrastive": ...}` or `{"contrastive": ..., "rtd": ...}`. The model
   differentiates `sum(loss_weights[name] * term)` and logs each term as `<name>_loss`.
4. `after_step(context)`, after the optimizer update (e.g. enqueue the momentum keys).

State an objective needs (a momentum backbone, a queue, a discriminator) is created in
`setup(encoder)` as attributes of the objective, a Keras layer: it is tracked by the model, so it
is saved in backups and restored on resume; trainable state is trained with the encoder. An
objective never keeps the encoder itself (the model owns it; hooks receive it).

A new method is one subclass of `Objective` (usually of `SimCSEObjective`) in its own file.
"""
import keras

from tf_esimcse.api_export import tf_esimcse_export


def named_views(x, required=("anchor", "positive"), optional=("negative",)):
    """The list of view dicts in `x`: `x` itself twice if it is one view (`token_ids` +
    `padding_mask`: unsupervised SimCSE's sentence seen twice), else `x[name]` for the
    `required` names and those `optional` names present. Raises `ValueError` naming the keys."""
    if "token_ids" in x:
        return [x, x]
    if any(name not in x for name in required) or any(k not in (*required, *optional) for k in x):
        allowed = "', '".join(required) + "'" + "".join(f"[, '{o}']" for o in optional)
        raise ValueError(
            "Training batches must be {'token_ids', 'padding_mask'} (one sentence, seen twice) or "
            f"{{'{allowed}}} views; got keys {sorted(x)}."
        )
    return [x[name] for name in (*required, *optional) if name in x]


@tf_esimcse_export("objectives.Objective")
class Objective(keras.layers.Layer):
    """Base class of training objectives (see the module docstring for the hooks).

    Args:
        loss_weights: dict or None. Weight of each loss term in the differentiated total;
            terms not listed weigh 1.0. Defaults to `None`.
    """

    #: Names of the loss terms `loss_terms` returns (the model makes one log entry each).
    term_names = ("contrastive",)
    #: Whether `loss_terms` gets the encoder's (L2-normalised) embeddings, or its pooled vectors
    #: before normalisation (DiffCSE feeds them to its discriminator at their own scale).
    normalized_embeddings = True

    def __init__(self, loss_weights=None, **kwargs):
        super().__init__(**kwargs)
        self.loss_weights = {str(k): float(v) for k, v in (loss_weights or {}).items()}
        unknown = sorted(set(self.loss_weights) - set(self.term_names))
        if unknown:
            raise ValueError(f"loss_weights has unknown terms {unknown}; this objective's terms are "
                             f"{list(self.term_names)}.")
        self.built = True

    def weight_of(self, name):
        return self.loss_weights.get(name, 1.0)

    def setup(self, encoder):
        """Create the state that depends on the encoder (called once by the model)."""

    def views(self, x):
        """The view dicts the sentence encoder embeds for batch `x` (default: `named_views`)."""
        return named_views(x)

    def before_step(self, encoder, x, new_data_epoch):
        """Outside the tape, before the loss. `new_data_epoch`: a bool tensor, True at the first
        step of each pass over the data (when the model knows its `steps_per_data_epoch`)."""
        return {}

    def loss_terms(self, encoder, x, embeddings, context, training):
        """Named scalar losses of the batch (`context` is None in `test_step`)."""
        raise NotImplementedError

    def after_step(self, context):
        """After the optimizer update."""

    def step_logs(self):
        """Extra values to log after each step (e.g. the queue's fill)."""
        return {}

    def get_config(self):
        config = super().get_config()
        config.update({"loss_weights": dict(self.loss_weights) or None})
        return config
