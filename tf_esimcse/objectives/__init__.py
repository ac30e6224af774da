"""Training objectives: one file per method, plugged into `tf_esimcse.models.ContrastiveModel`."""
from tf_esimcse.objectives.diffcse import DiffCSEObjective  # noqa: F401
from tf_esimcse.objectives.esimcse import ESimCSEObjective  # noqa: F401
from tf_esimcse.objectives.matryoshka import MatryoshkaObjective  # noqa: F401
from tf_esimcse.objectives.objective import Objective  # noqa: F401
from tf_esimcse.objectives.simcse import SimCSEObjective  # noqa: F401
from tf_esimcse.objectives.supervised_simcse import SupervisedSimCSEObjective  # noqa: F401
