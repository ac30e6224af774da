"""TensorFlow Datasets builders for this package's corpora, under the `tf_esimcse:` namespace.

Importing this module registers four builders in a TFDS community namespace of their own, so
that (checked with TFDS 4.9.10) `tfds.load` and `tfds.builder` find them by name, offline, in
the process that imported it:

- `tf_esimcse:wiki1m_for_simcse`: SimCSE's unsupervised corpus, split "train", `{"text"}`.
- `tf_esimcse:nli_for_simcse`: SimCSE's NLI triplets, split "train", `{"sent0", "sent1",
  "hard_neg"}`.
- `tf_esimcse:senteval_sts/<config>`: SentEval's STS data, configs "sts12" ... "sts16" (split
  "test"), "stsb" ("dev", "test") and "sickr" ("test"); `{"sentence1", "sentence2", "score",
  "subset"}`.
- `tf_esimcse:sentences`: any one-sentence-per-line corpus (every `*.txt` file of the manual
  directory), split "train", `{"text"}`.

Nothing is downloaded: each builder reads files that you put in its *manual directory* (see its
`MANUAL_DOWNLOAD_INSTRUCTIONS`), with this package's own readers (`tf_esimcse.data.corpus`,
`tf_esimcse.data.senteval`), and keeps their order (`disable_shuffling`), so a split holds
exactly the examples, in the order, that those readers return. Example:

```python
import tensorflow_datasets as tfds
from tf_esimcse.data import tfds_builders  # registers the namespace

ds = tfds.load(
    "tf_esimcse:wiki1m_for_simcse", split="train", data_dir="/data/tfds",
    download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
        manual_dir="/data/wiki1m")},  # holds wiki1m_for_simcse.txt
)
sentences = tfds_builders.tfds_sentences(ds)  # what unsup_dataset / esimcse_dataset take
stsb_dev = tfds.load("tf_esimcse:senteval_sts/stsb", split="dev", data_dir="/data/tfds",
                     download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
                         manual_dir="/data")})  # holds senteval/
pairs = tfds_builders.tfds_examples(stsb_dev)  # [(sentence1, sentence2, score), ...]
```

`tfds_sentences` and `tfds_examples` turn a loaded split back into the Python lists the training
pipelines (`tf_esimcse.data.views`) take. The builder classes can also be used directly
(`Wiki1mForSimcse(data_dir=...)`), without the namespace.

The namespace goes through TFDS's community registry (`tensorflow_datasets.core.community`),
which has no public "add a namespace" call; `register_namespace` is the one place that touches
it. If a TFDS upgrade moves it, importing this module warns and the classes still work.
"""
import inspect
import pathlib
import warnings

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from tf_esimcse.data import corpus, senteval
from tf_esimcse.errors import DataError

NAMESPACE = "tf_esimcse"
SIMCSE_DATA_URL = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main"
SIMCSE_CITATION = """\
@inproceedings{gao2021simcse,
  title={{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author={Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle={Empirical Methods in Natural Language Processing (EMNLP)},
  year={2021}
}"""
NLI_KEYS = ("sent0", "sent1", "hard_neg")
STS_KEYS = ("sentence1", "sentence2", "score")


def _manual_dir(dl_manager):
    """`dl_manager.manual_dir`, with TFDS's error for a missing or empty one (which quotes the
    builder's `MANUAL_DOWNLOAD_INSTRUCTIONS`) raised as a `DataError`."""
    try:
        return pathlib.Path(dl_manager.manual_dir)
    except AssertionError as e:
        raise DataError(str(e)) from e


def _manual_file(dl_manager, name):
    """The file `name` of the manual directory; a `DataError` naming it (and its URL) if absent."""
    path = _manual_dir(dl_manager) / name
    if not path.is_file():
        raise DataError(f"missing {name} in the manual directory; download it from {SIMCSE_DATA_URL}/{name}",
                        path=path)
    return path


class _ModuleFilePath:
    """`code_path` of our builders: this module's file. TFDS 4.9.10's own `code_path` needs the
    `importlib_resources` backport, which it does not declare on Python >= 3.9
    (tensorflow/datasets#11212); the file path is what it returns for a module on disk anyway."""

    def __get__(self, obj, cls):
        return epath.Path(inspect.getfile(cls))


class _ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of our builders: version 1.0.0, data from the manual directory only."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    code_path = _ModuleFilePath()


class _TextLines(_ManualBuilder, skip_registration=True):
    """Base of the sentence-corpus builders: `{"text"}` examples, one per kept line of `paths`."""

    def _generate_examples(self, paths):
        i = 0
        for path in paths:
            for sentence in corpus.read_text_lines(path):
                yield i, {"text": sentence}
                i += 1


class Wiki1mForSimcse(_TextLines, skip_registration=True):
    """SimCSE's `wiki1m_for_simcse.txt`: 10^6 English Wikipedia sentences, one per line.

    Examples are `corpus.read_text_lines(path)`, in file order: stripped lines, blank lines
    skipped.
    """

    name = "wiki1m_for_simcse"
    FILE = "wiki1m_for_simcse.txt"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put SimCSE's `{FILE}` in the manual directory (`manual_dir`). Download it from
{SIMCSE_DATA_URL}/{FILE}
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="SimCSE's unsupervised training corpus: 10^6 sentences from English Wikipedia.",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            homepage="https://github.com/princeton-nlp/SimCSE",
            citation=SIMCSE_CITATION,
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        path = _manual_file(dl_manager, self.FILE)
        return {"train": self._generate_examples([path])}


class NliForSimcse(_ManualBuilder, skip_registration=True):
    """SimCSE's `nli_for_simcse.csv` (SNLI + MNLI): (anchor, entailment, contradiction) triplets.

    Examples are `corpus.read_nli_triplets(path)`, in file order.
    """

    name = "nli_for_simcse"
    FILE = "nli_for_simcse.csv"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put SimCSE's `{FILE}` (csv with header sent0,sent1,hard_neg) in the manual directory
(`manual_dir`). Download it from {SIMCSE_DATA_URL}/{FILE}
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="SimCSE's supervised training data: SNLI + MNLI premises with an entailed "
            "hypothesis (sent1) and a contradicting one (hard_neg).",
            features=tfds.features.FeaturesDict({key: tfds.features.Text() for key in NLI_KEYS}),
            homepage="https://github.com/princeton-nlp/SimCSE",
            citation=SIMCSE_CITATION,
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        path = _manual_file(dl_manager, self.FILE)
        return {"train": self._generate_examples(path)}

    def _generate_examples(self, path):
        for i, triplet in enumerate(corpus.read_nli_triplets(path)):
            yield i, dict(zip(NLI_KEYS, triplet))


def _read_sts_year(year):
    return lambda data_dir, split: senteval.read_sts_year(data_dir, year)


def _read_whole_split(read):
    return lambda data_dir, split: {"": read(data_dir, split)}


# config name -> (description, splits, reader `(data_dir, split) -> {subset: STSPairs}`)
STS_TASKS = {
    **{
        year.lower(): (f"{year}, all subsets in SentEval's order (`subset` names each pair's).", ("test",),
                       _read_sts_year(year))
        for year in senteval.STS_YEARS
    },
    "stsb": ("STS Benchmark (SentEval's tokenized copy).", ("dev", "test"), _read_whole_split(senteval.read_stsb)),
    "sickr": ("SICK relatedness (SICK-R).", ("test",), _read_whole_split(senteval.read_sick)),
}


class SentevalSts(_ManualBuilder, skip_registration=True):
    """SentEval's STS12-16, STS-B and SICK-R pairs with gold scores, as `tf_esimcse.data.senteval`
    reads them (whitespace-normalised sentences, unscored pairs dropped, file order).

    `score` is the gold score as float32; `subset` is the STS12-16 subset (e.g. "MSRpar"), empty
    for STS-B and SICK-R.
    """

    name = "senteval_sts"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=task[0]) for name, task in STS_TASKS.items()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
The manual directory (`manual_dir`) is a data root holding SentEval's downstream data:
`senteval/STS/STS12-en-test ... STS16-en-test`, `senteval/STS/STSBenchmark/sts-{dev,test}.csv`
and `senteval/SICK/SICK_test_annotated.txt` (SentEval's own `data/downstream/` layout, or the
`senteval/` directory itself, also work). Get them with `bash data/downstream/download_dataset.sh`
from https://github.com/princeton-nlp/SimCSE (or SentEval's
`data/downstream/get_transfer_data.bash`).
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="SentEval's semantic textual similarity tasks: sentence pairs with gold scores.",
            features=tfds.features.FeaturesDict({
                "sentence1": tfds.features.Text(),
                "sentence2": tfds.features.Text(),
                "score": tfds.features.Scalar(dtype=np.float32),
                "subset": tfds.features.Text(),
            }),
            homepage="https://github.com/facebookresearch/SentEval",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = senteval.resolve_senteval_dir(_manual_dir(dl_manager))
        _, splits, read = STS_TASKS[self.builder_config.name]
        return {split: self._generate_examples(read, root, split) for split in splits}

    def _generate_examples(self, read, root, split):
        i = 0
        for subset, pairs in read(root, split).items():
            for s1, s2, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores):
                yield i, {"sentence1": s1, "sentence2": s2, "score": np.float32(score), "subset": subset}
                i += 1


class Sentences(_TextLines, skip_registration=True):
    """Any one-sentence-per-line corpus: every `*.txt` file of the manual directory, in name
    order, each read with `corpus.read_text_lines`."""

    name = "sentences"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put one or more `*.txt` files (UTF-8, one sentence per line) in the manual directory
(`manual_dir`); they are read in sorted name order.
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="A sentence corpus: every *.txt file of the manual directory, one sentence per line.",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        manual_dir = _manual_dir(dl_manager)
        paths = sorted(p for p in manual_dir.glob("*.txt") if p.is_file())
        if not paths:
            raise DataError("no *.txt files in the manual directory (one sentence per line)", path=manual_dir)
        return {"train": self._generate_examples(paths)}


BUILDERS = (Wiki1mForSimcse, NliForSimcse, SentevalSts, Sentences)


# ---------------------------------------------------------------------------------------------
# From a loaded split to the pipelines' Python lists
# ---------------------------------------------------------------------------------------------


def _columns(dataset, keys, batch_size):
    """`{key: list of values}` of a split of unbatched dict examples, in dataset order."""
    spec = dataset.element_spec
    if not isinstance(spec, dict):
        raise ValueError(
            "expected a TFDS split of dict examples (tfds.load(..., split=...), without as_supervised), "
            f"got elements {spec}"
        )
    missing = [k for k in keys if k not in spec]
    if missing:
        raise ValueError(f"the examples have no field {', '.join(missing)}; their fields are {', '.join(sorted(spec))}")
    batched = [k for k in keys if spec[k].shape.rank != 0]
    if batched:
        raise ValueError(f"expected one example per element (an unbatched split), got shapes "
                         f"{', '.join(f'{k}: {spec[k].shape}' for k in batched)}")
    columns = {k: [] for k in keys}
    for batch in tfds.as_numpy(dataset.batch(batch_size)):
        for k in keys:
            values = batch[k]
            if spec[k].dtype == tf.string:
                columns[k].extend(v.decode("utf-8") for v in values)
            else:
                columns[k].extend(v.item() for v in values)
    return columns


def tfds_sentences(dataset, key="text", batch_size=4096):
    """A sentence-corpus split (e.g. `tfds.load("tf_esimcse:wiki1m_for_simcse", split="train")`)
    as a list of str, in dataset order: what `unsup_dataset` / `esimcse_dataset` take.

    Args:
        dataset: `tf.data.Dataset` of dict examples, unbatched.
        key: str. The text field. Defaults to "text".
        batch_size: int. How many examples to decode at a time (speed only).

    Raises:
        ValueError: for elements that are not dicts, lack `key`, or are batched.
    """
    return _columns(dataset, (key,), batch_size)[key]


def tfds_examples(dataset, keys=None, batch_size=4096):
    """A split as a list of tuples of its fields, in dataset order.

    Args:
        dataset: `tf.data.Dataset` of dict examples, unbatched.
        keys: sequence of str, the fields of each tuple, in order. By default `NLI_KEYS`
            ("sent0", "sent1", "hard_neg": the triplets supervised SimCSE takes) if the examples
            have them, else `STS_KEYS` ("sentence1", "sentence2", "score").
        batch_size: int. How many examples to decode at a time (speed only).

    Returns:
        A list of tuples; text fields as str, numbers as Python scalars.

    Raises:
        ValueError: for elements that are not dicts, lack a field, or are batched.
    """
    if keys is None:
        fields = dataset.element_spec if isinstance(dataset.element_spec, dict) else {}
        keys = next((ks for ks in (NLI_KEYS, STS_KEYS) if all(k in fields for k in ks)), NLI_KEYS)
    keys = tuple(keys)
    columns = _columns(dataset, keys, batch_size)
    return list(zip(*(columns[k] for k in keys)))


# ---------------------------------------------------------------------------------------------
# The `tf_esimcse:` namespace
# ---------------------------------------------------------------------------------------------


def register_namespace():
    """Register `BUILDERS` under `tf_esimcse:` in TFDS's community registry (idempotent; done
    when this module is imported).

    Uses `tensorflow_datasets.core.community` (`community_register().add_namespace` with a
    `BaseRegister` of our own), which TFDS does not export publicly; checked with TFDS 4.9.10.
    """
    from tensorflow_datasets.core import naming, registered
    from tensorflow_datasets.core.community import config as community_config
    from tensorflow_datasets.core.community import register_base, registry

    builders = {cls.name: cls for cls in BUILDERS}

    class _Register(register_base.BaseRegister):
        """Builder classes of this module, by name, for the `tf_esimcse` namespace."""

        is_tf_esimcse = True

        def list_builders(self):
            return [f"{NAMESPACE}:{name}" for name in sorted(builders)]

        def list_dataset_references(self):
            for name in sorted(builders):
                yield naming.DatasetReference(dataset_name=name, namespace=NAMESPACE)

        def builder_cls(self, name):
            if name.name not in builders:
                raise registered.DatasetNotFoundError(
                    f"no dataset {name.name!r} in namespace {NAMESPACE!r}; it has {', '.join(sorted(builders))}"
                )
            return builders[name.name]

        def builder(self, name, **builder_kwargs):
            return self.builder_cls(name)(**builder_kwargs)

    community = registry.community_register()
    if community.has_namespace(NAMESPACE):
        if any(getattr(r, "is_tf_esimcse", False) for r in community.registers_per_namespace.get(NAMESPACE, ())):
            return
        raise RuntimeError(f"TFDS already defines a namespace {NAMESPACE!r}")
    community.add_namespace(
        NAMESPACE,
        community_config.NamespaceConfig(paths=[epath.Path(__file__).parent], info="tf_esimcse's datasets"),
        [_Register()],
    )


try:
    register_namespace()
except (ImportError, AttributeError, TypeError, RuntimeError) as e:  # TFDS internals moved
    warnings.warn(
        f"could not register the {NAMESPACE!r} TFDS namespace ({type(e).__name__}: {e}); "
        "use the builder classes of tf_esimcse.data.tfds_builders directly",
        stacklevel=2,
    )
