"""Errors a user can act on.

Every error raised for bad input derives from `PipelineInputError`, so the CLI and the Dagster
assets can show its message as-is instead of a traceback from deep inside a library.
"""


class PipelineInputError(ValueError):
    """Input that the pipeline refuses, with a message naming the file and the reason."""


class InvalidCorpusName(PipelineInputError):
    """A corpus name that is not a safe single path segment."""


class OutputBusyError(RuntimeError):
    """Another run is writing the same output (same stage and corpus) and did not finish in time."""


class DiskFullError(OSError):
    """A write failed for lack of space; the message names the path and says the old output is
    intact."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class UnsafePathError(PipelineInputError):
    """A path that would lead outside the data or model root (`..`, absolute, or a symlink)."""
