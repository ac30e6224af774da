"""Pooler: token states -> one sentence vector, with SimCSE's pooler types and MLP head."""
import keras
from keras import ops

from tf_esimcse.api_export import tf_esimcse_export

POOLER_TYPES = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")
_NEEDS_HIDDEN_STATES = ("avg_top2", "avg_first_last")


def pooler_needs_hidden_states(pooler_type):
    """Whether `pooler_type` reads intermediate layers (the backbone must output them)."""
    return pooler_type in _NEEDS_HIDDEN_STATES


def check_pooler_type(pooler_type):
    if pooler_type not in POOLER_TYPES:
        raise ValueError(
            f"Unknown pooler type {pooler_type!r}: expected one of {', '.join(POOLER_TYPES)}."
        )
    return pooler_type


def masked_mean(states, padding_mask):
    """Mean over the non-padding positions of `states` (batch, length, dim)."""
    mask = ops.cast(ops.expand_dims(padding_mask, -1), states.dtype)
    total = ops.sum(states * mask, axis=1)
    count = ops.maximum(ops.sum(mask, axis=1), 1.0)
    return total / count


@tf_esimcse_export("layers.Pooler")
class Pooler(keras.layers.Layer):
    """Pools a BERT backbone's outputs into a sentence embedding, as SimCSE does.

    Pooler types (SimCSE's `--pooler_type`):
    - `"cls"`: the [CLS] state through an MLP head (dense + tanh). With `mlp_only_train=True`
      the head is applied only when `training=True` (unsupervised SimCSE and ESimCSE train with
      it and evaluate without it).
    - `"cls_before_pooler"`: the [CLS] state as it is.
    - `"avg"`: the mean of the last layer over non-padding tokens.
    - `"avg_top2"`: the mean of the last two layers' states, averaged over non-padding tokens.
    - `"avg_first_last"`: the same for the first and the last hidden states. `first_layer=1`
      (the first transformer layer's output, `hidden_states[1]`) is what SimCSE's `models.py`
      and `evaluation.py` use since its "fix first-last avg" commit; `first_layer=0` (the
      embedding output) is the older code, still in ESimCSE's copy.

    Args:
        pooler_type: str. One of the types above. Defaults to `"cls"`.
        hidden_dim: int or None. Size of the MLP head (the backbone's hidden size); only needed
            for `"cls"` and inferred from the input when `None`.
        mlp_only_train: bool. Use the MLP head in training only. Defaults to `False`.
        first_layer: int. Which hidden state `avg_first_last` calls "first". Defaults to `1`.

    Call arguments:
        inputs: dict with `"sequence_output"` (batch, length, dim), `"padding_mask"`
            (batch, length) and, for `avg_top2`/`avg_first_last`, `"hidden_states"`
            (num_layers + 1, batch, length, dim).
        training: bool. Whether the MLP head of `mlp_only_train` applies.

    Returns:
        A float tensor of shape (batch, dim), not normalised.

    Examples:
    ```python
    pooler = Pooler("avg")
    pooled = pooler({"sequence_output": keras.ops.ones((2, 5, 8)),
                     "padding_mask": keras.ops.ones((2, 5), "int32")})
    ```
    """

    def __init__(self, pooler_type="cls", hidden_dim=None, mlp_only_train=False, first_layer=1, **kwargs):
        super().__init__(**kwargs)
        self.pooler_type = check_pooler_type(pooler_type)
        self.hidden_dim = hidden_dim
        self.mlp_only_train = bool(mlp_only_train)
        self.first_layer = int(first_layer)
        self.mlp = None
        if self.pooler_type == "cls" and hidden_dim is not None:
            self._make_mlp(hidden_dim)

    def _make_mlp(self, dim):
        self.hidden_dim = int(dim)
        # SimCSE's MLPLayer is initialised like BERT (normal, std 0.02; zero bias).
        self.mlp = keras.layers.Dense(
            self.hidden_dim, activation="tanh", kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=self.dtype_policy, name="mlp",
        )

    @property
    def uses_hidden_states(self):
        return pooler_needs_hidden_states(self.pooler_type)

    def build(self, input_shape):
        if self.pooler_type == "cls":
            dim = input_shape["sequence_output"][-1]
            if self.mlp is None:
                self._make_mlp(dim)
            self.mlp.build((None, dim))
        self.built = True

    def call(self, inputs, training=None):
        mask = inputs["padding_mask"]
        if self.pooler_type in ("cls", "cls_before_pooler"):
            pooled = inputs["sequence_output"][:, 0, :]
            if self.pooler_type == "cls" and (training or not self.mlp_only_train):
                pooled = self.mlp(pooled)
            return pooled
        if self.pooler_type == "avg":
            return masked_mean(inputs["sequence_output"], mask)
        hidden = inputs.get("hidden_states")
        if hidden is None:
            raise ValueError(
                f"Pooler {self.pooler_type!r} needs 'hidden_states': build the backbone with "
                "output_hidden_states=True."
            )
        if self.pooler_type == "avg_top2":
            states = (hidden[-1] + hidden[-2]) / 2.0
        else:
            states = (hidden[self.first_layer] + hidden[-1]) / 2.0
        return masked_mean(states, mask)

    def compute_output_shape(self, input_shape):
        shape = input_shape["sequence_output"]
        return (shape[0], self.hidden_dim if self.mlp is not None and self.hidden_dim else shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pooler_type": self.pooler_type,
                "hidden_dim": self.hidden_dim,
                "mlp_only_train": self.mlp_only_train,
                "first_layer": self.first_layer,
            }
        )
        return config
