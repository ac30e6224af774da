"""A tiny Hugging Face BERT checkpoint made inside the tests, and a NumPy reference forward.

`write_tiny_hf_bert` writes a complete Hugging Face BERT directory (``config.json``,
``vocab.txt``, ``tokenizer_config.json``, ``model.safetensors``) with random weights, so the
loading path of `tf_esimcse.backbones` is tested without downloads. `numpy_bert_forward` is an
independent plain NumPy (float64) implementation of Hugging Face's `BertModel` forward pass,
reading the same safetensors file; it shares no code with Keras or TensorFlow.
"""
import json
import math
import pathlib

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save_file
from scipy.special import erf

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))

# Covers the sentences the tests tokenize, plus some punctuation and "##" pieces.
DEFAULT_WORDS = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "quick", "brown", "fox",
    "jumped", "over", "lazy", "is", "play", "run", "cafe", "naive", "resume",
    ".", ",", "!", "?", "'",
    "##s", "##ing", "##ed", "##er", "##ly",
]


def _layer_norm_params(rng, hidden):
    gamma = 1.0 + 0.1 * rng.standard_normal(hidden)
    beta = 0.1 * rng.standard_normal(hidden)
    return gamma.astype("float32"), beta.astype("float32")


def write_tiny_hf_bert(
    path,
    *,
    vocab_words=None,
    num_layers=2,
    hidden=32,
    heads=4,
    intermediate=64,
    max_position=64,
    hidden_act="gelu",
    seed=0,
    st_layernorm_names=True,
    key_prefix="",
):
    """Write a random Hugging Face `BertModel` checkpoint directory to `path` and return it.

    Args:
        path: str or path. The directory to write (created if needed).
        vocab_words: list of str or None. The vocabulary after the five special tokens
            (``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``). Defaults to `DEFAULT_WORDS`.
        num_layers, hidden, heads, intermediate, max_position: the BERT sizes.
        hidden_act: str. Hugging Face's ``hidden_act`` (``"gelu"`` is the exact erf GELU,
            ``"gelu_new"`` the tanh approximation).
        seed: int. Seed of the random weights.
        st_layernorm_names: bool. If `True` name LayerNorm parameters ``weight``/``bias``
            (current transformers and sentence-transformers); if `False`, the older
            ``gamma``/``beta``.
        key_prefix: str. Prefix of every weight name, e.g. ``"bert."`` as in checkpoints saved
            from `BertForPreTraining`-style heads. Defaults to none (`BertModel`).

    Returns:
        The directory as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    words = list(DEFAULT_WORDS if vocab_words is None else vocab_words)
    vocab = SPECIAL_TOKENS + [w for w in words if w not in SPECIAL_TOKENS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "strip_accents": None, "tokenizer_class": "BertTokenizer"})
    )
    config = {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": hidden_act,
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_position,
        "model_type": "bert",
        "num_attention_heads": heads,
        "num_hidden_layers": num_layers,
        "pad_token_id": PAD_ID,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": len(vocab),
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))

    # Scales keep pre-activations O(1): LayerNorm outputs have unit variance and a dense layer
    # with fan-in n and weight std 0.2 has output std ~0.2 * sqrt(n) (~1.1 for n=32), so the
    # GELU operates where erf and tanh variants differ and attention is far from uniform.
    rng = np.random.default_rng(seed)

    def normal(*shape, std=0.2):
        return (std * rng.standard_normal(shape)).astype("float32")

    gamma_name, beta_name = ("weight", "bias") if st_layernorm_names else ("gamma", "beta")
    weights = {}

    def add_layer_norm(name):
        weights[f"{name}.{gamma_name}"], weights[f"{name}.{beta_name}"] = _layer_norm_params(rng, hidden)

    def add_linear(name, n_in, n_out):  # torch.nn.Linear layout: weight [out, in]
        weights[f"{name}.weight"] = normal(n_out, n_in)
        weights[f"{name}.bias"] = normal(n_out, std=0.1)

    weights["embeddings.word_embeddings.weight"] = normal(len(vocab), hidden, std=0.5)
    weights["embeddings.position_embeddings.weight"] = normal(max_position, hidden, std=0.5)
    weights["embeddings.token_type_embeddings.weight"] = normal(2, hidden, std=0.5)
    add_layer_norm("embeddings.LayerNorm")
    for i in range(num_layers):
        layer = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            add_linear(f"{layer}.attention.self.{name}", hidden, hidden)
        add_linear(f"{layer}.attention.output.dense", hidden, hidden)
        add_layer_norm(f"{layer}.attention.output.LayerNorm")
        add_linear(f"{layer}.intermediate.dense", hidden, intermediate)
        add_linear(f"{layer}.output.dense", intermediate, hidden)
        add_layer_norm(f"{layer}.output.LayerNorm")
    add_linear("pooler.dense", hidden, hidden)
    weights = {key_prefix + k: v for k, v in weights.items()}
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


# --- NumPy reference of Hugging Face's BertModel forward (float64) ---


def _gelu_exact(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


_ACTIVATIONS = {
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def numpy_bert_forward(path, token_ids, padding_mask, segment_ids=None, hidden_act=None):
    """Hugging Face `BertModel` forward pass in plain NumPy (float64), in eval mode.

    Args:
        path: the checkpoint directory (as written by `write_tiny_hf_bert`).
        token_ids, padding_mask: int arrays `(batch, length)`; `padding_mask` is 1 for real tokens.
        segment_ids: int array `(batch, length)` or None (all zeros).
        hidden_act: str or None. Override the config's ``hidden_act`` (None keeps it).

    Returns:
        A dict with `"sequence_output"` `(batch, length, hidden)`, `"pooled_output"`
        `(batch, hidden)` and `"hidden_states"`: a list of `num_layers + 1` arrays, the
        embedding output first.
    """
    path = pathlib.Path(path)
    cfg = json.loads((path / "config.json").read_text())
    eps = cfg["layer_norm_eps"]
    act = _ACTIVATIONS[hidden_act or cfg["hidden_act"]]
    heads = cfg["num_attention_heads"]
    raw = load_file(str(path / "model.safetensors"))
    # Accept any common prefix ("bert.") and either LayerNorm naming, as transformers does.
    w = {}
    for key, value in raw.items():
        key = key.split("bert.", 1)[1] if key.startswith("bert.") else key
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        w[key] = value.astype("float64")

    token_ids = np.asarray(token_ids)
    padding_mask = np.asarray(padding_mask)
    segment_ids = np.zeros_like(token_ids) if segment_ids is None else np.asarray(segment_ids)
    batch, length = token_ids.shape

    def linear(x, name):  # torch layout: y = x @ W.T + b
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def layer_norm(x, name):
        return _layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"], eps)

    x = (
        w["embeddings.word_embeddings.weight"][token_ids]
        + w["embeddings.position_embeddings.weight"][np.arange(length)][None]
        + w["embeddings.token_type_embeddings.weight"][segment_ids]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    hidden_states = [x]
    hidden = x.shape[-1]
    head_dim = hidden // heads
    # Additive mask on keys, broadcast over heads and queries: (batch, 1, 1, length).
    additive_mask = np.where(padding_mask[:, None, None, :] > 0, 0.0, np.finfo("float64").min)

    def split_heads(t):  # (batch, length, hidden) -> (batch, heads, length, head_dim)
        return t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = split_heads(linear(x, f"{p}.attention.self.query"))
        k = split_heads(linear(x, f"{p}.attention.self.key"))
        v = split_heads(linear(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + additive_mask
        context = _softmax(scores) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        attention = layer_norm(
            linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
        )
        inner = act(linear(attention, f"{p}.intermediate.dense"))
        x = layer_norm(linear(inner, f"{p}.output.dense") + attention, f"{p}.output.LayerNorm")
        hidden_states.append(x)

    pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
    return {"sequence_output": x, "pooled_output": pooled, "hidden_states": hidden_states}
