"""Pretrain a small BERT or RoBERTa masked LM (a raw encoder and DiffCSE's generator): the command line of
`tf_esimcse.methods.pretrain_mlm`, whose docstring is this recipe's `--help` and which holds its
settings and run loop.

    python recipes/pretrain_mlm.py --help
"""
from tf_esimcse.methods import pretrain_mlm
from tf_esimcse.training import main_guard


def main(argv=None):
    return pretrain_mlm.main(argv)


if __name__ == "__main__":
    main_guard(main)
