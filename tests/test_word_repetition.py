"""Tests for `tf_esimcse.layers.word_repetition.WordRepetition` (ESimCSE word repetition)."""
import collections

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tf_esimcse.layers.word_repetition import WordRepetition

CLS, SEP = 101, 102
P_MIN = 1e-4  # chi-square p-value floor; every draw below is seeded, so this is deterministic.


# ----------------------------------------------------------------------------- references


def paper_support(n, rate):
    """The paper's rule, capped at n: uniform on {0, ..., min(n, max(2, int(rate * n)))}."""
    return list(range(min(n, max(2, int(rate * n))) + 1))


def official_subword_support(n, rate):
    """The official "bpe" branch, with L = n + 2 ([CLS] and [SEP] counted)."""
    length = n + 2
    if int(rate * length) <= 0:  # the official code skips the sentence
        return [0]
    return list(range(min(n + 1, min(10, int(rate * length)))))


def official_word_support(n, rate):
    """The official "word" branch: randrange(min(10, n, max(2, int(rate * n))))."""
    bound = min(10, n, max(2, int(rate * n)))
    return list(range(bound)) if bound > 0 else [0]


def doubled_positions(inp, out):
    """Input positions whose token was doubled, if `out` is `inp` with some tokens doubled in
    place; None otherwise. Handles adjacent equal tokens in `inp` (dynamic programming)."""
    inp, out = list(inp), list(out)
    # reach[i][j]: first i input tokens produce the first j output tokens.
    reach = {(0, 0): None}
    frontier = [(0, 0)]
    while frontier:
        i, j = frontier.pop()
        if i == len(inp):
            continue
        for r in (1, 2):
            if out[j : j + r] == [inp[i]] * r and (i + 1, j + r) not in reach:
                reach[(i + 1, j + r)] = (i, j, r)
                frontier.append((i + 1, j + r))
    if (len(inp), len(out)) not in reach:
        return None
    doubled, state = [], (len(inp), len(out))
    while reach[state] is not None:
        i, j, r = reach[state]
        if r == 2:
            doubled.append(i)
        state = (i, j)
    return sorted(doubled)


def assert_uniform(samples, support):
    counts = collections.Counter(samples)
    assert set(counts) <= set(support), (sorted(counts), support)
    if len(support) > 1:
        observed = [counts.get(k, 0) for k in support]
        assert min(observed) > 0, (observed, support)
        assert stats.chisquare(observed).pvalue > P_MIN, (observed, support)


def added_lengths(layer, n, rows=3000, seed=0, specials=False):
    row = list(range(1, n + 1))
    if specials:
        row = [CLS] + row + [SEP]
    x = tf.RaggedTensor.from_tensor(tf.tile(tf.constant([row], tf.int32), [rows, 1]))
    out = layer(x, seed=seed)
    return (out.row_lengths() - x.row_lengths()).numpy().tolist()


# ----------------------------------------------------------------------------- distribution


@pytest.mark.parametrize("n", [0, 1, 2, 6, 25, 40])
def test_paper_length_distribution(n):
    layer = WordRepetition(dup_rate=0.32, seed=11)
    assert_uniform(added_lengths(layer, n), paper_support(n, 0.32))


@pytest.mark.parametrize("n", [0, 1, 3, 5, 8, 29, 30, 45])
def test_official_subword_length_distribution(n):
    layer = WordRepetition(dup_rate=0.32, mode="official_subword", seed=12)
    support = official_subword_support(n, 0.32)
    assert_uniform(added_lengths(layer, n), support)
    # Same law when [CLS]/[SEP] are present and unselectable: the official L counts them.
    with_specials = WordRepetition(
        dup_rate=0.32, mode="official_subword", unselectable_token_ids=[CLS, SEP], seed=13
    )
    assert_uniform(added_lengths(with_specials, n, specials=True), support)


def test_official_subword_bounds_match_official_formula():
    # Spot values of min(10, int(0.32 * L)) - 1 with L = N + 2.
    assert official_subword_support(1, 0.32) == [0]  # int(0.96) == 0: no repetition
    assert official_subword_support(3, 0.32) == [0]  # bound 1 -> only 0
    assert official_subword_support(8, 0.32) == [0, 1, 2]
    assert official_subword_support(30, 0.32) == list(range(10))  # capped: at most 9 repeats


@pytest.mark.parametrize("rate", [0.32, 0.5, 0.1])
@pytest.mark.parametrize("max_selectable", [0, 3, 8, 30, 60])
def test_max_added_tokens_is_the_largest_possible_dup_len(rate, max_selectable):
    """What sizes ESimCSE's untruncated positive view: the supports' largest element over every
    length up to max_selectable (the reference supports above, not the layer's own code)."""
    for mode, support in (("paper", paper_support), ("official_subword", official_subword_support)):
        expected = max(max(support(n, rate)) for n in range(max_selectable + 1))
        assert WordRepetition(dup_rate=rate, mode=mode).max_added_tokens(max_selectable) == expected, mode
    with pytest.raises(ValueError, match="official_word"):
        WordRepetition(mode="official_word").max_added_tokens(10)


@pytest.mark.parametrize("n", [1, 2, 5, 20, 40])
def test_official_word_length_distribution(n):
    layer = WordRepetition(dup_rate=0.32, mode="official_word", seed=14)
    sentence = " ".join(f"w{i}" for i in range(n))
    out = layer(tf.constant([sentence] * 3000), seed=1)
    added = [len(s.split()) - n for s in out.numpy().astype(str)]
    assert_uniform(added, official_word_support(n, 0.32))
    # The official word code never repeats the last word.
    last = f"w{n - 1}"
    for s in out.numpy().astype(str):
        assert s.split()[-1] == last and s.split().count(last) == 1


@pytest.mark.parametrize("n", [1, 4, 12])
def test_paper_mode_on_words(n):
    layer = WordRepetition(dup_rate=0.32, seed=15)
    sentence = " ".join(f"w{i}" for i in range(n))
    out = layer(tf.constant([sentence] * 3000), seed=2).numpy().astype(str)
    assert_uniform([len(s.split()) - n for s in out], paper_support(n, 0.32))


def test_positions_are_uniform_among_selectable():
    n = 7
    row = [CLS] + list(range(1, n + 1)) + [SEP]
    layer = WordRepetition(dup_rate=0.5, unselectable_token_ids=[CLS, SEP], seed=16)
    x = tf.ragged.constant([row] * 4000)
    out = layer(x, seed=3).to_list()
    hits = collections.Counter()
    pairs = collections.Counter()
    for o in out:
        doubled = doubled_positions(row, o)
        assert doubled is not None
        assert 0 not in doubled and n + 1 not in doubled  # specials never repeated
        hits.update(doubled)
        if len(doubled) == 2:
            pairs[tuple(doubled)] += 1
    assert stats.chisquare([hits[p] for p in range(1, n + 1)]).pvalue > P_MIN
    # Given two repeats, every pair of positions is equally likely (sampling without replacement).
    all_pairs = [(a, b) for a in range(1, n + 1) for b in range(a + 1, n + 1)]
    assert stats.chisquare([pairs[p] for p in all_pairs]).pvalue > P_MIN


# ----------------------------------------------------------------------------- content


@pytest.mark.parametrize("mode", ["paper", "official_subword"])
def test_output_is_input_with_tokens_doubled_in_place(mode):
    rng = np.random.default_rng(0)
    specials = [CLS, SEP, 0]
    rows = []
    for _ in range(300):
        # A small vocabulary, so that inputs have adjacent equal tokens.
        body = rng.integers(1, 6, size=rng.integers(0, 20)).tolist()
        rows.append([CLS] + body + [SEP] + [0] * int(rng.integers(0, 3)))
    layer = WordRepetition(dup_rate=0.6, mode=mode, unselectable_token_ids=specials, seed=17)
    out = layer(tf.ragged.constant(rows, dtype=tf.int64)).to_list()
    for inp, o in zip(rows, out):
        assert doubled_positions(inp, o) is not None, (inp, o)
        for s in specials:
            assert o.count(s) == inp.count(s)


def test_unselectable_only_rows_are_unchanged():
    layer = WordRepetition(dup_rate=1.0, unselectable_token_ids=[CLS, SEP], seed=18)
    rows = [[CLS, SEP], [CLS, CLS, SEP], []]
    assert layer(tf.ragged.constant(rows)).to_list() == rows


def test_dup_rate_zero():
    row = list(range(1, 11))
    x = tf.ragged.constant([row] * 2000)
    # paper: the max(2, .) floor still allows up to 2 repeats.
    paper = WordRepetition(dup_rate=0.0, seed=19)
    assert_uniform((paper(x, seed=1).row_lengths() - 10).numpy().tolist(), [0, 1, 2])
    # official sub-word code: int(0 * L) == 0, the sentence is left unchanged.
    official = WordRepetition(dup_rate=0.0, mode="official_subword", seed=19)
    assert official(x, seed=1).to_list() == [row] * 2000
    # official word code: randrange(min(10, n, max(2, 0))) -> {0, 1}.
    word = WordRepetition(dup_rate=0.0, mode="official_word", seed=19)
    out = word(tf.constant([" ".join(map(str, row))] * 2000), seed=1).numpy().astype(str)
    assert_uniform([len(s.split()) - 10 for s in out], [0, 1])


def test_max_length_truncates_the_same_draw():
    x = tf.ragged.constant([list(range(1, 31)), list(range(1, 5)), []])
    full = WordRepetition(dup_rate=0.5, seed=20)(x, seed=5).to_list()
    cut = WordRepetition(dup_rate=0.5, max_length=8, seed=20)(x, seed=5).to_list()
    assert cut == [row[:8] for row in full]
    words = WordRepetition(dup_rate=0.5, max_length=3, seed=20)("a b c d e", seed=1)
    assert len(words.numpy().decode().split()) == 3


# ----------------------------------------------------------------------------- input kinds


def test_input_kinds_keep_rank_kind_and_dtype():
    layer = WordRepetition(dup_rate=0.5, unselectable_token_ids=[CLS, SEP], seed=21)
    ragged = tf.ragged.constant([[CLS, 5, 6, 7, SEP], [CLS, 8, SEP]], dtype=tf.int64)
    out = layer(ragged)
    assert isinstance(out, tf.RaggedTensor) and out.dtype == tf.int64 and out.shape.rank == 2

    one = layer(tf.constant([5, 6, 7, 8], tf.int32))
    assert isinstance(one, tf.Tensor) and one.shape.rank == 1 and one.dtype == tf.int32
    assert doubled_positions([5, 6, 7, 8], one.numpy().tolist()) is not None

    dense = tf.constant([[CLS, 5, 6, 7, 8, 9, SEP, 0, 0, 0], [CLS, 5, SEP, 0, 0, 0, 0, 0, 0, 0]])
    out = WordRepetition(dup_rate=1.0, unselectable_token_ids=[CLS, SEP], seed=21)(dense, seed=0)
    assert isinstance(out, tf.Tensor) and out.shape == dense.shape and out.dtype == dense.dtype
    for inp, o in zip(dense.numpy().tolist(), out.numpy().tolist()):
        body = [t for t in inp if t != 0]
        o_body = [t for t in o if t != 0]
        assert o[: len(o_body)] == o_body  # padding stays at the end
        # Truncated to the width, the output is a prefix of a valid repetition.
        assert any(
            doubled_positions(body, cand) is not None
            for cand in [o_body + body[k:] for k in range(len(body) + 1)]
        )
    numpy_dense = layer(np.array([[5, 6, 0], [7, 0, 0]], dtype=np.int32))
    assert isinstance(numpy_dense, tf.Tensor) and numpy_dense.shape == (2, 3)

    assert isinstance(layer([[1, 2, 3], [4, 5, 6]]), tf.RaggedTensor)  # lists are never padded
    assert layer([1, 2, 3]).shape.rank == 1
    assert layer("the quick brown fox").shape.rank == 0
    batch = layer(["the quick brown fox", "hi", ""])
    assert batch.shape == (3,) and batch.dtype == tf.string


def test_dense_padding_is_never_repeated_and_not_counted():
    x = tf.constant([[5, 6, 0, 0, 0, 0]] * 500)
    out = WordRepetition(dup_rate=0.32, mode="official_subword", seed=22)(x, seed=1).numpy()
    # N = 2 selectable: L = 4, int(1.28) = 1 -> bound 1: never any repetition.
    assert (out == x.numpy()).all()
    out = WordRepetition(dup_rate=0.32, seed=22)(x, seed=1).numpy()
    assert set(map(tuple, out.tolist())) <= {
        (5, 6, 0, 0, 0, 0), (5, 5, 6, 0, 0, 0), (5, 6, 6, 0, 0, 0), (5, 5, 6, 6, 0, 0)
    }


def test_word_level_strings():
    layer = WordRepetition(dup_rate=0.5, seed=23)
    out = layer(tf.constant(["  the  quick brown\tfox ", "one", ""]), seed=4).numpy().astype(str)
    assert out[2] == ""
    for inp, o in zip([["the", "quick", "brown", "fox"], ["one"]], out):
        assert "  " not in o and o == o.strip()
        assert doubled_positions(inp, o.split(" ")) is not None


def test_mode_and_dtype_mismatch_raise():
    with pytest.raises(ValueError, match="official_word"):
        WordRepetition(mode="official_word")(tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match="official_subword"):
        WordRepetition(mode="official_subword")(tf.constant("a b c"))
    with pytest.raises(ValueError, match="float32"):
        WordRepetition()(tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="seed"):
        WordRepetition()(tf.constant([1, 2]), seed=1.5)


# ----------------------------------------------------------------------------- tf.data


def _ragged_rows():
    rng = np.random.default_rng(1)
    return [rng.integers(1, 50, size=rng.integers(1, 15)).tolist() for _ in range(40)]


def test_map_then_batch_and_batch_then_map_are_equivalent():
    rows = _ragged_rows()
    layer = WordRepetition(dup_rate=0.32, seed=24)
    source = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(rows))
    map_then_batch = (
        source.enumerate()
        .map(lambda i, x: layer(x, seed=i), num_parallel_calls=tf.data.AUTOTUNE)
        .ragged_batch(8)
    )
    batch_then_map = (
        source.ragged_batch(8).enumerate()
        .map(lambda i, x: layer(x, seed=i), num_parallel_calls=tf.data.AUTOTUNE)
    )
    assert map_then_batch.element_spec == batch_then_map.element_spec
    assert isinstance(map_then_batch.element_spec, tf.RaggedTensorSpec)
    stateful = source.map(layer, num_parallel_calls=tf.data.AUTOTUNE).ragged_batch(8)
    for ds in (map_then_batch, batch_then_map, stateful):
        out = [row for batch in ds for row in batch.to_list()]
        assert len(out) == len(rows)
        assert all(doubled_positions(i, o) is not None for i, o in zip(rows, out))

    # Dense padded batches stay dense with their width.
    padded = source.map(lambda x: x).padded_batch(8, padded_shapes=[16]).map(layer)
    assert padded.element_spec.shape.as_list() == [None, 16]
    assert all(b.shape[1] == 16 for b in padded)

    # Sentences, before tokenization.
    texts = tf.data.Dataset.from_tensor_slices(["a b c", "d e", "f"]).map(layer).batch(3)
    assert next(iter(texts)).shape == (3,)


def test_parallel_map_with_call_seed_is_reproducible():
    rows = _ragged_rows()

    def run():
        layer = WordRepetition(dup_rate=0.5, seed=25)
        ds = (
            tf.data.Dataset.from_tensor_slices(tf.ragged.constant(rows))
            .repeat(2)
            .enumerate()
            .map(
                lambda i, x: layer(x, seed=i),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=False,
            )
        )
        return [x.tolist() for x in ds.as_numpy_iterator()]

    first, second = run(), run()
    assert sorted(map(tuple, first)) == sorted(map(tuple, second))
    # The two epochs (indices i and i + 40) are drawn independently.
    layer = WordRepetition(dup_rate=0.5, seed=25)
    epoch0 = [layer(tf.constant(r), seed=i).numpy().tolist() for i, r in enumerate(rows)]
    epoch1 = [
        layer(tf.constant(r), seed=i + len(rows)).numpy().tolist() for i, r in enumerate(rows)
    ]
    assert epoch0 != epoch1
    assert sorted(map(tuple, first)) == sorted(map(tuple, epoch0 + epoch1))


def test_graph_mode():
    layer = WordRepetition(dup_rate=0.5, seed=26)

    @tf.function
    def f(x, seed):
        return layer(x, seed=seed)

    x = tf.ragged.constant([[1, 2, 3], [4, 5]])
    assert f(x, tf.constant([0, 3])).to_list() == layer(x, seed=[0, 3]).to_list()
    g = tf.function(lambda s: layer(s))(tf.constant(["a b c"]))
    assert g.shape == (1,)


def test_docstring_pipeline_with_start_end_packer():
    import keras_hub

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "quick", "brown", "fox", "jumps", "."]
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocab, lowercase=True)
    repeat = WordRepetition(dup_rate=0.32, seed=42)
    packer = keras_hub.layers.StartEndPacker(
        sequence_length=32, start_value=2, end_value=3, pad_value=0
    )

    def make_views(index, sentence):
        ids = tokenizer(sentence)[:30]
        return packer(ids), packer(repeat(ids, seed=index))

    ds = (
        tf.data.Dataset.from_tensor_slices(["The quick brown fox .", "The fox jumps ."])
        .repeat(2)
        .enumerate()
        .map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(2)
    )
    for original, repeated in ds:
        assert original.shape == repeated.shape == (2, 32)
        for o, r in zip(original.numpy().tolist(), repeated.numpy().tolist()):
            strip = lambda v: [t for t in v if t != 0]
            assert strip(o)[0] == strip(r)[0] == 2 and strip(o)[-1] == strip(r)[-1] == 3
            assert doubled_positions(strip(o)[1:-1], strip(r)[1:-1]) is not None


# ----------------------------------------------------------------------------- seeds


def test_seeded_reproducibility_and_variation():
    x = tf.ragged.constant([list(range(1, 21))] * 50)
    a, b = WordRepetition(seed=7), WordRepetition(seed=7)
    seq_a = [a(x).to_list() for _ in range(3)]
    seq_b = [b(x).to_list() for _ in range(3)]
    assert seq_a == seq_b  # same seed, same call sequence -> same outputs
    assert seq_a[0] != seq_a[1]  # successive calls differ
    assert len({tuple(r) for r in seq_a[0]}) > 1  # identical rows of a batch get different draws
    assert WordRepetition(seed=8)(x).to_list() != seq_a[0]  # different layer seed

    # Stateless call seeds: independent of the call order and of the generator state.
    c = WordRepetition(seed=7)
    first = c(x, seed=(1, 2)).to_list()
    c(x)
    assert c(x, seed=(1, 2)).to_list() == first
    assert c(x, seed=(1, 3)).to_list() != first
    assert WordRepetition(seed=9)(x, seed=(1, 2)).to_list() != first
    assert c(x, seed=tf.constant(5, tf.int64)).to_list() == c(x, seed=5).to_list()

    s = WordRepetition(seed=7)(tf.constant(["a b c d e f g h"] * 50), seed=1).numpy()
    assert len(set(s.tolist())) > 1


# ----------------------------------------------------------------------------- pinned outputs

# Outputs of WordRepetition before it became a TokenAugmentation (commit 6a03305, generated with
# the code of `test_pinned_outputs`): the refactor must keep every mode, input kind and seed
# path bit-identical.
PIN_ROWS = [[5, 6, 7, 8, 9, 10, 11, 12], [13, 14], [], [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26], [27]]
PIN_SENTENCES = ["the quick brown fox jumps over the lazy dog", "hello world", "", "one"]
PINNED = {'paper_ragged_seed34': [[5, 6, 6, 7, 8, 9, 9, 10, 11, 12], [13, 14, 14], [],
                             [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26], [27, 27]],
     'paper_ragged_int64_scalar_seed': [[5, 6, 7, 8, 8, 9, 10, 10, 11, 12], [13, 14], [],
                                        [15, 16, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26], [27]],
     'official_subword_specials': [[101, 5, 6, 7, 8, 9, 9, 10, 11, 11, 12, 102], [101, 13, 14, 102], [101, 102],
                                   [101, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 102], [101, 27, 102]],
     'official_subword_rate1': [[5, 5, 6, 6, 7, 7, 8, 8, 9, 10, 11, 11, 12, 12], [13, 13, 14], [],
                                [15, 16, 16, 17, 18, 19, 20, 21, 22, 23, 23, 24, 25, 26], [27, 27]],
     'paper_1d': [15, 16, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26],
     'paper_dense': [[5, 6, 7, 8, 9, 0, 0, 0], [10, 11, 0, 0, 0, 0, 0, 0], [12, 13, 14, 15, 16, 17, 18, 19]],
     'paper_max_length': [[5, 5, 6, 6, 7, 8], [13, 14], [], [15, 16, 17, 18, 19, 20], [27]],
     'stateful_calls': [[[5, 6, 6, 7, 8, 8, 9, 10, 10, 11, 12], [13, 14], [],
                         [15, 16, 17, 17, 18, 19, 20, 20, 21, 21, 22, 23, 23, 24, 24, 25, 26, 26], [27]],
                        [[5, 6, 7, 8, 9, 9, 10, 11, 12], [13, 13, 14, 14], [],
                         [15, 15, 16, 17, 18, 19, 19, 20, 20, 21, 22, 22, 23, 24, 24, 25, 26, 26], [27]],
                        [5, 6, 7, 8, 8, 9, 10, 11, 12]],
     'strings_paper': ['the quick brown fox fox jumps jumps over the lazy lazy dog dog',
                       'hello hello world world', '', 'one'],
     'strings_official_word': ['the the quick brown fox jumps over the lazy lazy dog', 'hello world', '', 'one'],
     'string_scalar_stateful': 'the quick brown fox fox jumps over',
     'tf_data_batches': [[[5, 6, 7, 8, 8, 9, 10, 11, 11, 12], [13, 14], [],
                          [15, 16, 16, 17, 18, 19, 20, 21, 22, 23, 24, 24, 25, 26], [27]],
                         [[5, 5, 6, 7, 8, 9, 10, 10, 11, 12], [13, 14], [],
                          [15, 15, 16, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 25, 26], [27, 27]],
                         [[5, 6, 7, 8, 9, 10, 10, 11, 12, 12], [13, 14], [],
                          [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26], [27]],
                         [[5, 6, 7, 8, 9, 10, 11, 12], [13, 13, 14, 14], [],
                          [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26], [27, 27]]]}


def _plain(x):
    if isinstance(x, tf.RaggedTensor):
        return x.to_list()
    if x.dtype == tf.string:
        x = x.numpy()
        return x.decode() if isinstance(x, bytes) else [s.decode() for s in x.tolist()]
    return x.numpy().tolist()


def test_pinned_outputs():
    rows = PIN_ROWS
    got = {}
    got["paper_ragged_seed34"] = WordRepetition(dup_rate=0.5, seed=11)(tf.ragged.constant(rows, tf.int32), seed=(3, 4))
    got["paper_ragged_int64_scalar_seed"] = WordRepetition(dup_rate=0.32, seed=12)(
        tf.ragged.constant(rows, tf.int64), seed=tf.constant(9, tf.int64))
    got["official_subword_specials"] = WordRepetition(
        dup_rate=0.32, mode="official_subword", unselectable_token_ids=[CLS, SEP], seed=13
    )(tf.ragged.constant([[CLS] + r + [SEP] for r in rows]), seed=(0, 7))
    got["official_subword_rate1"] = WordRepetition(dup_rate=1.0, mode="official_subword", seed=14)(
        tf.ragged.constant(rows), seed=[2])
    got["paper_1d"] = WordRepetition(dup_rate=0.5, seed=15)(tf.constant(rows[3], tf.int32), seed=5)
    dense = tf.constant([[5, 6, 7, 8, 9, 0, 0, 0], [10, 11, 0, 0, 0, 0, 0, 0], [12, 13, 14, 15, 16, 17, 18, 19]])
    got["paper_dense"] = WordRepetition(dup_rate=0.6, seed=16)(dense, seed=(1, 2))
    got["paper_max_length"] = WordRepetition(dup_rate=0.8, max_length=6, seed=17)(
        tf.ragged.constant(rows), seed=(4, 4, 4))
    stateful = WordRepetition(dup_rate=0.5, seed=18)
    got["stateful_calls"] = [stateful(tf.ragged.constant(rows)) for _ in range(2)] + [stateful(tf.constant(rows[0]))]
    got["strings_paper"] = WordRepetition(dup_rate=0.5, seed=19)(tf.constant(PIN_SENTENCES), seed=(5, 6))
    got["strings_official_word"] = WordRepetition(dup_rate=0.5, mode="official_word", seed=20)(
        tf.constant(PIN_SENTENCES), seed=3)
    got["string_scalar_stateful"] = WordRepetition(dup_rate=0.5, seed=21, max_length=7)(PIN_SENTENCES[0])
    layer = WordRepetition(dup_rate=0.32, seed=42)
    ds = (
        tf.data.Dataset.from_tensor_slices(tf.ragged.constant(rows * 4)).ragged_batch(5).enumerate()
        .map(lambda i, x: layer(x, seed=tf.stack([tf.constant(42, tf.int64), i])))
    )
    got["tf_data_batches"] = list(ds)
    got = {k: [_plain(x) for x in v] if isinstance(v, list) else _plain(v) for k, v in got.items()}
    assert list(got) == list(PINNED)
    for key in PINNED:
        assert got[key] == PINNED[key], key


# ----------------------------------------------------------------------------- config


def test_config_round_trip_and_serialization():
    args = dict(dup_rate=0.3, mode="official_subword", max_length=40, seed=3)
    layer = WordRepetition(unselectable_token_ids=(CLS, SEP), **args)
    config = layer.get_config()
    for key, value in dict(unselectable_token_ids=[CLS, SEP], **args).items():
        assert config[key] == value
    assert WordRepetition.from_config(config).get_config() == config

    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "tf_esimcse>WordRepetition"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, WordRepetition) and restored.get_config() == config
    x = tf.ragged.constant([list(range(1, 30))] * 4)
    assert restored(x, seed=1).to_list() == layer(x, seed=1).to_list()

    unseeded = WordRepetition()
    assert isinstance(unseeded.get_config()["seed"], int)
    assert WordRepetition.from_config(unseeded.get_config()).get_config() == unseeded.get_config()


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        (dict(dup_rate=-0.1), "-0.1"),
        (dict(dup_rate=1.5), "1.5"),
        (dict(dup_rate="high"), "'high'"),
        (dict(mode="bpe"), "'bpe'"),
        (dict(max_length=0), "max_length=0"),
        (dict(max_length=2.5), "2.5"),
        (dict(unselectable_token_ids="[CLS]"), "'[CLS]'"),
        (dict(unselectable_token_ids=[101, "x"]), "'x'"),
        (dict(unselectable_token_ids=5), "unselectable_token_ids=5"),
        (dict(seed="abc"), "'abc'"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, shown):
    with pytest.raises(ValueError) as info:
        WordRepetition(**kwargs)
    assert shown in str(info.value)
