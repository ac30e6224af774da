"""DiffCSE (Chuang et al., 2022): SimCSE + conditional replaced-token detection (RTD).

Checked against voidism/DiffCSE (`diffcse/models.py` `cl_forward`, `train.py`, `run_diffcse.sh`):

- Batches (`tf_esimcse.data.diffcse_views`): the sentence (encoded twice, as SimCSE) and two masked copies of it,
  each masked independently with BERT's 80/10/10 scheme at `--masking_ratio` 0.30 (the data
  collator's `mask_tokens`, one mask per copy, with the tokenizer's own mask id; the start, end,
  padding and mask tokens are never masked).
- Pre-tape hook (`before_step`): the frozen MLM generator reads each masked copy and its argmax
  fills EVERY position (`g_pred = generator(...).argmax(-1)`), position 0 is reset to the start
  token ([CLS]; `<s>` for RoBERTa: the official `cls_token=0`); "replaced" = the fill differs from
  the original token, on non-padding positions; the edited sentence is the fill with its padding
  set to the padding id (`e_inputs = g_pred * attention_mask` in the official code: the same for
  BERT, whose [PAD] is 0; RoBERTa's `<pad>` is 1, and 0 is its `<s>`, so here padding stays
  `<pad>`). The official generator runs in the model's training mode (the Trainer's
  `model.train()` reaches it), so its dropout is on: `generator_dropout=True`.
- RoBERTa (`RobertaForCL`; the README: `--generator_name distilroberta-base` for `roberta-base`):
  the same, with a keras-hub `RobertaMaskedLM` generator, which takes no segment ids (nor does a
  model without that input get any: `generator_vocabulary.model_inputs`). The generator must share
  the encoder's family and vocabulary (`generator_vocabulary.check_generator_vocabulary`: one-line
  error otherwise, e.g. a BERT generator for a RoBERTa encoder).
- Sentence embeddings: `cls` pooling; with `batchnorm=True` (`--batchnorm`) through the
  `ProjectionMLP` (Linear(H, 2H, no bias), BatchNorm, ReLU, Linear(2H, H, no bias), BatchNorm
  without affine), used in training only (`--mlp_only_train`); the projected, unnormalised
  vectors feed both the contrastive loss (cosine) and the discriminator.
- Discriminator: a copy of the sentence encoder's backbone initialised from the same pretrained
  weights (`discriminator.load_state_dict(pretrained.bert.state_dict())`), trained, whose
  embedding output at position 0 is replaced by the embedding of the ORIGINAL sentence of that
  row (`cls_input`; not detached, so the RTD gradient reaches the sentence encoder); a fresh
  `Linear(H, 2)` head per token (`electra_head`, PyTorch's default init).
- Loss: SimCSE's InfoNCE + lambda (0.005) x cross-entropy of the 2-way head against "replaced".
  The official loss averages over every position of the padded batch (padding counts as "not
  replaced"); here, as specified for this package, over non-padding tokens
  (`rtd_on_padding=True` gives the official average).
- Under a strategy the contrastive negatives are gathered as for SimCSE; the RTD loss is each
  replica's sum divided by the GLOBAL token count, so that one device and N replicas compute the
  same loss and gradients.

The generator and the discriminator live on this objective, never in the `SentenceEncoder`: they
are not saved with the encoder, exported or served.
"""
import math

import keras
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.backbones import load_generator
from tf_esimcse.data.diffcse_views import MASKED_VIEWS
from tf_esimcse.distribution import gather_replicas, num_replicas
from tf_esimcse.generator_vocabulary import check_generator_vocabulary
from tf_esimcse.generator_vocabulary import model_inputs
from tf_esimcse.generator_vocabulary import special_ids
from tf_esimcse.objectives.simcse import SimCSEObjective


def backbone_label(backbone):
    """`KerasHubEncoder(DistilBertBackbone)` for a wrapped keras-hub backbone, else the class name."""
    inner = getattr(backbone, "backbone", None)
    return f"{type(backbone).__name__}({type(inner).__name__})" if inner is not None else type(backbone).__name__


def projection_mlp(hidden_dim, name="projection"):
    """DiffCSE's `ProjectionMLP` (`--batchnorm`), with BERT's initialisation of its Linear layers
    (normal, std 0.02: `init_weights()` runs after it is built) and PyTorch BatchNorm's defaults
    (momentum 0.1, i.e. Keras momentum 0.9; epsilon 1e-5)."""
    init = keras.initializers.RandomNormal(stddev=0.02)
    return keras.Sequential([
        keras.layers.Dense(2 * hidden_dim, use_bias=False, kernel_initializer=init),
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
        keras.layers.ReLU(),
        keras.layers.Dense(hidden_dim, use_bias=False, kernel_initializer=init),
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False, scale=False),
    ], name=name)


@tf_esimcse_export("objectives.DiffCSEObjective")
class DiffCSEObjective(SimCSEObjective):
    """SimCSE's InfoNCE plus lambda x conditional replaced-token detection (module docstring).

    Args:
        generator: str or `keras_hub.models.MaskedLM`. The frozen MLM generator: a keras-hub
            preset (directory or name) or a ready model (then not part of `get_config`). Its
            family and vocabulary must be the sentence encoder's (a `BertMaskedLM` for BERT, a
            `RobertaMaskedLM` for RoBERTa).
        temperature: float. Defaults to `0.05`.
        rtd_weight: float. DiffCSE's lambda. Defaults to `0.005` (BERT-base).
        batchnorm: bool. Project the [CLS] vectors with DiffCSE's BatchNorm MLP in training.
            Use it with a `cls_before_pooler` encoder (the recipe does). Defaults to `True`.
        generator_dropout: bool. Run the generator with dropout on, as the official training
            does. Defaults to `True`.
        rtd_on_padding: bool. Average the RTD loss over every position (official) instead of
            the non-padding ones. Defaults to `False`.
        cross_replica_negatives: see `SimCSEObjective`.
        mask_duplicates: see `SimCSEObjective` (forwarded through `**kwargs`). Defaults to `False`.
        cls_token_id: int or None. The start id ([CLS], RoBERTa's `<s>`) written at position 0
            of the edits; `None` reads it from the encoder's tokenizer at `setup`.
        pad_token_id: int or None. The padding id ([PAD], RoBERTa's `<pad>`) written at the
            edits' padding positions; `None` reads it from the encoder's tokenizer at `setup`.

    Returns (from `loss_terms`): `{"contrastive": loss, "rtd": loss}`; logs also
    `rtd_accuracy_replaced`, `rtd_accuracy_kept`, `replaced_fraction`.
    """

    term_names = ("contrastive", "rtd")
    normalized_embeddings = False

    def __init__(self, generator, temperature=0.05, rtd_weight=0.005, batchnorm=True, generator_dropout=True,
                 rtd_on_padding=False, cross_replica_negatives=True, loss_weights=None, cls_token_id=None,
                 pad_token_id=None, **kwargs):
        if loss_weights is None:
            loss_weights = {"rtd": rtd_weight}
        super().__init__(temperature=temperature, cross_replica_negatives=cross_replica_negatives,
                         loss_weights=loss_weights, **kwargs)
        if not rtd_weight >= 0:
            raise ValueError(f"rtd_weight must be >= 0, got {rtd_weight!r}.")
        self.rtd_weight = float(rtd_weight)
        self.generator_source = generator if isinstance(generator, str) else None
        self._generator_model = None if isinstance(generator, str) else generator
        if generator is None or (self.generator_source is not None and not self.generator_source.strip()):
            raise ValueError("DiffCSEObjective needs a generator: a keras-hub MaskedLM preset (e.g. the output of "
                             "recipes/pretrain_mlm.py) or a MaskedLM model.")
        self.batchnorm = bool(batchnorm)
        self.generator_dropout = bool(generator_dropout)
        self.rtd_on_padding = bool(rtd_on_padding)
        self.generator = None
        self.discriminator = None
        self.rtd_head = None
        self.projection = None
        self.cls_token_id = None if cls_token_id is None else int(cls_token_id)
        self.pad_token_id = None if pad_token_id is None else int(pad_token_id)
        self.rtd_trackers = {name: keras.metrics.Mean(name=name)
                             for name in ("rtd_accuracy_replaced", "rtd_accuracy_kept", "replaced_fraction")}

    @property
    def metrics(self):
        return list(self.rtd_trackers.values())

    def setup(self, encoder):
        if not hasattr(encoder.backbone, "call_with_first_token_embedding") or \
                getattr(encoder.backbone, "encoding_model", True) is None:
            raise ValueError(
                f"DiffCSE's discriminator replaces the first token's embedding, which this encoder's backbone "
                f"({backbone_label(encoder.backbone)}) does not expose: use SimCSE, ESimCSE or supervised SimCSE.")
        self.generator = self._generator_model or load_generator(self.generator_source)
        self.generator.trainable = False
        tokenizer = getattr(getattr(encoder, "preprocessor", None), "tokenizer", None)
        ids = special_ids(tokenizer) if tokenizer is not None else None  # None: rebuilt without a vocabulary
        if ids is None and (self.cls_token_id is None or self.pad_token_id is None):
            raise ValueError("DiffCSE needs the start and padding ids: an encoder with its tokenizer, or "
                             "cls_token_id= and pad_token_id=.")
        if self.cls_token_id is None:
            self.cls_token_id = ids["start"]
        if self.pad_token_id is None:
            self.pad_token_id = ids["pad"]
        check_generator_vocabulary(self.generator, tokenizer if ids is not None else None,
                                   encoder.backbone.vocabulary_size, source=self.generator_source)
        self.discriminator = encoder.copy_backbone(trainable=True)
        hidden = int(encoder.hidden_dim)
        bound = 1.0 / math.sqrt(hidden)  # torch.nn.Linear's default initialisation
        self.rtd_head = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound), name="rtd_head")
        self.rtd_head.build((None, None, hidden))
        if self.batchnorm:
            self.projection = projection_mlp(hidden)
            self.projection.build((None, hidden))

    def views(self, x):
        return [x["anchor"], x["anchor"]]

    # --- pre-tape: the generator's edits -------------------------------------------------
    def generate(self, x):
        """(edited token ids, replaced 0/1, padding mask), each `(2N, L)` int32, for the two
        masked copies of `x["anchor"]`."""
        anchor = x["anchor"]
        original = tf.concat([anchor["token_ids"]] * 2, axis=0)
        mask = tf.cast(tf.concat([anchor["padding_mask"]] * 2, axis=0), tf.int32)
        masked = tf.concat([x[name]["token_ids"] for name in MASKED_VIEWS], axis=0)
        length = tf.shape(masked)[1]
        positions = tf.tile(tf.range(length)[None, :], [tf.shape(masked)[0], 1])
        logits = self.generator(model_inputs(self.generator, masked, mask, mask_positions=positions),
                                training=self.generator_dropout)
        prediction = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
        prediction = tf.concat([tf.fill([tf.shape(prediction)[0], 1], self.cls_token_id), prediction[:, 1:]], axis=1)
        replaced = tf.cast(tf.not_equal(prediction, tf.cast(original, tf.int32)), tf.int32) * mask
        edited = prediction * mask + self.pad_token_id * (1 - mask)  # padding: the padding id ([PAD] 0, <pad> 1)
        return tf.stop_gradient(edited), tf.stop_gradient(replaced), mask

    def before_step(self, encoder, x, new_data_epoch):
        edited, replaced, mask = self.generate(x)
        return {"edited": edited, "replaced": replaced, "mask": mask}

    # --- in the tape -----------------------------------------------------------------------
    def loss_terms(self, encoder, x, embeddings, context, training):
        z = tf.concat(embeddings, axis=0)
        if self.projection is not None and training:
            z = self.projection(z, training=training)
        z1, z2 = tf.split(z, 2, axis=0)
        terms = {"contrastive": self.contrastive_loss(z1, z2, anchor_ids=self.anchor_token_ids(x))}
        if not context:  # test_step: no generator edits
            terms["rtd"] = tf.zeros((), tf.float32)
            return terms
        edited, replaced, mask = context["edited"], context["replaced"], context["mask"]
        outputs = self.discriminator.call_with_first_token_embedding(
            model_inputs(self.discriminator, edited, mask), tf.cast(z, self.discriminator.compute_dtype),
            training=training)
        logits = tf.cast(self.rtd_head(outputs["sequence_output"]), tf.float32)
        per_token = keras.losses.sparse_categorical_crossentropy(replaced, logits, from_logits=True)
        weights = tf.ones_like(per_token) if self.rtd_on_padding else tf.cast(mask, tf.float32)
        local_count = tf.reduce_sum(weights)
        global_count = local_count
        if num_replicas() > 1:  # every replica divides by the global count: N replicas == one device
            global_count = tf.reduce_sum(gather_replicas(local_count[None]))
        terms["rtd"] = tf.reduce_sum(per_token * weights) / tf.maximum(global_count, 1.0) * float(num_replicas())

        predicted = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
        real = tf.cast(mask, tf.float32)
        is_replaced = tf.cast(replaced, tf.float32)
        kept = real * (1.0 - is_replaced)
        correct = tf.cast(tf.equal(predicted, replaced), tf.float32)
        self.rtd_trackers["rtd_accuracy_replaced"].update_state(
            tf.reduce_sum(correct * is_replaced) / tf.maximum(tf.reduce_sum(is_replaced), 1.0))
        self.rtd_trackers["rtd_accuracy_kept"].update_state(
            tf.reduce_sum(correct * kept) / tf.maximum(tf.reduce_sum(kept), 1.0))
        self.rtd_trackers["replaced_fraction"].update_state(
            tf.reduce_sum(is_replaced) / tf.maximum(tf.reduce_sum(real), 1.0))
        return terms

    def get_config(self):
        config = super().get_config()
        config.pop("same_dropout_mask", None)
        config.pop("two_encoders", None)
        config.pop("loss_weights", None)
        config.update({"generator": self.generator_source, "rtd_weight": self.rtd_weight, "batchnorm": self.batchnorm,
                       "generator_dropout": self.generator_dropout, "rtd_on_padding": self.rtd_on_padding,
                       "cls_token_id": self.cls_token_id, "pad_token_id": self.pad_token_id})
        return config

