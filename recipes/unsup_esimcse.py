"""ESimCSE, the package's main job: the command line of `tf_esimcse.methods.unsup_esimcse`, whose docstring is this
recipe's `--help` (defaults, their sources, examples) and which holds its settings, objective and views.

    python recipes/unsup_esimcse.py --help
"""
from tf_esimcse import methods
from tf_esimcse.training import main_guard


def main(argv=None):
    return methods.get("unsup_esimcse").main(argv)


if __name__ == "__main__":
    main_guard(main)
