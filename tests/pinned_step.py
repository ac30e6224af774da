"""The pinned training step: a fixed tiny encoder, fixed batches, dropout 0, three methods.

The reference file was written from the code before the training core was reshaped (commit
53c12c1, whose `SimCSE(encoder, hard_negative_weight=2.0)` was today's `SupervisedSimCSE(encoder,
alpha=2.0)`; `python tests/pinned_step.py OUT.npz` writes today's numbers); `test_pinned_step.py` recomputes the same
numbers with today's code and compares. Everything is built through public, stable entry points
(a tiny Hugging Face directory read by `SentenceEncoder.from_pretrained`, pooler weights set from
NumPy), so the reference does not depend on layer construction order or random initialisers.
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from test_case import write_tiny_model_dir  # noqa: E402

STEPS = 3


def _batch(rng, n, length, vocab=30):
    ids = rng.integers(5, vocab, size=(n, length)).astype("int32")
    lengths = rng.integers(3, length + 1, size=n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids[:, 0] = 2  # [CLS]
    ids[np.arange(n), lengths - 1] = 3  # [SEP]
    return {"token_ids": ids * mask, "padding_mask": mask}


def batches():
    rng = np.random.default_rng(1234)
    n, length = 8, 10
    out = []
    for _ in range(STEPS):
        anchor = _batch(rng, n, length)
        positive = _batch(rng, n, length + 3)
        negative = _batch(rng, n, length - 2)
        out.append({"anchor": anchor, "positive": positive, "negative": negative})
    return out


def build_encoder(model_dir):
    from tf_esimcse import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(str(model_dir), pooler_type="cls", mlp_only_train=True, dropout=0.0,
                                              fast_dropout=False)
    rng = np.random.default_rng(7)
    encoder.pooler.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in encoder.pooler.get_weights()])
    return encoder


def optimizer():
    opt = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def encoder_weights(encoder):
    """Backbone weights in keras-hub `BertBackbone` order, then the pooler's."""
    try:
        from tf_esimcse.backbones import to_keras_hub_backbone
    except ImportError:  # the code before the reshaped core: BertEncoder had keras-hub's order
        backbone_weights = encoder.backbone.get_weights()
    else:
        backbone_weights = to_keras_hub_backbone(encoder.backbone).get_weights()
    return list(backbone_weights) + list(encoder.pooler.get_weights())


def run_method(method, model_dir, make_model):
    """Train `STEPS` steps of `method` on the fixed batches; returns {name: array}."""
    keras.utils.set_random_seed(0)
    encoder = build_encoder(model_dir)
    model = make_model(encoder, method)
    model.compile(optimizer=optimizer(), jit_compile=False)
    data = batches()
    losses = []
    for batch in data:
        if method == "simcse":
            x = batch["anchor"]
        else:
            x = batch if method == "supervised" else {"anchor": batch["anchor"], "positive": batch["positive"]}
            # Views padded to one width, as the pinned (old) step padded them together before its
            # single forward pass; padding changes no output (today's step would otherwise run
            # one pass per width, drawing other dropout seeds).
            width = max(v["token_ids"].shape[1] for v in x.values())
            x = {name: {k: np.pad(a, [(0, 0), (0, width - a.shape[1])]) for k, a in view.items()}
                 for name, view in x.items()}
        x = tf.nest.map_structure(tf.constant, x)
        model.reset_metrics()  # per-step loss, not a running mean
        logs = model.train_on_batch(x, return_dict=True)
        losses.append(float(logs["loss"]))
    out = {"losses": np.array(losses)}
    for i, w in enumerate(encoder_weights(encoder)):
        out[f"w{i}"] = w
    if method == "esimcse":
        queue = model_queue(model)
        out["queue"] = keras.ops.convert_to_numpy(queue.queue)
        out["queue_pointer"] = np.array(int(keras.ops.convert_to_numpy(queue.pointer)))
    return out


def model_queue(model):
    for attr in ("queue",):
        if getattr(model, attr, None) is not None:
            return getattr(model, attr)
    return model.objective.queue


def current_models(encoder, method):
    """Today's API for the same three models."""
    from tf_esimcse import ESimCSE, SimCSE, SupervisedSimCSE

    if method == "simcse":
        return SimCSE(encoder, temperature=0.05, max_grad_norm=1.0)
    if method == "supervised":
        return SupervisedSimCSE(encoder, temperature=0.05, alpha=2.0, max_grad_norm=1.0)
    return ESimCSE(encoder, temperature=0.05, queue_size=12, momentum=0.9, max_grad_norm=1.0)


def compute(make_model, tmp_dir):
    model_dir = write_tiny_model_dir(os.path.join(tmp_dir, "tiny"))
    result = {}
    for method in ("simcse", "supervised", "esimcse"):
        for key, value in run_method(method, model_dir, make_model).items():
            result[f"{method}/{key}"] = value
    return result


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = compute(current_models, tmp)
    np.savez(sys.argv[1], **result)
    print({k: v for k, v in result.items() if k.endswith("losses")})
