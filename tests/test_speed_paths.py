"""Speed paths give the plain path's results (tiny random models, dropout 0, fixed batches).

- XLA (`jit_compile=True`) vs graph mode vs eager: the same training loss.
- Dynamic padding (`trim_to_longest`) vs fixed padding to max_len: the same loss.
- `bucketed_unsup_dataset`: batches of exactly batch_size, width = longest in the batch (or the
  bucket's width), every sentence once per epoch when each bucket's size is a multiple of the
  batch size, and the same loss as the same sentences padded to max_len.
- `FlatEinsumDense`/`FlatDense` projections and the [CLS]-only last layer (cls poolers) vs
  keras' `EinsumDense`/`Dense` and the full last layer: the same loss and gradients.
  (`HashDropout` draws different masks from Keras' dropout by design: its distribution is tested
  in test_hash_dropout.py, and its training effect by A/B runs in benchmarks/README.md.)
"""
import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_case import TINY_SENTENCES
from test_case import tiny_encoder
from test_case import to_numpy
from tiny_hf import DEFAULT_WORDS
from tf_esimcse.data.pipeline import bucketed_unsup_dataset
from tf_esimcse.data.pipeline import default_bucket_widths
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest
from tf_esimcse.models.simcse import SimCSE

SEQ_LEN = 16
WORDS = [w for w in DEFAULT_WORDS[:21]]  # whole words of the tiny vocabulary (one token each)
BATCH = 4
WIDTHS = (4, 6, 8, SEQ_LEN)


def _sentences():
    """8 distinct sentences of each length 1..6 words: packed lengths 3..8, i.e. 16 sentences in
    each of the buckets of width 4 (3-4 tokens), 6 (5-6) and 8 (7-8): 4 batches of 4 each."""
    out = []
    for n in range(1, 7):
        for k in range(8):
            out.append(" ".join(WORDS[(k + 5 * j + n) % len(WORDS)] for j in range(n)))
    return out


SENTENCES = _sentences()


@pytest.fixture(scope="module")
def simcse(model_dir):
    keras.utils.set_random_seed(0)
    encoder = tiny_encoder(model_dir, pooler_type="cls", mlp_only_train=True, dropout=0.0, sequence_length=SEQ_LEN)
    return SimCSE(encoder, temperature=0.05)


def _fixed(model, sentences):
    return model.encoder.preprocessor(tf.constant(sentences))


def _eager_loss(model, batch):
    return float(model.objective.contrastive_loss(*model.embed_views(batch, training=True)))


def _step_loss(model, batch, jit_compile):
    """The loss `fit` reports for `batch` (before the update), through the compiled train_function;
    SGD with learning rate 0 leaves the weights as they were."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), jit_compile=jit_compile)
    return float(model.train_on_batch(batch, return_dict=True)["loss"])


@pytest.mark.large
def test_xla_graph_and_eager_give_the_same_loss(simcse):
    batch = trim_to_longest(_fixed(simcse, TINY_SENTENCES))
    eager = _eager_loss(simcse, batch)
    graph = _step_loss(simcse, batch, jit_compile=False)
    xla = _step_loss(simcse, batch, jit_compile=True)
    assert eager > 0.0
    np.testing.assert_allclose(graph, eager, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(xla, graph, rtol=1e-4, atol=1e-4)
    # Again on the batch padded to max_len: still the same loss (XLA's new shape included).
    np.testing.assert_allclose(_step_loss(simcse, _fixed(simcse, TINY_SENTENCES), jit_compile=True), graph,
                               rtol=1e-4, atol=1e-4)


def test_dynamic_padding_gives_the_fixed_padding_loss(simcse):
    fixed = _fixed(simcse, TINY_SENTENCES)
    dynamic = trim_to_longest(fixed)
    assert dynamic["token_ids"].shape[1] < fixed["token_ids"].shape[1] == SEQ_LEN
    np.testing.assert_allclose(_eager_loss(simcse, dynamic), _eager_loss(simcse, fixed), rtol=1e-5, atol=1e-6)
    # and the embeddings themselves
    np.testing.assert_allclose(to_numpy(simcse.encoder(dynamic)), to_numpy(simcse.encoder(fixed)), atol=1e-5)


def test_default_bucket_widths():
    assert default_bucket_widths(32) == (8, 12, 16, 20, 24, 28, 32)
    assert default_bucket_widths(128) == (8, 24, 40, 56, 72, 88, 104, 120, 128)
    assert default_bucket_widths(6)[-1] == 6


def _packed_rows(model, sentences):
    ids = to_numpy(_fixed(model, sentences)["token_ids"])
    return [tuple(r[r != 0]) for r in ids]


def _epoch_rows(epoch):
    return [tuple(r[m.astype(bool)]) for ids, m in epoch for r, m in zip(ids, m)]


@pytest.mark.parametrize("pad_to_bucket_width", [False, True])
def test_bucketed_batches_cover_every_sentence_once_per_epoch(simcse, pad_to_bucket_width):
    pre = simcse.encoder.preprocessor
    rows = _packed_rows(simcse, SENTENCES)
    lengths = collections.Counter(len(r) for r in rows)
    assert sorted(lengths) == [3, 4, 5, 6, 7, 8] and set(lengths.values()) == {8}  # precondition
    assert len(set(rows)) == len(SENTENCES)
    ds = bucketed_unsup_dataset(SENTENCES, pre, batch_size=BATCH, bucket_widths=WIDTHS,
                                pad_to_bucket_width=pad_to_bucket_width, seed=3)
    epochs = []
    for _ in range(2):
        epoch = [(to_numpy(b["token_ids"]), to_numpy(b["padding_mask"])) for b in ds]
        epochs.append(epoch)
        assert len(epoch) == len(SENTENCES) // BATCH
        for ids, mask in epoch:
            assert ids.dtype == np.int32 and mask.dtype == np.int32
            assert ids.shape == mask.shape and ids.shape[0] == BATCH
            longest = int(mask.sum(axis=1).max())
            if pad_to_bucket_width:
                width = ids.shape[1]
                assert width in WIDTHS
                below = max([w for w in WIDTHS if w < width], default=0)
                assert below < int(mask.sum(axis=1).min()) and longest <= width  # one bucket per batch
            else:
                assert ids.shape[1] == longest
        assert collections.Counter(_epoch_rows(epoch)) == collections.Counter(rows)
    # reshuffled across epochs (the order of batches and their contents change)
    assert _epoch_rows(epochs[0]) != _epoch_rows(epochs[1])


def test_bucketed_drops_partial_buckets_and_repeats(simcse):
    pre = simcse.encoder.preprocessor
    ds = bucketed_unsup_dataset(SENTENCES[:-3], pre, batch_size=BATCH, bucket_widths=WIDTHS)
    # the 8-wide bucket lost 3 sentences: 13 left -> 3 full batches (one partial dropped)
    assert sum(1 for _ in ds) == 4 + 4 + 3
    repeated = bucketed_unsup_dataset(SENTENCES[:-3], pre, batch_size=BATCH, bucket_widths=WIDTHS, repeat=True)
    assert all(b["token_ids"].shape[0] == BATCH for b in repeated.take(30))


def test_bucketed_batches_give_the_fixed_padding_loss(simcse):
    pre = simcse.encoder.preprocessor
    ds = bucketed_unsup_dataset(SENTENCES, pre, batch_size=BATCH, bucket_widths=WIDTHS, seed=5)
    vocab = {tuple(r): s for r, s in zip(_packed_rows(simcse, SENTENCES), SENTENCES)}
    for batch in ds.take(3):
        ids, mask = to_numpy(batch["token_ids"]), to_numpy(batch["padding_mask"])
        same = [vocab[tuple(r[m.astype(bool)])] for r, m in zip(ids, mask)]
        np.testing.assert_allclose(_eager_loss(simcse, batch), _eager_loss(simcse, _fixed(simcse, same)),
                                   rtol=1e-5, atol=1e-6)


def _plain_reference(backbone):
    """The same network from keras' and keras-hub's public layers, with a copy of `backbone`'s
    weights under the same names: keras-hub's `BertBackbone` embeddings (`to_keras_hub_backbone`)
    and keras-hub's `TransformerEncoder` blocks (keras' `MultiHeadAttention` with `EinsumDense`
    projections, `Dense` feed-forward, Philox `Dropout`), computing every position of the last
    layer. Returns `forward(token_ids, padding_mask, training) -> sequence_output` and its
    variables."""
    import keras_hub

    from tf_esimcse.backbones import to_keras_hub_backbone
    from tf_esimcse.layers.transformer_layer import bert_activation

    bert = to_keras_hub_backbone(backbone)
    blocks = []
    for ours in backbone.transformer_layers:
        block = keras_hub.layers.TransformerEncoder(
            intermediate_dim=backbone.intermediate_dim, num_heads=backbone.num_heads, dropout=backbone.dropout,
            activation=bert_activation(backbone.activation), layer_norm_epsilon=1e-12, name=ours.name,
        )
        block.build((None, None, backbone.hidden_dim))
        assert [w.path for w in block.weights] == [w.path for w in ours.weights]
        block.set_weights(ours.get_weights())
        blocks.append(block)

    def forward(token_ids, padding_mask, training):
        tokens = bert.token_embedding(token_ids)
        x = bert.embeddings_add(
            (tokens, bert.position_embedding(tokens), bert.segment_embedding(tf.zeros_like(token_ids)))
        )
        x = bert.embeddings_dropout(bert.embeddings_layer_norm(x), training=training)
        for block in blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return x

    variables = [w for w in bert.trainable_variables if not w.path.startswith("transformer_layer_")]
    return forward, variables + [w for block in blocks for w in block.trainable_variables]


def test_flat_projections_and_cls_only_last_layer_give_the_plain_loss_and_gradients(simcse):
    """The encoder's own speed paths (`FlatEinsumDense`/`FlatDense` projections, the [CLS]-only
    last layer of `BertEncoder.first_token_output`) against keras' `EinsumDense`/`Dense` (in
    keras-hub's `TransformerEncoder`) and the full last layer: the same SimCSE loss and the same
    gradients, weight by weight, on a fixed batch."""
    encoder = simcse.encoder
    assert encoder.uses_first_token_only
    plain_forward, plain_variables = _plain_reference(encoder.backbone)
    batch = trim_to_longest(_fixed(simcse, TINY_SENTENCES))
    ids = tf.concat([batch["token_ids"]] * 2, axis=0)
    mask = tf.concat([batch["padding_mask"]] * 2, axis=0)

    def loss_and_grads(plain):
        with tf.GradientTape() as tape:
            if plain:  # the full forward through keras' layers, then the pooler
                seq = plain_forward(ids, mask, training=True)
                pooled = encoder.pooler({"sequence_output": seq, "padding_mask": mask}, training=True)
                emb = tf.math.l2_normalize(pooled, axis=-1)
            else:
                emb = encoder({"token_ids": ids, "padding_mask": mask}, training=True)
            loss = simcse.objective.contrastive_loss(*tf.split(emb, 2, axis=0))
        watched = plain_variables if plain else encoder.backbone.trainable_variables
        watched = watched + encoder.pooler.trainable_variables
        grads = tape.gradient(loss, watched)
        return float(loss), {v.path: g for v, g in zip(watched, grads) if g is not None}

    fast_loss, fast_grads = loss_and_grads(plain=False)
    plain_loss, plain_grads = loss_and_grads(plain=True)
    np.testing.assert_allclose(fast_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert set(fast_grads) == set(plain_grads)  # all but BERT's unused tanh pooler
    # embeddings (5), 16 per block, the training head
    assert len(fast_grads) == 5 + 16 * encoder.backbone.num_layers + len(encoder.pooler.trainable_variables)
    for name in plain_grads:
        np.testing.assert_allclose(to_numpy(fast_grads[name]), to_numpy(plain_grads[name]), rtol=1e-4, atol=1e-5,
                                   err_msg=name)
