"""SimCSE (Gao et al., 2021): contrastive training of a `SentenceEncoder` with `model.fit`.

Unsupervised: each sentence is encoded twice in one forward pass of a 2N batch; dropout is
sampled per element, so the two copies get independent masks and form the positive pair; the
other sentences of the batch are the negatives. Supervised: (anchor, entailment, contradiction)
triplets; the contradictions add a block of hard-negative columns.
"""
import keras
import tensorflow as tf

from tf_esimcse import losses
from tf_esimcse.api_export import tf_esimcse_export


def _in_multi_worker_mode():
    strategy = tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    in_multi = getattr(extended, "_in_multi_worker_mode", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(in_multi and in_multi())


def _reducible(logs):
    """Keras' TF trainer reduces step outputs across workers with `reduce(MEAN, axis=0)`, which
    rejects scalars under MultiWorkerMirroredStrategy: give them a leading axis of 1 there."""
    if not _in_multi_worker_mode():
        return logs
    return {k: tf.reshape(tf.cast(v, tf.float32), [1]) for k, v in logs.items()}


def gather_replicas(tensor):
    """All-gather `tensor` over the replicas in sync (concatenated in replica order; the gather's
    gradient hands each replica its slice of the summed upstream gradient); identity on one."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensor
    return ctx.all_gather(tensor, axis=0)


def _scale(gradient, factor):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):  # embedding gradients
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def concat_views(views):
    """Concatenate several {token_ids, padding_mask} batches along the batch axis, padding
    them to a common length first (padding changes nothing for the encoder)."""
    if len(views) == 1:
        return views[0]
    length = tf.reduce_max([tf.shape(v["token_ids"])[1] for v in views])
    out = {}
    for key in ("token_ids", "padding_mask"):
        parts = [
            tf.pad(v[key], [[0, 0], [0, length - tf.shape(v[key])[1]]]) for v in views
        ]
        out[key] = tf.concat(parts, axis=0)
    return out


def split_views(views):
    """Accept either a plain view dict (unsupervised: the sentence twice) or a dict of named
    views {"anchor", "positive"[, "negative"]}; return the list of views to encode."""
    if "token_ids" in views:
        return [views, views]
    if "anchor" not in views or "positive" not in views:
        raise ValueError(
            "Training batches must be {'token_ids', 'padding_mask'} (one sentence, seen twice) or "
            f"{{'anchor', 'positive'[, 'negative']}} views; got keys {sorted(views)}."
        )
    out = [views["anchor"], views["positive"]]
    if "negative" in views:
        out.append(views["negative"])
    return out


@tf_esimcse_export("models.SimCSE")
class SimCSE(keras.Model):
    """SimCSE training model around a `SentenceEncoder`.

    Args:
        encoder: a `tf_esimcse.SentenceEncoder`; its pooler is the training pooler (SimCSE's
            unsupervised recipe uses `pooler_type="cls", mlp_only_train=True`).
        temperature: float. Softmax temperature. Defaults to `0.05`.
        hard_negative_weight: float. alpha for supervised hard negatives (log(alpha) added to
            the matching hard-negative logit). Defaults to `1.0` (no change).
        cross_replica_negatives: bool. Under a `tf.distribute` strategy, all-gather the
            positives (and hard negatives) of every replica, so that negatives span the global
            batch, as a single device would see it. Defaults to `True`.
        max_grad_norm: float or None. Clip the GLOBAL gradient (summed over replicas) to this
            norm, as the Hugging Face Trainer behind the official code does (`max_grad_norm`
            1.0). `None` (default) does not clip; the recipes pass 1.0.

    Distribution: `train_step` runs once per replica. Each replica keeps its own anchors z1 and
    all-gathers z2 (the gather's gradient hands each replica its own slice of the summed
    upstream gradient, so gradients are exact); its labels are offset by
    `replica_id * local_batch`, read inside the step. The loss is divided by the number of
    replicas before the gradient, because the optimizer sums replica gradients.

    Inputs to `fit`: batches of int32 dicts. Unsupervised: `{"token_ids", "padding_mask"}`
    (each sentence is used twice, with two dropout masks). Supervised or augmented:
    `{"anchor": {...}, "positive": {...}[, "negative": {...}]}`.

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls", mlp_only_train=True)
    model = SimCSE(encoder, temperature=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(3e-5, weight_decay=0.0))
    model.fit(dataset, steps_per_epoch=100)
    ```
    """

    def __init__(self, encoder, temperature=0.05, hard_negative_weight=1.0, cross_replica_negatives=True,
                 max_grad_norm=None, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        if not hard_negative_weight > 0:
            raise ValueError(f"hard_negative_weight must be > 0, got {hard_negative_weight!r}.")
        self.encoder = encoder
        # BERT's own pretraining pooler (dense+tanh on [CLS]) is not part of any SimCSE pooler.
        pooled_dense = getattr(encoder.backbone, "pooled_dense", None)
        if pooled_dense is not None:
            pooled_dense.trainable = False
        self.temperature = float(temperature)
        self.hard_negative_weight = float(hard_negative_weight)
        self.cross_replica_negatives = bool(cross_replica_negatives)
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}.")
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # The encoder is built on construction, so this model is too (BackupAndRestore needs it).
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        return self.encoder(inputs, training=training)

    # --- the step, in pieces that subclasses extend -------------------------------------------
    def embed_views(self, x, training=True):
        """Encode all views in ONE forward pass (dropout masks differ per row) and split."""
        views = split_views(x)
        sizes = [tf.shape(v["token_ids"])[0] for v in views]
        embeddings = self.encoder(concat_views(views), training=training)
        return tf.split(embeddings, sizes, axis=0)

    def compute_contrastive_loss(self, embeddings, extra_negatives=None, extra_mask=None):
        z1, z2 = embeddings[0], embeddings[1]
        hard = embeddings[2] if len(embeddings) > 2 else None
        offset = 0
        ctx = tf.distribute.get_replica_context()
        if self.cross_replica_negatives and ctx is not None and ctx.num_replicas_in_sync > 1:
            z2 = gather_replicas(z2)
            if hard is not None:
                hard = gather_replicas(hard)
            offset = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.shape(z1)[0]
        return losses.info_nce(
            z1, z2, temperature=self.temperature, hard_negatives=hard,
            hard_negative_weight=self.hard_negative_weight, queue=extra_negatives, queue_mask=extra_mask,
            label_offset=offset,
        )

    @staticmethod
    def scale_for_replicas(loss):
        """The optimizer sums replica gradients: scale each replica's loss by 1 / replicas."""
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        return loss / replicas if replicas > 1 else loss

    def clip_gradients(self, gradients):
        """Clip by the norm of the global gradient. Keras' own `global_clipnorm` would clip each
        replica's partial gradient before the optimizer sums them; here the replicas' gradients
        are summed first, clipped, and handed back divided by the replica count so that the
        optimizer's sum is the clipped global gradient."""
        if self.max_grad_norm is None:
            return gradients
        # Dense first: an embedding's IndexedSlices repeat an index once per occurrence of a
        # token (and once per replica after the all-reduce), so their `values` norm is not the
        # gradient's norm.
        gradients = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        if replicas > 1:
            gradients = ctx.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        gradients, _ = tf.clip_by_global_norm(gradients, self.max_grad_norm)
        if replicas > 1:
            gradients = [_scale(g, 1.0 / replicas) for g in gradients]
        return gradients

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            embeddings = self.embed_views(x, training=True)
            loss = self.compute_contrastive_loss(embeddings)
            scaled = self.scale_for_replicas(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(self.clip_gradients(gradients), self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return self._logs()

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss = self.compute_contrastive_loss(self.embed_views(x, training=False))
        self.loss_tracker.update_state(loss)
        return _reducible({m.name: m.result() for m in self.metrics})

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' TF trainer peeks at the first batch and `strategy.reduce`s it to build the
        # model symbolically; under MultiWorkerMirroredStrategy that reduce fails on dict
        # batches. Our models are built at construction, so only the optimizer slots are left.
        if getattr(self, "_distribute_strategy", None) is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def step_logs(self):
        """What `train_step` reports (subclasses add entries)."""
        logs = {m.name: m.result() for m in self.metrics}
        logs["learning_rate"] = self.optimizer.learning_rate
        return logs

    def _logs(self):
        return _reducible(self.step_logs())

    # --- config -------------------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "temperature": self.temperature,
            "hard_negative_weight": self.hard_negative_weight,
            "cross_replica_negatives": self.cross_replica_negatives,
            "max_grad_norm": self.max_grad_norm,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
