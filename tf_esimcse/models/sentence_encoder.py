"""SentenceEncoder: the inference model (strings or token ids -> L2-normalised embeddings).

It is what users encode with, what is evaluated, saved and exported. Training models (SimCSE,
ESimCSE, ...) wrap one; their training-only parts (an MLP head used only in training, a momentum
encoder, a queue) are never part of what `save_pretrained` writes.
"""
import contextlib

import keras
import numpy as np
import tensorflow as tf

from tf_esimcse import encoder_files
from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.encoder_files import POOLER_WEIGHTS_FILE  # noqa: F401 (kept importable from here)
from tf_esimcse.encoder_files import default_pooler_for  # noqa: F401 (kept importable from here)
from tf_esimcse.layers.matmul_precision import matmul_precision
from tf_esimcse.layers.pooler import Pooler, check_pooler_type, pooler_needs_hidden_states
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor, trim_to_longest
from tf_esimcse.progress import ProgressBar
from tf_esimcse.truncation import check_dim, truncate


@tf_esimcse_export("SentenceEncoder")
class SentenceEncoder(keras.Model):
    """A BERT backbone plus a `Pooler` (plus L2 normalisation): sentence embeddings.

    Args:
        backbone: a `tf_esimcse.BertEncoder` (see `tf_esimcse.backbones` to load one).
        pooler_type: str. See `Pooler`. Defaults to `"cls_before_pooler"`.
        mlp_only_train: bool. With `pooler_type="cls"`, use the MLP head only in training.
        first_layer: int. See `Pooler`. Defaults to `1`.
        normalize: bool. L2-normalise the output. Defaults to `True`.
        preprocessor: a `SentencePreprocessor`, needed by `encode()` on strings. Its
            `sequence_length` is the TRAINING truncation (SimCSE's max_seq_length 32).
        inference_length: int or None. Truncation used by `encode()`, evaluation and export.
            `None` (default) uses the backbone's `max_sequence_length`, i.e. no truncation in
            practice, as SimCSE's evaluation (`padding=True`, no `max_length`) does.
        truncate_dim: int or None. The size `encode()` returns by default: the first
            `truncate_dim` coordinates, L2-normalised again (see `tf_esimcse.truncation`); saved
            with the model and used by evaluation, search and the exports. `None` (default): the
            full `embedding_dim`. The forward pass (`call`, `embed`, training) always gives the
            full vector.

    Call arguments:
        inputs: dict of int32 `"token_ids"` and `"padding_mask"`, shape (batch, length).
        training: bool. Dropout (and an `mlp_only_train` head) on or off.

    Returns:
        Embeddings of shape (batch, hidden_dim), float32.

    Examples:
    ```python
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="avg")
    vectors = encoder.encode(["A man is playing a guitar.", "Someone plays music."])
    ```
    """

    def __init__(
        self,
        backbone,
        pooler_type="cls_before_pooler",
        mlp_only_train=False,
        first_layer=1,
        normalize=True,
        preprocessor=None,
        inference_length=None,
        truncate_dim=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_pooler_type(pooler_type)
        if pooler_needs_hidden_states(pooler_type) and not getattr(backbone, "output_hidden_states", False):
            backbone = backbone.with_settings(output_hidden_states=True)
        # === Layers ===
        self.backbone = backbone
        self.pooler = Pooler(
            pooler_type, hidden_dim=backbone.hidden_dim, mlp_only_train=mlp_only_train,
            first_layer=first_layer, name="pooler",
        )
        self.preprocessor = preprocessor
        # === Config ===
        self.pooler_type = pooler_type
        self.mlp_only_train = bool(mlp_only_train)
        self.first_layer = int(first_layer)
        self.normalize = bool(normalize)
        self.inference_length = None if inference_length is None else int(inference_length)
        self.truncate_dim = None if truncate_dim is None else check_dim(truncate_dim, self.embedding_dim,
                                                                        name="truncate_dim")
        # encode()/evaluation/export tokenizer: the same vocabulary, the inference length.
        self._inference_preprocessor = None
        length = self.inference_length or int(backbone.max_sequence_length)
        if preprocessor is not None and preprocessor.sequence_length != length:
            self._inference_preprocessor = SentencePreprocessor(
                preprocessor.tokenizer, sequence_length=length, name="inference_preprocessor"
            )
        self._predict_fns = {}
        # Build eagerly so weights exist (for set_weights, checkpoints and clones).
        dummy = {"token_ids": tf.zeros((1, 2), tf.int32), "padding_mask": tf.ones((1, 2), tf.int32)}
        self(dummy, training=False)

    @property
    def hidden_dim(self):
        return self.backbone.hidden_dim

    @property
    def inference_preprocessor(self):
        """The preprocessor of `encode()`, evaluation and export: the training one's tokenizer
        with `inference_length` (default: the backbone's max length) instead of max_len 32."""
        if self._inference_preprocessor is not None:
            return self._inference_preprocessor
        return self.preprocessor

    @property
    def uses_first_token_only(self):
        """True when the pooler reads only [CLS] and the backbone can skip the last layer's other
        positions (`BertEncoder.first_token_output`: the same numbers, ~14 % fewer FLOPs)."""
        return self.pooler_type in ("cls", "cls_before_pooler") and hasattr(self.backbone, "first_token_output")

    @property
    def embedding_dim(self):
        """The width of the embeddings `embed` returns (the pooler's output width)."""
        shape = self.pooler.compute_output_shape({"sequence_output": (None, None, self.hidden_dim)})
        return int(shape[-1])

    def backbone_outputs(self, inputs, training=False, backbone=None):
        """What the pooler reads: `backbone` (default: this encoder's) on `inputs` (`token_ids`,
        `padding_mask`), with the [CLS]-only last layer when `uses_first_token_only`."""
        backbone = backbone if backbone is not None else self.backbone
        token_ids = inputs["token_ids"]
        backbone_inputs = {
            "token_ids": token_ids, "segment_ids": keras.ops.zeros_like(token_ids),
            "padding_mask": inputs["padding_mask"],
        }
        if self.uses_first_token_only:
            return {"sequence_output": backbone.first_token_output(backbone_inputs, training=training)}
        return backbone(backbone_inputs, training=training)

    def embed(self, view, training=False, backbone=None, pooler_training=None, normalize=None):
        """The forward pass: backbone -> pooler -> L2 normalisation, on one view.

        `call` is `embed(inputs, training)`; the training step and the objectives call it with
        the options below, so the forward pass is written once.

        Args:
            view: dict of int32 `"token_ids"` and `"padding_mask"`, shape (batch, length).
            training: bool. Dropout (and an `mlp_only_train` head) on or off. Defaults to `False`.
            backbone: a backbone to run instead of this encoder's, with this encoder's pooler
                (ESimCSE's momentum copy, SimCSE's "two encoders" ablation; see
                `copy_backbone`). Defaults to `None` (this encoder's).
            pooler_training: bool or None. The pooler's training mode, when it differs from
                the backbone's (ESimCSE's momentum keys: backbone with dropout off, the live MLP
                head in training mode). Defaults to `None` (`training`).
            normalize: bool or None. L2-normalise the output; `None` (default) follows the
                encoder's `normalize` setting (DiffCSE's discriminator reads `False`).

        Returns:
            Embeddings of shape (batch, embedding_dim).
        """
        outputs = self.backbone_outputs(view, training=training, backbone=backbone)
        pooled = self.pooler(dict(outputs, padding_mask=view["padding_mask"]),
                             training=training if pooler_training is None else pooler_training)
        if self.normalize if normalize is None else normalize:
            pooled = keras.ops.normalize(pooled, axis=-1, order=2)
        return pooled

    def call(self, inputs, training=False):
        return self.embed(inputs, training=training)

    def copy_backbone(self, trainable=False):
        """A copy of the backbone: new variables holding its current weights.

        Args:
            trainable: bool. `False` (default): frozen, as a momentum encoder is (ESimCSE:
                averaged by EMA, run with dropout off outside the tape). `True`: trained with the
                encoder (SimCSE's "two encoders" ablation, DiffCSE's discriminator), except BERT's
                own pretraining pooler (`freeze_bert_pooler`).

        Returns:
            A new backbone of the same class. Create it under the strategy scope of the encoder.
        """
        copy = clone_frozen(self.backbone)
        if trainable:
            copy.trainable = True
            freeze_bert_pooler(copy)
        return copy

    def freeze_bert_pooler(self):
        """Freeze BERT's own pretraining pooler (`pooled_dense`: dense + tanh on [CLS]), which
        no SimCSE pooler uses, so that it is not trained (the training model calls this)."""
        freeze_bert_pooler(self.backbone)

    # ------------------------------------------------------------------ inference
    def _predict_step(self, precision="float32"):
        if precision not in self._predict_fns:
            spec = tf.TensorSpec([None, None], tf.int32)

            @tf.function(input_signature=[spec, spec])
            def fn(token_ids, padding_mask):
                return self({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

            with matmul_precision(precision):  # read while tracing
                fn.get_concrete_function()
            self._predict_fns[precision] = fn
        return self._predict_fns[precision]

    def encode(self, sentences, batch_size=64, verbose="auto", sort_by_length=True, precision="float32", dim=None):
        """Encode strings into a float32 NumPy array of shape (len(sentences), dim), in order.

        Sentences are tokenized once, sorted by length and padded per batch to the longest
        sentence (padding does not change the result).

        Progress (`tf_esimcse.progress.ProgressBar`): with `verbose="auto"` (default), for more
        than `10 * batch_size` sentences; `verbose=1` always, `0` never. On a terminal a bar that
        ends at `n/n`; in a log file or pipe plain lines without escape codes: one every 30 s of a
        long job, and a final `encoding n/n sentences ...` line if any was printed or with
        `verbose=1`.

        `precision="bfloat16"` runs the encoder's matrix products in bfloat16 (everything else in
        float32): faster on CPUs with bfloat16 units (AMX, AVX-512 BF16), embeddings within ~1e-4
        of float32 (see `tf_esimcse.layers.matmul_precision`). Defaults to `"float32"`.

        `dim=d` keeps the first `d` coordinates of each embedding and L2-normalises them again
        (when the encoder normalises; `tf_esimcse.truncation.truncate`): 1 <= d <=
        `embedding_dim`, else a `ValueError`. `None` (default) uses the encoder's `truncate_dim`
        (the full size when that is `None` too).
        """
        dim = self.truncate_dim if dim is None else check_dim(dim, self.embedding_dim)
        if dim == self.embedding_dim:
            dim = None  # the full vector, untouched
        if self.preprocessor is None:
            raise ValueError("This SentenceEncoder has no preprocessor: encode() needs one to read strings.")
        if isinstance(sentences, str):
            raise TypeError("encode() takes a list of strings, not one string; wrap it in a list.")
        sentences = [str(s) for s in sentences]
        n = len(sentences)
        out = np.zeros((n, self.hidden_dim), dtype=np.float32)
        if n == 0:
            return out if dim is None else out[:, :dim]
        packed = []
        for start in range(0, n, 1024):
            batch = self.inference_preprocessor(tf.constant(sentences[start:start + 1024]))
            packed.append({k: v.numpy() for k, v in batch.items()})
        token_ids = np.concatenate([p["token_ids"] for p in packed])
        mask = np.concatenate([p["padding_mask"] for p in packed])
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(n)
        fn = self._predict_step(precision)  # traced before the bar starts its clock
        show = bool(verbose) if verbose != "auto" else n > 10 * batch_size
        # On a terminal a bar ending at n/n; in a log no escape codes: a line every 30 s of a long
        # job, and the final one when asked for explicitly (verbose=1) or after such lines.
        bar = ProgressBar(n, description="encoding", unit="sentences", final_line=verbose != "auto") if show else None
        with bar if bar is not None else contextlib.nullcontext():
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                batch = trim_to_longest({"token_ids": token_ids[idx], "padding_mask": mask[idx]})
                out[idx] = fn(tf.constant(batch["token_ids"]), tf.constant(batch["padding_mask"])).numpy()
                if bar is not None:
                    bar.update(len(idx))
        return out if dim is None else truncate(out, dim, normalize=self.normalize)

    def similarity(self, sentences_a, sentences_b, batch_size=64, dim=None):
        """Cosine similarity of each pair (a[i], b[i]), of embeddings truncated to `dim` (see
        `encode`; `None`: the encoder's `truncate_dim`)."""
        a = self.encode(sentences_a, batch_size=batch_size, verbose=0, dim=dim)
        b = self.encode(sentences_b, batch_size=batch_size, verbose=0, dim=dim)
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return np.sum(a * b, axis=1)

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = {
            "name": self.name,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "pooler_type": self.pooler_type,
            "mlp_only_train": self.mlp_only_train,
            "first_layer": self.first_layer,
            "normalize": self.normalize,
            "preprocessor": (
                keras.saving.serialize_keras_object(self.preprocessor) if self.preprocessor is not None else None
            ),
            "inference_length": self.inference_length,
            "truncate_dim": self.truncate_dim,
        }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def inference_settings(self):
        """The pooler this encoder should be evaluated and served with (mlp_only_train drops
        the head)."""
        if self.pooler_type == "cls" and self.mlp_only_train:
            return "cls_before_pooler"
        return self.pooler_type

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, path):
        """Write a self-contained model directory: a standard keras-hub `BertBackbone` preset,
        the tokenizer, `tf_esimcse.json`, (pooler `cls`) the head's weights and the model card
        `README.md` (`tf_esimcse.model_card`: the run's results in a recipe's `model/`, else a
        minimal card saying that none are recorded).

        See `tf_esimcse.encoder_files` for the format. The directory is written next to `path`
        and moved into place in one rename, so a crash never leaves a half-written model where
        a good one was.

        Args:
            path: str or path. The model directory (replaced if it exists).

        Returns:
            The absolute `pathlib.Path` of the directory.
        """
        return encoder_files.save_sentence_encoder(self, path)

    @classmethod
    def from_pretrained(
        cls, source="default", pooler_type=None, sequence_length=None, dropout=None, normalize=True, mlp_only_train=False,
        inference_length=None, first_layer=None, fast_dropout=True, fresh_mlp=False, truncate_dim=None,
    ):
        """Load an encoder from a local HF directory, a keras-hub preset (dir or name), or a
        directory written by `save_pretrained`.

        Args:
            source: see `tf_esimcse.backbones.load_backbone`. Defaults to all-MiniLM-L6-v2.
            pooler_type: str or None. `None` uses the checkpoint's own (our saves remember it;
                sentence-transformers directories say it; else `cls_before_pooler`).
            sequence_length: int or None. Tokenizer truncation length; `None` uses the saved
                one, else 32.
            dropout: float or None. Override the backbone's dropout.
            normalize: bool. L2-normalise the embeddings. Defaults to `True`.
            mlp_only_train: bool. With `pooler_type="cls"`, use the MLP head only in training.
            inference_length: int or None. Truncation for `encode()`/evaluation/export; `None`
                = the backbone's max length (no truncation in practice, as SimCSE evaluates).
            first_layer: int or None. `avg_first_last`'s first hidden state (see `Pooler`).
            fast_dropout: bool. Dropout masks from a counter hash inside XLA-compiled steps
                (`BertEncoder`'s default) or Keras' Philox everywhere (`False`).
            fresh_mlp: bool. With `pooler_type="cls"`: start the MLP head from N(0, 0.02)
                weights and zero biases, as SimCSE's training code does, ignoring any head in
                `source`. `False` (default) loads the head to evaluate or use a checkpoint:
                ours from `pooler.weights.h5`; a Hugging Face / keras-hub checkpoint's BERT
                pooler (where released SimCSE models store their MLP). The recipes pass `True`:
                a head that is trained starts fresh.
            truncate_dim: int or None. The size `encode()` returns (see the class); `None` uses
                the saved one (ours in `tf_esimcse.json`, a sentence-transformers folder's in
                `config_sentence_transformers.json`), else the full size. The full size itself
                (`embedding_dim`) undoes a saved truncation.

        Returns:
            A `SentenceEncoder` (an instance of `cls`).
        """
        return encoder_files.load_sentence_encoder(
            cls, source, pooler_type=pooler_type, sequence_length=sequence_length, dropout=dropout,
            normalize=normalize, mlp_only_train=mlp_only_train, inference_length=inference_length,
            first_layer=first_layer, fast_dropout=fast_dropout, fresh_mlp=fresh_mlp, truncate_dim=truncate_dim,
        )


def freeze_bert_pooler(backbone):
    """Make a BERT backbone's own pretraining pooler (`pooled_dense`, if it has one) non-trainable:
    it is part of no SimCSE pooler."""
    pooled_dense = getattr(backbone, "pooled_dense", None)
    if pooled_dense is not None:
        pooled_dense.trainable = False


def clone_frozen(model, inputs=None):
    """A frozen copy of a Keras model (what `SentenceEncoder.copy_backbone` makes of a backbone).

    The copy is rebuilt from `model.get_config()` (so the model must be serializable), built the
    way `model` was built (or by calling it on `inputs`), given `model`'s current weights, and made
    non-trainable. Its variables are new: changing one model's weights does not change the
    other's. Create it under the same `tf.distribute` strategy scope as `model`.

    A momentum encoder must run with `training=False` (dropout off, as in the official ESimCSE
    code) and outside the `tf.GradientTape`; `trainable = False` keeps it out of
    `trainable_variables` but does not turn dropout off by itself. Update it with
    `tf_esimcse.objectives.esimcse.ema_update(clone.weights, model.weights, momentum)`.

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
