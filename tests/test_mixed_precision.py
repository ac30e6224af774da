"""Under Keras' mixed precision (bfloat16 compute) the contrastive logits and the loss stay
float32: cosines / 0.05 span +-20 and bfloat16 keeps 8 bits of mantissa, too few for the softmax."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import TINY_SENTENCES, tiny_encoder, write_tiny_model_dir
from tf_esimcse import losses
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tf_esimcse.models.contrastive_model import ContrastiveModel
from tf_esimcse.objectives import ESimCSEObjective


@pytest.fixture
def mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def test_logits_are_float32_from_bfloat16_embeddings():
    z = tf.cast(tf.random.stateless_normal((4, 8), seed=(1, 2)), tf.bfloat16)
    logits, labels = losses.contrastive_logits(z, z, temperature=0.05, queue=z)
    assert logits.dtype == tf.float32 and labels.dtype == tf.int32
    assert losses.info_nce(z, z, temperature=0.05).dtype == tf.float32


@pytest.mark.large
def test_a_mixed_precision_step_keeps_a_float32_loss(tmp_path, mixed_bfloat16):
    encoder = tiny_encoder(write_tiny_model_dir(tmp_path / "tiny"), pooler_type="cls", mlp_only_train=True)
    model = ContrastiveModel(encoder, ESimCSEObjective(queue_size=8), max_grad_norm=1.0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    batch = trim_to_longest(encoder.preprocessor(tf.constant(TINY_SENTENCES)))
    assert encoder(batch, training=False).dtype == tf.bfloat16  # the compute really is bfloat16
    x = {"anchor": batch, "positive": batch}
    embeddings = model.embed_views(x, training=True)
    assert all(z.dtype == tf.bfloat16 for z in embeddings)
    terms = model.objective.loss_terms(encoder, x, embeddings, None, True)
    assert terms["contrastive"].dtype == tf.float32
    for _ in range(2):  # the second step also has queued negatives
        logs = model.train_on_batch(x, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["contrastive_loss"])
    assert all(v.dtype == "float32" for v in model.trainable_variables)  # float32 master weights
