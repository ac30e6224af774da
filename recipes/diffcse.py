"""DiffCSE: the command line of `tf_esimcse.methods.diffcse`, whose docstring is this
recipe's `--help` (defaults, their sources, examples) and which holds its settings, objective and views.

    python recipes/diffcse.py --help
"""
from tf_esimcse import methods
from tf_esimcse.training import main_guard


def main(argv=None):
    return methods.get("diffcse").main(argv)


if __name__ == "__main__":
    main_guard(main)
