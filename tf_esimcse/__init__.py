"""tf_esimcse: contrastive sentence embeddings (SimCSE, ESimCSE, DiffCSE) for Keras 3 / TensorFlow.

The public API, re-exported here:

    from tf_esimcse import SentenceEncoder, SimCSE, ESimCSE
    encoder = SentenceEncoder.from_pretrained("default", pooler_type="cls", mlp_only_train=True)
    model = ESimCSE(encoder)
    model.compile(optimizer="adamw")
    model.fit(esimcse_dataset(sentences, encoder.preprocessor), steps_per_epoch=...)
"""
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# First: TensorFlow is imported here without its C++ start-up log lines (unless --verbose,
# TF_ESIMCSE_VERBOSE=1 or the user's own TF_CPP_MIN_LOG_LEVEL; see tf_esimcse/quiet.py).
from tf_esimcse.quiet import quiet_tensorflow as _quiet_tensorflow  # noqa: E402

_quiet_tensorflow()

__version__ = "0.1.0"

from tf_esimcse import losses  # noqa: E402,F401
from tf_esimcse.backbones import BertEncoder, BertEncoderTokenizer, from_keras_hub_backbone, load_backbone, load_tokenizer, to_keras_hub_backbone  # noqa: E402,F401,E501
from tf_esimcse.data.corpus import load_sentences, read_brown, read_nli_triplets, read_text_lines  # noqa: E402,F401
from tf_esimcse.data.pipeline import esimcse_dataset, paired_dataset, unsup_dataset  # noqa: E402,F401
from tf_esimcse.data.views import View, supervised_views, views_dataset  # noqa: E402,F401
from tf_esimcse.errors import DataError, ModelLoadError, TfEsimcseError  # noqa: E402,F401
from tf_esimcse.evaluation.callbacks import STSEvaluationCallback  # noqa: E402,F401
from tf_esimcse.evaluation.sts import alignment, evaluate_sts, format_table, uniformity  # noqa: E402,F401
from tf_esimcse.layers.momentum_queue import MomentumQueue  # noqa: E402,F401
from tf_esimcse.layers.pooler import Pooler  # noqa: E402,F401
from tf_esimcse.layers.sentence_preprocessor import SentencePreprocessor  # noqa: E402,F401
from tf_esimcse.models.diffcse import DiffCSE  # noqa: E402,F401
from tf_esimcse.models.esimcse import ESimCSE  # noqa: E402,F401
from tf_esimcse.models.keras_hub_encoder import KerasHubEncoder  # noqa: E402,F401
from tf_esimcse.models.sentence_encoder import SentenceEncoder  # noqa: E402,F401
from tf_esimcse.models.simcse import SimCSE, SupervisedSimCSE  # noqa: E402,F401
from tf_esimcse.models.contrastive_model import ContrastiveModel  # noqa: E402,F401
from tf_esimcse.objectives import DiffCSEObjective, ESimCSEObjective, Objective, SimCSEObjective, SupervisedSimCSEObjective  # noqa: E402,F401,E501
from tf_esimcse.layers.word_repetition import WordRepetition  # noqa: E402,F401
from tf_esimcse.layers.token_augmentation import TokenAugmentation  # noqa: E402,F401
from tf_esimcse.layers.random_crop import RandomCrop  # noqa: E402,F401
from tf_esimcse.layers.word_deletion import WordDeletion  # noqa: E402,F401
from tf_esimcse.layers.masked_lm_replacement import MaskedLMReplacement  # noqa: E402,F401
from tf_esimcse.st_export import export_sentence_transformers  # noqa: E402,F401
from tf_esimcse.onnx_export import export_onnx  # noqa: E402,F401
from tf_esimcse.litert_export import export_litert  # noqa: E402,F401
