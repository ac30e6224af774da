"""The cached large-batch step: the gradient of a big batch in the memory of a small one.

In-batch negatives make the contrastive loss of every row depend on every other row, so gradient
accumulation over small batches is a different objective (fewer negatives), not a cheaper way to
the same one. Gradient caching (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup"; sentence-transformers' `CachedMultipleNegativesRankingLoss`) computes
the SAME gradient in three passes:

1. embed the batch in mini-batches without a gradient tape (only the embeddings are kept);
2. compute the loss on the full set of embeddings under a tape, and its gradient with respect
   to the embeddings (and to any weights the objective uses directly);
3. re-embed each mini-batch under a tape and back-propagate its slice of the cached embedding
   gradient (`output_gradients`), summing the weight gradients.

Pass 3 must see the very dropout masks of pass 1, or its gradients belong to other embeddings
(the silent error sentence-transformers fixed with its `RandContext`). Here every mini-batch is
embedded inside `dropout_rows(first_row)` with the encoder's seed generators rewound to the state
they had before the pass: each `HashDropout` then draws, for each row, the mask that row gets in
ONE forward pass of the whole batch. So the cached step's loss and gradients equal the plain
step's (`ContrastiveModel` without `mini_batch_size`, when its dropout hashes: under XLA, or
inside `dropout_rows(0)`), to float round-off, and the seed generators end in the same state.
(Outside XLA the plain step draws Keras' Philox masks instead: other masks, same distribution.)

Views of different widths (ESimCSE's longer positives) are embedded per width group, as the plain
step does, each group from its own rewound state. Rows are padded up to a multiple of the
mini-batch size with one-token dummy rows whose gradient is zero.

Peak memory: one mini-batch's activations + two copies of the encoder's gradients, whatever the
batch size; the cost is one extra forward pass. Weights the objective runs itself on the whole
batch (SimCSE's `two_encoders` positive backbone, DiffCSE's discriminator) are not cached: their
activations still grow with the batch; the encoder's do not.
"""
import keras
import tensorflow as tf

from tf_esimcse import private_apis
from tf_esimcse.distribution import scale_for_replicas
from tf_esimcse.layers.hash_dropout import HashDropout, dropout_rows, random_states
from tf_esimcse.models.keras_hub_encoder import KerasHubEncoder
from tf_esimcse.models.view_batches import chunk, concat_views, pad_rows, rows_of, width_groups


def check_rows_independent(encoder):
    """Raise `ValueError` unless the encoder's training forward pass treats rows independently
    with replayable randomness: every dropout with a rate is a `HashDropout` without noise_shape,
    no other layer draws random numbers (each seed-generator state must belong to such a dropout),
    and no BatchNormalization (which mixes rows in training) is inside it."""
    backbone = getattr(encoder, "backbone", None)
    if isinstance(backbone, KerasHubEncoder):
        raise ValueError(
            f"mini_batch_size (the cached step) cannot train a keras-hub {type(backbone.backbone).__name__}: its Keras "
            "dropout masks cannot be replayed by row (only tf_esimcse's BERT/RoBERTa encoder can); train without "
            "mini_batch_size.")
    layers = private_apis.sublayers(encoder)
    hashed = [layer for layer in layers if isinstance(layer, HashDropout) and layer.rate > 0]
    states = random_states(encoder)
    if len(states) > len(hashed):
        others = [layer.name for layer in layers if not isinstance(layer, HashDropout)
                  and any(id(v) in {id(s) for s in states} for v in getattr(layer, "variables", []))]
        raise ValueError(
            "mini_batch_size (the cached step) replays dropout masks by row, which only HashDropout can do; this "
            f"encoder has {len(states)} random-generator states but {len(hashed)} HashDropout layers"
            + (f" (other random layers: {sorted(set(others))[:5]})" if others else "")
            + ". Build the encoder with fast_dropout=True and without other random layers.")
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(f"mini_batch_size (the cached step) needs an encoder whose rows are independent; "
                             f"layer {layer.name!r} is a BatchNormalization, which mixes the rows of a batch.")
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0:
            if not isinstance(layer, HashDropout):
                raise ValueError(
                    f"mini_batch_size (the cached step) replays dropout masks by row, which needs HashDropout; "
                    f"layer {layer.name!r} is a {type(layer).__name__} (build the encoder with fast_dropout=True, "
                    "e.g. `SentenceEncoder.from_pretrained(..., fast_dropout=True)`).")
            if layer.noise_shape is not None:
                raise ValueError(f"mini_batch_size (the cached step): dropout layer {layer.name!r} has a noise_shape, "
                                 "whose masks cannot be replayed by row.")


def _read(states):
    return [tf.identity(tf.convert_to_tensor(v.value)) for v in states]


def _assign(states, values):
    for variable, value in zip(states, values):
        variable.assign(value)


class _Group:
    """One width group of views: the concatenated batch, padded to whole mini-batches."""

    def __init__(self, views, members, mini_batch_size):
        self.members = members
        self.sizes = [tf.shape(views[i]["token_ids"])[0] for i in members]
        batch = concat_views([views[i] for i in members])
        self.rows = rows_of(batch)
        m = mini_batch_size
        if isinstance(self.rows, int):
            self.num_chunks = -(-self.rows // m)
        else:
            self.num_chunks = (self.rows + m - 1) // m
        self.batch = pad_rows(batch, self.rows, self.num_chunks * m)


def cached_gradients(views, encode, loss_fn, variables, encoder, mini_batch_size):
    """`(loss, terms, gradients)` of one training step, computed with gradient caching in
    mini-batches of `mini_batch_size` rows (see the module docstring).

    Args:
        views: list of `{token_ids, padding_mask}` view batches (the objective's views).
        encode: function `view batch -> embeddings` (training mode): the forward pass of
            `encoder` that is replayed per mini-batch (`ContrastiveModel.embed_view`).
        loss_fn: function `list of embeddings (one per view) -> (loss, terms)`, run under the
            tape on the whole batch's cached embeddings.
        variables: the variables to differentiate (the training model's trainable variables).
        encoder: the `SentenceEncoder` that `encode` runs: its trainable variables receive the
            replayed gradients, its seed-generator states are rewound for every replay, and its
            `embedding_dim` sizes the cache.
        mini_batch_size: int. Rows per forward pass.

    Returns:
        `(loss, terms, gradients)`, the gradients (of the loss scaled for the replicas) lined up
        with `variables` (None where unconnected).
    """
    m = int(mini_batch_size)
    groups = [_Group(views, members, m) for members in width_groups(views)]
    states = random_states(encoder)
    dim = encoder.embedding_dim

    def encode_chunk(batch, i):
        start = i * m
        with dropout_rows(start):
            return encode(chunk(batch, start, m))

    # --- pass 1: embeddings, no tape ---
    starts, group_embeddings = [], []
    for group in groups:
        start_state = _read(states)
        starts.append(start_state)

        def embed_body(i, array, group=group, start_state=start_state):
            _assign(states, start_state)
            return i + 1, array.write(i, tf.cast(encode_chunk(group.batch, i), tf.float32))

        array = tf.TensorArray(tf.float32, size=group.num_chunks, element_shape=tf.TensorShape([m, dim]))
        _, array = tf.while_loop(lambda i, a: i < group.num_chunks, embed_body, (tf.constant(0), array),
                                 parallel_iterations=1)
        embeddings = array.concat()
        group_embeddings.append(tf.stop_gradient(embeddings[: group.rows]))

    # --- pass 2: the loss and its gradient w.r.t. the embeddings ---
    variables = list(variables)
    # Weights the objective runs itself (a second encoder, DiffCSE's discriminator) draw their
    # dropout on the whole batch, hashed as under XLA, so the step is the plain XLA step throughout.
    with tf.GradientTape() as tape, dropout_rows(0):
        tape.watch(group_embeddings)
        embeddings = [None] * len(views)
        for group, emb in zip(groups, group_embeddings):
            for i, part in zip(group.members, tf.split(emb, group.sizes, axis=0)):
                embeddings[i] = part
        loss, terms = loss_fn(embeddings)
        scaled = scale_for_replicas(loss)
    end_state = _read(states)  # where the plain step leaves the encoder's generators (after the loss)
    grads = tape.gradient(scaled, [*group_embeddings, *variables])
    embedding_grads, direct = grads[: len(groups)], list(grads[len(groups):])

    # --- pass 3: replay each mini-batch under a tape, back-propagate its cached gradient ---
    encoder_vars = encoder.trainable_variables
    sums = [tf.zeros(v.shape, v.dtype) for v in encoder_vars]  # ONE accumulator for every group
    connected = set()  # encoder variables a replay reaches (known when the loop body is traced)
    for group, start_state, emb_grad in zip(groups, starts, embedding_grads):
        if emb_grad is None:
            continue
        emb_grad = tf.convert_to_tensor(emb_grad)
        padded_grad = tf.concat([emb_grad, tf.zeros([group.num_chunks * m - group.rows, tf.shape(emb_grad)[1]],
                                                     emb_grad.dtype)], axis=0)

        def replay_body(i, *sums, group=group, start_state=start_state, padded_grad=padded_grad):
            _assign(states, start_state)
            with tf.GradientTape() as chunk_tape:
                z = encode_chunk(group.batch, i)
            upstream = tf.cast(tf.slice(padded_grad, tf.stack([i * m, 0]), tf.stack([m, tf.shape(padded_grad)[1]])),
                               z.dtype)
            chunk_grads = chunk_tape.gradient(z, encoder_vars, output_gradients=upstream)
            out = []
            for k, (total, g) in enumerate(zip(sums, chunk_grads)):
                if g is None:
                    out.append(total)
                else:
                    connected.add(k)
                    out.append(total + tf.cast(tf.convert_to_tensor(g), total.dtype))
            return (i + 1, *out)

        _, *sums = tf.while_loop(lambda i, *s: i < group.num_chunks, replay_body, (tf.constant(0), *sums),
                                 parallel_iterations=1)
    index = {id(v): k for k, v in enumerate(variables)}
    for k, (variable, total) in enumerate(zip(encoder_vars, sums)):
        if k not in connected:
            continue
        j = index[id(variable)]
        direct[j] = total if direct[j] is None else tf.convert_to_tensor(direct[j]) + total
    _assign(states, end_state)
    return loss, terms, direct

