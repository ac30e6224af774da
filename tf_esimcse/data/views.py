"""Views as data: one `tf.data` builder for every contrastive objective.

A *view* is one packed encoding of each example in a batch: which field of the example it
reads (`source`), an optional augmentation of its token ids (`transform`, e.g.
`WordRepetition`, `RandomCrop`, `WordDeletion`, or any `(ragged_ids, seed) -> ragged_ids`
callable) and its packed length. `views_dataset` turns examples (sentences, pairs, triplets or
named columns) into batches `{view_name: {"token_ids", "padding_mask"}}` of int32:

* each field the views read is tokenized once (`SentencePreprocessor.tokenize`: no [CLS]/[SEP],
  truncated so that they fit) and cached;
* the examples are shuffled jointly (all fields of an example stay together) with `seed`,
  anew every epoch, optionally repeated, and batched with `drop_remainder=True` (every
  contrastive batch has the same number of negatives);
* each view's transform gets a stateless per-batch seed, a `(2,)` int64 tensor: the j-th view
  that has a transform (in the order of `views`, j = 0, 1, ...) gets `(seed + j, key_b)`, with
  `key_b` the b-th value of `tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)`.
  So the views' draws differ from each other and from batch to batch, change every epoch (every
  iteration of the dataset, as Keras makes one per epoch), and are reproducible whatever the
  parallelism;
* each view is packed as `[CLS] ids [SEP] [PAD]...` (`SentencePreprocessor.pack`) to its
  `sequence_length` (the preprocessor's by default), then, with `dynamic_padding=True`, cut to
  its longest row in the batch (views of one batch may then have different widths; the models
  pad them together).

Unsupervised SimCSE encodes each sentence twice (dropout is the augmentation), so `views=None`
yields plain `{"token_ids", "padding_mask"}` batches of the first field; this is
`unsup_dataset`. ESimCSE is `{"anchor": View(0), "positive": View(0, WordRepetition(...))}`
(`esimcse_dataset`), supervised SimCSE `supervised_views()` on NLI triplets.

Examples (runnable; any `SentencePreprocessor` works, here the tiny test vocabulary):

```python
from tf_esimcse.data.views import View, supervised_views, views_dataset
from tf_esimcse.layers.random_crop import RandomCrop

nli = {
    "sent0": ["a man is playing a guitar .", "two dogs run on the grass .", "a woman cooks ."],
    "sent1": ["a man plays music .", "animals are outside .", "someone is cooking ."],
    "hard_neg": ["a man is sleeping .", "the dogs are asleep .", "nobody is cooking ."],
}
ds = views_dataset(
    nli, preprocessor,
    {"anchor": View("sent0"), "positive": View("sent1"), "negative": View("hard_neg")},
    batch_size=2,
)
# Same views: views_dataset(nli, preprocessor, supervised_views("sent0", "sent1", "hard_neg"))
# Triplets as tuples (fields 0, 1, 2): views_dataset(read_nli_triplets(path), preprocessor,
#                                                    supervised_views())
for batch in ds:
    batch["anchor"]["token_ids"]  # int32 (2, preprocessor.sequence_length)

# SimCSE's "crop 10%" ablation: two cropped views of each sentence.
sentences = nli["sent0"]
crop = RandomCrop(rate=0.1, seed=1)
ds = views_dataset(sentences, preprocessor, {"anchor": View(0, crop), "positive": View(0, crop)},
                   batch_size=2)
```
"""
import dataclasses
import numbers

import tensorflow as tf

from tf_esimcse.errors import DataError
from tf_esimcse.layers.sentence_preprocessor import trim_to_longest


@dataclasses.dataclass(frozen=True)
class View:
    """One packed encoding of the examples of a batch.

    Args:
        source: int or str. The field of each example the view reads: an index (examples
            given as strings have field `0`; pairs and triplets `0, 1, 2`) or a name (examples
            given as a dict of columns). Defaults to `0`.
        transform: None (the ids as tokenized) or a callable `(ragged_ids, seed) -> ragged_ids`
            applied to each batch's token ids before packing: a `TokenAugmentation`
            (`WordRepetition`, `RandomCrop`, `WordDeletion`) or any function of int ragged
            ids `[batch, None]` (no [CLS]/[SEP]) and a `(2,)` int64 stateless seed.
        sequence_length: int or None. Packed length of this view ([CLS]/[SEP] included);
            longer results are truncated. `None` uses the preprocessor's.
    """

    source: object = 0
    transform: object = None
    sequence_length: object = None

    def __post_init__(self):
        if isinstance(self.source, bool) or not isinstance(self.source, (numbers.Integral, str)):
            raise ValueError(
                f"View source must be a field index (int) or a field name (str). Received: source={self.source!r}"
            )
        if isinstance(self.source, numbers.Integral) and self.source < 0:
            raise ValueError(f"View source index must be >= 0. Received: source={self.source!r}")
        if self.transform is not None and not callable(self.transform):
            raise ValueError(
                "View transform must be None or a callable (ragged_ids, seed) -> ragged_ids. "
                f"Received: transform={self.transform!r}"
            )
        if self.sequence_length is not None and (
            isinstance(self.sequence_length, bool)
            or not isinstance(self.sequence_length, numbers.Integral)
            or self.sequence_length < 3
        ):
            raise ValueError(
                "View sequence_length must be None or an integer >= 3 ([CLS], a token, [SEP]). "
                f"Received: sequence_length={self.sequence_length!r}"
            )


def supervised_views(anchor=0, positive=1, negative=2, neutral=None):
    """Supervised SimCSE's views: `{"anchor": View(anchor), "positive": View(positive),
    "negative": View(negative)}` (no `"negative"` when `negative` is None), plus
    `"neutral": View(neutral)` (a second hard negative) when `neutral` is given. The defaults fit
    triplets given as tuples (`read_nli_triplets`); pass `"sent0", "sent1", "hard_neg"` for
    SimCSE's NLI csv columns given as a dict, and `neutral=3` for `read_snli_triplets(...,
    neutral=True)`."""
    views = {"anchor": View(anchor), "positive": View(positive)}
    if negative is not None:
        views["negative"] = View(negative)
    if neutral is not None:
        views["neutral"] = View(neutral)
    return views


# ----------------------------------------------------------------------------- examples


def _is_text(value):
    return isinstance(value, (str, bytes))


def example_fields(examples):
    """Examples -> (ordered field keys, {key: list of str}, number of examples).

    `examples`: a list of str (field 0), a list of tuples/lists of str (fields 0, 1, ...) or a
    dict of equal-length lists of str keyed by field name. Raises `DataError` naming the
    problem and the example index.
    """
    if isinstance(examples, dict):
        if not examples:
            raise DataError("no examples: the dict of fields is empty")
        columns, lengths = {}, {}
        for name, column in examples.items():
            if not isinstance(name, str):
                raise DataError(f"field names must be str; got {name!r}")
            if _is_text(column) or not isinstance(column, (list, tuple)):
                raise DataError(f"field {name!r} must be a list of str; got {type(column).__name__}")
            for i, value in enumerate(column):
                if not _is_text(value):
                    raise DataError(f"field {name!r}, example {i}: expected str, got {type(value).__name__} {value!r}")
            columns[name] = list(column)
            lengths[name] = len(column)
        if len(set(lengths.values())) > 1:
            raise DataError(f"the fields have different numbers of examples: {lengths}")
        n = next(iter(lengths.values()))
        if n == 0:
            raise DataError("no examples to train on")
        return list(columns), columns, n

    if _is_text(examples) or not isinstance(examples, (list, tuple)):
        raise DataError(
            "examples must be a list of str, a list of tuples of str or a dict of lists of str; "
            f"got {type(examples).__name__}"
        )
    if len(examples) == 0:
        raise DataError("no examples to train on")
    first = examples[0]
    if _is_text(first):
        for i, value in enumerate(examples):
            if not _is_text(value):
                raise DataError(f"example {i}: expected str like example 0, got {type(value).__name__} {value!r}")
        return [0], {0: list(examples)}, len(examples)
    if not isinstance(first, (list, tuple)):
        raise DataError(f"example 0: expected str or a tuple of str, got {type(first).__name__} {first!r}")
    width = len(first)
    if width == 0:
        raise DataError("example 0 has no fields")
    columns = {k: [] for k in range(width)}
    for i, example in enumerate(examples):
        if _is_text(example) or not isinstance(example, (list, tuple)):
            raise DataError(f"example {i}: expected a tuple of {width} str like example 0, got {example!r}")
        if len(example) != width:
            raise DataError(f"example {i} has {len(example)} fields, example 0 has {width}: {example!r}")
        for k, value in enumerate(example):
            if not _is_text(value):
                raise DataError(f"example {i}, field {k}: expected str, got {type(value).__name__} {value!r}")
            columns[k].append(value)
    return list(range(width)), columns, len(examples)


def _normalize_views(views, field_keys):
    if not isinstance(views, dict) or not views:
        raise ValueError(f"views must be a non-empty dict {{name: View}}. Received: views={views!r}")
    out = {}
    for name, view in views.items():
        if not isinstance(name, str):
            raise ValueError(f"view names must be str. Received: {name!r}")
        if not isinstance(view, View):
            if isinstance(view, (numbers.Integral, str)) and not isinstance(view, bool):
                view = View(view)  # shorthand: a field index or name
            else:
                raise ValueError(f"view {name!r} must be a View (or a field index/name). Received: {view!r}")
        if view.source not in field_keys:
            raise ValueError(
                f"view {name!r} reads unknown field {view.source!r}; the examples have fields {field_keys}"
            )
        out[name] = view
    return out


# ----------------------------------------------------------------------------- dataset


def tokenized_dataset(sentences, preprocessor):
    """Sentences -> dataset of 1-D token-id tensors (no [CLS]/[SEP]), tokenized once and cached."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(sentences), dtype=tf.string))
    ds = ds.batch(1024).map(preprocessor.tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.cache()


def check_batch_size(batch_size, num_examples, what="examples"):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (in-batch negatives), got {batch_size!r}.")
    if num_examples < batch_size:
        raise DataError(
            f"the data has {num_examples} {what}, fewer than one batch of {batch_size} "
            "(batches drop the remainder)"
        )


def views_dataset(examples, preprocessor, views=None, batch_size=64, shuffle=True, seed=42, repeat=False,
                  dynamic_padding=False):
    """Examples -> batches of packed views, int32 (see the module docstring).

    Args:
        examples: a list of str (one field, index `0`), a list of tuples/lists of str (pairs,
            triplets: fields `0, 1, 2`) or a dict of equal-length lists of str keyed by field
            name (e.g. `{"sent0": [...], "sent1": [...], "hard_neg": [...]}`).
        preprocessor: a `SentencePreprocessor` (tokenize, then pack; its `sequence_length` is
            the default packed length).
        views: dict `{name: View}` (a bare field index or name stands for `View(it)`), or
            `None`: plain batches of the first field (field `0`, or a dict's first key).
        batch_size: int >= 2. Every batch has exactly this many examples (`drop_remainder`).
            Defaults to `64`.
        shuffle: bool. Shuffle the examples jointly, anew each epoch, with `seed`. Defaults to
            `True`.
        seed: int. The shuffle seed and the root of the transforms' per-batch seeds.
            Defaults to `42`.
        repeat: bool. Repeat forever (use with `steps_per_epoch`). Defaults to `False`.
        dynamic_padding: bool. Cut each view of a batch to its longest row instead of its
            packed length. Defaults to `False`.

    Returns:
        A `tf.data.Dataset` of `{name: {"token_ids", "padding_mask"}}` int32 (batch, length)
        dicts, or of `{"token_ids", "padding_mask"}` when `views` is None.

    Raises:
        DataError: empty or malformed examples (ragged tuples, non-strings, fields of different
            lengths: the message names the example or field), fewer examples than a batch.
        ValueError: a bad `batch_size`, or a view that is not a `View` or reads an unknown field.
    """
    field_keys, columns, num_examples = example_fields(examples)
    plain = views is None
    views = {"view": View(field_keys[0])} if plain else _normalize_views(views, field_keys)
    check_batch_size(batch_size, num_examples)

    # The fields the views read, in order of first use; each tokenized once and cached.
    used = []
    for view in views.values():
        if view.source not in used:
            used.append(view.source)
    parts = [tokenized_dataset(columns[key], preprocessor) for key in used]
    ds = parts[0] if len(parts) == 1 else tf.data.Dataset.zip(tuple(parts))
    if shuffle:
        ds = ds.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.ragged_batch(batch_size, drop_remainder=True)

    transformed = [name for name, view in views.items() if view.transform is not None]
    if transformed:
        # Each batch gets its own stateless key: a random stream seeded by `seed` that is drawn
        # anew each time the dataset is iterated (each Keras epoch), reproducibly.
        batch_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((batch_keys, ds))
    position = {key: i for i, key in enumerate(used)}

    def make_views(*args):
        key = args[0] if transformed else None
        fields = args[1:] if transformed else args
        if len(fields) == 1 and isinstance(fields[0], tuple):
            fields = fields[0]
        out = {}
        for name, view in views.items():
            ids = fields[position[view.source]]
            if view.transform is not None:
                j = transformed.index(name)
                view_seed = tf.stack([tf.cast(seed, tf.int64) + j, key])
                ids = view.transform(ids, view_seed)
            packed = preprocessor.pack(ids, sequence_length=view.sequence_length)
            out[name] = trim_to_longest(packed) if dynamic_padding else packed
        return out["view"] if plain else out

    ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
