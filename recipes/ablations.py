"""The SimCSE and ESimCSE papers' ablation tables, each one command: the command line of
`tf_esimcse.ablations`, whose docstring is this recipe's `--help` and which holds the tables and
the resumable runner (each row trains `recipes/<recipe>.py` in its own process).

    python recipes/ablations.py --list
    python recipes/ablations.py --help
"""
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
# This process evaluates the start encoder, the rows train in child processes: on a GPU, take only
# the memory the evaluation needs, not the whole device (the children inherit the setting). Set
# before TensorFlow is imported.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from tf_esimcse import ablations  # noqa: E402
from tf_esimcse.training import main_guard  # noqa: E402


def main(argv=None):
    return ablations.main(argv, recipes_dir=HERE)


if __name__ == "__main__":
    main_guard(main)
