"""ESimCSE (Wu et al., 2021): the package's main job, with the paper's BERT-base settings.

    python recipes/unsup_esimcse.py                     # default encoder, Brown corpus
    python recipes/unsup_esimcse.py --steps 20          # a smoke run
    python recipes/unsup_esimcse.py --steps 500 --seeds 1,2,3   # 3 seeds, mean ± std in summary.md
    python recipes/unsup_esimcse.py --no-use-repetition # ablation: momentum queue only
    python recipes/unsup_esimcse.py --no-use-momentum-queue  # ablation: repetition only

Defaults: batch 64, lr 3e-5, max_len 32, dup_rate 0.32, queue 160 (2.5 x batch), momentum
0.995, temperature 0.05, pooler `cls` with `mlp_only_train` (evaluated and saved as
`cls_before_pooler`). STS-B dev every --eval-steps steps with the best weights kept; TensorBoard
in <output-dir>/logs (loss, learning rate, queue fill, STS-B dev, alignment, uniformity); the
best encoder in <output-dir>/model, the 7-task table printed and in <output-dir>/results.json.
"""
import dataclasses

from tf_esimcse.config import TrainConfig, parse_config
from tf_esimcse.data.pipeline import esimcse_dataset, unsup_dataset
from tf_esimcse.objectives import ESimCSEObjective
from tf_esimcse.training import main_guard, run_seeds


@dataclasses.dataclass
class ESimCSEConfig(TrainConfig):
    output_dir: str = "saved_models/unsup_esimcse"
    dup_rate: float = 0.32  # 0.32 BERT-base/-large, 0.30 RoBERTa-base, 0.28 RoBERTa-large
    repetition_mode: str = "official_subword"  # the official code's rule, or "paper" (see WordRepetition)
    use_repetition: bool = True
    positive_max_len: int = 0  # repeated view's length; 0 = keep every repeat (41 at max_len 32) as the official code; 32 re-truncates
    queue_size: int = 160
    momentum: float = 0.995
    use_momentum_queue: bool = True


def build_objective(config):
    return ESimCSEObjective(temperature=config.temperature, queue_size=config.queue_size,
                            momentum=config.momentum, use_momentum_queue=config.use_momentum_queue,
                            mask_duplicates=config.mask_duplicates)


def build_dataset(sentences, preprocessor, config):
    if not config.use_repetition:
        return unsup_dataset(sentences, preprocessor, batch_size=config.batch_size, seed=config.seed, repeat=True)
    return esimcse_dataset(sentences, preprocessor, dup_rate=config.dup_rate, mode=config.repetition_mode,
                           batch_size=config.batch_size, seed=config.seed, repeat=True,
                           positive_length=config.positive_max_len or None)


def main(argv=None):
    config = parse_config(ESimCSEConfig, argv, description=__doc__.split("\n")[0])
    return run_seeds(config, build_objective, build_dataset, name="unsup_esimcse")


if __name__ == "__main__":
    main_guard(main)
