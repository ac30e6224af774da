"""Unsupervised SimCSE (Gao et al., 2021) with the paper's BERT-base settings.

    python recipes/unsup_simcse.py                      # default encoder, Brown corpus
    python recipes/unsup_simcse.py --steps 20           # a smoke run
    python recipes/unsup_simcse.py --corpus wiki1m_for_simcse.txt --model /path/to/bert

Every setting is a flag (`--help`); the run prints its config, logs to TensorBoard
(<output-dir>/logs), evaluates STS-B dev every --eval-steps steps keeping the best weights,
saves the encoder to <output-dir>/model and prints the 7-task STS table.
"""
from tf_esimcse.data.pipeline import unsup_dataset
from tf_esimcse.models.simcse import SimCSE
from tf_esimcse.training import TrainConfig, main_guard, parse_config, run_training


def build_model(encoder, config):
    return SimCSE(encoder, temperature=config.temperature)


def build_dataset(sentences, preprocessor, config):
    return unsup_dataset(sentences, preprocessor, batch_size=config.batch_size, seed=config.seed,
                         dynamic_padding=config.dynamic_padding, repeat=True)


def main(argv=None):
    config = parse_config(TrainConfig, argv, description=__doc__.split("\n")[0])
    return run_training(config, build_model, build_dataset, name="unsup_simcse")


if __name__ == "__main__":
    main_guard(main)
