"""Momentum (exponential moving average) encoders, as used by ESimCSE and MoCo.

A momentum encoder is a copy of the online encoder whose weights follow the online weights by an
exponential moving average, `theta_m <- m * theta_m + (1 - m) * theta`, instead of receiving
gradients. In ESimCSE (m = 0.995) it encodes the original sentences of each batch, with dropout
off, and its embeddings fill the `MomentumQueue` of extra negatives.

What the official ESimCSE code (caskcsg/sentemb, `ESimCSE/esimcse/models.py` and `trainers.py`)
does in one step: the online forward pass, then the EMA update (so it uses the online weights from
before this step's optimizer update), then the loss against the queue as it was before this batch,
then the momentum encoder's forward pass on the original sentences (eval mode, no gradients), whose
output is enqueued, and only then the backward pass and the optimizer step. In a Keras
`train_step`, calling `ema_update` either before `optimizer.apply` or at the very start of the step
reproduces that order; both read the same online weights.

Typical use:

```python
momentum_encoder = clone_frozen(encoder)  # under `strategy.scope()` when distributed
...
# in train_step, outside the GradientTape, before `optimizer.apply`:
ema_update(momentum_encoder.weights, encoder.weights, momentum=0.995)
keys = momentum_encoder(x, training=False)
```

Pass `.weights` (not `.trainable_variables`, which is empty for a frozen clone): both models list
them in the same order. Keras `weights` excludes the random-seed state of dropout layers.
"""
import keras
import tensorflow as tf


def _as_list(variables, name):
    if isinstance(variables, (tf.Variable, keras.Variable)):
        raise ValueError(f"`{name}` must be a list of variables, not a single variable.")
    return list(variables)


def _check_momentum(momentum):
    if isinstance(momentum, (int, float)) and not isinstance(momentum, bool):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1]. Received: momentum={momentum!r}")


def ema_update(target_variables, source_variables, momentum):
    """Exponential moving average of one list of variables towards another, in place.

    For each pair, `target <- momentum * target + (1 - momentum) * source`. `momentum = 1` keeps
    the target, `momentum = 0` copies the source. Works eagerly, inside `tf.function`, and under a
    `tf.distribute` strategy both in the cross-replica context and in a replica context (the body
    of `train_step` or `strategy.run`): as the Keras optimizers do, it enters the cross-replica
    context and updates each replica's copy of a mirrored target from that replica's copy of its
    source, so mirrored targets stay identical across replicas whatever their `aggregation`.

    The update is not differentiated: call it outside any `tf.GradientTape`. Do not call it inside
    a layer's `call` under a mixed-precision policy (Keras autocasts variables there).

    Args:
        target_variables: list of float variables, the momentum (EMA) copy. Updated in place.
        source_variables: list of variables of the same length and shapes, the online weights,
            in the same order.
        momentum: float in `[0, 1]`, or a scalar tensor (e.g. a schedule). ESimCSE uses 0.995.

    Returns:
        None.

    Raises:
        ValueError: if the lists differ in length, a pair differs in shape, a target is not a
            floating-point variable, or a Python `momentum` is outside `[0, 1]`.
    """
    targets = _as_list(target_variables, "target_variables")
    sources = _as_list(source_variables, "source_variables")
    if len(targets) != len(sources):
        raise ValueError(
            "`target_variables` and `source_variables` must have the same length. "
            f"Received: {len(targets)} targets and {len(sources)} sources."
        )
    _check_momentum(momentum)
    for i, (target, source) in enumerate(zip(targets, sources)):
        if tuple(target.shape) != tuple(source.shape):
            raise ValueError(
                f"Shape mismatch at index {i}: target {_describe(target)} has shape "
                f"{tuple(target.shape)} but source {_describe(source)} has shape "
                f"{tuple(source.shape)}."
            )
        if not tf.as_dtype(_storage_dtype(target)).is_floating:
            raise ValueError(
                f"Target {_describe(target)} at index {i} has dtype {_storage_dtype(target)}; "
                "only floating-point variables can be averaged."
            )
    targets = [_tf_variable(v) for v in targets]
    sources = [_tf_variable(v) for v in sources]
    # Like the Keras optimizers: in a replica context, step into the cross-replica context and
    # update each replica's copy of every target from that replica's copy of its source.
    owner = _owning_strategy(targets)
    if owner is not None and not tf.distribute.has_strategy():
        # Mirrored targets updated outside `strategy.scope()`: enter their strategy.
        with owner.scope():
            _ema_update_in_context(targets, sources, momentum)
    else:
        _ema_update_in_context(targets, sources, momentum)


def _owning_strategy(variables):
    for variable in variables:
        if isinstance(variable, tf.distribute.DistributedValues):
            return getattr(variable, "distribute_strategy", None)
    return None


def _ema_update_in_context(targets, sources, momentum):
    if tf.distribute.in_cross_replica_context():
        _ema_update_cross_replica(tf.distribute.get_strategy(), targets, sources, momentum)
    else:
        tf.distribute.get_replica_context().merge_call(
            _ema_update_cross_replica, args=(targets, sources, momentum)
        )


def _ema_update_cross_replica(strategy, targets, sources, momentum):
    def update(target, source, momentum):
        m = tf.cast(momentum, target.dtype)
        s = tf.cast(tf.stop_gradient(tf.convert_to_tensor(source)), target.dtype)
        return target.assign(m * tf.convert_to_tensor(target) + (1.0 - m) * s)

    for target, source in zip(targets, sources):
        if isinstance(target, tf.distribute.DistributedValues):
            strategy.extended.update(target, update, args=(source, momentum), group=False)
        else:
            update(target, source, momentum)


def _tf_variable(variable):
    # The backing tf.Variable of a Keras variable (as the Keras TF optimizer does), so that
    # tf.distribute sees the mirrored variable itself.
    if isinstance(variable, keras.Variable):
        return variable.value
    return variable


def _storage_dtype(variable):
    # Keras variables report the autocast dtype inside an autocast scope; use the stored one.
    if isinstance(variable, keras.Variable):
        return variable.value.dtype
    return variable.dtype


def _describe(variable):
    return repr(getattr(variable, "path", None) or getattr(variable, "name", "<variable>"))


def clone_frozen(model, inputs=None):
    """A frozen copy of a Keras model, to serve as a momentum encoder.

    The copy is rebuilt from `model.get_config()` (so the model must be serializable), built the
    way `model` was built (or by calling it on `inputs`), given `model`'s current weights, and made
    non-trainable. Its variables are new: changing one model's weights does not change the
    other's. Create it under the same `tf.distribute` strategy scope as `model`.

    The momentum encoder must run with `training=False` (dropout off, as in the official ESimCSE
    code) and outside the `tf.GradientTape`; `trainable = False` keeps it out of
    `trainable_variables` but does not turn dropout off by itself. Update it with
    `ema_update(clone.weights, model.weights, momentum)`.

    Args:
        model: a built `keras.Model` (any functional or subclassed model with `get_config`).
        inputs: optional example inputs (a batch in the structure `model` takes). Used to build
            the copy by calling it when rebuilding from the config and from `model`'s build config
            does not create its weights. Defaults to `None`.

    Returns:
        A new `keras.Model` of the same class with equal weights and `trainable = False`.

    Raises:
        ValueError: if `model` is not built, or the copy cannot be built with the same weights.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    if not model.built:
        raise ValueError(
            f"`model` ({model.name}) must be built (called once on inputs) before it is cloned."
        )
    clone = model.__class__.from_config(model.get_config())
    if not _same_structure(clone, model):
        if inputs is not None:
            clone(inputs, training=False)
        else:
            build_config = model.get_build_config()
            if build_config is not None and not clone.built:
                clone.build_from_config(build_config)
    if not _same_structure(clone, model):
        raise ValueError(
            f"Could not rebuild a copy of {model.name} with the same weights: the copy has "
            f"{len(clone.weights)} weights, the original {len(model.weights)}. Pass `inputs` "
            "(an example batch) so that the copy can be built by calling it."
        )
    clone.set_weights(model.get_weights())
    clone.trainable = False
    return clone


def _same_structure(a, b):
    return len(a.weights) == len(b.weights) and all(
        tuple(x.shape) == tuple(y.shape) for x, y in zip(a.weights, b.weights)
    )
