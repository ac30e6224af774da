"""DiffCSE (Chuang et al., 2022): SimCSE + conditional replaced-token detection, official settings.

    python recipes/pretrain_mlm.py --output-dir saved_models/mlm            # a generator (and raw encoder)
    python recipes/diffcse.py --generator saved_models/mlm/model            # default encoder
    python recipes/diffcse.py --generator saved_models/mlm/model --model saved_models/mlm/model
    python recipes/diffcse.py --generator /path/to/keras_hub_masked_lm_preset --steps 500 --seeds 1,2,3

Defaults (voidism/DiffCSE `run_diffcse.sh`, BERT-base): lr 7e-6, batch 64, max_len 32, masking
ratio 0.30, lambda 0.005, `--batchnorm` projection in training only (evaluated and saved as
`cls_before_pooler`), temperature 0.05, STS-B dev every 125 steps keeping the best. The generator
(`--generator`, a keras-hub MaskedLM preset sharing the encoder's WordPiece vocabulary) is frozen;
the discriminator starts as a copy of the encoder. Neither is saved with the encoder.
TensorBoard: loss, contrastive_loss, rtd_loss, rtd_accuracy_replaced, rtd_accuracy_kept,
replaced_fraction, learning rate, STS-B dev, alignment, uniformity.
"""
import dataclasses

from tf_esimcse.config import TrainConfig, parse_config
from tf_esimcse.objectives.diffcse import DiffCSEObjective, diffcse_views
from tf_esimcse.training import main_guard, run_seeds


@dataclasses.dataclass
class DiffCSEConfig(TrainConfig):
    output_dir: str = "saved_models/diffcse"
    generator: str = ""  # a keras-hub MaskedLM preset (e.g. recipes/pretrain_mlm.py's <output-dir>/model)
    learning_rate: float = 7e-6
    masking_ratio: float = 0.30
    rtd_weight: float = 0.005  # lambda
    batchnorm: bool = True  # DiffCSE's BatchNorm projection (training only); --no-batchnorm: SimCSE's tanh MLP
    generator_dropout: bool = True  # the official generator runs in training mode
    rtd_on_padding: bool = False  # True: the official RTD average over every position, padding included


def prepare(config):
    """Check the flags; with --batchnorm the encoder's own pooler is the bare [CLS] vector and the
    objective owns the projection (used in training only, as --mlp_only_train)."""
    if not config.generator:
        raise ValueError("--generator is required: a keras-hub MaskedLM preset sharing the encoder's vocabulary "
                         "(python recipes/pretrain_mlm.py makes one)")
    if config.batchnorm:
        if config.pooler not in ("cls", "cls_before_pooler"):
            raise ValueError("--batchnorm projects the [CLS] vector: use --pooler cls (or --no-batchnorm)")
        config = dataclasses.replace(config, pooler="cls_before_pooler")
    return config


def build_objective(config):
    return DiffCSEObjective(config.generator, temperature=config.temperature, rtd_weight=config.rtd_weight,
                            batchnorm=config.batchnorm, generator_dropout=config.generator_dropout,
                            rtd_on_padding=config.rtd_on_padding, mask_duplicates=config.mask_duplicates)


def build_dataset(sentences, preprocessor, config):
    return diffcse_views(sentences, preprocessor, masking_ratio=config.masking_ratio, batch_size=config.batch_size,
                         seed=config.seed, repeat=True)


def main(argv=None):
    config = prepare(parse_config(DiffCSEConfig, argv, description=__doc__.split("\n")[0]))
    return run_seeds(config, build_objective, build_dataset, name="diffcse")


if __name__ == "__main__":
    main_guard(main)
