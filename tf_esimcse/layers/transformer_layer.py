"""BERT's encoder block (post-LayerNorm self-attention + feed-forward), built for speed.

`BertTransformerLayer` computes exactly what keras-hub's `TransformerEncoder` (with
`normalize_first=False`, as keras-hub's `BertBackbone` uses it) and Hugging Face's `BertLayer`
compute, with the same weights (names, shapes and order), and owns every sublayer so that the
fast paths are constructed directly rather than patched in:

* the attention and feed-forward projections are `FlatEinsumDense` / `FlatDense`
  (`tf_esimcse.layers.flat_dense`): one 2-D matmul each, one-matmul kernel gradients, and
  bfloat16 products under `matmul_precision("bfloat16")`;
* the dropouts (attention probabilities, attention output, feed-forward output) are
  `HashDropout` when `fast_dropout=True` (counter-hash masks inside XLA-compiled steps), plain
  `keras.layers.Dropout` otherwise;
* `first_token_only=True` computes the block for the first query position only (keys and values
  still come from every position): the [CLS]-only last layer of the `cls` poolers.

The attention follows keras' `MultiHeadAttention` step for step (queries scaled by
`1 / sqrt(head_dim)`, masked softmax over keys, dropout on the attention probabilities, and
`keras.ops.dot_product_attention` when the layer has no dropout), so checkpoints give the numbers
keras-hub gives them.
"""
import contextlib
import math
import threading

import keras

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.flat_dense import FlatDense
from tf_esimcse.layers.flat_dense import FlatEinsumDense
from tf_esimcse.layers.hash_dropout import HashDropout

ACTIVATIONS = ("gelu", "gelu_approximate", "relu")


def gelu_exact(x):
    """Exact (erf) GELU, x * (1 + erf(x / sqrt(2))) / 2, as Hugging Face's `hidden_act="gelu"`.

    The same function as `keras.activations.gelu(x, approximate=False)` (to float rounding),
    written with `erf` (TensorFlow's CPU `erf` kernel is ~30 % faster than the `erfc` of
    `tf.nn.gelu`) and in the operand order of TensorFlow's oneDNN "MatMul + BiasAdd + GeluExact"
    fusion pattern, so that after `layers/matmul_precision.projection` the feed-forward's first
    projection is one fused op in graph mode. Under XLA everything fuses anyway.
    """
    if getattr(_gelu_state, "portable", False):
        return keras.activations.gelu(x, approximate=False)
    return x * (0.5 * (1.0 + keras.ops.erf(x * 0.7071067811865476)))


_gelu_state = threading.local()


@contextlib.contextmanager
def portable_gelu():
    """Within the block, `gelu_exact` is traced as `keras.activations.gelu(x, approximate=False)`.

    The same function (to float rounding), written in the form that converters recognise as one
    GELU: the LiteRT converter maps it to its builtin `GELU` kernel, whereas `gelu_exact`'s own
    operand order leaves a bare `Erf`, which LiteRT has no builtin for (it would need
    select-TF-ops). Read while a function is traced, like `matmul_precision`:
    `tf_esimcse.litert_export` traces inside it. Training and `encode` never use it.
    """
    previous = getattr(_gelu_state, "portable", False)
    _gelu_state.portable = True
    try:
        yield
    finally:
        _gelu_state.portable = previous


def gelu_approximate(x):
    """Tanh-approximated GELU, as Google's BERT, keras-hub and Hugging Face's `"gelu_new"`:
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), through Keras' own kernel."""
    return keras.activations.gelu(x, approximate=True)


def bert_activation(name):
    """The feed-forward activation function called `name`.

    Args:
        name: str. `"gelu"` (exact erf GELU, Hugging Face BERT's default), `"gelu_approximate"`
            (tanh GELU, keras-hub's and Google's BERT) or `"relu"`.

    Raises:
        ValueError: for any other name.
    """
    if name == "gelu":
        return gelu_exact
    if name == "gelu_approximate":
        return gelu_approximate
    if name == "relu":
        return keras.activations.relu
    raise ValueError(f"Unknown activation {name!r}: expected 'gelu', 'gelu_approximate' or 'relu'.")


def bert_kernel_initializer(stddev=0.02):
    """BERT's weight initializer: a truncated normal with standard deviation `stddev`."""
    return keras.initializers.TruncatedNormal(stddev=stddev)


def _clone_initializer(initializer):
    # A new instance per weight, so that seeded initializers do not repeat the same values.
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


def dropout_layer(rate, fast_dropout, dtype=None, name=None):
    """A `HashDropout` (`fast_dropout=True`) or a `keras.layers.Dropout` at `rate`."""
    cls = HashDropout if fast_dropout else keras.layers.Dropout
    return cls(rate, dtype=dtype, name=name)


@tf_esimcse_export("layers.BertSelfAttention")
class BertSelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention with one-matmul projections.

    The computation and the weights of `keras.layers.MultiHeadAttention(num_heads, key_dim,
    dropout)` for rank-3 inputs: `query`, `key`, `value` projections of shape
    `(hidden_dim, num_heads, key_dim)`, an `attention_output` projection of shape
    `(num_heads, key_dim, hidden_dim)` (all with biases), scores scaled by `1 / sqrt(key_dim)`,
    a softmax over the keys restricted by `attention_mask`, and dropout on the attention
    probabilities. The projections are `FlatEinsumDense` layers; the probability dropout is a
    `HashDropout` when `fast_dropout=True`.

    Args:
        num_heads: int. The number of attention heads.
        key_dim: int. The size of each head.
        dropout: float. Dropout rate on the attention probabilities. Defaults to `0.0`.
        fast_dropout: bool. `HashDropout` (`True`, default) or `keras.layers.Dropout`.
        kernel_initializer: initializer of the projection kernels. Defaults to BERT's
            `TruncatedNormal(stddev=0.02)`.
        bias_initializer: initializer of the projection biases. Defaults to `"zeros"`.
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: float tensor `(batch, query_length, hidden_dim)`.
        value: float tensor `(batch, length, hidden_dim)`, the keys and values.
        attention_mask: int or bool tensor `(batch, query_length or 1, length)`; 1/True where a
            query may attend. `None` attends everywhere.
        training: bool. Dropout on or off.

    Returns:
        A float tensor of shape `(batch, query_length, hidden_dim)`.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        dropout=0.0,
        fast_dropout=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.dropout = float(dropout)
        self.fast_dropout = bool(fast_dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or bert_kernel_initializer())
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self.key_dim))

    def _projection(self, equation, output_shape, bias_axes, name):
        return FlatEinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes,
            kernel_initializer=_clone_initializer(self.kernel_initializer),
            bias_initializer=_clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, query_shape, value_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        hidden_dim = query_shape[-1]
        heads = (None, self.num_heads, self.key_dim)
        # Created in keras' MultiHeadAttention order (query, key, value, output): same weight order.
        self.query = self._projection("abc,cde->abde", heads, "de", "query")
        self.query.build(query_shape)
        self.key = self._projection("abc,cde->abde", heads, "de", "key")
        self.key.build(value_shape)
        self.value = self._projection("abc,cde->abde", heads, "de", "value")
        self.value.build(value_shape)
        self.attention_dropout = dropout_layer(self.dropout, self.fast_dropout, self.dtype_policy, "attention_dropout")
        self.attention_output = self._projection("abcd,cde->abe", (None, hidden_dim), "e", "attention_output")
        self.attention_output.build((query_shape[0], query_shape[1], self.num_heads, self.key_dim))

    def call(self, query, value, attention_mask=None, training=None):
        q = self.query(query)  # (batch, query_length, heads, key_dim)
        k = self.key(value)  # (batch, length, heads, key_dim)
        v = self.value(value)
        if attention_mask is not None:
            # (batch, query_length or 1, length) -> (batch, 1, query_length or 1, length)
            attention_mask = keras.ops.expand_dims(keras.ops.cast(attention_mask, "bool"), axis=-3)
        if self.dropout > 0.0:
            context = self._attention_with_dropout(q, k, v, attention_mask, training)
        else:  # keras' MultiHeadAttention takes the fused-op path when it has no dropout
            context = keras.ops.dot_product_attention(
                q, k, v, mask=attention_mask, scale=self.inverse_sqrt_key_dim
            )
        return self.attention_output(context)

    def _attention_with_dropout(self, q, k, v, mask, training):
        q = keras.ops.multiply(q, keras.ops.cast(self.inverse_sqrt_key_dim, q.dtype))
        scores = keras.ops.einsum("aecd,abcd->acbe", k, q)  # (batch, heads, query_length, length)
        if mask is not None:
            # keras' Softmax layer: masked scores -> a large negative number of the dtype
            large_negative = -3e4 if keras.backend.standardize_dtype(scores.dtype) == "float16" else -1e9
            scores = keras.ops.where(mask, scores, large_negative)
        probabilities = keras.ops.softmax(scores, axis=-1)
        if mask is not None:  # a row with every key masked gets zeros, not a uniform average
            probabilities = keras.ops.where(mask, probabilities, 0.0)
        probabilities = self.attention_dropout(probabilities, training=training)
        return keras.ops.einsum("acbe,aecd->abcd", probabilities, v)  # (batch, query_length, heads, key_dim)

    def compute_output_shape(self, query_shape, value_shape=None):
        return query_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "dropout": self.dropout,
            "fast_dropout": self.fast_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


@tf_esimcse_export("layers.BertTransformerLayer")
class BertTransformerLayer(keras.layers.Layer):
    """One BERT encoder block: self-attention and feed-forward, each followed by a residual add
    and a LayerNorm (post-LayerNorm, as BERT).

    The numbers and the weights of keras-hub's `TransformerEncoder(normalize_first=False)` in
    keras-hub's `BertBackbone` (and of Hugging Face's `BertLayer`), with weights named
    `self_attention_layer/{query,key,value,attention_output}/{kernel,bias}`,
    `self_attention_layer_norm/{gamma,beta}`, `feedforward_layer_norm/{gamma,beta}`,
    `feedforward_intermediate_dense/{kernel,bias}` and `feedforward_output_dense/{kernel,bias}`,
    in that order. Projections are `FlatEinsumDense` / `FlatDense`; dropouts are `HashDropout`
    when `fast_dropout=True`. See the module docstring.

    Args:
        num_heads: int. The number of attention heads (`hidden_dim` must be a multiple).
        intermediate_dim: int. The feed-forward inner size.
        dropout: float. Dropout on the attention probabilities, the attention output and the
            feed-forward output. Defaults to `0.0`.
        activation: str. The feed-forward activation: `"gelu"` (exact), `"gelu_approximate"`
            (tanh) or `"relu"`. Defaults to `"gelu"`.
        layer_norm_epsilon: float. LayerNorm epsilon. Defaults to `1e-12` (BERT's).
        fast_dropout: bool. `HashDropout` (`True`, default) or `keras.layers.Dropout`.
        kernel_initializer: initializer of every kernel. Defaults to BERT's
            `TruncatedNormal(stddev=0.02)`.
        bias_initializer: initializer of every bias. Defaults to `"zeros"`.
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, length, hidden_dim)`.
        padding_mask: int or bool tensor `(batch, length)`, 1 on real tokens (keys at 0 are not
            attended). `None` attends everywhere.
        training: bool. Dropout on or off.
        first_token_only: bool. If `True`, compute the output of the first position only (its
            query attends to every position): `(batch, 1, hidden_dim)`, equal to
            `block(inputs)[:, :1]` at a fraction of the cost. Defaults to `False`.

    Returns:
        A float tensor of shape `(batch, length, hidden_dim)` (`(batch, 1, hidden_dim)` with
        `first_token_only=True`).

    Example:
    ```python
    block = BertTransformerLayer(num_heads=12, intermediate_dim=1536, dropout=0.1)
    x = keras.random.normal((2, 16, 384))
    y = block(x, padding_mask=keras.ops.ones((2, 16), "int32"))
    cls = block(x, padding_mask=keras.ops.ones((2, 16), "int32"), first_token_only=True)
    ```
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        activation="gelu",
        layer_norm_epsilon=1e-12,
        fast_dropout=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        bert_activation(activation)  # fail early on an unknown name
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.dropout = float(dropout)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.fast_dropout = bool(fast_dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or bert_kernel_initializer())
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be a multiple of num_heads ({self.num_heads})."
            )

        def dense_kwargs(name):
            return dict(
                kernel_initializer=_clone_initializer(self.kernel_initializer),
                bias_initializer=_clone_initializer(self.bias_initializer),
                dtype=self.dtype_policy,
                name=name,
            )

        # Created in keras-hub's TransformerEncoder order: the same weight order.
        self.self_attention_layer = BertSelfAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dropout=self.dropout,
            fast_dropout=self.fast_dropout,
            **dense_kwargs("self_attention_layer"),
        )
        self.self_attention_layer.build(inputs_shape, inputs_shape)
        self.self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="self_attention_layer_norm"
        )
        self.self_attention_layer_norm.build(inputs_shape)
        self.self_attention_dropout = dropout_layer(
            self.dropout, self.fast_dropout, self.dtype_policy, "self_attention_dropout"
        )
        self.feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="feedforward_layer_norm"
        )
        self.feedforward_layer_norm.build(inputs_shape)
        self.feedforward_intermediate_dense = FlatDense(
            self.intermediate_dim,
            activation=bert_activation(self.activation),
            **dense_kwargs("feedforward_intermediate_dense"),
        )
        self.feedforward_intermediate_dense.build(inputs_shape)
        self.feedforward_output_dense = FlatDense(hidden_dim, **dense_kwargs("feedforward_output_dense"))
        self.feedforward_output_dense.build((*inputs_shape[:-1], self.intermediate_dim))
        self.feedforward_dropout = dropout_layer(
            self.dropout, self.fast_dropout, self.dtype_policy, "feedforward_dropout"
        )

    def call(self, inputs, padding_mask=None, training=None, first_token_only=False):
        attention_mask = None
        if padding_mask is not None:  # (batch, 1, length): every query attends to the real keys
            attention_mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, axis=1), "int32")
        if first_token_only:
            # Two slices, not one shared: the input's gradient then sums its four parts in the
            # order of the keras-hub-based block this replaces (tests/pinned_step.py reproduces
            # its training step to the last bit).
            residual = inputs[:, :1, :]
            x = inputs[:, :1, :]
        else:
            x = residual = inputs
        x = self.self_attention_layer(x, inputs, attention_mask=attention_mask, training=training)
        x = self.self_attention_dropout(x, training=training)
        x = self.self_attention_layer_norm(x + residual)
        residual = x
        x = self.feedforward_intermediate_dense(x)
        x = self.feedforward_output_dense(x)
        x = self.feedforward_dropout(x, training=training)
        return self.feedforward_layer_norm(x + residual)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "fast_dropout": self.fast_dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
