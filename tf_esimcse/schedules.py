"""Learning-rate schedules of the training runs: HF Trainer's linear warm-up then linear decay.

`linear_schedule(learning_rate, total_steps, warmup_ratio)` is Hugging Face Trainer's default
(`get_linear_schedule_with_warmup`): the rate rises linearly from 0 to `learning_rate` over the
first `int(total_steps * warmup_ratio)` steps (none by default, as SimCSE trains), then falls
linearly to exactly 0 at `total_steps` and stays there (never negative) for any later step.

Both classes are registered with Keras (package "tf_esimcse"), and `get_config`/`from_config`
round-trip, so an optimizer that holds one can be serialised and rebuilt.
"""
import keras

__all__ = ["LinearDecay", "WarmupThen", "linear_schedule"]


@keras.saving.register_keras_serializable(package="tf_esimcse")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear decay from `learning_rate` at step 0 to 0 at `decay_steps`, clamped at 0 after.

    `lr(step) = learning_rate * max(0, 1 - step / decay_steps)`, with `step` also clamped at 0
    from below, so the rate is in `[0, learning_rate]` for every step.

    Args:
        learning_rate: float. The rate at step 0.
        decay_steps: int. Steps until the rate reaches 0. 0 gives a rate of 0 at every step (the
            decay part of a schedule whose warm-up lasts the whole run, as Hugging Face's).
        name: str. Name scope of the computation. Defaults to "LinearDecay".
    """

    def __init__(self, learning_rate, decay_steps, name="LinearDecay"):
        super().__init__()
        if int(decay_steps) < 0:
            raise ValueError(f"decay_steps must be >= 0, got {decay_steps}")
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.name = name

    def __call__(self, step):
        step = keras.ops.maximum(keras.ops.cast(step, "float32"), 0.0)
        if self.decay_steps == 0:
            return keras.ops.zeros_like(step)
        remaining = keras.ops.maximum(1.0 - step / float(self.decay_steps), 0.0)
        return self.learning_rate * remaining

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_steps": self.decay_steps, "name": self.name}


@keras.saving.register_keras_serializable(package="tf_esimcse")
class WarmupThen(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then the `after` schedule.

    At step `s < warmup_steps` the rate is `peak * s / warmup_steps`; from `warmup_steps` on it
    is `after(s - warmup_steps)`, so `after` sees its own step count starting at 0.

    Args:
        peak: float. The rate reached at the end of the warm-up.
        warmup_steps: int. Length of the warm-up; must be positive.
        after: a `keras.optimizers.schedules.LearningRateSchedule` (or a callable of the step).
            `from_config` also accepts its serialised form (as `get_config` writes it).
    """

    def __init__(self, peak, warmup_steps, after):
        super().__init__()
        if int(warmup_steps) <= 0:
            raise ValueError(f"warmup_steps must be positive, got {warmup_steps}")
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        self.peak, self.warmup_steps, self.after = float(peak), int(warmup_steps), after

    def __call__(self, step):
        step = keras.ops.maximum(keras.ops.cast(step, "float32"), 0.0)
        warm = self.peak * step / float(self.warmup_steps)
        # `after` is evaluated at a negative step inside the warm-up; `where` discards that value.
        after = keras.ops.cast(self.after(keras.ops.maximum(step - self.warmup_steps, 0.0)), "float32")
        return keras.ops.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "after": keras.saving.serialize_keras_object(self.after)}

    @classmethod
    def from_config(cls, config):
        """Rebuild the schedule, deserialising the `after` schedule from its config.

        Args:
            config: dict. As returned by `get_config`.

        Returns:
            A `WarmupThen`.
        """
        config = dict(config)
        after = config.pop("after")
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        return cls(after=after, **config)


def linear_schedule(learning_rate, total_steps, warmup_ratio=0.0):
    """HF Trainer's default schedule: linear warm-up (none by default) then linear decay to 0.

    Args:
        learning_rate: float. The peak rate (at step 0 without warm-up).
        total_steps: int. Training steps; the rate is 0 from this step on.
        warmup_ratio: float. Fraction of `total_steps` spent warming up from 0
            (`int(total_steps * warmup_ratio)` steps). Defaults to 0.

    Returns:
        A `LinearDecay` without warm-up, else a `WarmupThen` holding one; never negative.
    """
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    total_steps = int(total_steps)
    warmup = int(total_steps * warmup_ratio)
    # Hugging Face: the decay reaches 0 at `total_steps` whatever the warm-up (also when the
    # warm-up is the whole run: then it is 0 from `total_steps` on, with no decay at all).
    decay = LinearDecay(learning_rate, decay_steps=max(total_steps - warmup, 0))
    if warmup == 0:
        return decay
    return WarmupThen(learning_rate, warmup, decay)
