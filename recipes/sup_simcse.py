"""Supervised SimCSE: the command line of `tf_esimcse.methods.sup_simcse`, whose docstring is this
recipe's `--help` (defaults, their sources, examples) and which holds its settings, objective and views.

    python recipes/sup_simcse.py --help
"""
from tf_esimcse import methods
from tf_esimcse.training import main_guard


def main(argv=None):
    return methods.get("sup_simcse").main(argv)


if __name__ == "__main__":
    main_guard(main)
