"""Unsupervised SimCSE (Gao et al., 2021); defaults: the official SimCSE code's run_unsup_example.sh (BERT-base).

Defaults as `run_unsup_example.sh` (princeton-nlp/SimCSE): batch 64, lr 3e-5, 1 epoch, max_len 32,
temperature 0.05, dropout 0.1, pooler `cls` with `--mlp-only-train` (evaluated and saved as
`cls_before_pooler`), STS-B dev every 125 steps keeping the best; except the encoder and the corpus:
offline, all-MiniLM-L6-v2 and the Brown corpus (the official run: bert-base-uncased on wiki1m).

    python recipes/unsup_simcse.py                      # default encoder, Brown corpus
    python recipes/unsup_simcse.py --steps 20           # a smoke run
    python recipes/unsup_simcse.py --steps 500 --seeds 1,2,3   # 3 seeds, mean ± std in summary.md
    python recipes/unsup_simcse.py --corpus wiki1m_for_simcse.txt --model /path/to/bert
    python recipes/unsup_simcse.py --augmentation crop:10   # an ablation row (see recipes/ablations.py)

Every setting is a flag (`--help`); the run prints its config, logs to TensorBoard
(<output-dir>/logs), evaluates STS-B dev every --eval-steps steps keeping the best weights,
saves the encoder to <output-dir>/model and prints the 7-task STS table.
"""
import dataclasses

from tf_esimcse.config import TrainConfig, check_model_path, setting
from tf_esimcse.data.augmentations import augmentation_dataset, parse_augmentation
from tf_esimcse.data.pipeline import bucketed_unsup_dataset, unsup_dataset
from tf_esimcse.methods.method import Method, register
from tf_esimcse.objectives import SimCSEObjective


@dataclasses.dataclass
class SimCSEConfig(TrainConfig):
    # Length-bucketed batches (bucketed_unsup_dataset: similar lengths per batch, ~25 % fewer
    # padding tokens, one XLA compilation per bucket width). Opt-in: it changes the in-batch
    # negatives; see benchmarks/README.md for its STS-B dev against random batches.
    length_buckets: bool = setting(
        False, group="data",
        help="batches of similar lengths (~25 % fewer padding tokens; changes the in-batch negatives); "
             "--augmentation none only")
    # SimCSE's ablations (recipes/ablations.py runs them as tables):
    augmentation: str = setting(
        "none", group="method", metavar="SPEC",
        help="the positive: none (dropout only) | crop:K | word_deletion:K | delete_one_word | next_sentence | "
             "next_3_sentences | mlm:K (K a percentage; SimCSE's Table 1 ablations)")
    augmentation_generator: str = setting(
        "", group="method", default_text="none",
        help="mlm:K's masked LM: a keras-hub MaskedLM preset sharing the encoder's vocabulary "
             "(e.g. saved_models/mlm/model)")
    same_dropout_mask: bool = setting(
        False, group="method", help='both copies of a sentence share one dropout mask (the paper\'s "fixed 0.1")')
    two_encoders: bool = setting(
        False, group="method", help="positives through a second (trainable) copy of the backbone")

    def validate(self):
        super().validate()
        kind, _ = parse_augmentation(self.augmentation)  # a bad --augmentation names the valid forms
        if kind == "mlm" and not self.augmentation_generator:
            raise ValueError("--augmentation mlm:K needs --augmentation-generator <keras-hub MaskedLM preset sharing "
                             "the encoder's vocabulary> (e.g. saved_models/mlm/model from "
                             "python recipes/pretrain_mlm.py)")
        if kind != "none" and self.length_buckets:
            raise ValueError("--length-buckets works with --augmentation none only")
        if self.augmentation_generator:
            check_model_path("--augmentation-generator", self.augmentation_generator, presets=False)
        return self


def build_objective(config, **shared):
    return SimCSEObjective(same_dropout_mask=config.same_dropout_mask, two_encoders=config.two_encoders, **shared)


def build_dataset(sentences, preprocessor, config):
    if parse_augmentation(config.augmentation)[0] != "none":
        if config.length_buckets:
            raise ValueError("--length-buckets works with --augmentation none only")
        return augmentation_dataset(sentences, preprocessor, config.augmentation, batch_size=config.batch_size,
                                    seed=config.seed, repeat=True, dynamic_padding=config.dynamic_padding,
                                    generator=config.augmentation_generator or None)
    if getattr(config, "length_buckets", False):
        return bucketed_unsup_dataset(sentences, preprocessor, batch_size=config.batch_size, seed=config.seed,
                                      repeat=True)
    return unsup_dataset(sentences, preprocessor, batch_size=config.batch_size, seed=config.seed,
                         dynamic_padding=config.dynamic_padding, repeat=True)


METHOD = register(Method("unsup_simcse", SimCSEConfig, build_objective, build_dataset, description=__doc__))
main = METHOD.main
