"""Errors a user can act on.

Every error raised for bad input derives from `PipelineInputError`, so the CLI and the Dagster
assets can show its message as-is instead of a traceback from deep inside a library.
"""


class PipelineInputError(ValueError):
    """Input that the pipeline refuses, with a message naming the file and the reason."""


class InvalidCorpusName(PipelineInputError):
    """A corpus name that is not a safe single path segment."""
