"""ESimCSE word repetition (Wu et al., 2022, arXiv 2109.04380) as a Keras preprocessing layer.

ESimCSE builds the positive view of a sentence by repeating a few of its (sub-)words in place
("a b c" -> "a a b c c"), so that the two views of a positive pair differ in length and the
encoder cannot use length as a shortcut. `WordRepetition` does this with TensorFlow ops only
(no Python-side randomness), so it runs eagerly, inside `tf.function`, and inside
`tf.data.Dataset.map` (also with `num_parallel_calls=tf.data.AUTOTUNE`). It is a
`tf_esimcse.layers.token_augmentation.TokenAugmentation` (shared input handling, seeds and
unselectable ids) that also accepts sentences.

What is repeated
----------------
Let N be the number of *selectable* units of a sentence: token ids whose value is not in
`unselectable_token_ids` (and, for a dense padded 2-D input, not `0`), or words for string input.
The layer draws a repeat count `dup_len` for the sentence (rule depends on `mode`, below), chooses
`dup_len` distinct selectable positions uniformly at random (sampling without replacement), and
repeats each chosen unit once where it stands (`t` at position p becomes `t t`); the order of the
sentence is kept and unselectable units are never repeated. `dup_len` is never more than the
number of positions it may choose from. With `max_length` set, each result is then truncated to
`max_length` units (tokens, or words for string input).

Modes, compared with the paper and the official code
----------------------------------------------------
The official code is `ESimCSE/train.py` of github.com/caskcsg/sentemb (commit 9ab271bb), the
function `prepare_features` nested in `main()`, branches `model_args.dup_type == "bpe"` (sub-word)
and `model_args.dup_type == "word"`. It uses Python's `random` module (seeded once by
`set_seed(training_args.seed)`) inside a `datasets.map` preprocessing pass.

`mode="paper"` (default; token ids or strings). The paper's rule: with N the sub-word length,
`dup_len ~ uniform integer on [0, max(2, int(dup_rate * N))]` (inclusive), then `dup_len`
positions uniformly chosen and each duplicated next to itself. Here N is the number of selectable
tokens (special tokens excluded when they are listed in `unselectable_token_ids` or absent from
the input; the paper does not say whether its length counts [CLS]/[SEP]). The only deviation: the
upper bound is additionally capped at N, i.e. `dup_len ~ uniform{0, ..., min(N, max(2,
int(dup_rate * N)))}`, because the `max(2, .)` floor would otherwise ask for more distinct
positions than exist when N < 2 (the paper is silent on that case). For string input the same rule
is applied to words (N = number of words, every word selectable).

`mode="official_subword"` (token ids only) reproduces the official "bpe" branch. Verified there:
  * it only runs when `int(dup_rate * L) > 0`, where L is the length of the tokenizer output
    *including [CLS] and [SEP]*, after truncation to `max_seq_length` (32); otherwise the sentence
    is left unchanged (`random.randrange(0)` would raise, so this guard is what happens when the
    bound is 0: no repetition);
  * `dup_len = random.randrange(min(10, int(dup_rate * L)))`, i.e. uniform on
    `{0, ..., min(10, int(dup_rate * L)) - 1}`: exclusive bound, no `max(2, .)` floor, at most 9;
  * positions `random.sample(range(1, L - 1), dup_len)`: every position except the first ([CLS])
    and the last ([SEP]), so the specials are never repeated; chosen tokens are emitted twice;
  * nothing re-truncates the result (a 32-token input can come out with up to 41 tokens);
  * the repetition is computed once, in the cached `datasets.map` preprocessing, so the same
    repeated view is used every epoch.
  This layer applies the same law with `L = N + 2`, N the number of selectable tokens: that is the
  official L both when the input carries [CLS]/[SEP] (listed in `unselectable_token_ids`) and in the
  recommended usage where they are added afterwards by a packer. Differences, all deliberate:
  (a) the official N is measured after truncation to 32 tokens, ours on whatever the layer is
  given: truncate the ids to `sequence_length - 2` before the layer to match exactly (with
  dup_rate=0.32 the bound is the same either way, as min(10, .) already caps it from L=32 on, but
  the positions then also come only from the kept prefix); (b) the output is re-truncated when
  `max_length` is set or when a packer truncates it; to reproduce the official lengths use
  `max_length=None` and a packer `sequence_length` of 32 + 9 = 41; (c) the draw is fresh on every
  call; to reproduce the official "fixed once" behaviour pass a per-example `seed` that does not
  change across epochs (e.g. the element index taken *before* `Dataset.repeat`); (d) `dup_len` is
  capped at N (the official `random.sample` would raise instead; this only happens with
  dup_rate = 1.0); (e) Philox streams instead of Python's Mersenne Twister: same distribution,
  different individual draws.

`mode="official_word"` (strings only) reproduces the official "word" branch. Verified there: the
sentence is split with `sent.split(' ')`, n = number of pieces,
`dup_len = random.randrange(min(10, n, max(2, int(dup_rate * n))))` (uniform on
`{0, ..., min(10, n, max(2, int(dup_rate * n))) - 1}`: the `max(2, .)` floor, a cap of 10 and of n,
exclusive bound), positions `random.sample(range(0, n - 1), dup_len)`, i.e. the *last word is
never repeated*, each chosen word w becomes "w w", and the words are joined with single spaces;
the result is tokenized (and truncated to 32 tokens) afterwards. Its `add_stop` option (insert a
stop word instead of repeating) is not implemented (the official stop-word list is commented out,
so that option cannot run there either). Differences: we split on any whitespace
(`tf.strings.split`), so runs of spaces, tabs and leading/trailing blanks do not produce empty
"words" (the official `split(' ')` keeps them as empty pieces, which count in n and can be
"repeated"); the other points (c), (e) of the sub-word mode apply as well.

Input and output
----------------
Token ids (int32 or int64), output of the same kind, dtype and rank:
  * 1-D tensor: one sentence (no padding; `0` is an ordinary id unless listed) -> 1-D, longer;
  * 2-D `tf.RaggedTensor`: a batch -> ragged batch;
  * 2-D dense tensor: a padded batch; `0` and the unselectable ids are never repeated, trailing
    `0`s are padding, and the output is re-padded with `0`/truncated to the input width;
  * Python lists: converted with `tf.ragged.constant` (a list of lists is a ragged batch, never
    padded), a NumPy array with `tf.convert_to_tensor` (a 2-D array is a padded dense batch).
Sentences (`tf.string`, a Python `str` or a list of `str`): a scalar is one sentence, a 1-D tensor a
batch; whole words are repeated and joined back with single spaces; the output has the input's
shape and is to be tokenized by the caller. `unselectable_token_ids` does not apply to strings.
Unlike keras-hub's layers, eager calls return TensorFlow tensors (a `tf.RaggedTensor` for ragged
results), never Python lists.

Randomness and seeds
--------------------
`call(inputs, seed=None)`:
  * `seed=None`: a per-call seed is taken from a stateful `tf.random.Generator` created from the
    layer's `seed`, so successive calls differ and a fresh layer with the same seed replays the
    same sequence of calls. Inside `Dataset.map(..., num_parallel_calls=...)` the order in which
    elements reach the generator is not fixed, so the pairing of draws to elements is then not
    reproducible.
  * `seed=<int scalar or 1-D int tensor of static length, e.g. (epoch, index)>`: fully stateless.
    The key is the layer seed with every element folded in
    (`tf.random.experimental.stateless_fold_in`), then split into one key for the repeat counts
    and one for the positions (`tf.random.stateless_uniform`, Philox). The result depends only on
    (layer seed, call seed, input), never on call order, so it is reproducible under parallel
    `map`. The natural choice is the index from `Dataset.enumerate()`: enumerate *after*
    `.repeat(epochs)` for a new draw every epoch, or *before* it (or pass `(index,)` only) for the
    official "same view every epoch" behaviour; or pass `(epoch, index)` explicitly.
Within one call the rows of a batch get different draws (one key per call, one uniform per row
and per token), so a row's result depends on its position in the batch: batching before or after
the layer gives equivalent distributions and structures, not identical values.

Throughput: the work is vectorised over the ragged values and row lengths (one double argsort per
batch on a padded [batch, max_len] matrix of random keys, one `tf.repeat`), with no per-row loop.

Recommended usage: run the layer on the token ids *without* [CLS]/[SEP] (so `unselectable_token_ids`
can stay empty) and before `keras_hub.layers.StartEndPacker`, which adds the specials, pads and
truncates again; `max_length` is then rarely needed.

Examples:

```python
import keras_hub
import tensorflow as tf
from tf_esimcse.layers.word_repetition import WordRepetition

vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "quick", "brown", "fox", "jumps", "."]
tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocab, lowercase=True)
repeat = WordRepetition(dup_rate=0.32, seed=42)
packer = keras_hub.layers.StartEndPacker(
    sequence_length=32, start_value=2, end_value=3, pad_value=0
)

def make_views(index, sentence):
    ids = tokenizer(sentence)[:30]  # the ids that fit between [CLS] and [SEP]
    repeated = repeat(ids, seed=index)  # stateless: depends on (layer seed, index) only
    return packer(ids), packer(repeated)

sentences = ["The quick brown fox .", "The fox jumps ."]
ds = (
    tf.data.Dataset.from_tensor_slices(sentences)
    .repeat(2)  # epochs; enumerate after repeat: a new repetition each epoch
    .enumerate()
    .map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(2)
)

# Batched token ids, with the specials already present (never repeated):
WordRepetition(unselectable_token_ids=[2, 3], seed=1)(tf.ragged.constant([[2, 4, 5, 3], [2, 7, 3]]))

# Word level, before tokenization:
WordRepetition(mode="official_word", seed=1)(["the quick brown fox .", "the fox jumps ."])
```
"""
import tensorflow as tf

from tf_esimcse.api_export import tf_esimcse_export
from tf_esimcse.layers.token_augmentation import RNG_ALG
from tf_esimcse.layers.token_augmentation import TokenAugmentation
from tf_esimcse.layers.token_augmentation import check_rate
from tf_esimcse.layers.token_augmentation import is_int
from tf_esimcse.layers.token_augmentation import to_tensor

MODES = ("paper", "official_subword", "official_word")
# Official sub-word code: at most `_OFFICIAL_CAP - 1` repeats, and its length counts [CLS] + [SEP].
_OFFICIAL_CAP = 10
_OFFICIAL_NUM_SPECIALS = 2


@tf_esimcse_export("layers.WordRepetition")
class WordRepetition(TokenAugmentation):
    """Repeats randomly chosen tokens or words in place (ESimCSE word repetition).

    See the module docstring for the exact rules of each mode, how they compare with the ESimCSE
    paper and its official code, the accepted inputs and the seed semantics. The input handling,
    the seeds and the unselectable ids are those of `TokenAugmentation`; the draw is made for
    the whole batch at once (`augment_batch` with two `batch_seeds`: one for the repeat counts,
    one for the positions), so per-row call seeds (`[batch, k]`) are not accepted.

    Args:
        dup_rate: float in [0, 1], the repetition rate of the paper (0.32 for BERT-base/-large).
        mode: `"paper"` (default, ids or strings), `"official_subword"` (ids: the official
            sub-word code) or `"official_word"` (strings: the official word-level code).
        max_length: optional int >= 1; truncate every result to this many tokens (words for
            string input).
        unselectable_token_ids: ids never repeated and not counted in N (e.g. [CLS], [SEP],
            [PAD] when present). For a dense 2-D input `0` is always treated as padding too.
        seed: int, the layer seed. `None` draws a random integer once, stored in the config.

    Call arguments:
        inputs: token ids (1-D tensor, 2-D ragged or dense padded tensor, Python lists) or
            sentences (`tf.string` scalar or 1-D tensor, `str`, list of `str`).
        seed: optional int scalar or 1-D int tensor of static length (e.g. `(epoch, index)`);
            when given, the draw is stateless: a function of the layer seed, this seed and the
            input only.
    """

    seed_salt = 0x5EED_E51C  # second word of the stateless key, next to the layer seed.

    def __init__(
        self,
        dup_rate=0.32,
        mode="paper",
        max_length=None,
        unselectable_token_ids=(),
        seed=None,
        **kwargs,
    ):
        dup_rate = check_rate("dup_rate", dup_rate)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if max_length is not None and (not is_int(max_length) or max_length < 1):
            raise ValueError(
                f"`max_length` must be None or an integer >= 1. Received: max_length={max_length!r}"
            )
        super().__init__(unselectable_token_ids=unselectable_token_ids, seed=seed, **kwargs)
        self.dup_rate = dup_rate
        self.mode = mode
        self.max_length = None if max_length is None else int(max_length)

    def max_added_tokens(self, max_selectable):
        """The most tokens this layer can add to a sequence of at most `max_selectable`
        selectable tokens (ids modes): e.g. 9 for `dup_rate=0.32` and 30 tokens, in both modes.
        A packer of `max_len + max_added_tokens(max_len - 2)` never cuts a repeated token."""
        if self.mode == "official_word":
            raise ValueError("max_added_tokens counts token ids; mode='official_word' repeats words of strings.")
        most = 0
        for n in range(int(max_selectable) + 1):
            if self.mode == "paper":
                most = max(most, min(n, max(2, int(self.dup_rate * n))))
            else:
                most = max(most, min(int(self.dup_rate * (n + _OFFICIAL_NUM_SPECIALS)), _OFFICIAL_CAP, n + 1) - 1)
        return most

    # ------------------------------------------------------------------ core

    def _num_repeats(self, num_units, num_selectable, key):
        """Per-row `dup_len` (int64 [B]) for rows with `num_units` units, `num_selectable` of them
        selectable."""
        n = num_units if self.mode == "official_word" else num_selectable
        n_f = tf.cast(n, tf.float64)
        if self.mode == "paper":
            # uniform on {0, ..., min(N, max(2, int(rate * N)))}
            upper = tf.maximum(tf.cast(tf.floor(self.dup_rate * n_f), tf.int64), 2)
            count = tf.minimum(upper, num_selectable) + 1
        elif self.mode == "official_subword":
            # official: randrange(min(10, int(rate * L))) with L = N + [CLS] + [SEP]; skipped
            # (no repetition) when int(rate * L) == 0.
            length = tf.cast(n + _OFFICIAL_NUM_SPECIALS, tf.float64)
            bound = tf.minimum(tf.cast(tf.floor(self.dup_rate * length), tf.int64), _OFFICIAL_CAP)
            count = tf.minimum(bound, num_selectable + 1)
        else:  # official_word
            # official: randrange(min(10, n, max(2, int(rate * n)))), n = number of words.
            floor2 = tf.maximum(tf.cast(tf.floor(self.dup_rate * n_f), tf.int64), 2)
            bound = tf.minimum(tf.minimum(n, floor2), _OFFICIAL_CAP)
            count = tf.minimum(bound, num_selectable + 1)
        count = tf.maximum(count, 0)
        u = tf.random.stateless_uniform(tf.shape(count), seed=key, dtype=tf.float64, alg=RNG_ALG)
        dup_len = tf.cast(tf.floor(u * tf.cast(count, tf.float64)), tf.int64)
        return tf.clip_by_value(dup_len, 0, tf.maximum(count - 1, 0))

    def _repeat_batch(self, batch, selectable, len_key, pos_key):
        """`batch`: [B, None] ragged; `selectable`: bool, aligned with `batch.values`."""
        row_ids = batch.value_rowids()
        row_lengths = tf.cast(batch.row_lengths(), tf.int64)
        nrows = batch.nrows(out_type=tf.int64)
        sel_int = tf.cast(selectable, tf.int64)
        num_selectable = tf.math.unsorted_segment_sum(sel_int, row_ids, nrows)
        dup_len = self._num_repeats(row_lengths, num_selectable, len_key)

        # Uniform k-subset of the selectable positions of each row: the k smallest of i.i.d.
        # uniform keys. Unselectable positions get key 2 (after all selectable ones), padding 3.
        keys = tf.random.stateless_uniform(
            tf.shape(batch.values), seed=pos_key, dtype=tf.float64, alg=RNG_ALG
        )
        keys = tf.where(selectable, keys, tf.constant(2.0, tf.float64))
        dense_keys = batch.with_values(keys).to_tensor(default_value=3.0)
        order = tf.argsort(dense_keys, axis=-1, stable=True)
        dense_ranks = tf.argsort(order, axis=-1, stable=True)
        ranks = tf.RaggedTensor.from_tensor(dense_ranks, lengths=batch.row_lengths()).values
        chosen = tf.cast(ranks, tf.int64) < tf.gather(dup_len, row_ids)

        repeats = 1 + tf.cast(chosen, tf.int64)
        values = tf.repeat(batch.values, repeats)
        added = tf.math.unsorted_segment_sum(tf.cast(chosen, tf.int64), row_ids, nrows)
        out = tf.RaggedTensor.from_row_lengths(
            values, tf.cast(row_lengths + added, batch.row_splits.dtype), validate=False
        )
        if self.max_length is not None:
            out = out[:, : self.max_length]
        return out

    def augment_batch(self, token_ids, selectable, seed):
        len_key, pos_key = self.batch_seeds(seed, num=2)
        return self._repeat_batch(token_ids, selectable.values, len_key, pos_key)

    # ------------------------------------------------------------------ call

    def call(self, inputs, seed=None):
        with tf.device("cpu"):
            x = to_tensor(inputs)
            if x.dtype == tf.string:
                return self._call_strings(x, seed)
            if x.dtype not in (tf.int32, tf.int64):
                raise ValueError(
                    "WordRepetition expects int32/int64 token ids or tf.string sentences. "
                    f"Received dtype={x.dtype.name}"
                )
            if self.mode == "official_word":
                raise ValueError(
                    "mode='official_word' applies to sentences (tf.string), not token ids; use "
                    "mode='paper' or mode='official_subword' for ids."
                )
            return self.call_ids(x, seed)

    def _call_strings(self, x, seed):
        if self.mode == "official_subword":
            raise ValueError(
                "mode='official_subword' applies to token ids, not sentences; use "
                "mode='official_word' or mode='paper' for tf.string input."
            )
        if isinstance(x, tf.RaggedTensor) or x.shape.rank not in (0, 1):
            raise ValueError(
                "String input must be one sentence (scalar) or a batch of sentences (1-D). "
                f"Received: shape={x.shape}"
            )
        unbatched = x.shape.rank == 0
        words = tf.strings.split(x[None] if unbatched else x)
        if self.mode == "official_word":
            # The official word code never repeats the last word (positions 0 .. n - 2).
            last = tf.gather(words.row_lengths(), words.value_rowids()) - 1
            position = tf.range(tf.size(words.values, out_type=tf.int64)) - tf.gather(
                words.row_starts(), words.value_rowids()
            )
            selectable = position < last
        else:
            selectable = tf.ones_like(words.values, dtype=tf.bool)
        len_key, pos_key = self.batch_seeds(seed, num=2)
        out = self._repeat_batch(words, selectable, len_key, pos_key)
        joined = tf.strings.reduce_join(out, axis=-1, separator=" ")
        return joined[0] if unbatched else joined

    # ------------------------------------------------------------------ keras

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dup_rate": self.dup_rate,
                "mode": self.mode,
                "max_length": self.max_length,
            }
        )
        return config
