"""Errors with messages a user can act on: which file, which line, what is wrong."""


class TfEsimcseError(Exception):
    """Base class of this package's own errors."""


class DataError(TfEsimcseError, ValueError):
    """Bad or missing input data. The message names the file (and line) and the problem."""

    def __init__(self, message, path=None, line=None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class ModelLoadError(TfEsimcseError, ValueError):
    """A model path or preset that cannot be loaded; the message says what was expected."""


class ModelSaveError(TfEsimcseError, OSError):
    """A model could not be written (full disk, permissions); what was saved before is kept."""


class TrainingDiverged(TfEsimcseError):
    """Training produced a non-finite loss or gradient, or no finite evaluation: no model is
    presented as the result (exit code 3 from the recipes)."""
