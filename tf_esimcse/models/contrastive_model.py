"""`ContrastiveModel`: the one training step of every method, around a `SentenceEncoder`.

The data flows one way: tf.data views -> this step -> the objective's loss terms -> callbacks.
A method (SimCSE, supervised SimCSE, ESimCSE, ...) is an `Objective` plugged in here; the step
itself (tape, gradients, global clipping, the optimizer update, logs) is written once.
"""
import keras
import tensorflow as tf

from tf_esimcse import private_apis
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.distribution import clip_global_norm, reducible_logs, scale_for_replicas
from tf_esimcse.layers.hash_dropout import random_states
from tf_esimcse.models.cached_step import cached_gradients, check_rows_independent
from tf_esimcse.models.view_batches import concat_views, width_groups


_RANDOM_STATE_KEY = "random_state_"


def zero_if_nonfinite(gradients):
    """`(gradients, count)`: the number of non-finite gradient entries (summed over replicas) and
    the gradients, all zeroed when that count is not 0, so that a NaN or Inf gradient never
    reaches the weights: they stay finite (the optimizer's momentum from earlier steps may still
    move them; nothing else does), and the run stops on the logged count (see
    `tf_esimcse.training.NonFiniteGuard`)."""
    dense = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
    counts = [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(g)), tf.float32)) for g in dense if g is not None]
    count = tf.add_n(counts) if counts else tf.zeros(())
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
    ok = tf.equal(count, 0.0)
    return [None if g is None else tf.where(ok, g, tf.zeros_like(g)) for g in dense], count


@tf_esimcse_export("models.ContrastiveModel")
class ContrastiveModel(keras.Model):
    """A `SentenceEncoder` trained by an `Objective` with `model.fit`.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder`; its pooler is the training pooler (SimCSE's
            unsupervised recipe uses `pooler_type="cls", mlp_only_train=True`).
        objective: a `tf_esimcse.objectives.Objective` (e.g. `SimCSEObjective()`).
        max_grad_norm: float or None. Clip the GLOBAL gradient (summed over replicas) to this
            norm, as the Hugging Face Trainer behind the official code does (1.0). `None`
            (default) does not clip; the recipes pass 1.0.
        steps_per_data_epoch: int or None. Optimizer steps per pass over the training data; the
            objective is told when a data epoch begins (ESimCSE empties its queue then), read
            from the optimizer's step counter, so it holds across resumed runs whose Keras epochs
            are shorter chunks. `None` (default): no data-epoch boundaries.
        mini_batch_size: int or None. Train with the cached large-batch step
            (`tf_esimcse.models.cached_step`): the batch is embedded in mini-batches of this many
            rows (views counted separately), the loss is taken over the whole batch, and each
            mini-batch is replayed under a tape with the same dropout masks, so the loss and
            gradients are the plain step's (with hash dropout) in the memory of one mini-batch.
            Needs an encoder built with `fast_dropout=True` and no BatchNormalization.
            `None` (default): the plain step.

    Distribution: `train_step` runs once per replica. Objectives all-gather what must span the
    global batch (`tf_esimcse.distribution.gather_replicas`); each replica's loss is divided by the
    number of replicas before the gradient, because the optimizer sums replica gradients.

    Logs: `loss` (the weighted total), `<term>_loss` for each of the objective's terms,
    `learning_rate`, and the objective's own values (e.g. `queue_fill`).

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls", mlp_only_train=True)
    model = ContrastiveModel(encoder, SimCSEObjective(temperature=0.05), max_grad_norm=1.0)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0))
    model.fit(unsup_dataset(sentences, encoder.preprocessor, repeat=True), steps_per_epoch=100)
    ```
    """

    def __init__(self, encoder, objective, max_grad_norm=None, steps_per_data_epoch=None, mini_batch_size=None,
                 **kwargs):
        super().__init__(**kwargs)
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}.")
        if steps_per_data_epoch is not None and (isinstance(steps_per_data_epoch, bool)
                                                 or int(steps_per_data_epoch) != steps_per_data_epoch
                                                 or int(steps_per_data_epoch) < 1):
            raise ValueError(f"steps_per_data_epoch must be a positive integer or None, got {steps_per_data_epoch!r}.")
        if mini_batch_size is not None and (isinstance(mini_batch_size, bool) or int(mini_batch_size) != mini_batch_size
                                            or int(mini_batch_size) < 1):
            raise ValueError(f"mini_batch_size must be a positive integer or None, got {mini_batch_size!r}.")
        if mini_batch_size is not None:
            check_rows_independent(encoder)
        # === Layers ===
        self.encoder = encoder
        # BERT's own pretraining pooler (dense+tanh on [CLS]) is not part of any SimCSE pooler.
        encoder.freeze_bert_pooler()
        self.objective = objective
        objective.setup(encoder)
        # === Config ===
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.steps_per_data_epoch = None if steps_per_data_epoch is None else int(steps_per_data_epoch)
        self.mini_batch_size = None if mini_batch_size is None else int(mini_batch_size)
        # === Metrics ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {name: keras.metrics.Mean(name=f"{name}_loss") for name in objective.term_names}
        # The encoder is built on construction, so this model is too (BackupAndRestore needs it).
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, *self.term_trackers.values(), *getattr(self.objective, "metrics", [])]

    def call(self, inputs, training=False):
        return self.encoder(inputs, training=training)

    # --- the step ---------------------------------------------------------------------------
    def embed_views(self, x, training=True):
        """Encode the objective's views of `x` and return a list of (batch, dim) embeddings.

        Views of one width (the usual case) go through ONE forward pass, concatenated along the
        batch (dropout masks differ per row). Views of different static widths (ESimCSE's
        positives kept up to max_len + 9 tokens, as the official code keeps them) get one pass
        per width, so the shorter views are not padded to the longest: padding changes no
        output, only the cost. Each pass draws its own dropout seeds.
        """
        views = self.objective.views(x)
        out = [None] * len(views)
        for members in width_groups(views):
            part = [views[i] for i in members]
            sizes = [tf.shape(v["token_ids"])[0] for v in part]
            embeddings = self.embed_view(concat_views(part), training)
            for i, emb in zip(members, tf.split(embeddings, sizes, axis=0)):
                out[i] = emb
        return out

    def embed_view(self, view, training):
        """The encoder's embeddings of one view batch, or its pooled vectors before L2
        normalisation for objectives that need their scale (`normalized_embeddings = False`,
        e.g. DiffCSE's discriminator input); the contrastive losses normalise either way."""
        normalize = None if getattr(self.objective, "normalized_embeddings", True) else False
        return self.encoder.embed(view, training=training, normalize=normalize)

    def total_loss(self, terms):
        """The differentiated loss: the objective's terms, each times its weight."""
        total = None
        for name in self.objective.term_names:
            weighted = terms[name] * self.objective.weight_of(name)
            total = weighted if total is None else total + weighted
        return total

    def _new_data_epoch(self):
        if self.steps_per_data_epoch is None:
            return tf.constant(False)
        step = tf.convert_to_tensor(self.optimizer.iterations)
        return tf.equal(step % self.steps_per_data_epoch, 0)

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        context = self.objective.before_step(self.encoder, x, self._new_data_epoch())
        variables = self.trainable_variables
        loss, terms, gradients = self.loss_and_gradients(x, context)
        gradients, nonfinite = zero_if_nonfinite(clip_global_norm(gradients, self.max_grad_norm))
        self.optimizer.apply(gradients, variables)
        self.objective.after_step(context)
        self._track(loss, terms)
        logs = self._logs()
        logs["learning_rate"] = self.optimizer.learning_rate
        logs["nonfinite_gradients"] = nonfinite
        return reducible_logs(logs)

    def loss_and_gradients(self, x, context):
        """`(loss, terms, gradients)` of batch `x` given the objective's step `context`, the
        gradients (of the loss scaled for the replicas) lined up with `trainable_variables`: one
        tape over the whole batch, or the cached step when `mini_batch_size` is set."""
        if self.mini_batch_size is not None:
            def loss_fn(embeddings):
                terms = self.objective.loss_terms(self.encoder, x, embeddings, context, training=True)
                return self.total_loss(terms), terms

            return cached_gradients(self.objective.views(x), lambda view: self.embed_view(view, training=True),
                                    loss_fn, self.trainable_variables, self.encoder, self.mini_batch_size)
        with tf.GradientTape() as tape:
            embeddings = self.embed_views(x, training=True)
            terms = self.objective.loss_terms(self.encoder, x, embeddings, context, training=True)
            loss = self.total_loss(terms)
            scaled = scale_for_replicas(loss)
        return loss, terms, tape.gradient(scaled, self.trainable_variables)

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        embeddings = self.embed_views(x, training=False)
        terms = self.objective.loss_terms(self.encoder, x, embeddings, None, training=False)
        self._track(self.total_loss(terms), terms)
        return reducible_logs({m.name: m.result() for m in self.metrics})

    def _track(self, loss, terms):
        self.loss_tracker.update_state(loss)
        for name, tracker in self.term_trackers.items():
            tracker.update_state(terms[name])

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(self.objective.step_logs())
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # See tf_esimcse.private_apis: Keras' symbolic build fails on dict batches under
        # MultiWorkerMirroredStrategy; this model is built at construction.
        return private_apis.symbolic_build_without_reduce(
            self, super()._maybe_symbolic_build, iterator=iterator, data_batch=data_batch)

    # --- config -----------------------------------------------------------------------------
    # --- what a backup holds ----------------------------------------------------------------
    def random_states(self):
        """The state variables of every random-seed generator in the model (each dropout
        layer's), in a fixed order: the variables that are not weights."""
        return random_states(self)

    def save_own_variables(self, store):
        """Keras' weights files hold weights and optimizer, not the seed generators' states;
        without them a resumed run draws its dropout masks again from the start of the stream
        and drifts from the uninterrupted run. They are saved here, under `random_state_<i>`."""
        super().save_own_variables(store)
        for i, variable in enumerate(self.random_states()):
            store[f"{_RANDOM_STATE_KEY}{i}"] = keras.ops.convert_to_numpy(variable)

    def load_own_variables(self, store):
        keys = list(store.keys())
        random_keys = sorted((k for k in keys if k.startswith(_RANDOM_STATE_KEY)),
                             key=lambda k: int(k[len(_RANDOM_STATE_KEY):]))
        super().load_own_variables({k: store[k] for k in keys if not k.startswith(_RANDOM_STATE_KEY)})
        if not random_keys:
            return  # a file from before random states were saved
        states = self.random_states()
        if len(random_keys) != len(states):
            raise ValueError(f"The weights file holds {len(random_keys)} random-generator states; this model has "
                             f"{len(states)} (a different architecture or dropout setting).")
        for key, variable in zip(random_keys, states):
            variable.assign(store[key])

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "objective": keras.saving.serialize_keras_object(self.objective),
            "max_grad_norm": self.max_grad_norm,
            "steps_per_data_epoch": self.steps_per_data_epoch,
            "mini_batch_size": self.mini_batch_size,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "objective"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
