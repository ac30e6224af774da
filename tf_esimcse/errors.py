"""Every error class of the package, with messages a user can act on: which file, which line, what is
wrong. Modules that raise them re-export their own (e.g. `tf_esimcse.search.SearchError`)."""


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


class RunFolderError(TfEsimcseError):
    """A run folder that cannot be used as asked (other settings, or in use)."""


class PlotError(TfEsimcseError, ValueError):
    """Nothing to plot, or input that is not what a figure needs; the message names the folder
    or the entry and what was expected."""


class MatplotlibNotInstalled(TfEsimcseError, ImportError):
    """matplotlib, which only the figures need, is not installed."""


class SearchError(TfEsimcseError, ValueError):
    """A search that cannot run as asked (empty corpus, missing index, mismatched dimensions)."""


class ExportError(TfEsimcseError):
    """The export cannot be written where asked (the message says why)."""


class VersionExistsError(ExportError, FileExistsError):
    """The requested version already exists under the export base; versions are never overwritten."""


class DownloadError(TfEsimcseError):
    """A download that could not be completed; the message names the file, the URLs and the cause."""


class ChecksumError(DownloadError):
    """A downloaded file whose sha256 differs from the pinned one (the file was deleted)."""


class UnsafeArchiveError(DownloadError):
    """An archive with a member that would be written outside the extraction folder."""
