"""Supervised SimCSE (Gao et al., 2021); defaults: the official SimCSE code's run_sup_example.sh (BERT-base).

    python recipes/sup_simcse.py --corpus /path/to/nli_for_simcse.csv        # the paper's data
    python recipes/sup_simcse.py                                             # demo: SentEval SNLI dev+test
    python recipes/sup_simcse.py --steps 20 --batch-size 64                  # a smoke run

Data: SimCSE's `nli_for_simcse.csv` (SNLI + MNLI, header sent0,sent1,hard_neg: premise,
entailment, contradiction), a SentEval SNLI folder (`s1/s2/labels.<split>`, grouped by premise),
or `snli` (default): SentEval's SNLI dev + test under `<data-dir>/senteval/SNLI`, 5,883 triplets,
enough for a demo only (the paper trains on 275k).

Defaults as `run_sup_example.sh` (princeton-nlp/SimCSE; 4 GPUs x 128 = batch 512): batch 512,
lr 5e-5, 3 epochs, max_len 32, temperature 0.05, pooler `cls` with its MLP kept at test time,
hard-negative alpha 1 (`--alpha`, the paper's weight; `--hard-negative-weight`, the official
code's logit offset, default 0), STS-B dev every 125 steps with the best weights kept; except the
encoder and the corpus (offline: all-MiniLM-L6-v2 and SentEval's SNLI; the official run:
bert-base-uncased on nli_for_simcse.csv). `--use-neutral-negatives` adds each premise's neutral
hypothesis as a second hard negative (the paper's "contradiction + neutral";
SNLI folders only, premises with all three labels).
"""
import dataclasses

from tf_esimcse.config import TrainConfig, check_range, setting
from tf_esimcse.data.corpus import load_nli
from tf_esimcse.data.views import supervised_views, views_dataset
from tf_esimcse.methods.method import Method, register
from tf_esimcse.objectives import SupervisedSimCSEObjective


@dataclasses.dataclass
class SupervisedConfig(TrainConfig):
    corpus: str = setting(
        "snli", group="data",
        help='(premise, entailment, contradiction) triplets: nli_for_simcse.csv, a SentEval SNLI folder, or "snli" '
             "(SentEval's SNLI dev+test in --data-dir, a demo); the official runs use nli_for_simcse.csv")
    output_dir: str = "saved_models/sup_simcse"
    batch_size: int = 512
    learning_rate: float = 5e-5
    epochs: int = 3
    mlp_only_train: bool = False  # supervised SimCSE keeps the MLP head at test time
    alpha: float = setting(
        1.0, group="method",
        help="the paper's hard-negative weight: log(alpha) is added to each anchor's own hard-negative logit")
    hard_negative_weight: float = setting(
        0.0, group="method", help="the official code's offset added to that logit (0 = alpha 1)")
    use_hard_negatives: bool = setting(
        True, group="method",
        help="the contradiction as a hard negative; --no-use-hard-negatives: (premise, entailment) pairs, "
             "in-batch negatives only")
    use_neutral_negatives: bool = setting(
        False, group="method",
        help='neutral hypotheses as second hard negatives (the paper\'s "contradiction + neutral"; SNLI folders only)')

    def validate(self):
        super().validate()
        check_range(self, "alpha", low=0, low_open=True)
        check_range(self, "hard_negative_weight")
        return self


def load_examples(config):
    return load_nli(config.corpus, config.data_dir, max_examples=config.max_sentences or None,
                    neutral=config.use_neutral_negatives)


def build_objective(config, **shared):
    return SupervisedSimCSEObjective(alpha=config.alpha, hard_negative_weight=config.hard_negative_weight, **shared)


def build_dataset(triplets, preprocessor, config):
    views = supervised_views(0, 1, 2 if config.use_hard_negatives else None,
                             neutral=3 if config.use_neutral_negatives else None)
    return views_dataset(triplets, preprocessor, views, batch_size=config.batch_size, seed=config.seed, repeat=True,
                         dynamic_padding=config.dynamic_padding)


METHOD = register(Method("sup_simcse", SupervisedConfig, build_objective, build_dataset, load_examples=load_examples,
                         description=__doc__))
main = METHOD.main
