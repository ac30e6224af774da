"""A tiny Hugging Face RoBERTa checkpoint made inside the tests (the RoBERTa sibling of tiny_hf.py).

`write_roberta_tokenizer_files` writes a byte-level BPE tokenizer as RoBERTa's (``vocab.json`` +
``merges.txt``): the four specials first (``<s>=0, <pad>=1, </s>=2, <unk>=3``, as roberta-base),
the 256 byte symbols of GPT-2's byte-to-unicode table, the results of `num_merges` merges learned
here by a plain-Python BPE trainer on `CORPUS`, and ``<mask>`` last. Every byte has a symbol, so
every string is encodable (accents, emoji and CJK end as byte pieces where no merge covers them).
`write_tiny_hf_roberta` adds ``config.json`` and random ``model.safetensors`` with the weight
names of Hugging Face's `RobertaModel`. Nothing here imports TensorFlow, Keras or transformers.
"""
import collections
import json
import pathlib
import re

import numpy as np
from safetensors.numpy import save_file

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
BOS_ID, PAD_ID, EOS_ID, UNK_ID = range(4)
MASK_TOKEN = "<mask>"

CORPUS = [
    "The quick brown fox jumped over the lazy dog.",
    "A man is playing a guitar. Someone is playing music.",
    "the cat sat on the mat, and the dog sat on the log!",
    "Hello world, hello there; it's 2026 and we're testing 12345 numbers.",
    "Sentences are embedded by the encoder, then compared with the cosine.",
]

# GPT-2 / RoBERTa's pre-tokenization pattern, with \p{L}/\p{N} spelled for Python's `re`.
_PRETOKENIZE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode symbol table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def train_bpe(corpus, num_merges):
    """`num_merges` merges learned greedily (the most frequent adjacent pair, ties by first
    occurrence) on the byte-level words of `corpus`: a list of `(left, right)` pairs."""
    table = bytes_to_unicode()
    words = collections.Counter()
    for line in corpus:
        for piece in _PRETOKENIZE.findall(line):
            words[tuple(table[b] for b in piece.encode("utf-8"))] += 1
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda pair: pairs[pair])  # Counter keeps insertion order: ties are stable
        merges.append(best)
        merged = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def write_roberta_tokenizer_files(path, num_merges=120):
    """Write ``vocab.json`` and ``merges.txt`` to `path`; returns the vocabulary `{token: id}`."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    merges = train_bpe(CORPUS, num_merges)
    tokens = SPECIALS + sorted(set(bytes_to_unicode().values()), key=lambda s: ord(s))
    for left, right in merges:
        if left + right not in tokens:
            tokens.append(left + right)
    tokens.append(MASK_TOKEN)
    vocab = {token: i for i, token in enumerate(tokens)}
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges), encoding="utf-8")
    return vocab


def roberta_config(vocab_size, *, num_layers=2, hidden=32, heads=4, intermediate=64, max_length=64,
                   hidden_act="gelu", layer_norm_eps=1e-5):
    """A Hugging Face RoBERTa ``config.json`` dict (positions: `max_length` + padding_idx + 1)."""
    return {
        "architectures": ["RobertaModel"], "model_type": "roberta", "vocab_size": vocab_size,
        "hidden_size": hidden, "num_hidden_layers": num_layers, "num_attention_heads": heads,
        "intermediate_size": intermediate, "hidden_act": hidden_act, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": max_length + PAD_ID + 1,
        "type_vocab_size": 1, "initializer_range": 0.02, "layer_norm_eps": layer_norm_eps,
        "pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
        "position_embedding_type": "absolute",
    }


def write_tiny_hf_roberta(path, *, seed=0, key_prefix="", with_pooler=True, **sizes):
    """Write a random Hugging Face `RobertaModel` directory (tokenizer files, config.json,
    model.safetensors) to `path` and return it; `sizes` go to `roberta_config`.

    Args:
        key_prefix: str. Prefix of every weight name (``"roberta."`` as `RobertaForMaskedLM` saves).
        with_pooler: bool. Write ``pooler.dense`` (SimCSE's RoBERTa checkpoints have none).
    """
    path = pathlib.Path(path)
    vocab = write_roberta_tokenizer_files(path)
    config = roberta_config(len(vocab), **sizes)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    rng = np.random.default_rng(seed)

    def normal(*shape, std=0.2):
        return (std * rng.standard_normal(shape)).astype("float32")

    weights = {
        "embeddings.word_embeddings.weight": normal(len(vocab), hidden, std=0.5),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], hidden, std=0.5),
        "embeddings.token_type_embeddings.weight": normal(1, hidden, std=0.5),
    }

    def layer_norm(name):
        weights[f"{name}.weight"] = (1.0 + normal(hidden, std=0.1)).astype("float32")
        weights[f"{name}.bias"] = normal(hidden, std=0.1)

    def linear(name, n_in, n_out):
        weights[f"{name}.weight"] = normal(n_out, n_in)
        weights[f"{name}.bias"] = normal(n_out, std=0.1)

    layer_norm("embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            linear(f"{p}.attention.self.{name}", hidden, hidden)
        linear(f"{p}.attention.output.dense", hidden, hidden)
        layer_norm(f"{p}.attention.output.LayerNorm")
        linear(f"{p}.intermediate.dense", hidden, inner)
        linear(f"{p}.output.dense", inner, hidden)
        layer_norm(f"{p}.output.LayerNorm")
    if with_pooler:
        linear("pooler.dense", hidden, hidden)
    save_file({key_prefix + k: v for k, v in weights.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    return path
