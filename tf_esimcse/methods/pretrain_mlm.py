"""Pretrain a small BERT or RoBERTa masked LM here (a raw encoder, DiffCSE's generator); defaults: this package's own.

    python recipes/pretrain_mlm.py                          # Brown, 4 layers x 256, ~1.5 hours on 2 CPU cores
    python recipes/pretrain_mlm.py --steps 20               # a smoke run
    python recipes/pretrain_mlm.py --corpus my_sentences.txt --num-layers 6 --hidden-dim 384
    python recipes/unsup_simcse.py --model saved_models/mlm/model      # then: contrastive training from it
    python recipes/diffcse.py --generator saved_models/mlm/model       # or as DiffCSE's generator
    python recipes/pretrain_mlm.py --family roberta --vocab-from /path/to/roberta-base --output-dir saved_models/mlm_rb
    python recipes/diffcse.py --model /path/to/roberta-base --generator saved_models/mlm_rb/model

No raw BERT can be downloaded on an offline machine, yet the SimCSE-family papers start from one,
and DiffCSE needs a masked-LM generator. This recipe trains keras-hub's `BertBackbone` +
`BertMaskedLM` (masking by keras-hub's `MaskedLMMaskGenerator` inside `BertMaskedLMPreprocessor`:
15 % of the tokens, 80 % [MASK] / 10 % random / 10 % kept) on any one-sentence-per-line text
(default: the Brown corpus), with the WordPiece vocabulary of the default encoder
(all-MiniLM-L6-v2's, bert-base-uncased's 30,522 tokens; `--vocabulary` for another), so that the
generator and every encoder share token ids. `--family roberta` trains keras-hub's
`RobertaBackbone` + `RobertaMaskedLM` instead (the same masking with `<mask>`, no segment ids),
with the byte-level BPE vocabulary of `--vocab-from` (a Hugging Face RoBERTa folder or a keras-hub
RoBERTa preset: roberta-base's 50,265 tokens), the generator a RoBERTa encoder needs for DiffCSE
(the paper's is distilroberta-base). AdamW with linear warm-up and decay; a progress bar;
TensorBoard in <output-dir>/logs (MLM loss, masked-token accuracy, learning rate); atomic
backups every --backup-steps steps (an interrupted run started again resumes); and the held-out
masked-token accuracy (the last --held-out share of the shuffled sentences) printed and written to
<output-dir>/results.json. The model is saved as a keras-hub preset in <output-dir>/model (with
its tokenizer), which `SentenceEncoder.from_pretrained`, every recipe's `--model` and
`recipes/diffcse.py --generator` accept. Masks are drawn by keras-hub's stateful generator: a
resumed run continues with other masks than an uninterrupted one would (the contrastive recipes'
resumes are exact).
"""
import dataclasses
import json
import math
import pathlib
import random
import sys
import time
import warnings

import keras
import keras_hub
import tensorflow as tf

from tf_esimcse.atomic_files import replace_directory, write_json_atomic
from tf_esimcse.backbones import load_tokenizer
from tf_esimcse.backup import AtomicBackupAndRestore
from tf_esimcse.config import (JIT_SETTINGS, check_choices, check_input_path, check_int, check_model_path,
                               check_output_dir, check_range, default_data_dir, parse_config, setting)
from tf_esimcse.data.corpus import load_sentences
from tf_esimcse.encoder_files import standard_tokenizer
from tf_esimcse.environment import environment_info
from tf_esimcse.schedules import linear_schedule
from tf_esimcse.training import StopAtStep, fit_closing_tensorboard, resolve_jit

# BertMaskedLM reads the backbone's token states, never its pooled output (RoBERTa has no pooler): the pooler's dense
# layer gets no gradient by design, which Keras would report as a possible mistake.
warnings.filterwarnings("ignore", message=r"Gradients do not exist for variables \['pooled_dense/kernel', "
                                          r"'pooled_dense/bias'\]", category=UserWarning)


FAMILIES = ("bert", "roberta")
# (backbone, preprocessor, task, the tokenizer it needs, that tokenizer's kind) per --family
_CLASSES = {
    "bert": (keras_hub.models.BertBackbone, keras_hub.models.BertMaskedLMPreprocessor, keras_hub.models.BertMaskedLM,
             keras_hub.tokenizers.WordPieceTokenizer, "WordPiece"),
    "roberta": (keras_hub.models.RobertaBackbone, keras_hub.models.RobertaMaskedLMPreprocessor,
                keras_hub.models.RobertaMaskedLM, keras_hub.tokenizers.BytePairTokenizer, "byte-level BPE"),
}


@dataclasses.dataclass
class PretrainConfig:
    """The masked LM's settings: the defaults are this package's choice for 2 CPU cores (no official
    script: SimCSE, ESimCSE and DiffCSE start from a downloaded BERT)."""

    # data
    corpus: str = setting(
        "brown", group="data",
        help='training sentences: "brown" (in --data-dir) or a text file / folder, one sentence per line')
    data_dir: str = setting(default_factory=default_data_dir, group="data",
                            default_text="$TF_ESIMCSE_DATA_DIR, else ./data", help="folder holding brown/")
    max_sentences: int = setting(0, group="data", default_text="0 = all", help="use only the first N sentences")
    max_len: int = setting(64, group="data", help="truncate each sentence to N word pieces")
    held_out: float = setting(
        0.02, group="evaluation",
        help="share of the sentences kept out of training for the masked-token accuracy, from 0 to 1")
    # model
    family: str = setting(
        "bert", group="model", choices=FAMILIES,
        help="the masked LM: bert (BertMaskedLM, WordPiece) or roberta (RobertaMaskedLM, byte-level BPE)")
    vocabulary: str = setting(
        "default", group="model",
        help="--family bert: whose WordPiece vocabulary: 'default' (all-MiniLM-L6-v2's, bert-base-uncased's) or a "
             "model directory")
    vocab_from: str = setting(
        "", group="model", default_text="none; required with --family roberta",
        help="--family roberta: whose byte-level BPE vocabulary: a Hugging Face RoBERTa folder or a keras-hub "
             "RoBERTa preset (directory or name)")
    num_layers: int = setting(4, group="model", help="transformer layers")
    hidden_dim: int = setting(256, group="model", help="hidden size (divisible by --num-heads)")
    num_heads: int = setting(4, group="model", help="attention heads")
    intermediate_dim: int = setting(1024, group="model", help="feed-forward size")
    dropout: float = setting(0.1, group="model", help="dropout rate")
    # method
    mask_rate: float = setting(
        0.15, group="method", help="share of the tokens masked (80 % [MASK], 10 % random, 10 % kept)")
    # optimisation
    batch_size: int = setting(128, group="optimisation", help="sentences per batch")
    steps: int = setting(5000, group="optimisation", help="total optimizer steps")
    learning_rate: float = setting(5e-4, group="optimisation", help="peak learning rate (AdamW)")
    warmup_ratio: float = setting(0.06, group="optimisation", help="share of the steps with a linear warm-up")
    weight_decay: float = setting(0.01, group="optimisation", help="AdamW weight decay (not on biases and LayerNorm)")
    seed: int = setting(42, group="optimisation", help="random seed (data order, masks, initialisation)")
    # runtime
    output_dir: str = setting(
        "saved_models/mlm", group="runtime", help="run folder: the masked LM (model/), results.json, logs/")
    backup_steps: int = setting(
        500, group="runtime", help="back up every N steps; an interrupted run started again resumes")
    jit_compile: str = setting(
        "auto", group="runtime", choices=JIT_SETTINGS, help="XLA compilation of the training step")
    verbose: bool = setting(False, group="runtime", help="show TensorFlow's own log lines")

    def validate(self):
        """One-line `ValueError` naming the flag, before anything is loaded or written."""
        check_choices(self)
        for name in ("steps", "batch_size", "max_len", "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
                     "backup_steps"):
            check_int(self, name, low=1)
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"--hidden-dim {self.hidden_dim} is not divisible by --num-heads {self.num_heads}")
        check_int(self, "max_sentences", low=0, hint="0 = all")
        check_int(self, "seed")
        check_range(self, "dropout", low=0, high=1, high_open=True)
        check_range(self, "mask_rate", low=0, high=1, low_open=True, high_open=True)
        check_range(self, "held_out", low=0, high=1, high_open=True)
        check_range(self, "learning_rate", low=0, low_open=True)
        check_range(self, "warmup_ratio", low=0, high=1, high_open=True)
        check_range(self, "weight_decay", low=0)
        if self.family == "roberta":
            if self.vocabulary != "default":
                raise ValueError("--vocabulary is --family bert's WordPiece vocabulary: with --family roberta give "
                                 "--vocab-from (a RoBERTa folder or preset)")
            if not self.vocab_from:
                raise ValueError("--family roberta needs --vocab-from: a Hugging Face RoBERTa folder or a keras-hub "
                                 "RoBERTa preset, whose byte-level BPE vocabulary the masked LM uses")
            check_model_path("--vocab-from", self.vocab_from)
        elif self.vocab_from:
            raise ValueError("--vocab-from is --family roberta's: for a BERT masked LM give --vocabulary (or add "
                             "--family roberta)")
        if self.vocabulary != "default":
            check_model_path("--vocabulary", self.vocabulary, presets=False)
        check_input_path("--corpus", self.corpus)
        check_output_dir("--output-dir", self.output_dir)
        return self


def split_sentences(sentences, held_out, seed):
    """(train, held-out): a seeded shuffle, the last `held_out` share (at least one batch' worth
    of a handful of sentences, never all) held out."""
    sentences = list(sentences)
    random.Random(seed).shuffle(sentences)
    n_held = min(len(sentences) - 1, max(1, int(round(held_out * len(sentences))))) if held_out > 0 else 0
    return sentences[:len(sentences) - n_held], sentences[len(sentences) - n_held:]


def load_vocabulary(config):
    """The tokenizer whose vocabulary the masked LM uses: `--vocabulary` (BERT) or `--vocab-from`
    (RoBERTa); a one-line `ValueError` naming the model when it is of the other kind."""
    if config.family == "roberta":
        flag, source = "--vocab-from", config.vocab_from
    else:
        flag, source = "--vocabulary", None if config.vocabulary == "default" else config.vocabulary
    tokenizer = standard_tokenizer(load_tokenizer(source))
    _, _, _, kind, kind_name = _CLASSES[config.family]
    if not isinstance(tokenizer, kind):
        raise ValueError(f"{flag} {source}: its tokenizer is a {type(tokenizer).__name__}, not the {kind_name} "
                         f"vocabulary --family {config.family} needs")
    return tokenizer


def build_masked_lm(config, tokenizer):
    """keras-hub's masked LM of `--family` (backbone, masking preprocessor, task) on `tokenizer`."""
    backbone_cls, preprocessor_cls, task_cls, _, _ = _CLASSES[config.family]
    backbone = backbone_cls(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=config.num_layers, num_heads=config.num_heads,
        hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim, dropout=config.dropout,
        max_sequence_length=max(512, config.max_len))
    preprocessor = preprocessor_cls(
        tokenizer, sequence_length=config.max_len, mask_selection_rate=config.mask_rate,
        mask_selection_length=max(1, math.ceil(config.max_len * config.mask_rate * 1.5)))
    return task_cls(backbone, preprocessor=preprocessor)


def _dataset(sentences, batch_size, seed, repeat):
    """Batches of raw sentences: keras-hub's `fit`/`evaluate` run the task's preprocessor
    (tokenize, pack, mask) on them in tf.data."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(sentences))
    if repeat:
        ds = ds.shuffle(min(len(sentences), 100_000), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(batch_size, drop_remainder=repeat)


class LogLearningRate(keras.callbacks.Callback):
    """Adds the step's learning rate to the batch logs (TensorBoard's batch_learning_rate)."""

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def save_preset_atomically(masked_lm, path):
    """The keras-hub preset written next to `path` and renamed into place."""
    # A fresh, uncompiled copy: the preset then holds no optimizer state (which every later load
    # would warn about and skip).
    clean = type(masked_lm)(type(masked_lm.backbone).from_config(masked_lm.backbone.get_config()),
                            preprocessor=masked_lm.preprocessor)
    clean.set_weights(masked_lm.get_weights())
    with replace_directory(path) as tmp:
        clean.save_to_preset(str(tmp))
    return pathlib.Path(path)


def run(config):
    keras.utils.set_random_seed(config.seed)
    output_dir = pathlib.Path(config.output_dir)
    sentences = load_sentences(config.corpus, config.data_dir, max_sentences=config.max_sentences or None)
    train, held_out = split_sentences(sentences, config.held_out, config.seed)
    if len(train) < config.batch_size:
        raise ValueError(f"{len(train)} training sentences: fewer than one batch of {config.batch_size}")
    tokenizer = load_vocabulary(config)
    masked_lm = build_masked_lm(config, tokenizer)
    print(json.dumps(dataclasses.asdict(config), indent=2))
    print(f"{len(train)} training and {len(held_out)} held-out sentences; vocabulary {tokenizer.vocabulary_size()}; "
          f"{masked_lm.backbone.count_params() / 1e6:.1f} M backbone parameters")
    optimizer = keras.optimizers.AdamW(learning_rate=linear_schedule(config.learning_rate, config.steps,
                                                                     config.warmup_ratio),
                                       weight_decay=config.weight_decay, epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    # The loss per masked token: keras-hub pads each row's targets to mask_selection_length with
    # weight 0, which the default reduction would count.
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")
    masked_lm.compile(optimizer=optimizer, loss=loss,
                      weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="masked_accuracy")],
                      jit_compile=resolve_jit(config.jit_compile))

    dataset = _dataset(train, config.batch_size, config.seed, repeat=True)
    per_epoch = max(1, min(config.backup_steps, config.steps))
    backup_dir = output_dir / "backup"
    metadata = backup_dir / "training_metadata.json"
    if metadata.is_file():
        done = int(json.loads(metadata.read_text()).get("epoch", 0)) * per_epoch
        dataset = dataset.skip(done)
        print(f"resuming from {backup_dir}: skipping the {done} batches already trained on")
    callbacks = [
        AtomicBackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True),
        StopAtStep(config.steps),
        LogLearningRate(),
        keras.callbacks.TensorBoard(str(output_dir / "logs"), update_freq=max(1, min(10, config.steps // 2))),
    ]
    start = time.time()
    fit_closing_tensorboard(masked_lm, dataset, epochs=-(-config.steps // per_epoch), steps_per_epoch=per_epoch,
                            callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    seconds = time.time() - start

    results = {"config": dataclasses.asdict(config), "train_seconds": seconds,
               "steps": int(keras.ops.convert_to_numpy(masked_lm.optimizer.iterations)),
               "environment": environment_info()}
    if held_out:
        tf.random.set_seed(config.seed)  # the held-out masks: same draw for the same seed
        scores = masked_lm.evaluate(_dataset(held_out, config.batch_size, config.seed, repeat=False), verbose=0,
                                    return_dict=True)
        results["held_out"] = {"masked_accuracy": float(scores["masked_accuracy"]), "loss": float(scores["loss"]),
                               "sentences": len(held_out)}
        print(f"held-out masked-token accuracy {100 * scores['masked_accuracy']:.2f} % "
              f"(loss {scores['loss']:.3f}, {len(held_out)} sentences)")
    model_dir = save_preset_atomically(masked_lm, output_dir / "model")
    results["model_dir"] = str(model_dir)
    write_json_atomic(output_dir / "results.json", results)
    print(f"saved the masked LM (a keras-hub preset) to {model_dir}; results in {output_dir / 'results.json'}")
    return results


def main(argv=None):
    """What `python recipes/pretrain_mlm.py ...` runs."""
    return run(parse_config(PretrainConfig, argv, description=__doc__))
