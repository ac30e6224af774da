"""Dense projections computed as one 2-D matmul: `FlatEinsumDense` and `FlatDense`.

BERT's attention projections are `keras.layers.EinsumDense` layers (in keras' and keras-hub's
attention) with the equations ``"abc,cde->abde"`` (query, key, value:
`(batch, length, hidden) x (hidden, heads, head_dim)`) and ``"abcd,cde->abe"`` (output). Keras's
TensorFlow backend computes them as `tf.matmul` of a rank-3 input with a rank-2 kernel, i.e. a
*broadcasting* `BatchMatMulV2`. Its forward pass is fine, but
TensorFlow differentiates the broadcast kernel as a batched product, one `(hidden, hidden)` matrix
per example, followed by a sum over the batch. Under XLA that is a `(batch, hidden, hidden)`
intermediate for each of the four projections of every layer (24 per backward pass of a 6-layer
encoder: 75 MB each at batch 128, hidden 384) instead of a single `(batch * length) x hidden`
contraction.

`FlatEinsumDense` computes the same product with the leading (batch) axes folded into one:
``reshape(x, [-1, contracted]) @ reshape(kernel, [contracted, -1])``. The result and the gradients
are the same numbers up to float rounding (the sum over examples is done inside the matmul); a
fwd+bwd step of all-MiniLM-L6-v2 at 128 x 32 under XLA drops from ~1.61 s to ~1.51 s on 2 cores.

Equations it does not recognise (anything but "leading axes kept, trailing axes contracted with
the kernel's leading axes"), LoRA and quantized layers fall back to `EinsumDense.call`.

`FlatDense` does the same for `keras.layers.Dense` (the feed-forward blocks). Both compute
through `matmul_precision.projection` (`MatMul -> BiasAdd -> activation` on the 2-D product,
which TensorFlow's oneDNN rewrite fuses into one op in graph mode), so inference can also run
the products in bfloat16 on CPUs with bfloat16 matrix units (`tf_esimcse.layers.matmul_precision`).
`tf_esimcse.layers.transformer_layer.BertTransformerLayer` builds its projections from these two
classes.
"""
import math

import keras

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.matmul_precision import projection


def _flat_plan(equation):
    """For ``"<batch><contract>,<contract><out>-><batch><out>"``: (n_batch, n_contract), else None."""
    try:
        inputs, output = equation.split("->")
        x_sub, k_sub = inputs.split(",")
    except ValueError:
        return None
    contracted = [c for c in x_sub if c not in output]
    n_contract = len(contracted)
    n_batch = len(x_sub) - n_contract
    if n_contract == 0 or x_sub[n_batch:] != "".join(contracted):
        return None
    if k_sub[:n_contract] != x_sub[n_batch:]:
        return None
    if output != x_sub[:n_batch] + k_sub[n_contract:]:
        return None
    if len(set(x_sub + k_sub)) != len(x_sub) + len(k_sub) - n_contract:
        return None
    return n_batch, n_contract


@tf_esimcse_export("layers.FlatEinsumDense")
class FlatEinsumDense(keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` computed as one 2-D matmul when the equation allows it.

    Same arguments, weights and config as `EinsumDense`. See the module docstring for why.
    """

    def call(self, inputs, training=None):
        plan = _flat_plan(self.equation)
        if plan is None or getattr(self, "lora_enabled", False):
            return super().call(inputs, training=training)
        n_batch, n_contract = plan
        kernel = self.kernel
        contracted = math.prod(kernel.shape[:n_contract])
        out_tail = tuple(kernel.shape[n_contract:])
        bias = self.bias
        flat_bias = bias is not None and tuple(bias.shape) == out_tail  # one bias per output unit
        y = projection(
            keras.ops.reshape(inputs, (-1, contracted)),
            keras.ops.reshape(kernel, (contracted, -1)),
            bias=keras.ops.reshape(bias, (-1,)) if flat_bias else None,
            activation=self.activation if flat_bias or bias is None else None,
        )
        y = keras.ops.reshape(y, (*keras.ops.shape(inputs)[:n_batch], *out_tail))
        if bias is not None and not flat_bias:  # a bias broadcast over some output axes only
            y = keras.ops.add(y, bias)
            if self.activation is not None:
                y = self.activation(y)
        return y


@tf_esimcse_export("layers.FlatDense")
class FlatDense(keras.layers.Dense):
    """`keras.layers.Dense` on inputs of any rank as one 2-D (fusable) matmul in the current
    matmul precision.

    Same arguments, weights and config as `Dense`; LoRA layers fall back to `Dense.call`.
    """

    def call(self, inputs, training=None):
        if getattr(self, "lora_enabled", False):
            return super().call(inputs, training=training)
        kernel = self.kernel
        y = projection(keras.ops.reshape(inputs, (-1, kernel.shape[0])), kernel, bias=self.bias,
                       activation=self.activation)
        return keras.ops.reshape(y, (*keras.ops.shape(inputs)[:-1], kernel.shape[-1]))

