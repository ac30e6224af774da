"""ESimCSE (Wu et al., 2021), the package's main job; defaults: the official ESimCSE code's run.sh (BERT-base).

    python recipes/unsup_esimcse.py                     # default encoder, Brown corpus
    python recipes/unsup_esimcse.py --steps 20          # a smoke run
    python recipes/unsup_esimcse.py --steps 500 --seeds 1,2,3   # 3 seeds, mean ± std in summary.md
    python recipes/unsup_esimcse.py --no-use-repetition # ablation: momentum queue only
    python recipes/unsup_esimcse.py --no-use-momentum-queue  # ablation: repetition only

Defaults as `ESimCSE/run.sh` of caskcsg/sentemb for bert-base-uncased: batch 64, lr 3e-5, 1 epoch,
max_len 32, sub-word repetition (`dup_type bpe`) with dup_rate 0.32, queue 160 (2.5 x batch),
momentum 0.995, dropout 0.1, temperature 0.05, pooler `cls` with `mlp_only_train` (evaluated and
saved as `cls_before_pooler`); except the encoder and the corpus: offline, all-MiniLM-L6-v2 and the
Brown corpus (the official run: bert-base-uncased on wiki1m). STS-B dev every --eval-steps steps
with the best weights kept; TensorBoard in <output-dir>/logs (loss, learning rate, queue fill,
STS-B dev, alignment, uniformity); the best encoder in <output-dir>/model, the 7-task table printed
and in <output-dir>/results.json.
"""
import dataclasses

from tf_esimcse.config import TrainConfig, check_int, check_range, setting
from tf_esimcse.data.pipeline import esimcse_dataset, unsup_dataset
from tf_esimcse.methods.method import Method, register
from tf_esimcse.objectives import ESimCSEObjective


@dataclasses.dataclass
class ESimCSEConfig(TrainConfig):
    unsupported = {"dynamic_padding": "ESimCSE's views keep their fixed widths (the repeated positive is longer "
                                      "than --max-len)"}
    output_dir: str = "saved_models/unsup_esimcse"
    dup_rate: float = setting(
        0.32, group="method",
        help="word repetition rate (the official runs: 0.32 BERT-base/-large, 0.30 RoBERTa-base, 0.28 RoBERTa-large)")
    repetition_mode: str = setting(
        "official_subword", group="method", choices=("official_subword", "paper"),
        help="the repetition rule: the official code's sub-word rule, or the paper's formula (see WordRepetition)")
    use_repetition: bool = setting(
        True, group="method", help="the word-repeated positive; --no-use-repetition: SimCSE's dropout positive")
    positive_max_len: int = setting(
        0, group="method", default_text="0 = keep every repeat, as the official code (41 word pieces at --max-len 32)",
        help="truncate the repeated view to N word pieces")
    queue_size: int = setting(
        160, group="method", help="momentum-encoded negatives kept in the queue (the official 2.5 x batch 64)")
    momentum: float = setting(0.995, group="method", help="EMA rate of the momentum encoder")
    use_momentum_queue: bool = setting(
        True, group="method", help="the momentum encoder's queue of extra negatives")

    def validate(self):
        super().validate()
        check_range(self, "dup_rate", low=0, high=1)
        check_int(self, "positive_max_len", low=0, hint="0 = keep every repeat")
        if 0 < self.positive_max_len < 2:
            raise ValueError(f"--positive-max-len must be 0 or >= 2, got {self.positive_max_len}")
        check_int(self, "queue_size", low=1 if self.use_momentum_queue else 0)
        check_range(self, "momentum", low=0, high=1)
        return self


def build_objective(config, **shared):
    return ESimCSEObjective(queue_size=config.queue_size, momentum=config.momentum,
                            use_momentum_queue=config.use_momentum_queue, **shared)


def build_dataset(sentences, preprocessor, config):
    if not config.use_repetition:
        return unsup_dataset(sentences, preprocessor, batch_size=config.batch_size, seed=config.seed, repeat=True)
    return esimcse_dataset(sentences, preprocessor, dup_rate=config.dup_rate, mode=config.repetition_mode,
                           batch_size=config.batch_size, seed=config.seed, repeat=True,
                           positive_length=config.positive_max_len or None)


METHOD = register(Method("unsup_esimcse", ESimCSEConfig, build_objective, build_dataset, description=__doc__))
main = METHOD.main
