"""DiffCSE (Chuang et al., 2022), SimCSE + replaced-token detection; defaults: the official run_diffcse.sh (BERT-base).

    python recipes/pretrain_mlm.py --output-dir saved_models/mlm            # a generator (and raw encoder)
    python recipes/diffcse.py --generator saved_models/mlm/model            # default encoder
    python recipes/diffcse.py --generator saved_models/mlm/model --model saved_models/mlm/model
    python recipes/diffcse.py --generator /path/to/keras_hub_masked_lm_preset --steps 500 --seeds 1,2,3
    python recipes/pretrain_mlm.py --family roberta --vocab-from /path/to/roberta-base --output-dir saved_models/mlm_rb
    python recipes/diffcse.py --model /path/to/roberta-base --generator saved_models/mlm_rb/model   # RoBERTa

Defaults as voidism/DiffCSE's `run_diffcse.sh` (BERT-base, STS): lr 7e-6, batch 64, 2 epochs (its
latest version; 1 in its first), max_len 32, masking ratio 0.30, lambda 0.005, `--batchnorm`
projection in training only (evaluated and saved as `cls_before_pooler`), temperature 0.05, STS-B
dev every 125 steps keeping the best; except the encoder and the corpus (offline: all-MiniLM-L6-v2
and the Brown corpus; the official run: bert-base-uncased on wiki1m) and the generator (the
official one: distilbert-base-uncased). The generator (`--generator`, a keras-hub MaskedLM preset
sharing the encoder's vocabulary) is frozen; the discriminator starts as a copy of the encoder.
Neither is saved with the encoder.
RoBERTa works as in the paper (RoBERTa-base with a distilroberta-base generator): a RoBERTa --model
(Hugging Face folder or keras-hub preset) with a keras-hub RobertaMaskedLM --generator on its
byte-level BPE vocabulary (pretrain_mlm.py --family roberta --vocab-from <that model> makes one);
the masks are <mask>, the edits start with <s> and keep <pad> as padding. A generator of another
family or vocabulary (size, start/end/pad/mask ids, tokens) is a one-line error naming its folder.
The paper's RoBERTa-base settings are not in the official scripts: the BERT-base defaults stand.
TensorBoard: loss, contrastive_loss, rtd_loss, rtd_accuracy_replaced, rtd_accuracy_kept,
replaced_fraction, learning rate, STS-B dev, alignment, uniformity.
"""
import dataclasses

from tf_esimcse.config import TrainConfig, check_model_path, check_range, setting
from tf_esimcse.data.diffcse_views import diffcse_views
from tf_esimcse.methods.method import Method, register
from tf_esimcse.objectives.diffcse import DiffCSEObjective


@dataclasses.dataclass
class DiffCSEConfig(TrainConfig):
    unsupported = {"dynamic_padding": "DiffCSE's views are padded to --max-len (the generator and the "
                                      "discriminator read every position)"}
    output_dir: str = "saved_models/diffcse"
    generator: str = setting(
        "", group="method", default_text="none; required",
        help="the frozen masked-LM generator: a keras-hub MaskedLM preset of the encoder's family sharing its "
             "vocabulary (e.g. recipes/pretrain_mlm.py's <output-dir>/model; --family roberta for a RoBERTa "
             "encoder)")
    learning_rate: float = 7e-6
    epochs: int = 2  # the latest run_diffcse.sh (--num_train_epochs 2; its first version had 1)
    masking_ratio: float = setting(
        0.30, group="method", help="share of the tokens the generator replaces, from 0 to 1")
    rtd_weight: float = setting(0.005, group="method", help="lambda: weight of the replaced-token-detection loss")
    batchnorm: bool = setting(
        True, group="method",
        help="DiffCSE's BatchNorm projection (training only, needs --pooler cls); --no-batchnorm: SimCSE's tanh MLP")
    generator_dropout: bool = setting(
        True, group="method", help="run the generator with dropout on (the official generator is in training mode)")
    rtd_on_padding: bool = setting(
        False, group="method", help="average the RTD loss over every position, padding included (as the official code)")

    def validate(self):
        if self.matryoshka_dims and self.batchnorm:
            raise ValueError("--matryoshka-dims trains prefixes of the vectors the loss sees, here the training-only "
                             "BatchNorm projection's (--batchnorm), which the saved model drops: use --no-batchnorm "
                             "with --pooler cls_before_pooler or avg")
        super().validate()
        if not self.generator:
            raise ValueError("--generator is required: a keras-hub MaskedLM preset sharing the encoder's vocabulary "
                             "(python recipes/pretrain_mlm.py makes one)")
        try:
            check_model_path("--generator", self.generator, presets=False)
        except ValueError as e:
            raise ValueError(f"{e}: could not load a masked-LM generator from it") from None
        check_range(self, "masking_ratio", low=0, high=1, low_open=True, high_open=True)
        check_range(self, "rtd_weight", low=0)
        if self.batchnorm and self.pooler not in ("cls", "cls_before_pooler"):
            raise ValueError("--batchnorm projects the [CLS] vector: use --pooler cls (or --no-batchnorm)")
        return self


def prepare(config):
    """With --batchnorm the encoder's own pooler is the bare [CLS] vector and the objective owns
    the projection (used in training only, as --mlp_only_train). The flags are checked already
    (`DiffCSEConfig.validate`)."""
    if config.batchnorm:
        config = dataclasses.replace(config, pooler="cls_before_pooler")
    return config


def build_objective(config, **shared):
    return DiffCSEObjective(config.generator, rtd_weight=config.rtd_weight, batchnorm=config.batchnorm,
                            generator_dropout=config.generator_dropout, rtd_on_padding=config.rtd_on_padding, **shared)


def build_dataset(sentences, preprocessor, config):
    return diffcse_views(sentences, preprocessor, masking_ratio=config.masking_ratio, batch_size=config.batch_size,
                         seed=config.seed, repeat=True)


METHOD = register(Method("diffcse", DiffCSEConfig, build_objective, build_dataset, prepare=prepare,
                         description=__doc__))
main = METHOD.main
